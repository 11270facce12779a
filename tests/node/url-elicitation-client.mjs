// A 2025-11-25 MCP client (the official TypeScript SDK 1.x) that declares URL-mode elicitation,
// calls one tool and reports how the SDK surfaced the answer: a URLElicitationRequiredError
// (-32042) with the URL to open, or the tool's result.
//
//   node url-elicitation-client.mjs URL BEARER_TOKEN TOOL [--wait]
//
// Prints one JSON line: {"urlElicitation": {"class", "code", "elicitations": [...]}} or
// {"result": {...}}. With --wait, after a URL elicitation it waits (up to 60 s) for the
// server's notifications/elicitation/complete naming it, calls again, and prints a second
// line: {"completed": "<elicitationId>", "result": {...}}. Exits 0; or prints {"error": "..."}
// and exits 1.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  ElicitationCompleteNotificationSchema,
  UrlElicitationRequiredError,
} from '@modelcontextprotocol/sdk/types.js';

const [url, token, tool, wait] = process.argv.slice(2);
if (!url || !token || !tool) {
  console.log(JSON.stringify({ error: 'usage: url-elicitation-client.mjs URL TOKEN TOOL' }));
  process.exit(1);
}
const client = new Client(
  { name: 'url-elicitation-test', version: '1.0.0' },
  { capabilities: { elicitation: { form: {}, url: {} } } },
);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { authorization: `Bearer ${token}` } },
});
const completed = new Set();
let woken = null;
client.setNotificationHandler(ElicitationCompleteNotificationSchema, (n) => {
  completed.add(n.params.elicitationId);
  if (woken) woken();
});
try {
  await client.connect(transport);
  try {
    const result = await client.callTool({ name: tool, arguments: {} });
    console.log(JSON.stringify({ result }));
  } catch (e) {
    if (!(e instanceof UrlElicitationRequiredError)) throw e;
    console.log(JSON.stringify({
      urlElicitation: { class: e.constructor.name, code: e.code, elicitations: e.elicitations },
    }));
    if (wait === '--wait') {
      const id = e.elicitations[0].elicitationId;
      const deadline = Date.now() + 60000;
      while (!completed.has(id)) {
        if (Date.now() > deadline) throw new Error(`no elicitation/complete for ${id}`);
        await new Promise((r) => { woken = r; setTimeout(r, 1000); });
      }
      const result = await client.callTool({ name: tool, arguments: {} });
      console.log(JSON.stringify({ completed: id, result }));
    }
  }
  await client.close();
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ error: String(e && e.message || e) }));
  process.exit(1);
}
