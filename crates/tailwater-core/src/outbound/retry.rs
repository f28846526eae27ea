//! Retry decisions: capped attempts, full-jitter exponential backoff, the server's pushback,
//! and the shared [`RetryBudget`].
//!
//! Pure: the caller passes what happened (was the attempt retryable, what pushback came back,
//! how much of the deadline is left) and a uniform random number; [`RetryPolicy::decide`]
//! answers "retry after this delay" or "give up, because ...". The budget is asked last, so a
//! retry that would not happen anyway never spends it.
//!
//! - **Attempts**: at most 3 per request, first included (Google SRE book; resilience4j's
//!   `maxAttempts` 3).
//! - **Backoff**: "full jitter" (AWS Architecture Blog, Brooker 2015): uniform in
//!   `[0, min(max, base × 2^(retry − 1)))`, base 25 ms, max 250 ms (Envoy's defaults).
//! - **Pushback**: `Retry-After` (delta-seconds) and `grpc-retry-pushback-ms` are floors for
//!   the delay; a negative gRPC pushback means "do not retry" (gRPC A6), as do HTTP 429 from
//!   a rate limit and `x-envoy-ratelimited` (the caller maps those to [`Pushback::DontRetry`]).
//!   A delay longer than the deadline left gives up at once.

use std::time::Duration;

use super::budget::{Extra, RetryBudget};
use crate::clock::Clock;
use crate::error::ConfigError;

/// What the server said about retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pushback {
    /// Nothing.
    #[default]
    None,
    /// Not before this long.
    After(Duration),
    /// Not at all (rate limited, `grpc-retry-pushback-ms` < 0).
    DontRetry,
}

/// Parses a `Retry-After` value in delta-seconds (`"120"`). An HTTP-date or garbage gives
/// `None` (no hint: the backoff decides). Values are capped at one day.
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::outbound::parse_retry_after;
/// assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
/// assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
/// ```
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(86_400)))
}

/// Parses `grpc-retry-pushback-ms` (gRPC A6): a non-negative integer is a delay, a negative
/// one means "do not retry", anything else is no hint.
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::outbound::{Pushback, parse_grpc_pushback_ms};
/// assert_eq!(parse_grpc_pushback_ms("250"), Pushback::After(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_pushback_ms("-1"), Pushback::DontRetry);
/// assert_eq!(parse_grpc_pushback_ms("soon"), Pushback::None);
/// ```
pub fn parse_grpc_pushback_ms(value: &str) -> Pushback {
    match value.trim().parse::<i64>() {
        Ok(ms) if ms < 0 => Pushback::DontRetry,
        Ok(ms) => Pushback::After(Duration::from_millis(ms.unsigned_abs().min(86_400_000))),
        Err(_) => Pushback::None,
    }
}

/// Why no retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GiveUp {
    /// The last attempt succeeded or failed in a way that is not retried (the caller's
    /// classification: e.g. a 4xx, or a non-idempotent request).
    NotRetryable,
    /// The server said not to.
    ServerSaidNo,
    /// `max_attempts` reached.
    Attempts,
    /// The delay would outlast the deadline.
    Deadline,
    /// The shared budget is spent.
    Budget,
}

impl GiveUp {
    /// The snake-case name, for metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            GiveUp::NotRetryable => "not_retryable",
            GiveUp::ServerSaidNo => "server_said_no",
            GiveUp::Attempts => "attempts",
            GiveUp::Deadline => "deadline",
            GiveUp::Budget => "budget",
        }
    }
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Retry after this delay (already charged to the budget).
    After(Duration),
    /// Do not retry.
    GiveUp(GiveUp),
}

/// Retry knobs (see the [module docs](self) for the anchors).
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::clock::ManualClock;
/// use tailwater_core::outbound::*;
/// let policy = RetryPolicy::default();
/// let budget = RetryBudget::with_clock(BudgetConfig::default(), ManualClock::new())?;
/// // A retryable failure on attempt 1 with a 100 ms pushback: retry after ≥ 100 ms.
/// let d = policy.decide(1, true, Pushback::After(Duration::from_millis(100)), None, &budget, 0.5);
/// assert_eq!(d, RetryDecision::After(Duration::from_millis(100)));
/// assert_eq!(policy.decide(3, true, Pushback::None, None, &budget, 0.5), RetryDecision::GiveUp(GiveUp::Attempts));
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (≥ 1; 1 = never retry).
    pub max_attempts: u32,
    /// Backoff base (the first retry waits up to this).
    pub base: Duration,
    /// Backoff cap.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base: Duration::from_millis(25),
            max: Duration::from_millis(250),
        }
    }
}

impl RetryPolicy {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_attempts == 0 || self.max_attempts > 10 {
            return Err(ConfigError::new(
                "max_attempts",
                format!("must be in 1..=10, got {}", self.max_attempts),
            ));
        }
        if self.max < self.base {
            return Err(ConfigError::new(
                "max",
                format!("{:?} is shorter than base {:?}", self.max, self.base),
            ));
        }
        Ok(())
    }

    /// The full-jitter backoff before retry number `retry` (1 for the first), for a uniform
    /// `u` in `[0, 1)`.
    pub fn backoff(&self, retry: u32, u: f64) -> Duration {
        let doublings = retry.saturating_sub(1).min(30);
        let cap = self.base.saturating_mul(1u32 << doublings).min(self.max);
        cap.mul_f64(u.clamp(0.0, 1.0))
    }

    /// Whether attempt number `attempt` (1 for the first), which ended as described, is
    /// followed by another (see the [module docs](self)). `remaining` is the time left of
    /// the request's deadline, if it has one.
    pub fn decide<C: Clock>(
        &self,
        attempt: u32,
        retryable: bool,
        pushback: Pushback,
        remaining: Option<Duration>,
        budget: &RetryBudget<C>,
        u: f64,
    ) -> RetryDecision {
        if !retryable {
            return RetryDecision::GiveUp(GiveUp::NotRetryable);
        }
        let floor = match pushback {
            Pushback::DontRetry => return RetryDecision::GiveUp(GiveUp::ServerSaidNo),
            Pushback::After(d) => d,
            Pushback::None => Duration::ZERO,
        };
        if attempt >= self.max_attempts {
            return RetryDecision::GiveUp(GiveUp::Attempts);
        }
        let delay = self.backoff(attempt, u).max(floor);
        if remaining.is_some_and(|r| r <= delay) {
            return RetryDecision::GiveUp(GiveUp::Deadline);
        }
        if !budget.try_withdraw(Extra::Retry) {
            return RetryDecision::GiveUp(GiveUp::Budget);
        }
        RetryDecision::After(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::outbound::BudgetConfig;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn full_jitter_backoff_by_hand() {
        let p = RetryPolicy::default();
        // Caps 25, 50, 100, 200, 250, 250 ms; u scales within them.
        let rows = [
            (1, 0.5, 12_500),
            (2, 0.5, 25_000),
            (3, 0.5, 50_000),
            (4, 0.5, 100_000),
            (5, 0.5, 125_000),
            (9, 0.999_999, 249_999),
            (1, 0.0, 0),
        ];
        for (i, (retry, u, micros)) in rows.into_iter().enumerate() {
            assert_eq!(p.backoff(retry, u).as_micros(), micros, "row {i}");
        }
    }

    #[test]
    fn decisions_by_hand() {
        let b = RetryBudget::with_clock(
            BudgetConfig {
                min_per_sec: 0,
                ..Default::default()
            },
            ManualClock::new(),
        )
        .unwrap();
        for _ in 0..10 {
            b.deposit(); // one retry's worth (10 % of 10)
        }
        let p = RetryPolicy::default();
        use RetryDecision::{After, GiveUp as No};
        let rows = [
            (1, false, Pushback::None, None, No(GiveUp::NotRetryable)),
            (1, true, Pushback::DontRetry, None, No(GiveUp::ServerSaidNo)),
            (3, true, Pushback::None, None, No(GiveUp::Attempts)),
            (
                1,
                true,
                Pushback::After(300 * MS),
                Some(200 * MS),
                No(GiveUp::Deadline),
            ),
            (
                1,
                true,
                Pushback::After(300 * MS),
                Some(400 * MS),
                After(300 * MS),
            ),
            // The budget's one retry is spent now.
            (2, true, Pushback::None, None, No(GiveUp::Budget)),
        ];
        for (i, (attempt, ok, pb, rem, want)) in rows.into_iter().enumerate() {
            assert_eq!(p.decide(attempt, ok, pb, rem, &b, 0.5), want, "row {i}");
        }
        assert_eq!(b.stats().retries, 1);
    }
}
