#!/usr/bin/env bash
# The test command: installs everything the tests need (pinned Node and Python packages, see
# tests/node/package-lock.json and tests/python/requirements.txt), then builds and runs every
# test of the workspace. Real servers and clients run on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# A clean build gains nothing from incremental state; it only costs disk.
export CARGO_INCREMENTAL=0

# Every test binary's "test result:" line is kept, so that the run ends with one summary line
# (also when it fails part way).
results=$(mktemp)
summary() {
    local status=$?
    awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i; if ($(i+1) ~ /^ignored;?$/) g += $i } }
         END { printf "scripts/test.sh: %d passed, %d failed, %d ignored", p, f, g }' "$results"
    if [ "$status" -ne 0 ]; then echo " (stopped with exit code $status)"; else echo; fi
    rm -f "$results"
}
trap summary EXIT
tests() { "$@" 2>&1 | tee -a "$results"; }

scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
tests cargo test --workspace --locked
# OpenTelemetry export is a cargo feature (off by default): lint it and test it from a
# collector's side.
cargo clippy -p mcp-warden --features otel --lib --bins --test otel --locked -- -D warnings
tests cargo test -p mcp-warden --features otel --locked --test otel
