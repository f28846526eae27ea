//! Outcome classification: which responses tell the limiter "overloaded".
//!
//! The concurrency layer reports every request to its limiter as one of three
//! [`Outcome`]s. `Success` carries an RTT (measured until the response body ends) that the
//! adaptive algorithm learns latency from; `Dropped` tells it the service is overloaded and
//! the limit should come down; `Ignored` says nothing about load (the client went away).
//!
//! [`DefaultClassifier`] implements the safe defaults:
//!
//! | what happened | outcome |
//! |---|---|
//! | HTTP `5xx` (including `503`) or `429` | `Dropped` |
//! | `grpc-status` 4 `DEADLINE_EXCEEDED`, 8 `RESOURCE_EXHAUSTED`, 14 `UNAVAILABLE` (header or trailer) | `Dropped` |
//! | the inner service returned an error (a timeout layer's `Elapsed`, a broken connection) | `Dropped` |
//! | the response body failed while streaming | `Dropped` |
//! | the response future was dropped before the response (client cancelled) | `Ignored` |
//! | the body was dropped before its end (client went away mid-stream), after a good head | `Ignored` |
//! | anything else, including other `4xx` and other gRPC codes | `Success` |
//!
//! Implement [`Classify`] to change the table, e.g. to ignore `404`s, or to ignore errors
//! that say nothing about load:
//!
//! ```
//! use std::any::Any;
//! use http::{HeaderMap, StatusCode};
//! use tailwater_tower::BoxError;
//! use tailwater_tower::classify::{Classify, DefaultClassifier, Outcome};
//!
//! #[derive(Clone)]
//! struct MyPolicy;
//!
//! impl Classify for MyPolicy {
//!     fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
//!         match status {
//!             StatusCode::NOT_FOUND => Outcome::Ignored,
//!             _ => DefaultClassifier::new().classify_response(status, headers),
//!         }
//!     }
//!
//!     fn classify_error(&self, error: &dyn Any) -> Outcome {
//!         match error.downcast_ref::<BoxError>() {
//!             Some(e) if e.to_string().contains("invalid request") => Outcome::Ignored,
//!             _ => Outcome::Dropped,
//!         }
//!     }
//! }
//! ```

use std::any::Any;

use http::{HeaderMap, StatusCode};
pub use tailwater_core::algorithm::Outcome;

use crate::edge::GRPC_STATUS;

/// A policy that turns a response (or its failure) into a limiter [`Outcome`].
///
/// Called once per response head, once per trailers block and once per error; the layer
/// combines them: a `Success` head can be turned into `Dropped` by the trailers (gRPC puts
/// its status there), never the other way round.
pub trait Classify: Clone + Send + Sync + 'static {
    /// The response head arrived.
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Outcome;

    /// The body ended with trailers. `None` keeps the head's outcome.
    fn classify_trailers(&self, trailers: &HeaderMap) -> Option<Outcome> {
        grpc_outcome(trailers)
    }

    /// The inner service failed instead of answering. Default: `Dropped` (timeouts, broken
    /// upstream connections and panicking handlers all signal trouble).
    ///
    /// `error` is the inner service's error type (often a `BoxError`): downcast it to tell
    /// kinds apart.
    fn classify_error(&self, error: &dyn Any) -> Outcome {
        let _ = error;
        Outcome::Dropped
    }

    /// The response body failed while streaming (`error` is the body's error type).
    /// Default: `Dropped`.
    fn classify_body_error(&self, error: &dyn Any) -> Outcome {
        let _ = error;
        Outcome::Dropped
    }
}

/// The default classification table (see the [module docs](self)).
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use tailwater_tower::classify::{Classify, DefaultClassifier, Outcome};
/// let c = DefaultClassifier::new();
/// assert_eq!(c.classify_response(StatusCode::OK, &HeaderMap::new()), Outcome::Success);
/// assert_eq!(c.classify_response(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new()), Outcome::Dropped);
/// assert_eq!(c.classify_response(StatusCode::NOT_FOUND, &HeaderMap::new()), Outcome::Success);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier {
    _p: (),
}

impl DefaultClassifier {
    /// The default table.
    pub const fn new() -> Self {
        Self { _p: () }
    }
}

impl Classify for DefaultClassifier {
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
        match status_outcome(status.as_u16()) {
            Outcome::Success => grpc_outcome(headers).unwrap_or(Outcome::Success),
            dropped => dropped,
        }
    }
}

/// The outcome an HTTP status implies on its own: `Dropped` for `5xx` (the service failed,
/// including its own `503`) and `429` (it says it is overloaded), `Success` for everything
/// else. The one place this rule is written: [`DefaultClassifier`] and tailwater-proxy's
/// engines both call it.
///
/// ```
/// use tailwater_tower::classify::{Outcome, status_outcome};
/// assert_eq!(status_outcome(502), Outcome::Dropped);
/// assert_eq!(status_outcome(429), Outcome::Dropped);
/// assert_eq!(status_outcome(404), Outcome::Success);
/// ```
pub const fn status_outcome(status: u16) -> Outcome {
    match status {
        500..=599 | 429 => Outcome::Dropped,
        _ => Outcome::Success,
    }
}

/// The outcome a `grpc-status` in `headers` implies, if there is one: `Dropped` for
/// `DEADLINE_EXCEEDED` (4), `RESOURCE_EXHAUSTED` (8) and `UNAVAILABLE` (14), `Success` for
/// every other code. A malformed value counts as `Dropped` (a broken peer).
pub fn grpc_outcome(headers: &HeaderMap) -> Option<Outcome> {
    Some(grpc_value_outcome(headers.get(&GRPC_STATUS)?.as_bytes()))
}

/// The outcome of one `grpc-status` field value (see [`grpc_outcome`]): for a parser that
/// reads fields as bytes (tailwater-proxy's lean HTTP/1.1 path).
///
/// ```
/// use tailwater_tower::classify::{Outcome, grpc_value_outcome};
/// assert_eq!(grpc_value_outcome(b"14"), Outcome::Dropped);
/// assert_eq!(grpc_value_outcome(b" 0 "), Outcome::Success);
/// assert_eq!(grpc_value_outcome(b"x"), Outcome::Dropped);
/// ```
pub fn grpc_value_outcome(value: &[u8]) -> Outcome {
    let code: Option<u32> = std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    match code {
        Some(code) => grpc_code_outcome(code),
        None => Outcome::Dropped,
    }
}

/// The outcome of one gRPC status code (see [`grpc_outcome`]).
pub const fn grpc_code_outcome(code: u32) -> Outcome {
    match code {
        4 | 8 | 14 => Outcome::Dropped,
        _ => Outcome::Success,
    }
}
