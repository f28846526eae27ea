//! Load schedules as phase lists (in TOML, write the `[[phase]]`s directly).
//!
//! ```
//! use std::time::Duration;
//! use tailwater_sim::scenario::schedule;
//! let s = Duration::from_secs(1);
//! assert_eq!(schedule::spike(0.5, 10.0, 3 * s, s, 4 * s).len(), 3);
//! assert_eq!(schedule::steps(s, &[0.5, 1.0, 1.5]).len(), 3);
//! ```

use std::time::Duration;

use super::Phase;

/// One constant load.
pub fn constant(duration: Duration, load: f64) -> Vec<Phase> {
    vec![Phase::constant(duration, load)]
}

/// A linear ramp.
pub fn ramp(duration: Duration, from: f64, to: f64) -> Vec<Phase> {
    vec![Phase::ramp(duration, from, to)]
}

/// Equal-length steps through `loads`.
pub fn steps(each: Duration, loads: &[f64]) -> Vec<Phase> {
    loads.iter().map(|&l| Phase::constant(each, l)).collect()
}

/// `base` for `before`, `peak` for `during`, `base` for `after`.
pub fn spike(
    base: f64,
    peak: f64,
    before: Duration,
    during: Duration,
    after: Duration,
) -> Vec<Phase> {
    vec![
        Phase::constant(before, base),
        Phase::constant(during, peak),
        Phase::constant(after, base),
    ]
}
