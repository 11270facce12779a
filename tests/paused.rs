//! The proxy run in-process on paused time: what depends on minutes of idleness is checked at
//! its real configured values, without waiting for them.
//!
//! No upstreams here (a child's I/O would let the paused clock jump past its start-up timeout);
//! the agent side is real HTTP on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::Arc;
use std::time::Duration;

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"paused","version":"1"}}}"#;

struct Front {
    url: String,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Front {
    async fn start(proxy_section: &str) -> Front {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[proxy]\nauth = \"none\"\nstate_dir = {:?}\n{proxy_section}\n[upstreams.off]\ncommand = \"true\"\nenabled = false\n",
            dir.path().display().to_string()
        );
        let cfg = mcp_warden::Config::parse(&text, &|_| None).unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", tcp.local_addr().unwrap());
        let listener = mcp_warden::tls::FrontListener::new(tcp, None).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(mcp_warden::serve_http(
            Arc::new(cfg),
            listener,
            None,
            async move {
                let _ = stopped.await;
            },
        ));
        Front {
            url,
            // A new connection per request: the front closes idle keep-alive connections, and
            // a pooled one would race its close across a jump of the clock.
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            stop: Some(stop),
            server,
            _dir: dir,
        }
    }

    async fn post(&self, session: Option<&str>, body: &str) -> reqwest::Response {
        let mut rb = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(s) = session {
            rb = rb
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        rb.send().await.unwrap()
    }

    async fn open_session(&self) -> String {
        let r = self.post(None, INIT).await;
        assert_eq!(r.status(), 200);
        r.headers()["mcp-session-id"].to_str().unwrap().to_string()
    }

    async fn ping(&self, session: &str) -> u16 {
        self.post(Some(session), r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#)
            .await
            .status()
            .as_u16()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.server.await.unwrap().unwrap();
    }
}

/// The default idle timeout (300 s): a session used within it lives on, one left idle longer
/// is gone (404, so the client initialises again), and activity restarts the clock.
#[tokio::test(start_paused = true)]
async fn idle_sessions_expire_at_the_default_timeout_and_activity_keeps_them() {
    let front = Front::start("").await;
    let kept = front.open_session().await;
    let left = front.open_session().await;
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(200)).await;
        assert_eq!(front.ping(&kept).await, 200, "used every 200 s");
    }
    // 600 s since `left` was last used, and two reaper rounds (every 30 s) since.
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(front.ping(&left).await, 404, "idle past 300 s");
    assert_eq!(front.ping(&kept).await, 200);
    tokio::time::advance(Duration::from_secs(331)).await;
    assert_eq!(front.ping(&kept).await, 404, "idle past 300 s at last");
    front.stop().await;
}

/// A configured timeout is honoured to the reaper's resolution (a quarter of it).
#[tokio::test(start_paused = true)]
async fn a_configured_idle_timeout_is_honoured() {
    let front = Front::start("session_idle_timeout_secs = 3600").await;
    let s = front.open_session().await;
    tokio::time::advance(Duration::from_secs(3500)).await;
    assert_eq!(front.ping(&s).await, 200, "within the hour");
    tokio::time::advance(Duration::from_secs(3600 + 30 + 1)).await;
    assert_eq!(front.ping(&s).await, 404, "idle for over an hour");
    front.stop().await;
}
