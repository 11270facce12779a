//! mcp-warden as an OAuth 2.1 resource server (`[auth.oidc]`): a JWT access token issued by the
//! configured identity provider *for this endpoint* identifies an HTTP caller.
//!
//! What a token must be to be accepted (MCP authorization, RFC 9068, RFC 8707):
//! - signed with an accepted asymmetric algorithm (never `none`, never HMAC) by a key of the
//!   issuer's published key set — a JWK whose `alg` is another one, an `oct` (shared secret)
//!   key or one not meant for signatures is never used;
//! - `iss` exactly the configured issuer, `aud` containing the configured `resource` (a token
//!   meant for another service is refused), `exp` in the future and `nbf` past, within the
//!   configured leeway.
//!
//! Keys come from `jwks_uri`, or from the issuer's metadata (RFC 8414, then OpenID Connect
//! discovery; the metadata's `issuer` must be the configured one). They are fetched when first
//! needed, again when older than `jwks_refresh_secs`, and when a token names a key id not in
//! the set (the provider rotated its keys) — at most once per [`REFETCH_FLOOR`], so tokens with
//! made-up key ids cannot make mcp-warden hammer the provider. A failed fetch keeps the keys
//! already known.
//!
//! Tokens are never logged; a refusal logs its reason only.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::config::{ClaimMatch, OidcSettings};

/// The shortest time between two fetches of the key set prompted by an unknown key id.
pub const REFETCH_FLOOR: Duration = Duration::from_secs(10);
/// Metadata and key sets larger than this are refused.
const MAX_DOCUMENT: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a token was refused (logged; the caller gets `invalid_token` whatever it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    Algorithm,
    UnknownKey,
    Signature,
    Expired,
    NotYetValid,
    Issuer,
    Audience,
    Claims,
    /// The identity provider's keys could not be had.
    NoKeys,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Malformed => "not a JWT",
            Refusal::Algorithm => "signature algorithm not accepted",
            Refusal::UnknownKey => "signed with a key the issuer does not publish",
            Refusal::Signature => "bad signature",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not valid yet (nbf)",
            Refusal::Issuer => "issued by another issuer",
            Refusal::Audience => "meant for another resource (aud)",
            Refusal::Claims => "required claims missing or malformed",
            Refusal::NoKeys => "the identity provider's keys are unavailable",
        })
    }
}

struct Key {
    kid: Option<String>,
    /// The JWK's own `alg`, when it names one.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

#[derive(Default)]
struct Keys {
    keys: Vec<Key>,
    fetched: Option<tokio::time::Instant>,
    /// Which fetch this set came from (0: none yet).
    generation: u64,
}

/// Tokens verified with the current key set, by the SHA-256 of the token: their claims and
/// `exp`. A signature check costs 250–380 µs (RS256, ES256 with RustCrypto, release build,
/// measured) — ten times what mcp-warden spends on the rest of a call — and an agent presents
/// the same token on every request until it renews it. An entry serves only the very same
/// token, only while its `exp` (with the leeway) holds, and only with the key set it was
/// verified with: a new key set (rotation, withdrawal) empties the cache.
#[derive(Default)]
struct Verified {
    generation: u64,
    entries: std::collections::HashMap<[u8; 32], (Claims, u64)>,
}

type Claims = Arc<Map<String, Value>>;

/// Entries kept; when full, expired ones go first, then all.
const VERIFIED_CAP: usize = 10_000;

pub struct Verifier {
    settings: Arc<OidcSettings>,
    http: reqwest::Client,
    keys: std::sync::RwLock<Arc<Keys>>,
    /// One fetch at a time; holds when the last one was attempted and the key set's URL once
    /// discovered.
    fetch: tokio::sync::Mutex<FetchState>,
    fetches: std::sync::atomic::AtomicU64,
    verified: std::sync::Mutex<Verified>,
}

#[derive(Default)]
struct FetchState {
    attempted: Option<tokio::time::Instant>,
    jwks_uri: Option<String>,
}

impl Verifier {
    pub fn new(settings: Arc<OidcSettings>) -> Arc<Verifier> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Arc::new(Verifier {
            fetch: tokio::sync::Mutex::new(FetchState {
                attempted: None,
                jwks_uri: settings.jwks_uri.clone(),
            }),
            settings,
            http,
            keys: Default::default(),
            fetches: Default::default(),
            verified: Default::default(),
        })
    }

    pub fn settings(&self) -> &Arc<OidcSettings> {
        &self.settings
    }

    /// Fetches the keys now (at start, so the first caller does not wait for them).
    pub async fn warm(&self) {
        self.refresh(None).await;
    }

    /// The token's claims, if it is one this endpoint accepts.
    pub async fn verify(self: &Arc<Self>, token: &str) -> Result<Arc<Map<String, Value>>, Refusal> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let leeway = self.settings.leeway.as_secs();
        // The key set first: a stale one is fetched again in the background, cache hit or not
        // (a withdrawn key's tokens must stop working once the set says so).
        let keys = self.current().await;
        {
            let v = crate::util::lock(&self.verified);
            if let Some((claims, exp)) = v.entries.get(&digest) {
                if v.generation == keys.generation && crate::util::now_secs() <= exp + leeway {
                    return Ok(claims.clone());
                }
            }
        }
        let (claims, keys) = self.decode(token, &self.settings.resource, keys).await?;
        if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
            let mut v = crate::util::lock(&self.verified);
            if v.generation != keys.generation {
                *v = Verified {
                    generation: keys.generation,
                    entries: Default::default(),
                };
            }
            if v.entries.len() >= VERIFIED_CAP {
                let now = crate::util::now_secs();
                v.entries.retain(|_, (_, e)| now <= *e + leeway);
                if v.entries.len() >= VERIFIED_CAP {
                    v.entries.clear();
                }
            }
            v.entries.insert(digest, (claims.clone(), exp));
        }
        Ok(claims)
    }

    /// The claims of `token`, signed with one of the provider's keys (fetched again once when
    /// its key is not among `keys`), by the configured issuer, for `audience`, valid now.
    async fn decode(
        &self,
        token: &str,
        audience: &str,
        keys: Arc<Keys>,
    ) -> Result<(Arc<Map<String, Value>>, Arc<Keys>), Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(Refusal::Algorithm);
        }
        let kid = header.kid.as_deref();
        let keys = match find(&keys, kid, header.alg) {
            Some(_) => keys,
            // Not there: perhaps the provider rotated its keys.
            None => self.refresh(Some(keys)).await,
        };
        let Some(key) = find(&keys, kid, header.alg) else {
            return Err(if keys.keys.is_empty() {
                Refusal::NoKeys
            } else {
                Refusal::UnknownKey
            });
        };
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.settings.issuer]);
        v.set_audience(&[audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = self.settings.leeway.as_secs();
        v.validate_nbf = true;
        use jsonwebtoken::errors::ErrorKind as E;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v)
            .map(|d| Arc::new(d.claims))
            .map_err(|e| match e.kind() {
                E::InvalidSignature => Refusal::Signature,
                E::ExpiredSignature => Refusal::Expired,
                E::ImmatureSignature => Refusal::NotYetValid,
                E::InvalidIssuer => Refusal::Issuer,
                E::InvalidAudience => Refusal::Audience,
                E::InvalidAlgorithm | E::MissingAlgorithm => Refusal::Algorithm,
                E::MissingRequiredClaim(_) | E::InvalidClaimFormat(_) => Refusal::Claims,
                _ => Refusal::Malformed,
            })?;
        Ok((claims, keys))
    }

    /// The claims of an ID token the provider issued to mcp-warden's browser client
    /// `client_id` (OpenID Connect Core §3.1.3.7): signature, issuer, audience, expiry as for
    /// access tokens, the `nonce` of the sign-in it answers, and `azp` when present.
    pub async fn verify_id_token(
        self: &Arc<Self>,
        token: &str,
        client_id: &str,
        nonce: &str,
    ) -> Result<Arc<Map<String, Value>>, Refusal> {
        let keys = self.current().await;
        let (claims, _) = self.decode(token, client_id, keys).await?;
        let given = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            given.as_bytes(),
            nonce.as_bytes(),
        )) {
            return Err(Refusal::Claims);
        }
        if claims
            .get("azp")
            .and_then(Value::as_str)
            .is_some_and(|azp| azp != client_id)
        {
            return Err(Refusal::Audience);
        }
        if claims
            .get("sub")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(Refusal::Claims);
        }
        Ok(claims)
    }

    /// The keys. None yet: fetched now. Older than the refresh period: used while fetched
    /// again in the background (an identity provider that is slow or down never holds a call
    /// whose key is known).
    async fn current(self: &Arc<Self>) -> Arc<Keys> {
        let keys = crate::util::read(&self.keys).clone();
        match keys.fetched {
            None => self.refresh(Some(keys)).await,
            Some(at) if at.elapsed() >= self.settings.jwks_refresh => {
                // One background fetch at a time (no pile of waiting tasks under load).
                if self.fetch.try_lock().is_err() {
                    return keys;
                }
                let this = self.clone();
                let seen = keys.clone();
                tokio::spawn(async move { this.refresh(Some(seen)).await });
                keys
            }
            Some(_) => keys,
        }
    }

    /// Fetches the key set again, unless another fetch did while this caller waited (its
    /// result is used) or the last attempt is too recent: at most one attempt per
    /// [`REFETCH_FLOOR`] (or refresh period, if shorter), whatever tokens arrive. `seen`: the
    /// set the caller found wanting.
    async fn refresh(&self, seen: Option<Arc<Keys>>) -> Arc<Keys> {
        let mut state = self.fetch.lock().await;
        let now = crate::util::read(&self.keys).clone();
        if let Some(seen) = &seen {
            if !Arc::ptr_eq(seen, &now) {
                return now;
            }
        }
        let floor = REFETCH_FLOOR.min(self.settings.jwks_refresh);
        if state.attempted.is_some_and(|at| at.elapsed() < floor) {
            return now;
        }
        state.attempted = Some(tokio::time::Instant::now());
        match self.fetch_keys(&mut state).await {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), issuer = %self.settings.issuer, "identity provider keys fetched");
                let generation = 1 + self
                    .fetches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let fresh = Arc::new(Keys {
                    keys,
                    fetched: Some(tokio::time::Instant::now()),
                    generation,
                });
                *crate::util::write(&self.keys) = fresh.clone();
                fresh
            }
            Err(e) => {
                tracing::warn!(issuer = %self.settings.issuer, error = %e, "identity provider keys could not be fetched; keeping those known");
                now
            }
        }
    }

    async fn fetch_keys(&self, state: &mut FetchState) -> Result<Vec<Key>, String> {
        let uri = match &state.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let u = self.discover().await?;
                state.jwks_uri = Some(u.clone());
                u
            }
        };
        let doc = self.get_json(&uri).await?;
        let Some(list) = doc.get("keys").and_then(Value::as_array) else {
            return Err(format!("{uri}: no `keys` array"));
        };
        let keys: Vec<Key> = list.iter().filter_map(usable_key).collect();
        if keys.is_empty() {
            return Err(format!("{uri}: no usable signing key"));
        }
        Ok(keys)
    }

    /// The key set's URL from the issuer's metadata ([`provider_metadata`]).
    async fn discover(&self) -> Result<String, String> {
        let (url, doc) = provider_metadata(&self.http, &self.settings.issuer).await?;
        let Some(jwks) = doc.get("jwks_uri").and_then(Value::as_str) else {
            return Err(format!("{url}: no `jwks_uri`"));
        };
        crate::config::secure_url(jwks).map_err(|e| format!("{url}: jwks_uri {e}"))?;
        Ok(jwks.to_string())
    }

    async fn get_json(&self, url: &str) -> Result<Map<String, Value>, String> {
        fetch_json(&self.http, url).await
    }
}

/// The identity provider's metadata and where it was found: RFC 8414 (path inserted), OpenID
/// Connect discovery (path inserted, then appended). It must name the same issuer.
pub async fn provider_metadata(
    http: &reqwest::Client,
    issuer: &str,
) -> Result<(String, Map<String, Value>), String> {
    let mut last = String::from("no metadata");
    for url in metadata_urls(issuer) {
        match fetch_json(http, &url).await {
            Ok(doc) => {
                if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
                    return Err(format!(
                        "{url}: its `issuer` is not {issuer} (refusing its keys)"
                    ));
                }
                return Ok((url, doc));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A GET of a JSON object (metadata, key sets): 200, at most [`MAX_DOCUMENT`] bytes.
pub async fn fetch_json(http: &reqwest::Client, url: &str) -> Result<Map<String, Value>, String> {
    let mut resp = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("{url}: {}", crate::util::error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: HTTP {}", resp.status().as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("{url}: {}", crate::util::error_chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(format!("{url}: larger than {MAX_DOCUMENT} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(format!("{url}: not a JSON object")),
    }
}

/// Where an issuer's metadata may be, in the order the MCP specification gives.
pub fn metadata_urls(issuer: &str) -> Vec<String> {
    let Ok(u) = reqwest::Url::parse(issuer) else {
        return vec![];
    };
    let origin = u.origin().ascii_serialization();
    let path = u.path().trim_end_matches('/');
    let mut urls = vec![
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{origin}/.well-known/openid-configuration{path}"),
    ];
    if !path.is_empty() {
        urls.push(format!("{origin}{path}/.well-known/openid-configuration"));
    }
    urls
}

/// A JWK this verifier may use: a public signing key (RSA, EC, OKP) — never an `oct` (shared
/// secret) key, nor one marked for encryption.
fn usable_key(v: &Value) -> Option<Key> {
    let jwk: Jwk = serde_json::from_value(v.clone()).ok()?;
    if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
        return None;
    }
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(KeyAlgorithm::HS256 | KeyAlgorithm::HS384 | KeyAlgorithm::HS512) => return None,
        Some(a) => Some(a.to_string().parse::<Algorithm>().ok()?),
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id,
        alg,
        key,
    })
}

/// The key a token names: by key id, or — when the token names none — the only key of the
/// set that fits its algorithm.
fn find<'k>(keys: &'k Keys, kid: Option<&str>, alg: Algorithm) -> Option<&'k Key> {
    let fits = |k: &&Key| k.alg.is_none_or(|a| a == alg);
    match kid {
        Some(kid) => keys
            .keys
            .iter()
            .filter(fits)
            .find(|k| k.kid.as_deref() == Some(kid)),
        None => {
            let mut candidates = keys.keys.iter().filter(fits);
            let one = candidates.next()?;
            candidates.next().is_none().then_some(one)
        }
    }
}

/// Whether `claims` meet every condition.
pub fn matches(claims: &Map<String, Value>, conditions: &[ClaimMatch]) -> bool {
    !conditions.is_empty()
        && conditions.iter().all(|c| {
            let mut parts = c.claim.split('.');
            let first = parts.next().and_then(|p| claims.get(p));
            let value = parts.fold(first, |v, p| v.and_then(|v| v.get(p)));
            let has = |s: &str| c.values.iter().any(|want| want == s);
            match value {
                Some(Value::String(s)) => has(s),
                Some(Value::Array(items)) => items.iter().any(|i| match i {
                    Value::String(s) => has(s),
                    Value::Bool(_) | Value::Number(_) => has(&i.to_string()),
                    _ => false,
                }),
                Some(v @ (Value::Bool(_) | Value::Number(_))) => has(&v.to_string()),
                _ => false,
            }
        })
}

/// The scopes a token carries: `scope` (space-separated, RFC 9068) or `scp` (a list or a
/// string, as some providers write it).
pub fn scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut out = vec![];
    for key in ["scope", "scp"] {
        match claims.get(key) {
            Some(Value::String(s)) => out.extend(s.split(' ').filter(|s| !s.is_empty())),
            Some(Value::Array(a)) => out.extend(a.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

/// The URL of this endpoint's protected resource metadata (RFC 9728 §3.1: the well-known
/// name inserted between the resource's origin and path).
pub fn metadata_url(resource: &str) -> String {
    match reqwest::Url::parse(resource) {
        Ok(u) => format!(
            "{}/.well-known/oauth-protected-resource{}",
            u.origin().ascii_serialization(),
            u.path().trim_end_matches('/')
        ),
        Err(_) => String::new(),
    }
}

/// The protected resource metadata document (RFC 9728).
pub fn resource_metadata(settings: &OidcSettings) -> Value {
    serde_json::json!({
        "resource": settings.resource,
        "authorization_servers": [settings.issuer],
        "scopes_supported": settings.scopes,
        "bearer_methods_supported": ["header"],
        "resource_signing_alg_values_supported": settings.algorithms.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>(),
        "resource_name": "mcp-warden",
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn cond(claim: &str, values: &[&str]) -> ClaimMatch {
        ClaimMatch {
            claim: claim.into(),
            values: values.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn every_condition_must_hold_and_lists_match_any_of() {
        let c = claims(serde_json::json!({
            "sub": "alice", "client_id": "desk", "groups": ["eng", "ops"],
            "realm_access": {"roles": ["admin"]}, "email_verified": true
        }));
        assert!(matches(&c, &[cond("sub", &["alice"])]));
        assert!(matches(
            &c,
            &[cond("sub", &["bob", "alice"]), cond("groups", &["ops"])]
        ));
        assert!(!matches(
            &c,
            &[cond("sub", &["alice"]), cond("groups", &["sales"])]
        ));
        assert!(matches(&c, &[cond("realm_access.roles", &["admin"])]));
        assert!(!matches(&c, &[cond("realm_access.missing", &["admin"])]));
        assert!(matches(&c, &[cond("email_verified", &["true"])]));
        assert!(
            !matches(&c, &[cond("client", &["desk"])]),
            "no prefix matching"
        );
        assert!(!matches(&c, &[]), "no condition matches nothing");
    }

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let c = claims(serde_json::json!({"scope": "mcp  tools:write"}));
        assert_eq!(scopes(&c), ["mcp", "tools:write"]);
        let c = claims(serde_json::json!({"scp": ["mcp", "admin"]}));
        assert_eq!(scopes(&c), ["mcp", "admin"]);
    }

    #[test]
    fn metadata_is_looked_up_where_the_specification_says() {
        assert_eq!(
            metadata_urls("https://idp.example.com/realms/agents"),
            [
                "https://idp.example.com/.well-known/oauth-authorization-server/realms/agents",
                "https://idp.example.com/.well-known/openid-configuration/realms/agents",
                "https://idp.example.com/realms/agents/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            metadata_urls("http://127.0.0.1:9000"),
            [
                "http://127.0.0.1:9000/.well-known/oauth-authorization-server",
                "http://127.0.0.1:9000/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            metadata_url("https://warden.example.com/mcp"),
            "https://warden.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            metadata_url("http://127.0.0.1:8787/"),
            "http://127.0.0.1:8787/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn shared_secret_and_encryption_keys_are_never_used() {
        let oct = serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"});
        assert!(usable_key(&oct).is_none());
        let enc = serde_json::json!({"kty": "EC", "crv": "P-256", "use": "enc", "kid": "e",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        assert!(usable_key(&enc).is_none());
        let sig = serde_json::json!({"kty": "EC", "crv": "P-256", "use": "sig", "kid": "s",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        assert!(usable_key(&sig).is_some());
    }
}
