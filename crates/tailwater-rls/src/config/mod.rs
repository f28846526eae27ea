//! envoyproxy/ratelimit's configuration, read as is: domains of nested descriptors, each
//! optionally with a `rate_limit`.
//!
//! # Matching (envoyproxy/ratelimit's `GetLimit`)
//!
//! A request descriptor is an ordered list of entries `(key, value)`. Entry `i` is looked
//! up in the level reached by entry `i - 1` (the domain's top level for the first):
//!
//! 1. the exact `key` + `value`;
//! 2. else the wildcard values of that key (`*` anywhere in the value, e.g. `foo*` or
//!    `/api/*/x`), in config order, the first that matches;
//! 3. else the key alone (a rule for any value).
//!
//! The node reached by the **last** entry gives the limit (a request with more or fewer
//! entries than the tree has levels matches nothing deeper or shallower). A node with no
//! `rate_limit` gives no limit; `requests_per_unit: 0` blocks everything; `unlimited`
//! admits everything without touching the store.
//!
//! Counters are per request descriptor (each distinct value of a key-only or wildcard rule
//! gets its own budget), except `share_threshold` on a wildcard: all values it matches
//! share one budget.

mod load;
mod watch;
mod yaml;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use tailwater_core::rate::{MONTH, Quota};

pub use load::{ConfigError, MAX_FILE_BYTES, MAX_FILES, load_dir, load_str};
pub use watch::ConfigWatcher;

/// A limit's unit, as envoyproxy/ratelimit spells it (`second` … `year`, any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Unit {
    /// One second.
    Second,
    /// 60 seconds.
    Minute,
    /// 3 600 seconds.
    Hour,
    /// 86 400 seconds.
    Day,
    /// 7 days.
    Week,
    /// 30 days (envoyproxy/ratelimit's month).
    Month,
    /// 365 days.
    Year,
}

impl Unit {
    /// Parses a unit name case-insensitively; `None` for anything else (including
    /// `unknown`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "second" => Unit::Second,
            "minute" => Unit::Minute,
            "hour" => Unit::Hour,
            "day" => Unit::Day,
            "week" => Unit::Week,
            "month" => Unit::Month,
            "year" => Unit::Year,
            _ => return None,
        })
    }

    /// The unit's length.
    pub fn period(self) -> Duration {
        match self {
            Unit::Second => Duration::from_secs(1),
            Unit::Minute => Duration::from_secs(60),
            Unit::Hour => Duration::from_secs(3600),
            Unit::Day => Duration::from_secs(86_400),
            Unit::Week => Duration::from_secs(7 * 86_400),
            Unit::Month => MONTH,
            Unit::Year => Duration::from_secs(365 * 86_400),
        }
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Second => "second",
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Year => "year",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `rate_limit` block.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rule {
    /// `name`, reported in statuses and used by `replaces`.
    pub name: Option<String>,
    /// `unit` (absent when `unlimited`).
    pub unit: Option<Unit>,
    /// `requests_per_unit` (0 blocks).
    pub requests_per_unit: u32,
    /// `unlimited: true`: always admitted, never sent to the store.
    pub unlimited: bool,
    /// Names of the rules this one replaces when both match one request.
    pub replaces: Vec<String>,
    /// The GCRA quota: `requests_per_unit` per `unit`, burst = `requests_per_unit`
    /// (`None` when unlimited or blocking).
    #[serde(skip)]
    pub quota: Option<Quota>,
}

/// One configured descriptor (a node of the tree).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Node {
    /// `key`.
    pub key: String,
    /// `value` (`None` for a key-only rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The stat key: `domain.key_value.key…` as envoyproxy/ratelimit names its metrics.
    pub stat_key: String,
    /// The `rate_limit` block, if any.
    pub rule: Option<Rule>,
    /// `shadow_mode`: evaluated and counted, never denies.
    pub shadow_mode: bool,
    /// `quota_mode`: denies only when every quota-mode descriptor of the request is over.
    pub quota_mode: bool,
    /// `detailed_metric`: the metrics name the request's value even for key-only rules.
    pub detailed_metric: bool,
    /// `share_threshold`: every value this wildcard matches shares one budget.
    pub share_threshold: bool,
    /// The wildcard value of this node, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wildcard: Option<String>,
    /// Nested descriptors.
    #[serde(skip_serializing_if = "Level::is_empty")]
    pub descriptors: Level,
}

/// The descriptors of one level, indexed for matching.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Level {
    pub(crate) keys: HashMap<String, KeyEntry>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct KeyEntry {
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub(crate) exact: HashMap<String, Node>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) wildcards: Vec<(Pattern, Node)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) any: Option<Box<Node>>,
}

impl Level {
    /// Whether this level has no descriptors.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The node for one entry: exact value, then wildcards in config order, then key only.
    pub fn lookup(&self, key: &str, value: &str) -> Option<&Node> {
        let e = self.keys.get(key)?;
        if let Some(n) = e.exact.get(value) {
            return Some(n);
        }
        if let Some((_, n)) = e.wildcards.iter().find(|(p, _)| p.matches(value)) {
            return Some(n);
        }
        e.any.as_deref()
    }

    pub(crate) fn insert(&mut self, node: Node) {
        let e = self.keys.entry(node.key.clone()).or_default();
        match node.value.clone() {
            None => e.any = Some(Box::new(node)),
            Some(v) if v.contains('*') => e.wildcards.push((Pattern::new(&v), node)),
            Some(v) => {
                e.exact.insert(v, node);
            }
        }
    }
}

/// A wildcard value: literal parts separated by `*` (each `*` matches any run of bytes).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub(crate) struct Pattern {
    #[serde(skip)]
    parts: Vec<String>,
    text: String,
}

impl Pattern {
    pub(crate) fn new(text: &str) -> Self {
        Self {
            parts: text.split('*').map(str::to_owned).collect(),
            text: text.to_owned(),
        }
    }

    /// Whether `value` matches: the first part is a prefix, the last a suffix, the middle
    /// parts appear in order in between.
    pub(crate) fn matches(&self, value: &str) -> bool {
        let (first, rest) = match self.parts.split_first() {
            Some(x) => x,
            None => return value.is_empty(),
        };
        let Some(mut tail) = value.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return tail.is_empty();
        };
        for part in middle {
            match tail.find(part.as_str()) {
                Some(i) => tail = &tail[i + part.len()..],
                None => return false,
            }
        }
        tail.len() >= last.len() && tail.ends_with(last.as_str())
    }
}

/// One domain's descriptor tree.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Domain {
    /// The domain name (`RateLimitRequest.domain`).
    pub domain: String,
    /// The top-level descriptors.
    pub descriptors: Level,
    /// The file it came from.
    pub source: String,
}

/// Everything loaded: the domains by name. Immutable; a reload builds a new one.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Config {
    /// The domains by name.
    pub domains: HashMap<String, Domain>,
}

impl Config {
    /// The node a request descriptor reaches in `domain`, or `None` (no limit applies).
    pub fn lookup<'a, I>(&self, domain: &str, entries: I) -> Option<&Node>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut level = &self.domains.get(domain)?.descriptors;
        let mut node = None;
        for (k, v) in entries {
            let n = level.lookup(k, v)?;
            level = &n.descriptors;
            node = Some(n);
        }
        node
    }

    /// Refuses any rule whose GCRA tolerance (its unit, as burst = `requests_per_unit`)
    /// exceeds `max_nanos`, naming the rule and its file.
    pub fn check_tolerance(&self, max_nanos: u64) -> Result<(), ConfigError> {
        fn walk(level: &Level, max: u64, file: &str) -> Result<(), ConfigError> {
            for e in level.keys.values() {
                let nodes = e
                    .exact
                    .values()
                    .chain(e.wildcards.iter().map(|(_, n)| n))
                    .chain(e.any.as_deref());
                for n in nodes {
                    if let Some(q) = n.rule.as_ref().and_then(|r| r.quota)
                        && q.tolerance_nanos() > max
                    {
                        return Err(ConfigError {
                            file: file.to_owned(),
                            line: None,
                            message: format!(
                                "'{}': {} per {:?} is longer than this store can compute \
                                 exactly ({} ns at most); use a shorter unit or the memory store",
                                n.stat_key,
                                q.rate(),
                                q.period(),
                                max
                            ),
                        });
                    }
                    walk(&n.descriptors, max, file)?;
                }
            }
            Ok(())
        }
        for d in self.domains.values() {
            walk(&d.descriptors, max_nanos, &d.source)?;
        }
        Ok(())
    }

    /// The number of domains.
    pub fn len(&self) -> usize {
        self.domains.len()
    }

    /// Whether no domain is loaded.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    #[test]
    fn wildcard_patterns() {
        let p = Pattern::new("value*");
        assert!(p.matches("value_1") && p.matches("value") && !p.matches("valu"));
        let p = Pattern::new("/api/*/x");
        assert!(p.matches("/api/v1/x") && !p.matches("/api/v1/y") && !p.matches("/api/x"));
        let p = Pattern::new("*ab*ab");
        assert!(p.matches("abab") && p.matches("xxabyyab") && !p.matches("ab"));
    }
}
