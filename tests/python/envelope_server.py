"""A consent-envelope server written with the official Python MCP SDK (mcp 2.x, MCPServer).

Tool `transfer_funds(amount, to, confirmation_token=None)`: without a token it answers with the
consent envelope (as structuredContent) and remembers the action id (single use, 60 s); with a
valid token for the same arguments it performs the transfer. `transfers()` says how many were
performed. Action ids issued are appended to $ENVELOPE_LOG (so tests can look for leaks).
Runs on stdio.
"""
import os
import secrets
import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("envelope-server")
ISSUED = {}  # action_id -> (amount, to, expires_at)
DONE = []


@server.tool()
def transfer_funds(amount: int, to: str, confirmation_token: str | None = None) -> dict:
    """Transfer money. Needs a human's confirmation first."""
    if confirmation_token is None:
        action = secrets.token_hex(16)
        ISSUED[action] = (amount, to, time.time() + 60)
        if os.environ.get("ENVELOPE_LOG"):
            with open(os.environ["ENVELOPE_LOG"], "a") as f:
                f.write(action + "\n")
        return {
            "ok": False,
            "requires_confirmation": True,
            "action_id": action,
            "summary": f"Transfer {amount} to {to}",
            "expires_in_seconds": 60,
        }
    issued = ISSUED.pop(confirmation_token, None)
    if issued is None or issued[:2] != (amount, to) or issued[2] < time.time():
        return {"ok": False, "error": "invalid, used or expired confirmation_token"}
    DONE.append((amount, to))
    return {"ok": True, "transferred": amount, "to": to}


@server.tool()
def transfers() -> int:
    """How many transfers were performed."""
    return len(DONE)


if __name__ == "__main__":
    server.run()
