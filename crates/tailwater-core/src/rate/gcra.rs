//! The pure GCRA step: `(quota, now, stored TAT, n) → (decision, new TAT)`.
//!
//! No clock, no I/O, no shared state: the in-memory limiters call these functions inside
//! their compare-and-swap loop or shard lock, and the Redis store runs the same arithmetic
//! as a Lua script. The two are property-tested against each other, so the arithmetic is
//! specified here exactly.
//!
//! # The exact arithmetic (all integers, nanoseconds, `u64`)
//!
//! Parameters from the [`Quota`]:
//!
//! ```text
//! T   = ceil(period_ns / rate)        emission interval, >= 1   (rounded UP: never over-admits)
//! DVT = burst * T                     = tau + T, with tau = T * (burst - 1);  DVT <= 2^62
//! ```
//!
//! State: one `u64`, the theoretical arrival time `TAT`, in the same time base as `now`.
//! A missing key is stored state `0`; any `TAT <= now` means "bucket full" and carries no
//! information (that is why idle keys can be evicted).
//!
//! One step, for `n` cells at time `now`:
//!
//! ```text
//! tat      = max(stored, now)
//! if n == 0:                         -> ALLOWED (a query), state unchanged (= stored)
//! if n > burst:                      -> DENIED ExceedsBurst, retry_after = None, state unchanged
//! new_tat  = tat + n * T
//! allow_at = new_tat - DVT           (saturating at 0)
//! if now < allow_at:                 -> DENIED RateExceeded, retry_after = allow_at - now,
//!                                       state unchanged (= stored, NOT tat: denied hits never write)
//! else:                              -> ALLOWED, state = new_tat
//! ```
//!
//! Reported numbers, from `t' = new_tat` when allowed and `t' = tat` otherwise:
//!
//! ```text
//! limit       = burst
//! remaining   = min(burst, floor((now + DVT - t') / T))     (saturating subtraction at 0)
//! reset_after = t' - now                                   (time until the bucket is full)
//! retry_after = allow_at - now  when denied for rate; None otherwise
//! ```
//!
//! This is governor's and redis-cell's GCRA (reject when `t < TAT − τ`; for `n` cells,
//! reject outright when `(n − 1)·T > τ`, i.e. `n > burst`), written with `DVT = τ + T` so
//! that `allow_at = TAT − τ` for one cell. Because `T` is rounded up, the limiter admits at
//! most `burst + floor(elapsed / T) <= burst + rate · elapsed / period` cells over any run.
//!
//! Sums cannot overflow: `tat <= now + DVT` after any sequence of steps and `DVT <= 2^62`;
//! the implementation still saturates, so an adversarial `stored` value cannot wrap.
//! **Lua note:** Redis runs Lua 5.1 whose numbers are doubles, exact only below 2^53; a Lua
//! port must keep `now` and `TAT` below 2^53 (use a recent epoch or microseconds, and then
//! run this function in the same unit for the comparison) and use `math.floor` for the
//! division.
//!
//! # Several quotas at once
//!
//! [`step_all`] evaluates [`step`] for every quota on its own TAT at the same `now` and `n`;
//! the request is admitted iff every quota admits it, and then **all** TATs are written;
//! otherwise **none** is. The reported decision is the most restrictive one:
//!
//! - if some quota denies: an `ExceedsBurst` denial first, else the denial with the largest
//!   `retry_after` (the earliest time all could admit); ties go to the lowest index;
//! - if all admit: the smallest `remaining`, then the largest `reset_after`, then the
//!   lowest index.

use std::time::Duration;

use super::decision::{DenyReason, RateDecision};
use super::quota::Quota;

/// One GCRA step; see the [module docs](self) for the exact arithmetic.
///
/// Returns the decision and the state to store. When the decision is a denial (or `n == 0`)
/// the returned state is `stored` itself, unchanged.
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::rate::{gcra, Quota};
///
/// // 10 per second (T = 100 ms), burst 2.
/// let q = Quota::new(10, Duration::from_secs(1), 2)?;
/// let (d, tat) = gcra::step(&q, 0, 0, 1);
/// assert!(d.allowed);
/// assert_eq!((d.remaining, tat), (1, 100_000_000));
/// let (d, tat) = gcra::step(&q, 0, tat, 1);
/// assert!(d.allowed);
/// let (d, tat2) = gcra::step(&q, 0, tat, 1);
/// assert!(!d.allowed);
/// assert_eq!(d.retry_after, Some(Duration::from_millis(100)));
/// assert_eq!(tat2, tat); // denied hits do not change the state
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
#[inline]
pub fn step(quota: &Quota, now: u64, stored: u64, n: u32) -> (RateDecision, u64) {
    let t = quota.emission_nanos();
    let dvt = quota.tolerance_nanos();
    let tat = stored.max(now);
    let burst = quota.burst();

    let denied = |reason: DenyReason, retry_after: Option<Duration>| {
        (
            RateDecision {
                allowed: false,
                limit: burst,
                remaining: remaining(t, now, dvt, tat, burst),
                reset_after: Duration::from_nanos(tat - now),
                retry_after,
                reason: Some(reason),
                quota_index: 0,
            },
            stored,
        )
    };

    if n > burst {
        return denied(DenyReason::ExceedsBurst, None);
    }
    // n <= burst, so n * T <= DVT <= 2^62: no overflow.
    let new_tat = tat.saturating_add(u64::from(n) * t);
    let allow_at = new_tat.saturating_sub(dvt);
    if now < allow_at {
        return denied(
            DenyReason::RateExceeded,
            Some(Duration::from_nanos(allow_at - now)),
        );
    }
    let new_state = if n == 0 { stored } else { new_tat };
    (
        RateDecision {
            allowed: true,
            limit: burst,
            remaining: remaining(t, now, dvt, new_tat, burst),
            reset_after: Duration::from_nanos(new_tat - now),
            retry_after: None,
            reason: None,
            quota_index: 0,
        },
        new_state,
    )
}

/// The state half of [`step`] alone: `Some(new_state)` when [`step`] admits (the state it
/// returns), `None` when it denies. The same arithmetic, without building the decision, so
/// that a limiter can decide inside its lock or compare-and-swap loop and then call
/// [`step`] on the same `(now, stored, n)` outside it for the numbers (`step` is a pure
/// function, so the two agree; property-tested).
#[inline]
pub(crate) fn admit(quota: &Quota, now: u64, stored: u64, n: u32) -> Option<u64> {
    if n > quota.burst() {
        return None;
    }
    let tat = stored.max(now);
    // n <= burst, so n * T <= DVT <= 2^62: no overflow.
    let new_tat = tat.saturating_add(u64::from(n) * quota.emission_nanos());
    if now < new_tat.saturating_sub(quota.tolerance_nanos()) {
        return None;
    }
    Some(if n == 0 { stored } else { new_tat })
}

#[inline]
fn remaining(t: u64, now: u64, dvt: u64, tat: u64, burst: u32) -> u32 {
    let slack = now.saturating_add(dvt).saturating_sub(tat) / t;
    u32::try_from(slack).unwrap_or(u32::MAX).min(burst)
}

/// Several quotas checked and charged together, all or nothing; see the [module docs](self).
///
/// `tats[i]` is the stored state of `quotas[i]`; it is updated in place only when the
/// request is admitted. With no quotas at all, the answer is "allowed" with `limit` and
/// `remaining` at `u32::MAX` (nothing limits it).
///
/// # Panics
///
/// If `tats.len() != quotas.len()` (a programming error, not an input error).
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::rate::{gcra, DenyReason, Quota};
///
/// let per_sec = Quota::per_second(10)?;  // burst 10
/// let per_min = Quota::per_minute(15)?;  // burst 15
/// let mut tats = [0, 0];
/// let d = gcra::step_all(&[per_sec, per_min], 0, &mut tats, 10);
/// assert!(d.allowed);
/// assert_eq!(d.quota_index, 0);          // 0 left per second, 5 per minute
/// // One second later the per-second quota is full again but the per-minute one is not.
/// let now = 1_000_000_000;
/// let before = tats;
/// let d = gcra::step_all(&[per_sec, per_min], now, &mut tats, 10);
/// assert!(!d.allowed);
/// assert_eq!(d.reason, Some(DenyReason::RateExceeded));
/// assert_eq!(d.quota_index, 1);
/// assert_eq!(tats, before);              // neither quota was charged
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
pub fn step_all(quotas: &[Quota], now: u64, tats: &mut [u64], n: u32) -> RateDecision {
    assert_eq!(
        quotas.len(),
        tats.len(),
        "one stored TAT per quota is required"
    );
    let mut best: Option<RateDecision> = None;
    let mut all_allowed = true;
    for (i, (q, tat)) in quotas.iter().zip(tats.iter()).enumerate() {
        let (mut d, _) = step(q, now, *tat, n);
        d.quota_index = i;
        all_allowed &= d.allowed;
        best = Some(match best {
            None => d,
            Some(b) if more_restrictive(&d, &b) => d,
            Some(b) => b,
        });
    }
    let Some(best) = best else {
        return RateDecision {
            allowed: true,
            limit: u32::MAX,
            remaining: u32::MAX,
            reset_after: Duration::ZERO,
            retry_after: None,
            reason: None,
            quota_index: 0,
        };
    };
    if all_allowed {
        for (q, tat) in quotas.iter().zip(tats.iter_mut()) {
            *tat = step(q, now, *tat, n).1;
        }
    }
    best
}

/// Whether `a` is strictly more restrictive than `b` (`b` came from a lower index).
#[inline]
pub(crate) fn more_restrictive(a: &RateDecision, b: &RateDecision) -> bool {
    match (a.allowed, b.allowed) {
        (false, true) => true,
        (true, false) => false,
        (false, false) => {
            let a_never = a.reason == Some(DenyReason::ExceedsBurst);
            let b_never = b.reason == Some(DenyReason::ExceedsBurst);
            match (a_never, b_never) {
                (true, false) => true,
                (false, true) => false,
                _ => a.retry_after > b.retry_after,
            }
        }
        (true, true) => {
            a.remaining < b.remaining
                || (a.remaining == b.remaining && a.reset_after > b.reset_after)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    fn q(rate: u32, period: Duration, burst: u32) -> Quota {
        Quota::new(rate, period, burst).expect("valid quota")
    }

    /// Table: 10/s (T = 100 ms), burst 3. Each row: (now ms, n, allowed, remaining,
    /// reset_after ms, retry_after ms, reason).
    #[test]
    fn burst_then_steady_rate_table() {
        let quota = q(10, Duration::from_secs(1), 3);
        type Row = (u64, u32, bool, u32, u64, Option<u64>, Option<DenyReason>);
        let rows: &[Row] = &[
            // Burst of 3 at t=0.
            (0, 1, true, 2, 100, None, None),
            (0, 1, true, 1, 200, None, None),
            (0, 1, true, 0, 300, None, None),
            // Fourth at t=0: TAT=300, allow_at = 300+100-300 = 100 -> wait 100 ms.
            (
                0,
                1,
                false,
                0,
                300,
                Some(100),
                Some(DenyReason::RateExceeded),
            ),
            // At 50 ms: still 50 ms to wait; state unchanged by the denial above.
            (
                50,
                1,
                false,
                0,
                250,
                Some(50),
                Some(DenyReason::RateExceeded),
            ),
            // At 100 ms exactly: admitted, TAT = 400.
            (100, 1, true, 0, 300, None, None),
            // Steady rate: one every 100 ms.
            (200, 1, true, 0, 300, None, None),
            (
                250,
                1,
                false,
                0,
                250,
                Some(50),
                Some(DenyReason::RateExceeded),
            ),
            (300, 1, true, 0, 300, None, None),
            // Idle 1 s: full again (TAT 600 < 1300).
            (1300, 2, true, 1, 200, None, None),
            // n = 3 with 1 left: TAT 1500, allow_at = 1500+300-300 = 1500 -> wait 200 ms.
            (
                1300,
                3,
                false,
                1,
                200,
                Some(200),
                Some(DenyReason::RateExceeded),
            ),
            // n = 4 > burst: can never succeed.
            (1300, 4, false, 1, 200, None, Some(DenyReason::ExceedsBurst)),
            // n = 0 is a query: allowed, nothing charged.
            (1300, 0, true, 1, 200, None, None),
            (1500, 3, true, 0, 300, None, None),
        ];
        let mut tat = 0;
        for (i, &(now, n, allowed, rem, reset, retry, reason)) in rows.iter().enumerate() {
            let (d, new) = step(&quota, now * MS, tat, n);
            assert_eq!(d.allowed, allowed, "row {i}");
            assert_eq!(d.limit, 3, "row {i}");
            assert_eq!(d.remaining, rem, "row {i}");
            assert_eq!(d.reset_after, Duration::from_millis(reset), "row {i}");
            assert_eq!(d.retry_after, retry.map(Duration::from_millis), "row {i}");
            assert_eq!(d.reason, reason, "row {i}");
            if !allowed || n == 0 {
                assert_eq!(new, tat, "row {i}: denied hits must not change state");
            }
            tat = new;
        }
    }

    #[test]
    fn emission_interval_rounds_up() {
        // 3 per second: T = ceil(1e9 / 3) = 333_333_334 ns.
        let quota = q(3, Duration::from_secs(1), 1);
        assert_eq!(quota.emission_nanos(), 333_333_334);
        assert_eq!(quota.tolerance_nanos(), 333_333_334);
        let (d, tat) = step(&quota, 0, 0, 1);
        assert!(d.allowed);
        let (d, _) = step(&quota, 333_333_333, tat, 1);
        assert_eq!(d.retry_after, Some(Duration::from_nanos(1)));
        let (d, _) = step(&quota, 333_333_334, tat, 1);
        assert!(d.allowed);
    }

    #[test]
    fn long_periods_are_the_same_gcra() {
        // 1 M per 30-day month: T = 2_592_000 s / 1e6 = 2.592 s.
        let quota = Quota::per_month(1_000_000).expect("valid");
        assert_eq!(quota.emission_nanos(), 2_592 * MS);
        let (d, tat) = step(&quota, 0, 0, 1_000_000);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.reset_after, Duration::from_secs(30 * 86_400));
        let (d, _) = step(&quota, S, tat, 1);
        assert_eq!(d.retry_after, Some(Duration::from_millis(1_592)));
    }

    #[test]
    fn denied_from_fresh_state_keeps_zero() {
        let quota = q(1, Duration::from_secs(1), 1);
        let (d, tat) = step(&quota, 5 * S, 0, 2);
        assert_eq!(d.reason, Some(DenyReason::ExceedsBurst));
        assert_eq!(tat, 0);
    }

    #[test]
    fn adversarial_state_does_not_wrap() {
        let quota = q(1, Duration::from_secs(1), 1);
        let (d, tat) = step(&quota, 10 * S, u64::MAX, 1);
        assert!(!d.allowed);
        assert_eq!(tat, u64::MAX);
        let (d, _) = step(&quota, u64::MAX, 0, 1);
        assert!(d.allowed);
    }

    #[test]
    fn step_all_is_all_or_nothing_and_reports_the_tightest() {
        let fast = q(10, Duration::from_secs(1), 2); // T = 100 ms
        let slow = q(3, Duration::from_secs(60), 3); // T = 20 s
        let quotas = [fast, slow];
        let mut tats = [0, 0];
        let d = step_all(&quotas, 0, &mut tats, 2);
        assert!(d.allowed);
        // fast: 0 left; slow: 1 left -> fast is tighter.
        assert_eq!((d.quota_index, d.remaining), (0, 0));
        assert_eq!(tats, [200 * MS, 40 * S]);
        let d = step_all(&quotas, 200 * MS, &mut tats, 2);
        // fast admits (full again), slow needs until 20 s: denied by slow, nothing charged.
        assert!(!d.allowed);
        assert_eq!(d.quota_index, 1);
        assert_eq!(d.retry_after, Some(Duration::from_nanos(20 * S - 200 * MS)));
        assert_eq!(tats, [200 * MS, 40 * S]);
        // n over one burst but not the other: ExceedsBurst wins.
        let d = step_all(&quotas, 200 * MS, &mut tats, 3);
        assert_eq!(
            (d.quota_index, d.reason),
            (0, Some(DenyReason::ExceedsBurst))
        );
        assert_eq!(d.retry_after, None);
    }

    #[test]
    fn step_all_with_no_quotas_allows() {
        let d = step_all(&[], 0, &mut [], 1);
        assert!(d.allowed);
        assert_eq!(d.remaining, u32::MAX);
    }

    #[test]
    fn quota_validation_names_the_field() {
        let s = Duration::from_secs(1);
        assert_eq!(Quota::new(0, s, 1).unwrap_err().field(), "rate");
        assert_eq!(
            Quota::new(1, Duration::ZERO, 1).unwrap_err().field(),
            "period"
        );
        assert_eq!(Quota::new(1, s, 0).unwrap_err().field(), "burst");
        assert_eq!(
            Quota::new(1, Duration::MAX, 1).unwrap_err().field(),
            "period"
        );
        assert_eq!(
            Quota::new(1, Duration::from_secs(86_400 * 365 * 100), u32::MAX)
                .unwrap_err()
                .field(),
            "burst"
        );
        assert!(Quota::new(u32::MAX, Duration::from_nanos(1), 1).is_ok());
    }
}
