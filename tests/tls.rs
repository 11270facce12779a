//! TLS and mTLS on the HTTP front, from the attacker's side: no certificate, a certificate from
//! another CA, a certificate that contradicts the token, plain HTTP to the TLS port; and a
//! certificate change picked up without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

/// (certificate PEM, key PEM) for `names`, signed by `ca`.
fn leaf(ca: &Ca, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn client(root: &str, identity: Option<&(String, String)>) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap())
        .timeout(std::time::Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn init(
    c: &reqwest::blocking::Client,
    url: &str,
    token: Option<&str>,
) -> Result<reqwest::blocking::Response, reqwest::Error> {
    let mut rb = c
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INIT);
    if let Some(t) = token {
        rb = rb.header("authorization", format!("Bearer {t}"));
    }
    rb.send()
}

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    router: (String, String),
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("mcp-warden test CA");
    let server = leaf(&ca, &["localhost", "127.0.0.1"]);
    std::fs::write(dir.path().join("server.pem"), &server.0).unwrap();
    std::fs::write(dir.path().join("server.key"), &server.1).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
    let router = leaf(&ca, &["router.agents.test"]);
    Pki { dir, ca, router }
}

fn tls_config(p: &Pki, require: bool) -> String {
    let d = p.dir.path().display().to_string();
    format!(
        "[proxy.tls]\ncert = \"{d}/server.pem\"\nkey = \"{d}/server.key\"\nclient_ca = \"{d}/ca.pem\"\nrequire_client_cert = {require}\n\
         [agents.router]\ncert_names = [\"router.agents.test\"]\ntools.allow = [\"echo\"]\n\
         [agents.specialist]\ntoken_env = \"SPECIALIST_TOKEN\"\ntools.allow = [\"*\"]\n{}",
        demo_upstream("demo", &[])
    )
}

const SPECIALIST: &str = "specialist-token-0123456789abcdef";

#[test]
fn mtls_client_certificate_identifies_the_agent_and_nothing_can_contradict_it() {
    let p = pki();
    let proxy = HttpProxy::start_raw(&tls_config(&p, false), &[("SPECIALIST_TOKEN", SPECIALIST)]);
    assert!(proxy.url.starts_with("https://"), "{}", proxy.url);
    let root = p.ca.cert.pem();
    // The router's certificate alone identifies it: it sees only its tool.
    let c = client(&root, Some(&p.router));
    let r = init(&c, &proxy.url, None).unwrap();
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let list = c
        .post(&proxy.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &sid)
        .header("x-agent-id", "specialist")
        .body(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
        .send()
        .unwrap();
    let v = messages(list).pop().unwrap();
    let names: Vec<&str> = v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["echo"]);
    // The router's certificate with the specialist's token: contradictory, refused.
    assert_eq!(
        init(&c, &proxy.url, Some(SPECIALIST)).unwrap().status(),
        401
    );
    // No certificate: the token decides (client certificates are optional here).
    let anon = client(&root, None);
    assert_eq!(init(&anon, &proxy.url, None).unwrap().status(), 401);
    assert_eq!(
        init(&anon, &proxy.url, Some(SPECIALIST)).unwrap().status(),
        200
    );
    // A certificate from another CA never completes the handshake.
    let rogue_ca = ca("rogue CA");
    let rogue = leaf(&rogue_ca, &["router.agents.test"]);
    assert!(init(&client(&root, Some(&rogue)), &proxy.url, None).is_err());
    // Plain HTTP to the TLS port is not served.
    let plain = proxy.url.replace("https://", "http://");
    assert!(http()
        .post(&plain)
        .body(INIT)
        .send()
        .map(|r| !r.status().is_success())
        .unwrap_or(true));
}

#[test]
fn required_client_certificate_and_certificate_reload() {
    let p = pki();
    let proxy = HttpProxy::start_raw(&tls_config(&p, true), &[("SPECIALIST_TOKEN", SPECIALIST)]);
    let root = p.ca.cert.pem();
    // Without a certificate, even the right token cannot connect.
    assert!(init(&client(&root, None), &proxy.url, Some(SPECIALIST)).is_err());
    assert_eq!(
        init(&client(&root, Some(&p.router)), &proxy.url, None)
            .unwrap()
            .status(),
        200
    );
    // Replace the server certificate with one from a new CA: new connections use it at once.
    let new_ca = ca("renewed CA");
    let renewed = leaf(&new_ca, &["localhost", "127.0.0.1"]);
    std::fs::write(p.dir.path().join("server.key"), &renewed.1).unwrap();
    std::fs::write(p.dir.path().join("server.pem"), &renewed.0).unwrap();
    // A distinct modification time, as a renewal a second or more later has.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
    for f in ["server.key", "server.pem"] {
        std::fs::File::options()
            .write(true)
            .open(p.dir.path().join(f))
            .unwrap()
            .set_modified(later)
            .unwrap();
    }
    let new_root = new_ca.cert.pem();
    // The client certificate is still checked against the configured client CA (unchanged).
    eventually(
        std::time::Duration::from_secs(10),
        "renewed certificate served",
        || {
            init(&client(&new_root, Some(&p.router)), &proxy.url, None)
                .is_ok_and(|r| r.status() == 200)
        },
    );
    assert!(
        init(&client(&root, Some(&p.router)), &proxy.url, None).is_err(),
        "the old certificate is gone"
    );
}

#[test]
fn tls_listener_may_leave_loopback_without_the_dangerous_flag() {
    let p = pki();
    let proxy = HttpProxy::start_raw_listen(
        &tls_config(&p, false),
        &[("SPECIALIST_TOKEN", SPECIALIST)],
        "0.0.0.0:0",
    );
    assert!(proxy.url.starts_with("https://0.0.0.0:"), "{}", proxy.url);
}

/// An HTTPS upstream is trusted only through the web PKI: a server whose certificate comes
/// from a private CA (here: another mcp-warden's TLS front) is never talked to, and nothing
/// falls back to plain HTTP. The same upstream over plain HTTP is the control.
#[test]
fn https_upstream_with_an_untrusted_certificate_is_refused() {
    let p = pki();
    let tls_front =
        HttpProxy::start_raw(&tls_config(&p, false), &[("SPECIALIST_TOKEN", SPECIALIST)]);
    let port = port_of(&tls_front.url);
    let plain_front = HttpProxy::start(&demo_upstream("demo", &[]));
    let behind = |url: &str| {
        HttpProxy::start(&format!(
            "[upstreams.far]\nurl = \"{url}\"\nheaders = {{ Authorization = \"Bearer {SPECIALIST}\" }}\n"
        ))
    };
    // Control: reachable and trusted, its tools show.
    let control = behind(&plain_front.url);
    assert!(tool_names(&control.url)
        .iter()
        .any(|n| n == "echo" || n == "far__echo"));
    // A private CA's certificate on localhost: the handshake fails, no tools, the proxy says why.
    let refused = behind(&format!("https://localhost:{port}/mcp"));
    assert!(tool_names(&refused.url).is_empty());
    let log = refused.stderr.lock().unwrap().clone();
    assert!(log.contains("connection failed"), "{log}");
}

/// `[upstreams.NAME.tls]`: an upstream on a private PKI is trusted through its CA, and a client
/// certificate makes the far side see us as the agent that certificate names (here: a second
/// mcp-warden whose TLS front requires client certificates, where `router` may see only
/// `echo`). Without the certificate that front refuses the handshake.
#[test]
fn https_upstream_on_a_private_ca_with_a_client_certificate() {
    let p = pki();
    let tls_front =
        HttpProxy::start_raw(&tls_config(&p, true), &[("SPECIALIST_TOKEN", SPECIALIST)]);
    let port = port_of(&tls_front.url);
    let d = p.dir.path().display().to_string();
    std::fs::write(p.dir.path().join("router.pem"), &p.router.0).unwrap();
    std::fs::write(p.dir.path().join("router.key"), &p.router.1).unwrap();
    let behind = |tls: &str| {
        HttpProxy::start(&format!(
            "[upstreams.far]\nurl = \"https://localhost:{port}/mcp\"\ntls = {{ {tls} }}\n"
        ))
    };
    // The private CA, and the router's certificate: exactly what the far side lets `router` see.
    let mtls = behind(&format!(
        "ca = \"{d}/ca.pem\", cert = \"{d}/router.pem\", key = \"{d}/router.key\""
    ));
    let names = tool_names(&mtls.url);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with("echo"), "{names:?}");
    let sid = open_session(&mtls.url);
    let v = messages(post(
        &mtls.url,
        Some(&sid),
        &format!(
            r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"{}","arguments":{{"message":"over mTLS"}}}}}}"#,
            names[0]
        ),
    ))
    .pop()
    .unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "over mTLS", "{v}");
    // The CA alone: the far side requires a client certificate, so nothing comes through.
    let no_cert = behind(&format!("ca = \"{d}/ca.pem\""));
    assert!(tool_names(&no_cert.url).is_empty());
}
