#!/usr/bin/env node
// TEST-ONLY OAuth 2.1 / OIDC authorization server for mcp-warden's OAuth tests, built on
// `oidc-provider` (panva). Plain HTTP on 127.0.0.1, in-memory storage, no real login: every
// authorization request is auto-logged-in and auto-consented. Never expose it.
//
// RFC 8693 token exchange: see "Token exchange" below.
//
// Env: PORT (0 = free port), KEYS (private JWKS file; first key signs, all are published;
// created with one ES256 key if missing), AT_TTL (s, default 300), USER (auto-login subject when
// no login_hint, default "alice" — NB most shells export USER, so set it explicitly), GROUPS (csv,
// `groups` claim on user access tokens).
// Stdout: exactly one line `listening on http://127.0.0.1:PORT` (= the issuer) once ready.
import fs from 'node:fs';
import http from 'node:http';
import Provider, { errors } from 'oidc-provider';
import { SignJWT, createLocalJWKSet, exportJWK, generateKeyPair, importJWK, jwtVerify } from 'jose'; // oidc-provider's own dep

// oidc-provider prints its NOTICEs with console.info (stdout): keep stdout for our one line.
console.info = console.log = (...a) => console.error(...a);

const AT_TTL = Number(process.env.AT_TTL ?? 300);
const DEFAULT_USER = process.env.USER || 'alice';
const GROUPS = (process.env.GROUPS ?? '').split(',').map((g) => g.trim()).filter(Boolean);
const RESOURCE_SCOPES = 'mcp tools:write admin';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

// ---- Keys ------------------------------------------------------------------------------------
// The JWKS file holds private keys; keys[0] signs access tokens (and /test/sign), the rest are
// only published on jwks_uri (key rotation: restart with [new, old]).
const DEFAULT_ALG = { RSA: 'RS256', 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512', Ed25519: 'EdDSA' };
async function loadKeys(path) {
  if (path && fs.existsSync(path)) return JSON.parse(fs.readFileSync(path, 'utf8')).keys;
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), alg: 'ES256', use: 'sig', kid: `es256-${Date.now().toString(36)}` };
  if (path) fs.writeFileSync(path, `${JSON.stringify({ keys: [jwk] }, null, 2)}\n`, { mode: 0o600 });
  return [jwk];
}
const keys = (await loadKeys(process.env.KEYS)).map((k) => ({ ...k, alg: k.alg ?? DEFAULT_ALG[k.crv ?? k.kty] }));
if (!keys.length || !keys[0].kid) throw new Error('KEYS: need at least one key, and the first needs a "kid"');
const signer = { alg: keys[0].alg, kid: keys[0].kid };

// ---- Resource servers (RFC 8707) ---------------------------------------------------------------
// Any http URL on 127.0.0.1/localhost (any port, any path) is a resource server: JWT access
// tokens with aud = the indicator, the three test scopes, AT_TTL, signed by keys[0].
function resourceServerInfo(_ctx, indicator) {
  const url = URL.parse(indicator);
  if (url?.protocol !== 'http:' || !['127.0.0.1', 'localhost'].includes(url.hostname)) {
    throw new errors.InvalidTarget('this test AS only knows http://127.0.0.1:*/ and http://localhost:*/ resources');
  }
  return { scope: RESOURCE_SCOPES, audience: indicator, accessTokenFormat: 'jwt', accessTokenTTL: AT_TTL, jwt: { sign: signer } };
}

// ---- Static clients -----------------------------------------------------------------------------
// client_credentials agents: registered as client_secret_basic; oidc-provider accepts
// client_secret_post for the same client too; `warden` may also use token exchange (below). The
// CLI is a public native client (PKCE), its loopback redirect matches on any port.
const ccClient = (client_id, client_secret) => ({
  client_id, client_secret, grant_types: ['client_credentials'], response_types: [], redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
});
const clients = [
  ccClient('agent-router', 'router-secret-0123456789'),
  ccClient('agent-specialist', 'specialist-secret-0123456789'),
  { ...ccClient('warden', 'warden-secret-0123456789'), grant_types: ['client_credentials', TOKEN_EXCHANGE] },
  { client_id: 'warden-cli', application_type: 'native', token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'] },
];

// ---- HTTP server --------------------------------------------------------------------------------
// Listen first (PORT=0 needs the real port before the issuer is known), then build the provider.
let provider;
let providerCallback;
const server = http.createServer((req, res) => {
  route(req, res).catch((err) => {
    console.error('[oauth-as]', err);
    if (!res.headersSent) {
      json(res, err.statusCode ?? 500, { error: err.error ?? 'server_error', error_description: String(err.error_description ?? err.message) });
    }
  });
});
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

provider = new Provider(issuer, {
  jwks: { keys },
  clients,
  // Scopes clients may register and ask for (DCR checks a client's `scope` against them): the
  // OpenID ones and the resource servers' (RESOURCE_SCOPES).
  scopes: ['openid', 'offline_access', ...RESOURCE_SCOPES.split(' ')],
  clientDefaults: { id_token_signed_response_alg: signer.alg }, // default RS256 needs an RSA key
  cookies: { keys: ['oauth-as-test-only-cookie-key'] },
  pkce: { required: () => true }, // S256 is the only method oidc-provider 9 supports
  features: {
    devInteractions: { enabled: false }, // our /interaction handler below replaces the login UI
    clientCredentials: { enabled: true },
    registration: { enabled: true }, // RFC 7591, open (no initial access token)
    revocation: { enabled: true },
    clientIdMetadataDocument: { enabled: true, ack: 'draft-02' }, // CIMD: https client_id URLs only
    resourceIndicators: {
      enabled: true,
      // No `resource` at /auth or in client_credentials → invalid_target (MCP clients must send
      // one). At /token a single granted resource is used when `resource` is omitted.
      defaultResource: async (_ctx, client, oneOf) => {
        if (oneOf) return oneOf; // several granted and none chosen: oidc-provider errors
        // A client registered for sign-ins only (`scope: "openid"`, an OpenID Connect relying
        // party such as mcp-warden's browser client) asks for ID tokens, for no resource.
        if (client?.scope === 'openid') return undefined;
        throw new errors.InvalidTarget('resource parameter is required by this test AS');
      },
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, indicator) => resourceServerInfo(ctx, indicator),
    },
  },
  ttl: {
    AccessToken: AT_TTL, ClientCredentials: AT_TTL, AuthorizationCode: 60, IdToken: 3600,
    RefreshToken: 86400, Interaction: 600, Session: 86400, Grant: 86400,
  },
  // Refresh tokens for every client that may use them (no offline_access needed), not tied to
  // the login session. Public clients' refresh tokens rotate (oidc-provider default).
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  expiresWithSession: async () => false,
  // `groups` on access tokens for a user (client_credentials tokens have no accountId).
  extraTokenClaims: async (_ctx, token) => (token.accountId && GROUPS.length ? { groups: GROUPS } : undefined),
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  // Outgoing fetches (CIMD documents): loopback only. oidc-provider's own SSRF guard (the
  // `dispatcher` it passes) refuses loopback addresses, so drop it. For an https CIMD URL served
  // with a test CA, start this script with NODE_EXTRA_CA_CERTS=<ca.pem>.
  fetch: async (url, { dispatcher, ...options }) => {
    if (!['127.0.0.1', 'localhost'].includes(new URL(url).hostname)) throw new Error('test AS fetches loopback URLs only');
    return globalThis.fetch(url, options);
  },
});
provider.on('server_error', (_ctx, err) => console.error('[oauth-as] server_error', err));
registerTokenExchange();
providerCallback = provider.callback();

// ---- Token exchange (RFC 8693) -------------------------------------------------------------------
// A client allowed the grant (`warden`) trades an access token of this AS (subject_token, any
// audience) for a JWT access token for one resource (same rule as above): same sub and groups,
// act = {sub: client_id} (nested over the subject's own act), scope = requested (default: the
// subject's) among the resource's, AT_TTL. Registered after `new Provider` on purpose: oidc-provider
// checks a static client's grant_types against the known grant types only when the client is
// first loaded (first request), so `warden` may list a grant type registered here.
function registerTokenExchange() {
  // keys[0] and the older keys, public parts only: the JWKS this AS publishes.
  const published = createLocalJWKSet({ keys: keys.map(({ d, p, q, dp, dq, qi, ...pub }) => pub) });

  async function tokenExchange(ctx) {
    const { client, params } = ctx.oidc;
    if (!params.subject_token) throw new errors.InvalidRequest('missing required parameter subject_token');
    if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest(`subject_token_type must be ${ACCESS_TOKEN_TYPE}`);
    }
    if ((params.requested_token_type ?? ACCESS_TOKEN_TYPE) !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest(`requested_token_type must be ${ACCESS_TOKEN_TYPE}`);
    }
    const { resource } = params; // several `resource` → an array
    if (!resource) throw new errors.InvalidTarget('resource parameter is required by this test AS');
    if (Array.isArray(resource)) throw new errors.InvalidTarget('only a single resource indicator value is supported');
    if (resource.includes('#')) throw new errors.InvalidTarget('resource indicator must not contain a fragment component');
    const rs = resourceServerInfo(ctx, resource); // invalid_target unless http loopback

    let subject;
    try {
      // typ at+jwt: our ID tokens (same key, same iss) are not access tokens
      ({ payload: subject } = await jwtVerify(params.subject_token, published,
        { issuer, typ: 'at+jwt', requiredClaims: ['sub', 'exp'] }));
    } catch (err) {
      throw new errors.CustomOIDCProviderError('invalid_grant', `subject_token rejected: ${err.message}`);
    }

    const allowed = new Set(rs.scope.split(' '));
    const requested = params.scope ?? (typeof subject.scope === 'string' ? subject.scope : '');
    const scope = [...new Set(requested.split(' '))].filter((s) => allowed.has(s)).join(' ') || undefined;
    const iat = Math.floor(Date.now() / 1000);
    const claims = {
      iss: issuer, sub: subject.sub, aud: rs.audience, scope, client_id: client.clientId,
      act: { sub: client.clientId, ...(subject.act ? { act: subject.act } : {}) },
      ...(subject.groups !== undefined ? { groups: subject.groups } : {}),
      iat, exp: iat + rs.accessTokenTTL, jti: crypto.randomUUID(),
    };
    const key = await importJWK(keys[0], signer.alg);
    const accessToken = await new SignJWT(claims).setProtectedHeader({ ...signer, typ: 'at+jwt' }).sign(key);
    ctx.body = {
      access_token: accessToken, issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer',
      expires_in: rs.accessTokenTTL, scope,
    };
  }
  // `resource` may repeat (as for the built-in grants; more than one is refused above).
  provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange,
    ['subject_token', 'subject_token_type', 'requested_token_type', 'scope', 'resource'], ['resource']);

  // A client without the grant gets invalid_request from oidc-provider ("requested grant type is
  // not allowed for this client"); RFC 6749 §5.2 / RFC 8693 §2.2.2 say unauthorized_client.
  provider.use(async (ctx, next) => {
    await next();
    const client = ctx.oidc?.route === 'token' ? ctx.oidc.client : undefined;
    if (client && ctx.oidc.params?.grant_type === TOKEN_EXCHANGE && !client.grantTypeAllowed(TOKEN_EXCHANGE)
      && ctx.body?.error === 'invalid_request') {
      ctx.body = { error: 'unauthorized_client', error_description: 'this client may not use token exchange' };
    }
  });
}

async function route(req, res) {
  const { pathname } = new URL(req.url, issuer);
  if (pathname === '/test/health') return json(res, 200, { ok: true, issuer });
  if (pathname === '/test/sign' && req.method === 'POST') return testSign(req, res);
  if (pathname.startsWith('/interaction/')) return interaction(req, res);
  return providerCallback(req, res);
}

// ---- No-browser interaction: auto-login, then auto-consent ---------------------------------------
// /auth redirects here (cookie-bound); each step answers 303 back to /auth/<uid>, which either
// starts the next prompt or redirects to the client with code, state and iss.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    const accountId = params.login_hint || DEFAULT_USER;
    return provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
  }
  // consent: grant everything that was asked for (OIDC scopes, claims, resource scopes)
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  const consent = details.grantId ? {} : { grantId };
  return provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
}

// ---- POST /test/sign: forge tokens with the real current key -------------------------------------
// Body {claims, header}: claims are signed exactly as given (no iss/exp added); header is merged
// over {alg, kid, typ:'at+jwt'}; a header value of null removes that parameter (e.g. {kid:null}).
async function testSign(req, res) {
  let body;
  try {
    let raw = '';
    for await (const chunk of req) raw += chunk;
    body = JSON.parse(raw || '{}');
  } catch {
    return json(res, 400, { error: 'body must be JSON {claims, header}' });
  }
  const header = { ...signer, typ: 'at+jwt', ...(body.header ?? {}) };
  for (const [k, v] of Object.entries(header)) if (v === null) delete header[k];
  try {
    const key = await importJWK(keys[0], header.alg ?? signer.alg);
    const token = await new SignJWT(body.claims ?? {}).setProtectedHeader(header).sign(key);
    return json(res, 200, { token });
  } catch (err) {
    return json(res, 400, { error: String(err.message ?? err) });
  }
}

function json(res, status, obj) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(obj));
}

// ---- Lifecycle -------------------------------------------------------------------------------------
function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

process.stdout.write(`listening on ${issuer}\n`);
