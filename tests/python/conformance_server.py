"""mcp-warden's 2026-07-28 conformance upstream.

An MCP server, written with the official Python MCP SDK (mcp 2.3.0, `MCPServer`), that exposes
the fixed tool / resource / prompt names the official conformance suite
(`@modelcontextprotocol/conformance` 0.2.0-alpha, npm alias `conformance-2026`) calls with
`server --requirements 2026-07-28`. It is the 2026 sibling of tests/node/conformance-server.mjs
(the 2025 upstream) and mirrors that file's fixture shapes (texts, base64 image / audio).

Run it:
    tests/python/.venv/bin/python tests/python/conformance_server.py             # stdio
    tests/python/.venv/bin/python tests/python/conformance_server.py --http 0    # Streamable HTTP

`--http PORT` serves http://127.0.0.1:PORT/mcp (PORT 0 picks a free port) and prints exactly
one line, `listening on http://127.0.0.1:PORT/mcp`, on stdout once ready. Then, e.g.:
    node tests/node/run-conformance.mjs http://127.0.0.1:PORT/mcp OUTDIR --requirements 2026-07-28

Dual era, as the SDK serves both without configuration (see /work/notes/modern-fixture.md):
  - 2026-07-28 ("modern"): no initialize; every request carries `params._meta` (protocol
    version + client capabilities); server/discover, resultType, caching hints, multi
    round-trip requests (InputRequiredResult + sealed requestState), subscriptions/listen.
    The SDK runs the header / envelope validation ladder (-32602, -32020, -32022, -32601).
  - 2025-11-25 and older ("legacy"): initialize handshake. The same tools then get their
    client input through real server->client requests (elicitation/create,
    sampling/createMessage, roots/list) instead of InputRequiredResult.

Fixtures the 2026 suite calls (tools unless noted):
  test_simple_text, test_image_content, test_audio_content, test_embedded_resource,
  test_multiple_content_types, test_error_handling, test_tool_with_progress,
  test_logging_tool (and test_tool_with_logging), test_missing_capability (needs sampling),
  test_streaming_elicitation, test_trigger_tool_change, test_trigger_prompt_change,
  test_input_required_result_{elicitation,sampling,list_roots,request_state,multiple_inputs,
  multi_round,tampered_state,capabilities}, json_schema_2020_12_tool, test_header_param
  (x-mcp-header); prompts test_simple_prompt, test_prompt_with_arguments (with completion),
  test_prompt_with_embedded_resource, test_prompt_with_image, test_input_required_result_prompt;
  resources test://static-text, test://static-binary, template test://template/{id}/data.
Tasks extension (io.modelcontextprotocol/tasks, not scored): tools greet, slow_compute,
failing_job, protocol_error_job, confirm_delete, multi_input, test_tool_with_task, and the
methods tasks/get, tasks/update, tasks/cancel, all served by TasksExtension below.
With `--consent` (mcp-warden's own tests, not the suite): a consent-envelope tool
`transfer_funds(amount, to, confirmation_token=None)` that runs as a task when the request
declared the extension; the task completes with the envelope (its action id appended to
$ENVELOPE_LOG), and the call made again with a valid token performs the transfer at once.
Legacy-only suite fixtures (still answered on 2026 via MRTR): test_sampling, test_elicitation,
test_elicitation_sep1034_defaults, test_elicitation_sep1330_enums, test_reconnection.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import socket
import sys
import uuid
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Annotated, Any

import anyio
from mcp_types import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    CallToolRequestParams,
    CallToolResult,
    Completion,
    CompletionArgument,
    CompletionContext,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    InputRequiredResult,
    ListRootsRequest,
    ListRootsResult,
    PromptReference,
    RequestParams,
    ResourceTemplateReference,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.lowlevel import NotificationOptions
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.server.mcpserver.server import require_client_extension
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.streamable_http import EventMessage, EventStore
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata

# ctx.info()/ctx.log(), roots and sampling are deprecated in 2026-07-28 but still valid; the
# fixture exercises them on purpose.
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*deprecated.*")

SERVER_NAME = "mcp-warden-conformance-upstream-2026"

# 1x1 red PNG and a minimal WAV file (base64), the same bytes as the 2025 upstream.
TEST_IMAGE_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
TEST_AUDIO_BASE64 = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

# SEP-1613 / SEP-2106: advertised verbatim by tools/list for json_schema_2020_12_tool.
JSON_SCHEMA_2020_12_INPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


# --------------------------------------------------------------------------------- helpers


def text(s: str, error: bool = False) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=s)], is_error=error)


def image() -> ImageContent:
    return ImageContent(type="image", data=TEST_IMAGE_BASE64, mime_type="image/png")


def is_modern(ctx: Context) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


def elicit_request(message: str, properties: dict[str, Any], required: list[str] | None = None) -> ElicitRequest:
    schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


def sampling_request(prompt: str, max_tokens: int = 100) -> CreateMessageRequest:
    message = SamplingMessage(role="user", content=TextContent(type="text", text=prompt))
    return CreateMessageRequest(params=CreateMessageRequestParams(messages=[message], max_tokens=max_tokens))


def roots_request() -> ListRootsRequest:
    return ListRootsRequest()


InputRequest = ElicitRequest | CreateMessageRequest | ListRootsRequest

# Which client capability each input request needs, and the result type that answers it.
_NEEDS: dict[type, tuple[str, type]] = {
    ElicitRequest: ("elicitation", ElicitResult),
    CreateMessageRequest: ("sampling", CreateMessageResult),
    ListRootsRequest: ("roots", ListRootsResult),
}


def declared(ctx: Context, capability: str) -> bool:
    """Did this request (2026: its own `_meta`; legacy: `initialize`) declare `capability`?"""
    caps = ctx.client_capabilities
    value = getattr(caps, capability, None) if caps is not None else None
    if value is None:
        return False
    if capability == "elicitation":  # `elicitation: {}` means form mode; url-only cannot answer a form
        return not (value.form is None and value.url is not None)
    return True


def require(ctx: Context, *capabilities: str) -> None:
    """Raise -32021 naming every capability in `capabilities` the client did not declare."""
    missing = [c for c in capabilities if not declared(ctx, c)]
    if missing:
        raise MCPError(
            code=MISSING_REQUIRED_CLIENT_CAPABILITY,
            message=f"This request needs client capabilities the client did not declare: {', '.join(missing)}",
            data={"requiredCapabilities": {c: {} for c in missing}},
        )


async def ask(
    ctx: Context, requests: Mapping[str, InputRequest], state: str | None = None
) -> dict[str, Any] | InputRequiredResult:
    """Get the client's answers to `requests` (key -> input request).

    2026: answered on the retry (`ctx.input_responses`, validated by type; when `state` is
    given the echoed requestState must equal it), else an InputRequiredResult asking for them.
    Legacy: sent now as server->client requests on this call's channel.
    Raises -32021 if a needed capability was not declared.
    """
    require(ctx, *dict.fromkeys(_NEEDS[type(r)][0] for r in requests.values()))
    if not is_modern(ctx):
        related = ServerMessageMetadata(related_request_id=ctx.request_context.request_id)
        return {
            key: await ctx.session.send_request(request, _NEEDS[type(request)][1], metadata=related)
            for key, request in requests.items()
        }
    responses = ctx.input_responses or {}
    answers = {key: responses.get(key) for key in requests}
    complete = all(isinstance(answers[key], _NEEDS[type(r)][1]) for key, r in requests.items())
    if complete and (state is None or ctx.request_state == state):
        return answers
    # First round, or the retry lacked usable answers (missing, wrong keys, wrong shapes): ask again.
    return InputRequiredResult(input_requests=dict(requests), request_state=state)


def elicited(answer: ElicitResult, field: str) -> str | None:
    if answer.action != "accept" or not answer.content:
        return None
    value = answer.content.get(field)
    return None if value is None else str(value)


def sampled_text(answer: CreateMessageResult) -> str:
    content = answer.content
    blocks = content if isinstance(content, list) else [content]
    return "".join(getattr(b, "text", None) or f"[{b.type}]" for b in blocks)


def roots_text(answer: ListRootsResult) -> str:
    return ", ".join(str(root.uri) for root in answer.roots) or "(no roots)"


# ------------------------------------------------------------ tasks extension (SEP-2663)

TASKS_EXT = "io.modelcontextprotocol/tasks"
TASK_TTL_MS = 600_000
TASK_POLL_MS = 100
TERMINAL = ("completed", "failed", "cancelled")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TaskParams(RequestParams):
    task_id: str


class TaskUpdateParams(TaskParams):
    input_responses: dict[str, Any] | None = None


class TaskRecord:
    """One task: its wire state, the pending input requests, and the coroutine running it.

    Tasks live in this process's memory (never expired; a test fixture), so a retry or a
    tasks/get must reach the same server process.
    """

    def __init__(self) -> None:
        self.id = str(uuid.uuid4())
        self.status = "working"
        self.status_message: str | None = None
        self.created_at = self.updated_at = _now()
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.pending: dict[str, dict[str, Any]] = {}  # key -> input request (wire form)
        self.answers: dict[str, Any] = {}
        self.answered = anyio.Event()
        self.runner: asyncio.Task[None] | None = None
        self._keys = 0

    def set_status(self, status: str, message: str | None = None) -> None:
        self.status, self.status_message, self.updated_at = status, message, _now()

    def envelope(self) -> dict[str, Any]:
        task = {
            "taskId": self.id,
            "status": self.status,
            "createdAt": self.created_at,
            "lastUpdatedAt": self.updated_at,
            "ttlMs": TASK_TTL_MS,
            "pollIntervalMs": TASK_POLL_MS,
        }
        if self.status_message:
            task["statusMessage"] = self.status_message
        return task

    def detailed(self) -> dict[str, Any]:
        task = self.envelope()
        if self.status == "input_required":
            task["inputRequests"] = dict(self.pending)
        elif self.status == "completed" and self.result is not None:
            task["result"] = self.result
        elif self.status == "failed" and self.error is not None:
            task["error"] = self.error
        return task

    async def ask(self, requests: Mapping[str, InputRequest]) -> dict[str, Any]:
        """Park the task as input_required until tasks/update has answered every request."""
        keys = {}
        for key, request in requests.items():
            self._keys += 1
            keys[f"{key}-{self._keys}"] = key  # input keys stay unique over the task's lifetime
            self.pending[f"{key}-{self._keys}"] = request.model_dump(by_alias=True, mode="json", exclude_none=True)
        self.answered = anyio.Event()
        self.set_status("input_required", "waiting for client input")
        while self.pending:
            await self.answered.wait()
            self.answered = anyio.Event()
        self.set_status("working")
        return {keys[k]: _as_elicit_result(self.answers.pop(k)) for k in keys}

    def update(self, responses: Mapping[str, Any]) -> None:
        for key, value in responses.items():
            if key in self.pending:  # unknown or already answered keys are ignored
                del self.pending[key]
                self.answers[key] = value
        self.answered.set()


def _as_elicit_result(value: Any) -> Any:
    try:
        return ElicitResult.model_validate(value)
    except Exception:
        return value


TASKS: dict[str, TaskRecord] = {}


def start_task(body: Callable[[TaskRecord], Awaitable[CallToolResult]]) -> dict[str, Any]:
    """Create a task (durably: tasks/get finds it as soon as this returns) and run `body` for it."""
    task = TaskRecord()
    TASKS[task.id] = task

    async def run() -> None:
        try:
            result = await body(task)
            task.result = result.model_dump(by_alias=True, mode="json", exclude_none=True)
            task.set_status("completed")
        except asyncio.CancelledError:
            if task.status not in TERMINAL:
                task.set_status("cancelled", "cancelled by tasks/cancel")
        except MCPError as exc:
            task.error = {"code": exc.error.code, "message": exc.error.message}
            task.set_status("failed", exc.error.message)
        except Exception as exc:  # a crash is a protocol-level failure of the task
            task.error = {"code": INTERNAL_ERROR, "message": f"{type(exc).__name__}: {exc}"}
            task.set_status("failed", "internal error")

    task.runner = asyncio.get_running_loop().create_task(run())
    return {"resultType": "task", **task.envelope()}


def _client_declared_tasks(ctx: ServerRequestContext[Any, Any]) -> bool:
    caps = ctx.session.client_capabilities
    declared_ext = bool(caps and caps.extensions and TASKS_EXT in caps.extensions)
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS and declared_ext


def _decode_header_value(value: str) -> str:
    value = value.strip()
    if value.startswith("=?base64?") and value.endswith("?=") and len(value) >= 11:
        try:
            return base64.b64decode(value[9:-2], validate=True).decode()
        except ValueError:
            return "\0invalid"
    return value


def _lookup_task(ctx: ServerRequestContext[Any, Any], params: TaskParams) -> TaskRecord:
    """The checks every tasks/* method shares: extension declared, Mcp-Name header, known id."""
    require_client_extension(ctx, TASKS_EXT)  # -32021 with requiredCapabilities.extensions
    headers = getattr(ctx.request, "headers", None)
    if headers is not None:  # HTTP: SEP-2663 routes tasks/* on Mcp-Name = params.taskId
        names = headers.getlist("mcp-name") if hasattr(headers, "getlist") else [headers.get("mcp-name")]
        if len(names) != 1 or names[0] is None or _decode_header_value(names[0]) != params.task_id:
            raise MCPError(
                code=HEADER_MISMATCH,
                message=f"Header mismatch: Mcp-Name header value {names!r} does not match params.taskId",
            )
    task = TASKS.get(params.task_id)
    if task is None:
        raise MCPError(code=INVALID_PARAMS, message=f"Unknown task {params.task_id!r}", data={"taskId": params.task_id})
    return task


async def _tasks_get(ctx: ServerRequestContext[Any, Any], params: TaskParams) -> dict[str, Any]:
    return _lookup_task(ctx, params).detailed()


async def _tasks_update(ctx: ServerRequestContext[Any, Any], params: TaskUpdateParams) -> dict[str, Any]:
    task = _lookup_task(ctx, params)
    if task.status not in TERMINAL:
        task.update(params.input_responses or {})
    return {}


async def _tasks_cancel(ctx: ServerRequestContext[Any, Any], params: TaskParams) -> dict[str, Any]:
    task = _lookup_task(ctx, params)
    if task.status not in TERMINAL:  # idempotent on terminal tasks
        task.set_status("cancelled", "cancelled by tasks/cancel")
        if task.runner is not None:
            task.runner.cancel()
    return {}


class TasksExtension(Extension):
    """Serves tasks/get, tasks/update, tasks/cancel and turns calls of task-capable tools into tasks.

    A tool in TASK_TOOLS runs as a task when this request declared the extension in its
    clientCapabilities; otherwise it runs synchronously (taskSupport "optional") or is refused
    with -32021 (taskSupport "required").
    """

    identifier = TASKS_EXT

    def methods(self) -> Sequence[MethodBinding]:
        modern = frozenset(MODERN_PROTOCOL_VERSIONS)
        return (
            MethodBinding("tasks/get", TaskParams, _tasks_get, modern),
            MethodBinding("tasks/update", TaskUpdateParams, _tasks_update, modern),
            MethodBinding("tasks/cancel", TaskParams, _tasks_cancel, modern),
        )

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        spec = TASK_TOOLS.get(params.name)
        if spec is None:
            return await call_next(ctx)
        required, as_task = spec
        if not _client_declared_tasks(ctx):
            if required:
                require_client_extension(ctx, TASKS_EXT)  # raises -32021
            return await call_next(ctx)
        return await as_task(params)


# ---------------------------------------------------------------------------------- server


def json_schema_2020_12_tool(
    name: str | None = None,
    address: dict[str, Any] | None = None,
    contactMethod: str | None = None,  # noqa: N803 (wire names)
    phone: str | None = None,
    email: str | None = None,
) -> CallToolResult:
    given = {k: v for k, v in locals().items() if v is not None}
    return text(f"JSON Schema 2020-12 tool called with: {json.dumps(given, sort_keys=True)}")


# The tool's arguments are validated from the signature above; tools/list advertises the raw
# 2020-12 schema instead of the one pydantic derives (which would drop $defs, allOf, if/then/else).
JSON_SCHEMA_TOOL = Tool.from_function(
    json_schema_2020_12_tool,
    description="Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613, SEP-2106)",
).model_copy(update={"parameters": JSON_SCHEMA_2020_12_INPUT_SCHEMA})

srv = MCPServer(
    SERVER_NAME,
    version="1.0.0",
    instructions="mcp-warden's 2026-07-28 conformance upstream (test fixtures only).",
    tools=[JSON_SCHEMA_TOOL],
    extensions=[TasksExtension()],
    log_level="WARNING",
)

# Legacy clients read capabilities from the InitializeResult (listChanged defaults to false
# there); 2026 clients get them from server/discover, where they follow subscriptions/listen.
_base_init_options = srv._lowlevel_server.create_initialization_options


def _init_options(notification_options: Any = None, *args: Any, **kwargs: Any) -> Any:
    options = notification_options or NotificationOptions(tools_changed=True, prompts_changed=True)
    return _base_init_options(options, *args, **kwargs)


srv._lowlevel_server.create_initialization_options = _init_options  # type: ignore[method-assign]


# ------------------------------------------------------------------------- content tools


@srv.tool(structured_output=False)
def test_simple_text() -> str:
    """Tests simple text content response"""
    return "This is a simple text response for testing."


@srv.tool()
def test_image_content() -> CallToolResult:
    """Tests image content response"""
    return CallToolResult(content=[image()])


@srv.tool()
def test_audio_content() -> CallToolResult:
    """Tests audio content response"""
    return CallToolResult(content=[AudioContent(type="audio", data=TEST_AUDIO_BASE64, mime_type="audio/wav")])


@srv.tool()
def test_embedded_resource() -> CallToolResult:
    """Tests embedded resource content response"""
    resource = TextResourceContents(
        uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
    )
    return CallToolResult(content=[EmbeddedResource(type="resource", resource=resource)])


@srv.tool()
def test_multiple_content_types() -> CallToolResult:
    """Tests response with multiple content types (text, image, resource)"""
    resource = TextResourceContents(
        uri="test://mixed-content-resource",
        mime_type="application/json",
        text=json.dumps({"test": "data", "value": 123}),
    )
    return CallToolResult(
        content=[
            TextContent(type="text", text="Multiple content types test:"),
            image(),
            EmbeddedResource(type="resource", resource=resource),
        ]
    )


@srv.tool()
def test_error_handling() -> CallToolResult:
    """Tests error response handling"""
    return text("This tool intentionally returns an error for testing", error=True)


@srv.tool(structured_output=False)
async def test_tool_with_progress(ctx: Context) -> str:
    """Tests tool that reports progress notifications"""
    for step in (0, 50, 100):
        # On the call's own response stream; a no-op without _meta.progressToken.
        await ctx.report_progress(step, 100, f"Completed step {step} of 100")
        await anyio.sleep(0.05)
    return "Progress test completed"


async def _log_three(ctx: Context) -> None:
    # 2026: delivered only when this request set _meta["io.modelcontextprotocol/logLevel"]
    # (the SDK filters per request); legacy: every level, as logging/setLevel never filtered here.
    for message in ("Tool execution started", "Tool processing data", "Tool execution completed"):
        await ctx.info(message, logger_name="conformance-server")
        await anyio.sleep(0.05)


@srv.tool(structured_output=False)
async def test_logging_tool(ctx: Context) -> str:
    """Tests tool that emits log messages (only when the request opted in with a logLevel)"""
    await _log_three(ctx)
    return "Tool with logging executed successfully"


@srv.tool(structured_output=False)
async def test_tool_with_logging(ctx: Context) -> str:
    """Tests tool that emits log messages during execution (2025 suite name)"""
    await _log_three(ctx)
    return "Tool with logging executed successfully"


@srv.tool(structured_output=False)
async def test_reconnection(ctx: Context) -> str:
    """Tests SSE stream disconnection and client reconnection (2025 suite, SEP-1699)"""
    if not is_modern(ctx):
        await ctx.close_sse_stream()  # no-op unless the legacy transport can resume the stream
    await anyio.sleep(0.1)
    return (
        "Reconnection test completed successfully. If you received this, the client properly "
        "reconnected after stream closure."
    )


@srv.tool(structured_output=False)
def test_header_param(
    region: Annotated[
        str, Field(description="Routed as the Mcp-Param-Region header", json_schema_extra={"x-mcp-header": "Region"})
    ],
) -> str:
    """Tests SEP-2243 custom headers: `region` travels as Mcp-Param-Region on HTTP"""
    return f"region={region}"


# --------------------------------------------------------------------- list-change hooks

DYNAMIC_TOOL = "test_dynamic_tool"
DYNAMIC_PROMPT = "test_dynamic_prompt"


def _dynamic_tool() -> str:
    return "I come and go with test_trigger_tool_change"


def _dynamic_prompt() -> str:
    return "I come and go with test_trigger_prompt_change"


@srv.tool(structured_output=False)
async def test_trigger_tool_change(ctx: Context) -> str:
    """Adds or removes the tool test_dynamic_tool and announces that the tool list changed"""
    if any(t.name == DYNAMIC_TOOL for t in await srv.list_tools()):
        srv.remove_tool(DYNAMIC_TOOL)
        done = f"removed {DYNAMIC_TOOL}"
    else:
        srv.add_tool(
            _dynamic_tool, name=DYNAMIC_TOOL, description="A tool that comes and goes", structured_output=False
        )
        done = f"added {DYNAMIC_TOOL}"
    await ctx.notify_tools_changed()  # 2026: every subscriptions/listen stream that asked for toolsListChanged
    if not is_modern(ctx):
        await ctx.session.send_tool_list_changed()  # legacy: this session's notification channel
    return done


@srv.tool(structured_output=False)
async def test_trigger_prompt_change(ctx: Context) -> str:
    """Adds or removes the prompt test_dynamic_prompt and announces that the prompt list changed"""
    if any(p.name == DYNAMIC_PROMPT for p in await srv.list_prompts()):
        srv.remove_prompt(DYNAMIC_PROMPT)
        done = f"removed {DYNAMIC_PROMPT}"
    else:
        srv.prompt(name=DYNAMIC_PROMPT, description="A prompt that comes and goes")(_dynamic_prompt)
        done = f"added {DYNAMIC_PROMPT}"
    await ctx.notify_prompts_changed()
    if not is_modern(ctx):
        await ctx.session.send_prompt_list_changed()
    return done


# ------------------------------------------------------- client input (MRTR / legacy requests)


@srv.tool()
async def test_missing_capability(ctx: Context) -> CallToolResult | InputRequiredResult:
    """Needs the client's sampling capability: -32021 when the request did not declare it"""
    got = await ask(ctx, {"sampling": sampling_request("Say hello in one word.", 20)})
    if isinstance(got, InputRequiredResult):
        return got
    return text(f"LLM response: {sampled_text(got['sampling'])}")


@srv.tool()
async def test_streaming_elicitation(ctx: Context) -> CallToolResult | InputRequiredResult:
    """Needs user input: asks through the result (2026 InputRequiredResult), never a request on the stream"""
    await ctx.report_progress(0, 1, "asking the user")
    got = await ask(ctx, {"user_name": elicit_request("What is your name?", {"name": {"type": "string"}})})
    if isinstance(got, InputRequiredResult):
        return got
    return text(f"Hello, {elicited(got['user_name'], 'name') or 'stranger'}!")


@srv.tool()
async def test_input_required_result_elicitation(ctx: Context) -> CallToolResult | InputRequiredResult:
    """MRTR: asks for the user's name (input key user_name), then greets them"""
    got = await ask(ctx, {"user_name": elicit_request("What is your name?", {"name": {"type": "string"}})})
    if isinstance(got, InputRequiredResult):
        return got
    answer: ElicitResult = got["user_name"]
    name = elicited(answer, "name")
    return text(f"Hello, {name}!") if name is not None else text(f"No name given (elicitation {answer.action})")


@srv.tool()
async def test_input_required_result_sampling(ctx: Context) -> CallToolResult | InputRequiredResult:
    """MRTR: asks the client's LLM a question (input key capital_question)"""
    got = await ask(ctx, {"capital_question": sampling_request("What is the capital of France?")})
    if isinstance(got, InputRequiredResult):
        return got
    return text(f"LLM response: {sampled_text(got['capital_question'])}")


@srv.tool()
async def test_input_required_result_list_roots(ctx: Context) -> CallToolResult | InputRequiredResult:
    """MRTR: asks for the client's roots (input key client_roots)"""
    got = await ask(ctx, {"client_roots": roots_request()})
    if isinstance(got, InputRequiredResult):
        return got
    return text(f"Client roots: {roots_text(got['client_roots'])}")


@srv.tool()
async def test_input_required_result_request_state(ctx: Context) -> CallToolResult | InputRequiredResult:
    """MRTR: asks for a confirmation and round-trips a requestState; the answer says state-ok"""
    state = "request_state/confirm"  # plaintext; the SDK seals it (AES-GCM) on the wire
    got = await ask(ctx, {"confirm": elicit_request("Please confirm", {"ok": {"type": "boolean"}})}, state)
    if isinstance(got, InputRequiredResult):
        return got
    # Legacy calls carry no requestState: there the state never left the process.
    checked = "state-ok" if ctx.request_state == state or not is_modern(ctx) else "state-missing"
    return text(f"{checked}: confirmed={elicited(got['confirm'], 'ok')}")


@srv.tool()
async def test_input_required_result_multiple_inputs(ctx: Context) -> CallToolResult | InputRequiredResult:
    """MRTR: asks for an elicitation, a sampling and a roots/list answer at once"""
    got = await ask(
        ctx,
        {
            "user_name": elicit_request("What is your name?", {"name": {"type": "string"}}),
            "greeting": sampling_request("Generate a greeting", 50),
            "client_roots": roots_request(),
        },
        "multiple_inputs/1",
    )
    if isinstance(got, InputRequiredResult):
        return got
    return text(
        f"name={elicited(got['user_name'], 'name')}; greeting={sampled_text(got['greeting'])}; "
        f"roots={roots_text(got['client_roots'])}"
    )


@srv.tool()
async def test_input_required_result_multi_round(ctx: Context) -> CallToolResult | InputRequiredResult:
    """MRTR over three rounds: step1 (name), then step2 (color) with a new requestState, then done"""
    step1 = {"step1": elicit_request("Step 1: What is your name?", {"name": {"type": "string"}})}
    step2 = {"step2": elicit_request("Step 2: What is your favorite color?", {"color": {"type": "string"}})}
    if not is_modern(ctx):  # legacy: two elicitation/create requests in a row
        name = elicited((await ask(ctx, step1))["step1"], "name")  # type: ignore[index]
        color = elicited((await ask(ctx, step2))["step2"], "color")  # type: ignore[index]
        return text(f"Hello {name}, your favorite color is {color}.")
    # 2026: the state carries what earlier rounds learned (sealed by the SDK, so it can be trusted).
    state = ctx.request_state or ""
    if state.startswith("multi_round/2:"):
        name = state.removeprefix("multi_round/2:")
        got = await ask(ctx, step2, state)
        if isinstance(got, InputRequiredResult):
            return got
        return text(f"Hello {name}, your favorite color is {elicited(got['step2'], 'color')}.")
    got = await ask(ctx, step1, "multi_round/1")
    if isinstance(got, InputRequiredResult):
        return got
    name = elicited(got["step1"], "name") or "stranger"
    require(ctx, "elicitation")
    return InputRequiredResult(input_requests=dict(step2), request_state=f"multi_round/2:{name}")


@srv.tool()
async def test_input_required_result_tampered_state(ctx: Context) -> CallToolResult | InputRequiredResult:
    """MRTR with an integrity-protected requestState: a tampered state is rejected (-32602, by the SDK)"""
    state = "tampered_state/confirm"
    got = await ask(ctx, {"confirm": elicit_request("Please confirm", {"ok": {"type": "boolean"}})}, state)
    if isinstance(got, InputRequiredResult):
        return got
    return text(f"state-ok: confirmed={elicited(got['confirm'], 'ok')}")


@srv.tool()
async def test_input_required_result_capabilities(ctx: Context) -> CallToolResult | InputRequiredResult:
    """MRTR that only asks for what the request's clientCapabilities allow"""
    offers: dict[str, InputRequest] = {
        "user_name": elicit_request("What is your name?", {"name": {"type": "string"}}),
        "greeting": sampling_request("Generate a greeting", 50),
        "client_roots": roots_request(),
    }
    wanted = {k: r for k, r in offers.items() if declared(ctx, _NEEDS[type(r)][0])}
    if not wanted:
        return text("The client declared none of elicitation, sampling, roots: nothing to ask.")
    got = await ask(ctx, wanted, "capabilities/" + ",".join(sorted(wanted)))
    if isinstance(got, InputRequiredResult):
        return got
    return text("Received: " + ", ".join(sorted(got)))


# 2025-suite names (server->client requests there); on 2026 they ask through MRTR instead.


@srv.tool()
async def test_sampling(
    prompt: Annotated[str, Field(description="The prompt to send to the LLM")], ctx: Context
) -> CallToolResult | InputRequiredResult:
    """Tests server-initiated sampling (LLM completion request)"""
    got = await ask(ctx, {"sampling": sampling_request(prompt)})
    if isinstance(got, InputRequiredResult):
        return got
    return text(f"LLM response: {sampled_text(got['sampling'])}")


def _result_text(prefix: str, answer: ElicitResult) -> CallToolResult:
    return text(f"{prefix}action={answer.action}, content={json.dumps(answer.content or {}, separators=(',', ':'))}")


@srv.tool()
async def test_elicitation(
    message: Annotated[str, Field(description="The message to show the user")], ctx: Context
) -> CallToolResult | InputRequiredResult:
    """Tests server-initiated elicitation (user input request)"""
    request = elicit_request(
        message,
        {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
    )
    got = await ask(ctx, {"user_response": request})
    return got if isinstance(got, InputRequiredResult) else _result_text("User response: ", got["user_response"])


@srv.tool()
async def test_elicitation_sep1034_defaults(ctx: Context) -> CallToolResult | InputRequiredResult:
    """Tests elicitation with default values per SEP-1034"""
    request = elicit_request(
        "Please review and update the form fields with defaults",
        {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
        required=[],
    )
    got = await ask(ctx, {"defaults": request})
    return got if isinstance(got, InputRequiredResult) else _result_text("Elicitation completed: ", got["defaults"])


@srv.tool()
async def test_elicitation_sep1330_enums(ctx: Context) -> CallToolResult | InputRequiredResult:
    """Tests elicitation with enum schema improvements per SEP-1330"""
    titled = lambda *pairs: [{"const": v, "title": t} for v, t in pairs]  # noqa: E731
    request = elicit_request(
        "Please select options from the enum fields",
        {
            "untitledSingle": {
                "type": "string",
                "description": "Select one option",
                "enum": ["option1", "option2", "option3"],
            },
            "titledSingle": {
                "type": "string",
                "description": "Select one option with titles",
                "oneOf": titled(("value1", "First Option"), ("value2", "Second Option"), ("value3", "Third Option")),
            },
            "legacyEnum": {
                "type": "string",
                "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select multiple options",
                "minItems": 1,
                "maxItems": 3,
                "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
            },
            "titledMulti": {
                "type": "array",
                "description": "Select multiple options with titles",
                "minItems": 1,
                "maxItems": 3,
                "items": {
                    "anyOf": titled(("value1", "First Choice"), ("value2", "Second Choice"), ("value3", "Third Choice"))
                },
            },
        },
        required=[],
    )
    got = await ask(ctx, {"enums": request})
    return got if isinstance(got, InputRequiredResult) else _result_text("Elicitation completed: ", got["enums"])


# ----------------------------------------------------------------- tasks extension fixtures
# Registered as ordinary tools (that is their synchronous path); TASK_TOOLS says which of them
# TasksExtension runs as tasks, and how.


@srv.tool(structured_output=False)
def greet(name: str) -> str:
    """Sync-only: returns Hello, {name}!"""
    return f"Hello, {name}!"


@srv.tool(structured_output=False)
async def slow_compute(seconds: float = 1, label: str = "job") -> str:
    """Task-capable: sleeps `seconds`, then reports (a task when the client declared the tasks extension)"""
    await anyio.sleep(seconds)
    return f"Computed {label} in {seconds}s"


@srv.tool()
async def failing_job() -> CallToolResult:
    """Task required: always ends in a tool execution error (isError)"""
    await anyio.sleep(0.5)
    return text("failing_job failed on purpose", error=True)


@srv.tool()
async def protocol_error_job() -> CallToolResult:
    """Task-capable: fails with a protocol-level (JSON-RPC) error"""
    raise MCPError(code=INTERNAL_ERROR, message="protocol_error_job failed on purpose")


@srv.tool()
async def confirm_delete(filename: str, ctx: Context) -> CallToolResult | InputRequiredResult:
    """Task-capable: asks the user to confirm deleting `filename` (one elicitation)"""
    got = await ask(ctx, {"confirm": _confirm_request(filename)})
    if isinstance(got, InputRequiredResult):
        return got
    return _deleted(filename, got["confirm"])


@srv.tool()
async def multi_input(ctx: Context) -> CallToolResult | InputRequiredResult:
    """Task-capable: asks two questions at once (two elicitations pending in parallel)"""
    got = await ask(ctx, _two_questions(), "multi_input/1")
    if isinstance(got, InputRequiredResult):
        return got
    return text(f"first={elicited(got['first'], 'name')}, second={elicited(got['second'], 'name')}")


@srv.tool()
async def test_tool_with_task(ctx: Context) -> CallToolResult:
    """Task required: MRTR asks for user_name first, then the work runs as a task"""
    raise MCPError(code=INTERNAL_ERROR, message="test_tool_with_task only runs as a task")  # see TasksExtension


def _confirm_request(filename: str) -> ElicitRequest:
    return elicit_request(f"Delete {filename}?", {"confirm": {"type": "boolean"}})


def _deleted(filename: str, answer: Any) -> CallToolResult:
    ok = isinstance(answer, ElicitResult) and answer.action == "accept" and bool((answer.content or {}).get("confirm"))
    return text(f"Deleted {filename}" if ok else f"Kept {filename}")


def _two_questions() -> dict[str, InputRequest]:
    return {
        "first": elicit_request("First name?", {"name": {"type": "string"}}),
        "second": elicit_request("Second name?", {"name": {"type": "string"}}),
    }


def _args(params: CallToolRequestParams) -> dict[str, Any]:
    return params.arguments or {}


async def _slow_compute_task(params: CallToolRequestParams) -> dict[str, Any]:
    seconds, label = float(_args(params).get("seconds", 1)), str(_args(params).get("label", "job"))

    async def body(task: TaskRecord) -> CallToolResult:
        await anyio.sleep(seconds)
        return text(f"Computed {label} in {seconds:g}s")

    return start_task(body)


async def _failing_job_task(params: CallToolRequestParams) -> dict[str, Any]:
    async def body(task: TaskRecord) -> CallToolResult:
        await anyio.sleep(0.5)
        return text("failing_job failed on purpose", error=True)

    return start_task(body)


async def _protocol_error_task(params: CallToolRequestParams) -> dict[str, Any]:
    async def body(task: TaskRecord) -> CallToolResult:
        await anyio.sleep(0.1)
        raise MCPError(code=INTERNAL_ERROR, message="protocol_error_job failed on purpose")

    return start_task(body)


async def _confirm_delete_task(params: CallToolRequestParams) -> dict[str, Any]:
    filename = str(_args(params).get("filename", "file"))

    async def body(task: TaskRecord) -> CallToolResult:
        answers = await task.ask({"confirm": _confirm_request(filename)})
        return _deleted(filename, answers["confirm"])

    return start_task(body)


async def _multi_input_task(params: CallToolRequestParams) -> dict[str, Any]:
    async def body(task: TaskRecord) -> CallToolResult:
        got = await task.ask(_two_questions())
        names = {k: elicited(v, "name") if isinstance(v, ElicitResult) else None for k, v in got.items()}
        return text(f"first={names['first']}, second={names['second']}")

    return start_task(body)


async def _tool_with_task(params: CallToolRequestParams) -> HandlerResult:
    # MRTR before the task exists (resolved synchronously), then a task that uses the answer.
    answer = (params.input_responses or {}).get("user_name")
    if not isinstance(answer, ElicitResult):
        question = elicit_request("What is your name?", {"name": {"type": "string"}})
        return InputRequiredResult(input_requests={"user_name": question})
    name = elicited(answer, "name") or "stranger"

    async def body(task: TaskRecord) -> CallToolResult:
        await anyio.sleep(0.2)
        return text(f"Hello, {name}! (gathered before the task started)")

    return start_task(body)


# name -> (taskSupport required?, start it as a task)
TASK_TOOLS: dict[str, tuple[bool, Callable[[CallToolRequestParams], Awaitable[HandlerResult]]]] = {
    "slow_compute": (False, _slow_compute_task),
    "failing_job": (True, _failing_job_task),
    "protocol_error_job": (False, _protocol_error_task),
    "confirm_delete": (False, _confirm_delete_task),
    "multi_input": (False, _multi_input_task),
    "test_tool_with_task": (True, _tool_with_task),
}


# --------------------------------------------------------------- consent envelope (--consent)

ISSUED: dict[str, tuple[int, str]] = {}  # action_id -> (amount, to); single use


def transfer_funds(amount: int, to: str, confirmation_token: str | None = None) -> CallToolResult:
    """Transfer money. Needs a human's confirmation first."""
    if confirmation_token is None:
        action = secrets.token_hex(16)
        ISSUED[action] = (amount, to)
        if os.environ.get("ENVELOPE_LOG"):
            with open(os.environ["ENVELOPE_LOG"], "a") as f:
                f.write(action + "\n")
        envelope = {
            "ok": False,
            "requires_confirmation": True,
            "action_id": action,
            "summary": f"Transfer {amount} to {to}",
            "expires_in_seconds": 60,
        }
        return CallToolResult(content=[TextContent(type="text", text=json.dumps(envelope))], structured_content=envelope)
    if ISSUED.pop(confirmation_token, None) != (amount, to):
        return text("invalid, used or expired confirmation_token", error=True)
    return text(f"transferred {amount} to {to}")


async def _transfer_funds_task(params: CallToolRequestParams) -> dict[str, Any]:
    args = _args(params)

    async def body(task: TaskRecord) -> CallToolResult:
        await anyio.sleep(0.05)
        return transfer_funds(int(args.get("amount", 0)), str(args.get("to", "")), args.get("confirmation_token"))

    return start_task(body)


def enable_consent_tools() -> None:
    srv.add_tool(transfer_funds)
    TASK_TOOLS["transfer_funds"] = (False, _transfer_funds_task)


# ------------------------------------------------------------------------------ resources


@srv.resource(
    "test://static-text",
    name="static-text",
    title="Static Text Resource",
    description="A static text resource for testing",
    mime_type="text/plain",
)
def static_text() -> str:
    return "This is the content of the static text resource."


@srv.resource(
    "test://static-binary",
    name="static-binary",
    title="Static Binary Resource",
    description="A static binary resource (image) for testing",
    mime_type="image/png",
)
def static_binary() -> bytes:
    return base64.b64decode(TEST_IMAGE_BASE64)


@srv.resource(
    "test://template/{id}/data",
    name="template",
    title="Resource Template",
    description="A resource template with parameter substitution",
    mime_type="application/json",
)
def template(id: str) -> str:
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


# ------------------------------------------------------------------------------- prompts


@srv.prompt(title="Simple Test Prompt", description="A simple prompt without arguments")
def test_simple_prompt() -> str:
    return "This is a simple prompt for testing."


@srv.prompt(title="Prompt With Arguments", description="A prompt with required arguments")
def test_prompt_with_arguments(
    arg1: Annotated[str, Field(description="First test argument")],
    arg2: Annotated[str, Field(description="Second test argument")],
) -> str:
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@srv.prompt(title="Prompt With Embedded Resource", description="A prompt that includes an embedded resource")
def test_prompt_with_embedded_resource(
    resourceUri: Annotated[str, Field(description="URI of the resource to embed")],  # noqa: N803 (wire name)
) -> list[UserMessage]:
    resource = TextResourceContents(
        uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
    )
    return [
        UserMessage(EmbeddedResource(type="resource", resource=resource)),
        UserMessage("Please process the embedded resource above."),
    ]


@srv.prompt(title="Prompt With Image", description="A prompt that includes image content")
def test_prompt_with_image() -> list[UserMessage]:
    return [UserMessage(image()), UserMessage("Please analyze the image above.")]


@srv.prompt(description="MRTR on prompts/get: asks which context to use (input key user_context)")
async def test_input_required_result_prompt(ctx: Context) -> list[UserMessage] | InputRequiredResult:
    request = elicit_request("What context should the prompt use?", {"context": {"type": "string"}})
    got = await ask(ctx, {"user_context": request})
    if isinstance(got, InputRequiredResult):
        return got
    context = elicited(got["user_context"], "context") or "(none)"
    return [UserMessage(f"Answer using this context: {context}")]


# ---------------------------------------------------------------------------- completion

COMPLETIONS = {
    ("ref/prompt", "test_prompt_with_arguments", "arg1"): ["paris", "park", "party", "test", "testValue1"],
    ("ref/prompt", "test_prompt_with_arguments", "arg2"): ["testValue2", "value"],
    ("ref/resource", "test://template/{id}/data", "id"): ["1", "2", "3", "123"],
}


@srv.completion()
async def complete(
    ref: PromptReference | ResourceTemplateReference, argument: CompletionArgument, context: CompletionContext | None
) -> Completion:
    ident = ref.name if isinstance(ref, PromptReference) else ref.uri
    values = [v for v in COMPLETIONS.get((ref.type, ident, argument.name), []) if v.startswith(argument.value)]
    return Completion(values=values, total=len(values), has_more=False)


# ----------------------------------------------- legacy-only methods (2025 clients, -32601 on 2026)

_lowlevel = srv._lowlevel_server


async def _set_level(ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
    return EmptyResult()  # accepted; messages are not filtered per session


async def _subscribe(ctx: Any, params: SubscribeRequestParams | UnsubscribeRequestParams) -> EmptyResult:
    return EmptyResult()  # the fixture's resources never change


_lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, _set_level)
_lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, _subscribe)
_lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, _subscribe)


# ---------------------------------------------------------------------------------- main


class MemoryEventStore(EventStore):
    """Legacy (2025) HTTP only: keeps SSE events so a client can resume with Last-Event-ID.

    With an event store the SDK sends priming events and lets test_reconnection close a POST
    stream mid-call (SEP-1699). 2026-07-28 has no resumability; modern requests never use it.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._events: deque[tuple[str, str, Any]] = deque(maxlen=limit)  # (event id, stream id, message)
        self._seq = 0

    async def store_event(self, stream_id: str, message: Any) -> str:
        self._seq += 1
        event_id = f"{stream_id}_{self._seq:010d}"
        self._events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: Any) -> str | None:
        found = next((stream for eid, stream, _ in self._events if eid == last_event_id), None)
        if found is None:
            return None
        after = False
        for event_id, stream_id, message in list(self._events):
            if after and stream_id == found and message is not None:  # priming events are not replayed
                await send_callback(EventMessage(message, event_id))
            after = after or event_id == last_event_id
        return found


async def serve_http(port: int) -> None:
    import uvicorn

    # Bind first, so that a busy port is one clear error and PORT 0 yields the real port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sys.exit(f"conformance_server: cannot listen on 127.0.0.1:{port}: {exc.strerror}")
    sock.listen(128)

    # One ASGI app for both eras: the SDK routes on the MCP-Protocol-Version header (2026 requests
    # are single exchanges; legacy ones get stateful sessions with Mcp-Session-Id). Host/Origin
    # checks (DNS-rebinding protection) are on for 127.0.0.1.
    app = srv.streamable_http_app(event_store=MemoryEventStore(), retry_interval=1000)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        while not server.started:
            await anyio.sleep(0.02)
        print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--http", type=int, metavar="PORT", help="serve Streamable HTTP on 127.0.0.1:PORT/mcp (0 = any free port)"
    )
    parser.add_argument("--consent", action="store_true", help="add the consent-envelope tool transfer_funds")
    args = parser.parse_args()
    if args.consent:
        enable_consent_tools()
    if args.http is None:
        srv.run()  # stdio
    else:
        anyio.run(serve_http, args.http)


if __name__ == "__main__":
    main()
