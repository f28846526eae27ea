//! A route's endpoints and, when it has several, the choice among them: tailwater-core's
//! [`Balancer`] (P2C over PeakEWMA or least request, outlier ejection, slow start) fed by
//! both engines with what each request did.
//!
//! # When a request goes to another endpoint
//!
//! Only when **no byte of it was written**: connecting to the chosen endpoint failed (refused,
//! unreachable, or `upstream.connect_timeout`), before the head was serialised. The request
//! is then sent to another endpoint not tried yet, at most [`MAX_ATTEMPTS`] endpoints in all
//! and within the request's deadline, and the failed connect counts as a gateway error of
//! the first endpoint (five in a row eject it). A request whose bytes may have reached an
//! endpoint (a reset or an early close after writing, a timeout, a 5xx) is never sent to
//! another one: the client gets the 502/504/5xx. The one exception is the pool's own (both
//! engines, before balancing existed): a *reused* idle connection that turns out closed
//! before any response byte is replaced by another connection to the same endpoint, and an
//! idempotent request whose body is entirely at hand is written again on it (RFC 9110
//! §9.2.2). A route with one endpoint never builds a balancer: its requests take the path
//! they took before, with nothing added.

use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use tailwater_core::balance::{Balancer, Outcome, Selected};
use tokio::time::Instant;

use crate::decision::Decision;
use crate::upstream::H1Pool;

/// Most endpoints one request is offered to (the first and two others), when connecting
/// fails before any byte was sent.
pub(crate) const MAX_ATTEMPTS: usize = 3;

/// One upstream endpoint of a route.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) authority: Authority,
    /// Idle HTTP/1.1 connections to it (shared by every route with the same endpoint).
    pub(crate) h1_pool: Arc<H1Pool>,
}

/// The balancer of a route with several endpoints, with its clock.
#[derive(Debug)]
pub(crate) struct Balance {
    pub(crate) balancer: Arc<Balancer>,
    origin: Instant,
    /// The endpoints and settings it was built for, to keep it across reloads when they
    /// compare equal.
    pub(crate) key: BalanceKey,
}

/// What a balancer is built from: a route's endpoints and `[route.balance]`.
pub(crate) type BalanceKey = (crate::config::Upstreams, crate::config::BalanceSettings);

impl Balance {
    pub(crate) fn new(balancer: Balancer, origin: Instant, key: BalanceKey) -> Self {
        Self {
            balancer: Arc::new(balancer),
            origin,
            key,
        }
    }

    /// The same balancer (and clock) under a new table.
    pub(crate) fn new_shared(old: &Balance, key: BalanceKey) -> Self {
        Self {
            balancer: Arc::clone(&old.balancer),
            origin: old.origin,
            key,
        }
    }

    /// The balancer's time now.
    pub(crate) fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }

    /// Chooses an endpoint not in `exclude` (a bit per endpoint index).
    pub(crate) fn select(&self, exclude: u64) -> Option<Attempt> {
        let selected = self.balancer.select(self.now(), exclude)?;
        Some(Attempt {
            selected,
            origin: self.origin,
            sent: Instant::now(),
            head: None,
        })
    }
}

/// A request on one endpoint of a balanced route, settled with the request
/// (`Guard`) or, when connecting failed, at once.
#[derive(Debug)]
pub(crate) struct Attempt {
    selected: Selected,
    origin: Instant,
    sent: Instant,
    /// Time to the response head and its status, once it came.
    head: Option<(Duration, u16)>,
}

impl Attempt {
    /// The endpoint's index in the route.
    pub(crate) fn index(&self) -> usize {
        self.selected.index()
    }

    /// The response head arrived with `status`: its latency is the endpoint's sample.
    pub(crate) fn head(&mut self, status: u16) {
        self.head = Some((self.sent.elapsed(), status));
    }

    /// Connecting failed: a gateway error of this endpoint.
    pub(crate) fn connect_failed(self) {
        let rtt = self.sent.elapsed();
        self.settle(Some(rtt), Outcome::GatewayError);
    }

    /// Settles the request as `decision` said it ended.
    pub(crate) fn finish(self, decision: Decision) {
        let outcome = match decision {
            Decision::Success | Decision::UpstreamStatus => match self.head {
                Some((_, status)) => Outcome::of_status(status),
                None => Outcome::Success,
            },
            Decision::UpstreamError | Decision::UpstreamTimeout | Decision::BodyError => {
                Outcome::GatewayError
            }
            // The client's deadline cut the wait: its length says the endpoint is at
            // least this slow, nothing about failures.
            Decision::DeadlineExceeded => {
                let rtt = self.sent.elapsed();
                return self.settle(Some(rtt), Outcome::Ignored);
            }
            _ => Outcome::Ignored,
        };
        let rtt = match (self.head, outcome) {
            (Some((rtt, _)), _) => Some(rtt),
            (None, Outcome::Ignored) => None,
            (None, _) => Some(self.sent.elapsed()),
        };
        self.settle(rtt, outcome);
    }

    fn settle(self, rtt: Option<Duration>, outcome: Outcome) {
        let now = Instant::now().saturating_duration_since(self.origin);
        self.selected.finish(now, rtt, outcome);
    }
}
