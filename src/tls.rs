//! The HTTP front's listener: plain TCP on loopback, or TLS (rustls) with optional client
//! certificates (mTLS). Certificates and keys are re-read when their files change. Handshakes
//! run concurrently (with a deadline), so a slow or silent client cannot hold the accept loop.
//!
//! Each connection carries a [`Peer`]: its address and, with mTLS, the client certificate that
//! the TLS layer verified against the configured CA. `crate::identity` maps that
//! certificate to an agent (by the DNS names it is valid for).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::config::TlsSettings;

const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
const MAX_PENDING_HANDSHAKES: usize = 1024;

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The verified client certificate (mTLS), if any.
    pub client_cert: Option<Arc<CertificateDer<'static>>>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, FrontListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, FrontListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A byte stream of either kind.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

/// The rustls client configuration towards an HTTPS upstream: its `ca` instead of the web PKI
/// roots when given, and its client certificate when given.
pub fn client_config(
    tls: Option<&crate::config::UpstreamTls>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match tls.and_then(|t| t.ca.as_ref()) {
        Some(ca) => {
            for c in load_certs(ca)? {
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    match tls.and_then(|t| t.cert.as_ref().zip(t.key.as_ref())) {
        Some((cert, key)) => {
            let chain = load_certs(cert)?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{}: {e}", cert.display()))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Builds the rustls server configuration from the files named in the config.
pub fn server_config(s: &TlsSettings) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = load_certs(&s.cert)?;
    let key =
        PrivateKeyDer::from_pem_file(&s.key).map_err(|e| format!("{}: {e}", s.key.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &s.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(ca)? {
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if s.require_client_cert {
                verifier.build()
            } else {
                verifier.allow_unauthenticated().build()
            }
            .map_err(|e| e.to_string())?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

struct Tls {
    settings: TlsSettings,
    config: RwLock<Arc<rustls::ServerConfig>>,
    stamps: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Tls {
    /// The current configuration, re-read if the certificate or key file changed (a bad new
    /// pair is logged and the old one kept).
    fn current(&self) -> Arc<rustls::ServerConfig> {
        let now = (mtime(&self.settings.cert), mtime(&self.settings.key));
        let changed = *self.stamps.read().unwrap_or_else(|p| p.into_inner()) != now;
        if changed {
            *self.stamps.write().unwrap_or_else(|p| p.into_inner()) = now;
            match server_config(&self.settings) {
                Ok(c) => {
                    tracing::info!("TLS certificate reloaded");
                    *self.config.write().unwrap_or_else(|p| p.into_inner()) = c;
                }
                Err(e) => {
                    tracing::error!("TLS certificate reload failed, keeping the previous one: {e}")
                }
            }
        }
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The front's listener.
pub struct FrontListener {
    tcp: TcpListener,
    tls: Option<Arc<Tls>>,
    handshakes: JoinSet<Option<(Box<dyn Io>, Peer)>>,
}

impl FrontListener {
    pub fn new(tcp: TcpListener, tls: Option<&TlsSettings>) -> Result<FrontListener, String> {
        let tls = match tls {
            Some(s) => Some(Arc::new(Tls {
                config: RwLock::new(server_config(s)?),
                stamps: RwLock::new((mtime(&s.cert), mtime(&s.key))),
                settings: s.clone(),
            })),
            None => None,
        };
        Ok(FrontListener {
            tcp,
            tls,
            handshakes: JoinSet::new(),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    fn start(&mut self, stream: TcpStream, addr: SocketAddr) {
        // Small SSE events must not wait for the client's delayed ACK (Nagle).
        let _ = stream.set_nodelay(true);
        let Some(tls) = self.tls.clone() else {
            let peer = Peer {
                addr,
                client_cert: None,
            };
            self.handshakes
                .spawn(async move { Some((Box::new(stream) as Box<dyn Io>, peer)) });
            return;
        };
        if self.handshakes.len() >= MAX_PENDING_HANDSHAKES {
            tracing::warn!(peer = %addr, "too many TLS handshakes in progress; connection dropped");
            return;
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(stream)).await {
                Ok(Ok(s)) => {
                    let client_cert = s
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| Arc::new(c.clone().into_owned()));
                    Some((Box::new(s) as Box<dyn Io>, Peer { addr, client_cert }))
                }
                Ok(Err(e)) => {
                    tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(peer = %addr, "TLS handshake timed out");
                    None
                }
            }
        });
    }
}

impl axum::serve::Listener for FrontListener {
    type Io = Box<dyn Io>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                r = self.tcp.accept() => match r {
                    Ok((s, a)) => self.start(s, a),
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.tcp.local_addr()?,
            client_cert: None,
        })
    }
}

/// Names (DNS SANs) a client certificate is valid for, checked one by one against `names`.
pub fn cert_matches(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    let Ok(server_name) = rustls_pki_types::ServerName::try_from(name) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&server_name).is_ok()
}
