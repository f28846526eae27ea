//! The credit gate: how many messages a consumer may fetch now.
//!
//! Credit is the limiter's free permits. The gate takes up to `max` of them at once (without
//! counting refusals as rejections: it asks only while `in_flight < limit`), and when none is
//! free waits for a handler to release one, or at most `max_wait`, so every wait has a
//! deadline and a missed wake-up costs one `max_wait` at worst.
#![cfg_attr(
    not(any(feature = "redis-streams", feature = "nats", feature = "rabbitmq")),
    allow(dead_code)
)]

use std::time::Duration;

use tailwater_core::clock::Clock;
use tailwater_core::{Limiter, OwnedPermit};
use tokio::sync::Notify;

#[derive(Debug)]
pub(crate) struct Gate<C: Clock> {
    limiter: Limiter<C>,
    freed: Notify,
    max: usize,
    max_wait: Duration,
}

impl<C: Clock> Gate<C> {
    pub(crate) fn new(limiter: Limiter<C>, max: usize, max_wait: Duration) -> Self {
        Self {
            limiter,
            freed: Notify::new(),
            max,
            max_wait,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limiter.limit()
    }

    /// Called by a handler after it released its permit.
    pub(crate) fn released(&self) {
        self.freed.notify_one();
    }

    /// Up to `max` permits without waiting (possibly none).
    pub(crate) fn take(&self) -> Vec<OwnedPermit<C>> {
        let mut got = Vec::new();
        while got.len() < self.max && self.limiter.in_flight() < self.limiter.limit() {
            match self.limiter.try_acquire_owned() {
                Ok(p) => got.push(p),
                Err(_) => break,
            }
        }
        got
    }

    /// At least one permit and up to `max`, waiting for a release when none is free.
    /// Returns an empty list only when `max_wait` passed with no permit free (the caller
    /// loops, checking for shutdown in between).
    pub(crate) async fn acquire(&self) -> Vec<OwnedPermit<C>> {
        let notified = self.freed.notified();
        tokio::pin!(notified);
        // Registered before looking, so a release between the look and the wait wakes us.
        notified.as_mut().enable();
        let got = self.take();
        if !got.is_empty() {
            return got;
        }
        let _ = tokio::time::timeout(self.max_wait, notified).await;
        self.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailwater_core::algorithm::Fixed;

    #[tokio::test(start_paused = true)]
    async fn takes_only_free_permits_and_waits_for_a_release() {
        let limiter = Limiter::builder()
            .algorithm(Fixed::new(5).unwrap())
            .build()
            .unwrap();
        let gate = Gate::new(limiter.clone(), 3, Duration::from_millis(50));
        let a = gate.acquire().await;
        assert_eq!(a.len(), 3, "capped by max");
        let b = gate.acquire().await;
        assert_eq!(b.len(), 2, "only the free ones");
        // None free: waits at most max_wait and comes back empty.
        let start = tokio::time::Instant::now();
        assert!(gate.acquire().await.is_empty());
        assert_eq!(start.elapsed(), Duration::from_millis(50));
        assert_eq!(
            limiter.stats().counters.rejected_total(),
            0,
            "no rejections counted"
        );
        // A release wakes the waiter at once.
        let waiter = async { gate.acquire().await.len() };
        let release = async {
            drop(a);
            gate.released();
        };
        let (n, ()) = tokio::join!(waiter, release);
        assert_eq!(n, 3);
        drop(b);
    }
}
