// A 2026-07-28 MCP client (the TypeScript SDK v2, @modelcontextprotocol/client, negotiating
// the version with `server/discover`) that declares URL-mode elicitation, calls one tool and
// reports what it was asked on the way: the SDK answers a multi round-trip result
// (`InputRequiredResult`) by calling the `elicitation/create` handler and retrying the call
// with the handler's answer by itself.
//
//   node url-elicitation-modern.mjs URL BEARER_TOKEN TOOL ACTION
//
// ACTION is what the handler answers a URL-mode elicitation: accept, decline or cancel.
// Prints one JSON line per elicitation as it is asked — {"asked": {params}} — then
// {"version", "result"} and exits 0; or {"error": "..."} and exits 1.
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const [url, token, tool, action, ...extra] = process.argv.slice(2);
if (!url || !token || !tool || !['accept', 'decline', 'cancel'].includes(action) || extra.length) {
  console.log(JSON.stringify({ error: 'usage: url-elicitation-modern.mjs URL TOKEN TOOL accept|decline|cancel' }));
  process.exit(1);
}
const client = new Client(
  { name: 'url-elicitation-modern-test', version: '1.0.0' },
  { capabilities: { elicitation: { url: {} } }, versionNegotiation: { mode: 'auto' } },
);
client.setRequestHandler('elicitation/create', async (request) => {
  console.log(JSON.stringify({ asked: request.params }));
  return { action };
});
try {
  await client.connect(new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
  }));
  const result = await client.callTool({ name: tool, arguments: {} }, { timeout: 120000 });
  console.log(JSON.stringify({ version: client.getNegotiatedProtocolVersion(), result }));
  await client.close();
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ error: String((e && e.message) || e) }));
  process.exit(1);
}
