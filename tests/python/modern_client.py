"""A real MCP 2026-07-28 client for mcp-warden's tests: the Python SDK's `Client` (mcp 2.x) in
its default `mode="auto"` (it probes `server/discover` and speaks 2026-07-28 when the server
does), against mcp-warden over Streamable HTTP (`--http URL`) or stdio (`--stdio COMMAND ARG…`).

It lists tools, calls `TOOL` with `ARGS` (JSON), answers any elicitation with
{"username": "ada", "email": "ada@example.com"} (the SDK retries multi round-trip calls by
itself), and prints one JSON object: the negotiated protocol version, the tool names, and the
call's text content.
"""

import argparse
import json
import sys

import anyio
from mcp_types import ElicitResult

from mcp import Client
from mcp.client.stdio import StdioServerParameters


async def elicit(context, params):  # noqa: ANN001 - the SDK's callback signature
    return ElicitResult(action="accept", content={"username": "ada", "email": "ada@example.com"})


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--http")
    ap.add_argument("--stdio", nargs=argparse.REMAINDER)
    ap.add_argument("--tool", required=True)
    ap.add_argument("--args", default="{}")
    a = ap.parse_args()
    if a.http:
        server = a.http
    else:
        server = StdioServerParameters(command=a.stdio[0], args=a.stdio[1:])
    async with Client(server, elicitation_callback=elicit, read_timeout_seconds=30) as client:
        tools = await client.list_tools()
        result = await client.call_tool(a.tool, json.loads(a.args))
        texts = [c.text for c in result.content if getattr(c, "type", "") == "text"]
        print(
            json.dumps(
                {
                    "protocol_version": client.protocol_version,
                    "tools": [t.name for t in tools.tools],
                    "text": texts,
                    "is_error": bool(result.is_error),
                }
            )
        )
        sys.stdout.flush()


anyio.run(main)
