//! HTTP/1.1 `Upgrade` (WebSocket) tunnels through the proxy, bounded every way.
//!
//! # What is tunnelled
//!
//! A request is an upgrade request when it is HTTP/1.1, carries `Upgrade` and names
//! `upgrade` in `Connection` (RFC 9110 §7.8: a sender must send both), and its route has
//! `[route.upgrade]` listing the protocol (default `websocket`). Anything else keeps today's
//! behaviour: `Upgrade` and `Connection` are hop-by-hop, removed, and the request is
//! forwarded as a plain one; a `101` from the upstream is then one nobody asked for and is
//! answered 502. The lean HTTP/1.1 path hands every request carrying `Upgrade` to hyper
//! (`h1::head::Unusual::Upgrade`), so both engines decide here, alike.
//!
//! The upgrade request goes to the upstream on a connection of its own (an upgraded
//! connection never returns to a pool), with `Connection: upgrade` and the one protocol
//! asked for restored after the hop-by-hop removal. Only when the upstream answers `101`
//! with that same protocol does the proxy answer `101` and start copying bytes; any other
//! answer is forwarded as an ordinary response and the client's connection stays HTTP.
//!
//! # What the two ends could disagree about, and the rule for each
//!
//! - **An upgrade request with a body** (`Content-Length` > 0 or `Transfer-Encoding`): one
//!   end could read the body as tunnel bytes and the other as a body. Refused (400, the
//!   connection closed), never forwarded.
//! - **`Connection: upgrade` without `Upgrade`**, or `Upgrade` without `Connection: upgrade`:
//!   not an upgrade; both fields are removed and the request is forwarded as a plain one.
//! - **`CONNECT`** (HTTP/1.1, or HTTP/2 `CONNECT`): a reverse proxy does not open tunnels to
//!   arbitrary authorities. Refused with 405 on both engines, never forwarded. (Extended
//!   CONNECT, RFC 8441, is not enabled on the HTTP/2 listener, so h2 clients cannot ask for
//!   a WebSocket.)
//! - **A `101` the proxy did not ask for**, or one for another protocol than requested: 502,
//!   counted against the upstream; the connection is not switched.
//! - **Bytes pipelined after the upgrade request**: they stay in the client connection's
//!   read buffer until the upstream's answer is known. After a `101` they are the first
//!   tunnel bytes (both ends switched); after any other answer they are parsed as the next
//!   HTTP request, routed and admitted on their own.
//! - **A route without `[route.upgrade]`**, or a protocol it does not list: `Upgrade` is
//!   removed and the request forwarded as a plain one (RFC 9110 §7.8 lets a server ignore
//!   it).
//!
//! # Bounds
//!
//! - Each direction copies through one buffer of `buffer_bytes` (default 8 KiB), allocated
//!   when the tunnel starts: a tunnel holds `2 × buffer_bytes` of proxy memory whatever its
//!   ends do (reported as `tailwater_tunnel_buffer_bytes`), and a slow reader pushes back on
//!   the writer through TCP instead of growing a queue.
//! - `idle_timeout`: a tunnel that moves no byte either way for this long is closed, and so
//!   is one whose upstream accepts no byte for this long while bytes wait for it.
//!   `server.send_timeout` (the bound of every write to a client): a client that accepts no
//!   byte for this long while bytes wait for it is cut, even while it keeps sending.
//! - `max_duration`: a tunnel's total life.
//! - `server.max_tunnels` (default 1024) caps the tunnels open at once, across routes; an
//!   upgrade request beyond it is answered 503 + `Retry-After` without reaching the upstream.
//! - A tunnel keeps its client connection's `server.max_connections` slot for its life, and
//!   a drain closes it at the drain deadline.
//!
//! # Permit policy
//!
//! `permit = "setup"` (the default) holds the route's admission permit only until the
//! upstream answers the upgrade: the limiter learns from the handshake's latency, which is
//! the upstream's work it can judge, and the tunnel's life (minutes or hours) never reaches
//! a latency-based algorithm as a sample, where it would read as overload and collapse the
//! limit for every other request of the route. The tunnels' number is bounded by
//! `server.max_tunnels` instead. `permit = "tunnel"` holds the permit for the tunnel's life
//! (released without a sample), for upstreams where each open tunnel costs a worker: the
//! route's limit then bounds requests and tunnels together.

mod copy;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tailwater_tower::admission::Ticket;
use tailwater_tower::classify::Outcome;

use crate::body::local;
use crate::body::{Guard, ProxyBody};
use crate::conn::{Conn, Shared};
use crate::decision::Decision;

pub use crate::config::upgrade::{PermitPolicy, UpgradeSettings};
pub(crate) use copy::{End, Limits};
pub(crate) use upstream::send;

impl UpgradeSettings {
    /// The copy limits of a tunnel of this route, whose client writes are bounded by
    /// `send_timeout`.
    fn limits(&self, send_timeout: Duration) -> Limits {
        Limits {
            buffer: self.buffer_bytes,
            idle: self.idle_timeout,
            client_stall: send_timeout,
            max: self.max_duration,
        }
    }

    /// Whether `protocol` (an `Upgrade` element, maybe with `/version`) is listed.
    fn allows(&self, protocol: &[u8]) -> bool {
        let name = protocol
            .split(|&b| b == b'/')
            .next()
            .unwrap_or(protocol)
            .trim_ascii();
        self.protocols
            .iter()
            .any(|p| p.as_bytes().eq_ignore_ascii_case(name))
    }
}

/// An upgrade request the proxy will try to tunnel: the protocol asked for, the client
/// side's upgrade, and its place under `server.max_tunnels`.
#[derive(Debug)]
pub(crate) struct Requested {
    protocol: HeaderValue,
    client: OnUpgrade,
    slot: Slot,
}

/// One place under `server.max_tunnels`, given back on drop.
#[derive(Debug)]
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.metrics.tunnels.release();
    }
}

/// The answer to a request the proxy refuses for its method or its upgrade: `None` when
/// it goes on. `CONNECT` (HTTP/1.1 or HTTP/2) is refused with 405 on every route.
pub(crate) fn refuse_method<B>(shared: &Shared, req: &Request<B>) -> Option<Response<ProxyBody>> {
    if req.method() != Method::CONNECT {
        return None;
    }
    shared
        .metrics
        .refused
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut resp = local(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported\n");
    resp.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
    );
    Some(resp)
}

/// Whether `req` is an upgrade request `route` tunnels (see the module docs): `Ok(None)` for
/// a plain request, `Err` with the answer for one that is refused (a body: 400; the tunnel
/// cap reached: 503).
#[allow(clippy::result_large_err)] // the refusal is the response itself, built once
pub(crate) fn requested(
    conn: &Conn,
    settings: Option<&UpgradeSettings>,
    retry_after: Duration,
    req: &mut Request<Incoming>,
) -> Result<Option<Requested>, Response<ProxyBody>> {
    let Some(settings) = settings else {
        return Ok(None);
    };
    let Some(protocol) = asked(req.version(), req.headers()) else {
        return Ok(None);
    };
    if !settings.allows(protocol.as_bytes()) {
        return Ok(None);
    }
    let shared = &conn.shared;
    if has_body(req.headers()) {
        shared
            .metrics
            .refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut resp = local(StatusCode::BAD_REQUEST, "upgrade request with a body\n");
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Err(resp);
    }
    let cap = shared.state.load().config.server.max_tunnels;
    if !shared.metrics.tunnels.reserve(cap) {
        let mut resp = local(StatusCode::SERVICE_UNAVAILABLE, "too many tunnels\n");
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(tailwater_tower::edge::retry_after_secs(retry_after)),
        );
        resp.headers_mut().insert(
            "x-tailwater-rejection",
            HeaderValue::from_static("tunnel_limit"),
        );
        return Err(resp);
    }
    let slot = Slot(Arc::clone(shared));
    let client = hyper::upgrade::on(req);
    Ok(Some(Requested {
        protocol,
        client,
        slot,
    }))
}

/// The one protocol an HTTP/1.1 request asks to upgrade to: exactly one `Upgrade` value
/// with one element, and `upgrade` among the `Connection` options.
fn asked(version: Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if version != Version::HTTP_11 {
        return None;
    }
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|o| o.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    if !connection_upgrade {
        return None;
    }
    let mut values = headers.get_all(header::UPGRADE).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return None;
    };
    let trimmed = v.as_bytes().trim_ascii();
    if trimmed.is_empty() || trimmed.contains(&b',') {
        return None;
    }
    HeaderValue::from_bytes(trimmed).ok()
}

/// Whether the request declares a body (a non-zero `Content-Length`, any
/// `Transfer-Encoding`).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes().trim_ascii() != b"0")
}

impl Requested {
    /// Puts back the fields the hop-by-hop removal took: `Connection: upgrade` and the
    /// protocol asked for (nothing else of the client's `Connection` goes on).
    pub(crate) fn restore(&self, headers: &mut HeaderMap) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, self.protocol.clone());
    }

    /// The upstream answered `101`: checks it switched to the protocol asked for, settles
    /// the permit by `settings.permit`, answers the client `101` and leaves the tunnel on
    /// `conn` to run once hyper hands the connection over. A `101` for another protocol
    /// is answered 502.
    pub(crate) fn start(
        self,
        conn: &Conn,
        settings: &UpgradeSettings,
        mut resp: Response<Incoming>,
        mut guard: Guard,
    ) -> Response<ProxyBody> {
        let switched = resp.headers().get(header::UPGRADE).is_some_and(|v| {
            v.as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(self.protocol.as_bytes())
        });
        if !switched {
            tracing::debug!("upstream switched to another protocol than asked");
            guard.finish(Decision::UpstreamError);
            return local(StatusCode::BAD_GATEWAY, "upstream unavailable\n");
        }
        let upstream = hyper::upgrade::on(&mut resp);
        guard.upstream_status(101);
        let held = match settings.permit {
            PermitPolicy::Setup => {
                guard.finish(Decision::Success);
                None
            }
            PermitPolicy::Tunnel => hold(guard),
        };
        let (parts, _) = resp.into_parts();
        let mut out = Response::new(ProxyBody::local(bytes::Bytes::new()));
        *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        // The upstream's fields (`Sec-WebSocket-Accept`, …) go on; hyper writes no framing
        // for a 101.
        *out.headers_mut() = parts.headers;
        out.headers_mut().remove(header::CONTENT_LENGTH);
        out.headers_mut().remove(header::TRANSFER_ENCODING);
        out.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        out.headers_mut().insert(header::UPGRADE, self.protocol);
        let limits = settings.limits(conn.shared.state.load().config.server.send_timeout);
        let Requested { client, slot, .. } = self;
        conn.tunnel
            .set(Box::pin(run(client, upstream, limits, slot, held)));
        out
    }
}

/// Takes the permit out of `guard` for a tunnel that holds it, counting the setup as a
/// success now (the tunnel's life is never a latency sample).
fn hold(mut guard: Guard) -> Option<Ticket> {
    let ticket = guard.ticket.take();
    if let Some(a) = guard.attempt.take() {
        a.finish(Decision::Success);
    }
    guard
        .metrics
        .record(Decision::Success, guard.tier, guard.start.elapsed());
    ticket
}

/// Waits for both ends to switch, then copies until one end closes or a bound is hit.
async fn run(
    client: OnUpgrade,
    upstream: OnUpgrade,
    limits: Limits,
    slot: Slot,
    permit: Option<Ticket>,
) {
    let stats = &slot.0.metrics.tunnels;
    let ends = async { Ok::<_, hyper::Error>((client.await?, upstream.await?)) };
    let (client, upstream) = match ends.await {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            stats.ended(End::Error);
            return;
        }
    };
    let opened = stats.opened(limits.buffer);
    let end = copy::run(TokioIo::new(client), TokioIo::new(upstream), limits).await;
    tracing::debug!(?end, "tunnel closed");
    drop(opened);
    stats.ended(end);
    if let Some(mut t) = permit {
        t.settle(Outcome::Ignored, None);
    }
    drop(slot);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn an_upgrade_needs_both_fields_one_protocol_and_http_1_1() {
        let both = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(
            asked(Version::HTTP_11, &both)
                .as_ref()
                .map(HeaderValue::as_bytes),
            Some(&b"websocket"[..])
        );
        assert!(asked(Version::HTTP_10, &both).is_none());
        assert!(asked(Version::HTTP_2, &both).is_none());
        for h in [
            headers(&[("connection", "upgrade")]),
            headers(&[("upgrade", "websocket")]),
            headers(&[("connection", "upgrade"), ("upgrade", "websocket, h2c")]),
            headers(&[
                ("connection", "upgrade"),
                ("upgrade", "a"),
                ("upgrade", "b"),
            ]),
            headers(&[("connection", "upgrade"), ("upgrade", " ")]),
        ] {
            assert!(asked(Version::HTTP_11, &h).is_none(), "{h:?}");
        }
    }

    #[test]
    fn protocols_match_by_name_without_version() {
        let s = UpgradeSettings::default();
        assert!(s.allows(b"WebSocket"));
        assert!(s.allows(b"websocket/13"));
        assert!(!s.allows(b"h2c"));
    }

    #[test]
    fn a_body_is_any_coding_or_a_nonzero_length() {
        assert!(!has_body(&headers(&[])));
        assert!(!has_body(&headers(&[("content-length", "0")])));
        assert!(has_body(&headers(&[("content-length", "5")])));
        assert!(has_body(&headers(&[("transfer-encoding", "chunked")])));
    }

    #[test]
    fn settings_are_bounded_and_name_the_field() {
        let ok = UpgradeSettings::default();
        assert!(ok.validate("route[0]", true).is_ok());
        let e = ok.validate("route[0]", false).unwrap_err();
        assert_eq!(e.field(), "route[0].upgrade");
        for (s, field) in [
            (
                UpgradeSettings {
                    buffer_bytes: 10,
                    ..ok.clone()
                },
                "route[0].upgrade.buffer_bytes",
            ),
            (
                UpgradeSettings {
                    protocols: vec![],
                    ..ok.clone()
                },
                "route[0].upgrade.protocols",
            ),
            (
                UpgradeSettings {
                    protocols: vec!["web socket".into()],
                    ..ok.clone()
                },
                "route[0].upgrade.protocols",
            ),
            (
                UpgradeSettings {
                    idle_timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "route[0].upgrade.idle_timeout",
            ),
            (
                UpgradeSettings {
                    max_duration: Duration::from_secs(30 * 86_400),
                    ..ok.clone()
                },
                "route[0].upgrade.max_duration",
            ),
        ] {
            assert_eq!(s.validate("route[0]", true).unwrap_err().field(), field);
        }
    }
}
