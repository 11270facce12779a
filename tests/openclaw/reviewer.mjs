#!/usr/bin/env node
// The people on OpenClaw's side, for mcp-warden's tests: a reviewer (an approval client:
// scope operator.admin, cap plugin-approvals, as OpenClaw's own approval UIs connect) and a chat
// user (operator.write + operator.approvals, who types `/approve <id> <decision>`), both on a real
// OpenClaw gateway's WebSocket (protocol 4). Node >= 22 (global WebSocket), no dependencies.
//
//   OPENCLAW_URL=ws://127.0.0.1:PORT OPENCLAW_GATEWAY_TOKEN=… node reviewer.mjs
//
// Line protocol (one JSON object per line):
//   stdout  {"ready":true}                       both connected (retries while the gateway starts)
//           {"event":"plugin.approval.requested"|"plugin.approval.resolved","payload":{…}}
//           {"resolved":ID,"ok":bool,"error":…}   answer to a resolve command
//           {"chat":TEXT}                          OpenClaw's reply to a chat command
//   stdin   {"resolve":ID,"decision":"allow-once"|"allow-always"|"deny"}
//           {"chat":"/approve ID allow-once"}
// Exits when stdin closes. Exit 2 when the gateway never accepts the connection (90 s).
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';

const URL_ = process.env.OPENCLAW_URL;
const TOKEN = process.env.OPENCLAW_GATEWAY_TOKEN;
const out = (v) => process.stdout.write(JSON.stringify(v) + '\n');

/// One signed-in connection: `send` resolves with the response to a request; events go to `onEvent`.
function connect(name, scopes, caps, onEvent) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(URL_);
    const pending = new Map();
    const send = (method, params) => {
      const id = randomUUID();
      ws.send(JSON.stringify({ type: 'req', id, method, params }));
      return new Promise((r) => pending.set(id, r));
    };
    ws.addEventListener('error', () => reject(new Error(`${name}: cannot connect`)));
    ws.addEventListener('close', () => reject(new Error(`${name}: closed`)));
    ws.addEventListener('message', async (ev) => {
      const m = JSON.parse(String(ev.data));
      if (m.type === 'event' && m.event === 'connect.challenge') {
        const res = await send('connect', {
          minProtocol: 4,
          maxProtocol: 4,
          client: { id: 'gateway-client', version: '0', platform: 'linux', mode: 'backend', displayName: name },
          role: 'operator',
          scopes,
          caps,
          auth: { token: TOKEN },
        });
        if (res.ok) resolve({ send, ws });
        else reject(Object.assign(new Error(`${name}: ${res.error?.message}`), { retryable: res.error?.retryable }));
        return;
      }
      if (m.type === 'res') {
        const r = pending.get(m.id);
        pending.delete(m.id);
        r?.(m);
        return;
      }
      if (m.type === 'event') onEvent(m);
    });
  });
}

/// Retries while the gateway starts (it refuses `connect` until its sidecars are up).
async function connectWhenReady(name, scopes, caps, onEvent) {
  const until = Date.now() + 90_000;
  for (;;) {
    try {
      return await connect(name, scopes, caps, onEvent);
    } catch (e) {
      if (Date.now() > until) {
        process.stderr.write(`reviewer: ${e.message}\n`);
        process.exit(2);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

// Final chat messages by run id: a command's reply is the one of its own run (other runs of
// the session, e.g. an agent's turn, send theirs on the same connection).
const finals = new Map();
const waiting = new Map();
const reviewer = await connectWhenReady('reviewer', ['operator.admin'], ['plugin-approvals'], (m) => {
  if (m.event === 'plugin.approval.requested' || m.event === 'plugin.approval.resolved') {
    out({ event: m.event, payload: m.payload });
  }
});
const chatter = await connectWhenReady('chat-user', ['operator.write', 'operator.approvals'], [], (m) => {
  if (m.event === 'chat' && m.payload?.state === 'final') {
    const text = m.payload.message?.content?.[0]?.text ?? '';
    const w = waiting.get(m.payload.runId);
    if (w) w(text);
    else finals.set(m.payload.runId, text);
  }
});
out({ ready: true });

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const cmd = JSON.parse(line);
  if (cmd.resolve) {
    const res = await reviewer.send('plugin.approval.resolve', { id: cmd.resolve, decision: cmd.decision });
    out({ resolved: cmd.resolve, ok: res.ok, error: res.error ?? null });
  } else if (cmd.chat) {
    const res = await chatter.send('chat.send', { sessionKey: 'main', message: cmd.chat, idempotencyKey: randomUUID() });
    if (!res.ok) {
      out({ chat: `chat.send refused: ${res.error?.message}` });
      continue;
    }
    const runId = res.payload?.runId;
    const reply = finals.has(runId)
      ? finals.get(runId)
      : await new Promise((r) => waiting.set(runId, r));
    waiting.delete(runId);
    out({ chat: reply });
  }
}
reviewer.ws.close();
chatter.ws.close();
