// An agent in a container of docker/compose.yaml (tests/container.rs): opens an MCP session
// through mcp-warden with the agent's token, calls the third-party upstream's echo (`ev__echo`,
// server-everything on the compose network) and the demo's send_email (held until a human
// approves), printing each answer as one JSON line. Node >= 22 (global fetch), no dependencies.
const url = process.env.MCP_URL;
const auth = { Authorization: `Bearer ${process.env.MCP_WARDEN_AGENT_TOKEN}` };
let session;
async function rpc(id, method, params) {
  const r = await fetch(url, {
    method: 'POST',
    headers: {
      ...auth,
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
      ...(session ? { 'Mcp-Session-Id': session, 'MCP-Protocol-Version': '2025-11-25' } : {}),
    },
    body: JSON.stringify({ jsonrpc: '2.0', id, method, params }),
  });
  session ??= r.headers.get('mcp-session-id');
  const text = await r.text();
  // JSON, or an SSE stream whose last data line is the answer.
  const data = text.trimStart().startsWith('{')
    ? text
    : text.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).filter(Boolean).pop();
  return JSON.parse(data);
}
await rpc(0, 'initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'compose-agent', version: '1' } });
await fetch(url, {
  method: 'POST',
  headers: { ...auth, 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', 'Mcp-Session-Id': session, 'MCP-Protocol-Version': '2025-11-25' },
  body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
});
console.log(JSON.stringify(await rpc(1, 'tools/call', { name: 'ev__echo', arguments: { message: 'from the agent container' } })));
console.log(JSON.stringify(await rpc(2, 'tools/call', { name: 'demo__send_email', arguments: { to: 'bob@example.com', subject: 'hi', body: 'hello' } })));
