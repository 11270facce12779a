//! mcp-warden as the OAuth client of an OAuth-protected HTTP upstream (`oauth = { … }`), with
//! a client registered for it at the upstream's authorization server (client credentials).
//!
//! As the MCP authorization specification says: the authorization server is found from the
//! upstream's protected resource metadata (RFC 9728: the `resource_metadata` of its 401
//! challenge, else the well-known name at the upstream's path, then at its root), whose
//! `resource` must be the upstream; then from the server's own metadata (RFC 8414, then OpenID
//! Connect discovery), whose `issuer` must be the one the resource named. Tokens are asked for
//! the upstream's URL (`resource`, RFC 8707), with the configured scopes, else the challenge's,
//! else the metadata's `scopes_supported`.
//!
//! A token is used until shortly before it expires (a tenth of its lifetime, 1 s to a minute),
//! then a new one is obtained before the next request — one request at a time does it, the
//! others wait for its result. A 401 from the upstream drops the token it refused (a revoked or
//! otherwise dead token), and the request is sent again once with a new one.
//!
//! Tokens go to this upstream only, never to a log or an agent: header values are marked
//! sensitive, errors name the authorization server's `error` code, never a token or secret.

use std::time::Duration;

use reqwest::header::{HeaderValue, WWW_AUTHENTICATE};
use serde_json::Value;
use tokio::time::Instant;

use crate::config::UpstreamOAuth;
use crate::util::lock;

const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct OAuth {
    upstream: String,
    /// The upstream's URL: the resource tokens are for.
    url: String,
    settings: UpstreamOAuth,
    http: reqwest::Client,
    token: std::sync::Mutex<Option<Token>>,
    /// Serialises discovery and token requests; holds what discovery found.
    fetch: tokio::sync::Mutex<Option<Endpoint>>,
}

#[derive(Clone)]
struct Token {
    /// `Bearer …`, marked sensitive.
    header: HeaderValue,
    renew_at: Instant,
}

/// What discovery found: where to ask, and what for.
#[derive(Clone, Debug)]
struct Endpoint {
    token_endpoint: String,
    resource: String,
    scope: Option<String>,
    /// The server takes the client's secret in the form body rather than HTTP Basic.
    secret_in_body: bool,
}

/// The clients of live upstream connections, so that every session of an upstream shares one
/// token (keyed by upstream, URL and client).
static SHARED: std::sync::Mutex<Vec<(String, std::sync::Weak<OAuth>)>> =
    std::sync::Mutex::new(Vec::new());

impl OAuth {
    /// The client for `spec`'s upstream, shared by its connections while any is alive.
    pub(crate) fn shared(
        upstream: &str,
        spec: &crate::config::HttpSpec,
    ) -> Result<Option<std::sync::Arc<OAuth>>, String> {
        let Some(settings) = &spec.oauth else {
            return Ok(None);
        };
        let key = format!("{upstream}\n{}\n{}", spec.url, settings.client_id);
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
        let o = std::sync::Arc::new(OAuth::new(
            upstream,
            &spec.url,
            settings.clone(),
            spec.tls.as_ref(),
        )?);
        shared.retain(|(k, _)| *k != key);
        shared.push((key, std::sync::Arc::downgrade(&o)));
        Ok(Some(o))
    }

    fn new(
        upstream: &str,
        url: &str,
        settings: UpstreamOAuth,
        tls: Option<&crate::config::UpstreamTls>,
    ) -> Result<OAuth, String> {
        let builder = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        let builder = match tls {
            // The authorization server may sit behind the same private CA as the upstream.
            Some(t) => builder.use_preconfigured_tls(crate::tls::client_config(Some(t))?),
            None => builder,
        };
        Ok(OAuth {
            upstream: upstream.to_string(),
            url: url.to_string(),
            settings,
            http: builder.build().map_err(|e| e.to_string())?,
            token: Default::default(),
            fetch: Default::default(),
        })
    }

    /// The `Authorization` value for the next request: the current token, or a new one. `None`
    /// when none can be had yet (the request goes without, and its 401 tells where to ask).
    pub(crate) async fn authorization(&self) -> Option<HeaderValue> {
        if let Some(t) = self.fresh() {
            return Some(t);
        }
        let mut endpoint = self.fetch.lock().await;
        if let Some(t) = self.fresh() {
            return Some(t); // obtained while this request waited
        }
        match self.obtain(&mut endpoint, None).await {
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
        let mut endpoint = self.fetch.lock().await;
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
        *endpoint = None;
        self.obtain(&mut endpoint, challenge.as_ref())
            .await
            .inspect_err(|e| tracing::warn!(upstream = %self.upstream, "OAuth: {e}"))
    }

    fn fresh(&self) -> Option<HeaderValue> {
        lock(&self.token)
            .as_ref()
            .filter(|t| Instant::now() < t.renew_at)
            .map(|t| t.header.clone())
    }

    async fn obtain(
        &self,
        endpoint: &mut Option<Endpoint>,
        challenge: Option<&Challenge>,
    ) -> Result<HeaderValue, String> {
        let ep = match endpoint {
            Some(ep) => ep.clone(),
            None => {
                let ep = self.discover(challenge).await?;
                tracing::info!(upstream = %self.upstream, token_endpoint = %ep.token_endpoint, "OAuth: authorization server found");
                *endpoint = Some(ep.clone());
                ep
            }
        };
        let token = self.request_token(&ep).await?;
        let header = token.header.clone();
        *lock(&self.token) = Some(token);
        Ok(header)
    }

    async fn discover(&self, challenge: Option<&Challenge>) -> Result<Endpoint, String> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| e.to_string())?;
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
            match crate::oidc::fetch_json(&self.http, c).await {
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
        let mut meta = None;
        for m in crate::oidc::metadata_urls(&issuer) {
            match crate::oidc::fetch_json(&self.http, &m).await {
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
        let methods: Vec<&str> = meta
            .get("token_endpoint_auth_methods_supported")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let secret_in_body = !methods.is_empty()
            && !methods.contains(&"client_secret_basic")
            && methods.contains(&"client_secret_post");
        let scope = if !self.settings.scopes.is_empty() {
            Some(self.settings.scopes.join(" "))
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
        Ok(Endpoint {
            token_endpoint,
            resource,
            scope,
            secret_in_body,
        })
    }

    async fn request_token(&self, ep: &Endpoint) -> Result<Token, String> {
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "client_credentials"),
            ("resource", &ep.resource),
        ];
        if let Some(s) = &ep.scope {
            form.push(("scope", s));
        }
        let secret = self.settings.client_secret.expose();
        let mut rb = self.http.post(&ep.token_endpoint);
        if ep.secret_in_body {
            form.push(("client_id", &self.settings.client_id));
            form.push(("client_secret", secret));
        } else {
            // RFC 6749 §2.3.1: id and secret form-encoded before Basic.
            rb = rb.basic_auth(
                form_encode(&self.settings.client_id),
                Some(form_encode(secret)),
            );
        }
        let started = Instant::now();
        let resp = rb
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("token request failed: {}", crate::util::error_chain(&e)))?;
        let status = resp.status();
        let body: Value = resp
            .bytes()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        if !status.is_success() {
            let code = body.get("error").and_then(Value::as_str).unwrap_or("");
            let what = body
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(format!(
                "the authorization server refused a token (HTTP {}): {} {}",
                status.as_u16(),
                crate::term::safe(&crate::util::truncate(code, 64)),
                crate::term::safe(&crate::util::truncate(what, 200)),
            ));
        }
        let access = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or("the token response has no access_token")?;
        let kind = body.get("token_type").and_then(Value::as_str).unwrap_or("");
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err("the token response is not a Bearer token".into());
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {access}"))
            .map_err(|_| "the access token is not a valid header value")?;
        header.set_sensitive(true);
        // Without `expires_in` the token is used until the upstream refuses it.
        let lifetime = body
            .get("expires_in")
            .and_then(Value::as_u64)
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(365 * 86_400));
        // A tenth of the lifetime, at least a second (`exp` counts whole seconds from an `iat`
        // rounded down) and at most a minute; never more than half of it.
        let margin = (lifetime / 10)
            .clamp(Duration::from_secs(1), Duration::from_secs(60))
            .min(lifetime / 2);
        tracing::debug!(upstream = %self.upstream, lifetime_secs = lifetime.as_secs(), "OAuth: token obtained");
        Ok(Token {
            header,
            renew_at: started + lifetime - margin,
        })
    }
}

/// The parameters of a `WWW-Authenticate: Bearer …` challenge that matter here.
#[derive(Debug, Default, PartialEq)]
struct Challenge {
    resource_metadata: Option<String>,
    scope: Option<String>,
}

impl Challenge {
    fn parse(v: &str) -> Challenge {
        let mut c = Challenge::default();
        let mut rest = v.trim();
        if rest.len() >= 6 && rest[..6].eq_ignore_ascii_case("bearer") {
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
                _ => {}
            }
        }
        c
    }
}

/// Whether the metadata's `resource` is the upstream: same origin, and the upstream's path at
/// or below the resource's (RFC 9728 §3.3, as the MCP SDKs check it).
fn same_resource(resource: &str, upstream: &reqwest::Url) -> bool {
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
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
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
