//! `[auth]`: how HTTP callers may prove who they are besides static tokens and client
//! certificates — `[auth.oidc]`, JWT access tokens of an identity provider.

use super::*;

pub(super) const AUTH_KEYS: &[&str] = &["oidc"];
pub(super) const OIDC_KEYS: &[&str] = &[
    "issuer",
    "resource",
    "jwks_uri",
    "algorithms",
    "leeway_secs",
    "scopes",
    "jwks_refresh_secs",
    "browser_client_id",
    "browser_client_secret_env",
];

/// The algorithms `algorithms` may name: asymmetric signatures only (a shared HMAC secret
/// would let anyone who verifies tokens mint them; `none` is no signature).
const ASYMMETRIC: &[(&str, jsonwebtoken::Algorithm)] = {
    use jsonwebtoken::Algorithm::*;
    &[
        ("RS256", RS256),
        ("RS384", RS384),
        ("RS512", RS512),
        ("PS256", PS256),
        ("PS384", PS384),
        ("PS512", PS512),
        ("ES256", ES256),
        ("ES384", ES384),
        ("EdDSA", EdDSA),
    ]
};

/// Whether `u`'s host is this machine (`localhost`, 127.0.0.0/8, ::1).
pub fn loopback_host(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// An authorization server's URL: https, or plain http on loopback only (tests, local IdPs).
pub fn secure_url(s: &str) -> Result<reqwest::Url, &'static str> {
    let u = reqwest::Url::parse(s).map_err(|_| "not an absolute URL")?;
    if u.fragment().is_some() || u.query().is_some() {
        return Err("must have no query or fragment");
    }
    match u.scheme() {
        "https" => Ok(u),
        "http" if loopback_host(&u) => Ok(u),
        "http" => Err("must be https:// (plain http only on loopback)"),
        _ => Err("must be an https:// URL"),
    }
}

pub(super) fn auth(cx: &mut Ctx, mut t: Table) -> Option<crate::config::OidcSettings> {
    let oidc = t.table(cx, "oidc").and_then(|o| oidc(cx, o));
    t.finish(cx, AUTH_KEYS);
    oidc
}

fn oidc(cx: &mut Ctx, mut t: Table) -> Option<crate::config::OidcSettings> {
    let before = cx.errors.len();
    let url = |cx: &mut Ctx, t: &mut Table, key: &'static str, what: &str| {
        let s = t.string(cx, key)?;
        match secure_url(&s) {
            Ok(_) => Some(s),
            Err(e) => {
                cx.err(&t.at(key), format!("{what}: {e}"));
                None
            }
        }
    };
    let issuer = url(cx, &mut t, "issuer", "the identity provider's issuer");
    let resource = t.string(cx, "resource");
    let jwks_uri = url(cx, &mut t, "jwks_uri", "the identity provider's key set");
    let mut algorithms = vec![];
    for (i, name) in t
        .strings(cx, "algorithms")
        .unwrap_or_else(|| vec!["RS256".into(), "ES256".into()])
        .iter()
        .enumerate()
    {
        match ASYMMETRIC.iter().find(|(n, _)| n == name) {
            Some((_, a)) => algorithms.push(*a),
            None => cx.err(
                &format!("{}[{i}]", t.at("algorithms")),
                format!(
                    "`{name}` is not accepted (asymmetric signatures only: {})",
                    ASYMMETRIC
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }
    if algorithms.is_empty() && cx.errors.len() == before {
        cx.err(&t.at("algorithms"), "name at least one algorithm");
    }
    let leeway = Duration::from_secs(t.uint(cx, "leeway_secs", 0, 300).unwrap_or(30));
    let scopes = t.strings(cx, "scopes").unwrap_or_default();
    for (i, s) in scopes.iter().enumerate() {
        if !valid_scope(s) {
            cx.err(&format!("{}[{i}]", t.at("scopes")), "not a valid scope");
        }
    }
    let jwks_refresh = t
        .secs(cx, "jwks_refresh_secs", 86_400)
        .unwrap_or(Duration::from_secs(300));
    let browser_id = t.string(cx, "browser_client_id");
    let browser_secret =
        t.string(cx, "browser_client_secret_env")
            .and_then(|var| match (cx.env)(&var) {
                Some(s) if !s.is_empty() => Some(Secret::new(s)),
                _ => {
                    cx.err(
                        &t.at("browser_client_secret_env"),
                        format!("environment variable `{var}` is not set"),
                    );
                    None
                }
            });
    if browser_secret.is_some() && browser_id.is_none() {
        cx.err(
            &t.at("browser_client_secret_env"),
            "needs `browser_client_id`",
        );
    }
    let browser = browser_id.map(|client_id| crate::config::BrowserClient {
        client_id,
        client_secret: browser_secret,
    });
    let path = t.path.clone();
    t.finish(cx, OIDC_KEYS);
    let Some(issuer) = issuer else {
        if cx.errors.len() == before {
            cx.err(
                &path,
                "missing `issuer` (the identity provider's issuer URL)",
            );
        }
        return None;
    };
    let Some(resource) = resource else {
        cx.err(
            &path,
            "missing `resource` (the URL agents use for this endpoint, e.g. https://warden.example.com/mcp)",
        );
        return None;
    };
    match reqwest::Url::parse(&resource) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.fragment().is_none() => {}
        _ => cx.err(
            &format!("{path}.resource"),
            "must be the absolute http(s) URL agents use for this endpoint, without a fragment",
        ),
    }
    (cx.errors.len() == before).then_some(crate::config::OidcSettings {
        issuer,
        resource,
        jwks_uri,
        algorithms,
        leeway,
        scopes,
        jwks_refresh,
        browser,
    })
}

/// RFC 6749 §3.3: a scope token is printable ASCII without space, `"` or `\`.
pub(super) fn valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// An agent's `match = { claim = "value" | ["values"] }`.
pub(super) fn claim_matches(cx: &mut Ctx, t: &mut Table) -> Vec<crate::config::ClaimMatch> {
    let path = t.at("match");
    let Some(v) = t.get("match") else {
        return vec![];
    };
    let toml::Value::Table(m) = v else {
        cx.err(
            &path,
            format!(
                "expected a table like {{ sub = \"…\" }}, found {}",
                type_name(v)
            ),
        );
        return vec![];
    };
    if m.is_empty() {
        cx.err(
            &path,
            "name at least one claim (an empty match would take every token)",
        );
    }
    let mut out = vec![];
    for (claim, v) in m {
        let p = join(&path, claim);
        if claim.is_empty() || claim.split('.').any(str::is_empty) {
            cx.err(
                &p,
                "not a claim name (use dots for nested claims: realm_access.roles)",
            );
            continue;
        }
        let values = match v {
            toml::Value::String(s) => vec![s.clone()],
            toml::Value::Array(items) => items
                .iter()
                .filter_map(|i| match i {
                    toml::Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => vec![],
        };
        let all_strings = matches!(v, toml::Value::String(_))
            || matches!(v, toml::Value::Array(a) if a.len() == values.len());
        if !all_strings || values.is_empty() {
            cx.err(&p, "expected a string or a non-empty array of strings");
            continue;
        }
        out.push(crate::config::ClaimMatch {
            claim: claim.clone(),
            values,
        });
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::config::Config;

    const BASE: &str = r#"
        [upstreams.a]
        command = "x"
    "#;

    fn errors(extra: &str) -> Vec<String> {
        match Config::parse(&format!("{BASE}{extra}"), &|_| None) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_sign_in_per_user_needs_the_browser_client_and_a_sign_in_grant() {
        let up = "[upstreams.s]\nurl = \"https://s.example.com/mcp\"\n";
        let e = errors(&format!("{up}oauth = {{ per = \"user\" }}\n"));
        assert!(
            e.iter().any(|e| e.starts_with("upstreams.s.oauth.per:")
                && e.contains("browser_client_id")),
            "{e:?}"
        );
        let e = errors(&format!(
            "{up}oauth = {{ grant = \"client_credentials\", client_id = \"w\", per = \"user\" }}\n"
        ));
        assert!(
            e.iter()
                .any(|e| e.contains("only a sign-in (`authorization_code`) is made per user")),
            "{e:?}"
        );
        let oidc = "[auth.oidc]\nissuer = \"https://idp\"\nresource = \"https://w/mcp\"\n";
        let e = errors(&format!(
            "{up}oauth = {{ per = \"user\" }}\n{oidc}browser_client_secret_env = \"NOPE\"\n[agents.a]\nmatch = {{ sub = \"x\" }}\n"
        ));
        assert!(
            e.iter()
                .any(|e| e.starts_with("auth.oidc.browser_client_secret_env:")),
            "{e:?}"
        );
        let e = errors(&format!(
            "{up}oauth = {{ per = \"user\" }}\n{oidc}browser_client_id = \"w\"\n[agents.a]\nmatch = {{ sub = \"x\" }}\n"
        ));
        assert_eq!(e, Vec::<String>::new());
    }

    #[test]
    fn a_sound_oidc_section_parses_with_its_defaults() {
        let cfg = Config::parse(
            &format!(
                "{BASE}{}",
                r#"
                [auth.oidc]
                issuer = "https://idp.example.com/realms/agents"
                resource = "https://warden.example.com/mcp"
                scopes = ["mcp"]
                [agents.router]
                match = { client_id = "router", groups = ["eng", "ops"] }
                scopes = ["tools:write"]
                "#
            ),
            &|_| None,
        )
        .unwrap();
        let o = cfg.oidc.as_ref().unwrap();
        assert_eq!(o.issuer, "https://idp.example.com/realms/agents");
        assert_eq!(
            o.algorithms,
            [
                jsonwebtoken::Algorithm::RS256,
                jsonwebtoken::Algorithm::ES256
            ]
        );
        assert_eq!(o.leeway.as_secs(), 30);
        assert_eq!(o.jwks_refresh.as_secs(), 300);
        let a = &cfg.agents[0];
        assert_eq!(a.claims.len(), 2);
        assert_eq!(a.claims[1].values, ["eng", "ops"]);
        assert_eq!(a.scopes, ["tools:write"]);
    }

    #[test]
    fn unsafe_or_incomplete_oidc_settings_are_refused_with_their_key() {
        let e = errors(
            r#"
            [auth.oidc]
            issuer = "http://idp.example.com"
            resource = "https://w/mcp"
            algorithms = ["HS256", "none", "ES256"]
            [agents.a]
            match = { sub = "x" }
            "#,
        );
        assert!(
            e.iter()
                .any(|e| e.starts_with("auth.oidc.issuer:") && e.contains("https")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|e| e.starts_with("auth.oidc.algorithms[0]:")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|e| e.starts_with("auth.oidc.algorithms[1]:")),
            "{e:?}"
        );
        let e =
            errors("[auth.oidc]\nissuer = \"https://idp\"\n[agents.a]\nmatch = { sub = \"x\" }\n");
        assert!(e.iter().any(|e| e.contains("missing `resource`")), "{e:?}");
        let e = errors("[agents.a]\nmatch = { sub = \"x\" }\nscopes = [\"a\"]\n");
        assert!(
            e.iter()
                .any(|e| e.starts_with("agents.a.match: needs [auth.oidc]")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.starts_with("agents.a.scopes: needs [auth.oidc]")),
            "{e:?}"
        );
        let oidc = "[auth.oidc]\nissuer = \"https://idp\"\nresource = \"https://w/mcp\"\n";
        let e = errors(&format!("{oidc}[agents.a]\ntoken_env = \"T\"\n"));
        assert!(
            e.iter()
                .any(|e| e.starts_with("auth.oidc: no agent has a `match`")),
            "{e:?}"
        );
        let e = errors(&format!(
            "{oidc}[agents.a]\nmatch = {{ sub = \"x\" }}\n[agents.b]\nmatch = {{ sub = \"x\" }}\n"
        ));
        assert!(
            e.iter()
                .any(|e| e.starts_with("agents.b.match: is the same as agent `a`")),
            "{e:?}"
        );
        let e = errors(&format!("{oidc}[agents.a]\nmatch = {{}}\n"));
        assert!(
            e.iter()
                .any(|e| e.starts_with("agents.a.match: name at least one claim")),
            "{e:?}"
        );
        let e = errors(&format!("{oidc}[agents.a]\nmatch = {{ sub = 3 }}\n"));
        assert!(
            e.iter().any(|e| e.starts_with("agents.a.match.sub:")),
            "{e:?}"
        );
        let e = errors(&format!(
            "{oidc}leeway_sec = 3\n[agents.a]\nmatch = {{ sub = \"x\" }}\n"
        ));
        assert!(
            e.iter().any(|e| e.contains("did you mean `leeway_secs`")),
            "{e:?}"
        );
        let e = errors(
            "[upstreams.b]\nurl = \"https://b.example/mcp\"\noauth = { grant = \"token_exchange\", client_id = \"w\" }\n",
        );
        assert!(
            e.iter().any(|e| e.contains("needs `client_secret_env`")),
            "{e:?}"
        );
        let e = Config::parse(
            &format!("{BASE}[upstreams.b]\nurl = \"https://b.example/mcp\"\noauth = {{ grant = \"token_exchange\", client_id = \"w\", client_secret_env = \"S\" }}\n"),
            &|k| (k == "S").then(|| "secret".to_string()),
        )
        .unwrap_err()
        .0
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>();
        assert!(
            e.iter()
                .any(|e| e.starts_with("upstreams.b.oauth: token exchange")
                    && e.contains("needs [auth.oidc]")),
            "{e:?}"
        );
        let e = errors(
            "[upstreams.b]\nurl = \"https://b.example/mcp\"\nshared = true\noauth = { per = \"agent\" }\n",
        );
        assert!(
            e.iter().any(|e| e.contains("not with `shared = true`")),
            "{e:?}"
        );
    }
}
