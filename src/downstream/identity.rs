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
        Authenticator {
            agents,
            // The generated token stands for the single user, who exists only while no agent
            // is named.
            user: generated
                .filter(|_| cfg.agents.is_empty())
                .map(TokenDigest::of),
            open: cfg.agents.is_empty() && cfg.proxy.auth == AuthMode::None,
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
