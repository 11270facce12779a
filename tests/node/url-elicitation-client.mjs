// A 2025-11-25 MCP client (the official TypeScript SDK 1.x) that declares URL-mode elicitation,
// calls one tool and reports how the SDK surfaced the answer: a URLElicitationRequiredError
// (-32042) with the URL to open, or the tool's result.
//
//   node url-elicitation-client.mjs URL BEARER_TOKEN TOOL
//
// Prints one JSON line: {"urlElicitation": {"class", "code", "elicitations": [...]}} or
// {"result": {...}}, and exits 0; or {"error": "..."} and exits 1.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UrlElicitationRequiredError } from '@modelcontextprotocol/sdk/types.js';

const [url, token, tool] = process.argv.slice(2);
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
  }
  await client.close();
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ error: String(e && e.message || e) }));
  process.exit(1);
}
