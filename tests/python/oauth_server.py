"""An OAuth-protected MCP server fixture (an OAuth resource server) for mcp-warden's tests.

Written with the official Python MCP SDK's auth support (mcp 2.3.0): `MCPServer(auth=AuthSettings(...),
token_verifier=...)`. The SDK then answers a missing/invalid token with 401 + `WWW-Authenticate:
Bearer error="invalid_token", ..., resource_metadata="<PRM URL>"`, a token lacking the scope with
403 insufficient_scope, and serves the RFC 9728 protected resource metadata (PRM) at
/.well-known/oauth-protected-resource/mcp, naming --issuer in `authorization_servers`.

Tokens are JWT access tokens (RFC 9068, e.g. from tests/node/oauth-as.mjs), verified against the
issuer's JWKS (jwks_uri from {issuer}/.well-known/oauth-authorization-server, fetched on first
use): signature, `iss` == --issuer, `aud` contains --audience, `exp`. Scopes come from `scope`.

Run it (start the authorization server first):
    tests/python/.venv/bin/python tests/python/oauth_server.py --issuer http://127.0.0.1:AS_PORT --port 0
Serves Streamable HTTP (both eras) on http://127.0.0.1:PORT/mcp and prints exactly one stdout line,
`listening on http://127.0.0.1:PORT/mcp`, once ready (PORT 0 picks a free port).

Tools: whoami -> JSON text {sub, client_id, scope, aud, token_digest}; echo {message} -> message.
token_digest = sha256(access token).hexdigest()[:12]: tests learn which token arrived, never the
token itself. Every HTTP request carrying a bearer token logs "token <digest> sub=.. client_id=.."
on stderr and, if env TOKEN_LOG is set, appends "<digest> <sub> <client_id>" to that file
("<digest> - -" for a rejected token).
"""

import argparse
import hashlib
import json
import os
import socket
import sys
import urllib.request
from typing import Any

import anyio
import anyio.to_thread
import jwt

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer


def digest(token: str) -> str:
    """The short, safe-to-print identity of a token: the first 12 hex of its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def log(msg: str) -> None:
    print(f"oauth_server: {msg}", file=sys.stderr, flush=True)


class JwtVerifier:
    """A `mcp.server.auth.provider.TokenVerifier`: JWT access tokens checked against the issuer's JWKS."""

    def __init__(self, issuer: str, audience: str, token_log: str | None) -> None:
        self.issuer, self.audience, self.token_log = issuer, audience, token_log
        self._jwks: jwt.PyJWKClient | None = None

    def _jwks_client(self) -> jwt.PyJWKClient:
        # Discovered lazily (and retried until it works), so this server may start before the AS.
        if self._jwks is None:
            url = f"{self.issuer.rstrip('/')}/.well-known/oauth-authorization-server"
            with urllib.request.urlopen(url, timeout=5) as resp:
                jwks_uri = json.load(resp)["jwks_uri"]
            # cooldown 0: an unknown `kid` (key rotation) refetches the JWKS at once.
            self._jwks = jwt.PyJWKClient(jwks_uri, cooldown_duration=0, timeout=5)
        return self._jwks

    def _decode(self, token: str) -> dict[str, Any]:  # blocking (JWKS fetch): run in a thread
        key = self._jwks_client().get_signing_key_from_jwt(token)
        return jwt.decode(
            token,
            key,
            algorithms=[key.algorithm_name],  # only the key's own algorithm: no alg confusion
            audience=self.audience,  # `aud` (string or list) must contain it
            issuer=self.issuer,  # exact match
            options={"require": ["exp", "iss", "aud"]},
        )

    def _record(self, d: str, sub: str, client_id: str) -> None:
        if self.token_log:
            with open(self.token_log, "a") as f:
                f.write(f"{d} {sub} {client_id}\n")

    async def verify_token(self, token: str) -> AccessToken | None:
        # Called by the SDK's BearerAuthBackend once per HTTP request that has `Bearer ...`.
        d = digest(token)
        try:
            claims = await anyio.to_thread.run_sync(self._decode, token)
        except Exception as exc:  # any failure (bad signature, expired, wrong aud, AS down) -> 401
            log(f"token {d} rejected: {type(exc).__name__}: {exc}")
            self._record(d, "-", "-")
            return None
        sub, client_id = str(claims.get("sub", "-")), str(claims.get("client_id", "-"))
        log(f"token {d} sub={sub} client_id={client_id}")
        self._record(d, sub, client_id)
        return AccessToken(
            token=token,
            client_id=client_id,
            scopes=str(claims.get("scope", "")).split(),
            expires_at=int(claims["exp"]),
            resource=self.audience,
            subject=claims.get("sub"),
            claims=claims,  # carries `iss`: the SDK binds sessions to (client_id, iss, sub)
        )


def whoami() -> str:
    """Who the access token that reached this server belongs to (never the token itself)."""
    tok = get_access_token()  # the SDK's auth context (a contextvar set by its middleware)
    if tok is None:
        return json.dumps({"error": "no access token"})
    c = tok.claims or {}
    info = {"sub": c.get("sub"), "client_id": tok.client_id, "scope": c.get("scope"), "aud": c.get("aud")}
    return json.dumps({**info, "token_digest": digest(tok.token)})


def echo(message: str) -> str:
    """Echo the message back as text."""
    return message


async def serve(args: argparse.Namespace) -> None:
    import uvicorn

    # Bind first: PORT 0 must become the real port before the resource URL (and PRM) exist.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", args.port))
    except OSError as exc:
        sys.exit(f"oauth_server: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}")
    sock.listen(128)
    resource = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"

    auth = AuthSettings(
        issuer_url=args.issuer,  # -> PRM `authorization_servers`
        resource_server_url=resource,  # -> PRM `resource`, PRM route, WWW-Authenticate resource_metadata
        required_scopes=[args.scope] if args.scope else None,  # missing -> 403 insufficient_scope
        validate_token_resource=False,  # JwtVerifier checks `aud` itself (it may be --audience)
    )
    verifier = JwtVerifier(args.issuer, args.audience or resource, os.environ.get("TOKEN_LOG"))
    srv = MCPServer("oauth-fixture", version="1.0.0", auth=auth, token_verifier=verifier, log_level="WARNING")
    srv.tool(structured_output=False)(whoami)
    srv.tool(structured_output=False)(echo)

    app = srv.streamable_http_app()  # stateful sessions for 2025 clients, 2026 requests as single exchanges
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        while not server.started:
            await anyio.sleep(0.02)
        print(f"listening on {resource}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issuer", required=True, help="the authorization server (exact `iss` of its tokens)")
    parser.add_argument("--port", type=int, default=0, help="127.0.0.1 port (0 = any free port)")
    parser.add_argument("--scope", default="mcp", help="required scope ('' = none; default mcp)")
    parser.add_argument("--audience", help="required `aud` entry (default: this server's /mcp URL)")
    anyio.run(serve, parser.parse_args())


if __name__ == "__main__":
    main()
