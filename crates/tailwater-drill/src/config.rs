//! The drill's configuration: the backend's capacity, the phases, the client and the proxy.

use std::num::NonZeroUsize;
use std::time::Duration;

use tailwater_core::names::{AlgorithmName, QueueName};
use tailwater_core::{ConfigError, Criticality};
pub use tailwater_load::backend::ServiceDistribution;

/// Everything the drill runs with. Start from [`DrillConfig::full`] or
/// [`DrillConfig::quick`] and adjust the public fields; [`DrillConfig::validate`] checks them.
///
/// The defaults are chosen so that the load generator sustains 10× the backend's capacity on
/// two shared cores in a debug build: the backend has 8 workers × 40 ms (200 requests/s), so
/// the heaviest phase offers 2 000 requests/s.
///
/// ```
/// use tailwater_drill::DrillConfig;
/// let config = DrillConfig::quick();
/// assert_eq!(config.capacity(), 200.0);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DrillConfig {
    /// Backend workers (requests served at once).
    pub workers: NonZeroUsize,
    /// Backend mean service time per request.
    pub service_time: Duration,
    /// How the backend's service times vary around their mean (default constant).
    pub service_dist: ServiceDistribution,
    /// Backend queue in front of the workers (FIFO); beyond it the backend answers 503.
    pub backend_queue: usize,
    /// Offered load per phase, as multiples of the backend's capacity.
    pub multipliers: Vec<f64>,
    /// Length of each phase.
    pub phase: Duration,
    /// Client timeout, counted from the intended send time: a response after it is not
    /// goodput, and the client goes away.
    pub timeout: Duration,
    /// Client connections (HTTP/1.1 keep-alive, one request at a time on each).
    pub connections: NonZeroUsize,
    /// The criticality mix sent in `x-criticality`, as `(tier, weight)`.
    pub mix: Vec<(Criticality, f64)>,
    /// The proxy's limit algorithm: any the core has, by its one name (default
    /// `recommended`, the default of the proxy, the library and the tower layers).
    pub algorithm: AlgorithmName,
    /// The proxy's queue discipline, by its one name.
    pub queue: QueueName,
    /// The proxy's utilisation thresholds per tier (`critical_plus`, `critical`,
    /// `sheddable_plus`, `sheddable`): a tier is admitted while in-flight requests are below
    /// `limit × threshold`, so the least critical work is shed first.
    pub tiers: [f64; 4],
    /// Seed of the arrivals and the criticality mix (both runs use the same one).
    pub seed: u64,
    /// Poisson arrivals (true) or evenly spaced ones.
    pub poisson: bool,
    /// Drill a service you run instead of the synthetic backend (`--target`). The backend
    /// fields (`workers`, `service_time`, ...) then only shape nothing but the defaults.
    pub target: Option<ExternalTarget>,
}

/// A service you run, drilled in place of the synthetic backend: load straight at it
/// (unprotected), then through the tailwater proxy in front of it (protected).
///
/// Only loopback targets are drilled unless `allow_remote` is set: a drill offers up to
/// ten times a service's capacity, which is an attack on anything you did not mean to hit.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalTarget {
    /// `http://host:port/path`, as given.
    pub url: String,
    /// Its capacity in requests/s when you know it; `None` finds the knee with a short
    /// ramp before the drill (see [`crate::find_capacity`]).
    pub capacity: Option<f64>,
    /// Allow a target that does not resolve to loopback.
    pub allow_remote: bool,
    /// The highest rate the drill (ramp included) may offer, requests/s.
    pub max_rate: f64,
    /// For an `https://` target: CA certificates (PEM) trusted besides the system's roots,
    /// by the load generator and by the proxy in front (its `[route.tls] ca`). The target's
    /// certificate is always verified.
    pub ca_file: Option<std::path::PathBuf>,
}

/// Default bound on the rate a drill of an external target may offer.
pub const DEFAULT_MAX_RATE: f64 = 20_000.0;

impl ExternalTarget {
    /// Checks the URL (http:// or https://), the capacity and the rate bound. Errors name `target`,
    /// `capacity` or `max_rate`. Whether the host is loopback is checked when the drill
    /// resolves it ([`ExternalTarget::check_resolved`]).
    pub fn new(
        url: &str,
        capacity: Option<f64>,
        allow_remote: bool,
        max_rate: f64,
    ) -> Result<Self, ConfigError> {
        tailwater_load::Target::parse(url)
            .map_err(|e| ConfigError::new("target", e.to_string()))?;
        if let Some(c) = capacity
            && !(c.is_finite() && c > 0.0)
        {
            return Err(ConfigError::new(
                "capacity",
                "must be a rate above 0 (requests/s)",
            ));
        }
        if !(max_rate.is_finite() && max_rate > 0.0 && max_rate <= 50_000.0) {
            return Err(ConfigError::new(
                "max_rate",
                "must be in (0, 50000] requests/s",
            ));
        }
        Ok(Self {
            url: url.to_string(),
            capacity,
            allow_remote,
            max_rate,
            ca_file: None,
        })
    }

    /// Trusts the CA certificates of `path` for an `https://` target (see
    /// [`ca_file`](Self::ca_file)).
    pub fn with_ca_file(mut self, path: Option<std::path::PathBuf>) -> Self {
        self.ca_file = path;
        self
    }

    /// Whether the target speaks TLS (`https://`).
    pub fn is_tls(&self) -> bool {
        tailwater_load::Target::parse(&self.url).is_ok_and(|t| t.is_tls())
    }

    /// Refuses addresses that are not loopback unless `allow_remote`. Errors name `target`.
    pub fn check_resolved(&self, addrs: &[std::net::SocketAddr]) -> Result<(), ConfigError> {
        if addrs.is_empty() {
            return Err(ConfigError::new(
                "target",
                format!("`{}` did not resolve", self.url),
            ));
        }
        if !self.allow_remote
            && let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback())
        {
            return Err(ConfigError::new(
                "target",
                format!(
                    "`{}` resolves to {a}, which is not loopback: a drill offers many times a service's capacity; pass --allow-remote if you mean it",
                    self.url
                ),
            ));
        }
        Ok(())
    }
}

/// Reporting interval of the load generator (time series, samples of the backend and proxy).
pub(crate) const INTERVAL: Duration = Duration::from_millis(250);

impl DrillConfig {
    /// The full drill: five 6-second phases at 0.5×, 1×, 2×, 5× and 10× of 200 requests/s,
    /// unprotected then protected (about 62 s).
    pub fn full() -> Self {
        Self {
            workers: NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN),
            service_time: Duration::from_millis(40),
            service_dist: ServiceDistribution::Constant,
            backend_queue: 1024,
            multipliers: vec![0.5, 1.0, 2.0, 5.0, 10.0],
            phase: Duration::from_secs(6),
            timeout: Duration::from_secs(1),
            connections: NonZeroUsize::new(128).unwrap_or(NonZeroUsize::MIN),
            mix: vec![
                (Criticality::CriticalPlus, 10.0),
                (Criticality::Critical, 50.0),
                (Criticality::SheddablePlus, 25.0),
                (Criticality::Sheddable, 15.0),
            ],
            algorithm: AlgorithmName::Recommended,
            queue: QueueName::Codel,
            tiers: [1.0, 0.9, 0.75, 0.5],
            // The workspace's one default seed (the CLI's `--seed`, the load generator's).
            seed: 1,
            poisson: true,
            target: None,
        }
    }

    /// The quick drill (CI and a first look): the same phases, 1.5 s each (about 18 s).
    pub fn quick() -> Self {
        Self {
            phase: Duration::from_millis(1500),
            ..Self::full()
        }
    }

    /// The capacity the phases are multiples of, in requests per second: an external
    /// target's (given or found), else the synthetic backend's `workers / service_time`.
    pub fn capacity(&self) -> f64 {
        match self.target.as_ref().and_then(|t| t.capacity) {
            Some(c) => c,
            None => self.workers.get() as f64 / self.service_time.as_secs_f64(),
        }
    }

    /// Offered rate of phase `i` in requests per second.
    pub fn offered(&self, i: usize) -> f64 {
        self.multipliers.get(i).copied().unwrap_or(0.0) * self.capacity()
    }

    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.service_time < Duration::from_millis(2)
            || self.service_time > Duration::from_secs(10)
        {
            return Err(ConfigError::new(
                "service_time",
                "must be between 2ms and 10s",
            ));
        }
        if self.workers.get() > 10_000 {
            return Err(ConfigError::new("workers", "at most 10000"));
        }
        if self.multipliers.is_empty() || self.multipliers.len() > 32 {
            return Err(ConfigError::new("multipliers", "needs 1 to 32 phases"));
        }
        if let Some(m) = self
            .multipliers
            .iter()
            .find(|m| !m.is_finite() || **m <= 0.0 || **m > 1000.0)
        {
            return Err(ConfigError::new(
                "multipliers",
                format!("{m} is not in (0, 1000]"),
            ));
        }
        let peak = self.multipliers.iter().copied().fold(0.0, f64::max) * self.capacity();
        let bound = self.target.as_ref().map_or(50_000.0, |t| t.max_rate);
        let capacity_known = self.target.as_ref().is_none_or(|t| t.capacity.is_some());
        if capacity_known && peak > bound {
            return Err(ConfigError::new(
                "multipliers",
                format!(
                    "the heaviest phase offers {peak:.0} requests/s; at most {bound:.0} (--max-rate)"
                ),
            ));
        }
        if self.phase < Duration::from_millis(500) || self.phase > Duration::from_secs(600) {
            return Err(ConfigError::new("phase", "must be between 500ms and 10m"));
        }
        if self.timeout < Duration::from_millis(10) || self.timeout > Duration::from_secs(60) {
            return Err(ConfigError::new("timeout", "must be between 10ms and 60s"));
        }
        if self.connections.get() > 10_000 {
            return Err(ConfigError::new("connections", "at most 10000"));
        }
        let t = self.tiers;
        if t.iter().any(|x| !(*x > 0.0 && *x <= 1.0)) || t.windows(2).any(|w| w[1] > w[0]) {
            return Err(ConfigError::new(
                "tiers",
                "thresholds must be in (0, 1] and must not increase toward less critical tiers",
            ));
        }
        if self.mix.is_empty() {
            return Err(ConfigError::new("mix", "needs at least one tier"));
        }
        if self.mix.iter().any(|(_, w)| !w.is_finite() || *w < 0.0)
            || self.mix.iter().map(|(_, w)| w).sum::<f64>() <= 0.0
        {
            return Err(ConfigError::new("mix", "weights must be ≥ 0 and not all 0"));
        }
        Ok(())
    }

    /// Parses a mix such as `critical_plus=10,critical=50,sheddable_plus=25,sheddable=15`.
    /// Errors name `mix`.
    pub fn parse_mix(text: &str) -> Result<Vec<(Criticality, f64)>, ConfigError> {
        let mut out: Vec<(Criticality, f64)> = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, weight) = item
                .split_once('=')
                .ok_or_else(|| ConfigError::new("mix", format!("`{item}` is not tier=weight")))?;
            let tier: Criticality = name.trim().parse().map_err(|_| {
                ConfigError::new("mix", format!("`{name}` is not a criticality tier"))
            })?;
            let weight: f64 = weight
                .trim()
                .parse()
                .map_err(|_| ConfigError::new("mix", format!("`{item}`: bad weight")))?;
            if out.iter().any(|(t, _)| *t == tier) {
                return Err(ConfigError::new("mix", format!("`{name}` appears twice")));
            }
            out.push((tier, weight));
        }
        if out.is_empty() {
            return Err(ConfigError::new("mix", "needs at least one tier"));
        }
        Ok(out)
    }

    /// Parses an algorithm name (tailwater-core's one spelling). Errors name `algorithm`
    /// and list the valid names.
    pub fn parse_algorithm(text: &str) -> Result<AlgorithmName, ConfigError> {
        text.parse().map_err(|e| ConfigError::new("algorithm", e))
    }

    /// Parses a queue discipline name (tailwater-core's one spelling). Errors name `queue`
    /// and list the valid names.
    pub fn parse_queue(text: &str) -> Result<QueueName, ConfigError> {
        text.parse().map_err(|e| ConfigError::new("queue", e))
    }

    /// Parses `--service-dist` (`constant`, `exponential`, `lognormal`, `bimodal`) with
    /// `--service-cv` (lognormal only, default 1). Errors name `service_dist` or
    /// `service_cv`.
    pub fn parse_service_dist(
        name: &str,
        cv: Option<f64>,
    ) -> Result<ServiceDistribution, ConfigError> {
        let dist = match name.trim() {
            "constant" => ServiceDistribution::Constant,
            "exponential" => ServiceDistribution::Exponential,
            "lognormal" => ServiceDistribution::lognormal(cv.unwrap_or(1.0))
                .map_err(|e| ConfigError::new("service_cv", e.reason()))?,
            "bimodal" => ServiceDistribution::BIMODAL,
            other => {
                return Err(ConfigError::new(
                    "service_dist",
                    format!("`{other}` is not constant, exponential, lognormal or bimodal"),
                ));
            }
        };
        if cv.is_some() && !matches!(dist, ServiceDistribution::LogNormal { .. }) {
            return Err(ConfigError::new(
                "service_cv",
                "only applies to --service-dist lognormal",
            ));
        }
        Ok(dist)
    }

    /// Total length of one side's schedule.
    pub fn side_duration(&self) -> Duration {
        self.phase * self.multipliers.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_quick_is_short() {
        let full = DrillConfig::full();
        full.validate().unwrap();
        assert_eq!(full.capacity(), 200.0);
        assert_eq!(full.offered(4), 2000.0);
        // Both sides, plus one timeout of drain each, fit the budgets with margin.
        let budget = |c: &DrillConfig| 2 * c.side_duration() + 2 * c.timeout;
        assert!(budget(&full) <= Duration::from_secs(75));
        assert!(budget(&DrillConfig::quick()) <= Duration::from_secs(17));
    }

    #[test]
    fn bad_values_name_the_field() {
        let mut c = DrillConfig::quick();
        c.multipliers = vec![1.0, -2.0];
        assert_eq!(c.validate().unwrap_err().field(), "multipliers");
        let mut c = DrillConfig::quick();
        c.phase = Duration::from_millis(10);
        assert_eq!(c.validate().unwrap_err().field(), "phase");
        let mut c = DrillConfig::quick();
        c.mix = vec![(Criticality::Critical, 0.0)];
        assert_eq!(c.validate().unwrap_err().field(), "mix");
        assert_eq!(
            DrillConfig::parse_algorithm("x").unwrap_err().field(),
            "algorithm"
        );
        assert_eq!(DrillConfig::parse_queue("x").unwrap_err().field(), "queue");
        // `lifo` is plain LIFO, not adaptive LIFO; `gradient` is no name at all.
        assert_eq!(DrillConfig::parse_queue("lifo").unwrap(), QueueName::Lifo);
        let e = DrillConfig::parse_algorithm("gradient").unwrap_err();
        assert!(e.reason().contains("envoy-corrected"), "{e}");
    }

    #[test]
    fn service_distributions_parse_and_name_the_field() {
        let parse = DrillConfig::parse_service_dist;
        assert_eq!(
            parse("exponential", None).unwrap(),
            ServiceDistribution::Exponential
        );
        assert_eq!(
            parse("lognormal", Some(0.5)).unwrap(),
            ServiceDistribution::LogNormal { cv: 0.5 }
        );
        assert_eq!(
            parse("lognormal", None).unwrap(),
            ServiceDistribution::LogNormal { cv: 1.0 }
        );
        assert_eq!(
            parse("bimodal", None).unwrap(),
            ServiceDistribution::BIMODAL
        );
        assert_eq!(
            parse("constant", None).unwrap(),
            ServiceDistribution::Constant
        );
        assert_eq!(parse("exp", None).unwrap_err().field(), "service_dist");
        assert_eq!(
            parse("lognormal", Some(0.0)).unwrap_err().field(),
            "service_cv"
        );
        assert_eq!(
            parse("constant", Some(1.0)).unwrap_err().field(),
            "service_cv"
        );
    }

    #[test]
    fn mix_parses() {
        let mix = DrillConfig::parse_mix("critical_plus=10, sheddable=5").unwrap();
        assert_eq!(
            mix,
            vec![
                (Criticality::CriticalPlus, 10.0),
                (Criticality::Sheddable, 5.0)
            ]
        );
        assert_eq!(DrillConfig::parse_mix("gold=1").unwrap_err().field(), "mix");
        assert_eq!(
            DrillConfig::parse_mix("critical=1,critical=2")
                .unwrap_err()
                .field(),
            "mix"
        );
        assert_eq!(DrillConfig::parse_mix("").unwrap_err().field(), "mix");
    }
}
