#!/usr/bin/env node
// Scripted MCP client (official TypeScript SDK) for the mcp-warden integration tests.
//
//   node client.mjs --http URL [--header "Name: value"]... --scenario NAME [scenario options]
//   node client.mjs --stdio -- CMD ARGS... --scenario NAME [scenario options]
//
// Prints ONE JSON object on stdout and exits 0, or prints {"error": "..."} and exits 1.
// Everything else (the stdio child's stderr, diagnostics) goes to stderr.
// Scenarios and their output are documented in tests/node/README.md.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  McpError,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const CLIENT_INFO = { name: 'mcp-warden-test-client', version: '1.0.0' };
const SAMPLING_REPLY = {
  role: 'assistant',
  content: { type: 'text', text: 'sampled-by-client' },
  model: 'test-model',
};
const ELICITATION_REPLY = { action: 'accept', content: { name: 'from-client' } };
const SCENARIOS = ['list', 'call', 'progress', 'sampling', 'elicitation', 'cancel', 'logging', 'resources', 'prompt'];
// Results are taken as they came over the wire (no SDK-side stripping or output-schema checks).
const Raw = z.looseObject({});

class UsageError extends Error {}

// ------------------------------------------------------------------ arguments

function parseArgs(argv) {
  const opts = { headers: {}, args: {}, timeoutMs: 60000, graceMs: 300 };
  const need = (i, flag) => {
    if (i + 1 >= argv.length) throw new UsageError(`${flag} needs a value`);
    return argv[i + 1];
  };
  const json = (text, flag) => {
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new UsageError(`${flag}: invalid JSON: ${error.message}`);
    }
  };
  const int = (text, flag) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag}: not a non-negative integer: ${text}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    switch (flag) {
      case '--http':
        opts.http = need(i, flag);
        i++;
        break;
      case '--header': {
        const value = need(i, flag);
        i++;
        const colon = value.indexOf(':');
        if (colon <= 0) throw new UsageError(`--header must be "Name: value", got ${JSON.stringify(value)}`);
        opts.headers[value.slice(0, colon).trim()] = value.slice(colon + 1).trim();
        break;
      }
      case '--stdio': {
        opts.stdio = true;
        if (argv[i + 1] !== '--') throw new UsageError('--stdio must be followed by -- CMD ARGS...');
        // The command runs up to the first --scenario (or the end of the line).
        let end = argv.indexOf('--scenario', i + 2);
        if (end === -1) end = argv.length;
        opts.command = argv.slice(i + 2, end);
        if (opts.command.length === 0) throw new UsageError('--stdio -- needs a command');
        i = end - 1;
        break;
      }
      case '--scenario':
        opts.scenario = need(i, flag);
        i++;
        break;
      case '--tool':
        opts.tool = need(i, flag);
        i++;
        break;
      case '--args':
        opts.args = json(need(i, flag), flag);
        i++;
        break;
      case '--after-ms':
        opts.afterMs = int(need(i, flag), flag);
        i++;
        break;
      case '--after-tool':
        opts.afterTool = need(i, flag);
        i++;
        break;
      case '--after-args':
        opts.afterArgs = json(need(i, flag), flag);
        i++;
        break;
      case '--uri':
        opts.uri = need(i, flag);
        i++;
        break;
      case '--name':
        opts.name = need(i, flag);
        i++;
        break;
      case '--timeout-ms':
        opts.timeoutMs = int(need(i, flag), flag);
        i++;
        break;
      case '--grace-ms':
        opts.graceMs = int(need(i, flag), flag);
        i++;
        break;
      case '--capabilities':
        opts.capabilities = need(i, flag).split(',').filter(Boolean);
        i++;
        break;
      default:
        throw new UsageError(`unknown argument: ${flag}`);
    }
  }
  if (!opts.http === !opts.stdio) throw new UsageError('exactly one of --http URL or --stdio -- CMD is required');
  if (!SCENARIOS.includes(opts.scenario)) throw new UsageError(`--scenario must be one of ${SCENARIOS.join(', ')}`);
  if (['call', 'progress', 'sampling', 'elicitation', 'cancel', 'logging'].includes(opts.scenario) && !opts.tool) {
    throw new UsageError(`--scenario ${opts.scenario} needs --tool NAME`);
  }
  if (opts.scenario === 'cancel' && opts.afterMs === undefined) throw new UsageError('--scenario cancel needs --after-ms N');
  if (opts.scenario === 'resources' && !opts.uri) throw new UsageError('--scenario resources needs --uri URI');
  if (opts.scenario === 'prompt' && !opts.name) throw new UsageError('--scenario prompt needs --name NAME');
  if (opts.args === null || typeof opts.args !== 'object' || Array.isArray(opts.args)) {
    throw new UsageError('--args must be a JSON object');
  }
  const defaults = { list: ['sampling', 'elicitation'], sampling: ['sampling'], elicitation: ['elicitation'] };
  opts.capabilities ??= defaults[opts.scenario] ?? [];
  for (const cap of opts.capabilities) {
    if (!['sampling', 'elicitation', 'roots'].includes(cap)) throw new UsageError(`unknown capability: ${cap}`);
  }
  return opts;
}

// ------------------------------------------------------------------ transport tap

// Wraps a transport and records every JSON-RPC message in both directions, so that results are
// reported exactly as received and JSON-RPC error responses can be told from local failures.
class TapTransport {
  constructor(inner) {
    this.inner = inner;
    this.sent = [];
    this.received = [];
    this.responses = new Map(); // id -> response message
  }
  get sessionId() {
    return this.inner.sessionId;
  }
  async start() {
    this.inner.onmessage = (message, extra) => {
      this.received.push(message);
      if (message.id !== undefined && (message.result !== undefined || message.error !== undefined)) {
        this.responses.set(message.id, message);
      }
      this.onmessage?.(message, extra);
    };
    this.inner.onerror = (error) => this.onerror?.(error);
    this.inner.onclose = () => this.onclose?.();
    return this.inner.start();
  }
  async send(message, options) {
    this.sent.push(message);
    return this.inner.send(message, options);
  }
  async close() {
    return this.inner.close();
  }
  setProtocolVersion(version) {
    this.inner.setProtocolVersion?.(version);
  }
  // The response to the first `method` request sent at or after sent-index `from`.
  responseFor(method, from = 0) {
    const request = this.sent.slice(from).find((m) => m.method === method && m.id !== undefined);
    return request ? this.responses.get(request.id) : undefined;
  }
}

// ------------------------------------------------------------------ helpers

function errorText(error) {
  return error instanceof Error ? error.message : String(error);
}

// Sends one request. Returns {result} with the raw wire result, or {rpcError} when the server
// answered with a JSON-RPC error; anything else (timeout, transport failure, abort) throws.
async function rawRequest(client, tap, method, params, options = {}) {
  const from = tap.sent.length;
  try {
    await client.request({ method, params }, Raw, options);
  } catch (error) {
    const response = tap.responseFor(method, from);
    if (response?.error) {
      const { code, message, data } = response.error;
      return { rpcError: data === undefined ? { code, message } : { code, message, data } };
    }
    throw error;
  }
  return { result: tap.responseFor(method, from).result };
}

async function listAll(client, tap, method, key) {
  const items = [];
  let cursor;
  for (let page = 0; page < 1000; page++) {
    const { result, rpcError } = await rawRequest(client, tap, method, cursor ? { cursor } : {}, tap.requestOptions);
    if (rpcError) throw new Error(`${method} failed: ${rpcError.code} ${rpcError.message}`);
    items.push(...(result[key] ?? []));
    cursor = result.nextCursor;
    if (!cursor) return items;
  }
  throw new Error(`${method}: more than 1000 pages`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------------ scenarios

async function runScenario(opts, client, tap, observed) {
  const options = { timeout: opts.timeoutMs };
  tap.requestOptions = options;
  const call = (name, args, extra = {}) =>
    rawRequest(client, tap, 'tools/call', { name, arguments: args }, { ...options, ...extra });

  switch (opts.scenario) {
    case 'list': {
      const capabilities = client.getServerCapabilities() ?? {};
      const initialize = tap.responseFor('initialize');
      return {
        serverInfo: client.getServerVersion(),
        protocolVersion: initialize?.result?.protocolVersion,
        capabilities,
        tools: capabilities.tools ? await listAll(client, tap, 'tools/list', 'tools') : [],
        prompts: capabilities.prompts ? await listAll(client, tap, 'prompts/list', 'prompts') : [],
        resources: capabilities.resources ? await listAll(client, tap, 'resources/list', 'resources') : [],
        resourceTemplates: capabilities.resources
          ? await listAll(client, tap, 'resources/templates/list', 'resourceTemplates')
          : [],
      };
    }
    case 'call':
      return call(opts.tool, opts.args);
    case 'progress': {
      // onprogress makes the SDK send _meta.progressToken; the notifications themselves are taken
      // from the wire (the SDK drops one that is processed after its response).
      const from = tap.sent.length;
      const outcome = await call(opts.tool, opts.args, { resetTimeoutOnProgress: true, onprogress: () => {} });
      await sleep(opts.graceMs);
      const token = tap.sent.slice(from).find((m) => m.method === 'tools/call')?.params?._meta?.progressToken;
      const progress = tap.received
        .filter((m) => m.method === 'notifications/progress' && m.params?.progressToken === token)
        .map(({ params: { progress: p, total, message } }) => ({ progress: p, total, message }));
      return { ...outcome, progress };
    }
    case 'sampling':
      return { ...(await call(opts.tool, opts.args)), samplingRequests: observed.samplingRequests };
    case 'elicitation':
      return { ...(await call(opts.tool, opts.args)), elicitationRequests: observed.elicitationRequests };
    case 'logging': {
      const level = await rawRequest(client, tap, 'logging/setLevel', { level: 'debug' }, options);
      if (level.rpcError) throw new Error(`logging/setLevel failed: ${level.rpcError.code} ${level.rpcError.message}`);
      const from = tap.received.length; // only what arrives from the call on
      const outcome = await call(opts.tool, opts.args);
      await sleep(opts.graceMs);
      const logs = tap.received.slice(from).filter((m) => m.method === 'notifications/message');
      return { ...outcome, logs: logs.map((m) => m.params) };
    }
    case 'cancel': {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort('cancelled by client.mjs'), opts.afterMs);
      const from = tap.sent.length;
      let output;
      try {
        const outcome = await call(opts.tool, opts.args, { signal: controller.signal });
        output = { cancelled: false, ...outcome }; // finished (or failed) before the abort
      } catch (error) {
        if (!controller.signal.aborted) throw error;
        output = { cancelled: true };
      } finally {
        clearTimeout(timer);
      }
      const notice = tap.sent.slice(from).find((m) => m.method === 'notifications/cancelled');
      if (notice) output.cancelledNotification = notice.params;
      const after = await call(opts.afterTool ?? 'echo', opts.afterArgs ?? { message: 'after-cancel' });
      output.after = after.rpcError ? { rpcError: after.rpcError } : after.result;
      return output;
    }
    case 'resources': {
      const outcome = await rawRequest(client, tap, 'resources/read', { uri: opts.uri }, options);
      return outcome.rpcError ? outcome : { contents: outcome.result.contents };
    }
    case 'prompt': {
      const outcome = await rawRequest(client, tap, 'prompts/get', { name: opts.name, arguments: opts.args }, options);
      return outcome.rpcError ? outcome : outcome.result;
    }
  }
  throw new UsageError(`unknown scenario ${opts.scenario}`);
}

// ------------------------------------------------------------------ main

function finish(object, code, client) {
  const done = () => process.exit(code);
  process.stdout.write(JSON.stringify(object) + '\n', () => {
    if (!client) return done();
    // Closing a stdio client ends its child (stdin closed, then SIGTERM, then SIGKILL).
    Promise.race([client.close().catch(() => {}), sleep(5000)]).then(done);
  });
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (error) {
    console.error(
      'usage: node client.mjs (--http URL [--header "Name: value"]... | --stdio -- CMD ARGS...) ' +
        '--scenario NAME [--tool T] [--args JSON] [--after-ms N] [--uri U] [--name N]',
    );
    return finish({ error: errorText(error) }, 1);
  }

  // Watchdog: never hang the calling test.
  const watchdog = setTimeout(
    () => finish({ error: `client.mjs gave up after ${opts.timeoutMs + 30000} ms` }, 1),
    opts.timeoutMs + 30000,
  );
  watchdog.unref();

  const inner = opts.http
    ? new StreamableHTTPClientTransport(new URL(opts.http), { requestInit: { headers: opts.headers } })
    : new StdioClientTransport({
        command: opts.command[0],
        args: opts.command.slice(1),
        env: Object.fromEntries(Object.entries(process.env).filter(([, v]) => v !== undefined)),
        stderr: 'inherit',
      });
  const tap = new TapTransport(inner);

  const capabilities = Object.fromEntries(opts.capabilities.map((cap) => [cap, {}]));
  const client = new Client(CLIENT_INFO, { capabilities });
  client.onerror = (error) => console.error(`client.mjs: transport error: ${errorText(error)}`);

  const observed = { samplingRequests: [], elicitationRequests: [] };
  if (capabilities.sampling) {
    client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
      observed.samplingRequests.push(request.params);
      return SAMPLING_REPLY;
    });
  }
  if (capabilities.elicitation) {
    client.setRequestHandler(ElicitRequestSchema, async (request) => {
      observed.elicitationRequests.push(request.params);
      return ELICITATION_REPLY;
    });
  }
  if (capabilities.roots) {
    client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [] }));
  }
  // Log notifications are read from the tap; this handler only keeps the SDK quiet about them.
  client.setNotificationHandler(LoggingMessageNotificationSchema, () => {});

  try {
    await client.connect(tap, { timeout: opts.timeoutMs });
  } catch (error) {
    const failure = { error: `connect failed: ${errorText(error)}` };
    if (error instanceof StreamableHTTPError && error.code !== undefined) failure.httpStatus = error.code;
    return finish(failure, 1, client);
  }

  try {
    const output = await runScenario(opts, client, tap, observed);
    return finish(output, 0, client);
  } catch (error) {
    const failure = { error: errorText(error) };
    if (error instanceof McpError) failure.code = error.code;
    if (error instanceof StreamableHTTPError && error.code !== undefined) failure.httpStatus = error.code;
    return finish(failure, 1, client);
  }
}

await main();
