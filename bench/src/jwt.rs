//! `A.proxied-http-jwt`: the agent signs in with an identity provider's JWT access token
//! (`[auth.oidc]`) instead of a static bearer token. The bench plays the identity provider: an
//! ES256 key made for the run, its key set served on loopback, one token signed for the run's
//! endpoint. mcp-warden verifies the signature once and then serves the token from memory; this
//! run shows what that path costs per call next to `A.proxied-http`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The identity provider of one run: its key set served until dropped.
pub struct Issuer {
    pub url: String,
    key: EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Issuer {
    pub async fn start() -> Result<Issuer, String> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "cannot make an ES256 key".to_owned())?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| "cannot load the ES256 key".to_owned())?;
        // The public key is the uncompressed point 0x04 || X || Y.
        let point = key.public_key().as_ref();
        let (x, y) = (
            point.get(1..33).ok_or("short public key")?,
            point.get(33..65).ok_or("short public key")?,
        );
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "bench",
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        }]})
        .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("key set server: {e}"))?;
        let url = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        // Every request gets the key set (mcp-warden asks only for it: `jwks_uri` is set).
        let server = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let body = jwks.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(body.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Ok(Issuer {
            url,
            key,
            rng,
            server,
        })
    }

    /// An access token for `resource`, subject `bench`, valid for an hour.
    pub fn token(&self, resource: &str) -> Result<String, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let header = serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": "bench"});
        let claims = serde_json::json!({
            "iss": self.url, "sub": "bench", "aud": resource,
            "iat": now, "nbf": now, "exp": now + 3600, "scope": "mcp",
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| "cannot sign the token".to_owned())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig.as_ref())
        ))
    }

    /// The `[auth.oidc]` section and the agent its tokens identify.
    pub fn config(&self, resource: &str) -> String {
        format!(
            "[auth.oidc]\nissuer = {}\nresource = {}\njwks_uri = {}\nalgorithms = [\"ES256\"]\n\n[agents.bench]\nmatch = {{ sub = \"bench\" }}\ntools.allow = [\"*\"]\n",
            crate::toml_str(&self.url),
            crate::toml_str(resource),
            crate::toml_str(&format!("{}/jwks", self.url)),
        )
    }
}
