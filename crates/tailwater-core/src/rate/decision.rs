//! The answer to a rate-limit check.

use std::fmt;
use std::time::Duration;

/// Why a check was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenyReason {
    /// The quota is used up for now; [`RateDecision::retry_after`] says when `n` cells fit.
    RateExceeded,
    /// `n` is larger than the quota's burst: this check can never succeed, whatever the wait.
    /// [`RateDecision::retry_after`] is `None`. Split the work or raise the burst.
    ExceedsBurst,
    /// A keyed limiter is at its `max_keys` and its [`OnFull`](super::OnFull) policy is
    /// `Reject`: this key is new and there is no room for it. `retry_after` is an upper
    /// bound on when an existing key goes idle and can be evicted (the quota's `burst · T`).
    KeyCapacity,
}

impl DenyReason {
    /// The snake-case name used in metrics labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            DenyReason::RateExceeded => "rate_exceeded",
            DenyReason::ExceedsBurst => "exceeds_burst",
            DenyReason::KeyCapacity => "key_capacity",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one GCRA check: admitted or not, and what the HTTP edge needs to say so.
///
/// Mapping to headers (draft-ietf-httpapi-ratelimit-headers-10 and RFC 9110):
///
/// - `RateLimit-Policy: "name";q=<Quota::rate>;w=<Quota::period secs>` (from the quota at
///   [`quota_index`](Self::quota_index));
/// - `RateLimit: "name";r=<remaining>;t=<reset_after_secs()>`;
/// - on denial, `429` + `Retry-After: <retry_after_secs()>` (never earlier than `t` for
///   the same policy is not required: `t` is when the bucket is full again, `Retry-After`
///   when the `n` cells asked for fit).
///
/// The fields are public so that other stores (Redis) can build decisions; keep the
/// invariants: `allowed == reason.is_none()`, `remaining <= limit`, `retry_after` is
/// `None` when allowed or when `reason == Some(ExceedsBurst)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateDecision {
    /// Whether the cells were admitted (and the state charged).
    pub allowed: bool,
    /// The quota's burst: the most cells that could be admitted at once from a full bucket.
    pub limit: u32,
    /// Cells that could still be admitted right now, after this decision.
    pub remaining: u32,
    /// Time until the bucket is full again (`remaining == limit`) if nothing else arrives:
    /// the RateLimit header's `t`.
    pub reset_after: Duration,
    /// When denied for rate: how long until the same request would be admitted. `None`
    /// when allowed, and when it can never be admitted ([`DenyReason::ExceedsBurst`]).
    pub retry_after: Option<Duration>,
    /// Why it was denied; `None` when allowed.
    pub reason: Option<DenyReason>,
    /// Which quota this decision describes: for several quotas checked together, the most
    /// restrictive one (see [`gcra::step_all`](super::gcra::step_all)); 0 for one quota.
    pub quota_index: usize,
}

impl RateDecision {
    /// `retry_after` rounded up to whole seconds, for `Retry-After` (delay-seconds): never
    /// tells a client to come back too early. `None` as in `retry_after`.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(ceil_secs)
    }

    /// `reset_after` rounded up to whole seconds, for the RateLimit header's `t`.
    pub fn reset_after_secs(&self) -> u64 {
        ceil_secs(self.reset_after)
    }
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
