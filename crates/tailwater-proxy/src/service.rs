//! The request path: route → body limit → rate limits → admission → forward → stream back.
//!
//! Admission is built directly on the core [`Limiter`](tailwater_core::Limiter), with
//! tailwater-tower's edge mapping for the rejection responses (503/429, gRPC
//! `UNAVAILABLE`/`RESOURCE_EXHAUSTED`, draft-10 RateLimit headers). Its behaviour is the one
//! the tower layers specify: the tier comes from `x-criticality` (default `critical`), a
//! shed request is answered 503 + `Retry-After` without touching the upstream, a rate-limited
//! one 429 + `Retry-After` + `RateLimit-Policy`/`RateLimit`, and the permit is held until the
//! upstream's response body ends. Upstream 5xx, 429, connection errors and timeouts count as
//! drops; a client that goes away before the end, or whose body fails, is "ignored"
//! (`crate::outcome`).

use std::borrow::Cow;
use std::convert::Infallible;
use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body as _, Incoming};

use tailwater_core::limiter::{Acquire, Request as Admission};
use tailwater_core::{Criticality, OwnedPermit, Rejection};
use tailwater_tower::edge;
use tokio::time::Instant;
use tracing::{Instrument, field};

use crate::body::{Guard, ProxyBody};
use crate::config::ServerConfig;
use crate::config::UpstreamProtocol;
use crate::deadline::Deadline;
use crate::framing::{self, Framing, FramingError, FramingFields};
use crate::headers;
use crate::headers::Forwarding;
use crate::metrics::Decision;
use crate::metrics::RouteCounters;
use crate::outcome::BodyFault;
use crate::request_body::RequestBody;
use crate::route::Route;
use crate::route::upstream_uri;
use crate::server::{Conn, Shared};
use crate::target::{self, TargetError};

/// The header carrying the request's criticality tier.
pub const CRITICALITY_HEADER: &str = "x-criticality";

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
        .log_at_end(crate::access_log::Tail::new(pending, notes, status));
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
    let Some(route) = state.table.find(host, &path) else {
        return no_route(shared, span);
    };
    let route: &Route = state.table.cells.pick(route, &req, &path, conn.peer);
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
    let max_body = server.max_body_bytes;
    let req = match request_body(conn, route, server, req, start, span).await {
        Ok(req) => req,
        Err(rejected) => return rejected,
    };
    let (permit, tier, metrics, deadline) =
        match admit(conn, route, max_body, &req, start, span).await {
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
                crate::balance::reach(route, worker, slot, |shard| shard.acquire()).await?;
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
    guard.upstream_status(status.as_u16());
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
    let tier = tier_of(&req);
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

/// The request's criticality tier (`x-criticality`, default `critical`).
pub(crate) fn tier_of(req: &impl RequestView) -> Criticality {
    req.header(CRITICALITY_HEADER)
        .and_then(|v| v.parse::<Criticality>().ok())
        .unwrap_or_default()
}

/// What the admission steps read from a request, whichever parser read its head (hyper's
/// `Request`, or the lean HTTP/1.1 path's).
pub(crate) trait RequestView {
    /// The first value of the field `name` (lowercase), if it is valid UTF-8.
    fn header(&self, name: &str) -> Option<&str>;

    /// Whether the request may carry a deadline (`grpc-timeout`, or the route's
    /// `header`): a parser that already knows it has none saves the look-ups.
    fn may_state_deadline(&self, _header: Option<&http::HeaderName>) -> bool {
        true
    }

    /// The request path (no query): the `path` descriptor of `[route.rls]`.
    fn path(&self) -> &str;

    /// The declared `Content-Length`.
    fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    /// A gRPC request (`content-type: application/grpc…`): rejections use gRPC statuses.
    fn is_grpc(&self) -> bool {
        self.header("content-type")
            .is_some_and(|v| v.starts_with("application/grpc"))
    }
}

impl<B> RequestView for Request<B> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers().get(name).and_then(|v| v.to_str().ok())
    }

    fn path(&self) -> &str {
        self.uri().path()
    }

    fn is_grpc(&self) -> bool {
        edge::is_grpc(self.headers())
    }
}

/// The 404 for a request no route matches.
pub(crate) fn no_route(shared: &Shared, span: &tracing::Span) -> Response<ProxyBody> {
    shared
        .metrics
        .unrouted
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    span.record("decision", "no_route");
    crate::access_log::note_no_route();
    local(StatusCode::NOT_FOUND, "no route\n")
}

/// The admission steps of `route`, in order: tier, 413 for a declared body over
/// `max_body`, local rate limits, the limiter (at once, or after a bounded wait in the
/// queue). Either a permit, with the tier and the route's counters of this worker, or
/// the response that rejects the request (already counted and traced).
pub(crate) async fn admit<'r>(
    conn: &Conn,
    route: &'r Route,
    max_body: Option<u64>,
    req: &impl RequestView,
    start: Instant,
    span: &tracing::Span,
) -> Result<Admitted<'r>, Response<ProxyBody>> {
    let metrics = route.metrics.shard(conn.worker);
    span.record("route", route.name.as_str());
    crate::access_log::note_route(&route.name);
    let tier = tier_of(req);
    span.record("tier", tier.as_str());

    // 413 before anything is admitted or read.
    if let Some(max) = max_body
        && req.content_length().is_some_and(|n| n > max)
    {
        metrics.record(Decision::BodyTooLarge, tier, start.elapsed());
        span.record("decision", "rejected");
        span.record("rejection_reason", "body_too_large");
        return Err(local(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large\n",
        ));
    }

    // The client's own deadline, spent already: refused before it costs anything.
    let deadline = Deadline::of(req, route.deadline_header.as_ref(), start);
    if let Some(d) = &deadline
        && d.remaining().is_zero()
    {
        return Err(deadline_refused(metrics, tier, start, span, req.is_grpc()));
    }

    // Local rate limits: every one must admit.
    if !route.rate_limits.is_empty()
        && let Some(resp) = rate_limited(route, metrics, req, conn.peer, tier, start, span)
    {
        return Err(resp);
    }
    if let Some(rls) = &route.rls
        && let Some(resp) = crate::rls::check(rls, conn, req, metrics, tier, start, span).await
    {
        return Err(resp);
    }

    // Admission: a permit at once, or (rarely) a wait in the queue, boxed so that the
    // request's future stays small.
    let admission = Admission::new().tier(tier);
    let queue_wait = match (route.queue_wait, &deadline) {
        (Some(wait), Some(d)) => Some(wait.min(d.remaining())),
        (wait, _) => wait,
    };
    let mut waited = None;
    let acquired = match queue_wait {
        Some(wait) => match route.limiter.enqueue(admission, wait) {
            Ok(Acquire::Ready(permit)) => Ok(permit),
            Ok(Acquire::Queued(waiter)) => {
                let queued = Instant::now();
                let r = Box::pin(waiter.wait()).await;
                waited = Some(queued.elapsed());
                r
            }
            Err(rejection) => Err(rejection),
        },
        None => route.limiter.try_acquire_owned_with(admission),
    };
    match acquired {
        // Admitted after the budget ran out in the queue: nobody waits for the answer.
        Ok(permit) if deadline.is_some_and(|d| d.remaining().is_zero()) => {
            permit.ignore();
            Err(deadline_refused(metrics, tier, start, span, req.is_grpc()))
        }
        Ok(permit) => {
            span.record("decision", "admitted");
            crate::access_log::note_admitted(tier, route.limiter.limit(), waited);
            Ok((permit, tier, metrics, deadline))
        }
        Err(rejection) => {
            crate::access_log::note_shed(rejection.limit, waited);
            metrics.record(Decision::Shed(rejection.reason), tier, start.elapsed());
            span.record("decision", "shed");
            span.record("rejection_reason", rejection.reason.as_str());
            tracing::debug!(
                limit = rejection.limit,
                in_flight = rejection.in_flight,
                "shed"
            );
            Err(shed(&rejection, req.is_grpc()))
        }
    }
}

/// What admission gives a request: its permit, tier, the route's counters of this worker,
/// and the client's deadline if it stated one.
pub(crate) type Admitted<'r> = (
    OwnedPermit,
    Criticality,
    &'r Arc<RouteCounters>,
    Option<Deadline>,
);

/// Counts and answers a request whose own deadline is spent (504 / `DEADLINE_EXCEEDED`).
fn deadline_refused(
    metrics: &RouteCounters,
    tier: Criticality,
    start: Instant,
    span: &tracing::Span,
    grpc: bool,
) -> Response<ProxyBody> {
    metrics.record(Decision::DeadlineExceeded, tier, start.elapsed());
    span.record("decision", "rejected");
    span.record("rejection_reason", "deadline_exceeded");
    crate::deadline::exceeded(grpc)
}

/// The upstream timeout of a request: `upstream.request_timeout`, cut to the remaining
/// budget of a request with a deadline; and whether the deadline is the shorter.
pub(crate) fn request_timeout(
    configured: std::time::Duration,
    deadline: Option<Deadline>,
) -> (std::time::Duration, bool) {
    match deadline {
        Some(d) if d.remaining() < configured => (d.remaining(), true),
        _ => (configured, false),
    }
}

/// Replaces the budget fields the client sent with what remains of its budget now.
fn propagate(headers: &mut http::HeaderMap, route: &Route, deadline: Option<Deadline>) {
    let Some(d) = deadline else { return };
    let remaining = d.remaining();
    if d.grpc {
        let (n, unit) = edge::grpc_timeout_value(remaining);
        if let Ok(v) = HeaderValue::from_str(&format!("{n}{unit}")) {
            headers.insert(edge::GRPC_TIMEOUT, v);
        }
    }
    if d.header
        && let Some(name) = &route.deadline_header
    {
        headers.insert(
            name.clone(),
            HeaderValue::from(crate::deadline::millis(remaining)),
        );
    }
}

/// The 429 of the first local rate limit of `route` that denies the request, if any.
fn rate_limited(
    route: &Route,
    metrics: &RouteCounters,
    req: &impl RequestView,
    peer: SocketAddr,
    tier: Criticality,
    start: Instant,
    span: &tracing::Span,
) -> Option<Response<ProxyBody>> {
    let ip = peer.ip().to_string();
    for rl in &route.rate_limits {
        let d = rl.check(&ip, |name| req.header(name));
        if d.allowed {
            continue;
        }
        metrics.record(Decision::RateLimited, tier, start.elapsed());
        span.record("decision", "rate_limited");
        span.record(
            "rejection_reason",
            d.reason.map_or("rate_exceeded", |r| r.as_str()),
        );
        tracing::debug!(limit = %rl.name, "rate limited");
        let retry = d.retry_after.unwrap_or(d.reset_after);
        let mut resp = if req.is_grpc() {
            edge::grpc_response(edge::GRPC_RESOURCE_EXHAUSTED, "rate limited", Some(retry))
        } else {
            let mut r = Response::new(Bytes::from_static(b"rate limited\n"));
            *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(edge::retry_after_secs(retry)),
            );
            r
        };
        rl.policies
            .insert(resp.headers_mut(), 0, d.remaining, d.reset_after_secs());
        return Some(resp.map(ProxyBody::local));
    }
    None
}

pub(crate) fn guard(
    permit: tailwater_core::OwnedPermit,
    metrics: &Arc<RouteCounters>,
    tier: Criticality,
    start: Instant,
) -> Guard {
    Guard {
        permit: Some(permit),
        metrics: Arc::clone(metrics),
        tier,
        start,
        status_dropped: false,
        lease: None,
        attempt: None,
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

/// `raw` (a `Host` value or URI authority) without its port or IPv6 brackets.
pub(crate) fn host_without_port(raw: &str) -> &str {
    if raw.starts_with('[') {
        raw.split_once(']')
            .map_or(raw, |(h, _)| h)
            .trim_start_matches('[')
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    }
}

/// A small local response.
pub(crate) fn local(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::local(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// 503 with `Retry-After` (whole seconds, at least 1) and the reason, or for gRPC
/// `UNAVAILABLE` with `grpc-retry-pushback-ms` (tailwater-tower's edge mapping).
fn shed(rejection: &Rejection, grpc: bool) -> Response<ProxyBody> {
    let mut resp =
        edge::shed_response("overloaded", rejection.retry_after, grpc).map(ProxyBody::local);
    resp.headers_mut().insert(
        "x-tailwater-rejection",
        HeaderValue::from_static(rejection.reason.as_str()),
    );
    resp
}
