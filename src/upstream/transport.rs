//! How requests reach a Streamable HTTP upstream: hyper's pooled client directly, or reqwest
//! where its extras are needed.
//!
//! reqwest costs every request a re-parse of its URL (its redirect layer turns the request URI
//! back into a `Url`), a retry layer and a header-map clone: about a tenth of the proxy's CPU
//! per call with an HTTP upstream. An MCP endpoint needs none of that, so requests go through
//! hyper-util's client (the one reqwest wraps) with rustls and the same web PKI roots. reqwest is
//! kept for what it adds: an HTTP(S) proxy from the environment, and credentials written in the
//! URL (sent as Basic authentication).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};

type Direct = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub(crate) enum Transport {
    Direct {
        client: Box<Direct>,
        uri: hyper::Uri,
    },
    Reqwest {
        client: reqwest::Client,
        url: reqwest::Url,
    },
}

/// Environment variables reqwest reads for a proxy.
const PROXY_VARS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

impl Transport {
    pub(crate) fn new(
        url: &reqwest::Url,
        tls: Option<&crate::config::UpstreamTls>,
    ) -> Result<Transport, String> {
        let proxied = PROXY_VARS
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
        let credentials = !url.username().is_empty() || url.password().is_some();
        if proxied || credentials {
            return Ok(Transport::Reqwest {
                client: super::http::client_with(tls)?,
                url: url.clone(),
            });
        }
        let uri: hyper::Uri = url.as_str().parse().map_err(|e| format!("{e}"))?;
        Ok(Transport::Direct {
            client: Box::new(direct_client(crate::tls::client_config(tls)?)),
            uri,
        })
    }

    /// Sends one request. `Err` says what went wrong without the URL (which may carry a key in
    /// its query).
    pub(crate) async fn send(
        &self,
        method: Method,
        headers: HeaderMap,
        body: Bytes,
        limit: Option<Duration>,
    ) -> Result<Response, String> {
        match self {
            Transport::Direct { client, uri } => {
                let mut req = hyper::Request::new(Full::new(body));
                *req.method_mut() = method;
                *req.uri_mut() = uri.clone();
                *req.headers_mut() = headers;
                let sent = client.request(req);
                let resp = match limit {
                    Some(d) => tokio::time::timeout(d, sent)
                        .await
                        .map_err(|_| "timed out".to_string())?,
                    None => sent.await,
                };
                resp.map(Response::Direct).map_err(|e| {
                    if e.is_connect() {
                        "connection failed".to_string()
                    } else {
                        "request failed".to_string()
                    }
                })
            }
            Transport::Reqwest { client, url } => {
                let mut rb = client.request(method, url.clone()).headers(headers);
                if !body.is_empty() {
                    rb = rb.body(body);
                }
                if let Some(d) = limit {
                    rb = rb.timeout(d);
                }
                rb.send()
                    .await
                    .map(Response::Reqwest)
                    .map_err(|e| without_url(&e))
            }
        }
    }
}

/// hyper-util's pooled client over rustls (`tls`: by default the web PKI roots, what reqwest's
/// `rustls-tls` uses), HTTP/1.1 or HTTP/2 as ALPN settles, plain HTTP allowed.
fn direct_client(tls: rustls::ClientConfig) -> Direct {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(https)
}

pub(crate) enum Response {
    Direct(hyper::Response<hyper::body::Incoming>),
    Reqwest(reqwest::Response),
}

impl Response {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Response::Direct(r) => r.status(),
            Response::Reqwest(r) => r.status(),
        }
    }

    pub(crate) fn headers(&self) -> &HeaderMap {
        match self {
            Response::Direct(r) => r.headers(),
            Response::Reqwest(r) => r.headers(),
        }
    }

    pub(crate) fn header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.headers().get(name)
    }

    pub(crate) fn content_length(&self) -> Option<u64> {
        match self {
            Response::Direct(r) => hyper::body::Body::size_hint(r.body()).exact(),
            Response::Reqwest(r) => r.content_length(),
        }
    }

    /// The next piece of the body; `None` at its end.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>, String> {
        match self {
            Response::Direct(r) => loop {
                match r.body_mut().frame().await {
                    None => return Ok(None),
                    Some(Err(_)) => return Err("bad response body".to_string()),
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            if !data.is_empty() {
                                return Ok(Some(data));
                            }
                        }
                    }
                }
            },
            Response::Reqwest(r) => r.chunk().await.map_err(|e| without_url(&e)),
        }
    }
}

/// What went wrong with a reqwest request, without its URL.
pub(crate) fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "bad response body"
    } else {
        "request failed"
    };
    kind.to_string()
}
