#!/usr/bin/env node
// A dual-era MCP upstream for mcp-warden's tests, written with the official TypeScript SDK v2
// (@modelcontextprotocol/server 2.4.0, @modelcontextprotocol/node 2.1.2 for the Node adapters).
// It speaks MCP 2026-07-28 (stateless: server/discover, per-request `_meta` envelope,
// multi round-trip results, subscriptions/listen) AND 2025-11-25 (initialize, sessions,
// server->client requests), from one server definition.
//
// Usage:
//   node modern-server.mjs stdio
//   node modern-server.mjs http [--port N]      (N = 0 or absent: pick a free port)
//
// 2026-07-28 is opt-in in SDK v2: a `McpServer` connected by hand to a transport speaks the
// 2025 protocol only. The SDK's serving entries turn it on:
//   * stdio: `serveStdio(factory)` (@modelcontextprotocol/server/stdio). The opening exchange
//     picks the era (server/discover -> 2026-07-28, initialize -> 2025) and one instance from
//     the factory is pinned to the connection.
//   * http: `createMcpHandler(factory, { legacy: 'reject' })` serves 2026-07-28 with a fresh
//     instance per request; requests that `isLegacyRequest()` classifies as 2025-era go to a
//     sessionful `NodeStreamableHTTPServerTransport` wiring instead (one instance per
//     Mcp-Session-Id), as the SDK's own conformance everythingServer.ts does. (The handler's
//     default `legacy: 'stateless'` would serve 2025 without sessions, where elicitation
//     cannot work.)
//
// http mode: Streamable HTTP at path /mcp, bound to 127.0.0.1 only; non-loopback Host or
// Origin -> 403 (the SDK's Node guards). Once listening it prints exactly one line on stdout:
//   listening on http://127.0.0.1:PORT/mcp
// 2025 sessions: POST initialize without a session id opens one; another request without
// Mcp-Session-Id -> 400; unknown session -> 404; DELETE ends a session.
// Diagnostics go to stderr. SIGINT/SIGTERM end it; in stdio mode so does the end of stdin.
// Exit codes: 2 for bad arguments, 1 if it cannot listen.
//
// What it exposes (server info {"name":"mcp-warden-modern-upstream","version":"1.0.0"}):
//   tool echo(message)          -> text = message
//   tool ask_name()             -> asks the client for {name: string} (2026: an
//                                  input_required result the client answers by retrying;
//                                  2025: the SDK's legacy shim sends elicitation/create on the
//                                  session), then text "hello NAME". An answer without a string
//                                  `name` (declined, or other fields) -> isError text
//                                  "no name: action=A, content=JSON".
//   tool grow()                 -> registers tool grown_N (N = 1, 2, ... per process) and
//                                  announces it: 2026 to open subscriptions/listen streams,
//                                  2025 as notifications/tools/list_changed; text "grown_N"
//   tool slow(steps, delay_ms)  -> waits delay_ms per step, progress after each step
//                                  (when the call has a progressToken); text
//                                  "done after N steps". Defaults: steps 3, delay_ms 10.
//   resource modern://readme    -> text/plain
//   prompt greet(name)          -> one user message "Please greet NAME."
// grown_N tools are process-wide: every connection/session of this process lists them.

import { randomUUID } from 'node:crypto';
import http from 'node:http';
import {
  McpServer,
  createMcpHandler,
  inputRequired,
  inputResponse,
  isInitializeRequest,
  isLegacyRequest,
} from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import {
  NodeStreamableHTTPServerTransport,
  localhostHostValidation,
  localhostOriginValidation,
  toNodeHandler,
  toWebRequest,
} from '@modelcontextprotocol/node';
import { z } from 'zod';

const SERVER_INFO = { name: 'mcp-warden-modern-upstream', version: '1.0.0' };
const README_URI = 'modern://readme';
const README_TEXT = 'mcp-warden modern upstream: a dual-era (2026-07-28 + 2025-11-25) test server.\n';
const NAME_SCHEMA = {
  type: 'object',
  properties: { name: { type: 'string', description: 'Your name' } },
  required: ['name'],
};

const log = (...args) => console.error('[modern-server]', ...args);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const text = (t) => ({ content: [{ type: 'text', text: t }] });

// ---------------------------------------------------------------- shared state

// Tools added by grow(), numbered per process. Every instance the factory builds lists them all.
let grownCount = 0;
// Long-lived instances (2025 HTTP sessions, the stdio connection's instance): grow() registers
// the new tool on each, and the SDK announces it on that connection (2025:
// notifications/tools/list_changed; a 2026 stdio connection: its subscriptions/listen streams).
const liveServers = new Set();
// 2026 over HTTP: per-request instances hold no connection; the handler's bus feeds the open
// subscriptions/listen streams. Set in http mode.
let announceToModernListeners = () => {};

function addGrownTool(server, n) {
  server.registerTool(
    `grown_${n}`,
    { description: `Tool number ${n} added by grow()`, inputSchema: z.object({}) },
    async () => text(`grown_${n} here`),
  );
}

// ---------------------------------------------------------------- the server definition

// One definition for both eras (the SDK's serving entries call it per request, per 2025 session
// or per stdio connection).
function createServer() {
  const server = new McpServer(SERVER_INFO, {
    capabilities: { tools: { listChanged: true }, resources: {}, prompts: {} },
  });

  server.registerTool(
    'echo',
    { description: 'Returns its message', inputSchema: z.object({ message: z.string() }) },
    async ({ message }) => text(message),
  );

  // Written once in the 2026 multi round-trip style; on 2025 connections the SDK's legacy shim
  // turns the input request into a real elicitation/create and re-enters the handler.
  server.registerTool(
    'ask_name',
    { description: 'Asks the client for a name (elicitation), then greets it', inputSchema: z.object({}) },
    async (_args, ctx) => {
      const answer = inputResponse(ctx.mcpReq.inputResponses, 'name');
      if (answer.kind === 'missing') {
        return inputRequired({
          inputRequests: {
            name: inputRequired.elicit({ message: 'What is your name?', requestedSchema: NAME_SCHEMA }),
          },
        });
      }
      const name = answer.kind === 'elicit' && answer.action === 'accept' ? answer.content?.name : undefined;
      if (typeof name === 'string') return text(`hello ${name}`);
      const action = answer.kind === 'elicit' ? answer.action : answer.kind;
      return {
        content: [{ type: 'text', text: `no name: action=${action}, content=${JSON.stringify(answer.content ?? {})}` }],
        isError: true,
      };
    },
  );

  server.registerTool(
    'grow',
    { description: 'Registers a new tool grown_N and announces the tool list change', inputSchema: z.object({}) },
    async () => {
      const n = ++grownCount;
      for (const live of liveServers) addGrownTool(live, n);
      announceToModernListeners();
      return text(`grown_${n}`);
    },
  );

  server.registerTool(
    'slow',
    {
      description: 'Waits delay_ms per step and reports progress after each step',
      inputSchema: z.object({
        steps: z.number().int().min(0).max(100).default(3),
        delay_ms: z.number().int().min(0).max(10000).default(10),
      }),
    },
    async ({ steps, delay_ms }, ctx) => {
      const progressToken = ctx.mcpReq._meta?.progressToken;
      for (let i = 1; i <= steps; i++) {
        await sleep(delay_ms); // the tool's own semantics: a slow operation
        if (progressToken !== undefined) {
          await ctx.mcpReq.notify({
            method: 'notifications/progress',
            params: { progressToken, progress: i, total: steps, message: `step ${i} of ${steps}` },
          });
        }
      }
      return text(`done after ${steps} steps`);
    },
  );

  for (let n = 1; n <= grownCount; n++) addGrownTool(server, n);

  server.registerResource(
    'readme',
    README_URI,
    { description: 'What this server is', mimeType: 'text/plain' },
    async () => ({ contents: [{ uri: README_URI, mimeType: 'text/plain', text: README_TEXT }] }),
  );

  server.registerPrompt(
    'greet',
    { description: 'Greets someone', argsSchema: z.object({ name: z.string() }) },
    async ({ name }) => ({
      messages: [{ role: 'user', content: { type: 'text', text: `Please greet ${name}.` } }],
    }),
  );

  return server;
}

// ------------------------------------------------------------------ stdio

async function runStdio() {
  // serveStdio calls the factory once for the connection (and once more for a discarded
  // server/discover probe instance; registering grown tools on that one is harmless).
  const handle = serveStdio(
    ({ era }) => {
      const server = createServer();
      liveServers.add(server);
      log(`instance for the ${era} era`);
      return server;
    },
    { onerror: (error) => log('error:', error.message) },
  );
  let closing = false;
  const shutdown = async () => {
    if (closing) return;
    closing = true;
    await handle.close().catch(() => {});
    process.exit(0);
  };
  process.stdin.on('end', shutdown);
  process.stdin.on('close', shutdown);
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
  log('serving on stdio');
}

// ------------------------------------------------------------------- http

const MAX_BODY = 4 * 1024 * 1024;

function jsonRpcError(res, status, code, message) {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

// Reads and parses a POST body (the 2025 transport and the 2026 handler then get it as
// `parsedBody`). Returns undefined (after answering) when it is too large or not JSON.
async function readJsonBody(req, res) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) {
      jsonRpcError(res, 413, -32600, 'Request body too large');
      return undefined;
    }
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    jsonRpcError(res, 400, -32700, 'Parse error');
    return undefined;
  }
}

async function runHttp(port) {
  // 2026-07-28: one fresh instance per request; 2025-era traffic never reaches it.
  const modern = createMcpHandler(() => createServer(), {
    legacy: 'reject',
    onerror: (error) => log('modern handler error:', error.message),
  });
  announceToModernListeners = () => modern.notify.toolsChanged();
  const serveModern = toNodeHandler(modern, { onerror: (error) => log('adapter error:', error.message) });

  // 2025-11-25: sessionful Streamable HTTP, one instance per Mcp-Session-Id.
  const sessions = new Map(); // sessionId -> { transport, server }
  const closeSession = (sid) => {
    const session = sessions.get(sid);
    if (!session) return;
    sessions.delete(sid);
    liveServers.delete(session.server);
    session.server.close().catch(() => {});
    log(`session ${sid} closed`);
  };

  async function serveLegacy(req, res, body) {
    const sid = req.headers['mcp-session-id'];
    if (sid === undefined && req.method === 'POST' && isInitializeRequest(body)) {
      const server = createServer();
      const transport = new NodeStreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          sessions.set(id, { transport, server });
          liveServers.add(server);
          log(`session ${id} initialized`);
        },
      });
      transport.onclose = () => {
        if (transport.sessionId) closeSession(transport.sessionId);
      };
      await server.connect(transport);
      await transport.handleRequest(req, res, body);
      return;
    }
    if (sid === undefined) return jsonRpcError(res, 400, -32000, 'Bad Request: missing Mcp-Session-Id header');
    const session = sessions.get(sid);
    if (!session) return jsonRpcError(res, 404, -32001, 'Session not found');
    await session.transport.handleRequest(req, res, body);
  }

  const validateHost = localhostHostValidation();
  const validateOrigin = localhostOriginValidation();

  const httpServer = http.createServer(async (req, res) => {
    try {
      if (new URL(req.url ?? '/', 'http://127.0.0.1').pathname !== '/mcp') {
        res.writeHead(404).end();
        return;
      }
      // Each guard answers 403 itself when it refuses.
      if (!validateHost(req, res) || !validateOrigin(req, res)) return;
      let body;
      if (req.method === 'POST') {
        body = await readJsonBody(req, res);
        if (body === undefined) return;
      }
      // The SDK's own era classification (the one createMcpHandler runs).
      const legacy = await isLegacyRequest(await toWebRequest(req, body), body);
      if (legacy) await serveLegacy(req, res, body);
      else await serveModern(req, res, body);
    } catch (error) {
      log('error handling request:', error);
      jsonRpcError(res, 500, -32603, 'Internal server error');
    }
  });

  httpServer.listen(port, '127.0.0.1');
  await new Promise((resolve, reject) => {
    httpServer.once('listening', resolve);
    httpServer.once('error', reject);
  });
  process.stdout.write(`listening on http://127.0.0.1:${httpServer.address().port}/mcp\n`);

  const shutdown = async () => {
    for (const sid of [...sessions.keys()]) closeSession(sid);
    await modern.close().catch(() => {});
    httpServer.close();
    httpServer.closeAllConnections?.();
    process.exit(0);
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

// ------------------------------------------------------------------- main

function usage(message) {
  if (message) console.error(`modern-server: ${message}`);
  console.error('usage: node modern-server.mjs stdio\n       node modern-server.mjs http [--port N]');
  process.exit(2);
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'stdio') {
  if (rest.length) usage(`unexpected arguments: ${rest.join(' ')}`);
  await runStdio();
} else if (mode === 'http') {
  let port = 0;
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === '--port' && i + 1 < rest.length) {
      port = Number(rest[++i]);
      if (!Number.isInteger(port) || port < 0 || port > 65535) usage(`invalid port: ${rest[i]}`);
    } else {
      usage(`unexpected argument: ${rest[i]}`);
    }
  }
  await runHttp(port).catch((error) => {
    console.error(`modern-server: cannot listen: ${error.message}`);
    process.exit(1);
  });
} else {
  usage(mode ? `unknown mode: ${mode}` : 'missing mode');
}
