#!/usr/bin/env node
// A scripted, OpenAI-compatible fake model for mcp-warden's OpenClaw tests: real OpenClaw agent
// turns with no real model. Node >= 22, no dependencies.
//
//   FAKE_MODEL_LOG=/tmp/requests.jsonl node fake-model.mjs [--port N] [--exit-on-eof]
//
// Prints exactly `listening on http://127.0.0.1:PORT` on stdout once bound (port 0 by default:
// any free port). Point an OpenClaw provider at it with `api: "openai-completions"` and
// `baseUrl: "http://127.0.0.1:PORT/v1"`.
//
// API surface (what OpenClaw 2026.9.6 uses for `openai-completions`):
//   POST /v1/chat/completions   streaming (SSE, `stream: true`, the only mode OpenClaw uses) or
//                               plain JSON (`stream` absent/false)
//   GET  /v1/models             one model, FAKE_MODEL_ID (default "fake-model")
//   anything else               404 (still logged)
//
// Script: the command is the last user message of the conversation that contains one of
//   CALL <tool-name> <json-args>   answer with one tool call of that tool, if the request offers
//                                  it; otherwise the text `NO TOOL <tool-name>`. Once the turn
//                                  holds that call (at most one per command, so it cannot loop),
//                                  the answer is the text `RESULT: <text of the last tool result>`.
//   CALL! <tool-name> <json-args>  the same, but the tool call is made even when the request
//                                  does not offer that tool (a model that makes names up;
//                                  OpenClaw answers `Tool <name> not found` without any MCP call)
//   LIST TOOLS                     the text `TOOLS: a, b, c` (the offered tool names, sorted;
//                                  `TOOLS: (none)` when none)
//   SAY <text>                     the text <text>
// Anything else (e.g. OpenClaw's own side requests such as titles) gets the text `OK`.
// A command starts a line of a user message, optionally after a bracketed prefix (OpenClaw sends
// `[Sun 2026-12-06 10:56 UTC] <message>` followed by a `Runtime: …` paragraph); it runs to the end
// of that line, so keep the JSON arguments on one line.
//
// Every request is appended to the file FAKE_MODEL_LOG (if set) as one JSON object per line:
// {"t":ms,"method","path","body":<parsed JSON or raw text>}; the answer follows as
// {"t":ms,"reply":{"text"|"tool_call"}} so a test can see both sides.
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';

const argv = process.argv.slice(2);
const argValue = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const PORT = Number(argValue('--port') ?? process.env.FAKE_MODEL_PORT ?? 0);
const LOG = process.env.FAKE_MODEL_LOG;
const MODEL_ID = process.env.FAKE_MODEL_ID || 'fake-model';

let seq = 0;
const log = (obj) => {
  if (LOG) appendFileSync(LOG, JSON.stringify({ t: Date.now(), ...obj }) + '\n');
};

/// The text of a message's content: a string, or an array of parts ({type:"text",text}).
function textOf(content) {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((p) => (typeof p === 'string' ? p : p?.type === 'text' || typeof p?.text === 'string' ? p.text : ''))
      .join('');
  }
  return typeof content.text === 'string' ? content.text : JSON.stringify(content);
}

// A command starts a line, optionally after OpenClaw's `[Sun 2026-12-06 10:56 UTC] ` prefix.
const COMMAND = /^(?:\[[^\]\n]*\][ \t]*)?(CALL(!?)[ \t]+(\S+)(?:[ \t]+([^\n]*))?|LIST TOOLS|SAY[ \t]+([^\n]*))/m;

/// The first command in a user message, or null.
function commandIn(text) {
  const m = text.match(COMMAND);
  if (!m) return null;
  if (m[1].startsWith('CALL')) return { kind: 'call', force: m[2] === '!', tool: m[3], args: (m[4] ?? '').trim() };
  if (m[1] === 'LIST TOOLS') return { kind: 'list' };
  return { kind: 'say', text: m[5] };
}

/// What to answer: {text} or {toolCall:{name, arguments}}.
function decide(body) {
  const messages = Array.isArray(body.messages) ? body.messages : [];
  const offered = (Array.isArray(body.tools) ? body.tools : [])
    .map((t) => t?.function?.name ?? t?.name)
    .filter((n) => typeof n === 'string');
  let at = -1;
  let cmd = null;
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i]?.role !== 'user') continue;
    const c = commandIn(textOf(messages[i].content));
    if (c) {
      at = i;
      cmd = c;
      break;
    }
  }
  if (!cmd) return { text: 'OK' };
  if (cmd.kind === 'say') return { text: cmd.text };
  if (cmd.kind === 'list') {
    return { text: `TOOLS: ${offered.length ? [...offered].sort().join(', ') : '(none)'}` };
  }
  // CALL: at most one tool call per command. Once this turn (the messages after the command)
  // holds a tool call or a tool result, the answer is final, whatever OpenClaw appended since.
  const after = messages.slice(at + 1);
  const called = after.some((m) => m?.role === 'assistant' && Array.isArray(m.tool_calls) && m.tool_calls.length > 0);
  const results = after.filter((m) => m?.role === 'tool');
  if (called || results.length > 0) {
    const last = results.at(-1);
    return { text: `RESULT: ${last ? textOf(last.content) : '(no tool result)'}` };
  }
  if (!cmd.force && !offered.includes(cmd.tool)) return { text: `NO TOOL ${cmd.tool}` };
  let args = cmd.args || '{}';
  try {
    args = JSON.stringify(JSON.parse(args));
  } catch {
    return { text: `BAD ARGS ${cmd.args}` };
  }
  return { toolCall: { name: cmd.tool, arguments: args } };
}

function usage(body) {
  const prompt = Math.ceil(JSON.stringify(body.messages ?? []).length / 4);
  return { prompt_tokens: prompt, completion_tokens: 8, total_tokens: prompt + 8 };
}

function chatCompletion(res, body) {
  const reply = decide(body);
  log({ reply: reply.toolCall ? { tool_call: reply.toolCall } : { text: reply.text } });
  const id = `chatcmpl-fake-${++seq}`;
  const created = Math.floor(Date.now() / 1000);
  const model = body.model ?? MODEL_ID;
  const toolCall = reply.toolCall && {
    id: `call_fake_${seq}`,
    type: 'function',
    function: { name: reply.toolCall.name, arguments: reply.toolCall.arguments },
  };
  const finish = toolCall ? 'tool_calls' : 'stop';
  if (!body.stream) {
    const message = toolCall
      ? { role: 'assistant', content: null, tool_calls: [toolCall] }
      : { role: 'assistant', content: reply.text };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id, object: 'chat.completion', created, model, choices: [{ index: 0, message, finish_reason: finish }], usage: usage(body) }));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  const chunk = (choices, extra = {}) =>
    res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices, ...extra })}\n\n`);
  if (toolCall) {
    chunk([{ index: 0, delta: { role: 'assistant', content: null, tool_calls: [{ index: 0, ...toolCall }] }, finish_reason: null }]);
  } else {
    chunk([{ index: 0, delta: { role: 'assistant', content: reply.text }, finish_reason: null }]);
  }
  chunk([{ index: 0, delta: {}, finish_reason: finish }]);
  if (body.stream_options?.include_usage) chunk([], { usage: usage(body) });
  res.write('data: [DONE]\n\n');
  res.end();
}

const server = createServer((req, res) => {
  const parts = [];
  req.on('data', (d) => parts.push(d));
  req.on('end', () => {
    const raw = Buffer.concat(parts).toString('utf8');
    let body = raw;
    try {
      body = raw ? JSON.parse(raw) : null;
    } catch {
      /* keep the raw text */
    }
    const path = (req.url ?? '/').split('?')[0];
    log({ method: req.method, path, body });
    if (req.method === 'GET' && /^(\/v1)?\/models\/?$/.test(path)) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [{ id: MODEL_ID, object: 'model', created: 0, owned_by: 'fake' }] }));
      return;
    }
    if (req.method === 'POST' && /^(\/v1)?\/chat\/completions\/?$/.test(path) && body && typeof body === 'object') {
      try {
        chatCompletion(res, body);
      } catch (e) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: String(e), type: 'fake_model_error' } }));
      }
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: `fake model: no ${req.method} ${path}`, type: 'not_found' } }));
  });
});

server.listen(PORT, '127.0.0.1', () => {
  process.stdout.write(`listening on http://127.0.0.1:${server.address().port}\n`);
});
const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections(); // OpenClaw keeps its connections alive
  setTimeout(() => process.exit(0), 500).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (argv.includes('--exit-on-eof')) {
  process.stdin.on('end', stop);
  process.stdin.resume();
}
