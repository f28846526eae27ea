//! TLS to upstreams: `https://` upstreams, verified against the system's roots and/or a CA
//! file, with SNI (the upstream's host, or `server_name`) and an optional client
//! certificate; rustls on ring, as the listener.
//!
//! ```toml
//! [[route]]
//! upstream = "https://api.internal:8443"
//! [route.tls]
//! ca = "/etc/tailwater/internal-ca.pem"  # added to the system roots (system_roots = true)
//! server_name = "api.internal"           # SNI and the name verified (default: the host)
//! cert = "/etc/tailwater/proxy.pem"      # optional client certificate …
//! key = "/etc/tailwater/proxy.key"       # … and its key
//! ```
//!
//! Every file is read when the route table is built, at start and on every reload
//! (SIGHUP), so a renewed CA or client certificate takes effect with the reload, and a bad
//! file refuses the configuration with the field and file:line (keeping the running one).
//! There is no setting that skips verification.
//!
//! Requests to `https://` upstreams go through hyper's client with a TLS connector (pooled
//! keep-alive connections per route); the lean HTTP/1.1 path hands them to hyper. HTTP/1.1
//! only (`protocol = "http1"`): the connector offers ALPN `http/1.1`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::ConfigError;
pub use crate::config::tls::UpstreamTlsSettings;

/// hyper's pooling client over [`HttpsConnector`], one per `https://` route.
pub(crate) type TlsClient =
    hyper_util::client::legacy::Client<HttpsConnector, crate::request_body::RequestBody>;

/// The TLS client of one route: the rustls configuration and the name to verify.
#[derive(Clone)]
pub(crate) struct UpstreamTls {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// The system's trust roots, loaded once per process (reading them takes milliseconds
/// and they do not change under a running proxy).
fn system_roots() -> &'static [rustls::pki_types::CertificateDer<'static>] {
    static ROOTS: std::sync::OnceLock<Vec<rustls::pki_types::CertificateDer<'static>>> =
        std::sync::OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

impl UpstreamTls {
    /// Builds the TLS client of route `prefix` (`route[i]`) from `settings` (defaults when
    /// the route has no `[route.tls]`): reads every file now. Errors name the field.
    pub(crate) fn build(
        prefix: &str,
        settings: Option<&UpstreamTlsSettings>,
    ) -> Result<Self, ConfigError> {
        let default = UpstreamTlsSettings::default();
        let s = settings.unwrap_or(&default);
        let field = |f: &str| format!("{prefix}.tls.{f}");
        let mut roots = RootCertStore::empty();
        if s.system_roots {
            roots.add_parsable_certificates(system_roots().iter().cloned());
        }
        if let Some(ca) = &s.ca {
            let chain = crate::tls::read_chain(&field("ca"), ca)?;
            let (added, _) = roots.add_parsable_certificates(chain);
            if added == 0 {
                return Err(ConfigError::new(
                    field("ca"),
                    format!("{}: no usable CA certificate", ca.display()),
                ));
            }
        } else if !s.system_roots {
            return Err(ConfigError::new(
                field("ca"),
                "is required when system_roots = false (nothing would be trusted)",
            ));
        }
        if roots.is_empty() {
            return Err(ConfigError::new(
                field("system_roots"),
                "the system has no trust roots: set `ca`",
            ));
        }
        let builder = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new(format!("{prefix}.tls"), e))?
            .with_root_certificates(roots);
        let mut config = match (&s.cert, &s.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = crate::tls::read_chain(&field("cert"), cert)?;
                let der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    ConfigError::new(field("key"), format!("{}: {e}", key.display()))
                })?;
                builder.with_client_auth_cert(chain, der).map_err(|e| {
                    ConfigError::new(
                        field("key"),
                        format!("{} does not fit {}: {e}", key.display(), cert.display()),
                    )
                })?
            }
            (Some(_), None) => {
                return Err(ConfigError::new(field("key"), "is required with `cert`"));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(field("cert"), "is required with `key`"));
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name = match &s.server_name {
            None => None,
            Some(n) => Some(
                ServerName::try_from(n.clone())
                    .map_err(|e| ConfigError::new(field("server_name"), format!("`{n}`: {e}")))?,
            ),
        };
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// Opens TLS over `tcp` to `host` (or the configured `server_name`), verifying the
    /// upstream's certificate.
    pub(crate) async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                ServerName::try_from(bare.to_owned()).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
                })?
            }
        };
        self.connector.connect(name, tcp).await
    }
}

impl UpstreamTls {
    /// The pooling client of a route whose upstreams are `https://`, with the timeouts and
    /// pool settings of `[upstream]`.
    pub(crate) fn client(&self, u: &crate::config::UpstreamConfig) -> TlsClient {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(u.connect_timeout));
        http.set_nodelay(true);
        let connector = HttpsConnector {
            http,
            tls: self.clone(),
        };
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(u.pool_max_idle_per_host)
            .pool_idle_timeout(u.pool_idle_timeout)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .build(connector)
    }
}

/// hyper-util's connector for `https://` upstreams: TCP (with the route's connect timeout
/// and `TCP_NODELAY`), then TLS.
#[derive(Debug, Clone)]
pub(crate) struct HttpsConnector {
    pub(crate) http: HttpConnector,
    pub(crate) tls: UpstreamTls,
}

impl tower::Service<Uri> for HttpsConnector {
    type Response = TlsConn;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<TlsConn>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().to_owned();
            // The TCP connector wants an `http://` URI with the port stated.
            let port = uri.port_u16().unwrap_or(443);
            let plain: Uri = format!("http://{host}:{port}/")
                .parse()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tcp = tower::Service::call(&mut http, plain)
                .await
                .map_err(std::io::Error::other)?
                .into_inner();
            let stream = tls.connect(&host, tcp).await?;
            Ok(TlsConn {
                inner: TokioIo::new(stream),
            })
        })
    }
}

pin_project_lite::pin_project! {
    /// A TLS connection to an upstream, as hyper's client uses it.
    #[derive(Debug)]
    pub(crate) struct TlsConn {
        #[pin]
        inner: TokioIo<TlsStream<TcpStream>>,
    }
}

impl Connection for TlsConn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
