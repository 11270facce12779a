#!/usr/bin/env node
// A real MCP 2026-07-28 client for mcp-warden's tests: the TypeScript SDK v2 Client
// (@modelcontextprotocol/client 2.x) with `versionNegotiation: { mode: 'auto' }` (it probes
// `server/discover` and speaks 2026-07-28 when the server does, else falls back to
// `initialize`), over Streamable HTTP or stdio.
//
// Usage:
//   node modern-client.mjs URL TOOL [ARGS_JSON]
//   node modern-client.mjs --stdio COMMAND [ARG...] -- TOOL [ARGS_JSON]
// With --stdio, everything up to the first `--` is the server command line (spawned by the
// SDK's StdioClientTransport, with the SDK's default inherited environment: HOME, PATH, ...).
// In `auto` mode the SDK probes a stdio server from a short-lived sibling process spawned
// from the same command line, then spawns the real one: COMMAND runs twice.
//
// Lists the tools, calls TOOL (the SDK retries multi round-trip calls by itself) and prints
// one JSON line: {"version", "tools", "result"}.
//
// Elicitations are accepted with content that fills every property of the requested schema:
// `username` and `name` -> "ada", `email` -> "ada@example.com", another string -> its default,
// first enum value, or "ada"; numbers -> default, minimum or 1; booleans -> default or true;
// arrays -> default or the first allowed item. So the conformance server's test_elicitation
// (username, email) gets {"username":"ada","email":"ada@example.com"} and modern-server.mjs's
// ask_name (name) gets {"name":"ada"}. A URL-mode elicitation is accepted without content.

import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';

const USAGE =
  'usage: node modern-client.mjs URL TOOL [ARGS_JSON]\n' +
  '       node modern-client.mjs --stdio COMMAND [ARG...] -- TOOL [ARGS_JSON]';

function parseArgs(argv) {
  if (argv[0] === '--stdio') {
    const end = argv.indexOf('--');
    if (end < 2) return null;
    const [tool, args = '{}', ...extra] = argv.slice(end + 1);
    if (!tool || extra.length) return null;
    const [command, ...commandArgs] = argv.slice(1, end);
    return { transport: () => new StdioClientTransport({ command, args: commandArgs, stderr: 'inherit' }), tool, args };
  }
  const [url, tool, args = '{}', ...extra] = argv;
  if (!url || !tool || extra.length) return null;
  return { transport: () => new StreamableHTTPClientTransport(new URL(url)), tool, args };
}

const KNOWN = { username: 'ada', name: 'ada', email: 'ada@example.com' };

// A value for one property of a form elicitation's requestedSchema.
function fill(key, prop = {}) {
  if (prop.default !== undefined) return prop.default;
  switch (prop.type) {
    case 'number':
    case 'integer':
      return prop.minimum ?? 1;
    case 'boolean':
      return true;
    case 'array': {
      const items = prop.items ?? {};
      const first = items.enum?.[0] ?? items.anyOf?.[0]?.const;
      return first === undefined ? [] : [first];
    }
    default:
      if (KNOWN[key] !== undefined) return KNOWN[key];
      if (prop.enum?.length) return prop.enum[0];
      if (prop.oneOf?.length) return prop.oneOf[0].const;
      if (prop.format === 'email') return KNOWN.email;
      return 'ada';
  }
}

const parsed = parseArgs(process.argv.slice(2));
if (!parsed) {
  console.error(USAGE);
  process.exit(2);
}
const client = new Client(
  { name: 'mcp-warden-test-ts-v2', version: '1' },
  { capabilities: { elicitation: {} }, versionNegotiation: { mode: 'auto' } },
);
client.setRequestHandler('elicitation/create', async (request) => {
  const properties = request.params.requestedSchema?.properties;
  if (!properties) return { action: 'accept' };
  const content = {};
  for (const [key, prop] of Object.entries(properties)) {
    // Well-known names win over a schema default (so test_elicitation's answer stays fixed).
    content[key] = prop?.type === 'string' && KNOWN[key] !== undefined ? KNOWN[key] : fill(key, prop);
  }
  return { action: 'accept', content };
});
await client.connect(parsed.transport());
const tools = await client.listTools();
const result = await client.callTool({ name: parsed.tool, arguments: JSON.parse(parsed.args) });
console.log(
  JSON.stringify({
    version: client.getNegotiatedProtocolVersion(),
    tools: tools.tools.map((t) => t.name),
    result,
  }),
);
await client.close();
