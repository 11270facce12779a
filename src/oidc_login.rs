//! mcp-warden as an OpenID Connect relying party: a person proves, in their browser, who they
//! are at the identity provider of `[auth.oidc]` (authorization code with PKCE, mcp-warden's
//! browser client), and mcp-warden learns their `iss sub` — the identity its agents' access
//! tokens carry. Used before a person signs mcp-warden in to an upstream for themselves
//! (`per = "user"`), so that only the person whose agent asked can do so.
//!
//! Must not: keep or pass on the provider's tokens (only the verified ID token's subject is
//! used), or accept an ID token that is not for this sign-in (audience, nonce, issuer).

use std::sync::Arc;

use serde_json::Value;

use crate::config::OidcSettings;

/// A sign-in under way, between the provider's URL handed to the browser and its redirect
/// back. It holds the PKCE verifier, so it is never printed.
pub struct Pending {
    pub state: String,
    nonce: String,
    verifier: String,
    redirect: String,
    token_endpoint: String,
    /// The provider promises `iss` in its answers (RFC 9207).
    iss_advertised: bool,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("redirect", &self.redirect)
            .finish_non_exhaustive()
    }
}

/// The provider's authorization URL for this browser (scope `openid`, `state`, `nonce`,
/// PKCE S256), coming back to `redirect`, and what [`finish`] checks the answer against.
pub async fn start(settings: &OidcSettings, redirect: &str) -> Result<(String, Pending), String> {
    let client = settings
        .browser
        .as_ref()
        .ok_or("no browser client (`[auth.oidc] browser_client_id`)")?;
    let http = crate::upstream::oauth::http_client(None)?;
    let (_, meta) = crate::oidc::provider_metadata(&http, &settings.issuer).await?;
    let endpoint = |name: &str| -> Result<String, String> {
        let u = meta
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the identity provider has no {name}"))?;
        crate::config::secure_url(u).map_err(|e| format!("{name} {e}"))?;
        Ok(u.to_string())
    };
    let authorize = endpoint("authorization_endpoint")?;
    let token_endpoint = endpoint("token_endpoint")?;
    use crate::upstream::oauth_login::{pkce, random_b64};
    let (state, nonce) = (random_b64(24)?, random_b64(24)?);
    let (verifier, challenge) = pkce()?;
    let mut url = reqwest::Url::parse(&authorize).map_err(|e| e.to_string())?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client.client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "openid")
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    Ok((
        url.to_string(),
        Pending {
            state,
            nonce,
            verifier,
            redirect: redirect.to_string(),
            token_endpoint,
            iss_advertised: meta.get("authorization_response_iss_parameter_supported")
                == Some(&Value::Bool(true)),
        },
    ))
}

/// Ends the sign-in with the provider's redirect `query`: its `iss` (RFC 9207, when given)
/// and `state` checked, its code exchanged, the ID token verified; returns the person as
/// `iss sub` (the form a [`crate::identity::Caller::Signed`] carries).
pub async fn finish(
    settings: &Arc<OidcSettings>,
    p: Pending,
    query: &str,
) -> Result<String, String> {
    let client = settings
        .browser
        .as_ref()
        .ok_or("no browser client (`[auth.oidc] browser_client_id`)")?;
    let code = crate::upstream::oauth_login::authorization_code(
        query,
        &settings.issuer,
        p.iss_advertised,
        &p.state,
    )?;
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", p.redirect.as_str()),
        ("code_verifier", p.verifier.as_str()),
    ];
    let rb = crate::upstream::oauth::client_auth(
        crate::upstream::oauth::http_client(None)?.post(&p.token_endpoint),
        &mut form,
        &client.client_id,
        client.client_secret.as_ref().map(|s| s.expose()),
        false,
    );
    let body = crate::upstream::oauth::send_for_json(
        rb.header(reqwest::header::ACCEPT, "application/json")
            .form(&form),
        "an ID token",
    )
    .await?;
    let id_token = body
        .get("id_token")
        .and_then(Value::as_str)
        .ok_or("the identity provider's answer has no id_token")?;
    let claims = crate::oidc::Verifier::new(settings.clone())
        .verify_id_token(id_token, &client.client_id, &p.nonce)
        .await
        .map_err(|e| format!("the ID token is refused: {e}"))?;
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    Ok(format!("{iss} {sub}"))
}
