// A real MCP client that signs in with OAuth by itself: the TypeScript SDK's
// StreamableHTTPClientTransport with an OAuthClientProvider. It is pointed at an MCP endpoint
// and nothing else — it finds the authorization server from the endpoint's 401 (RFC 9728
// metadata), registers itself (RFC 7591), runs the authorization code flow with PKCE and the
// `resource` parameter, steps up on 403 insufficient_scope, and lists the tools.
//
// The browser leg is headless: the authorization URL is followed with a cookie jar until it
// redirects to our redirect URI (the test authorization server signs in LOGIN_HINT and consents
// by itself). Usage: node oauth-client.mjs <mcp-url>   (env LOGIN_HINT, default alice;
// CLIENT_ID: a client registered beforehand, else the client registers itself)
// Prints one JSON line: {tools, authorizations: [{scope, resource}], steps}.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const url = new URL(process.argv[2]);
const REDIRECT = 'http://127.0.0.1:1/callback';
const steps = [];
const authorizations = [];

class HeadlessProvider {
  constructor() {
    // A pre-registered client, or none (dynamic registration). A dynamically registered
    // client is bound by oidc-provider to the scope it registered with (the SDK registers
    // with the first challenge's scope), so stepping up needs a pre-registered one.
    this.stored = process.env.CLIENT_ID ? { client: { client_id: process.env.CLIENT_ID } } : {};
    this.code = undefined;
  }
  get redirectUrl() {
    return REDIRECT;
  }
  get clientMetadata() {
    return {
      client_name: 'mcp-warden oauth test client',
      redirect_uris: [REDIRECT],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      application_type: 'native',
    };
  }
  clientInformation() {
    return this.stored.client;
  }
  saveClientInformation(info) {
    steps.push('registered');
    this.stored.client = info;
  }
  tokens() {
    return this.stored.tokens;
  }
  saveTokens(tokens) {
    steps.push('token');
    // Refresh tokens are not kept: the SDK (1.x) answers a 403 insufficient_scope by
    // refreshing when it holds one, which never widens the scope; without one it authorizes
    // again with the wider scope.
    const { refresh_token: _dropped, ...rest } = tokens;
    this.stored.tokens = rest;
  }
  saveCodeVerifier(v) {
    this.stored.verifier = v;
  }
  codeVerifier() {
    return this.stored.verifier;
  }
  async redirectToAuthorization(authUrl) {
    steps.push('authorize');
    authorizations.push({
      scope: authUrl.searchParams.get('scope'),
      resource: authUrl.searchParams.get('resource'),
      code_challenge_method: authUrl.searchParams.get('code_challenge_method'),
    });
    authUrl.searchParams.set('login_hint', process.env.LOGIN_HINT ?? 'alice');
    // The "browser": follow redirects, keeping cookies, until the redirect URI is reached.
    const jar = new Map();
    let next = authUrl.href;
    for (let hop = 0; hop < 20; hop++) {
      if (next.startsWith(REDIRECT)) {
        const q = new URL(next).searchParams;
        if (q.get('error')) throw new Error(`authorization refused: ${q.get('error')}: ${q.get('error_description')}`);
        this.code = q.get('code');
        return;
      }
      const res = await fetch(next, {
        redirect: 'manual',
        headers: { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') },
      });
      for (const c of res.headers.getSetCookie()) {
        const [pair] = c.split(';');
        const i = pair.indexOf('=');
        jar.set(pair.slice(0, i), pair.slice(i + 1));
      }
      const location = res.headers.get('location');
      if (!location) throw new Error(`authorization stopped at ${res.status}: ${await res.text()}`);
      next = new URL(location, next).href;
    }
    throw new Error('too many redirects');
  }
}

const provider = new HeadlessProvider();
const client = new Client({ name: 'oauth-test-client', version: '1.0.0' });
let tools;
for (let attempt = 0; ; attempt++) {
  const transport = new StreamableHTTPClientTransport(url, { authProvider: provider });
  try {
    await client.connect(transport);
    tools = (await client.listTools()).tools.map((t) => t.name).sort();
    await client.close();
    break;
  } catch (e) {
    if (!(e instanceof UnauthorizedError) || attempt >= 3) throw e;
    // The "browser" came back with a code: exchange it, then connect again.
    await transport.finishAuth(provider.code);
  }
}
console.log(JSON.stringify({ tools, authorizations, steps }));
