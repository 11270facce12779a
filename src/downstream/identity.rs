//! Who is calling, over HTTP: decided by the credential alone. A bearer token is hashed and
//! compared in constant time against every configured agent's digest; no header (`x-agent-id`,
//! `x-session-key`, …) can name or change the caller. Tokens are never logged.

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use crate::config::{AuthMode, Config, TokenDigest};

/// The caller, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A named agent (by name, which stays meaningful across config reloads).
    Agent(Arc<str>),
    /// The single-user case: no agents are named; the caller sees every upstream.
    User,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer …` at all.
    Missing,
    /// A credential that matches nobody.
    Invalid,
}

pub struct Authenticator {
    agents: Vec<(TokenDigest, Arc<str>)>,
    /// (certificate DNS name, agent) for mTLS identities.
    cert_names: Vec<(String, Arc<str>)>,
    /// The token generated at start for the single-user case.
    user: Option<TokenDigest>,
    open: bool,
}

impl Authenticator {
    /// `generated`: the single-user token (when no agents are named and auth is required).
    pub fn new(cfg: &Arc<Config>, generated: Option<&str>) -> Authenticator {
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
        }
    }

    /// Authenticates by bearer token and, over mTLS, by the verified client certificate. When
    /// both are present they must name the same agent; a certificate that names no agent
    /// identifies nobody (the token then decides).
    pub fn authenticate_peer(
        &self,
        headers: &HeaderMap,
        cert: Option<&rustls_pki_types::CertificateDer<'_>>,
    ) -> Result<Caller, AuthError> {
        let by_cert = cert.and_then(|c| {
            self.cert_names
                .iter()
                .find(|(n, _)| crate::tls::cert_matches(c, n))
                .map(|(_, a)| Caller::Agent(a.clone()))
        });
        let by_token = self.authenticate(headers);
        match (by_cert, by_token) {
            (Some(c), Ok(t)) if c == t => Ok(c),
            (Some(_), Ok(_)) => Err(AuthError::Invalid),
            (Some(c), Err(AuthError::Missing)) => Ok(c),
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

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Per-source-address throttling of failed authentication: after `FREE` failures, each further
/// failure doubles the time the address is refused (1 s … 15 min). A success clears it.
#[derive(Default)]
pub struct Throttle {
    map: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (u32, tokio::time::Instant)>>,
    /// Failed attempts since start (for metrics).
    pub failures_total: std::sync::atomic::AtomicU64,
}

const FREE: u32 = 5;
const MAX_BLOCK: std::time::Duration = std::time::Duration::from_secs(15 * 60);

impl Throttle {
    /// How much longer `ip` is refused, if it is.
    pub fn blocked(&self, ip: std::net::IpAddr) -> Option<std::time::Duration> {
        let m = crate::upstream::lock(&self.map);
        let (_, until) = m.get(&ip)?;
        let now = tokio::time::Instant::now();
        (*until > now).then(|| *until - now)
    }

    pub fn failure(&self, ip: std::net::IpAddr) {
        self.failures_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut m = crate::upstream::lock(&self.map);
        if m.len() > 100_000 {
            // Bounded memory under a spray of addresses: forget the oldest state.
            m.clear();
        }
        let now = tokio::time::Instant::now();
        let e = m.entry(ip).or_insert((0, now));
        e.0 += 1;
        if e.0 > FREE {
            let shift = (e.0 - FREE - 1).min(20);
            let wait = std::time::Duration::from_secs(1u64 << shift).min(MAX_BLOCK);
            e.1 = now + wait;
        }
    }

    pub fn success(&self, ip: std::net::IpAddr) {
        crate::upstream::lock(&self.map).remove(&ip);
    }
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
    async fn failures_are_throttled_with_growing_backoff_and_success_clears() {
        let t = Throttle::default();
        let ip: std::net::IpAddr = "10.0.0.7".parse().unwrap();
        for _ in 0..FREE {
            t.failure(ip);
            assert!(t.blocked(ip).is_none());
        }
        t.failure(ip);
        assert_eq!(t.blocked(ip), Some(std::time::Duration::from_secs(1)));
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        assert!(t.blocked(ip).is_none());
        t.failure(ip);
        assert_eq!(t.blocked(ip), Some(std::time::Duration::from_secs(2)));
        assert!(
            t.blocked("10.0.0.8".parse().unwrap()).is_none(),
            "per address"
        );
        t.success(ip);
        assert!(t.blocked(ip).is_none());
        assert_eq!(
            t.failures_total.load(std::sync::atomic::Ordering::Relaxed),
            7
        );
    }

    #[test]
    fn only_the_credential_decides() {
        let auth = Authenticator::new(&cfg(), None);
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
