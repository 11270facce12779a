//! Who is calling, over HTTP: decided by the credential alone. A bearer token is hashed and
//! compared in constant time against every configured agent's digest; with `[auth.oidc]`, a
//! bearer token that is none of those may be a JWT access token of the identity provider, whose
//! claims name the agent (see [`crate::oidc`]). No header (`x-agent-id`, `x-session-key`, …) can
//! name or change the caller. Tokens are never logged.

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use crate::config::{AuthMode, Config, TokenDigest};

/// The caller, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    /// A named agent (by name, which stays meaningful across config reloads).
    Agent(Arc<str>),
    /// An agent known by an identity provider's access token: the agent its claims name, and
    /// whom the token stands for (`iss` and `sub`). Sessions, parked calls and upstream
    /// sign-ins made for it are bound to both: two people behind one agent never share them.
    Signed { agent: Arc<str>, subject: Arc<str> },
    /// The single-user case: no agents are named; the caller sees every upstream.
    User,
}

impl Caller {
    /// The agent whose policy applies (`None`: the single user).
    pub fn agent(&self) -> Option<&Arc<str>> {
        match self {
            Caller::Agent(a) | Caller::Signed { agent: a, .. } => Some(a),
            Caller::User => None,
        }
    }
}

/// The access token a [`Caller::Signed`] presented with its current request: what token
/// exchange trades for an upstream's token. Never shown (Debug hides it), never forwarded.
#[derive(Clone)]
pub struct SubjectToken(pub Arc<str>);

impl std::fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectToken(<redacted>)")
    }
}

/// The latest [`SubjectToken`] of a session's caller, shared with the session's upstream
/// connections (token exchange reads it when it needs a new upstream token).
#[derive(Default)]
pub struct SubjectCell(std::sync::Mutex<Option<SubjectToken>>);

impl SubjectCell {
    pub fn set(&self, t: SubjectToken) {
        *crate::util::lock(&self.0) = Some(t);
    }

    pub fn get(&self) -> Option<SubjectToken> {
        crate::util::lock(&self.0).clone()
    }
}

impl std::fmt::Debug for SubjectCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectCell")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer …` at all.
    Missing,
    /// A credential that matches nobody.
    Invalid,
    /// A valid access token of the identity provider whose claims name no agent (or several).
    NoAgent,
    /// A valid access token of an agent that lacks scopes it needs: all of them (to step up).
    InsufficientScope(String),
}

/// `[auth.oidc]` at work: the verifier and, per agent, what its tokens must be.
struct Oidc {
    verifier: Arc<crate::oidc::Verifier>,
    /// (agent, claim conditions, scopes its tokens need: the endpoint's and its own).
    agents: Vec<(Arc<str>, Vec<crate::config::ClaimMatch>, Vec<String>)>,
}

pub struct Authenticator {
    agents: Vec<(TokenDigest, Arc<str>)>,
    /// (certificate DNS name, agent) for mTLS identities.
    cert_names: Vec<(String, Arc<str>)>,
    /// The token generated at start for the single-user case.
    user: Option<TokenDigest>,
    open: bool,
    oidc: Option<Oidc>,
}

impl Authenticator {
    /// `generated`: the single-user token (when no agents are named and auth is required).
    /// `previous`: the authenticator this one replaces (a reload), whose identity provider
    /// keys are kept when `[auth.oidc]` did not change.
    pub fn new(
        cfg: &Arc<Config>,
        generated: Option<&str>,
        previous: Option<&Authenticator>,
    ) -> Authenticator {
        let agents = cfg
            .agents
            .iter()
            .flat_map(|a| {
                let name: Arc<str> = Arc::from(a.name.as_str());
                a.tokens.iter().map(move |t| (t.clone(), name.clone()))
            })
            .collect();
        let cert_names = cfg
            .agents
            .iter()
            .flat_map(|a| {
                let name: Arc<str> = Arc::from(a.name.as_str());
                a.cert_names.iter().map(move |c| (c.clone(), name.clone()))
            })
            .collect();
        Authenticator {
            agents,
            cert_names,
            // The generated token stands for the single user, who exists only while no agent
            // is named.
            user: generated
                .filter(|_| cfg.agents.is_empty())
                .map(TokenDigest::of),
            open: cfg.agents.is_empty() && cfg.proxy.auth == AuthMode::None,
            oidc: cfg.oidc.as_ref().map(|settings| {
                let verifier = previous
                    .and_then(|p| p.oidc.as_ref())
                    .map(|o| o.verifier.clone())
                    .filter(|v| v.settings() == settings)
                    .unwrap_or_else(|| crate::oidc::Verifier::new(settings.clone()));
                let agents = cfg
                    .agents
                    .iter()
                    .filter(|a| !a.claims.is_empty())
                    .map(|a| {
                        let mut scopes = settings.scopes.clone();
                        scopes.extend(
                            a.scopes
                                .iter()
                                .filter(|s| !settings.scopes.contains(s))
                                .cloned(),
                        );
                        (Arc::from(a.name.as_str()), a.claims.clone(), scopes)
                    })
                    .collect();
                Oidc { verifier, agents }
            }),
        }
    }

    /// The identity provider's verifier, when `[auth.oidc]` is configured.
    pub fn oidc(&self) -> Option<&Arc<crate::oidc::Verifier>> {
        self.oidc.as_ref().map(|o| &o.verifier)
    }

    /// Authenticates by bearer token and, over mTLS, by the verified client certificate. When
    /// both are present they must name the same agent; a certificate that names no agent
    /// identifies nobody (the token then decides).
    /// With the caller, the access token it presented when that is an identity provider's.
    pub async fn authenticate_peer(
        &self,
        headers: &HeaderMap,
        cert: Option<&rustls_pki_types::CertificateDer<'_>>,
    ) -> Result<(Caller, Option<SubjectToken>), AuthError> {
        let by_cert = cert.and_then(|c| {
            self.cert_names
                .iter()
                .find(|(n, _)| crate::tls::cert_matches(c, n))
                .map(|(_, a)| Caller::Agent(a.clone()))
        });
        let by_token = match self.authenticate(headers) {
            Err(AuthError::Invalid) => self.authenticate_jwt(headers).await,
            other => other.map(|c| (c, None)),
        };
        match (by_cert, by_token) {
            // A certificate and a token must name the same agent.
            (Some(c), Ok((t, token))) if c.agent() == t.agent() => Ok((t, token)),
            (Some(_), Ok(_)) => Err(AuthError::Invalid),
            (Some(c), Err(AuthError::Missing)) => Ok((c, None)),
            (_, result) => result,
        }
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        if self.open {
            return Ok(Caller::User);
        }
        let token = bearer(headers).ok_or(AuthError::Missing)?;
        let presented = TokenDigest::of(token);
        // Compare against every digest (no early exit), so timing says nothing about which
        // agent, if any, came close.
        let mut found: Option<Caller> = None;
        for (digest, name) in &self.agents {
            if bool::from(digest.0.ct_eq(&presented.0)) {
                found = Some(Caller::Agent(name.clone()));
            }
        }
        if let Some(user) = &self.user {
            if bool::from(user.0.ct_eq(&presented.0)) {
                found = Some(Caller::User);
            }
        }
        found.ok_or(AuthError::Invalid)
    }
}

impl Authenticator {
    /// A token that is no agent's: with `[auth.oidc]`, an access token of the identity
    /// provider naming exactly one agent, with every scope that agent needs.
    async fn authenticate_jwt(
        &self,
        headers: &HeaderMap,
    ) -> Result<(Caller, Option<SubjectToken>), AuthError> {
        let (Some(oidc), Some(token)) = (&self.oidc, bearer(headers)) else {
            return Err(AuthError::Invalid);
        };
        let claims = oidc.verifier.verify(token).await.map_err(|why| {
            tracing::info!(reason = %why, "access token refused");
            AuthError::Invalid
        })?;
        let mut found = oidc
            .agents
            .iter()
            .filter(|(_, conditions, _)| crate::oidc::matches(&claims, conditions));
        let (Some((name, _, needs)), None) = (found.next(), found.next()) else {
            let sub = claims.get("sub").and_then(|s| s.as_str()).unwrap_or("");
            tracing::warn!(
                sub = %crate::term::safe(&crate::util::truncate(sub, 128)),
                "access token refused: its claims match no agent, or more than one"
            );
            return Err(AuthError::NoAgent);
        };
        let has = crate::oidc::scopes(&claims);
        if needs.iter().any(|s| !has.contains(&s.as_str())) {
            return Err(AuthError::InsufficientScope(needs.join(" ")));
        }
        let iss = claims.get("iss").and_then(|s| s.as_str()).unwrap_or("");
        let sub = claims.get("sub").and_then(|s| s.as_str()).unwrap_or("");
        Ok((
            Caller::Signed {
                agent: name.clone(),
                subject: Arc::from(format!("{iss} {sub}")),
            },
            Some(SubjectToken(Arc::from(token))),
        ))
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Throttling of failed authentication. The credential is always checked first (in constant
/// time), so a valid one is never refused here: every local agent shares 127.0.0.1, and one
/// agent's (or an attacker's) failures must not lock the others out, nor their open sessions.
/// What is refused, with 429 and `Retry-After`, are further *failures*:
/// - the same wrong credential from the same address after [`FREE`] failures (a client
///   retrying a revoked or mistyped token backs off), and
/// - any wrong credential from an address that has sent [`SOURCE_FREE`] of them (guessing),
///
/// each for a time that doubles with every failure past the free ones (1 s … 15 min), and is
/// forgotten [`MAX_BLOCK`] after the last failure. What makes guessing hopeless is the credential
/// itself (generated tokens are 256 bits, configured ones at least 16 characters); this table
/// slows well-behaved clients and keeps failures from flooding the log. It is bounded: when
/// full, lapsed entries go first, then the oldest half — never everything at once.
#[derive(Default)]
pub struct Throttle {
    by_credential: std::sync::Mutex<Strikes<(std::net::IpAddr, [u8; 32])>>,
    by_source: std::sync::Mutex<Strikes<std::net::IpAddr>>,
}

/// Failures of one credential from one address before it is refused.
pub const FREE: u32 = 5;
/// Failures of any credentials from one address before further failures are refused.
pub const SOURCE_FREE: u32 = 20;
pub const MAX_BLOCK: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// Entries kept per table.
const CAP: usize = 50_000;

/// Failure counts by key: (count, last failure, refused until).
struct Strikes<K>(std::collections::HashMap<K, (u32, tokio::time::Instant, tokio::time::Instant)>);

impl<K> Default for Strikes<K> {
    fn default() -> Self {
        Strikes(std::collections::HashMap::new())
    }
}

impl<K: std::hash::Hash + Eq + Copy> Strikes<K> {
    fn refused_for(&self, k: &K, now: tokio::time::Instant) -> Option<std::time::Duration> {
        let (_, _, until) = self.0.get(k)?;
        (*until > now).then(|| *until - now)
    }

    fn strike(&mut self, k: K, free: u32, now: tokio::time::Instant) {
        if self.0.len() >= CAP && !self.0.contains_key(&k) {
            self.make_room(now);
        }
        let e = self.0.entry(k).or_insert((0, now, now));
        if now.saturating_duration_since(e.1) > MAX_BLOCK {
            *e = (0, now, now);
        }
        e.0 += 1;
        e.1 = now;
        if e.0 > free {
            let shift = (e.0 - free - 1).min(20);
            e.2 = now + std::time::Duration::from_secs(1u64 << shift).min(MAX_BLOCK);
        }
    }

    fn make_room(&mut self, now: tokio::time::Instant) {
        self.0.retain(|_, (_, last, until)| {
            *until > now || now.saturating_duration_since(*last) <= MAX_BLOCK
        });
        if self.0.len() >= CAP {
            let mut lasts: Vec<tokio::time::Instant> = self.0.values().map(|e| e.1).collect();
            let (_, median, _) = lasts.select_nth_unstable(CAP / 2);
            let median = *median;
            self.0.retain(|_, (_, last, _)| *last > median);
        }
    }
}

impl Throttle {
    /// Records a failed attempt with `credential` (a digest of what was presented) from `ip`.
    /// `Some(wait)`: the attempt is answered 429 (`Retry-After: wait`) instead of 401, and is
    /// not counted again (retrying while refused does not lengthen the wait).
    pub fn failure(
        &self,
        ip: std::net::IpAddr,
        credential: [u8; 32],
    ) -> Option<std::time::Duration> {
        crate::metrics::METRICS.auth_failure();
        let now = tokio::time::Instant::now();
        let mut by_credential = crate::util::lock(&self.by_credential);
        let mut by_source = crate::util::lock(&self.by_source);
        let refused = by_credential
            .refused_for(&(ip, credential), now)
            .max(by_source.refused_for(&ip, now));
        if refused.is_none() {
            by_credential.strike((ip, credential), FREE, now);
            by_source.strike(ip, SOURCE_FREE, now);
        }
        refused
    }
}

/// A digest of the credential a request presented (its `Authorization` value), to count
/// failures per credential without keeping it.
pub fn presented(headers: &HeaderMap) -> [u8; 32] {
    use sha2::Digest;
    let v = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    sha2::Sha256::digest(v).into()
}

/// A fresh random token (256 bits, hex).
pub fn generate_token() -> Option<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn cfg() -> Arc<Config> {
        let text = r#"
            [upstreams.a]
            command = "x"
            [agents.router]
            token_env = "R"
            tools.allow = ["*"]
            [agents.specialist]
            token_sha256 = "SHA"
        "#
        .replace(
            "SHA",
            &TokenDigest::of("specialist-token-123456")
                .0
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        );
        Arc::new(
            Config::parse(&text, &|k| {
                (k == "R").then(|| "router-token-1234567".to_string())
            })
            .unwrap(),
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_refused_per_credential_and_per_source_with_growing_waits() {
        use std::time::Duration;
        let t = Throttle::default();
        let ip: std::net::IpAddr = "10.0.0.7".parse().unwrap();
        let same = [7u8; 32];
        for _ in 0..=FREE {
            assert_eq!(t.failure(ip, same), None);
        }
        // The same credential again: refused, not counted while refused.
        assert_eq!(t.failure(ip, same), Some(Duration::from_secs(1)));
        assert_eq!(t.failure(ip, same), Some(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(t.failure(ip, same), None);
        assert_eq!(t.failure(ip, same), Some(Duration::from_secs(2)), "doubled");
        // Other credentials from the address count towards the source's budget.
        let other = |i: u8| [i; 32];
        // Seven failures so far: fourteen more reach the budget's end.
        for i in 0..(SOURCE_FREE - 7) as u8 {
            assert_eq!(t.failure(ip, other(100 + i)), None, "guess {i}");
        }
        assert_eq!(t.failure(ip, other(1)), None);
        assert!(t.failure(ip, other(2)).is_some(), "guessing is refused");
        // Per address.
        assert_eq!(t.failure("10.0.0.8".parse().unwrap(), same), None);
        // Forgotten long after the last failure.
        tokio::time::advance(MAX_BLOCK + Duration::from_secs(1)).await;
        assert_eq!(t.failure(ip, other(3)), None);
        assert_eq!(t.failure(ip, same), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_table_keeps_recent_entries() {
        use std::time::Duration;
        let mut s: Strikes<u32> = Strikes::default();
        let start = tokio::time::Instant::now();
        s.strike(u32::MAX, 0, start); // refused for 1 s from the start
        for k in 0..CAP as u32 - 1 {
            tokio::time::advance(Duration::from_micros(1)).await;
            s.strike(k, 0, tokio::time::Instant::now());
        }
        assert_eq!(s.0.len(), CAP);
        s.strike(CAP as u32, 0, tokio::time::Instant::now());
        assert!(s.0.len() <= CAP / 2 + 1, "{}", s.0.len());
        let now = tokio::time::Instant::now();
        assert!(
            s.refused_for(&(CAP as u32 - 2), now).is_some(),
            "a recent one is kept"
        );
        assert!(
            s.refused_for(&(CAP as u32), now).is_some(),
            "the new one is kept"
        );
    }

    #[test]
    fn only_the_credential_decides() {
        let auth = Authenticator::new(&cfg(), None, None);
        assert_eq!(
            auth.authenticate(&headers(&[(
                "authorization",
                "Bearer router-token-1234567"
            )])),
            Ok(Caller::Agent("router".into()))
        );
        assert_eq!(
            auth.authenticate(&headers(&[(
                "authorization",
                "bearer specialist-token-123456"
            )])),
            Ok(Caller::Agent("specialist".into()))
        );
        assert_eq!(auth.authenticate(&headers(&[])), Err(AuthError::Missing));
        assert_eq!(
            auth.authenticate(&headers(&[("authorization", "Bearer nope")])),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.authenticate(&headers(&[("authorization", "Basic cm91dGVy")])),
            Err(AuthError::Missing)
        );
        // Identity headers change nothing.
        for spoof in [
            "x-agent-id",
            "x-session-key",
            "x-openclaw-account-id",
            "x-forwarded-user",
        ] {
            assert_eq!(
                auth.authenticate(&headers(&[
                    (spoof, "specialist"),
                    ("authorization", "Bearer router-token-1234567")
                ])),
                Ok(Caller::Agent("router".into()))
            );
            assert_eq!(
                auth.authenticate(&headers(&[(spoof, "router")])),
                Err(AuthError::Missing)
            );
        }
    }
}
