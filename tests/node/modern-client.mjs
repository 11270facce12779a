#!/usr/bin/env node
// A real MCP 2026-07-28 client for mcp-warden's tests: the TypeScript SDK v2 Client
// (@modelcontextprotocol/client 2.x) with `versionNegotiation: { mode: 'auto' }` (it probes
// `server/discover` and speaks 2026-07-28 when the server does), over Streamable HTTP.
//
// Usage: node modern-client.mjs URL TOOL [ARGS_JSON]
// Lists the tools, calls TOOL (answering any elicitation with
// {"username": "ada", "email": "ada@example.com"}; the SDK retries multi round-trip calls by
// itself) and prints one JSON line: {"version", "tools", "result"}.

import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const [url, tool, args = '{}'] = process.argv.slice(2);
if (!url || !tool) {
  console.error('usage: node modern-client.mjs URL TOOL [ARGS_JSON]');
  process.exit(2);
}
const client = new Client(
  { name: 'mcp-warden-test-ts-v2', version: '1' },
  { capabilities: { elicitation: {} }, versionNegotiation: { mode: 'auto' } },
);
client.setRequestHandler('elicitation/create', async () => ({
  action: 'accept',
  content: { username: 'ada', email: 'ada@example.com' },
}));
await client.connect(new StreamableHTTPClientTransport(new URL(url)));
const tools = await client.listTools();
const result = await client.callTool({ name: tool, arguments: JSON.parse(args) });
console.log(
  JSON.stringify({
    version: client.getNegotiatedProtocolVersion(),
    tools: tools.tools.map((t) => t.name),
    result,
  }),
);
await client.close();
