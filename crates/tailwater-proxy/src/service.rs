//! hyper's request path: route → body limit → rate limits → admission → forward → stream
//! back.
//!
//! Admission is the proxy's one path (`crate::admit`, on tailwater-tower's
//! transport-neutral steps), with tailwater-tower's edge mapping for the rejection
//! responses (503/429, gRPC `UNAVAILABLE`/`RESOURCE_EXHAUSTED`, draft-10 RateLimit
//! headers). Its behaviour is the one the tower layers specify: the tier comes from `x-criticality` (default `critical`), a
//! shed request is answered 503 + `Retry-After` without touching the upstream, a rate-limited
//! one 429 + `Retry-After` + `RateLimit-Policy`/`RateLimit`, and the permit is held until the
//! upstream's response body ends. Upstream 5xx, 429, connection errors and timeouts count as
//! drops; a client that goes away before the end, or whose body fails, is "ignored"
//! (`crate::outcome`).

use std::borrow::Cow;
use std::convert::Infallible;
use std::error::Error as _;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body as _, Incoming};

use tokio::time::Instant;
use tracing::{Instrument, field};

use crate::admit::{RequestView, admit, guard, no_route, tier};
use crate::body::{Guard, ProxyBody, local};
use crate::config::ServerConfig;
use crate::config::UpstreamProtocol;
use crate::conn::{Conn, Shared};
use crate::deadline::{Deadline, request_timeout};
use crate::decision::Decision;
use crate::framing::{self, Framing, FramingError, FramingFields};
use crate::headers;
use crate::headers::Forwarding;
use crate::outcome::BodyFault;
use crate::request_body::RequestBody;
use crate::route::Route;
use crate::route::upstream_uri;
use crate::target::{self, TargetError, host_without_port};

/// Handles one request of client connection `conn`, with its access log line when the
/// log is on (`crate::access_log`).
pub(crate) async fn handle(
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let Some(log) = conn.shared.state.load().access_log.clone() else {
        return handle_unlogged(conn, req).await;
    };
    let pending = log.begin(&crate::access_log::RequestFields {
        peer: conn.peer,
        method: req.method().as_str().as_bytes(),
        target: req
            .uri()
            .path_and_query()
            .map_or(b"", |pq| pq.as_str().as_bytes()),
        protocol: match req.version() {
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        },
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .map(HeaderValue::as_bytes),
    });
    let (resp, notes) = crate::access_log::scope(handle_unlogged(conn, req)).await;
    let Ok(mut resp) = resp;
    let status = resp.status().as_u16();
    resp.body_mut()
        .log_at_end(crate::access_log::Tail::new(log, pending, notes, status));
    Ok(resp)
}

async fn handle_unlogged(
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let span = tracing::debug_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        route = field::Empty,
        tier = field::Empty,
        decision = field::Empty,
        rejection_reason = field::Empty,
        status = field::Empty,
    );
    let has_body = !http_body::Body::is_end_stream(req.body());
    // Without a subscriber for the span, skip the instrumentation wrapper (it enters and
    // exits the span on every poll).
    let resp = if span.is_disabled() {
        proxy(&conn, req, &span).await
    } else {
        proxy(&conn, req, &span).instrument(span.clone()).await
    };
    span.record("status", resp.status().as_u16());
    // Answered by the proxy itself (rejected, or the body failed): the body may be
    // unread, so the connection closes with a lingering close.
    if has_body && resp.body().local_data().is_some() {
        conn.linger
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(resp)
}

async fn proxy(
    conn: &Conn,
    mut req: Request<Incoming>,
    span: &tracing::Span,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let shared: &Shared = &conn.shared;
    let worker = conn.worker;
    let state = shared.state.load();

    // The client's faults, before anything is routed or admitted: `Host`, the path and
    // the framing, by the rules the lean path applies too.
    let host = match request_host(&req) {
        Ok(h) => h.map(host_without_port),
        Err(e) => return refused(shared, e.status(), e.text(), span),
    };
    let framing = match request_framing(&req) {
        Ok(f) => f,
        Err(e) => return refused(shared, e.status(), e.text(), span),
    };
    let path = match target::normalise_path(req.uri().path()) {
        Ok(p) => p,
        Err(e) => return refused(shared, e.status(), e.text(), span),
    };
    if let Some(refused) = crate::tunnel::refuse_method(shared, &req) {
        return refused;
    }
    let Some(route) = state.table.find(host.map(str::as_bytes), path.as_bytes()) else {
        return no_route(shared, span);
    };
    let route: &Route = state
        .table
        .cells
        .pick(route, &req, path.as_bytes(), conn.peer);
    // Only a path that normalisation changed is copied (the common one is not).
    let path = match path {
        Cow::Borrowed(_) => None,
        Cow::Owned(p) => Some(p),
    };
    // An `Upgrade` the route tunnels (`crate::tunnel`), decided before anything is read.
    let upgrade =
        match crate::tunnel::requested(conn, route.upgrade.as_ref(), route.retry_after, &mut req) {
            Ok(u) => u,
            Err(refused) => return refused,
        };
    let server = &state.config.server;
    let req = match request_body(conn, route, server, req, start, span).await {
        Ok(req) => req,
        Err(rejected) => return rejected,
    };
    let (permit, tier, metrics, deadline) = match admit(conn, route, &req, start, span).await {
        Ok(admitted) => admitted,
        Err(rejected) => return rejected,
    };
    let grpc = deadline.is_some() && req.is_grpc();
    // Forward.
    // `Host` was checked above; the body reading did not change the head.
    let host = request_host(&req).ok().flatten().map(host_without_port);
    let forwarded = conn.forwarding.values(req.headers(), host);
    let (mut parts, body) = req.into_parts();
    let head_request = parts.method == Method::HEAD;
    let original_authority = parts.uri.authority().cloned();
    headers::strip_hop_by_hop(&mut parts.headers, route.protocol == UpstreamProtocol::H2c);
    // The framing hyper's client writes is the one decided above, never the one received.
    framing::set_request_fields(
        &mut parts.headers,
        framing,
        route.protocol == UpstreamProtocol::Http1,
    );
    Forwarding::apply(&mut parts.headers, forwarded);
    if let Some(u) = &upgrade {
        u.restore(&mut parts.headers);
    }
    if route.preserve_host {
        if !parts.headers.contains_key(header::HOST)
            && let Some(a) = original_authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, a);
        }
    } else {
        parts.headers.remove(header::HOST);
    }
    // The request's path and query moved, not re-parsed, unless the path was normalised.
    let pq = std::mem::take(&mut parts.uri)
        .into_parts()
        .path_and_query
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let pq = match path {
        None => Ok(pq),
        Some(mut p) => {
            if let Some(q) = pq.query() {
                p.push('?');
                p.push_str(q);
            }
            PathAndQuery::try_from(p)
        }
    };
    let Ok(pq) = pq else {
        guard(permit, metrics, tier, start).finish(Decision::Cancelled);
        return local(StatusCode::BAD_REQUEST, "bad request target\n");
    };
    let pooled = route.protocol == UpstreamProtocol::Http1
        && parts.method != Method::CONNECT
        && upgrade.is_none()
        && route.tls.is_none();
    let mut guard = guard(permit, metrics, tier, start);
    // The legacy client (h2c, CONNECT) connects by itself: its endpoint is chosen here; an
    // h2c request whose body is at hand moves to another one if connecting fails
    // (`h2c_failover`), as the pool's path does.
    let authority = match (&route.balance, pooled) {
        (Some(b), false) => b.select(0).map_or(&route.authority, |a| {
            let endpoint = &route.endpoints[a.index()].authority;
            guard.attempt = Some(Box::new(a));
            endpoint
        }),
        _ => &route.authority,
    };
    // The pool sends origin-form and sets `Host` itself; the legacy client wants the
    // absolute URI.
    let uri = if pooled {
        Ok(Uri::from(pq))
    } else {
        upstream_uri(route, authority, pq)
    };
    parts.uri = match uri {
        Ok(u) => u,
        Err(_) => {
            guard.finish(Decision::Cancelled);
            return local(StatusCode::BAD_REQUEST, "bad request target\n");
        }
    };
    parts.version = match route.protocol {
        UpstreamProtocol::Http1 => Version::HTTP_11,
        UpstreamProtocol::H2c => Version::HTTP_2,
    };
    let body_watch = body.watch();
    let mut upstream_req = Request::from_parts(parts, body);
    let (timeout, cut) = request_timeout(state.config.upstream.request_timeout, deadline);
    let result = if pooled {
        let slot = &mut guard.attempt;
        let send = async {
            let (shard, acquired) =
                crate::route::reach(route, worker, slot, |shard| shard.acquire()).await?;
            propagate(upstream_req.headers_mut(), route, deadline);
            shard.send(acquired, upstream_req).await
        };
        tokio::time::timeout(timeout, send).await
    } else if upgrade.is_some() {
        propagate(upstream_req.headers_mut(), route, deadline);
        let connect = state.config.upstream.connect_timeout;
        let tls = route.tls.as_ref().map(|(t, _)| t);
        let send = crate::tunnel::send(upstream_req, connect, tls);
        Box::pin(tokio::time::timeout(timeout, send)).await
    } else {
        propagate(upstream_req.headers_mut(), route, deadline);
        // h2c, and CONNECT (the legacy client's authority-form handling): rare, boxed.
        let slot = &mut guard.attempt;
        let send = async {
            let resp = match (&route.tls, route.protocol) {
                (Some((_, tls)), _) => tls.request(upstream_req).await?,
                (None, UpstreamProtocol::Http1) => {
                    state.clients(worker).http1.request(upstream_req).await?
                }
                (None, UpstreamProtocol::H2c) => {
                    let client = &state.clients(worker).h2c;
                    crate::h2c_failover::send(client, route, upstream_req, slot).await?
                }
            };
            Ok((resp, None))
        };
        Box::pin(tokio::time::timeout(timeout, send)).await
    };
    let mut resp = match result {
        Err(_) => {
            // No head in time while the body still waited for the client: its fault.
            if let Some(fault) = body_watch.blame() {
                return client_fault(guard, fault, span);
            }
            if cut {
                span.record("rejection_reason", "deadline_exceeded");
                guard.finish(Decision::DeadlineExceeded);
                return crate::deadline::exceeded(grpc);
            }
            span.record("rejection_reason", "upstream_timeout");
            guard.finish(Decision::UpstreamTimeout);
            return local(StatusCode::GATEWAY_TIMEOUT, "upstream timeout\n");
        }
        Ok(Err(e)) => {
            if let Some(fault) = body_watch.fault() {
                return client_fault(guard, fault, span);
            }
            tracing::debug!(error = %e, source = ?e.source(), "upstream request failed");
            span.record("rejection_reason", "upstream_error");
            guard.finish(Decision::UpstreamError);
            return local(StatusCode::BAD_GATEWAY, "upstream unavailable\n");
        }
        Ok(Ok((resp, lease))) => {
            guard.lease = lease;
            resp
        }
    };
    let status = resp.status();
    // The upgrade the route tunnels and the upstream accepted.
    if status == StatusCode::SWITCHING_PROTOCOLS
        && let (Some(u), Some(settings)) = (upgrade, route.upgrade.as_ref())
    {
        return u.start(conn, settings, resp, guard);
    }
    // Any other 101 is one nobody asked for: the connection would become the upstream's
    // to speak on (the lean path refuses it too).
    if status == StatusCode::SWITCHING_PROTOCOLS {
        tracing::debug!("unsolicited 101 from the upstream");
        span.record("rejection_reason", "upstream_error");
        guard.finish(Decision::UpstreamError);
        return local(StatusCode::BAD_GATEWAY, "upstream unavailable\n");
    }
    guard.upstream_head(status.as_u16(), resp.headers());
    // The response's framing, decided by the rules of the lean path (an HTTP/2 upstream
    // frames its bodies itself), restated by the proxy after the hop-by-hop removal.
    let reframe = if route.protocol == UpstreamProtocol::Http1 {
        let fields = FramingFields::of_headers(resp.headers());
        match fields.response(status.as_u16(), head_request) {
            Ok(f) => {
                let announced = (status.as_u16() >= 200 && status != StatusCode::NO_CONTENT)
                    .then(|| fields.content_length())
                    .flatten();
                Some((f, announced))
            }
            Err(e) => {
                tracing::debug!(error = %e, "upstream response framing refused");
                span.record("rejection_reason", "upstream_error");
                guard.finish(Decision::UpstreamError);
                return local(StatusCode::BAD_GATEWAY, "upstream unavailable\n");
            }
        }
    } else {
        None
    };
    headers::strip_hop_by_hop(resp.headers_mut(), false);
    if let Some((f, announced)) = reframe {
        framing::set_response_fields(resp.headers_mut(), f, announced);
    }
    let (parts, body) = resp.into_parts();
    let idle = state.config.upstream.body_idle_timeout;
    Response::from_parts(parts, ProxyBody::upstream(body, guard, idle))
}

/// The request with its body ready to forward: a small declared body (up to
/// `server.body_buffer_bytes`) read whole before admission, so that a client trickling it
/// holds no permit; any other streamed under `server.body_timeout` and the size cap. A
/// small body that fails is answered here (400/408/413), counted on the route.
async fn request_body(
    conn: &Conn,
    route: &Route,
    server: &ServerConfig,
    req: Request<Incoming>,
    start: Instant,
    span: &tracing::Span,
) -> Result<Request<RequestBody>, Response<ProxyBody>> {
    let cap = server.max_body_bytes.unwrap_or(u64::MAX);
    let small = req
        .content_length()
        .filter(|n| *n > 0 && *n <= cap && *n <= server.body_buffer_bytes as u64);
    let tier = tier(route, conn.peer, &req);
    let (parts, body) = req.into_parts();
    let body = match small {
        Some(_) => match RequestBody::read_whole(body, cap, server.body_timeout).await {
            Ok(b) => b,
            Err(fault) => {
                let metrics = route.metrics.shard(conn.worker);
                metrics.record(fault.decision(), tier, start.elapsed());
                span.record("route", route.name.as_str());
                span.record("decision", "rejected");
                span.record("rejection_reason", fault.decision().reason());
                let (status, text) = fault.response();
                return Err(local(status, text));
            }
        },
        None => RequestBody::streaming(body, server.max_body_bytes, server.body_timeout),
    };
    Ok(Request::from_parts(parts, body))
}

/// Settles an admitted request whose client body failed, and answers it.
fn client_fault(guard: Guard, fault: BodyFault, span: &tracing::Span) -> Response<ProxyBody> {
    span.record("rejection_reason", fault.decision().reason());
    let (status, text) = guard.client_fault(fault);
    local(status, text)
}

/// Replaces the budget fields the client sent with what remains of its budget now
/// (tailwater-tower's [`Deadline::write`], as its layers forward).
fn propagate(headers: &mut http::HeaderMap, route: &Route, deadline: Option<Deadline>) {
    if let Some(d) = deadline {
        d.write(headers, route.admission.deadline_header());
    }
}

/// The request's one valid host (port included): `Host`, checked against the target's
/// authority (absolute form, HTTP/2 `:authority`), required for HTTP/1.1 (RFC 9112 §3.2).
fn request_host<B>(req: &Request<B>) -> Result<Option<&str>, TargetError> {
    let values = req.headers().get_all(header::HOST).into_iter();
    target::request_host(
        values.map(HeaderValue::as_bytes),
        req.uri().authority().map(|a| a.as_str()),
        req.version() == Version::HTTP_11,
    )
}

/// The request body's framing: the shared decision on the fields (`framing`), which must
/// agree with how hyper delimited the body; HTTP/2 bodies are framed by the protocol.
fn request_framing(req: &Request<Incoming>) -> Result<Framing, FramingError> {
    let hint = req.body().size_hint();
    let end = req.body().is_end_stream();
    if req.version() >= Version::HTTP_2 {
        return Ok(match hint.exact() {
            Some(n) => Framing::Length(n),
            None if end => Framing::Empty,
            None => Framing::Chunked,
        });
    }
    let decided = FramingFields::of_headers(req.headers()).request()?;
    let agrees = match decided {
        Framing::Empty => end,
        Framing::Length(n) => hint.exact() == Some(n),
        Framing::Chunked => hint.exact().is_none(),
        Framing::Close => false,
    };
    if agrees {
        Ok(decided)
    } else {
        Err(FramingError::BadLength)
    }
}

/// The local response to a request the client got wrong (400, 501); the connection is
/// closed after it (its body may not have been delimited as the client meant).
fn refused(
    shared: &Shared,
    status: StatusCode,
    text: &'static str,
    span: &tracing::Span,
) -> Response<ProxyBody> {
    shared
        .metrics
        .refused
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    span.record("decision", "refused");
    let mut resp = local(status, text);
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}
