"""A dual-era MCP server fixture: a 2026-07-28 ("modern") upstream for mcp-warden's tests.

Written with the official Python MCP SDK (mcp 2.3.0, MCPServer). The same process serves
both eras, decided by the client (see /work/notes/modern-fixture.md):
  - modern 2026-07-28: no initialize; every request carries params._meta
    ["io.modelcontextprotocol/protocolVersion"] and ["io.modelcontextprotocol/clientCapabilities"];
    server/discover, multi round-trip results (resultType "input_required"), subscriptions/listen.
  - legacy 2025-11-25 (and older): initialize + notifications/initialized, then plain requests.

Transports: stdio (default; the first request decides the era of the connection), or
`--http PORT` = Streamable HTTP on http://127.0.0.1:PORT/mcp (the MCP-Protocol-Version header
decides the era per request; PORT 0 picks a free port). Once listening it prints
"listening on http://127.0.0.1:PORT/mcp" on stdout. `--json` answers modern requests with
application/json instead of an SSE stream.

Tools: echo {message}; ask_name (elicits a name: 2026 = InputRequiredResult with key "user_name",
legacy = a server->client elicitation/create request); grow (adds tool grown_N and announces
tools list_changed); slow {steps, delay_ms} (notifications/progress per step when a
progressToken is given). Resource modern://readme, prompt greet {name}.
"""

import argparse
from typing import Any

import anyio
from mcp_types import (
    CallToolResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequiredResult,
    TextContent,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

from mcp.server.lowlevel import NotificationOptions
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.tools.base import Tool



def bad_header(zone: str) -> str:
    """An invalid x-mcp-header (not an HTTP header name): HTTP clients drop this tool."""
    return zone


# The SDK refuses to declare an invalid annotation itself: the schema is set by hand.
BAD_HEADER_TOOL = Tool.from_function(bad_header).model_copy(
    update={
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "x-mcp-header": "Bad Zone"}},
            "required": ["zone"],
        }
    }
)

srv = MCPServer(
    "modern-fixture", version="1.0.0", instructions="Test fixture for mcp-warden.", tools=[BAD_HEADER_TOOL]
)

# Legacy clients read capabilities from the InitializeResult, built from
# create_initialization_options() with listChanged=false by default; advertise tools.listChanged
# (2026 clients get it from server/discover, derived from subscriptions/listen being served).
_base_init_options = srv._lowlevel_server.create_initialization_options


def _init_options(notification_options: Any = None, *args: Any, **kwargs: Any) -> Any:
    return _base_init_options(notification_options or NotificationOptions(tools_changed=True), *args, **kwargs)


srv._lowlevel_server.create_initialization_options = _init_options  # type: ignore[method-assign]

ASK_STATE = "ask_name/1"  # our plaintext requestState; the SDK seals it (AES-GCM) on the wire
GROWN: list[str] = []


def text(s: str, error: bool = False) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=s)], is_error=error)


def is_modern(ctx: Context) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


class Name(BaseModel):
    name: str


@srv.tool(structured_output=False)
def echo(message: str) -> str:
    """Echo the message back as text."""
    return message


@srv.tool()
async def ask_name(ctx: Context) -> CallToolResult | InputRequiredResult:
    """Ask the user for their name (elicitation), then greet them."""
    caps = ctx.client_capabilities
    elicitation = caps.elicitation if caps is not None else None
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return text("ask_name needs the elicitation (form) capability, which this request did not declare", True)
    if not is_modern(ctx):  # 2025 era: a server->client elicitation/create request mid-call
        got = await ctx.elicit("What is your name?", Name)
        return text(f"hello {got.data.name}") if got.action == "accept" else text(f"elicitation {got.action}", True)
    answer = (ctx.input_responses or {}).get("user_name")
    if ctx.request_state == ASK_STATE and isinstance(answer, ElicitResult):
        if answer.action != "accept":
            return text(f"elicitation {answer.action}", True)
        name = (answer.content or {}).get("name")
        if isinstance(name, str):
            return text(f"hello {name}")
    # First round, or the retry lacked a usable answer: ask (again).
    question = ElicitRequestFormParams(
        message="What is your name?",
        requested_schema={"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    )
    return InputRequiredResult(input_requests={"user_name": ElicitRequest(params=question)}, request_state=ASK_STATE)


@srv.tool(structured_output=False)
async def grow(ctx: Context) -> str:
    """Add a new tool grown_N and announce that the tool list changed."""
    name = f"grown_{len(GROWN) + 1}"
    GROWN.append(name)
    srv.add_tool(lambda: f"I am {name}", name=name, description=f"Added by grow ({name}).", structured_output=False)
    await ctx.notify_tools_changed()  # 2026: to every subscriptions/listen stream with toolsListChanged
    if not is_modern(ctx):  # 2025: notifications/tools/list_changed on this session's channel
        await ctx.session.send_tool_list_changed()
    return f"added {name}"


@srv.tool(structured_output=False)
async def slow(steps: int, delay_ms: int, ctx: Context) -> str:
    """Take `steps` steps of `delay_ms` each, reporting progress after each one."""
    for i in range(1, steps + 1):
        await anyio.sleep(delay_ms / 1000)
        await ctx.report_progress(i, steps, f"step {i}/{steps}")  # no-op without a progressToken
    return f"done after {steps} steps"


@srv.tool(structured_output=False)
async def touch_readme(ctx: Context) -> str:
    """Announce that modern://readme changed (to its subscribers, in either era)."""
    await ctx.notify_resource_updated("modern://readme")  # 2026: listen streams subscribed to it
    if not is_modern(ctx):
        await ctx.session.send_resource_updated("modern://readme")
    return "touched"


@srv.resource("modern://readme", name="readme", description="About this fixture.", mime_type="text/plain")
def readme() -> str:
    return "modern-fixture: a dual-era (2026-07-28 + 2025-11-25) MCP server for mcp-warden tests.\n"


@srv.prompt()
def greet(name: str) -> str:
    """Greet someone by name."""
    return f"Please greet {name} warmly."


async def serve_http(port: int, json_response: bool) -> None:
    import uvicorn

    app = srv.streamable_http_app(json_response=json_response)  # stateful sessions for legacy clients
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        while not server.started:
            await anyio.sleep(0.02)
        bound = server.servers[0].sockets[0].getsockname()[1]
        print(f"listening on http://127.0.0.1:{bound}/mcp", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", type=int, metavar="PORT", help="serve Streamable HTTP on 127.0.0.1:PORT/mcp")
    parser.add_argument("--json", action="store_true", help="HTTP: answer with application/json, not SSE")
    args = parser.parse_args()
    if args.http is None:
        srv.run()  # stdio
    else:
        anyio.run(serve_http, args.http, args.json)


if __name__ == "__main__":
    main()
