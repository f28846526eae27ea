//! Per-message admission for long gRPC streams (client-streaming and bidi calls).
//!
//! [`ConcurrencyLayer`](crate::ConcurrencyLayer) takes one permit per *call* and holds it
//! until the response body ends: right for unary calls, wrong for a stream that lives for
//! minutes. The stream holds a slot while idle, and when it ends the limit algorithm gets
//! its whole duration as one RTT sample, which says nothing about the server's load. Here
//! each **message** of a stream is admitted through the [`Limiter`]:
//!
//! - a permit per message, taken *after* the message arrived (an idle stream holds none)
//!   and released when the handler is done with it, so the RTT sample is the message's
//!   processing time;
//! - **back-pressure by not pulling**, for a bounded time: while a message waits for its
//!   permit (in the limiter's queue, at most [`max_wait`](MessageAdmission::max_wait)), the
//!   adaptor does not read the next one, so HTTP/2 flow control holds the client back and at
//!   most one message per stream waits in memory;
//! - **an explicit rejection** when the wait ends without a permit (deadline passed, queue
//!   full, or no queue configured on the limiter): the adaptor yields the error built by the
//!   caller's `on_reject` (for tonic: `Status::resource_exhausted`, code 8, with the
//!   `grpc-retry-pushback-ms` hint) and ends; a handler that forwards the error ends the call
//!   with that status. Nothing is dropped silently: the message that was refused is the one
//!   named in the rejection, and the client knows where the stream stopped.
//!
//! The wait needs a queue on the limiter ([`QueueConfig`](tailwater_core::limiter::QueueConfig)):
//! without one, a message that finds the limiter full is refused at once.
//!
//! [`MessageAdmissionLayer`] wires it to a server: for the gRPC methods it names, it marks the
//! call with [`Bypass`] (a concurrency layer further in counts
//! the call but neither limits it nor learns from its duration) and puts the
//! [`MessageAdmission`] in the request extensions, where the handler finds it.
//!
//! ```
//! use std::time::Duration;
//! use futures_util::{Stream, StreamExt};
//! use tailwater_core::Limiter;
//! use tailwater_core::limiter::QueueConfig;
//! use tailwater_tower::per_message::{MessageAdmission, MessageRejected};
//!
//! fn to_status(r: MessageRejected) -> tonic::Status {
//!     let mut status = tonic::Status::resource_exhausted(r.to_string());
//!     if let Ok(v) = r.pushback_ms().to_string().parse() {
//!         status.metadata_mut().insert("grpc-retry-pushback-ms", v);
//!     }
//!     status
//! }
//!
//! // In a bidi handler: `inbound` is the call's `tonic::Streaming<Request>`.
//! async fn handle<S>(admission: MessageAdmission, inbound: S) -> Result<u64, tonic::Status>
//! where
//!     S: Stream<Item = Result<String, tonic::Status>> + Unpin,
//! {
//!     let mut messages = admission.admit(inbound, to_status);
//!     let mut handled = 0;
//!     while let Some(message) = messages.next().await {
//!         let message = message?; // RESOURCE_EXHAUSTED ends the call
//!         handled += message.len() as u64; // ... the work ...
//!         // `message` dropped here: its permit is released, its time sampled.
//!     }
//!     Ok(handled)
//! }
//! # let limiter = Limiter::builder().queue(QueueConfig::codel(64)?).build()?;
//! # let _ = MessageAdmission::new(limiter).max_wait(Duration::from_millis(50));
//! # Ok::<(), tailwater_core::ConfigError>(())
//! ```

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::Stream;
use tailwater_core::clock::{Clock, MonotonicClock};
use tailwater_core::limiter::{Acquire, Request};
use tailwater_core::{Criticality, Limiter, OwnedPermit, Rejection};

use crate::concurrency::Bypass;
use crate::observe::DECISIONS_TOTAL;

/// The `mechanism` label of this module's `tailwater_decisions_total` series.
pub const MECHANISM: &str = "message";

/// Admits the messages of streams through one limiter. Cheap to clone.
pub struct MessageAdmission<C: Clock = MonotonicClock> {
    limiter: Limiter<C>,
    max_wait: Duration,
    tier: Criticality,
    route: Arc<str>,
}

impl<C: Clock> Clone for MessageAdmission<C> {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
            max_wait: self.max_wait,
            tier: self.tier,
            route: Arc::clone(&self.route),
        }
    }
}

impl<C: Clock> fmt::Debug for MessageAdmission<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageAdmission")
            .field("max_wait", &self.max_wait)
            .field("tier", &self.tier)
            .field("route", &self.route)
            .field("limit", &self.limiter.limit())
            .finish_non_exhaustive()
    }
}

impl<C: Clock> MessageAdmission<C> {
    /// Admission through `limiter`, with a 50 ms wait, tier `Critical` and route `""`.
    pub fn new(limiter: Limiter<C>) -> Self {
        Self {
            limiter,
            max_wait: Duration::from_millis(50),
            tier: Criticality::Critical,
            route: Arc::from(""),
        }
    }

    /// The longest a message waits for its permit (capped by the limiter queue's own
    /// `max_wait`) while the stream is not read; then the stream is refused. Zero: refuse
    /// at once when the limiter is full.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// The tier the messages are admitted as (the limiter's tier thresholds apply).
    pub fn tier(mut self, tier: Criticality) -> Self {
        self.tier = tier;
        self
    }

    /// The `route` label of the decision metrics.
    pub fn route(mut self, route: impl AsRef<str>) -> Self {
        self.route = Arc::from(route.as_ref());
        self
    }

    /// The limiter.
    pub fn limiter(&self) -> &Limiter<C> {
        &self.limiter
    }

    /// Wraps `stream` (a call's inbound messages): each `Ok` message is yielded only with a
    /// permit ([`Admitted`]); errors of `stream` pass through; a refused message ends the
    /// stream with `on_reject`'s error. See the [module documentation](self).
    pub fn admit<S, T, E, F>(&self, stream: S, on_reject: F) -> AdmitEach<S, T, C, F>
    where
        S: Stream<Item = Result<T, E>>,
        F: FnMut(MessageRejected) -> E,
    {
        AdmitEach {
            inner: stream,
            admission: self.clone(),
            on_reject,
            state: State::Pulling,
        }
    }

    fn decision(&self, decision: &'static str, reason: &'static str) {
        metrics::counter!(
            DECISIONS_TOTAL,
            "mechanism" => MECHANISM,
            "decision" => decision,
            "reason" => reason,
            "tier" => self.tier.as_str(),
            "route" => self.route.to_string(),
        )
        .increment(1);
    }
}

type Wait<C> = Pin<Box<dyn Future<Output = Result<OwnedPermit<C>, Rejection>> + Send>>;

enum State<T, C: Clock> {
    /// Reading the next message.
    Pulling,
    /// A message waits for its permit; the stream is not read meanwhile.
    Waiting {
        message: T,
        wait: Wait<C>,
        since: tokio::time::Instant,
    },
    /// Ended (inner stream done, or a message refused).
    Done,
}

/// The stream returned by [`MessageAdmission::admit`].
pub struct AdmitEach<S, T, C: Clock, F> {
    inner: S,
    admission: MessageAdmission<C>,
    on_reject: F,
    state: State<T, C>,
}

impl<S, T, C: Clock, F> fmt::Debug for AdmitEach<S, T, C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Pulling => "pulling",
            State::Waiting { .. } => "waiting",
            State::Done => "done",
        };
        f.debug_struct("AdmitEach")
            .field("admission", &self.admission)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<S, T, C: Clock, F> AdmitEach<S, T, C, F> {
    /// Ends the stream with the caller's error for `rejection`.
    fn refuse<E>(&mut self, rejection: Rejection, waited: Duration) -> E
    where
        F: FnMut(MessageRejected) -> E,
    {
        self.state = State::Done;
        self.admission
            .decision("rejected", rejection.reason.as_str());
        tracing::debug!(
            target: "tailwater",
            mechanism = MECHANISM,
            decision = "rejected",
            rejection_reason = rejection.reason.as_str(),
            tier = self.admission.tier.as_str(),
            route = &*self.admission.route,
            waited_ms = waited.as_millis() as u64,
            "stream message refused"
        );
        (self.on_reject)(MessageRejected { rejection, waited })
    }
}

impl<S, T, E, C, F> Stream for AdmitEach<S, T, C, F>
where
    S: Stream<Item = Result<T, E>> + Unpin,
    T: Unpin,
    C: Clock,
    F: FnMut(MessageRejected) -> E + Unpin,
{
    type Item = Result<Admitted<T, C>, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Nothing is structurally pinned (the wait is boxed; the inner stream, the message
        // and the closure are `Unpin`).
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Waiting { wait, since, .. } => {
                    let outcome = ready!(wait.as_mut().poll(cx));
                    let waited = since.elapsed();
                    let State::Waiting { message, .. } =
                        std::mem::replace(&mut this.state, State::Pulling)
                    else {
                        unreachable!("matched above")
                    };
                    return Poll::Ready(Some(match outcome {
                        Ok(permit) => {
                            this.admission.decision("admitted", "none");
                            Ok(Admitted::new(message, permit))
                        }
                        Err(rejection) => Err(this.refuse(rejection, waited)),
                    }));
                }
                State::Pulling => {
                    let message = match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                        None => {
                            this.state = State::Done;
                            return Poll::Ready(None);
                        }
                        Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                        Some(Ok(message)) => message,
                    };
                    let request = Request::new().tier(this.admission.tier);
                    match this
                        .admission
                        .limiter
                        .enqueue(request, this.admission.max_wait)
                    {
                        Ok(Acquire::Ready(permit)) => {
                            this.admission.decision("admitted", "none");
                            return Poll::Ready(Some(Ok(Admitted::new(message, permit))));
                        }
                        Ok(Acquire::Queued(waiter)) => {
                            this.state = State::Waiting {
                                message,
                                wait: Box::pin(waiter.wait()),
                                since: tokio::time::Instant::now(),
                            };
                        }
                        Err(rejection) => {
                            return Poll::Ready(Some(Err(this.refuse(rejection, Duration::ZERO))));
                        }
                    }
                }
            }
        }
    }
}

/// Why a stream's message was refused: the limiter's [`Rejection`] and how long the message
/// waited. `Display` gives a one-line reason for a gRPC status message.
#[derive(Debug, Clone)]
pub struct MessageRejected {
    /// The limiter's answer (reason, tier, limit, in flight, retry hint).
    pub rejection: Rejection,
    /// How long the message waited for a permit (zero when refused at once).
    pub waited: Duration,
}

impl MessageRejected {
    /// The retry hint in whole milliseconds, for gRPC's `grpc-retry-pushback-ms`.
    pub fn pushback_ms(&self) -> u64 {
        u64::try_from(self.rejection.retry_after.as_millis()).unwrap_or(u64::MAX)
    }
}

impl fmt::Display for MessageRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stream message refused: {} after waiting {} ms (limit {}, in flight {})",
            self.rejection.reason,
            self.waited.as_millis(),
            self.rejection.limit,
            self.rejection.in_flight
        )
    }
}

impl std::error::Error for MessageRejected {}

/// A message with its permit. Derefs to the message. Dropping it (or
/// [`into_parts`](Self::into_parts) and dropping the [`MessagePermit`]) tells the limiter
/// the message was handled: the time since it was admitted is the RTT sample.
pub struct Admitted<T, C: Clock = MonotonicClock> {
    message: T,
    permit: MessagePermit<C>,
}

impl<T, C: Clock> Admitted<T, C> {
    fn new(message: T, permit: OwnedPermit<C>) -> Self {
        Self {
            message,
            permit: MessagePermit {
                permit: Some(permit),
            },
        }
    }

    /// The message and its permit, to move the message on (into a task, say) while the
    /// permit says when its handling ends.
    pub fn into_parts(self) -> (T, MessagePermit<C>) {
        (self.message, self.permit)
    }

    /// The handling failed in a way that signals overload (a timeout, a downstream
    /// refusal): fed to the algorithm as a drop. Returns the message.
    pub fn failed(self) -> T {
        self.permit.failed();
        self.message
    }
}

impl<T, C: Clock> Deref for Admitted<T, C> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.message
    }
}

impl<T: fmt::Debug, C: Clock> fmt::Debug for Admitted<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admitted")
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

/// One message's permit. Dropped (or [`success`](Self::success)): the message was handled,
/// the time since admission is sampled. [`failed`](Self::failed): an overload signal.
/// [`ignore`](Self::ignore): says nothing about load (the client went away). Dropped while
/// the thread panics: ignored.
pub struct MessagePermit<C: Clock = MonotonicClock> {
    permit: Option<OwnedPermit<C>>,
}

impl<C: Clock> MessagePermit<C> {
    /// Handled: the time since admission is the RTT sample.
    pub fn success(mut self) {
        if let Some(p) = self.permit.take() {
            p.success();
        }
    }

    /// Failed with an overload signal: fed to the algorithm as a drop.
    pub fn failed(mut self) {
        if let Some(p) = self.permit.take() {
            p.dropped();
        }
    }

    /// Released without a sample.
    pub fn ignore(mut self) {
        if let Some(p) = self.permit.take() {
            p.ignore();
        }
    }
}

impl<C: Clock> Drop for MessagePermit<C> {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            if std::thread::panicking() {
                p.ignore();
            } else {
                p.success();
            }
        }
    }
}

impl<C: Clock> fmt::Debug for MessagePermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessagePermit")
            .field("held", &self.permit.is_some())
            .finish()
    }
}

/// Marks the streaming gRPC methods it names for per-message admission: such a call gets
/// the [`Bypass`] extension (so a [`ConcurrencyLayer`](crate::ConcurrencyLayer) placed
/// *inside* this layer neither limits it nor samples its duration) and a
/// [`MessageAdmission`] extension for the handler (tonic copies the HTTP request's
/// extensions into `tonic::Request::extensions`). The admission's tier is the request's
/// [`Criticality`] extension when present (put this layer inside the
/// [`CriticalityLayer`](crate::CriticalityLayer)). Other calls pass through untouched.
pub struct MessageAdmissionLayer<C: Clock = MonotonicClock> {
    admission: MessageAdmission<C>,
    methods: Arc<[String]>,
}

impl<C: Clock> Clone for MessageAdmissionLayer<C> {
    fn clone(&self) -> Self {
        Self {
            admission: self.admission.clone(),
            methods: Arc::clone(&self.methods),
        }
    }
}

impl<C: Clock> fmt::Debug for MessageAdmissionLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageAdmissionLayer")
            .field("admission", &self.admission)
            .field("methods", &self.methods)
            .finish()
    }
}

impl<C: Clock> MessageAdmissionLayer<C> {
    /// Per-message admission with `admission` for the gRPC methods named by their paths
    /// (`/package.Service/Method`).
    pub fn new<I, M>(admission: MessageAdmission<C>, methods: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: Into<String>,
    {
        Self {
            admission,
            methods: methods.into_iter().map(Into::into).collect(),
        }
    }
}

impl<S, C: Clock> tower::Layer<S> for MessageAdmissionLayer<C> {
    type Service = MessageAdmissionService<S, C>;
    fn layer(&self, inner: S) -> Self::Service {
        MessageAdmissionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`MessageAdmissionLayer`].
pub struct MessageAdmissionService<S, C: Clock = MonotonicClock> {
    inner: S,
    layer: MessageAdmissionLayer<C>,
}

impl<S: Clone, C: Clock> Clone for MessageAdmissionService<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, C: Clock> fmt::Debug for MessageAdmissionService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageAdmissionService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, B, C> tower::Service<http::Request<B>> for MessageAdmissionService<S, C>
where
    S: tower::Service<http::Request<B>>,
    C: Clock,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        if self.layer.methods.iter().any(|m| m == path) {
            let tier = req
                .extensions()
                .get::<Criticality>()
                .copied()
                .unwrap_or(self.layer.admission.tier);
            let admission = self.layer.admission.clone().tier(tier);
            req.extensions_mut().insert(Bypass);
            req.extensions_mut().insert(admission);
        }
        self.inner.call(req)
    }
}
