//! `[store]`: a PostgreSQL database shared by a fleet of replicas.

use super::*;

pub(super) const STORE_KEYS: &[&str] = &[
    "url",
    "ca",
    "secret_env",
    "pool_size",
    "heartbeat_secs",
    "lapse_secs",
];

/// The shortest fleet secret accepted (bytes).
const MIN_SECRET: usize = 32;

pub(super) fn store(cx: &mut Ctx, mut t: Table) -> Option<crate::config::StoreSettings> {
    let url = t
        .string(cx, "url")
        .and_then(|u| cx.expand(&t.at("url"), &u));
    let ca = t.string(cx, "ca").map(PathBuf::from);
    let secret_env = t.string(cx, "secret_env");
    let pool_size = t.uint(cx, "pool_size", 1, 64).unwrap_or(4) as usize;
    let heartbeat = t
        .secs(cx, "heartbeat_secs", 300)
        .unwrap_or(Duration::from_secs(5));
    let lapse = t
        .secs(cx, "lapse_secs", 3600)
        .unwrap_or(Duration::from_secs(15));
    let path = t.path.clone();
    t.finish(cx, STORE_KEYS);
    if lapse < heartbeat * 2 {
        cx.err(
            &format!("{path}.lapse_secs"),
            "must be at least twice `heartbeat_secs` (one late heartbeat must not end a replica)",
        );
    }
    let Some(url) = url else {
        cx.err(
            &format!("{path}.url"),
            "missing `url` (postgres://user:${PASSWORD}@host:5432/db?sslmode=require)",
        );
        return None;
    };
    let display = match check_url(&url) {
        Ok(d) => d,
        Err(e) => {
            cx.err(&format!("{path}.url"), e);
            return None;
        }
    };
    let Some(var) = secret_env else {
        cx.err(
            &format!("{path}.secret_env"),
            "missing `secret_env` (the environment variable holding the fleet's shared secret, the same on every replica: it keys the audit chain)",
        );
        return None;
    };
    let secret = match (cx.env)(&var) {
        Some(s) if s.len() >= MIN_SECRET => s,
        Some(_) => {
            cx.err(
                &format!("{path}.secret_env"),
                format!(
                    "`{var}` must hold at least {MIN_SECRET} bytes (e.g. `openssl rand -hex 32`)"
                ),
            );
            return None;
        }
        None => {
            cx.err(
                &format!("{path}.secret_env"),
                format!("environment variable `{var}` is not set"),
            );
            return None;
        }
    };
    Some(crate::config::StoreSettings {
        url: Secret::new(url),
        display,
        ca,
        secret: Secret::new(secret),
        pool_size,
        heartbeat,
        lapse,
    })
}

/// Checks a PostgreSQL URL; returns how logs may name it (`host:port/db`). Error messages never
/// repeat the URL (it holds the password).
fn check_url(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url)
        .map_err(|_| "is not a URL (postgres://user:password@host:5432/db?sslmode=require)")?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err("must be a postgres:// URL".into());
    }
    match parsed
        .query_pairs()
        .find(|(k, _)| k == "sslmode")
        .map(|(_, v)| v.into_owned())
        .as_deref()
    {
        Some("require" | "disable") => {}
        Some("prefer") => return Err("`sslmode=prefer` falls back to plain text when TLS fails: say `sslmode=require` (TLS, the server's certificate verified) or `sslmode=disable`".into()),
        Some(other) => return Err(format!("unknown sslmode `{}` (require or disable)", crate::term::safe(other))),
        None => return Err("name the transport: add `?sslmode=require` (TLS, the server's certificate verified) or `?sslmode=disable` (plain text, e.g. on a private network)".into()),
    }
    let pg: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| format!("is not a usable PostgreSQL URL: {e}"))?;
    if pg.get_hosts().is_empty() {
        return Err("names no host".into());
    }
    let host = parsed.host_str().unwrap_or("?");
    let port = parsed.port().unwrap_or(5432);
    let db = pg.get_dbname().or(pg.get_user()).unwrap_or("?");
    Ok(format!("{host}:{port}/{db}"))
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn urls_name_their_transport_and_never_echo_the_password() {
        assert_eq!(
            check_url("postgres://w:s3cret@db:5433/warden?sslmode=require").as_deref(),
            Ok("db:5433/warden")
        );
        assert!(check_url("postgresql://w:pw@127.0.0.1/warden?sslmode=disable").is_ok());
        for bad in [
            "postgres://w:s3cret@db/warden",
            "postgres://w:s3cret@db/warden?sslmode=prefer",
            "postgres://w:s3cret@db/warden?sslmode=verify-full",
            "mysql://w:s3cret@db/warden?sslmode=require",
            "w:s3cret@db",
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}
