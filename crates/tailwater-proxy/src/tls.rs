//! TLS on the proxy's listener: rustls on ring (no OpenSSL), certificates per server name
//! (SNI) with a default, ALPN `h2` and `http/1.1`, optional client-certificate verification,
//! and reload with the configuration (SIGHUP): new handshakes use the new certificates,
//! connections already open keep theirs.
//!
//! After the handshake, a connection whose ALPN chose `http/1.1` (or that offered no ALPN)
//! is served by the lean HTTP/1.1 path like a plain one (`server.lean_http1`), with the
//! same framing defences, limits and timeouts; one that chose `h2` by hyper. The handshake
//! and the first request head together must arrive within `server.header_read_timeout` of
//! the accept, so a client that stalls mid-handshake cannot hold its slot.
//!
//! ```toml
//! [server.tls]
//! cert = "/etc/tailwater/example.com.pem"     # chain, leaf first
//! key = "/etc/tailwater/example.com.key"      # PKCS#8, PKCS#1 or SEC1
//! client_ca = "/etc/tailwater/clients-ca.pem" # optional: require client certificates
//!
//! [[server.tls.sni]]
//! name = "api.example.com"
//! cert = "/etc/tailwater/api.pem"
//! key = "/etc/tailwater/api.key"
//! ```

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ResolvesServerCertUsingSni, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::ConfigError;
pub use crate::config::tls::{SniCert, TlsSettings};

/// rustls on ring, for the listener and the upstreams.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The PEM certificates of `path` (at least one); errors name `field` and the file.
pub(crate) fn read_chain(
    field: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let shown = path.display();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| ConfigError::new(field, format!("{shown}: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| ConfigError::new(field, format!("{shown}: {e}")))?;
    if chain.is_empty() {
        return Err(ConfigError::new(
            field,
            format!("{shown}: no PEM certificate in it"),
        ));
    }
    Ok(chain)
}

fn certified_key(
    prefix: &str,
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, ConfigError> {
    let chain = read_chain(&format!("{prefix}.cert"), cert)?;
    let key_field = format!("{prefix}.key");
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ConfigError::new(&key_field, format!("{}: {e}", key.display())))?;
    let certified = CertifiedKey::from_der(chain, der, provider).map_err(|e| {
        ConfigError::new(
            &key_field,
            format!("{} does not fit {}: {e}", key.display(), cert.display()),
        )
    })?;
    Ok(certified)
}

/// Resolves the certificate by SNI, falling back to the default one.
#[derive(Debug)]
struct Resolver {
    by_name: ResolvesServerCertUsingSni,
    default: Arc<CertifiedKey>,
}

impl rustls::server::ResolvesServerCert for Resolver {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if hello.server_name().is_some()
            && let Some(k) = self.by_name.resolve(hello)
        {
            return Some(k);
        }
        Some(Arc::clone(&self.default))
    }
}

/// A TLS acceptor (cheap to clone: the configuration is shared).
#[derive(Clone)]
pub(crate) struct Acceptor(pub(crate) TlsAcceptor);

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acceptor")
    }
}

/// Builds the acceptor for `settings`: reads and checks every file now, so a bad
/// certificate refuses the configuration (at start or on reload, keeping the running one)
/// instead of failing handshakes later. Errors name the field (`server.tls.sni[1].key`).
pub(crate) fn acceptor(settings: &TlsSettings) -> Result<Acceptor, ConfigError> {
    let provider = provider();
    let default = certified_key("server.tls", &settings.cert, &settings.key, &provider)?;
    let mut by_name = ResolvesServerCertUsingSni::new();
    for (i, sni) in settings.sni.iter().enumerate() {
        let prefix = format!("server.tls.sni[{i}]");
        let key = certified_key(&prefix, &sni.cert, &sni.key, &provider)?;
        by_name
            .add(&sni.name.to_ascii_lowercase(), key)
            .map_err(|e| ConfigError::new(format!("{prefix}.name"), e))?;
    }
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("server.tls", e))?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            let (added, _) =
                roots.add_parsable_certificates(read_chain("server.tls.client_ca", path)?);
            if added == 0 {
                return Err(ConfigError::new(
                    "server.tls.client_ca",
                    format!("{}: no usable CA certificate", path.display()),
                ));
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| ConfigError::new("server.tls.client_ca", e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(Resolver {
        by_name,
        default: Arc::new(default),
    }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Acceptor(TlsAcceptor::from(Arc::new(config))))
}

/// Runs the TLS handshake of a new connection within `timeout` (a client that stalls in it
/// cannot hold its slot); `None` when it failed or timed out (both counted in
/// `tailwater_tls_handshake_failures_total`) or the worker started draining.
pub(crate) async fn handshake(
    peer: std::net::SocketAddr,
    failures: &std::sync::atomic::AtomicU64,
    acceptor: &Acceptor,
    stream: tokio::net::TcpStream,
    timeout: std::time::Duration,
    drain: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let failed = |why: &dyn std::fmt::Display| {
        tracing::debug!(%peer, error = %why, "TLS handshake failed");
        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    tokio::select! {
        r = tokio::time::timeout(timeout, acceptor.0.accept(stream)) => match r {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                failed(&e);
                None
            }
            Err(_) => {
                failed(&"timed out");
                None
            }
        },
        _ = drain.wait_for(|d| *d) => None,
    }
}
