#!/usr/bin/env node
// Conformance upstream for the mcp-warden test harness.
//
// An MCP server, built with the official TypeScript SDK (McpServer), that exposes exactly the
// fixed tool / resource / prompt names the official conformance suite
// (@modelcontextprotocol/conformance 0.1.16, `--suite all`) calls, plus two small extras
// (`echo`, `test_long_running`) for the harness's own client scenarios.
//
// Usage:
//   node conformance-server.mjs stdio
//   node conformance-server.mjs http [--port N]      (N = 0 or absent: pick a free port)
//
// http mode: Streamable HTTP, stateful sessions, path /mcp, bound to 127.0.0.1 only.
// Once listening it prints exactly one line on stdout:  listening on http://127.0.0.1:PORT/mcp
// Diagnostics go to stderr. SIGINT/SIGTERM end it; in stdio mode so does the end of stdin.
//
// The contract is documented in tests/node/README.md.

import { randomUUID } from 'node:crypto';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { completable } from '@modelcontextprotocol/sdk/server/completable.js';
import {
  CreateMessageResultSchema,
  ElicitResultSchema,
  ListToolsRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  isInitializeRequest,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const SERVER_INFO = { name: 'mcp-warden-conformance-upstream', version: '1.0.0' };

// 1x1 red PNG and a minimal WAV file (both base64), as in the suite's reference server.
const TEST_IMAGE_BASE64 =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
const TEST_AUDIO_BASE64 = 'UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=';

// SEP-1613: advertised verbatim by tools/list for json_schema_2020_12_tool.
const JSON_SCHEMA_2020_12_INPUT_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  $defs: {
    address: {
      type: 'object',
      properties: { street: { type: 'string' }, city: { type: 'string' } },
    },
  },
  properties: {
    name: { type: 'string' },
    address: { $ref: '#/$defs/address' },
  },
  additionalProperties: false,
};

const WATCHED_URI = 'test://watched-resource';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (...args) => console.error('[conformance-server]', ...args);

// One McpServer per session (http) or per process (stdio).
function createServer() {
  const server = new McpServer(SERVER_INFO, {
    capabilities: {
      tools: { listChanged: true },
      resources: { subscribe: true, listChanged: true },
      prompts: { listChanged: true },
      logging: {},
      completions: {},
    },
  });
  const text = (t) => ({ content: [{ type: 'text', text: t }] });

  // Per-session state for the watched resource.
  let watchedVersion = 1;
  const subscriptions = new Set();
  const timers = new Set();

  // ---------------------------------------------------------------- tools

  server.registerTool(
    'test_simple_text',
    { description: 'Tests simple text content response' },
    async () => text('This is a simple text response for testing.'),
  );

  server.registerTool(
    'test_image_content',
    { description: 'Tests image content response' },
    async () => ({ content: [{ type: 'image', data: TEST_IMAGE_BASE64, mimeType: 'image/png' }] }),
  );

  server.registerTool(
    'test_audio_content',
    { description: 'Tests audio content response' },
    async () => ({ content: [{ type: 'audio', data: TEST_AUDIO_BASE64, mimeType: 'audio/wav' }] }),
  );

  server.registerTool(
    'test_embedded_resource',
    { description: 'Tests embedded resource content response' },
    async () => ({
      content: [
        {
          type: 'resource',
          resource: {
            uri: 'test://embedded-resource',
            mimeType: 'text/plain',
            text: 'This is an embedded resource content.',
          },
        },
      ],
    }),
  );

  server.registerTool(
    'test_multiple_content_types',
    { description: 'Tests response with multiple content types (text, image, resource)' },
    async () => ({
      content: [
        { type: 'text', text: 'Multiple content types test:' },
        { type: 'image', data: TEST_IMAGE_BASE64, mimeType: 'image/png' },
        {
          type: 'resource',
          resource: {
            uri: 'test://mixed-content-resource',
            mimeType: 'application/json',
            text: JSON.stringify({ test: 'data', value: 123 }),
          },
        },
      ],
    }),
  );

  server.registerTool(
    'test_tool_with_logging',
    { description: 'Tests tool that emits log messages during execution', inputSchema: {} },
    async (_args, extra) => {
      // Sent as related to this request, so over HTTP they travel on the call's own SSE stream;
      // dropped below the level set with logging/setLevel (the SDK's own per-session filter).
      const emit = async (data) =>
        server.server.isMessageIgnored('info', extra.sessionId) ||
        extra.sendNotification({
          method: 'notifications/message',
          params: { level: 'info', logger: 'conformance-server', data },
        });
      await emit('Tool execution started');
      await sleep(50);
      await emit('Tool processing data');
      await sleep(50);
      await emit('Tool execution completed');
      return text('Tool with logging executed successfully');
    },
  );

  server.registerTool(
    'test_tool_with_progress',
    { description: 'Tests tool that reports progress notifications', inputSchema: {} },
    async (_args, extra) => {
      const progressToken = extra._meta?.progressToken;
      for (const step of [0, 50, 100]) {
        if (progressToken !== undefined) {
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken, progress: step, total: 100, message: `Completed step ${step} of 100` },
          });
        }
        // Also wait after the last one: the SDK client dispatches notifications a tick later than
        // responses, so a progress notification read in the same chunk as the result is dropped
        // (through a proxy that coalesces writes the suite would then see only 2 of 3).
        await sleep(50);
      }
      return text(String(progressToken ?? 'no-progress-token'));
    },
  );

  server.registerTool(
    'test_error_handling',
    { description: 'Tests error response handling' },
    async () => {
      // McpServer turns a thrown error into a result with isError: true.
      throw new Error('This tool intentionally returns an error for testing');
    },
  );

  server.registerTool(
    'test_reconnection',
    {
      description:
        'Tests SSE stream disconnection and client reconnection (SEP-1699): closes the POST SSE ' +
        'stream mid-call (when the client can resume) and sends the result afterwards',
      inputSchema: {},
    },
    async (_args, extra) => {
      // The SDK offers closeSSEStream only on Streamable HTTP with an event store and a client at
      // protocol >= 2025-11-25 (one that got a priming event and can resume with Last-Event-ID).
      if (extra.closeSSEStream) {
        log(`test_reconnection: closing the SSE stream of request ${extra.requestId}`);
        extra.closeSSEStream();
      }
      await sleep(100);
      return text(
        'Reconnection test completed successfully. If you received this, the client properly ' +
          'reconnected after stream closure.',
      );
    },
  );

  server.registerTool(
    'test_sampling',
    {
      description: 'Tests server-initiated sampling (LLM completion request)',
      inputSchema: { prompt: z.string().describe('The prompt to send to the LLM') },
    },
    async ({ prompt }, extra) => {
      const result = await extra.sendRequest(
        {
          method: 'sampling/createMessage',
          params: { messages: [{ role: 'user', content: { type: 'text', text: prompt } }], maxTokens: 100 },
        },
        CreateMessageResultSchema,
      );
      const reply = Array.isArray(result.content)
        ? result.content.map((c) => c.text ?? `[${c.type}]`).join('')
        : (result.content?.text ?? `[${result.content?.type}]`);
      return text(`LLM response: ${reply}`);
    },
  );

  server.registerTool(
    'test_elicitation',
    {
      description: 'Tests server-initiated elicitation (user input request)',
      inputSchema: { message: z.string().describe('The message to show the user') },
    },
    async ({ message }, extra) => {
      const result = await extra.sendRequest(
        {
          method: 'elicitation/create',
          params: {
            message,
            requestedSchema: {
              type: 'object',
              properties: {
                username: { type: 'string', description: "User's response" },
                email: { type: 'string', description: "User's email address" },
              },
              required: ['username', 'email'],
            },
          },
        },
        ElicitResultSchema,
      );
      return text(`User response: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`);
    },
  );

  server.registerTool(
    'test_elicitation_sep1034_defaults',
    { description: 'Tests elicitation with default values per SEP-1034', inputSchema: {} },
    async (_args, extra) => {
      const result = await extra.sendRequest(
        {
          method: 'elicitation/create',
          params: {
            message: 'Please review and update the form fields with defaults',
            requestedSchema: {
              type: 'object',
              properties: {
                name: { type: 'string', description: 'User name', default: 'John Doe' },
                age: { type: 'integer', description: 'User age', default: 30 },
                score: { type: 'number', description: 'User score', default: 95.5 },
                status: {
                  type: 'string',
                  description: 'User status',
                  enum: ['active', 'inactive', 'pending'],
                  default: 'active',
                },
                verified: { type: 'boolean', description: 'Verification status', default: true },
              },
              required: [],
            },
          },
        },
        ElicitResultSchema,
      );
      return text(
        `Elicitation completed: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`,
      );
    },
  );

  server.registerTool(
    'test_elicitation_sep1330_enums',
    { description: 'Tests elicitation with enum schema improvements per SEP-1330', inputSchema: {} },
    async (_args, extra) => {
      const result = await extra.sendRequest(
        {
          method: 'elicitation/create',
          params: {
            message: 'Please select options from the enum fields',
            requestedSchema: {
              type: 'object',
              properties: {
                untitledSingle: {
                  type: 'string',
                  description: 'Select one option',
                  enum: ['option1', 'option2', 'option3'],
                },
                titledSingle: {
                  type: 'string',
                  description: 'Select one option with titles',
                  oneOf: [
                    { const: 'value1', title: 'First Option' },
                    { const: 'value2', title: 'Second Option' },
                    { const: 'value3', title: 'Third Option' },
                  ],
                },
                legacyEnum: {
                  type: 'string',
                  description: 'Select one option (legacy)',
                  enum: ['opt1', 'opt2', 'opt3'],
                  enumNames: ['Option One', 'Option Two', 'Option Three'],
                },
                untitledMulti: {
                  type: 'array',
                  description: 'Select multiple options',
                  minItems: 1,
                  maxItems: 3,
                  items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
                },
                titledMulti: {
                  type: 'array',
                  description: 'Select multiple options with titles',
                  minItems: 1,
                  maxItems: 3,
                  items: {
                    anyOf: [
                      { const: 'value1', title: 'First Choice' },
                      { const: 'value2', title: 'Second Choice' },
                      { const: 'value3', title: 'Third Choice' },
                    ],
                  },
                },
              },
              required: [],
            },
          },
        },
        ElicitResultSchema,
      );
      return text(
        `Elicitation completed: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`,
      );
    },
  );

  // Validated with this zod schema on tools/call; advertised as the raw 2020-12 schema above
  // (see the tools/list wrapper at the end).
  server.registerTool(
    'json_schema_2020_12_tool',
    {
      description: 'Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)',
      // strict(): unknown arguments are rejected, as additionalProperties: false advertises.
      inputSchema: z
        .object({
          name: z.string().optional(),
          address: z.object({ street: z.string().optional(), city: z.string().optional() }).optional(),
        })
        .strict(),
    },
    async (args) => text(`JSON Schema 2020-12 tool called with: ${JSON.stringify(args)}`),
  );

  // Extras (not used by the suite) for the harness's scripted client scenarios.
  server.registerTool(
    'echo',
    {
      description: 'Echoes back the input message',
      inputSchema: { message: z.string().describe('Message to echo') },
    },
    async ({ message }) => text(`Echo: ${message}`),
  );

  server.registerTool(
    'test_long_running',
    {
      description:
        'Runs for durationMs (default 5000) in steps of stepMs (default 100), reporting progress ' +
        'when asked; stops early when cancelled (notifications/cancelled)',
      inputSchema: {
        durationMs: z.number().int().min(0).max(60000).optional(),
        stepMs: z.number().int().min(10).max(10000).optional(),
      },
    },
    async ({ durationMs = 5000, stepMs = 100 }, extra) => {
      const steps = Math.max(1, Math.ceil(durationMs / stepMs));
      const progressToken = extra._meta?.progressToken;
      for (let i = 1; i <= steps; i++) {
        await sleep(stepMs);
        if (extra.signal.aborted) {
          log(`test_long_running cancelled after step ${i}/${steps}`);
          return text(`cancelled after step ${i} of ${steps}`);
        }
        if (progressToken !== undefined) {
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken, progress: i, total: steps, message: `step ${i} of ${steps}` },
          });
        }
      }
      return text(`Long running operation completed: ${steps} steps`);
    },
  );

  // ------------------------------------------------------------ resources

  server.registerResource(
    'static-text',
    'test://static-text',
    { title: 'Static Text Resource', description: 'A static text resource for testing', mimeType: 'text/plain' },
    async () => ({
      contents: [
        { uri: 'test://static-text', mimeType: 'text/plain', text: 'This is the content of the static text resource.' },
      ],
    }),
  );

  server.registerResource(
    'static-binary',
    'test://static-binary',
    { title: 'Static Binary Resource', description: 'A static binary resource (image) for testing', mimeType: 'image/png' },
    async () => ({ contents: [{ uri: 'test://static-binary', mimeType: 'image/png', blob: TEST_IMAGE_BASE64 }] }),
  );

  server.registerResource(
    'template',
    new ResourceTemplate('test://template/{id}/data', {
      list: undefined,
      complete: { id: (value) => ['1', '2', '3', '123'].filter((v) => v.startsWith(value)) },
    }),
    {
      title: 'Resource Template',
      description: 'A resource template with parameter substitution',
      mimeType: 'application/json',
    },
    async (uri, { id }) => ({
      contents: [
        {
          uri: uri.toString(),
          mimeType: 'application/json',
          text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }),
        },
      ],
    }),
  );

  server.registerResource(
    'watched-resource',
    WATCHED_URI,
    {
      title: 'Watched Resource',
      description: 'A resource that changes once, shortly after a client subscribes to it',
      mimeType: 'text/plain',
    },
    async () => ({
      contents: [
        {
          uri: WATCHED_URI,
          mimeType: 'text/plain',
          text: watchedVersion === 1 ? 'Watched resource content' : `Watched resource content v${watchedVersion}`,
        },
      ],
    }),
  );

  // McpServer does not implement subscriptions itself. A subscription to the watched resource is
  // answered by one change + notifications/resources/updated 200 ms later (bounded: no endless timer).
  server.server.setRequestHandler(SubscribeRequestSchema, async (request) => {
    const { uri } = request.params;
    subscriptions.add(uri);
    if (uri === WATCHED_URI) {
      const timer = setTimeout(() => {
        timers.delete(timer);
        if (!subscriptions.has(uri)) return;
        watchedVersion += 1;
        server.server.sendResourceUpdated({ uri }).catch((e) => log("resource update not sent:", e.message));
      }, 200);
      timers.add(timer);
    }
    return {};
  });

  server.server.setRequestHandler(UnsubscribeRequestSchema, async (request) => {
    subscriptions.delete(request.params.uri);
    return {};
  });

  // -------------------------------------------------------------- prompts

  server.registerPrompt(
    'test_simple_prompt',
    { title: 'Simple Test Prompt', description: 'A simple prompt without arguments' },
    async () => ({
      messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }],
    }),
  );

  server.registerPrompt(
    'test_prompt_with_arguments',
    {
      title: 'Prompt With Arguments',
      description: 'A prompt with required arguments',
      argsSchema: {
        // Completable so that completion/complete returns real values for ref/prompt.
        arg1: completable(z.string().describe('First test argument'), (value) =>
          ['paris', 'park', 'party', 'test', 'testValue1'].filter((v) => v.startsWith(value)),
        ),
        arg2: z.string().describe('Second test argument'),
      },
    },
    async ({ arg1, arg2 }) => ({
      messages: [
        { role: 'user', content: { type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` } },
      ],
    }),
  );

  server.registerPrompt(
    'test_prompt_with_embedded_resource',
    {
      title: 'Prompt With Embedded Resource',
      description: 'A prompt that includes an embedded resource',
      argsSchema: { resourceUri: z.string().describe('URI of the resource to embed') },
    },
    async ({ resourceUri }) => ({
      messages: [
        {
          role: 'user',
          content: {
            type: 'resource',
            resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' },
          },
        },
        { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
      ],
    }),
  );

  server.registerPrompt(
    'test_prompt_with_image',
    { title: 'Prompt With Image', description: 'A prompt that includes image content' },
    async () => ({
      messages: [
        { role: 'user', content: { type: 'image', data: TEST_IMAGE_BASE64, mimeType: 'image/png' } },
        { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
      ],
    }),
  );

  // ------------------------------------------- tools/list: SEP-1613 schema

  // McpServer only takes zod schemas and would drop $schema/$defs; wrap its own tools/list
  // handler and substitute the raw JSON Schema 2020-12 for json_schema_2020_12_tool.
  const sdkListTools = server.server._requestHandlers.get('tools/list');
  if (!sdkListTools) throw new Error('SDK internals changed: no tools/list handler registered');
  server.server.setRequestHandler(ListToolsRequestSchema, async (request, extra) => {
    const result = await sdkListTools(request, extra);
    return {
      ...result,
      tools: result.tools.map((tool) =>
        tool.name === 'json_schema_2020_12_tool' ? { ...tool, inputSchema: JSON_SCHEMA_2020_12_INPUT_SCHEMA } : tool,
      ),
    };
  });

  // logging/setLevel is handled by the SDK itself (declared logging capability).

  const dispose = () => {
    for (const timer of timers) clearTimeout(timer);
    timers.clear();
    subscriptions.clear();
  };
  return { server, dispose };
}

// ------------------------------------------------------------------ stdio

async function runStdio() {
  const { server, dispose } = createServer();
  const transport = new StdioServerTransport();
  const shutdown = async () => {
    dispose();
    await server.close().catch(() => {});
    process.exit(0);
  };
  process.stdin.on('end', shutdown);
  process.stdin.on('close', shutdown);
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
  await server.connect(transport);
  log('serving on stdio');
}

// ------------------------------------------------------------------- http

// In-memory event store (per session) so that SSE streams can be resumed with Last-Event-ID.
function createEventStore() {
  const events = []; // { eventId, streamId, message }
  let seq = 0;
  return {
    async storeEvent(streamId, message) {
      const eventId = `${streamId}_${String(++seq).padStart(10, '0')}`;
      events.push({ eventId, streamId, message });
      if (events.length > 10000) events.splice(0, events.length - 10000);
      return eventId;
    },
    async getStreamIdForEventId(eventId) {
      return events.find((e) => e.eventId === eventId)?.streamId ?? eventId.slice(0, eventId.lastIndexOf('_'));
    },
    async replayEventsAfter(lastEventId, { send }) {
      const streamId = lastEventId.slice(0, lastEventId.lastIndexOf('_'));
      const index = events.findIndex((e) => e.eventId === lastEventId);
      for (const e of events.slice(index + 1)) {
        // Priming events are stored as {} and are not replayed.
        if (e.streamId === streamId && Object.keys(e.message).length > 0) await send(e.eventId, e.message);
      }
      return streamId;
    },
  };
}

const LOOPBACK_HOSTNAMES = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

function jsonRpcError(res, status, code, message) {
  res.status(status).json({ jsonrpc: '2.0', error: { code, message }, id: null });
}

async function runHttp(port) {
  // createMcpExpressApp for host 127.0.0.1 validates the Host header (DNS-rebinding protection:
  // a non-loopback Host is answered 403 before the body is read) and parses JSON bodies.
  const app = createMcpExpressApp({ host: '127.0.0.1' });

  // Also reject a browser Origin that is not loopback (the SDK checks Host only).
  app.use((req, res, next) => {
    const origin = req.headers.origin;
    if (origin !== undefined) {
      let hostname = null;
      try {
        hostname = new URL(origin).hostname;
      } catch {
        // unparsable origin: rejected below
      }
      if (!LOOPBACK_HOSTNAMES.has(hostname)) return jsonRpcError(res, 403, -32000, `Invalid Origin: ${origin}`);
    }
    next();
  });

  const sessions = new Map(); // sessionId -> { transport, server, dispose }

  const closeSession = (sid) => {
    const session = sessions.get(sid);
    if (!session) return;
    sessions.delete(sid);
    session.dispose();
    session.server.close().catch(() => {});
    log(`session ${sid} closed`);
  };

  // Spec: a request without a session id (other than initialize) is 400; an unknown or terminated
  // session id is 404 (the client must then start a new session).
  const lookup = (req, res) => {
    const sid = req.headers['mcp-session-id'];
    if (sid === undefined) {
      jsonRpcError(res, 400, -32000, 'Bad Request: missing Mcp-Session-Id header');
      return null;
    }
    const session = sessions.get(sid);
    if (!session) {
      jsonRpcError(res, 404, -32001, 'Session not found');
      return null;
    }
    return session;
  };

  const handle = (fn) => async (req, res) => {
    try {
      await fn(req, res);
    } catch (error) {
      log('error handling request:', error);
      if (!res.headersSent) jsonRpcError(res, 500, -32603, 'Internal server error');
    }
  };

  app.post(
    '/mcp',
    handle(async (req, res) => {
      if (req.headers['mcp-session-id'] === undefined && isInitializeRequest(req.body)) {
        const { server, dispose } = createServer();
        const transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          eventStore: createEventStore(),
          retryInterval: 1000,
          onsessioninitialized: (sid) => {
            sessions.set(sid, { transport, server, dispose });
            log(`session ${sid} initialized`);
          },
        });
        transport.onclose = () => {
          if (transport.sessionId) closeSession(transport.sessionId);
        };
        await server.connect(transport);
        await transport.handleRequest(req, res, req.body);
        return;
      }
      const session = lookup(req, res);
      if (session) await session.transport.handleRequest(req, res, req.body);
    }),
  );

  app.get(
    '/mcp',
    handle(async (req, res) => {
      const session = lookup(req, res);
      if (session) await session.transport.handleRequest(req, res);
    }),
  );

  app.delete(
    '/mcp',
    handle(async (req, res) => {
      const session = lookup(req, res);
      if (session) await session.transport.handleRequest(req, res);
    }),
  );

  const httpServer = app.listen(port, '127.0.0.1');
  await new Promise((resolve, reject) => {
    httpServer.once('listening', resolve);
    httpServer.once('error', reject);
  });
  const actualPort = httpServer.address().port;
  process.stdout.write(`listening on http://127.0.0.1:${actualPort}/mcp\n`);

  const shutdown = () => {
    for (const sid of [...sessions.keys()]) closeSession(sid);
    httpServer.close();
    httpServer.closeAllConnections?.();
    process.exit(0);
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

// ------------------------------------------------------------------- main

function usage(message) {
  if (message) console.error(`conformance-server: ${message}`);
  console.error('usage: node conformance-server.mjs stdio\n       node conformance-server.mjs http [--port N]');
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
    console.error(`conformance-server: cannot listen: ${error.message}`);
    process.exit(1);
  });
} else {
  usage(mode ? `unknown mode: ${mode}` : 'missing mode');
}
