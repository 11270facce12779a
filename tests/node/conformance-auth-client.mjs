#!/usr/bin/env node
// The "client under test" command for the official MCP conformance suite's *client*
// authorization scenarios (`conformance client --command "node conformance-auth-client.mjs"
// --scenario auth/...`), with mcp-warden playing the OAuth client: the role it plays towards an
// OAuth-protected upstream (`[upstreams.NAME] oauth = { … }`).
//
//   node conformance-auth-client.mjs <serverUrl>
//
// The suite starts a mock MCP server (protected by a mock authorization server) and runs this
// command with the server's URL as the last argument and, in the environment:
//   MCP_CONFORMANCE_SCENARIO          the scenario, e.g. auth/metadata-default
//   MCP_CONFORMANCE_PROTOCOL_VERSION  the wire the mock server speaks (2025-11-25: stateful,
//                                     initialize handshake; 2026-07-28: stateless, per-request
//                                     _meta). mcp-warden finds this out by itself
//                                     (`server/discover` first), so it is only logged here.
//   MCP_CONFORMANCE_CONTEXT           JSON, only for scenarios that hand the client data: e.g.
//                                     {client_id, client_secret} of a pre-registered client.
// and we need:
//   MCP_WARDEN_BIN                    the mcp-warden binary (required)
//   MCP_WARDEN_LOG                    optional log filter for mcp-warden (default `info`)
//   CONFORMANCE_AUTH_CLIENT_DEADLINE_MS  optional: give up (exit 1) after this long (default
//                                     25000, below the suite's default --timeout of 30000)
//
// What it does — what an operator and an agent do with mcp-warden in real life:
//   1. writes a temporary config with one upstream `s` = <serverUrl> and its `oauth` setting
//      (authorization_code with dynamic registration by default; the context's client_id /
//      client_secret when the scenario hands out a pre-registered client; client_credentials
//      for the client-credentials scenario), and a temporary state directory
//      (XDG_STATE_HOME, where mcp-warden keeps the sealed grant);
//   2. authorization_code: runs `mcp-warden auth login s`, takes the URL it prints (first
//      stdout line) and plays the browser: follows it with fetch (redirect: 'manual', a cookie
//      jar) until a redirect points at the loopback redirect_uri mcp-warden listens on, and
//      requests that. (The suite's mock authorization server redirects at once, with a code.)
//      Then waits for `auth login` to exit: 0 = signed in, else the reason is on its stderr.
//      client_credentials needs no sign-in.
//   3. runs `mcp-warden stdio` and speaks plain JSON-RPC to it as an agent would (newline-
//      delimited, protocol 2025-11-25 on this side — mcp-warden picks the upstream's era by
//      itself): initialize, notifications/initialized, tools/list, tools/call of the first
//      tool with {} (the suite's own reference client does connect + listTools + callTool for
//      every auth scenario; auth/scope-step-up only steps up on that tools/call).
//   4. the operator again, at most once: if those calls failed and mcp-warden's log asks for a
//      new sign-in ("run `mcp-warden auth login s`" — how it reports a grant the upstream no
//      longer accepts), step 2 runs again and the agent retries in the same session. Nothing
//      else is done on mcp-warden's behalf: what it does not turn into a sign-in request stays
//      a failure. If the same session still fails, a second `mcp-warden stdio` session is
//      tried as a diagnostic only (logged; the exit status stays 1).
//
// Exit status: 0 when every step worked; 1 when a step failed (a refused sign-in — which is
// the expected outcome in the scenarios where the client MUST refuse, e.g. auth/iss-wrong-issuer,
// auth/resource-mismatch, auth/metadata-issuer-mismatch: the suite allows a client error there
// and judges only what reached its servers — or an MCP request that got an error); 2 for a
// harness problem (bad arguments, binary missing); 3 when the scenario needs a client feature
// mcp-warden's config cannot express at all (private_key_jwt, RFC 8693/7523 grants), so nothing
// was attempted. Everything this script says goes to stderr, prefixed `[auth-client]`, and so
// does mcp-warden's log (prefixed `[login]` / `[stdio]`): the suite stores both in the
// scenario's stderr.txt.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const log = (...parts) => console.error('[auth-client]', ...parts);
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(2)}s`;

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------
const serverUrl = process.argv[process.argv.length - 1];
const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? '';
const protocolVersion = process.env.MCP_CONFORMANCE_PROTOCOL_VERSION ?? '';
const wardenBin = process.env.MCP_WARDEN_BIN;
const deadlineMs = Number(process.env.CONFORMANCE_AUTH_CLIENT_DEADLINE_MS ?? 25000);

let context = {};
if (process.env.MCP_CONFORMANCE_CONTEXT) {
  try {
    context = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT);
  } catch (e) {
    log(`MCP_CONFORMANCE_CONTEXT is not JSON: ${e.message}`);
    process.exit(2);
  }
}
if (process.argv.length < 3 || !/^https?:\/\//.test(serverUrl)) {
  log('usage: conformance-auth-client.mjs <serverUrl>  (run by `conformance client --command`)');
  process.exit(2);
}
if (!wardenBin) {
  log('MCP_WARDEN_BIN is not set (the mcp-warden binary to test)');
  process.exit(2);
}
log(`scenario=${scenario} wire=${protocolVersion} server=${serverUrl}`);
if (Object.keys(context).length) {
  // The context's values are test fixtures (fixed strings, throwaway keys): safe to log by name.
  log(`context keys: ${Object.keys(context).join(', ')}`);
}

// ---------------------------------------------------------------------------------------------
// Scenarios whose client side mcp-warden cannot be configured for at all. Nothing is attempted;
// the suite then records the scenario's checks as not reached.
// ---------------------------------------------------------------------------------------------
const NOT_EXPRESSIBLE = {
  'auth/client-credentials-jwt':
    'client_credentials with private_key_jwt client authentication (RFC 7523 §2.2): mcp-warden ' +
    'authenticates a client only with a secret (client_secret_basic / client_secret_post)',
  'auth/enterprise-managed-authorization':
    'SEP-990: RFC 8693 token exchange at an IdP + RFC 7523 JWT-bearer grant: not implemented ' +
    '(the README lists token exchange as not built yet)',
  'auth/wif-jwt-bearer':
    'SEP-1933 workload identity: RFC 7523 JWT-bearer grant with a workload JWT: no such grant ' +
    'in `oauth.grant` (authorization_code | client_credentials)',
};
if (NOT_EXPRESSIBLE[scenario]) {
  log(`not expressible in an mcp-warden config: ${NOT_EXPRESSIBLE[scenario]}`);
  process.exit(3);
}

// ---------------------------------------------------------------------------------------------
// Temporary config and state directory
// ---------------------------------------------------------------------------------------------
const work = mkdtempSync(path.join(tmpdir(), 'mw-conf-auth-'));
const configPath = path.join(work, 'mcp-warden.toml');
const SECRET_ENV = 'CONFORMANCE_CLIENT_SECRET';
const childEnv = {
  ...process.env,
  XDG_STATE_HOME: path.join(work, 'state'),
  MCP_WARDEN_LOG: process.env.MCP_WARDEN_LOG ?? 'info',
  MCP_WARDEN_LOG_FORMAT: 'text',
  NO_COLOR: '1',
};

// TOML basic strings accept JSON's string escapes (\" \\ \n \uXXXX), so JSON.stringify quotes.
const q = (s) => JSON.stringify(String(s));
const oauth = {};
if (scenario.startsWith('auth/client-credentials')) {
  // auth/client-credentials-basic: a machine client registered for mcp-warden (SEP-1046).
  oauth.grant = 'client_credentials';
  oauth.client_id = context.client_id;
  oauth.client_secret_env = SECRET_ENV;
  childEnv[SECRET_ENV] = context.client_secret ?? '';
} else {
  oauth.grant = 'authorization_code';
  // auth/pre-registration hands out a pre-registered client (the AS has no registration
  // endpoint); everywhere else mcp-warden registers itself (RFC 7591).
  if (context.client_id) oauth.client_id = context.client_id;
  // The operator hosts mcp-warden's client ID metadata document (mcp-warden serves it at this
  // URL's path; the suite's mock server does not fetch it): used where the authorization server
  // supports URL client ids, else mcp-warden registers itself.
  oauth.client_metadata_url = 'https://conformance-test.local/client-metadata.json';
  if (context.client_secret) {
    oauth.client_secret_env = SECRET_ENV;
    childEnv[SECRET_ENV] = context.client_secret;
  }
}
const oauthToml = Object.entries(oauth)
  .map(([k, v]) => `${k} = ${q(v)}`)
  .join(', ');
const config = `# written by tests/node/conformance-auth-client.mjs for ${scenario}
[upstreams.s]
url = ${q(serverUrl)}
oauth = { ${oauthToml} }
`;
writeFileSync(configPath, config);
log(`config: oauth = { ${oauthToml} }`);

// ---------------------------------------------------------------------------------------------
// Child processes: all killed on the way out, whatever the way out is.
// ---------------------------------------------------------------------------------------------
const children = new Set();
function startWarden(args, tag) {
  const child = spawn(wardenBin, args, { env: childEnv, stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  // mcp-warden's log, line by line, tagged (and kept: the harness looks for a sign-in request).
  child.logLines = [];
  readline.createInterface({ input: child.stderr }).on('line', (l) => {
    child.logLines.push(l);
    console.error(`[${tag}] ${l}`);
  });
  child.exited = new Promise((resolve) => {
    child.on('error', (error) => resolve({ code: null, signal: null, error }));
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  return child;
}

let finishing = false;
function finish(code, why) {
  if (finishing) return;
  finishing = true;
  if (why) log(why);
  log(`exit ${code} after ${elapsed()}`);
  for (const c of children) c.kill('SIGKILL');
  try {
    rmSync(work, { recursive: true, force: true });
  } catch {
    // best effort
  }
  process.exit(code);
}
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => finish(1, `got ${sig}`));
setTimeout(() => finish(1, `deadline of ${deadlineMs} ms reached`), deadlineMs).unref();

/** `promise`, or a rejection after `ms`. */
function within(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------
// Step 2: the operator's sign-in (authorization_code only)
// ---------------------------------------------------------------------------------------------

/** Plays the browser: follows `startUrl` until a redirect reaches `redirectUri`, requests it. */
async function browse(startUrl, redirectUri) {
  const jar = new Map(); // origin -> Map(cookie name -> value)
  const target = new URL(redirectUri);
  let url = new URL(startUrl);
  for (let hop = 0; hop < 20; hop += 1) {
    const atCallback =
      url.origin === target.origin && url.pathname === target.pathname;
    const cookies = jar.get(url.origin);
    const headers = cookies?.size
      ? { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; ') }
      : {};
    log(`browser: GET ${atCallback ? url.href : `${url.origin}${url.pathname}`}`);
    const resp = await fetch(url, { redirect: 'manual', headers });
    for (const sc of resp.headers.getSetCookie?.() ?? []) {
      const [pair] = sc.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      if (!jar.has(url.origin)) jar.set(url.origin, new Map());
      jar.get(url.origin).set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    const body = await resp.text();
    if (atCallback) {
      log(`browser: the redirect_uri answered ${resp.status}`);
      return;
    }
    const location = resp.headers.get('location');
    if (resp.status >= 300 && resp.status < 400 && location) {
      url = new URL(location, url);
      continue;
    }
    throw new Error(
      `the authorization server answered ${resp.status} without redirecting back: ${body.slice(0, 300)}`,
    );
  }
  throw new Error('more than 20 redirects');
}

async function signIn() {
  const login = startWarden(['auth', 'login', 's', '--config', configPath], 'login');
  login.stdin.end();
  // The first stdout line is the authorization URL; nothing else is expected on stdout.
  const lines = readline.createInterface({ input: login.stdout });
  const firstLine = new Promise((resolve) => {
    lines.once('line', resolve);
    lines.once('close', () => resolve(null));
  });
  const url = await within(
    Promise.race([firstLine, login.exited.then(() => null)]),
    15000,
    '`auth login` printing the authorization URL',
  );
  if (url) {
    const authUrl = new URL(url.trim());
    const redirectUri = authUrl.searchParams.get('redirect_uri');
    log(
      `authorization request: ${authUrl.origin}${authUrl.pathname} ` +
        `client_id=${authUrl.searchParams.get('client_id')} scope=${authUrl.searchParams.get('scope') ?? '(none)'} ` +
        `resource=${authUrl.searchParams.get('resource')} redirect_uri=${redirectUri}`,
    );
    if (!redirectUri) throw new Error('the authorization URL has no redirect_uri');
    try {
      await within(browse(authUrl.href, redirectUri), 15000, 'the browser leg');
    } catch (e) {
      // The sign-in cannot complete without the callback; stop it and report.
      login.kill('SIGTERM');
      throw e;
    }
  } else {
    log('`auth login` printed no authorization URL (it refused before the browser leg)');
  }
  const { code, signal, error } = await within(login.exited, 15000, '`auth login` exiting');
  if (error) throw new Error(`cannot run ${wardenBin}: ${error.message}`);
  if (code !== 0) {
    return { ok: false, why: `\`auth login\` exited with ${code ?? signal} (reason in its log above)` };
  }
  return { ok: true };
}

// ---------------------------------------------------------------------------------------------
// Step 3: the agent's session over stdio
// ---------------------------------------------------------------------------------------------

/** A minimal newline-delimited JSON-RPC client over a child's stdin/stdout. */
function jsonRpc(child) {
  const pending = new Map();
  let nextId = 1;
  const send = (msg) => child.stdin.write(`${JSON.stringify(msg)}\n`);
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      log(`stdio: not JSON on stdout: ${line.slice(0, 200)}`);
      return;
    }
    if (msg.method && msg.id !== undefined) {
      // A request from mcp-warden to us (ping, roots/list, …): answer ping, refuse the rest.
      if (msg.method === 'ping') send({ jsonrpc: '2.0', id: msg.id, result: {} });
      else send({ jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'not supported by this client' } });
      return;
    }
    if (msg.method) {
      log(`stdio: notification ${msg.method}`);
      return;
    }
    const waiter = pending.get(msg.id);
    if (waiter) {
      pending.delete(msg.id);
      waiter(msg);
    }
  });
  child.exited.then(() => {
    for (const [, waiter] of pending) waiter({ error: { code: 0, message: 'mcp-warden exited' } });
    pending.clear();
  });
  return {
    notify: (method, params) => send({ jsonrpc: '2.0', method, ...(params && { params }) }),
    request(method, params, ms = 10000) {
      const id = nextId++;
      const answer = new Promise((resolve) => pending.set(id, resolve));
      send({ jsonrpc: '2.0', id, method, params });
      return within(answer, ms, method);
    },
  };
}

/** A short, safe description of a JSON-RPC answer. */
function describe(answer) {
  if (answer.error) return `error ${answer.error.code}: ${answer.error.message}`;
  const r = answer.result ?? {};
  if (r.isError) {
    const text = (r.content ?? []).map((c) => c.text ?? `[${c.type}]`).join(' ');
    return `tool error: ${text.slice(0, 300)}`;
  }
  return 'ok';
}

/** tools/list, then tools/call of the first tool with {}: the failures, if any. */
async function useTools(rpc) {
  const failures = [];
  const list = await rpc.request('tools/list', {});
  const tools = list.result?.tools ?? [];
  log(`tools/list: ${describe(list)}; tools: ${tools.map((t) => t.name).join(', ') || '(none)'}`);
  if (list.error) failures.push(`tools/list: ${describe(list)}`);
  else if (tools.length === 0) failures.push('tools/list: no tools (the upstream was not reached)');
  if (tools.length > 0) {
    const call = await rpc.request('tools/call', { name: tools[0].name, arguments: {} });
    log(`tools/call ${tools[0].name}: ${describe(call)}`);
    if (describe(call) !== 'ok') failures.push(`tools/call ${tools[0].name}: ${describe(call)}`);
  }
  return failures;
}

// What mcp-warden logs when serving needs an operator to sign in again (a refused token that
// cannot be renewed, a revoked grant): README "calls to that upstream fail until an operator
// signs in again (no restart needed)".
const SIGN_IN_AGAIN = 'run `mcp-warden auth login s`';

async function session() {
  const stdio = startWarden(['stdio', '--config', configPath], 'stdio');
  const rpc = jsonRpc(stdio);

  const init = await rpc.request('initialize', {
    protocolVersion: '2025-11-25',
    capabilities: {},
    clientInfo: { name: 'mcp-warden-conformance-auth-client', version: '1.0.0' },
  }, 15000);
  log(`initialize: ${describe(init)}${init.result ? ` (protocol ${init.result.protocolVersion})` : ''}`);
  if (init.error) return [`initialize: ${describe(init)}`];
  rpc.notify('notifications/initialized');

  let failures = await useTools(rpc);

  // The operator's part, once: when the calls failed and mcp-warden asks for a new sign-in
  // (e.g. auth/authorization-server-migration: the upstream refuses the token and the grant has
  // no refresh token), sign in again — as the log tells the operator to — and let the agent
  // retry in the same session for a few seconds (mcp-warden restarts the upstream with a
  // back-off). No other operator action is ever taken: a failure mcp-warden does not turn into
  // a sign-in request (e.g. a 403 insufficient_scope) stays a failure.
  if (failures.length && oauth.grant === 'authorization_code' &&
      stdio.logLines.some((l) => l.includes(SIGN_IN_AGAIN))) {
    log('mcp-warden asks for a new sign-in: the operator signs in again');
    const again = await signIn();
    if (!again.ok) return [...failures, `second sign-in refused: ${again.why}`];
    log(`signed in again (${elapsed()})`);
    const until = Date.now() + 8000;
    do {
      await new Promise((r) => setTimeout(r, 500));
      failures = await useTools(rpc);
    } while (failures.length && Date.now() < until);
    if (failures.length) {
      // Diagnostic only (the verdict stays a failure): does a *new* session work with the new
      // sign-in? Tells a stale per-session state apart from a bad grant.
      const fresh = startWarden(['stdio', '--config', configPath], 'stdio-2');
      const rpc2 = jsonRpc(fresh);
      const init2 = await rpc2.request('initialize', {
        protocolVersion: '2025-11-25',
        capabilities: {},
        clientInfo: { name: 'mcp-warden-conformance-auth-client', version: '1.0.0' },
      }, 15000);
      if (!init2.error) rpc2.notify('notifications/initialized');
      const freshFailures = init2.error ? [`initialize: ${describe(init2)}`] : await useTools(rpc2);
      log(`diagnostic: a new mcp-warden stdio session after the new sign-in ${
        freshFailures.length ? `fails too: ${freshFailures.join('; ')}` : 'works (initialize, tools/list, tools/call)'}`);
      fresh.stdin.end();
      await within(fresh.exited, 3000, 'mcp-warden stdio exiting').catch(() => fresh.kill('SIGTERM'));
    }
  }

  // End the session as an agent does: close stdin, give it a moment to exit by itself.
  stdio.stdin.end();
  await within(stdio.exited, 3000, 'mcp-warden stdio exiting').catch(() => stdio.kill('SIGTERM'));
  return failures;
}

// ---------------------------------------------------------------------------------------------
try {
  if (oauth.grant === 'authorization_code') {
    const signedIn = await signIn();
    if (!signedIn.ok) finish(1, `sign-in refused: ${signedIn.why}`);
    log(`signed in (${elapsed()})`);
  }
  const failures = await session();
  if (failures.length) finish(1, `MCP session failed: ${failures.join('; ')}`);
  finish(0, 'initialize, tools/list and tools/call all answered');
} catch (e) {
  finish(1, `failed: ${e.message}`);
}
