//! Distributions of positive durations, given by their mean and coefficient of variation.

use serde::{Deserialize, Serialize};

use crate::rng::Xoshiro256PlusPlus;

/// The shape of a time distribution; the mean is given separately, so every shape here has
/// mean 1 and is scaled by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// Always the mean (CV 0).
    Constant,
    /// Exponential (CV 1): Poisson arrivals, M/M/c service.
    Exponential,
    /// Gamma with the given CV (shape `1/cv²`; CV 1 is exponential).
    Gamma {
        /// Coefficient of variation (standard deviation / mean), ≥ 0.
        cv: f64,
    },
    /// Lognormal with the given CV (`σ² = ln(1 + cv²)`).
    Lognormal {
        /// Coefficient of variation, ≥ 0.
        cv: f64,
    },
    /// A heavy tail: a lognormal body (CV `cv`), of which a fraction `slow_fraction` is
    /// `slow_factor` times slower; scaled so that the overall mean is still 1.
    Bimodal {
        /// Fraction of slow values, in `[0, 1)`.
        slow_fraction: f64,
        /// How many times slower a slow value is, ≥ 1.
        slow_factor: f64,
        /// CV of the body.
        cv: f64,
    },
}

impl Shape {
    /// The coefficient of variation of the distribution.
    pub fn cv(&self) -> f64 {
        match *self {
            Shape::Constant => 0.0,
            Shape::Exponential => 1.0,
            Shape::Gamma { cv } | Shape::Lognormal { cv } => cv,
            Shape::Bimodal {
                slow_fraction: p,
                slow_factor: k,
                cv,
            } => {
                let f = 1.0 / (1.0 + p * (k - 1.0));
                let m2 = (1.0 + cv * cv) * f * f * ((1.0 - p) + p * k * k);
                (m2 - 1.0).max(0.0).sqrt()
            }
        }
    }

    /// A short description, e.g. `lognormal(cv=0.5)`.
    pub fn describe(&self) -> String {
        match *self {
            Shape::Constant => "constant".into(),
            Shape::Exponential => "exponential".into(),
            Shape::Gamma { cv } => format!("gamma(cv={cv})"),
            Shape::Lognormal { cv } => format!("lognormal(cv={cv})"),
            Shape::Bimodal {
                slow_fraction,
                slow_factor,
                cv,
            } => format!(
                "bimodal({}% x{slow_factor}, cv={cv})",
                slow_fraction * 100.0
            ),
        }
    }
}

/// A sampler with its parameters precomputed.
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    shape: Shape,
    mean: f64,
    a: f64,
    b: f64,
}

impl Sampler {
    /// A sampler of `shape` scaled to `mean` (any unit). The shape must have been validated.
    pub fn new(shape: Shape, mean: f64) -> Self {
        let (a, b) = match shape {
            Shape::Gamma { cv } if cv > 0.0 => {
                let k = 1.0 / (cv * cv);
                (k, 1.0 / k)
            }
            Shape::Lognormal { cv } | Shape::Bimodal { cv, .. } => {
                let s2 = (1.0 + cv * cv).ln();
                (-s2 / 2.0, s2.sqrt())
            }
            _ => (0.0, 0.0),
        };
        Self { shape, mean, a, b }
    }

    /// The mean.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// One value.
    #[inline]
    pub fn sample(&self, rng: &mut Xoshiro256PlusPlus) -> f64 {
        let unit = match self.shape {
            Shape::Constant => 1.0,
            Shape::Exponential => rng.exp1(),
            Shape::Gamma { cv } => {
                if cv == 0.0 {
                    1.0
                } else if (cv - 1.0).abs() < 1e-12 {
                    rng.exp1()
                } else {
                    rng.gamma(self.a) * self.b
                }
            }
            Shape::Lognormal { cv } => {
                if cv == 0.0 {
                    1.0
                } else {
                    (self.a + self.b * rng.normal()).exp()
                }
            }
            Shape::Bimodal {
                slow_fraction,
                slow_factor,
                cv,
            } => {
                let body = if cv == 0.0 {
                    1.0
                } else {
                    (self.a + self.b * rng.normal()).exp()
                };
                let f = 1.0 / (1.0 + slow_fraction * (slow_factor - 1.0));
                if rng.uniform() < slow_fraction {
                    body * f * slow_factor
                } else {
                    body * f
                }
            }
        };
        unit * self.mean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(shape: Shape) -> (f64, f64) {
        let s = Sampler::new(shape, 2.0);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        let n = 400_000;
        let (mut sum, mut sq) = (0.0, 0.0);
        for _ in 0..n {
            let x = s.sample(&mut rng);
            sum += x;
            sq += x * x;
        }
        let mean = sum / n as f64;
        let var = sq / n as f64 - mean * mean;
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn samplers_have_the_requested_mean_and_cv() {
        for shape in [
            Shape::Exponential,
            Shape::Gamma { cv: 0.5 },
            Shape::Gamma { cv: 1.5 },
            Shape::Lognormal { cv: 0.5 },
            Shape::Bimodal {
                slow_fraction: 0.01,
                slow_factor: 10.0,
                cv: 0.5,
            },
        ] {
            let (mean, cv) = moments(shape);
            assert!((mean - 2.0).abs() < 0.03, "{shape:?}: mean {mean}");
            assert!(
                (cv - shape.cv()).abs() < 0.05 * shape.cv().max(0.2),
                "{shape:?}: cv {cv} vs {}",
                shape.cv()
            );
        }
    }
}
