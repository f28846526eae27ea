//! The upgrade request to the upstream, on a connection of its own.
//!
//! Why not the pool: a connection that switches protocols is never an HTTP connection
//! again, and one that does not (the upstream declined) is used for that one response only,
//! so nothing would come back to the pool. hyper's client connection with upgrades reads
//! the response head and hands over the socket, with any bytes the upstream sent after its
//! `101`, through `hyper::upgrade::on`.

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::request_body::RequestBody;
use crate::upstream::{Lease, UpstreamError};
use crate::upstream_tls::UpstreamTls;

/// Sends the upgrade request `req` (absolute URI: its authority is the endpoint) on a new
/// connection, opened within `connect_timeout`, and returns the response head. The
/// connection's task runs until the upgrade is handed over or the response ends.
pub(crate) async fn send(
    mut req: Request<RequestBody>,
    connect_timeout: Duration,
    tls: Option<&UpstreamTls>,
) -> Result<(Response<Incoming>, Option<Lease>), UpstreamError> {
    let authority = req
        .uri()
        .authority()
        .cloned()
        .unwrap_or_else(|| Authority::from_static("localhost"));
    let connect_err = |source| UpstreamError::Connect {
        authority: authority.clone(),
        source,
    };
    let tcp =
        match tokio::time::timeout(connect_timeout, TcpStream::connect(authority.as_str())).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(connect_err(e)),
            Err(_) => return Err(connect_err(std::io::ErrorKind::TimedOut.into())),
        };
    let _ = tcp.set_nodelay(true);
    // Origin form and a `Host` (the route may not preserve the client's).
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(pq);
    if !req.headers().contains_key(header::HOST)
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().insert(header::HOST, v);
    }
    match tls {
        None => exchange(tcp, req).await,
        Some(tls) => {
            let host = authority.host().to_owned();
            let stream = tls.connect(&host, tcp).await.map_err(connect_err)?;
            exchange(stream, req).await
        }
    }
}

/// Sends `req` on `io` with hyper's client connection, upgrades allowed.
async fn exchange<T>(
    io: T,
    req: Request<RequestBody>,
) -> Result<(Response<Incoming>, Option<Lease>), UpstreamError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(UpstreamError::Request)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upgrade connection to the upstream ended");
        }
    });
    let resp = sender
        .send_request(req)
        .await
        .map_err(UpstreamError::Request)?;
    Ok((resp, None))
}
