#!/usr/bin/env node
// Calls one method on a real OpenClaw gateway's WebSocket (protocol 4) and prints the response
// payload as one JSON line, for mcp-warden's tests. Node >= 22 (global WebSocket), no dependencies.
//
//   OPENCLAW_URL=ws://127.0.0.1:PORT OPENCLAW_GATEWAY_TOKEN=… \
//     node gateway-call.mjs METHOD '{"json":"params"}' [SCOPE …]
//
// e.g. `node gateway-call.mjs tools.effective '{"agentId":"alice","sessionKey":"agent:alice:t1"}'`.
// Scopes default to operator.read (and operator.admin if asked). It signs in as a loopback
// backend client (`gateway-client`/`backend`, token auth), which keeps its scopes without a device
// identity. Retries while the gateway starts (UNAVAILABLE, up to 60 s).
// Exit 0 and `{"ok":true,"payload":…}`; exit 1 and `{"ok":false,"error":…}`.
const [method, rawParams = '{}', ...scopeArgs] = process.argv.slice(2);
if (!method) {
  process.stderr.write('usage: gateway-call.mjs METHOD [JSON-PARAMS] [SCOPE …]\n');
  process.exit(2);
}
const URL_ = process.env.OPENCLAW_URL;
const TOKEN = process.env.OPENCLAW_GATEWAY_TOKEN;
const scopes = scopeArgs.length ? scopeArgs : ['operator.read'];
const params = JSON.parse(rawParams);

function once() {
  return new Promise((resolve) => {
    const ws = new WebSocket(URL_);
    const send = (id, m, p) => ws.send(JSON.stringify({ type: 'req', id, method: m, params: p }));
    const done = (v) => {
      try {
        ws.close();
      } catch {
        /* already closed */
      }
      resolve(v);
    };
    ws.addEventListener('error', () => done({ ok: false, error: { message: 'cannot connect' }, retry: true }));
    ws.addEventListener('message', (ev) => {
      const m = JSON.parse(String(ev.data));
      if (m.type === 'event' && m.event === 'connect.challenge') {
        send('connect', 'connect', {
          minProtocol: 4,
          maxProtocol: 4,
          client: { id: 'gateway-client', version: '0', platform: 'linux', mode: 'backend', displayName: 'gateway-call' },
          role: 'operator',
          scopes,
          caps: [],
          auth: { token: TOKEN },
        });
      } else if (m.type === 'res' && m.id === 'connect') {
        if (!m.ok) return done({ ok: false, error: m.error, retry: !!m.error?.retryable });
        send('call', method, params);
      } else if (m.type === 'res' && m.id === 'call') {
        done(m.ok ? { ok: true, payload: m.payload } : { ok: false, error: m.error });
      }
    });
  });
}

const until = Date.now() + 60_000;
for (;;) {
  const r = await once();
  if (r.retry && Date.now() < until) {
    await new Promise((res) => setTimeout(res, 500));
    continue;
  }
  delete r.retry;
  process.stdout.write(JSON.stringify(r) + '\n');
  process.exit(r.ok ? 0 : 1);
}
