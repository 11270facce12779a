//! mcp-warden as an OAuth 2.1 resource server (`[auth.oidc]`), against a real authorization
//! server on loopback (npm `oidc-provider`, tests/node/oauth-as.mjs): tokens it issues identify
//! agents by their claims; every other token is refused the way the MCP authorization
//! specification says; the protected resource metadata and the challenges lead a client to the
//! provider.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// The test authorization server (a real `oidc-provider`), on a fixed port so that it can be
/// restarted at the same issuer with other keys.
struct AuthServer {
    child: Child,
    issuer: String,
    port: u16,
}

impl AuthServer {
    fn start(port: u16, keys: &Path) -> AuthServer {
        Self::start_with(port, keys, &[])
    }

    fn start_with(port: u16, keys: &Path, env: &[(&str, &str)]) -> AuthServer {
        let (child, issuer) = spawn_listening(
            Command::new("node")
                .arg(node_dir().join("oauth-as.mjs"))
                .env("PATH", node22_path())
                .env("PORT", port.to_string())
                .env("KEYS", keys)
                .env("USER", "alice")
                .env("GROUPS", "eng")
                .envs(env.iter().copied()),
        );
        let port = port_of(&issuer).parse().expect("port");
        AuthServer {
            child,
            issuer,
            port,
        }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// An access token of a client-credentials client for `resource` (RFC 8707).
    fn client_token(&self, client: &str, secret: &str, resource: &str, scope: &str) -> String {
        let r = http()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", scope),
            ])
            .send()
            .expect("token request");
        let status = r.status();
        let v: Value = serde_json::from_str(&r.text().expect("token response")).expect("JSON");
        assert_eq!(status, 200, "{v}");
        v["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// A token signed with the server's current key: claims and header as the test says.
    /// An access token of person `sub` (group eng, scope mcp) for `resource`, valid 5 minutes.
    fn person(&self, resource: &str, sub: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        self.sign(
            json!({"iss": self.issuer, "aud": resource, "sub": sub, "groups": ["eng"],
                   "scope": "mcp", "iat": now, "exp": now + 300}),
            json!({}),
        )
    }

    fn sign(&self, claims: Value, header: Value) -> String {
        let v = http()
            .post(format!("{}/test/sign", self.issuer))
            .header("content-type", "application/json")
            .body(json!({"claims": claims, "header": header}).to_string())
            .send()
            .expect("sign")
            .text()
            .expect("signed");
        let v: Value = serde_json::from_str(&v).expect("JSON");
        v["token"].as_str().expect("token").to_string()
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

const LEGACY_TOKEN: &str = "legacy-static-token-0123456789";

/// mcp-warden on `port` trusting `issuer`: router and specialist known by their client ids
/// (the specialist also needs `tools:write`), alice by her subject, legacy by a static token.
fn warden(issuer: &str, port: u16) -> HttpProxy {
    let config = format!(
        r#"{demo}
[auth.oidc]
issuer = "{issuer}"
resource = "http://127.0.0.1:{port}/mcp"
scopes = ["mcp"]
jwks_refresh_secs = 1
leeway_secs = 0

[agents.router]
match = {{ client_id = "agent-router" }}
tools.allow = ["echo"]

[agents.specialist]
match = {{ client_id = "agent-specialist" }}
scopes = ["tools:write"]
tools.allow = ["*"]

[agents.alice]
match = {{ sub = "alice", groups = ["eng"] }}
tools.allow = ["echo", "add"]

[agents.legacy]
token_env = "LEGACY_TOKEN"
tools.allow = ["add"]
"#,
        demo = demo_upstream("demo", &[]),
    );
    HttpProxy::start_raw_listen(
        &config,
        &[("LEGACY_TOKEN", LEGACY_TOKEN)],
        &format!("127.0.0.1:{port}"),
    )
}

/// POSTs `body` with `token` (and any extra headers); status, `WWW-Authenticate` and body.
fn call(
    url: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut rb = http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    for (k, v) in extra {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().expect("POST");
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    (status, challenge, r.text().unwrap_or_default())
}

/// The tools a caller with `token` is shown (a 2025-11-25 session over raw HTTP).
fn tools_of(url: &str, token: &str, extra: &[(&str, &str)]) -> Vec<String> {
    let sid = raw_session(url, token);
    assert!(!sid.is_empty(), "initialize");
    let mut rb = http()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25");
    for (k, v) in extra {
        rb = rb.header(*k, *v);
    }
    let r = rb
        .body(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
        .send()
        .expect("tools/list");
    let mut names = names_in(&messages(r).pop().expect("answer"));
    names.sort();
    names
}

#[test]
fn tokens_of_the_identity_provider_identify_agents_by_their_claims() {
    let dir = tempfile::tempdir().unwrap();
    let auth = AuthServer::start(0, &dir.path().join("keys.json"));
    let port = free_port();
    let w = warden(&auth.issuer, port);
    let url = w.url.clone();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    assert_eq!(url, resource);

    // The metadata, at the resource's path and at the bare well-known name, unauthenticated.
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let r = http()
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let m: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
        assert_eq!(m["resource"], resource.as_str());
        assert_eq!(m["authorization_servers"], json!([auth.issuer]));
        assert_eq!(m["scopes_supported"], json!(["mcp"]));
        assert_eq!(m["bearer_methods_supported"], json!(["header"]));
    }
    let r = http()
        .get(format!(
            "http://127.0.0.1:{port}/.well-known/oauth-protected-resource/other"
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);

    // No token: 401 pointing at the metadata, with the scope to ask for.
    let metadata = format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp");
    let (status, challenge, _) = call(&url, None, &[], INIT);
    assert_eq!(status, 401);
    assert!(
        challenge.starts_with("Bearer ")
            && challenge.contains(&format!(r#"resource_metadata="{metadata}""#))
            && challenge.contains(r#"scope="mcp""#)
            && !challenge.contains("error="),
        "{challenge}"
    );

    // Client-credentials tokens for this endpoint: each agent sees its own tools.
    let router = auth.client_token("agent-router", "router-secret-0123456789", &resource, "mcp");
    let specialist = auth.client_token(
        "agent-specialist",
        "specialist-secret-0123456789",
        &resource,
        "mcp tools:write",
    );
    assert_eq!(tools_of(&url, &router, &[]), ["echo"]);
    let all = tools_of(&url, &specialist, &[]);
    assert!(
        all.len() > 3 && all.contains(&"send_email".to_string()),
        "{all:?}"
    );
    // Static tokens keep working beside them.
    assert_eq!(tools_of(&url, LEGACY_TOKEN, &[]), ["add"]);
    // Identity headers change nothing.
    assert_eq!(
        tools_of(
            &url,
            &router,
            &[("x-agent-id", "specialist"), ("x-forwarded-user", "alice")]
        ),
        ["echo"]
    );
    // A user's token (sub and groups): a hand-made one with the provider's real key.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let user = |extra: Value| {
        let mut claims = json!({
            "iss": auth.issuer, "aud": resource, "sub": "alice", "groups": ["eng"],
            "scope": "mcp", "iat": now, "exp": now + 300,
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        auth.sign(claims, json!({}))
    };
    assert_eq!(tools_of(&url, &user(json!({})), &[]), ["add", "echo"]);

    // A session belongs to the agent that opened it, whichever token it later presents.
    let sid = raw_session(&url, &router);
    let (status, _, _) = call(
        &url,
        Some(&specialist),
        &[
            ("mcp-session-id", &sid),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    );
    assert_eq!(status, 404, "another agent's session is not found");

    // Refused with 401 invalid_token, each for its reason.
    let other_resource = auth.client_token(
        "agent-router",
        "router-secret-0123456789",
        "http://127.0.0.1:1/elsewhere",
        "mcp",
    );
    let b64 = |v: Value| {
        use std::fmt::Write;
        let bytes = v.to_string().into_bytes();
        // base64url without padding, by hand: the test needs no base64 crate.
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for c in bytes.chunks(3) {
            let n = c
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
            for i in 0..=c.len() {
                out.write_char(A[(n >> (18 - 6 * i) & 63) as usize] as char)
                    .unwrap();
            }
        }
        out
    };
    let good = user(json!({}));
    let payload = good.split('.').nth(1).unwrap();
    let refused = [
        ("for another resource", other_resource),
        ("expired", user(json!({"exp": now - 3600, "iat": now - 7200}))),
        ("not yet valid", user(json!({"nbf": now + 3600}))),
        ("from another issuer", user(json!({"iss": "http://127.0.0.1:1"}))),
        ("without an audience", user(json!({"aud": null}))),
        ("without an expiry", user(json!({"exp": null}))),
        ("of an unknown key", auth.sign(
            json!({"iss": auth.issuer, "aud": resource, "sub": "alice", "groups": ["eng"], "scope": "mcp", "exp": now + 300}),
            json!({"kid": "not-a-published-key"}),
        )),
        ("unsigned (alg none)", format!("{}.{payload}.", b64(json!({"alg": "none", "typ": "at+jwt"})))),
        (
            "HMAC-signed",
            format!("{}.{payload}.{}", b64(json!({"alg": "HS256"})), good.split('.').nth(2).unwrap()),
        ),
        ("with a forged signature", {
            let mut parts: Vec<String> = good.split('.').map(String::from).collect();
            parts[1] = b64(json!({"iss": auth.issuer, "aud": resource, "sub": "alice", "groups": ["eng"], "scope": "mcp admin", "exp": now + 300}));
            parts.join(".")
        }),
        ("not a JWT", "definitely-not-a-token-at-all".to_string()),
    ];
    for (why, token) in &refused {
        let (status, challenge, body) = call(&url, Some(token), &[], INIT);
        assert_eq!(status, 401, "{why}: {body}");
        assert!(
            challenge.contains(r#"error="invalid_token""#)
                && challenge.contains(&format!(r#"resource_metadata="{metadata}""#)),
            "{why}: {challenge}"
        );
    }

    // A token accepted (and so remembered as verified) stops working when it expires.
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 3;
    let brief = user(json!({"exp": soon}));
    assert_eq!(call(&url, Some(&brief), &[], INIT).0, 200);
    assert_eq!(call(&url, Some(&brief), &[], INIT).0, 200);
    eventually(
        Duration::from_secs(10),
        "the expired token is refused",
        || {
            std::thread::sleep(Duration::from_millis(200)); // pacing, not a condition
            call(&url, Some(&brief), &[], INIT).0 == 401
        },
    );

    // Valid, but lacking a scope: 403 insufficient_scope naming every scope to ask for.
    let narrow = auth.client_token(
        "agent-specialist",
        "specialist-secret-0123456789",
        &resource,
        "mcp",
    );
    let (status, challenge, _) = call(&url, Some(&narrow), &[], INIT);
    assert_eq!(status, 403);
    assert!(
        challenge.contains(r#"error="insufficient_scope""#)
            && challenge.contains(r#"scope="mcp tools:write""#),
        "{challenge}"
    );
    let (status, challenge, _) = call(
        &url,
        Some(&user(json!({"scope": "tools:write"}))),
        &[],
        INIT,
    );
    assert_eq!(status, 403, "the endpoint's own scope is needed too");
    assert!(challenge.contains(r#"scope="mcp""#), "{challenge}");
    // Valid, but naming no agent (deny by default): 403, no scope would help.
    let nobody = auth.client_token("warden", "warden-secret-0123456789", &resource, "mcp");
    let (status, challenge, body) = call(&url, Some(&nobody), &[], INIT);
    assert_eq!(status, 403, "{body}");
    assert!(!challenge.contains("insufficient_scope"), "{challenge}");
    assert!(body.contains("not an agent"), "{body}");
    let (status, _, _) = call(&url, Some(&user(json!({"groups": ["sales"]}))), &[], INIT);
    assert_eq!(status, 403, "every claim of the match must hold");

    // No token reaches the log.
    let logs = w.logs();
    for t in [&router, &specialist, &nobody, &good, &narrow] {
        let sig = t.rsplit('.').next().unwrap();
        assert!(!logs.contains(sig), "a token's signature is in the log");
    }
    assert!(
        logs.contains("access token refused"),
        "refusals are logged by reason"
    );
}

#[test]
fn rotated_keys_are_fetched_and_withdrawn_keys_refused() {
    let dir = tempfile::tempdir().unwrap();
    let old_keys = dir.path().join("old.json");
    let mut auth = AuthServer::start(0, &old_keys);
    let port = free_port();
    let w = warden(&auth.issuer, port);
    let url = w.url.clone();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let old = auth.client_token("agent-router", "router-secret-0123456789", &resource, "mcp");
    assert_eq!(tools_of(&url, &old, &[]), ["echo"]);

    // The provider rotates: a new signing key, the old one still published.
    auth.stop();
    let new_keys = dir.path().join("new.json");
    let mut fresh = AuthServer::start(0, &new_keys); // makes the new key
    fresh.stop();
    let read = |p: &Path| -> Vec<Value> {
        let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        v["keys"].as_array().unwrap().clone()
    };
    let both = dir.path().join("both.json");
    let mut keys = read(&new_keys);
    keys.extend(read(&old_keys));
    std::fs::write(&both, json!({ "keys": keys }).to_string()).unwrap();
    let mut auth = AuthServer::start(auth.port, &both);
    let new = auth.client_token("agent-router", "router-secret-0123456789", &resource, "mcp");
    assert_ne!(
        new.split('.').next(),
        old.split('.').next(),
        "signed with another key id"
    );
    // A key id mcp-warden has not seen: fetched again (at most once per refresh period).
    eventually(Duration::from_secs(15), "the new key is fetched", || {
        call(&url, Some(&new), &[], INIT).0 == 200
    });
    assert_eq!(
        call(&url, Some(&old), &[], INIT).0,
        200,
        "the old key is still published"
    );

    // The old key is withdrawn: its tokens are refused once the set is fetched again.
    auth.stop();
    let mut auth = AuthServer::start(auth.port, &new_keys);
    eventually(
        Duration::from_secs(15),
        "the withdrawn key is refused",
        || call(&url, Some(&old), &[], INIT).0 == 401,
    );
    assert_eq!(call(&url, Some(&new), &[], INIT).0, 200);

    // The provider down: the keys known keep working; tokens of unknown keys are refused.
    auth.stop();
    assert_eq!(call(&url, Some(&new), &[], INIT).0, 200);
    assert_eq!(call(&url, Some(&old), &[], INIT).0, 401);
}

/// The TypeScript SDK's own OAuth client, given only mcp-warden's URL, finds the provider
/// through the 401 and the metadata, registers, signs alice in (authorization code + PKCE, the
/// `resource` of this endpoint), steps up on 403 to the scope alice's agent needs, and gets
/// alice's tools.
#[test]
fn an_sdk_client_signs_in_by_itself_and_steps_up() {
    let dir = tempfile::tempdir().unwrap();
    let auth = AuthServer::start(0, &dir.path().join("keys.json"));
    let port = free_port();
    let config = format!(
        r#"{demo}
[auth.oidc]
issuer = "{issuer}"
resource = "http://127.0.0.1:{port}/mcp"
scopes = ["mcp"]

[agents.alice]
match = {{ sub = "alice", groups = ["eng"] }}
scopes = ["tools:write"]
tools.allow = ["echo", "add"]

[agents.bob]
match = {{ sub = "bob" }}
tools.allow = ["image"]
"#,
        demo = demo_upstream("demo", &[]),
        issuer = auth.issuer,
    );
    let w = HttpProxy::start_raw_listen(&config, &[], &format!("127.0.0.1:{port}"));
    let run = |login: &str, client: Option<&str>| {
        let mut cmd = Command::new("node");
        cmd.arg(node_dir().join("oauth-client.mjs"))
            .arg(&w.url)
            .env("PATH", node22_path())
            .env("LOGIN_HINT", login);
        if let Some(c) = client {
            cmd.env("CLIENT_ID", c);
        }
        json_output(&mut cmd)
    };
    // Alice, with a client registered beforehand (see oauth-client.mjs for why).
    let alice = run("alice", Some("warden-cli"));
    assert_eq!(alice["tools"], json!(["add", "echo"]), "{alice}");
    let asked: Vec<&str> = alice["authorizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["scope"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(asked, ["mcp", "mcp tools:write"], "{alice}");
    for a in alice["authorizations"].as_array().unwrap() {
        assert_eq!(a["resource"], w.url.as_str(), "{alice}");
        assert_eq!(a["code_challenge_method"], "S256", "{alice}");
    }
    // Bob's client registers itself (RFC 7591) and signs bob in: his tools, no step-up (his
    // agent needs none).
    let bob = run("bob", None);
    assert_eq!(bob["tools"], json!(["image"]), "{bob}");
    assert_eq!(bob["authorizations"].as_array().unwrap().len(), 1, "{bob}");
    assert_eq!(bob["steps"][0], "registered", "{bob}");
}

/// The OAuth-protected upstream (the Python SDK's auth support, tests/python/oauth_server.py)
/// trusting `issuer`, on `port` ("0": any), logging a digest of each token it receives to
/// `token_log`: the child and its MCP URL.
fn protected_upstream(issuer: &str, port: &str, token_log: &Path) -> (Kill, String) {
    let (child, url) = spawn_listening(
        Command::new(python_venv_bin("python"))
            .arg(root().join("tests/python/oauth_server.py"))
            .args(["--issuer", issuer, "--port", port])
            .env("TOKEN_LOG", token_log),
    );
    (Kill(child), url)
}

/// The digests of the tokens the protected upstream accepted, from its token log.
fn accepted_tokens(token_log: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_to_string(token_log)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.ends_with(" - -"))
        .filter_map(|l| l.split(' ').next().map(String::from))
        .collect()
}

/// The first 12 hex digits of a token's SHA-256: what the OAuth-protected fixture logs.
fn digest12(token: &str) -> String {
    sha(token)[..12].to_string()
}

/// A token's SHA-256 in hex, as a config's `token_sha256` takes it (the operator's commands
/// read the same config, without the server's environment).
fn sha(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Calls `whoami` on the OAuth-protected upstream through mcp-warden: the text it returned.
fn whoami(url: &str, token: &str, sid: &str, id: u32) -> String {
    call_tool(url, token, sid, id, "whoami")
}

/// The events of the instance's audit log (`mcp-warden audit list`), with the environment its
/// config needs.
fn audit_events(dir: &Path, env: &[(&str, &str)]) -> Vec<Value> {
    let o = operator_cli_env(dir, &["audit", "list"], env);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .collect()
}

/// The tools/list answer in session `sid`.
fn list_tools(url: &str, token: &str, sid: &str) -> Value {
    let raw = http()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-11-25")
        .body(r#"{"jsonrpc":"2.0","id":"list","method":"tools/list"}"#)
        .send()
        .unwrap()
        .text()
        .unwrap();
    json_of_answer(&raw)
}

/// Calls `tool` (no arguments) in session `sid`; the raw answer, with no JWT in it.
fn call_tool(url: &str, token: &str, sid: &str, id: u32, tool: &str) -> String {
    let r = http()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-11-25")
        .body(format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
        ))
        .send()
        .unwrap();
    let raw = r.text().unwrap();
    assert!(
        !raw.contains("eyJ"),
        "no JWT in any byte the agent gets: {raw}"
    );
    raw
}

/// An OAuth-protected MCP server (the Python SDK's auth support) behind mcp-warden, which signs
/// in as its own client (client credentials): the agent calls it without knowing; tokens are
/// renewed before they expire; a token the upstream stops accepting is replaced at once; the
/// agent's own credential never reaches the upstream; a refused client is a clear error.
#[test]
fn warden_signs_in_to_an_oauth_protected_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    // Short-lived tokens: a run of calls spans several.
    let mut auth = AuthServer::start_with(0, &keys, &[("AT_TTL", "3")]);
    let token_log = dir.path().join("tokens.log");
    let issuer = auth.issuer.clone();
    let protected = |port: &str| protected_upstream(&issuer, port, &token_log);
    let (server, upstream) = protected("0");
    let agent_token = "agent-static-token-0123456789";
    let config = format!(
        r#"[upstreams.secure]
url = "{upstream}"
oauth = {{ grant = "client_credentials", issuer = "{issuer}", client_id = "warden", client_secret_env = "WARDEN_SECRET" }}

[agents.router]
token_env = "AGENT_TOKEN"
tools.allow = ["whoami", "echo"]
"#
    );
    let w = HttpProxy::start_raw(
        &config,
        &[
            ("WARDEN_SECRET", "warden-secret-0123456789"),
            ("AGENT_TOKEN", agent_token),
        ],
    );
    let sid = raw_session(&w.url, agent_token);
    assert!(!sid.is_empty(), "a session");
    let accepted = || accepted_tokens(&token_log);
    // Calls until three tokens have served them (each lives 3 s): every one answered as the
    // client mcp-warden is, for this upstream.
    let mut id = 10;
    eventually(Duration::from_secs(30), "three tokens in turn", || {
        id += 1;
        let raw = whoami(&w.url, agent_token, &sid, id);
        assert!(
            raw.contains(r#"\"client_id\": \"warden\""#) && !raw.contains("isError\":true"),
            "{raw}"
        );
        assert!(
            raw.contains(&format!(r#"\"aud\": \"{upstream}\""#)),
            "{raw}"
        );
        std::thread::sleep(Duration::from_millis(200)); // pacing, not a condition
        accepted().len() >= 3
    });
    let log = std::fs::read_to_string(&token_log).unwrap();
    assert!(
        !log.lines().any(|l| l.ends_with(" - -")),
        "tokens are renewed before they expire, not after a refusal: {log}"
    );
    assert!(
        !log.contains(&digest12(agent_token)),
        "the agent's own token never reaches the upstream"
    );

    // Long-lived tokens from here: once a token issued after this restart serves a call, the
    // one mcp-warden holds is still fresh when the provider starts over below.
    auth.stop();
    let mut auth = AuthServer::start_with(auth.port, &keys, &[("AT_TTL", "300")]);
    let seen = accepted().len();
    eventually(Duration::from_secs(20), "a long-lived token", || {
        id += 1;
        let raw = whoami(&w.url, agent_token, &sid, id);
        std::thread::sleep(Duration::from_millis(200)); // pacing, not a condition
        raw.contains(r#"\"client_id\": \"warden\""#) && accepted().len() > seen
    });

    // The provider and the upstream start over, with new keys: the upstream refuses the token
    // mcp-warden holds, and mcp-warden gets a new one and sends the call again (in a new
    // upstream session) — the agent sees nothing.
    auth.stop();
    // (Killed: a graceful stop would wait for mcp-warden's open GET stream.)
    drop(server);
    std::fs::remove_file(&keys).unwrap();
    let mut auth = AuthServer::start_with(auth.port, &keys, &[("AT_TTL", "300")]);
    let (_server, again) = protected(&port_of(&upstream));
    assert_eq!(again, upstream);
    let before = accepted();
    let raw = whoami(&w.url, agent_token, &sid, 1000);
    assert!(
        raw.contains(r#"\"client_id\": \"warden\""#),
        "{raw}\n{}",
        w.logs()
    );
    let after = accepted();
    assert_eq!(after.difference(&before).count(), 1, "one new token");
    let log = std::fs::read_to_string(&token_log).unwrap();
    assert!(
        log.lines().any(|l| l.ends_with(" - -")),
        "the old token was refused: {log}"
    );

    // A refused client: the call fails with a clear error, and the log says why.
    auth.stop();
    let bad = HttpProxy::start_raw(
        &config,
        &[
            ("WARDEN_SECRET", "not-the-secret"),
            ("AGENT_TOKEN", agent_token),
        ],
    );
    let _auth = AuthServer::start_with(auth.port, &keys, &[]);
    let r = http()
        .post(&bad.url)
        .bearer_auth(agent_token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INIT)
        .send()
        .unwrap();
    let raw = r.text().unwrap();
    assert!(
        !raw.contains("not-the-secret") && !raw.contains("eyJ"),
        "{raw}"
    );
    let sid = raw_session(&bad.url, agent_token);
    let answer = whoami(&bad.url, agent_token, &sid, 1);
    assert!(answer.contains("error"), "{answer}");
    assert!(!answer.contains("not-the-secret"), "{answer}");
    eventually(Duration::from_secs(10), "the refusal is logged", || {
        bad.logs().contains("invalid_client")
    });
    // An upstream that names another authorization server than the one mcp-warden's client
    // belongs to: refused before anything is sent there.
    let elsewhere = HttpProxy::start_raw(
        &config.replace(
            &format!(r#"issuer = "{issuer}""#),
            r#"issuer = "http://127.0.0.1:9""#,
        ),
        &[
            ("WARDEN_SECRET", "warden-secret-0123456789"),
            ("AGENT_TOKEN", agent_token),
        ],
    );
    let sid = raw_session(&elsewhere.url, agent_token);
    let answer = whoami(&elsewhere.url, agent_token, &sid, 1);
    assert!(
        answer.contains("error") && !answer.contains("\"sub\""),
        "{answer}"
    );
    eventually(Duration::from_secs(10), "the refusal is logged", || {
        elsewhere
            .logs()
            .contains("not the configured issuer http://127.0.0.1:9")
    });
    for logs in [w.logs(), bad.logs()] {
        assert!(!logs.contains("eyJ"), "no token in the log");
        assert!(!logs.contains("warden-secret-0123456789") && !logs.contains("not-the-secret"));
    }
}

/// A session opened with `token` over raw HTTP.
fn raw_session(url: &str, token: &str) -> String {
    let r = http()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INIT)
        .send()
        .unwrap();
    r.headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The "browser": follows `url`'s redirects, keeping cookies, until one leads to a
/// `/callback` path; returns that URL (not visited).
fn browse(url: &str) -> String {
    Browser::new().until_callback(url)
}

/// A browser for the sign-in tests: one cookie jar for every server it visits (they all sit on
/// 127.0.0.1, and cookies do not tell ports apart), redirects followed by hand.
struct Browser {
    client: reqwest::blocking::Client,
    jar: Vec<(String, String)>,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            client: reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            jar: vec![],
        }
    }

    /// A GET with the jar's cookies; the cookies it sets are kept.
    fn get(&mut self, url: &str) -> reqwest::blocking::Response {
        let cookie = self
            .jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let r = self
            .client
            .get(url)
            .header("cookie", cookie)
            .send()
            .unwrap();
        for c in r.headers().get_all("set-cookie") {
            let pair = c.to_str().unwrap().split(';').next().unwrap().to_string();
            if let Some((k, v)) = pair.split_once('=') {
                self.jar.retain(|(n, _)| n != k);
                self.jar.push((k.to_string(), v.to_string()));
            }
        }
        r
    }

    /// Follows redirects from `url` until one leads to a `/callback` path; returns that URL
    /// (not visited).
    fn until_callback(&mut self, url: &str) -> String {
        let mut next = url.to_string();
        for _ in 0..20 {
            if reqwest::Url::parse(&next)
                .unwrap()
                .path()
                .ends_with("/callback")
            {
                return next;
            }
            let r = self.get(&next);
            let location = r
                .headers()
                .get("location")
                .unwrap_or_else(|| panic!("no redirect from {next}: {}", r.status()))
                .to_str()
                .unwrap()
                .to_string();
            next = reqwest::Url::parse(&next)
                .unwrap()
                .join(&location)
                .unwrap()
                .to_string();
        }
        panic!("too many redirects");
    }
}

/// Runs `mcp-warden auth login UPSTREAM` for the instance in `dir` and plays the operator's
/// browser: the printed URL, the provider's sign-in, back to mcp-warden's loopback redirect.
fn sign_in(dir: &Path, upstream: &str) -> std::process::Output {
    sign_in_as(dir, upstream, &[], "alice")
}

/// [`sign_in`] with more arguments (`--agent A`), as the provider's user `who`.
fn sign_in_as(dir: &Path, upstream: &str, args: &[&str], who: &str) -> std::process::Output {
    use std::io::BufRead;
    let mut child = Command::new(warden_bin())
        .args(["auth", "login", upstream])
        .args(args)
        .arg("--config")
        .arg(dir.join("warden.toml"))
        .env("XDG_STATE_HOME", dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "the URL to open: {line:?}"
    );
    let back = browse(&format!("{url}&login_hint={who}"));
    let r = http().get(&back).send().unwrap();
    assert_eq!(r.status(), 200, "mcp-warden's redirect page");
    child.wait_with_output().unwrap()
}

/// An operator signs mcp-warden in to an OAuth-protected upstream (`mcp-warden auth login`:
/// discovery, registration, code + PKCE + resource, state and iss checked); the sealed grant
/// serves every agent call as the signed-in user, renewed with its rotating refresh token over
/// a run of calls; `auth list` tells without a token; a refresh token the provider no longer
/// honours, or a sign-out, ends in a clear error naming the command to run.
#[test]
fn an_operator_signs_warden_in_to_an_oauth_protected_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let mut auth = AuthServer::start_with(0, &keys, &[("AT_TTL", "3")]);
    let token_log = dir.path().join("tokens.log");
    let (_server, upstream) = protected_upstream(&auth.issuer, "0", &token_log);
    let agent_token = "agent-static-token-0123456789";
    let digest = sha(agent_token);
    let config = format!(
        r#"[upstreams.secure]
url = "{upstream}"
oauth = {{ grant = "authorization_code" }}

[agents.router]
token_sha256 = "{digest}"
tools.allow = ["whoami"]
"#
    );
    let w = HttpProxy::start_raw(&config, &[]);
    let list = || {
        let o = operator_cli(w.dir.path(), &["auth", "list"]);
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert!(
        list().contains("secure: not signed in (mcp-warden auth login secure)"),
        "{}",
        list()
    );

    let out = sign_in(w.dir.path(), "secure");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = list();
    assert!(
        listed.contains(&format!("secure: signed in at {}", auth.issuer)),
        "{listed}"
    );
    assert!(
        listed.contains("refresh token") && !listed.contains("eyJ"),
        "{listed}"
    );
    let sealed: Vec<_> = std::fs::read_dir(w.dir.path().join("mcp-warden/oauth"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sealed"))
        .collect();
    assert_eq!(sealed.len(), 1, "{sealed:?}");
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&sealed[0]).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let raw = std::fs::read(&sealed[0]).unwrap();
        assert!(
            !String::from_utf8_lossy(&raw).contains("eyJ"),
            "sealed at rest"
        );
    }

    // The agent's calls reach the upstream as alice, through the client mcp-warden registered,
    // across several renewals (each token lives 3 s).
    let sid = raw_session(&w.url, agent_token);
    let accepted = || accepted_tokens(&token_log);
    let mut id = 10;
    eventually(Duration::from_secs(30), "three tokens in turn", || {
        id += 1;
        let raw = whoami(&w.url, agent_token, &sid, id);
        assert!(raw.contains(r#"\"sub\": \"alice\""#), "{raw}\n{}", w.logs());
        assert!(!raw.contains(r#"\"client_id\": \"warden\""#), "{raw}");
        std::thread::sleep(Duration::from_millis(200)); // pacing, not a condition
        accepted().len() >= 3
    });
    let log = std::fs::read_to_string(&token_log).unwrap();
    assert!(
        !log.lines().any(|l| l.ends_with(" - -")),
        "renewed before expiry: {log}"
    );

    // The provider forgets its grants (a restart of its in-memory store: as if revoked): once
    // the access token ends, the refresh is refused, and the agent gets an error while the log
    // names the command to run.
    auth.stop();
    let _auth = AuthServer::start_with(auth.port, &keys, &[("AT_TTL", "3")]);
    eventually(
        Duration::from_secs(20),
        "the revoked sign-in is told",
        || {
            id += 1;
            let raw = whoami(&w.url, agent_token, &sid, id);
            std::thread::sleep(Duration::from_millis(200)); // pacing, not a condition
            raw.contains("\"error\"") || raw.contains("isError\":true")
        },
    );
    assert!(
        w.logs().contains("run `mcp-warden auth login secure`"),
        "{}",
        w.logs()
    );
    assert!(list().contains("secure: not signed in"), "{}", list());
    // Signing in again brings it back; signing out ends it.
    let out = sign_in(w.dir.path(), "secure");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    id += 1;
    let raw = whoami(&w.url, agent_token, &sid, id);
    assert!(raw.contains(r#"\"sub\": \"alice\""#), "{raw}");
    let o = operator_cli(w.dir.path(), &["auth", "logout", "secure"]);
    assert!(o.status.success());
    assert!(list().contains("secure: not signed in"));
    assert!(!w.logs().contains("eyJ"), "no token in the log");
}

/// `per = "agent"`: each agent's calls go out under the sign-in made for it, never another's
/// (the bug class of a gateway using user A's token for user B); an agent nobody signed in for
/// gets an error, and the log names the command for it.
#[test]
fn each_agent_uses_only_its_own_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let auth = AuthServer::start(0, &dir.path().join("keys.json"));
    let (_server, upstream) = protected_upstream(&auth.issuer, "0", &dir.path().join("tokens.log"));
    let (ta, tb, tc, td) = (
        "agent-a-token-0123456789",
        "agent-b-token-0123456789",
        "agent-c-token-0123456789",
        "agent-d-token-0123456789",
    );
    let config = format!(
        r#"[upstreams.secure]
url = "{upstream}"
oauth = {{ grant = "authorization_code", per = "agent" }}

[agents.a]
token_sha256 = "{}"
tools.allow = ["whoami"]
[agents.b]
token_sha256 = "{}"
tools.allow = ["whoami"]
[agents.c]
token_sha256 = "{}"
tools.allow = ["whoami"]
[agents.d]
token_sha256 = "{}"
tools.allow = ["whoami"]
"#,
        sha(ta),
        sha(tb),
        sha(tc),
        sha(td)
    );
    let w = HttpProxy::start_raw(&config, &[]);
    // Without --agent: refused, naming what is missing.
    let o = operator_cli(w.dir.path(), &["auth", "login", "secure"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("give --agent NAME"));
    for (agent, who) in [("a", "alice"), ("b", "bob")] {
        let out = sign_in_as(w.dir.path(), "secure", &["--agent", agent], who);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let o = operator_cli(w.dir.path(), &["auth", "list"]);
    let listed = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(listed.contains("secure (agent a): signed in"), "{listed}");
    assert!(listed.contains("secure (agent b): signed in"), "{listed}");
    assert!(
        listed.contains("secure (agent c): not signed in (mcp-warden auth login secure --agent c)"),
        "{listed}"
    );
    // `check` tells the same, for a newcomer reading what would run.
    let o = operator_cli(w.dir.path(), &["check"]);
    let checked = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        checked.contains("  oauth secure (agent a): signed in")
            && checked.contains("  oauth secure (agent c): not signed in"),
        "{checked}"
    );
    for (token, sub) in [(ta, "alice"), (tb, "bob"), (ta, "alice"), (tb, "bob")] {
        let sid = raw_session(&w.url, token);
        let raw = whoami(&w.url, token, &sid, 7);
        assert!(raw.contains(&format!(r#"\"sub\": \"{sub}\""#)), "{raw}");
    }
    // Agent c has no sign-in: the upstream's tools (pinned when a and b listed them) are
    // still listed, and a call is the tool's own error naming what an operator runs, made
    // without reaching the upstream. No retry storm meanwhile: one line says it.
    let sid = raw_session(&w.url, tc);
    let list = list_tools(&w.url, tc, &sid).to_string();
    assert!(list.contains(r#""name":"whoami""#), "{list}");
    for id in [7, 8] {
        let raw = whoami(&w.url, tc, &sid, id);
        assert!(!raw.contains("\"sub\""), "no one else's sign-in: {raw}");
        let v = json_of_answer(&raw);
        assert_eq!(v["result"]["isError"], true, "{raw}");
        let text = v["result"]["content"][0]["text"].as_str().unwrap();
        assert!(
            text.contains("`mcp-warden auth login secure --agent c`"),
            "{text}"
        );
    }
    let logs = w.logs();
    // A request without a token would have been refused (401) and logged as such.
    assert!(
        !logs.contains("OAuth: not signed in"),
        "nothing was sent to the upstream for c: {logs}"
    );
    assert_eq!(
        logs.matches("upstream not signed in").count(),
        1,
        "said once, not retried on a timer: {logs}"
    );
    // A 2026-07-28 agent (stateless, its own internal session) gets the same answer.
    let modern = http()
        .post(&w.url)
        .bearer_auth(tc)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "whoami")
        .body(r#"{"jsonrpc":"2.0","id":"m1","method":"tools/call","params":{"name":"whoami","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let v = json_of_answer(&modern);
    assert_eq!(v["id"], "m1", "{modern}");
    assert_eq!(v["result"]["resultType"], "complete", "{modern}");
    assert_eq!(v["result"]["isError"], true, "{modern}");
    assert!(
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("`mcp-warden auth login secure --agent c`"),
        "{modern}"
    );
    // A 2025-11-25 client that declared URL-mode elicitation (the TypeScript SDK) is pointed
    // at the page where an operator signs in (-32042, which the SDK raises as its own error),
    // and it waits for that elicitation to complete to call again.
    let mut client = NodeLines::start(
        "url-elicitation-client.mjs",
        &[&w.url, tc, "whoami", "--wait"],
    );
    let v = client.next_json();
    let asked = &v["urlElicitation"];
    assert_eq!(asked["class"], "UrlElicitationRequiredError", "{v}");
    assert_eq!(asked["code"], -32042, "{v}");
    let e = &asked["elicitations"][0];
    assert_eq!(e["mode"], "url", "{v}");
    assert_eq!(
        e["url"],
        format!("{}/approvals", w.url.trim_end_matches("/mcp")),
        "{v}"
    );
    assert!(
        e["elicitationId"]
            .as_str()
            .unwrap()
            .starts_with("mw-sign-in-"),
        "{v}"
    );
    assert!(
        e["message"].as_str().unwrap().contains("upstream secure"),
        "{v}"
    );
    // An operator signs c in; the same session's next call goes through, no restart.
    let out = sign_in_as(w.dir.path(), "secure", &["--agent", "c"], "carol");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The waiting client hears its elicitation completed (its session found the sign-in) and
    // its call again is carol's.
    let done = client.next_json();
    assert_eq!(done["completed"], e["elicitationId"], "{done}");
    assert!(done["result"].to_string().contains("carol"), "{done}");
    client.succeeds();
    let raw = whoami(&w.url, tc, &sid, 9);
    assert!(raw.contains(r#"\"sub\": \"carol\""#), "{raw}");
    for (token, sub) in [(ta, "alice"), (tb, "bob")] {
        let sid = raw_session(&w.url, token);
        let raw = whoami(&w.url, token, &sid, 10);
        assert!(raw.contains(&format!(r#"\"sub\": \"{sub}\""#)), "{raw}");
    }
    // A 2026-07-28 client that declared URL-mode elicitation (the TypeScript SDK v2) is asked,
    // in an InputRequiredResult, to open the same page. Declined: the tool's error.
    let out = Command::new("node")
        .current_dir(node_dir())
        .args([
            "url-elicitation-modern.mjs",
            &w.url,
            td,
            "whoami",
            "decline",
        ])
        .output()
        .unwrap();
    let printed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(printed.len(), 2, "asked once, then the result: {printed:?}");
    assert_eq!(printed[0]["asked"]["mode"], "url", "{printed:?}");
    let declined = &printed[1];
    assert_eq!(declined["version"], "2026-07-28", "{declined}");
    assert_eq!(declined["result"]["isError"], true, "{declined}");
    assert!(
        declined["result"]
            .to_string()
            .contains("mcp-warden auth login secure --agent d"),
        "{declined}"
    );
    // Accepted: the retry waits in mcp-warden until an operator signs d in, then is dave's.
    let mut client = NodeLines::start(
        "url-elicitation-modern.mjs",
        &[&w.url, td, "whoami", "accept"],
    );
    let first = client.next_json();
    let asked = &first["asked"];
    assert_eq!(asked["mode"], "url", "{first}");
    assert_eq!(
        asked["url"],
        format!("{}/approvals", w.url.trim_end_matches("/mcp")),
        "{first}"
    );
    assert!(
        asked["message"]
            .as_str()
            .unwrap()
            .contains("upstream secure"),
        "{first}"
    );
    let out = sign_in_as(w.dir.path(), "secure", &["--agent", "d"], "dave");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = client.next_json();
    assert_eq!(done["version"], "2026-07-28", "{done}");
    assert_eq!(done["result"]["isError"], false, "{done}");
    assert!(
        done["result"].to_string().contains(r#"\"sub\": \"dave\""#),
        "{done}"
    );
    client.succeeds();
    let logs = w.logs();
    assert!(
        logs.contains("the agent did not take the sign-in page")
            && logs.contains("the call waits for the sign-in"),
        "{logs}"
    );
}

/// A 2026-07-28 client that accepted to open the sign-in page has its retry held while the
/// sign-in is not there, but not longer than clients wait for a request: then it is asked again
/// (another input_required, the same page), and its call goes on once someone signed in.
/// Here the upstream was never signed in, so its agent sees mcp-warden's sign-in tool.
#[test]
fn a_2026_client_waiting_for_a_sign_in_is_asked_again() {
    let dir = tempfile::tempdir().unwrap();
    let auth = AuthServer::start(0, &dir.path().join("keys.json"));
    let (_server, upstream) = protected_upstream(&auth.issuer, "0", &dir.path().join("tokens.log"));
    let token = "agent-token-0123456789";
    let config = format!(
        r#"[proxy]
request_timeout_secs = 10

[upstreams.secure]
url = "{upstream}"
oauth = {{ grant = "authorization_code" }}

[agents.a]
token_sha256 = "{}"
"#,
        sha(token)
    );
    let w = HttpProxy::start_raw(&config, &[]);
    let page = format!("{}/approvals", w.url.trim_end_matches("/mcp"));
    let mut client = NodeLines::start(
        "url-elicitation-modern.mjs",
        &[&w.url, token, "sign_in_secure", "accept"],
    );
    let first = client.next_json();
    assert_eq!(first["asked"]["url"], page.as_str(), "{first}");
    // Held for half the request timeout, then asked again.
    let again = client.next_json();
    assert_eq!(again["asked"]["url"], page.as_str(), "{again}");
    let out = sign_in(w.dir.path(), "secure");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = client.next_json();
    assert_eq!(done["version"], "2026-07-28", "{done}");
    assert_eq!(
        done["result"]["content"][0]["text"], "Signed in to secure: its tools are listed now.",
        "{done}"
    );
    client.succeeds();
    assert!(
        w.logs()
            .contains("no sign-in yet: the agent is asked again"),
        "{}",
        w.logs()
    );
}

/// Over stdio there is no Host to build the page's address from: with `[proxy] public_url`
/// (the address operators reach the fronts by), a 2025-11-25 agent that declared URL-mode
/// elicitation is pointed at the approvals page there; a config typo in it is refused.
#[test]
fn over_stdio_the_sign_in_page_is_at_the_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let auth = AuthServer::start(0, &dir.path().join("keys.json"));
    let (_server, upstream) = protected_upstream(&auth.issuer, "0", &dir.path().join("tokens.log"));
    let config = format!(
        r#"[proxy]
public_url = "https://warden.example.com"
state_dir = "{}"

[upstreams.secure]
url = "{upstream}"
oauth = {{ grant = "authorization_code" }}
"#,
        dir.path().join("state").display()
    );
    write_config(dir.path(), &config);
    let out = sign_in_as(dir.path(), "secure", &[], "erin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{"url":{}}},"clientInfo":{"name":"test","version":"1"}}}"#;
    // Signed in: the tools are listed (and pinned), then the operator signs out.
    {
        let mut p = StdioProxy::start(&config);
        p.send(init);
        p.recv_response("0");
        p.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        p.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        let (list, _) = p.recv_response("1");
        assert!(list.contains(r#""name":"whoami""#), "{list}");
    }
    let o = operator_cli(dir.path(), &["auth", "logout", "secure"]);
    assert!(o.status.success(), "{o:?}");
    let mut p = StdioProxy::start(&config);
    p.send(init);
    p.recv_response("0");
    p.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    p.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#);
    let (answer, _) = p.recv_response("2");
    let v: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(v["error"]["code"], -32042, "{answer}");
    let e = &v["error"]["data"]["elicitations"][0];
    assert_eq!(e["mode"], "url", "{answer}");
    assert_eq!(e["url"], "https://warden.example.com/approvals", "{answer}");
    // Only an origin, https (http on loopback only).
    for (bad, why) in [
        ("http://warden.example.com", "must be https"),
        ("https://warden.example.com/mcp", "must be an origin only"),
        (
            "https://user:pw@warden.example.com",
            "must not carry a user name or password",
        ),
    ] {
        write_config(
            dir.path(),
            &config.replace("https://warden.example.com", bad),
        );
        let o = operator_cli(dir.path(), &["check"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("proxy.public_url:") && err.contains(why),
            "{bad}: {err}"
        );
        assert!(!err.contains("pw@"), "no credentials echoed: {err}");
    }
}

/// The JSON-RPC answer in a JSON body or in an SSE stream's data lines.
fn json_of_answer(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| {
        raw.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("id").is_some())
            .unwrap_or_else(|| panic!("no answer in {raw}"))
    })
}

/// An operator signs mcp-warden in to an upstream from the approvals page instead of a shell:
/// signed in to the page (cookie + CSRF token), the page lists the OAuth upstreams, a sign-in
/// started there sends this browser to the authorization server and back to the front's
/// `/oauth/callback`, bound to the browser by a flow cookie and usable once; the agent's next
/// call goes out under the new grant without a restart.
#[test]
fn an_operator_signs_in_from_the_approvals_page() {
    let dir = tempfile::tempdir().unwrap();
    let auth = AuthServer::start(0, &dir.path().join("keys.json"));
    let (_server, upstream) = protected_upstream(&auth.issuer, "0", &dir.path().join("tokens.log"));
    let (op_token, agent_token) = ("operator-token-0123456789abcdef", "agent-token-0123456789");
    let config = format!(
        r#"[upstreams.secure]
url = "{upstream}"
oauth = {{ grant = "authorization_code" }}

[operators.olga]
token_sha256 = "{}"

[agents.router]
token_sha256 = "{}"
tools.allow = ["whoami"]
"#,
        sha(op_token),
        sha(agent_token)
    );
    let w = HttpProxy::start_raw(&config, &[]);
    let base = w.url.trim_end_matches("/mcp").to_string();
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let cookie_of = |r: &reqwest::blocking::Response, name: &str| -> String {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string())
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} cookie"))
    };
    // Before: never signed in here, so nothing of the upstream is known (no pins) to list:
    // mcp-warden's own sign-in tool stands in for it, and says what to do.
    let sid = raw_session(&w.url, agent_token);
    let raw = whoami(&w.url, agent_token, &sid, 1);
    assert!(raw.contains("Unknown tool: whoami"), "{raw}");
    let list = list_tools(&w.url, agent_token, &sid);
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sign_in_secure"], "{list}");
    let v = json_of_answer(&call_tool(&w.url, agent_token, &sid, 2, "sign_in_secure"));
    assert_eq!(v["result"]["isError"], true, "{v}");
    assert!(
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("an operator runs `mcp-warden auth login secure`"),
        "{v}"
    );

    let r = client
        .post(format!("{base}/approvals/login"))
        .header("content-type", "application/json")
        .body(json!({"token": op_token}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = cookie_of(&r, "mw_op");
    let csrf = serde_json::from_str::<Value>(&r.text().unwrap()).unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    let listed: Value = serde_json::from_str(
        &client
            .get(format!("{base}/approvals/signins"))
            .header("cookie", &page)
            .send()
            .unwrap()
            .text()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(listed["signins"][0]["upstream"], "secure", "{listed}");
    assert_eq!(listed["signins"][0]["signedIn"], false, "{listed}");
    // Without the page's CSRF token (a cross-site form), or without signing in: refused.
    let start = |cookie: &str, csrf: Option<&str>| {
        let mut r = client
            .post(format!("{base}/approvals/signins"))
            .header("cookie", cookie)
            .header("content-type", "application/json")
            .body(json!({"upstream": "secure"}).to_string());
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        r.send().unwrap()
    };
    assert_eq!(start(&page, None).status(), 403);
    assert_eq!(start("", Some(&csrf)).status(), 401);

    let r = start(&page, Some(&csrf));
    assert_eq!(r.status(), 200);
    let flow = cookie_of(&r, "mw_flow");
    let authorize = serde_json::from_str::<Value>(&r.text().unwrap()).unwrap()["authorize"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(authorize.starts_with(&auth.issuer), "{authorize}");
    let back = browse(&format!("{authorize}&login_hint=dana"));
    assert!(
        back.starts_with(&format!("{base}/oauth/callback?")),
        "{back}"
    );
    // Another browser (no flow cookie) cannot finish it; the right one can, once.
    let r = client.get(&back).send().unwrap();
    assert_eq!(r.status(), 403);
    let r = client.get(&back).header("cookie", &flow).send().unwrap();
    let text = r.text().unwrap();
    assert!(text.contains("signed in to secure"), "{text}");
    let r = client.get(&back).header("cookie", &flow).send().unwrap();
    assert_eq!(r.status(), 400, "a state serves once");

    let o = operator_cli(w.dir.path(), &["auth", "list"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.contains(&format!("secure: signed in at {}", auth.issuer)),
        "{out}"
    );
    // The same agent session finds the sign-in by itself (its upstream looks for one every
    // few seconds) and its calls go out under the new grant.
    let mut id = 2;
    eventually(Duration::from_secs(30), "the sign-in is used", || {
        id += 1;
        whoami(&w.url, agent_token, &sid, id).contains(r#"\"sub\": \"dana\""#)
    });
    // The same from the page itself, in a real browser (the flow cookie is SameSite=Lax: it
    // must come back on the authorization server's redirect): the button, the authorization
    // server (signing its user in by itself), back to the front's callback.
    let v = node_json("signin-in-browser.mjs", &[&base, op_token, "secure"]);
    assert!(
        v["listed"]
            .as_str()
            .unwrap()
            .contains("secure: signed in at"),
        "{v}"
    );
    assert_eq!(v["button"], "Sign in again", "{v}");
    assert!(
        v["landed"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{base}/oauth/callback?")),
        "{v}"
    );
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("mcp-warden is signed in to secure"),
        "{v}"
    );
    assert_eq!(v["failed"], json!([]), "{v}");
    assert_eq!(v["consoleErrors"], json!([]), "{v}");
    let logs = w.logs();
    assert_eq!(
        logs.matches("signed in from the approvals page").count(),
        2,
        "{logs}"
    );
    eventually(Duration::from_secs(10), "both sign-ins audited", || {
        let events = audit_events(w.dir.path(), &[]);
        events
            .iter()
            .filter(|e| e["kind"] == "upstream.signed_in")
            .map(|e| {
                (
                    e["operator"].clone(),
                    e["upstream"].clone(),
                    e["person"].clone(),
                )
            })
            .collect::<Vec<_>>()
            == vec![(json!("operator:olga"), json!("secure"), Value::Null); 2]
    });
    for secret in [op_token, "code="] {
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
}

/// The official conformance suite's client authorization scenarios (0.2.0-alpha.12, both
/// revisions), with mcp-warden as the OAuth client of the suite's protected server
/// (tests/node/conformance-auth-client.mjs signs it in and calls a tool through it, configured
/// as an operator who publishes mcp-warden's client ID metadata document). Every scored
/// scenario passes. The unscored extensions it does not implement are listed, so that a change
/// in either direction shows.
#[test]
fn the_conformance_suites_client_authorization_scenarios_pass() {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new("node")
        .arg(node_dir().join("run-conformance-auth-client.mjs"))
        .arg(warden_bin())
        .arg(out.path())
        .env("PATH", node22_path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let runs = report["runs"].as_array().unwrap();
    assert!(runs.len() >= 45, "{report}");
    let not_implemented = [
        "auth/client-credentials-jwt",
        "auth/enterprise-managed-authorization",
        "auth/wif-jwt-bearer",
        "auth/dpop",
        "auth/dpop-nonce",
    ];
    let mut unexpected = vec![];
    for r in runs {
        let scenario = r["scenario"].as_str().unwrap();
        let failing: Vec<&str> = r["failing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap())
            .collect();
        let expected_ok = match scenario {
            s if not_implemented.contains(&s) => r["verdict"] == "fail",
            _ => r["verdict"] == "pass" && failing.is_empty(),
        };
        if !expected_ok {
            unexpected.push(format!("{} {scenario}: {failing:?}", r["revision"]));
        }
    }
    assert!(unexpected.is_empty(), "{unexpected:#?}");
}

/// Token exchange (RFC 8693): people signed in with the identity provider (`[auth.oidc]`) call
/// an OAuth-protected upstream that trusts the same provider; mcp-warden trades each caller's
/// token, at that provider, for one meant for the upstream — the caller's own token never
/// reaches it — so the upstream sees each person as themselves, even behind one agent; a
/// session stays with the person who opened it; a caller without such a token gets an error.
#[test]
fn callers_tokens_are_exchanged_for_the_upstreams_own() {
    let dir = tempfile::tempdir().unwrap();
    let auth = AuthServer::start(0, &dir.path().join("keys.json"));
    let token_log = dir.path().join("tokens.log");
    let (_server, upstream) = protected_upstream(&auth.issuer, "0", &token_log);
    let port = free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let config = format!(
        r#"[upstreams.secure]
url = "{upstream}"
oauth = {{ grant = "token_exchange", client_id = "warden", client_secret_env = "WARDEN_SECRET" }}

[auth.oidc]
issuer = "{issuer}"
resource = "{resource}"
scopes = ["mcp"]

[agents.people]
match = {{ groups = ["eng"] }}
tools.allow = ["whoami"]

[agents.legacy]
token_env = "LEGACY_TOKEN"
tools.allow = ["whoami"]
"#,
        issuer = auth.issuer
    );
    let w = HttpProxy::start_raw_listen(
        &config,
        &[
            ("WARDEN_SECRET", "warden-secret-0123456789"),
            ("LEGACY_TOKEN", LEGACY_TOKEN),
        ],
        &format!("127.0.0.1:{port}"),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (alice, bob) = (
        auth.person(&resource, "alice"),
        auth.person(&resource, "bob"),
    );
    let alice_sid = raw_session(&w.url, &alice);
    let raw = whoami(&w.url, &alice, &alice_sid, 2);
    assert!(raw.contains(r#"\"sub\": \"alice\""#), "{raw}\n{}", w.logs());
    assert!(raw.contains(r#"\"client_id\": \"warden\""#), "{raw}");
    assert!(
        raw.contains(&format!(r#"\"aud\": \"{upstream}\""#)),
        "{raw}"
    );
    let bob_sid = raw_session(&w.url, &bob);
    let raw = whoami(&w.url, &bob, &bob_sid, 2);
    assert!(raw.contains(r#"\"sub\": \"bob\""#), "{raw}");
    // Alice's session is not Bob's, though both are the same agent.
    let (status, _, _) = call(
        &w.url,
        Some(&bob),
        &[
            ("mcp-session-id", &alice_sid),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
    );
    assert_eq!(status, 404);
    // A new token of Alice's (her client refreshed it) in her session: still Alice.
    let alice2 = auth.sign(
        json!({"iss": auth.issuer, "aud": resource, "sub": "alice", "groups": ["eng"],
               "scope": "mcp", "iat": now, "exp": now + 600}),
        json!({}),
    );
    let raw = whoami(&w.url, &alice2, &alice_sid, 4);
    assert!(raw.contains(r#"\"sub\": \"alice\""#), "{raw}");
    let log = std::fs::read_to_string(&token_log).unwrap();
    for own in [&alice, &bob, &alice2] {
        assert!(
            !log.contains(&digest12(own)),
            "a caller's own token reached the upstream"
        );
    }
    // A caller with a static token has nothing to exchange.
    let sid = raw_session(&w.url, LEGACY_TOKEN);
    let raw = whoami(&w.url, LEGACY_TOKEN, &sid, 2);
    assert!(!raw.contains("\"sub\""), "{raw}");
    assert!(
        w.logs().contains("token exchange needs a caller signed in"),
        "{}",
        w.logs()
    );
    assert!(!w.logs().contains("eyJ"), "no token in the log");
}

/// Each person behind an agent signs mcp-warden in to an upstream for themselves
/// (`per = "user"`): their call is answered with a link of their own; whoever opens it proves
/// who they are at the identity provider (mcp-warden's browser client), and only the person
/// whose call asked goes on to the upstream's sign-in; the grant then serves that person's
/// calls only. Before anyone signed in, mcp-warden's own sign-in tool is what the agent sees;
/// a 2026-07-28 client is asked to open the link with an input_required result and its call
/// goes on once the person signed in.
#[test]
fn each_person_signs_in_to_the_upstream_for_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let auth = AuthServer::start(0, &dir.path().join("keys.json"));
    let token_log = dir.path().join("tokens.log");
    let (_server, upstream) = protected_upstream(&auth.issuer, "0", &token_log);
    let port = free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    // mcp-warden's browser client, registered at the identity provider as any web client is.
    let reg: Value = serde_json::from_str(
        &http()
            .post(format!("{}/reg", auth.issuer))
            .header("content-type", "application/json")
            .body(
                json!({
                    "redirect_uris": [format!("http://127.0.0.1:{port}/oauth/callback")],
                    "application_type": "web",
                    "token_endpoint_auth_method": "client_secret_basic",
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                    "scope": "openid",
                })
                .to_string(),
            )
            .send()
            .unwrap()
            .text()
            .unwrap(),
    )
    .unwrap();
    let client_id = reg["client_id"].as_str().unwrap().to_string();
    let client_secret = reg["client_secret"].as_str().unwrap().to_string();
    let config = format!(
        r#"[upstreams.secure]
url = "{upstream}"
oauth = {{ grant = "authorization_code", per = "user" }}

[auth.oidc]
issuer = "{issuer}"
resource = "{resource}"
scopes = ["mcp"]
browser_client_id = "{client_id}"
browser_client_secret_env = "WEB_SECRET"

[agents.people]
match = {{ groups = ["eng"] }}
tools.allow = ["whoami"]
"#,
        issuer = auth.issuer
    );
    let env = [("WEB_SECRET", client_secret.as_str())];
    let w = HttpProxy::start_raw_listen(&config, &env, &format!("127.0.0.1:{port}"));
    let (alice, bob) = (
        auth.person(&resource, "alice"),
        auth.person(&resource, "bob"),
    );
    // Nobody signed in yet: the agent sees mcp-warden's sign-in tool (its rules allow only
    // whoami, which nobody has seen yet), and a call to it gives Alice her own link.
    let alice_sid = raw_session(&w.url, &alice);
    let list = list_tools(&w.url, &alice, &alice_sid);
    assert_eq!(
        list["result"]["tools"][0]["name"], "sign_in_secure",
        "{list}"
    );
    assert_eq!(
        list["result"]["tools"].as_array().unwrap().len(),
        1,
        "{list}"
    );
    let link_in = |raw: &str| -> String {
        let v = json_of_answer(raw);
        assert_eq!(v["result"]["isError"], true, "{v}");
        let text = v["result"]["content"][0]["text"].as_str().unwrap();
        let start = text.find("open http").unwrap_or_else(|| panic!("{text}")) + 5;
        let link = &text[start..];
        link[..link.find(' ').unwrap()].to_string()
    };
    let alice_link = link_in(&call_tool(&w.url, &alice, &alice_sid, 2, "sign_in_secure"));
    assert!(
        alice_link.starts_with(&format!("http://127.0.0.1:{port}/oauth/connect/")),
        "{alice_link}"
    );
    // The page a link opens: what it is for, and the way on to the identity provider.
    let continue_from = |b: &mut Browser, link: &str, who: &str| -> String {
        let r = b.get(link);
        assert_eq!(r.status(), 200);
        let page = r.text().unwrap();
        assert!(page.contains("Sign in to secure (agent people)"), "{page}");
        let at = page.find("<a href=\"").unwrap() + 9;
        let href = page[at..at + page[at..].find('"').unwrap()].replace("&amp;", "&");
        assert!(href.starts_with(&auth.issuer), "{href}");
        b.until_callback(&format!("{href}&login_hint={who}"))
    };
    // Bob opens Alice's link: he proves who he is, and is refused; nothing is saved.
    let mut bobs_browser = Browser::new();
    let back = continue_from(&mut bobs_browser, &alice_link, "bob");
    let r = bobs_browser.get(&back);
    assert_eq!(r.status(), 403);
    assert!(r.text().unwrap().contains("someone else"));
    let o = operator_cli_env(w.dir.path(), &["auth", "list"], &env);
    let listed = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        listed.contains("secure: each person signs in for themselves (0 signed in)"),
        "{listed}"
    );
    // Alice opens it: the identity provider says she is Alice, the upstream's authorization
    // server signs her in (her session there: no second login), and she is signed in.
    // At each step, another browser (without the flow cookie) cannot finish her sign-in, and
    // the step stays hers; a step's answer serves once.
    // A link holds one sign-in at a time: opened again, the earlier one is gone.
    let mut earlier = Browser::new();
    let earlier_back = continue_from(&mut earlier, &alice_link, "alice");
    let mut browser = Browser::new();
    let back = continue_from(&mut browser, &alice_link, "alice");
    assert_eq!(earlier.get(&earlier_back).status(), 400);
    assert_eq!(Browser::new().get(&back).status(), 403);
    let r = browser.get(&back);
    assert_eq!(r.status(), 303, "on to the upstream's sign-in");
    assert_eq!(browser.get(&back).status(), 400, "used once");
    let upstream_auth = r.headers()["location"].to_str().unwrap().to_string();
    let back = browser.until_callback(&upstream_auth);
    assert_eq!(Browser::new().get(&back).status(), 403);
    let r = browser.get(&back);
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .unwrap()
        .contains("mcp-warden is signed in to secure (agent people)"));
    assert_eq!(browser.get(&back).status(), 400, "used once");
    // A link nobody was given leads nowhere.
    let base = w.url.trim_end_matches("/mcp");
    let r = Browser::new().get(&format!("{base}/oauth/connect/{}", "0".repeat(32)));
    assert_eq!(r.status(), 404);
    // Her agent calls the sign-in tool again, hears she is signed in, and finds the tools.
    let v = json_of_answer(&call_tool(&w.url, &alice, &alice_sid, 3, "sign_in_secure"));
    assert_eq!(
        v["result"]["content"][0]["text"], "Signed in to secure: its tools are listed now.",
        "{v}"
    );
    let list = list_tools(&w.url, &alice, &alice_sid);
    assert_eq!(list["result"]["tools"][0]["name"], "whoami", "{list}");
    assert_eq!(
        list["result"]["tools"].as_array().unwrap().len(),
        1,
        "{list}"
    );
    let raw = whoami(&w.url, &alice, &alice_sid, 4);
    assert!(raw.contains(r#"\"sub\": \"alice\""#), "{raw}");
    // Bob's calls do not go out under Alice's sign-in: his own link, another one.
    let bob_sid = raw_session(&w.url, &bob);
    let bob_link = link_in(&whoami(&w.url, &bob, &bob_sid, 2));
    assert_ne!(bob_link, alice_link);
    // Bob's 2026-07-28 client (the TypeScript SDK v2) is asked to open his link; its call
    // waits while he signs in, then is his.
    let mut client = NodeLines::start(
        "url-elicitation-modern.mjs",
        &[&w.url, &bob, "whoami", "accept"],
    );
    let first = client.next_json();
    assert_eq!(first["asked"]["url"], bob_link.as_str(), "{first}");
    assert!(
        first["asked"]["message"]
            .as_str()
            .unwrap()
            .contains("your own sign-in"),
        "{first}"
    );
    let mut browser = Browser::new();
    let back = continue_from(&mut browser, &bob_link, "bob");
    let r = browser.get(&back);
    let upstream_auth = r.headers()["location"].to_str().unwrap().to_string();
    let back = browser.until_callback(&upstream_auth);
    assert_eq!(browser.get(&back).status(), 200);
    let done = client.next_json();
    assert_eq!(done["version"], "2026-07-28", "{done}");
    assert!(
        done["result"].to_string().contains(r#"\"sub\": \"bob\""#),
        "{done}"
    );
    client.succeeds();
    // Alice is still herself; two people are signed in; an operator cannot sign in for them.
    let raw = whoami(&w.url, &alice, &alice_sid, 5);
    assert!(raw.contains(r#"\"sub\": \"alice\""#), "{raw}");
    let o = operator_cli_env(w.dir.path(), &["auth", "list"], &env);
    let listed = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        listed.contains("secure: each person signs in for themselves (2 signed in)"),
        "{listed}"
    );
    let o = operator_cli_env(w.dir.path(), &["auth", "login", "secure"], &env);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("people sign in for themselves"),
        "{o:?}"
    );
    // The audit chain says who signed in to what, and who was refused (never a token).
    let issuer = &auth.issuer;
    eventually(Duration::from_secs(10), "the sign-ins are audited", || {
        let events = audit_events(w.dir.path(), &env);
        let of = |kind: &str| -> Vec<Value> {
            events
                .iter()
                .filter(|e| e["kind"] == kind)
                .cloned()
                .collect()
        };
        let people: Vec<String> = of("upstream.signed_in")
            .iter()
            .map(|e| e["person"].as_str().unwrap_or_default().to_string())
            .collect();
        let refused = of("upstream.sign_in_refused");
        people == [format!("{issuer} alice"), format!("{issuer} bob")]
            && refused.len() == 1
            && refused[0]["person"] == format!("{issuer} alice")
            && refused[0]["signed_in_as"] == format!("{issuer} bob")
            && refused[0]["upstream"] == "secure (agent people)"
    });
    // The metrics count them too.
    let metrics = http()
        .get(w.url.replace("/mcp", "/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for line in [
        r#"mcp_warden_upstream_sign_ins_total{by="person"} 2"#,
        r#"mcp_warden_upstream_sign_ins_total{by="refused"} 1"#,
        r#"mcp_warden_upstream_sign_ins_asked_total{upstream="secure",form="input_required"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    // An operator signs one person out (their refresh token revoked, their grant gone): Bob's
    // next session is asked to sign in again, Alice's is still hers.
    let o = operator_cli_env(
        w.dir.path(),
        &["auth", "logout", "secure", "--person", "bob"],
        &env,
    );
    assert!(o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("signed out of `secure`"),
        "{o:?}"
    );
    let sid = raw_session(&w.url, &bob);
    assert_eq!(link_in(&whoami(&w.url, &bob, &sid, 2)), bob_link);
    let sid = raw_session(&w.url, &alice);
    let raw = whoami(&w.url, &alice, &sid, 2);
    assert!(raw.contains(r#"\"sub\": \"alice\""#), "{raw}");
    // And everyone at once.
    let o = operator_cli_env(w.dir.path(), &["auth", "logout", "secure"], &env);
    assert!(o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("signed out of `secure`"),
        "{o:?}"
    );
    let o = operator_cli_env(w.dir.path(), &["auth", "list"], &env);
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("secure: each person signs in for themselves (0 signed in)"),
        "{o:?}"
    );
    // Neither person's own token reached the upstream; no token in the logs.
    let log = std::fs::read_to_string(&token_log).unwrap();
    for own in [&alice, &bob] {
        assert!(
            !log.contains(&digest12(own)),
            "a caller's own token reached the upstream"
        );
    }
    let logs = w.logs();
    for secret in ["eyJ", "code=", client_secret.as_str()] {
        assert!(!logs.contains(secret), "{secret} in the log");
    }
    assert!(
        logs.contains("a sign-in link was opened by another person than the one whose call asked"),
        "{logs}"
    );
    assert_eq!(
        logs.matches("a person signed in to an upstream for themselves")
            .count(),
        2,
        "{logs}"
    );
}

/// mcp-warden publishes its client ID metadata document at the path of `client_metadata_url`
/// (what an authorization server that takes URL client ids fetches), and only there.
#[test]
fn the_client_metadata_document_is_published() {
    let w = HttpProxy::start(
        r#"[proxy]
public_url = "https://warden.example.com"

[upstreams.remote]
url = "https://mcp.example.com/mcp"
oauth = { client_metadata_url = "https://warden.example.com/oauth/client.json" }
"#,
    );
    let base = w.url.trim_end_matches("/mcp").to_string();
    let r = http()
        .get(format!("{base}/oauth/client.json"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(
        doc["client_id"],
        "https://warden.example.com/oauth/client.json"
    );
    assert_eq!(doc["token_endpoint_auth_method"], "none");
    assert_eq!(
        doc["redirect_uris"],
        json!([
            "http://127.0.0.1/callback",
            "https://warden.example.com/oauth/callback"
        ])
    );
    let r = http()
        .get(format!("{base}/oauth/other.json"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
}
