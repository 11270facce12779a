//! mcp-warden as the OAuth client of an OAuth-protected HTTP upstream (`oauth = { … }`).
//!
//! As the MCP authorization specification says: the authorization server is found from the
//! upstream's protected resource metadata (RFC 9728: the `resource_metadata` of its 401
//! challenge, else the well-known name at the upstream's path, then at its root), whose
//! `resource` must be the upstream; then from the server's own metadata (RFC 8414, then OpenID
//! Connect discovery), whose `issuer` must be the one the resource named. Tokens are asked for
//! the upstream (`resource`, RFC 8707), with the configured scopes, else the challenge's, else
//! the metadata's `scopes_supported`.
//!
//! Two grants. `client_credentials`: mcp-warden is a registered machine client and asks for
//! tokens itself. `authorization_code`: an operator signs in once with `mcp-warden auth login`
//! (see [`super::oauth_login`]), which leaves a sealed grant in the state directory
//! ([`super::oauth_store`]); serving reads it and keeps it alive with the refresh token, under a
//! lock shared by every instance on the state directory (refresh tokens rotate).
//!
//! A token is used until shortly before it expires (a tenth of its lifetime, 1 s to a minute),
//! then a new one is obtained before the next request — one request at a time does it, the
//! others wait for its result. A 401 from the upstream drops the token it refused, and the
//! request is sent again once with a new one.
//!
//! Tokens go to this upstream only, never to a log or an agent: header values are marked
//! sensitive, errors name the authorization server's `error` code, never a token or secret.

use std::time::Duration;

use reqwest::header::{HeaderValue, WWW_AUTHENTICATE};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::oauth_store::{Grant, Store};
use crate::config::{GrantPer, OAuthGrant, UpstreamOAuth};
use crate::util::lock;

const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct OAuth {
    upstream: String,
    /// Who signs this client in, and how (for the messages that need it).
    login: super::SignInBy,
    /// The upstream's URL: the resource tokens are for.
    url: String,
    /// The key of the upstream's sealed grant (name and URL digest).
    key: String,
    settings: UpstreamOAuth,
    http: reqwest::Client,
    token: std::sync::Mutex<Option<Token>>,
    /// Serialises discovery and token requests; holds what discovery found.
    fetch: tokio::sync::Mutex<Option<Discovery>>,
    /// Token exchange: the connection's caller's latest identity provider token.
    subject: Option<std::sync::Arc<crate::identity::SubjectCell>>,
}

#[derive(Clone)]
struct Token {
    /// `Bearer …`, marked sensitive.
    header: HeaderValue,
    renew_at: Instant,
    /// Token exchange: the caller's token it was traded for (a new caller token means a new
    /// exchange).
    for_subject: Option<std::sync::Arc<str>>,
}

/// What discovery found: the authorization server and what to ask it for.
#[derive(Clone, Debug)]
pub(crate) struct Discovery {
    pub(crate) issuer: String,
    /// The server's metadata (RFC 8414).
    pub(crate) meta: Map<String, Value>,
    /// The protected resource, as its metadata names it: the `resource` of every request.
    pub(crate) resource: String,
    pub(crate) scope: Option<String>,
    pub(crate) token_endpoint: String,
}

impl Discovery {
    pub(crate) fn endpoint(&self, name: &str) -> Option<&str> {
        self.meta.get(name).and_then(Value::as_str)
    }

    /// The server takes a client's secret in the form body rather than HTTP Basic.
    fn secret_in_body(&self) -> bool {
        let methods: Vec<&str> = self
            .meta
            .get("token_endpoint_auth_methods_supported")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        !methods.is_empty()
            && !methods.contains(&"client_secret_basic")
            && methods.contains(&"client_secret_post")
    }
}

/// The clients of live upstream connections, so that every session of an upstream shares one
/// token (keyed by upstream, URL and client).
static SHARED: std::sync::Mutex<Vec<(String, std::sync::Weak<OAuth>)>> =
    std::sync::Mutex::new(Vec::new());

/// The HTTP client for an upstream's authorization server: no redirects, a timeout, the
/// upstream's TLS settings (the server may sit behind the same private CA).
pub(crate) fn http_client(
    tls: Option<&crate::config::UpstreamTls>,
) -> Result<reqwest::Client, String> {
    let builder = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    let builder = match tls {
        Some(t) => builder.use_preconfigured_tls(crate::tls::client_config(Some(t))?),
        None => builder,
    };
    builder.build().map_err(|e| e.to_string())
}

/// Who signs `upstream` in for a connection of `hs`'s: the command an operator runs (for its
/// agent, when each signs in on its own), or the person behind the call.
fn sign_in_by(
    upstream: &str,
    settings: &crate::config::UpstreamOAuth,
    hs: &super::Handshake,
) -> super::SignInBy {
    match (settings.per, hs.principal.as_deref()) {
        (GrantPer::Person, _) => super::SignInBy::Person(hs.person.clone()),
        (GrantPer::Agent, Some(agent)) => {
            super::SignInBy::Operator(format!("mcp-warden auth login {upstream} --agent {agent}"))
        }
        _ => super::SignInBy::Operator(format!("mcp-warden auth login {upstream}")),
    }
}

impl OAuth {
    /// The client for `spec`'s upstream, shared by its connections while any is alive.
    /// `hs`: whom the connection acts for — its agent, when each agent signs in on its own;
    /// its caller's token, for token exchange (then the client is the connection's own).
    pub(crate) fn shared(
        upstream: &str,
        spec: &crate::config::HttpSpec,
        hs: &super::Handshake,
    ) -> Result<Option<std::sync::Arc<OAuth>>, String> {
        let Some(settings) = &spec.oauth else {
            return Ok(None);
        };
        let key = settings
            .grant_key(
                &spec.key(upstream),
                hs.principal.as_deref(),
                hs.person.as_deref(),
            )
            .ok_or("this upstream signs in each person, and the caller is nobody in particular")?;
        if settings.grant == OAuthGrant::TokenExchange {
            return Ok(Some(std::sync::Arc::new(OAuth {
                upstream: upstream.to_string(),
                login: sign_in_by(upstream, settings, hs),
                url: spec.url.clone(),
                key,
                settings: settings.clone(),
                http: http_client(spec.tls.as_ref())?,
                token: Default::default(),
                fetch: Default::default(),
                subject: hs.subject.clone(),
            })));
        }
        let mut shared = lock(&SHARED);
        shared.retain(|(_, w)| w.strong_count() > 0);
        if let Some(o) = shared
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, w)| w.upgrade())
            .filter(|o| o.settings == *settings)
        {
            return Ok(Some(o));
        }
        let o = std::sync::Arc::new(OAuth {
            upstream: upstream.to_string(),
            login: sign_in_by(upstream, settings, hs),
            url: spec.url.clone(),
            key: key.clone(),
            settings: settings.clone(),
            http: http_client(spec.tls.as_ref())?,
            token: Default::default(),
            fetch: Default::default(),
            subject: None,
        });
        shared.retain(|(k, _)| *k != key);
        shared.push((key, std::sync::Arc::downgrade(&o)));
        Ok(Some(o))
    }

    /// The command an operator runs when `spec`'s upstream needs a sign-in (for `hs`'s agent)
    /// that does not exist: only an authorization code grant needs a person, and a stored
    /// grant that cannot be read is left to the requests to report. Cheap (a file that is not
    /// there), so asked before any client is built.
    pub(crate) fn missing_sign_in(
        upstream: &str,
        spec: &crate::config::HttpSpec,
        hs: &super::Handshake,
    ) -> Option<super::SignInBy> {
        let settings = spec.oauth.as_ref()?;
        if settings.grant != OAuthGrant::AuthorizationCode {
            return None;
        }
        let key = settings.grant_key(
            &spec.key(upstream),
            hs.principal.as_deref(),
            hs.person.as_deref(),
        );
        match key.map(|k| Store::new(&settings.store).load(&k)) {
            None | Some(Ok(None)) => Some(sign_in_by(upstream, settings, hs)),
            _ => None,
        }
    }

    /// The `Authorization` value for the next request: the current token, or a new one. `None`
    /// when none can be had yet (the request goes without, and its 401 tells where to ask).
    pub(crate) async fn authorization(&self) -> Option<HeaderValue> {
        if let Some(t) = self.fresh() {
            return Some(t);
        }
        let mut discovery = self.fetch.lock().await;
        if let Some(t) = self.fresh() {
            return Some(t); // obtained while this request waited
        }
        match self.obtain(&mut discovery, None, None).await {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(upstream = %self.upstream, "OAuth: {e}");
                None
            }
        }
    }

    /// The upstream refused `used` (401 with `challenge`): forgets that token and obtains a
    /// new one, discovering again from the challenge. `Err` says why there is none.
    pub(crate) async fn refused(
        &self,
        used: Option<&HeaderValue>,
        challenge: Option<&HeaderValue>,
    ) -> Result<HeaderValue, String> {
        let mut discovery = self.fetch.lock().await;
        {
            let mut token = lock(&self.token);
            match (&*token, used) {
                // Someone already replaced the refused token.
                (Some(t), Some(u)) if t.header != u => return Ok(t.header.clone()),
                (Some(t), None) => return Ok(t.header.clone()),
                _ => *token = None,
            }
        }
        let challenge = challenge
            .and_then(|c| c.to_str().ok())
            .map(Challenge::parse);
        // A refused token may mean the server moved: look again.
        *discovery = None;
        self.obtain(&mut discovery, challenge.as_ref(), used)
            .await
            .inspect_err(|e| tracing::warn!(upstream = %self.upstream, "OAuth: {e}"))
    }

    /// The upstream answered 403 `insufficient_scope` to `used`. Client credentials: a new
    /// token for the union of the scope asked so far and the challenge's, once per new scope
    /// (the specification's step-up, with its retry limit). A sign-in: the operator must sign
    /// in again — the scope wanted is kept with the grant for `auth login`, the token dropped
    /// from memory so that the new sign-in is used as soon as it exists. `None`: the refusal
    /// stands.
    pub(crate) async fn step_up(
        &self,
        used: Option<&HeaderValue>,
        challenge: Option<&HeaderValue>,
    ) -> Option<HeaderValue> {
        let challenge = challenge
            .and_then(|c| c.to_str().ok())
            .map(Challenge::parse)?;
        if challenge.error.as_deref() != Some("insufficient_scope") {
            return None;
        }
        let wanted = challenge.scope.as_deref().unwrap_or("");
        let mut discovery = self.fetch.lock().await;
        {
            let mut token = lock(&self.token);
            match (&*token, used) {
                (Some(t), Some(u)) if t.header != u => return Some(t.header.clone()),
                _ => *token = None,
            }
        }
        match self.settings.grant {
            OAuthGrant::ClientCredentials | OAuthGrant::TokenExchange => {
                let d = discovery.as_mut()?;
                let union = scope_union(d.scope.as_deref(), wanted);
                if Some(union.as_str()) == d.scope.as_deref() {
                    tracing::warn!(upstream = %self.upstream, scope = %wanted, "OAuth: the upstream still wants more scope than the authorization server gives; giving up");
                    return None;
                }
                tracing::info!(upstream = %self.upstream, scope = %union, "OAuth: stepping up to a wider scope");
                d.scope = Some(union);
                let d = d.clone();
                let again = match self.settings.grant {
                    OAuthGrant::TokenExchange => self.exchange(&d).await,
                    _ => self.client_credentials(&d).await,
                };
                match again {
                    Ok(t) => {
                        let header = t.header.clone();
                        *lock(&self.token) = Some(t);
                        Some(header)
                    }
                    Err(e) => {
                        tracing::warn!(upstream = %self.upstream, "OAuth: {e}");
                        None
                    }
                }
            }
            OAuthGrant::AuthorizationCode => {
                let store = Store::new(&self.settings.store);
                if let Ok(Some(mut g)) = store.load(&self.key) {
                    let before = g.wanted_scope.clone();
                    let have = scope_union(g.scope.as_deref(), before.as_deref().unwrap_or(""));
                    g.wanted_scope = Some(scope_union(Some(&have), wanted));
                    if g.wanted_scope != before {
                        let _ = store.save(&self.key, &g);
                    }
                }
                tracing::warn!(upstream = %self.upstream, scope = %wanted, "OAuth: the upstream needs a wider scope than the sign-in has: {}", self.login);
                None
            }
        }
    }

    fn fresh(&self) -> Option<HeaderValue> {
        let subject = self.subject.as_ref().and_then(|c| c.get());
        lock(&self.token)
            .as_ref()
            .filter(|t| {
                Instant::now() < t.renew_at
                    && t.for_subject.as_deref() == subject.as_ref().map(|s| &*s.0)
            })
            .map(|t| t.header.clone())
    }

    async fn obtain(
        &self,
        discovery: &mut Option<Discovery>,
        challenge: Option<&Challenge>,
        refused: Option<&HeaderValue>,
    ) -> Result<HeaderValue, String> {
        let token = match self.settings.grant {
            OAuthGrant::ClientCredentials => {
                let d = match discovery {
                    Some(d) => d.clone(),
                    None => {
                        let d = discover(&self.http, &self.url, challenge, &self.settings).await?;
                        tracing::info!(upstream = %self.upstream, issuer = %d.issuer, "OAuth: authorization server found");
                        *discovery = Some(d.clone());
                        d
                    }
                };
                self.client_credentials(&d).await?
            }
            OAuthGrant::AuthorizationCode => self.signed_in(refused).await?,
            OAuthGrant::TokenExchange => {
                let d = match discovery {
                    Some(d) => d.clone(),
                    None => {
                        let d = discover(&self.http, &self.url, challenge, &self.settings).await?;
                        *discovery = Some(d.clone());
                        d
                    }
                };
                self.exchange(&d).await?
            }
        };
        let header = token.header.clone();
        *lock(&self.token) = Some(token);
        Ok(header)
    }

    /// RFC 8693: the caller's identity provider token traded, at that same provider, for one
    /// meant for this upstream. The caller's token goes nowhere else: an upstream whose
    /// authorization server is another one is refused.
    async fn exchange(&self, d: &Discovery) -> Result<Token, String> {
        if Some(&d.issuer) != self.settings.exchange_issuer.as_ref() {
            return Err(format!(
                "the upstream's authorization server is {}, not the identity provider agents sign in with: their tokens are not sent there",
                d.issuer
            ));
        }
        let subject = self
            .subject
            .as_ref()
            .and_then(|c| c.get())
            .ok_or("token exchange needs a caller signed in with the identity provider ([auth.oidc]); this one presented no such token")?;
        const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
        let form: Vec<(&str, &str)> = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", &subject.0),
            ("subject_token_type", ACCESS),
            ("requested_token_type", ACCESS),
            ("resource", &d.resource),
        ];
        let mut token = self.as_own_client(d, form).await?;
        token.for_subject = Some(subject.0.clone());
        Ok(token)
    }

    async fn client_credentials(&self, d: &Discovery) -> Result<Token, String> {
        let form = vec![
            ("grant_type", "client_credentials"),
            ("resource", d.resource.as_str()),
        ];
        self.as_own_client(d, form).await
    }

    /// A token request of mcp-warden's own client (`client_id` and its secret), with the scope
    /// discovery settled on.
    async fn as_own_client(
        &self,
        d: &Discovery,
        mut form: Vec<(&str, &str)>,
    ) -> Result<Token, String> {
        if let Some(s) = &d.scope {
            form.push(("scope", s));
        }
        let client_id = self.settings.client_id.as_deref().unwrap_or_default();
        let secret = self.settings.client_secret.as_ref().map(|s| s.expose());
        let started = Instant::now();
        let t = token_request(&self.http, d, &form, client_id, secret).await?;
        Ok(t.token(started, crate::util::now_secs()).1)
    }

    /// A token from the operator's sign-in: the sealed grant's access token while it is fresh
    /// (and not the one the upstream just refused), else a new one from its refresh token —
    /// under the grant's lock, re-read once held (another instance may have refreshed it).
    async fn signed_in(&self, refused: Option<&HeaderValue>) -> Result<Token, String> {
        let login = self.login.to_string();
        let store = Store::new(&self.settings.store);
        let key = self.key.clone();
        let dir = self.settings.store.clone();
        let held = tokio::task::spawn_blocking(move || Store::new(&dir).lock(&key))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("the sign-in's lock: {e}"))?;
        let grant = store
            .load(&self.key)
            .map_err(|e| format!("{e}; {login}"))?
            .ok_or_else(|| format!("not signed in: {login}"))?;
        let upstream = reqwest::Url::parse(&self.url).map_err(|e| e.to_string())?;
        if !same_resource(&grant.resource, &upstream) {
            return Err(format!("the sign-in is for another server; {login}"));
        }
        let now = crate::util::now_secs();
        let was_refused = refused.is_some_and(|r| {
            r.to_str()
                .is_ok_and(|r| r.strip_prefix("Bearer ") == Some(grant.access_token.as_str()))
        });
        let lifetime = grant
            .expires_at
            .map(|e| e.saturating_sub(grant.access_issued_at));
        let margin = lifetime.map(|l| renew_margin(Duration::from_secs(l)).as_secs());
        let fresh = match (grant.expires_at, margin) {
            (Some(exp), Some(m)) => now + m < exp,
            _ => true, // no expiry known: used until refused
        };
        if fresh && !was_refused {
            let left = grant
                .expires_at
                .map(|e| Duration::from_secs(e - now - margin.unwrap_or(0)))
                .unwrap_or(Duration::from_secs(365 * 86_400));
            drop(held);
            return Ok(Token {
                header: bearer(&grant.access_token)?,
                renew_at: Instant::now() + left,
                for_subject: None,
            });
        }
        let Some(refresh) = grant.refresh_token.clone() else {
            return Err(format!(
                "the signed-in token expired and there is no refresh token; {login}"
            ));
        };
        let d = Discovery {
            issuer: grant.issuer.clone(),
            meta: Map::new(),
            resource: grant.resource.clone(),
            scope: None,
            token_endpoint: grant.token_endpoint.clone(),
        };
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("resource", grant.resource.as_str()),
        ];
        let started = Instant::now();
        let t = match token_request(
            &self.http,
            &d,
            &form,
            &grant.client_id,
            grant.client_secret.as_deref(),
        )
        .await
        {
            Ok(t) => t,
            // Revoked or expired for good, or the client it was issued to is gone: forget it,
            // so that `auth list` says so.
            Err(e) if e.contains("invalid_grant") || e.contains("invalid_client") => {
                let _ = store.remove(&self.key);
                tracing::error!(upstream = %self.upstream, "OAuth: the sign-in is no longer accepted ({e}); {login}");
                return Err(format!("the sign-in was revoked or expired; {login}"));
            }
            Err(e) => return Err(e),
        };
        let (issued, token) = t.token(started, now);
        let renewed = Grant {
            access_token: t.access_token.clone(),
            refresh_token: t.refresh_token.clone().or(grant.refresh_token.clone()),
            expires_at: t.expires_in.map(|s| issued + s),
            access_issued_at: issued,
            scope: t.scope.clone().or(grant.scope.clone()),
            ..grant
        };
        store
            .save(&self.key, &renewed)
            .map_err(|e| format!("the renewed sign-in could not be saved: {e}"))?;
        drop(held);
        tracing::debug!(upstream = %self.upstream, "OAuth: signed-in token renewed");
        Ok(token)
    }
}

/// A successful token response.
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    pub(crate) refresh_token: Option<String>,
    pub(crate) expires_in: Option<u64>,
    pub(crate) scope: Option<String>,
}

impl TokenResponse {
    /// When it was issued (Unix seconds) and the token to use, renewed a margin before it
    /// expires (counted from `started`, when it was asked for).
    fn token(&self, started: Instant, now: u64) -> (u64, Token) {
        let lifetime = self
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(365 * 86_400));
        let header = bearer(&self.access_token).unwrap_or_else(|_| HeaderValue::from_static(""));
        (
            now,
            Token {
                header,
                renew_at: started + lifetime - renew_margin(lifetime),
                for_subject: None,
            },
        )
    }
}

/// The scopes of `a` and then those of `b` not in it (space-separated, order kept).
pub(crate) fn scope_union(a: Option<&str>, b: &str) -> String {
    let mut out: Vec<&str> = a
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    for s in b.split(' ').filter(|s| !s.is_empty()) {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out.join(" ")
}

/// How long before its expiry a token is replaced: a tenth of its lifetime, at least a second
/// (`exp` counts whole seconds from an `iat` rounded down) and at most a minute; never more
/// than half of it.
fn renew_margin(lifetime: Duration) -> Duration {
    (lifetime / 10)
        .clamp(Duration::from_secs(1), Duration::from_secs(60))
        .min(lifetime / 2)
}

fn bearer(token: &str) -> Result<HeaderValue, String> {
    let mut h = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the access token is not a valid header value")?;
    h.set_sensitive(true);
    Ok(h)
}

/// A POST to the token endpoint: `form`, the client authenticated with HTTP Basic
/// (form-encoded first, RFC 6749 §2.3.1) or in the body when that is all the server takes, or
/// just named when it has no secret (a public client).
pub(crate) async fn token_request(
    http: &reqwest::Client,
    d: &Discovery,
    form: &[(&str, &str)],
    client_id: &str,
    secret: Option<&str>,
) -> Result<TokenResponse, String> {
    let mut form = form.to_vec();
    let rb = client_auth(
        http.post(&d.token_endpoint),
        &mut form,
        client_id,
        secret,
        d.secret_in_body(),
    );
    let body = send_for_json(
        rb.header(reqwest::header::ACCEPT, "application/json")
            .form(&form),
        "a token",
    )
    .await?;
    let access = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("the token response has no access_token")?;
    let kind = body.get("token_type").and_then(Value::as_str).unwrap_or("");
    if !kind.eq_ignore_ascii_case("bearer") {
        return Err("the token response is not a Bearer token".into());
    }
    bearer(access)?;
    Ok(TokenResponse {
        access_token: access.to_string(),
        refresh_token: body
            .get("refresh_token")
            .and_then(Value::as_str)
            .map(String::from),
        expires_in: body.get("expires_in").and_then(Value::as_u64),
        scope: body.get("scope").and_then(Value::as_str).map(String::from),
    })
}

/// Sends a request to an authorization server and reads its JSON answer (`Null` when it is not
/// JSON); a refusal is an error naming `what` was asked for and the server's OAuth error.
pub(crate) async fn send_for_json(
    rb: reqwest::RequestBuilder,
    what: &str,
) -> Result<Value, String> {
    let resp = rb
        .send()
        .await
        .map_err(|e| format!("asking for {what} failed: {}", crate::util::error_chain(&e)))?;
    let status = resp.status();
    let body: Value = resp
        .bytes()
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(format!(
            "the authorization server refused {what} (HTTP {}): {}",
            status.as_u16(),
            oauth_error(&body)
        ));
    }
    Ok(body)
}

/// An OAuth error body's `error` and `error_description`, made safe to log.
pub(crate) fn oauth_error(body: &Value) -> String {
    let code = body.get("error").and_then(Value::as_str).unwrap_or("");
    let what = body
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or("");
    format!(
        "{} {}",
        crate::term::safe(&crate::util::truncate(code, 64)),
        crate::term::safe(&crate::util::truncate(what, 200))
    )
    .trim()
    .to_string()
}

/// Finds the upstream's authorization server (see the module's description).
pub(crate) async fn discover(
    http: &reqwest::Client,
    upstream: &str,
    challenge: Option<&Challenge>,
    settings: &UpstreamOAuth,
) -> Result<Discovery, String> {
    let scopes = &settings.scopes;
    let url = reqwest::Url::parse(upstream).map_err(|e| e.to_string())?;
    // RFC 9728: the challenge's metadata URL, else the well-known name at the path, then at
    // the root.
    let mut candidates = vec![];
    if let Some(m) = challenge.and_then(|c| c.resource_metadata.clone()) {
        candidates.push(m);
    }
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    if !path.is_empty() {
        candidates.push(format!(
            "{origin}/.well-known/oauth-protected-resource{path}"
        ));
    }
    candidates.push(format!("{origin}/.well-known/oauth-protected-resource"));
    let mut last = String::new();
    let mut prm = None;
    for c in &candidates {
        match crate::oidc::fetch_json(http, c).await {
            Ok(doc) => {
                prm = Some(doc);
                break;
            }
            Err(e) => last = e,
        }
    }
    let prm = prm.ok_or_else(|| format!("no protected resource metadata ({last})"))?;
    let resource = prm
        .get("resource")
        .and_then(Value::as_str)
        .ok_or("the protected resource metadata names no `resource`")?
        .to_string();
    if !same_resource(&resource, &url) {
        return Err(format!(
            "the protected resource metadata is for {resource}, not this upstream (refusing it)"
        ));
    }
    let issuer = prm
        .get("authorization_servers")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or("the protected resource metadata names no authorization server")?
        .to_string();
    crate::config::secure_url(&issuer).map_err(|e| format!("authorization server {e}"))?;
    // A client registered at one server is used there only: an upstream that names another
    // (moved, or hostile) gets no secret, no code, no caller's token.
    if let Some(want) = &settings.issuer {
        if issuer != *want {
            return Err(format!(
                "the upstream names the authorization server {issuer}, not the configured issuer {want}: mcp-warden's client is not used there"
            ));
        }
    }
    let mut meta = None;
    for m in crate::oidc::metadata_urls(&issuer) {
        match crate::oidc::fetch_json(http, &m).await {
            Ok(doc) => {
                meta = Some(doc);
                break;
            }
            Err(e) => last = e,
        }
    }
    let meta = meta.ok_or_else(|| format!("no authorization server metadata ({last})"))?;
    if meta.get("issuer").and_then(Value::as_str) != Some(issuer.as_str()) {
        return Err(format!(
            "the authorization server's metadata does not name {issuer} as its issuer (refusing it)"
        ));
    }
    let token_endpoint = meta
        .get("token_endpoint")
        .and_then(Value::as_str)
        .ok_or("the authorization server has no token_endpoint")?
        .to_string();
    crate::config::secure_url(&token_endpoint).map_err(|e| format!("token endpoint {e}"))?;
    let scope = if !scopes.is_empty() {
        Some(scopes.join(" "))
    } else if let Some(s) = challenge.and_then(|c| c.scope.clone()) {
        Some(s)
    } else {
        prm.get("scopes_supported")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|s| !s.is_empty())
    };
    Ok(Discovery {
        issuer,
        meta,
        resource,
        scope,
        token_endpoint,
    })
}

/// The parameters of a `WWW-Authenticate: Bearer …` challenge that matter here.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Challenge {
    resource_metadata: Option<String>,
    scope: Option<String>,
    error: Option<String>,
}

impl Challenge {
    pub(crate) fn parse(v: &str) -> Challenge {
        let mut c = Challenge::default();
        let mut rest = v.trim();
        if rest
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
        {
            rest = &rest[6..];
        }
        // auth-params: name=token or name="quoted \" string", comma separated.
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            let Some(eq) = rest.find('=') else { break };
            let name = rest[..eq].trim().to_ascii_lowercase();
            rest = rest[eq + 1..].trim_start();
            let value;
            if let Some(q) = rest.strip_prefix('"') {
                let mut out = String::new();
                let mut chars = q.char_indices();
                let mut end = q.len();
                while let Some((i, ch)) = chars.next() {
                    match ch {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                out.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        _ => out.push(ch),
                    }
                }
                value = out;
                rest = &q[end.min(q.len())..];
            } else {
                let end = rest.find(',').unwrap_or(rest.len());
                value = rest[..end].trim().to_string();
                rest = &rest[end..];
            }
            match name.as_str() {
                "resource_metadata" => c.resource_metadata = Some(value),
                "scope" => c.scope = Some(value),
                "error" => c.error = Some(value),
                _ => {}
            }
        }
        c
    }
}

/// Whether the metadata's `resource` is the upstream: same origin, and the upstream's path at
/// or below the resource's (RFC 9728 §3.3, as the MCP SDKs check it).
pub(crate) fn same_resource(resource: &str, upstream: &reqwest::Url) -> bool {
    let Ok(r) = reqwest::Url::parse(resource) else {
        return false;
    };
    let rp = r.path().trim_end_matches('/');
    let up = upstream.path().trim_end_matches('/');
    r.origin() == upstream.origin()
        && (rp.is_empty() || up == rp || up.starts_with(&format!("{rp}/")))
}

/// `application/x-www-form-urlencoded` of one value (RFC 6749 §2.3.1 for Basic credentials).
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Authenticates mcp-warden's client on a request to an authorization server (its token or
/// revocation endpoint): HTTP Basic with both parts form-encoded first (RFC 6749 §2.3.1), or in
/// the form body when `in_body` (a server that takes only `client_secret_post`), or just named
/// when it has no secret (a public client).
pub(crate) fn client_auth<'a>(
    rb: reqwest::RequestBuilder,
    form: &mut Vec<(&'a str, &'a str)>,
    client_id: &'a str,
    secret: Option<&'a str>,
    in_body: bool,
) -> reqwest::RequestBuilder {
    match secret {
        Some(secret) if in_body => {
            form.push(("client_id", client_id));
            form.push(("client_secret", secret));
            rb
        }
        Some(secret) => rb.basic_auth(form_encode(client_id), Some(form_encode(secret))),
        None => {
            form.push(("client_id", client_id));
            rb
        }
    }
}

/// The `WWW-Authenticate` of a response, if any.
pub(crate) fn challenge_of(headers: &reqwest::header::HeaderMap) -> Option<&HeaderValue> {
    headers.get(WWW_AUTHENTICATE)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_read_with_quoted_and_bare_values() {
        let c = Challenge::parse(
            r#"Bearer realm="x", error="invalid_token", resource_metadata="https://a.example/.well-known/oauth-protected-resource/mcp", scope="read \"all\"""#,
        );
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("https://a.example/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(c.scope.as_deref(), Some(r#"read "all""#));
        let c = Challenge::parse("bearer scope=mcp,resource_metadata=https://b/x");
        assert_eq!(c.scope.as_deref(), Some("mcp"));
        assert_eq!(c.resource_metadata.as_deref(), Some("https://b/x"));
        assert_eq!(Challenge::parse("Basic realm=\"x\""), Challenge::default());
        // Whatever an upstream sends, parsing ends and never panics.
        for hostile in [
            "Beaé",
            "bearer ====",
            "Bearer a=\"unterminated",
            "Bearer é=\"x\\",
            "=,=,=\"",
        ] {
            let _ = Challenge::parse(hostile);
        }
    }

    #[test]
    fn the_metadata_must_be_for_this_upstream() {
        let up = reqwest::Url::parse("https://mcp.example.com/v1/mcp").unwrap();
        assert!(same_resource("https://mcp.example.com/v1/mcp", &up));
        assert!(same_resource("https://mcp.example.com/v1/mcp/", &up));
        assert!(same_resource("https://mcp.example.com", &up));
        assert!(same_resource("https://mcp.example.com/v1", &up));
        assert!(!same_resource("https://mcp.example.com/v1/mc", &up));
        assert!(!same_resource("https://evil.example.com/v1/mcp", &up));
        assert!(!same_resource("http://mcp.example.com/v1/mcp", &up));
    }

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        assert_eq!(form_encode("a b:c/é"), "a+b%3Ac%2F%C3%A9");
    }
}
