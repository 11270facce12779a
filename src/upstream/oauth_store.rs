//! Signed-in upstream grants (`mcp-warden auth login`), kept sealed in `<state dir>/oauth`: one
//! file per upstream, `<upstream key>.sealed`, mode 0600 in a 0700 directory, replaced
//! atomically on every change (a refresh rotates the refresh token).
//!
//! Sealed with ChaCha20-Poly1305 (ring, already built for rustls) under a 256-bit key derived
//! from a secret kept beside the directory, `<state dir>/oauth-key` (0600, made once, never
//! overwritten; the key is its SHA-256), with a
//! random nonce per write and the upstream key as associated data, so a file copied to another
//! upstream's name does not open. What this protects: the tokens in a copy of the `oauth`
//! directory (a backup, a volume snapshot) without the key beside it; a reader of the whole
//! state directory can open them, as mcp-warden itself must.
//!
//! The upstream key is `Upstream::pin_key()`: the upstream's name and a digest of its URL, so a
//! grant made for one server is never sent to another that took its name.

use std::path::{Path, PathBuf};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"MWO1";
/// The sealing key's file in the state directory.
pub const KEY_FILE: &str = "oauth-key";

/// What a sign-in produced and what keeps it alive.
#[derive(Clone, Serialize, Deserialize)]
pub struct Grant {
    /// The authorization server (its metadata's `issuer`).
    pub issuer: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// The client the tokens were issued to (registered, or mcp-warden's own registration).
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// The upstream, as the tokens' `resource`.
    pub resource: String,
    #[serde(default)]
    pub scope: Option<String>,
    /// Scopes the upstream asked for since (403 `insufficient_scope`): the next sign-in asks
    /// for them too.
    #[serde(default)]
    pub wanted_scope: Option<String>,
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Unix seconds; `None`: unknown (used until refused).
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// Unix seconds when the access token was issued (its lifetime sets the renewal margin).
    pub access_issued_at: u64,
    /// Unix seconds of the sign-in.
    pub signed_in_at: u64,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("resource", &self.resource)
            .field("scope", &self.scope)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Woken whenever this process saves a grant (a sign-in made here, a token renewed): a session
/// waiting for a sign-in looks at once instead of at its next timer (one made by another
/// process is found by that timer).
static SAVED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// See [`SAVED`].
pub fn saved() -> &'static tokio::sync::Notify {
    &SAVED
}

/// The grants of one state directory.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// `dir`: `<state dir>/oauth`.
    pub fn new(dir: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
        }
    }

    /// The sealing key: `oauth-key` in the state directory, made on first use.
    fn key(&self) -> std::io::Result<LessSafeKey> {
        use sha2::Digest;
        let state = self.dir.parent().unwrap_or(Path::new("."));
        crate::state::create_secret(state, KEY_FILE)?;
        let secret = crate::state::read_private(state, KEY_FILE)?
            .filter(|k| k.len() >= 32)
            .ok_or_else(|| std::io::Error::other(format!("{KEY_FILE} is damaged")))?;
        // The 256-bit key: the secret's digest (the file holds it in hex).
        let k = sha2::Sha256::digest(&secret);
        UnboundKey::new(&CHACHA20_POLY1305, &k)
            .map(LessSafeKey::new)
            .map_err(|_| std::io::Error::other("bad key"))
    }

    fn file(upstream_key: &str) -> String {
        format!("{upstream_key}.sealed")
    }

    pub fn load(&self, upstream_key: &str) -> std::io::Result<Option<Grant>> {
        let Some(data) = crate::state::read_private(&self.dir, &Self::file(upstream_key))? else {
            return Ok(None);
        };
        let bad = || {
            std::io::Error::other(format!("{upstream_key}: the sealed grant does not open (another state directory's, or damaged): sign in again"))
        };
        if data.len() < MAGIC.len() + NONCE_LEN || &data[..MAGIC.len()] != MAGIC {
            return Err(bad());
        }
        let (nonce, sealed) = data[MAGIC.len()..].split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let mut buf = sealed.to_vec();
        let plain = self
            .key()?
            .open_in_place(nonce, Aad::from(upstream_key.as_bytes()), &mut buf)
            .map_err(|_| bad())?;
        serde_json::from_slice(plain).map(Some).map_err(|_| bad())
    }

    pub fn save(&self, upstream_key: &str, grant: &Grant) -> std::io::Result<()> {
        let saved = self.seal_and_write(upstream_key, grant);
        if saved.is_ok() {
            SAVED.notify_waiters();
        }
        saved
    }

    fn seal_and_write(&self, upstream_key: &str, grant: &Grant) -> std::io::Result<()> {
        let mut buf = serde_json::to_vec(grant).map_err(std::io::Error::other)?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| std::io::Error::other("no randomness"))?;
        self.key()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(upstream_key.as_bytes()),
                &mut buf,
            )
            .map_err(|_| std::io::Error::other("sealing failed"))?;
        let mut data = Vec::with_capacity(MAGIC.len() + NONCE_LEN + buf.len());
        data.extend_from_slice(MAGIC);
        data.extend_from_slice(&nonce);
        data.extend_from_slice(&buf);
        crate::state::write_atomic(&self.dir, &Self::file(upstream_key), &data).map(|_| ())
    }

    pub fn remove(&self, upstream_key: &str) -> std::io::Result<bool> {
        match std::fs::remove_file(self.dir.join(Self::file(upstream_key))) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Serialises refreshes of one grant across processes sharing the state directory (a
    /// refresh token rotates: two instances using the same one would lose the grant). Waits
    /// for another holder (blocking: call from a blocking thread).
    pub fn lock(&self, upstream_key: &str) -> std::io::Result<crate::state::DirLock> {
        crate::state::lock_exclusive_wait(&self.dir, &format!("{upstream_key}.lock"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            issuer: "https://as.example".into(),
            token_endpoint: "https://as.example/token".into(),
            revocation_endpoint: None,
            client_id: "c".into(),
            client_secret: None,
            resource: "https://mcp.example/mcp".into(),
            scope: Some("read".into()),
            wanted_scope: None,
            access_token: "eyJ-access-token-value".into(),
            refresh_token: Some("refresh-token-value".into()),
            expires_at: Some(1),
            access_issued_at: 0,
            signed_in_at: 0,
        }
    }

    #[test]
    fn grants_are_sealed_private_and_bound_to_their_upstream() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let store = Store::new(&base.path().join("oauth"));
        store.save("linear-0123", &grant()).unwrap();
        let path = base.path().join("oauth/linear-0123.sealed");
        let raw = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("access-token") && !text.contains("refresh-token"));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let back = store.load("linear-0123").unwrap().unwrap();
        assert_eq!(back.access_token, "eyJ-access-token-value");
        assert!(
            !format!("{back:?}").contains("token-value"),
            "Debug hides tokens"
        );
        // Copied under another upstream's name: does not open.
        std::fs::copy(&path, base.path().join("oauth/github-4567.sealed")).unwrap();
        assert!(store.load("github-4567").is_err());
        // Tampered: does not open.
        let mut bad = raw.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        std::fs::write(&path, bad).unwrap();
        assert!(store.load("linear-0123").is_err());
        assert!(store.load("absent").unwrap().is_none());
        assert!(store.remove("linear-0123").unwrap());
        assert!(!store.remove("linear-0123").unwrap());
    }
}
