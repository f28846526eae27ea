//! Quotas: how many cells per period, and how many at once.

use std::time::Duration;

use crate::ConfigError;
use crate::clock::duration_to_nanos;

/// The largest `burst × emission interval` (the GCRA delay variation tolerance) a quota may
/// have: 2^62 ns, about 146 years. It keeps every sum in [`gcra::step`](super::gcra::step)
/// far from `u64::MAX`.
pub const MAX_TOLERANCE_NANOS: u64 = 1 << 62;

/// Thirty days: the "month" of [`Quota::per_month`] (envoyproxy/ratelimit's `month` unit too).
pub const MONTH: Duration = Duration::from_secs(30 * 24 * 3600);

/// A validated GCRA limit: `rate` cells per `period`, at most `burst` cells at once.
///
/// This is both the user-facing quota and the GCRA parameter set: it precomputes the
/// emission interval `T = ceil(period_ns / rate)` and the tolerance `burst · T`, so a check
/// does no division. Long quotas (per hour, day, 30-day month) are the same algorithm with
/// a long period; nothing resets at a window boundary.
///
/// For the IETF `RateLimit-Policy` header (draft-ietf-httpapi-ratelimit-headers-10) use
/// `q = rate()` and `w = period().as_secs()`.
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::rate::Quota;
///
/// let q = Quota::per_second(100)?.with_burst(20)?;
/// assert_eq!(q.rate(), 100);
/// assert_eq!(q.burst(), 20);
/// assert_eq!(q.emission_interval(), Duration::from_millis(10));
///
/// let daily = Quota::per_day(1_000_000)?; // burst defaults to the rate
/// assert_eq!(daily.burst(), 1_000_000);
///
/// // Zero is refused with the name of the field.
/// assert_eq!(Quota::per_second(0).unwrap_err().field(), "rate");
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    rate: u32,
    period_ns: u64,
    burst: u32,
    /// `T = ceil(period_ns / rate)`, at least 1.
    emission_ns: u64,
    /// `burst · T` (= τ + T).
    tolerance_ns: u64,
}

impl Quota {
    /// `rate` cells per `period`, with `burst` cells allowed at once.
    ///
    /// Errors (field named): `rate` or `burst` zero, `period` zero or longer than `u64::MAX`
    /// nanoseconds, `burst` so large that `burst · T` exceeds [`MAX_TOLERANCE_NANOS`].
    pub fn new(rate: u32, period: Duration, burst: u32) -> Result<Self, ConfigError> {
        if rate == 0 {
            return Err(ConfigError::new("rate", "must be at least 1"));
        }
        if period.is_zero() {
            return Err(ConfigError::new("period", "must be greater than zero"));
        }
        if period.as_nanos() > u128::from(u64::MAX) {
            return Err(ConfigError::new(
                "period",
                "must be at most u64::MAX nanoseconds (about 584 years)",
            ));
        }
        if burst == 0 {
            return Err(ConfigError::new("burst", "must be at least 1"));
        }
        let period_ns = duration_to_nanos(period);
        let emission_ns = period_ns.div_ceil(u64::from(rate));
        let tolerance_ns = emission_ns
            .checked_mul(u64::from(burst))
            .filter(|t| *t <= MAX_TOLERANCE_NANOS)
            .ok_or_else(|| {
                ConfigError::new(
                    "burst",
                    format!(
                        "burst {burst} times the emission interval {emission_ns} ns exceeds \
                         2^62 ns (about 146 years)"
                    ),
                )
            })?;
        Ok(Self {
            rate,
            period_ns,
            burst,
            emission_ns,
            tolerance_ns,
        })
    }

    /// `rate` cells per `period`, burst = `rate`.
    pub fn per_period(rate: u32, period: Duration) -> Result<Self, ConfigError> {
        Self::new(rate, period, rate)
    }

    /// `rate` per second, burst = `rate`.
    pub fn per_second(rate: u32) -> Result<Self, ConfigError> {
        Self::per_period(rate, Duration::from_secs(1))
    }

    /// `rate` per minute, burst = `rate`.
    pub fn per_minute(rate: u32) -> Result<Self, ConfigError> {
        Self::per_period(rate, Duration::from_secs(60))
    }

    /// `rate` per hour, burst = `rate`.
    pub fn per_hour(rate: u32) -> Result<Self, ConfigError> {
        Self::per_period(rate, Duration::from_secs(3600))
    }

    /// `rate` per day, burst = `rate`.
    pub fn per_day(rate: u32) -> Result<Self, ConfigError> {
        Self::per_period(rate, Duration::from_secs(86_400))
    }

    /// `rate` per 30-day [`MONTH`], burst = `rate`.
    pub fn per_month(rate: u32) -> Result<Self, ConfigError> {
        Self::per_period(rate, MONTH)
    }

    /// The same rate and period with another burst (validated as in [`Quota::new`]).
    pub fn with_burst(self, burst: u32) -> Result<Self, ConfigError> {
        Self::new(self.rate, self.period(), burst)
    }

    /// Cells per period.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The period the rate is counted over.
    pub fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns)
    }

    /// The period in nanoseconds.
    pub fn period_nanos(&self) -> u64 {
        self.period_ns
    }

    /// Cells admitted at once from a full bucket; also [`RateDecision::limit`](super::RateDecision::limit).
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// `T = ceil(period / rate)`: one cell's worth of time.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.emission_ns)
    }

    /// `T` in nanoseconds.
    pub fn emission_nanos(&self) -> u64 {
        self.emission_ns
    }

    /// `burst · T` in nanoseconds (GCRA's τ + T): how far the TAT may run ahead of `now`.
    pub fn tolerance_nanos(&self) -> u64 {
        self.tolerance_ns
    }
}

/// Several quotas enforced together on one key (e.g. 100/s and 1 M/day): a request is
/// admitted only if every quota admits it, and then every quota is charged; otherwise none is.
///
/// Holds between 1 and [`MultiQuota::MAX`] quotas.
///
/// ```
/// use tailwater_core::rate::{MultiQuota, Quota};
/// let mq = MultiQuota::new([Quota::per_second(100)?, Quota::per_day(1_000_000)?])?;
/// assert_eq!(mq.len(), 2);
/// assert_eq!(MultiQuota::new([]).unwrap_err().field(), "quotas");
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MultiQuota {
    quotas: Box<[Quota]>,
}

impl MultiQuota {
    /// The most quotas one decision may combine.
    pub const MAX: usize = 16;

    /// Validates that there is at least one and at most [`MultiQuota::MAX`] quotas.
    pub fn new(quotas: impl IntoIterator<Item = Quota>) -> Result<Self, ConfigError> {
        let quotas: Box<[Quota]> = quotas.into_iter().collect();
        check_quota_count(quotas.len())?;
        Ok(Self { quotas })
    }

    /// The quotas, in the order given (decisions report indices into this slice).
    pub fn quotas(&self) -> &[Quota] {
        &self.quotas
    }

    /// How many quotas.
    pub fn len(&self) -> usize {
        self.quotas.len()
    }

    /// Always `false`: a `MultiQuota` holds at least one quota.
    pub fn is_empty(&self) -> bool {
        self.quotas.is_empty()
    }
}

impl From<Quota> for MultiQuota {
    fn from(q: Quota) -> Self {
        Self {
            quotas: Box::new([q]),
        }
    }
}

pub(crate) fn check_quota_count(n: usize) -> Result<(), ConfigError> {
    if n == 0 {
        return Err(ConfigError::new("quotas", "at least one quota is required"));
    }
    if n > MultiQuota::MAX {
        return Err(ConfigError::new(
            "quotas",
            format!("at most {} quotas per decision, got {n}", MultiQuota::MAX),
        ));
    }
    Ok(())
}
