//! Client connections to the proxy over plain TCP or TLS (the test certificates of
//! `tailwater_test::tls_dir()`), so that raw-byte tests run on both transports.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How a test client reaches the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Plain,
    /// TLS with ALPN `http/1.1` (the lean path serves it like a plain connection).
    Tls,
    /// TLS without ALPN (served as HTTP/1.1 too).
    TlsNoAlpn,
}

impl Transport {
    pub fn is_tls(self) -> bool {
        self != Transport::Plain
    }

    /// The `[server.tls]` section for a proxy this transport reaches (empty for plain).
    pub fn server_toml(self) -> String {
        if !self.is_tls() {
            return String::new();
        }
        let dir = tailwater_test::tls_dir();
        format!(
            "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        )
    }
}

/// A client connection over either transport.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The client configuration trusting the test CA, with `alpn` offered.
pub fn client_config(alpn: &[&[u8]]) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(tailwater_test::tls_dir().join("ca.pem")).expect("ca") {
        roots.add(c.expect("cert")).expect("root");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg
}

/// Connects to the proxy at `addr` over `transport` (handshake done for TLS).
pub async fn connect(addr: SocketAddr, transport: Transport) -> io::Result<Stream> {
    let tcp = TcpStream::connect(addr).await?;
    let alpn: &[&[u8]] = match transport {
        Transport::Plain => return Ok(Stream::Plain(tcp)),
        Transport::Tls => &[b"http/1.1"],
        Transport::TlsNoAlpn => &[],
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(alpn)));
    let name = ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await?;
    Ok(Stream::Tls(Box::new(tls)))
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
