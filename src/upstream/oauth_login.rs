//! `mcp-warden auth login | list | logout`: an operator signs mcp-warden in to an
//! OAuth-protected upstream (`oauth = { grant = "authorization_code" }`), once.
//!
//! The authorization code flow with PKCE (S256; a server that does not list it is refused) for
//! a native client: mcp-warden listens on a loopback port for the redirect, prints the URL to
//! open, and waits. The client is the configured `client_id`, else one mcp-warden registers for
//! itself (RFC 7591, `application_type: native`) when the server allows it. The request names
//! the upstream (`resource`, RFC 8707) and a random `state`; the redirect's `state` must match,
//! and its `iss` is checked as RFC 9207 says (required when the server advertises it, compared
//! exactly whenever present) before the code is used. The grant is kept sealed in the state
//! directory ([`super::oauth_store`]); serving keeps it alive with its refresh token.

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use super::oauth::{self, Challenge, Discovery};
use super::oauth_store::{Grant, Store};
use crate::config::{Config, GrantPer, HttpSpec, OAuthGrant, Transport};

/// How long a sign-in waits for the browser to come back.
pub const WAIT: Duration = Duration::from_secs(300);

/// The upstream `name` of `cfg`, if it signs in with the authorization code grant.
fn upstream<'c>(cfg: &'c Config, name: &str) -> Result<&'c HttpSpec, String> {
    let u = cfg
        .upstream(name)
        .ok_or_else(|| format!("no upstream named `{name}`"))?;
    match &u.transport {
        Transport::Http(spec) => match &spec.oauth {
            Some(o) if o.grant == OAuthGrant::AuthorizationCode => Ok(spec),
            Some(o) if o.grant == OAuthGrant::TokenExchange => Err(format!(
                "upstream `{name}` uses token exchange: each caller's own identity provider token is traded for its token; nothing to sign in"
            )),
            Some(_) => Err(format!(
                "upstream `{name}` uses client credentials: mcp-warden gets its tokens by itself"
            )),
            None => Err(format!("upstream `{name}` has no `oauth` setting")),
        },
        Transport::Stdio(_) => Err(format!("upstream `{name}` is not an HTTP upstream")),
    }
}

/// `n` random bytes, base64url (for `state`, `nonce` and PKCE verifiers).
pub(crate) fn random_b64(n: usize) -> Result<String, String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|_| "no randomness")?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// A PKCE verifier and its S256 challenge (RFC 7636).
pub(crate) fn pkce() -> Result<(String, String), String> {
    use sha2::Digest;
    let verifier = random_b64(32)?;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    Ok((verifier, challenge))
}

/// Whom a sign-in is made for: an agent (when each signs in on its own), or a person (who
/// proved who they are on mcp-warden's sign-in page: `iss sub`).
#[derive(Debug, Clone, Copy, Default)]
pub struct For<'a> {
    pub agent: Option<&'a str>,
    pub person: Option<&'a str>,
}

/// The key of the grant of upstream `name` for `who`: checked against the config (an
/// upstream that signs in per agent needs one of its agents; one that does not takes none;
/// one that signs in per person is signed in by that person only).
fn grant_key(cfg: &Config, name: &str, spec: &HttpSpec, who: For<'_>) -> Result<String, String> {
    let Some(settings) = &spec.oauth else {
        return Err("no oauth".into());
    };
    let key = |agent, person| {
        settings
            .grant_key(&spec.key(name), agent, person)
            .ok_or_else(|| format!("upstream `{name}`: no person to sign in for"))
    };
    let allowed = |a: &str| match cfg.agent(a) {
        Some(ag) if crate::policy::agent::server_allowed(Some(ag), name) => Ok(()),
        Some(_) => Err(format!("agent `{a}` may not use upstream `{name}`")),
        None => Err(format!("no agent named `{a}`")),
    };
    match (settings.per, who.agent, who.person) {
        (GrantPer::Person, agent, Some(person)) => {
            if let Some(a) = agent {
                allowed(a)?;
            }
            key(agent, Some(person))
        }
        (GrantPer::Person, _, None) => Err(format!(
            "upstream `{name}` signs in each person (`per = \"user\"`): people sign in for themselves on the page their agent points them at"
        )),
        (GrantPer::Upstream, Some(_), _) => Err(format!(
            "upstream `{name}` has one sign-in for every agent (`per = \"agent\"` gives each its own): leave out --agent"
        )),
        (GrantPer::Agent, None, _) if !cfg.agents.is_empty() => Err(format!(
            "upstream `{name}` signs in per agent: give --agent NAME"
        )),
        (GrantPer::Agent, Some(a), _) => {
            allowed(a)?;
            key(Some(a), None)
        }
        _ => key(None, None),
    }
}

/// Signs in to upstream `name` (for `agent`, when it signs in per agent): `show` is given the
/// URL to open in a browser, whose redirect comes back to a loopback port of this process.
/// Returns the grant once saved.
pub async fn login(
    cfg: &Config,
    name: &str,
    agent: Option<&str>,
    show: &dyn Fn(&str),
) -> Result<Grant, String> {
    // The loopback redirect (RFC 8252 §7.3).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("no loopback port for the redirect: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let (url, pending) = start(
        cfg,
        name,
        For {
            agent,
            person: None,
        },
        &redirect,
    )
    .await?;
    show(&url);
    let query = tokio::time::timeout(WAIT, callback(listener, &pending.state))
        .await
        .map_err(|_| format!("no sign-in within {} s", WAIT.as_secs()))??;
    finish(pending, &query).await
}

/// A sign-in under way, between the URL handed to a browser and the authorization response:
/// what that response is checked against and its code exchanged with. It holds the PKCE
/// verifier, so it is never printed.
pub(crate) struct Pending {
    key: String,
    store: Store,
    http: reqwest::Client,
    d: Discovery,
    client_id: String,
    client_secret: Option<String>,
    redirect: String,
    verifier: String,
    pub(crate) state: String,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("issuer", &self.d.issuer)
            .field("redirect", &self.redirect)
            .finish_non_exhaustive()
    }
}

/// Starts a sign-in to upstream `name` (for `agent`) whose browser comes back to `redirect`:
/// the upstream's challenge and its authorization server are discovered, a client chosen (or
/// registered for `redirect`), and the authorization URL made (PKCE S256, `state`,
/// `resource`, the scope wanted). Returns that URL and what [`finish`] needs.
pub(crate) async fn start(
    cfg: &Config,
    name: &str,
    who: For<'_>,
    redirect: &str,
) -> Result<(String, Pending), String> {
    let spec = upstream(cfg, name)?;
    let key = grant_key(cfg, name, spec, who)?;
    let Some(settings) = &spec.oauth else {
        return Err("no oauth".into());
    };
    let http = oauth::http_client(spec.tls.as_ref())?;
    // The upstream's challenge first (its scope is the one to ask for), then discovery.
    let probe = http
        .post(&spec.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            reqwest::header::ACCEPT,
            "application/json, text/event-stream",
        )
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .map_err(|e| format!("{name}: unreachable: {}", crate::util::error_chain(&e)))?;
    let challenge = oauth::challenge_of(probe.headers())
        .and_then(|v| v.to_str().ok())
        .map(Challenge::parse);
    let mut d = oauth::discover(&http, &spec.url, challenge.as_ref(), settings).await?;
    // Step-up: what the sign-in had, and what the upstream asked for since, too.
    let store = Store::new(&settings.store);
    if let Ok(Some(before)) = store.load(&key) {
        for more in [before.scope, before.wanted_scope].into_iter().flatten() {
            d.scope = Some(oauth::scope_union(d.scope.as_deref(), &more));
        }
    }
    let methods = d
        .meta
        .get("code_challenge_methods_supported")
        .and_then(Value::as_array);
    if !methods.is_some_and(|m| m.iter().any(|x| x == "S256")) {
        return Err(format!(
            "{}: the authorization server does not support PKCE with S256 (refusing to go on)",
            d.issuer
        ));
    }
    let authorize = d
        .endpoint("authorization_endpoint")
        .ok_or("the authorization server has no authorization_endpoint")?
        .to_string();
    crate::config::secure_url(&authorize).map_err(|e| format!("authorization endpoint {e}"))?;

    // The registration order the specification gives: a client registered beforehand, a client
    // ID metadata document where the server takes them, else dynamic registration.
    let url_ids = d.meta.get("client_id_metadata_document_supported") == Some(&Value::Bool(true));
    let (client_id, client_secret) = match (&settings.client_id, &settings.client_metadata_url) {
        (Some(id), _) => (
            id.clone(),
            settings
                .client_secret
                .as_ref()
                .map(|s| s.expose().to_string()),
        ),
        (None, Some(url)) if url_ids => (url.clone(), None),
        (None, _) => register(&http, &d, redirect).await?,
    };
    let (verifier, challenge_s256) = pkce()?;
    let state = random_b64(24)?;
    let mut url = reqwest::Url::parse(&authorize).map_err(|e| e.to_string())?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &client_id)
            .append_pair("redirect_uri", redirect)
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge_s256)
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", &d.resource);
        if let Some(s) = &d.scope {
            q.append_pair("scope", s);
        }
    }
    let pending = Pending {
        key,
        store,
        http,
        d,
        client_id,
        client_secret,
        redirect: redirect.to_string(),
        verifier,
        state,
    };
    Ok((url.to_string(), pending))
}

/// Parameter `name` of a URL query (the first, decoded).
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

/// The code of an authorization response (a redirect's `query`), once it is known to come from
/// `issuer` (RFC 9207 `iss`: checked when present, required when the server `advertised` it),
/// to answer this sign-in (`state`), and not to report an error (which is returned, made safe).
pub(crate) fn authorization_code(
    query: &str,
    issuer: &str,
    advertised: bool,
    state: &str,
) -> Result<String, String> {
    let param = |k: &str| query_param(query, k);
    match param("iss") {
        Some(iss) if iss != issuer => {
            return Err(format!(
                "the authorization response comes from another issuer than {issuer} (refused)"
            ))
        }
        None if advertised => {
            return Err(format!(
                "the authorization response carries no `iss`, which {issuer} promises (refused)"
            ))
        }
        _ => {}
    }
    if param("state").as_deref() != Some(state) {
        return Err("the authorization response's state does not match (refused)".into());
    }
    if let Some(e) = param("error") {
        let desc = param("error_description").unwrap_or_default();
        return Err(format!(
            "the sign-in was refused: {}",
            oauth::oauth_error(&json!({"error": e, "error_description": desc}))
        ));
    }
    param("code").ok_or_else(|| "the authorization response carries no code".into())
}

/// Ends a sign-in with the authorization response's `query` (the redirect's): its `iss`
/// (RFC 9207) and `state` checked, its error reported, its code exchanged for the tokens;
/// the grant is saved and returned.
pub(crate) async fn finish(p: Pending, query: &str) -> Result<Grant, String> {
    let Pending {
        key,
        store,
        http,
        d,
        client_id,
        client_secret,
        redirect,
        verifier,
        state,
    } = p;
    // RFC 9207 before anything else of the response is acted on (its error included).
    let advertised =
        d.meta.get("authorization_response_iss_parameter_supported") == Some(&Value::Bool(true));
    let code = authorization_code(query, &d.issuer, advertised, &state)?;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect.as_str()),
        ("code_verifier", verifier.as_str()),
        ("resource", d.resource.as_str()),
    ];
    let now = crate::util::now_secs();
    let t = oauth::token_request(&http, &d, &form, &client_id, client_secret.as_deref()).await?;
    let grant = Grant {
        issuer: d.issuer.clone(),
        token_endpoint: d.token_endpoint.clone(),
        revocation_endpoint: d.endpoint("revocation_endpoint").map(String::from),
        client_id,
        client_secret,
        resource: d.resource.clone(),
        scope: t.scope.clone().or(d.scope.clone()),
        wanted_scope: None,
        access_token: t.access_token.clone(),
        refresh_token: t.refresh_token.clone(),
        expires_at: t.expires_in.map(|s| now + s),
        access_issued_at: now,
        signed_in_at: now,
    };
    store
        .save(&key, &grant)
        .map_err(|e| format!("the sign-in could not be saved: {e}"))?;
    Ok(grant)
}

/// mcp-warden's client ID metadata document, published at `url` (which is its client id): a
/// native public client whose redirect is a loopback port (RFC 8252: any port), and the
/// front's `/oauth/callback` at `public_url` (sign-ins from the approvals page or a person's
/// link) when that is set.
pub fn client_metadata(url: &str, public_url: Option<&str>) -> Value {
    // `auth login`'s loopback redirect, and the approvals page's at the front's public address.
    let mut redirects = vec!["http://127.0.0.1/callback".to_string()];
    if let Some(p) = public_url {
        redirects.push(format!("{p}/oauth/callback"));
    }
    json!({
        "client_id": url,
        "client_name": "mcp-warden",
        "redirect_uris": redirects,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    })
}

/// The client metadata document `cfg` publishes at `path`, if any.
pub fn client_metadata_at(cfg: &Config, path: &str) -> Option<Value> {
    cfg.upstreams.iter().find_map(|u| match &u.transport {
        Transport::Http(HttpSpec { oauth: Some(o), .. }) => o
            .client_metadata_url
            .as_deref()
            .filter(|url| reqwest::Url::parse(url).is_ok_and(|p| p.path() == path))
            .map(|url| client_metadata(url, cfg.proxy.public_url.as_deref())),
        _ => None,
    })
}

/// OpenID Connect Dynamic Registration's `application_type` for a client whose redirect is
/// `redirect`: `native` for a loopback redirect (`auth login`, RFC 8252: any port), `web` for
/// the front's `/oauth/callback` at its public address (native clients may not use those at
/// many servers).
fn application_type(redirect: &str) -> &'static str {
    if reqwest::Url::parse(redirect).is_ok_and(|u| crate::config::loopback_host(&u)) {
        "native"
    } else {
        "web"
    }
}

/// Registers mcp-warden as a public client (RFC 7591) whose redirect is `redirect`.
async fn register(
    http: &reqwest::Client,
    d: &Discovery,
    redirect: &str,
) -> Result<(String, Option<String>), String> {
    let endpoint = d.endpoint("registration_endpoint").ok_or_else(|| {
        format!(
            "{} does not register clients itself: register one for mcp-warden (redirect URI http://127.0.0.1/callback, any port) and set `client_id` in `oauth`",
            d.issuer
        )
    })?;
    crate::config::secure_url(endpoint).map_err(|e| format!("registration endpoint {e}"))?;
    let mut body = json!({
        "client_name": "mcp-warden",
        "redirect_uris": [redirect],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": application_type(redirect),
    });
    if let Some(s) = &d.scope {
        body["scope"] = json!(s);
    }
    let v = oauth::send_for_json(
        http.post(endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string()),
        "to register mcp-warden",
    )
    .await?;
    let id = v
        .get("client_id")
        .and_then(Value::as_str)
        .ok_or("the registration response has no client_id")?;
    Ok((
        id.to_string(),
        v.get("client_secret")
            .and_then(Value::as_str)
            .map(String::from),
    ))
}

/// Waits for the browser's `GET /callback?…` carrying `state` on `listener`; its query. A
/// callback with another state (another local process guessing) is refused and the wait goes
/// on; anything else gets 404.
async fn callback(listener: tokio::net::TcpListener, state: &str) -> Result<String, String> {
    use axum::extract::RawQuery;
    use axum::response::IntoResponse;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1);
    let want = state.to_string();
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::get(move |RawQuery(q): RawQuery| {
            let tx = tx.clone();
            let want = want.clone();
            async move {
                let q = q.unwrap_or_default();
                let ours = url::form_urlencoded::parse(q.as_bytes())
                    .any(|(k, v)| k == "state" && v == want);
                if !ours {
                    return (
                        axum::http::StatusCode::BAD_REQUEST,
                        "not the sign-in mcp-warden is waiting for",
                    )
                        .into_response();
                }
                let _ = tx.try_send(q);
                (
                    [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<!doctype html><title>mcp-warden</title><p>mcp-warden received the sign-in. You can close this tab.</p>",
                )
                    .into_response()
            }
        }),
    );
    // Serve until the first callback arrives, then stop.
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let q = rx.recv().await.ok_or("the redirect listener stopped")?;
    serving.abort();
    Ok(q)
}

/// One OAuth upstream (and agent, when each signs in on its own) as `auth list` shows it.
pub struct Listed {
    pub upstream: String,
    pub agent: Option<String>,
    /// An operator signs in for it (authorization code); not for the other grants.
    pub sign_in: bool,
    /// Signed in now.
    pub signed_in: bool,
    /// The line `auth list` prints (never a token).
    pub line: String,
}

/// Every OAuth upstream of `cfg` and its state: signed in (when, as which client, what
/// scope, until when), not (the command to run), or how it gets its tokens otherwise.
pub fn list(cfg: &Config) -> Vec<Listed> {
    let mut out = vec![];
    for u in &cfg.upstreams {
        let Transport::Http(spec) = &u.transport else {
            continue;
        };
        let Some(o) = &spec.oauth else { continue };
        let client = o.client_id.as_deref().unwrap_or("");
        let other = |line: String| Listed {
            upstream: u.name.clone(),
            agent: None,
            sign_in: false,
            signed_in: false,
            line,
        };
        match o.grant {
            OAuthGrant::ClientCredentials => {
                out.push(other(format!(
                    "{}: client credentials (client {client})",
                    u.name
                )));
                continue;
            }
            OAuthGrant::TokenExchange => {
                out.push(other(format!(
                    "{}: token exchange of each caller's token (client {client})",
                    u.name
                )));
                continue;
            }
            OAuthGrant::AuthorizationCode => {}
        }
        if o.per == GrantPer::Person {
            // Each person's own: how many there are, never who.
            let people = people_keys(o, &spec.key(&u.name)).len();
            out.push(other(format!(
                "{}: each person signs in for themselves ({people} signed in)",
                u.name
            )));
            continue;
        }
        let who: Vec<Option<&str>> = if o.per == GrantPer::Agent && !cfg.agents.is_empty() {
            cfg.agents
                .iter()
                .filter(|a| crate::policy::agent::server_allowed(Some(a), &u.name))
                .map(|a| Some(a.name.as_str()))
                .collect()
        } else {
            vec![None]
        };
        for agent in who {
            let (label, login) = match agent {
                Some(a) => (
                    format!("{} (agent {a})", u.name),
                    format!("mcp-warden auth login {} --agent {a}", u.name),
                ),
                None => (u.name.clone(), format!("mcp-warden auth login {}", u.name)),
            };
            let key = o
                .grant_key(&spec.key(&u.name), agent, None)
                .unwrap_or_default();
            let (signed_in, line) = match Store::new(&o.store).load(&key) {
                Ok(Some(g)) => (true, describe(&label, &g)),
                Ok(None) => (false, format!("{label}: not signed in ({login})")),
                Err(e) => (false, format!("{label}: {e}")),
            };
            out.push(Listed {
                upstream: u.name.clone(),
                agent: agent.map(str::to_string),
                sign_in: true,
                signed_in,
                line,
            });
        }
    }
    out
}

fn describe(label: &str, g: &Grant) -> String {
    let now = crate::util::now_secs();
    let expiry = match g.expires_at {
        Some(e) if e > now => format!("access token valid {} s more", e - now),
        Some(_) => "access token expired".to_string(),
        None => "no expiry given".to_string(),
    };
    format!(
        "{label}: signed in at {} as client {} (scope: {}; {}; {})",
        g.issuer,
        g.client_id,
        g.scope.as_deref().unwrap_or("-"),
        expiry,
        if g.refresh_token.is_some() {
            "renewed with a refresh token"
        } else {
            "no refresh token: sign in again when it expires"
        }
    )
}

/// The keys of the people's own sign-ins to the upstream keyed `upstream_key` (`per = "user"`).
fn people_keys(settings: &crate::config::UpstreamOAuth, upstream_key: &str) -> Vec<String> {
    let prefix = format!("{upstream_key}+p-");
    std::fs::read_dir(&settings.store)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_suffix(".sealed")
                        .filter(|k| k.starts_with(&prefix))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Signs out of upstream `name` (for `agent`; when each person signs in for themselves, for
/// `person` — their `sub` at the `[auth.oidc]` issuer — or for every person): each refresh
/// token is revoked at the server when it offers revocation (RFC 7009), and the grant
/// forgotten. Returns how many there were.
pub async fn logout(
    cfg: &Config,
    name: &str,
    agent: Option<&str>,
    person: Option<&str>,
) -> Result<usize, String> {
    let spec = upstream(cfg, name)?;
    let Some(settings) = &spec.oauth else {
        return Err("no oauth".into());
    };
    let keys = match (settings.per, agent, person) {
        (GrantPer::Person, _, Some(sub)) => {
            let issuer = cfg.oidc.as_ref().map(|o| o.issuer.as_str()).unwrap_or("");
            let person = format!("{issuer} {sub}");
            vec![grant_key(
                cfg,
                name,
                spec,
                For {
                    agent: None,
                    person: Some(&person),
                },
            )?]
        }
        (GrantPer::Person, _, None) => people_keys(settings, &spec.key(name)),
        (_, _, Some(_)) => {
            return Err(format!(
                "upstream `{name}` is not signed in per person: leave out --person"
            ))
        }
        _ => vec![grant_key(
            cfg,
            name,
            spec,
            For {
                agent,
                person: None,
            },
        )?],
    };
    let store = Store::new(&settings.store);
    let mut forgotten = 0;
    for key in keys {
        if forget(spec, &store, &key).await? {
            forgotten += 1;
        }
    }
    Ok(forgotten)
}

/// Revokes and forgets one grant; `Ok(false)`: there was none.
async fn forget(spec: &HttpSpec, store: &Store, key: &str) -> Result<bool, String> {
    let Some(grant) = store.load(key).map_err(|e| e.to_string())? else {
        return Ok(false);
    };
    if let (Some(endpoint), Some(token)) = (&grant.revocation_endpoint, &grant.refresh_token) {
        let http = oauth::http_client(spec.tls.as_ref())?;
        let mut form = vec![
            ("token", token.as_str()),
            ("token_type_hint", "refresh_token"),
        ];
        let rb = oauth::client_auth(
            http.post(endpoint),
            &mut form,
            &grant.client_id,
            grant.client_secret.as_deref(),
            false,
        );
        match rb.form(&form).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(
                status = r.status().as_u16(),
                "the refresh token's revocation was refused; forgetting it anyway"
            ),
            Err(e) => {
                tracing::warn!(error = %crate::util::error_chain(&e), "the refresh token could not be revoked; forgetting it anyway")
            }
        }
    }
    store.remove(key).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::application_type;

    #[test]
    fn a_loopback_redirect_registers_a_native_client_and_a_public_one_a_web_client() {
        for native in [
            "http://127.0.0.1:4242/callback",
            "http://localhost:8787/oauth/callback",
            "http://[::1]:8787/oauth/callback",
        ] {
            assert_eq!(application_type(native), "native", "{native}");
        }
        assert_eq!(
            application_type("https://warden.example.com/oauth/callback"),
            "web"
        );
    }
}
