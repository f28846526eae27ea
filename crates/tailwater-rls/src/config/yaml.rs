//! The YAML reader: serde seeds that validate while they read, so that every error carries
//! the line of the descriptor it is about (serde_norway attaches the position of the
//! mapping being read to errors raised inside its visitor).

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use tailwater_core::rate::Quota;

use super::{Domain, Level, Node, Rule, Unit};

/// The deepest nesting of descriptors accepted (a bound against hostile files).
pub(crate) const MAX_DEPTH: usize = 16;

/// Reads one file's document into a [`Domain`].
pub(crate) struct FileSeed<'a> {
    pub(crate) source: &'a str,
}

impl<'de> DeserializeSeed<'de> for FileSeed<'_> {
    type Value = Domain;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Domain, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FileSeed<'_> {
    type Value = Domain;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `domain` and `descriptors`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Domain, A::Error> {
        let mut domain: Option<String> = None;
        let mut descriptors: Option<Level> = None;
        while let Some(key) = map.next_key::<Scalar>()? {
            match key.0.as_str() {
                "domain" => {
                    once(&domain, "domain")?;
                    domain = Some(map.next_value::<Scalar>()?.0);
                }
                "descriptors" => {
                    once(&descriptors, "descriptors")?;
                    let d = map.next_value_seed(ListSeed { depth: 1 })?;
                    descriptors = Some(d);
                }
                other => return Err(de::Error::custom(format!("unknown key '{other}'"))),
            }
        }
        let domain = domain.unwrap_or_default();
        if domain.is_empty() {
            return Err(de::Error::custom("config file cannot have empty domain"));
        }
        let mut descriptors = descriptors.unwrap_or_default();
        assign_stat_keys(&mut descriptors, &domain);
        Ok(Domain {
            domain,
            descriptors,
            source: self.source.to_owned(),
        })
    }
}

/// Names every node `parent.key_value` (or `parent.key`), as envoyproxy/ratelimit names
/// its stats.
fn assign_stat_keys(level: &mut Level, parent: &str) {
    for e in level.keys.values_mut() {
        let nodes = e
            .exact
            .values_mut()
            .chain(e.wildcards.iter_mut().map(|(_, n)| n))
            .chain(e.any.as_deref_mut());
        for n in nodes {
            n.stat_key = match &n.value {
                Some(v) => format!("{parent}.{}_{v}", n.key),
                None => format!("{parent}.{}", n.key),
            };
            let me = n.stat_key.clone();
            assign_stat_keys(&mut n.descriptors, &me);
        }
    }
}

fn once<T, E: de::Error>(slot: &Option<T>, name: &str) -> Result<(), E> {
    match slot {
        Some(_) => Err(E::custom(format!("duplicate key '{name}'"))),
        None => Ok(()),
    }
}

/// A scalar read as text whatever its YAML type (`value: 30` is the string "30", as Go's
/// YAML reader makes it).
pub(crate) struct Scalar(pub(crate) String);

impl<'de> de::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of descriptors (one level).
struct ListSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ListSeed {
    type Value = Level;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Level, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ListSeed {
    type Value = Level;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of descriptors")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Level, E> {
        Ok(Level::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Level, A::Error> {
        if self.depth > MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "descriptors nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let mut seen = HashSet::new();
        let mut level = Level::default();
        while let Some(node) = seq.next_element_seed(NodeSeed {
            seen: &mut seen,
            depth: self.depth,
        })? {
            level.insert(node);
        }
        Ok(level)
    }
}

/// One descriptor; `seen` holds the composite keys of its siblings read so far.
struct NodeSeed<'a> {
    seen: &'a mut HashSet<(String, Option<String>)>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a descriptor (a mapping with `key`)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut key: Option<String> = None;
        let mut value: Option<String> = None;
        let mut rule: Option<RawRule> = None;
        let mut flags = [None::<bool>; 5];
        let mut children: Option<Level> = None;
        while let Some(k) = map.next_key::<Scalar>()? {
            let k = k.0;
            let flag = |name: &str| match name {
                "shadow_mode" => Some(0),
                "quota_mode" => Some(1),
                "detailed_metric" => Some(2),
                "value_to_metric" => Some(3),
                "share_threshold" => Some(4),
                _ => None,
            };
            match k.as_str() {
                "key" => {
                    once(&key, "key")?;
                    key = Some(map.next_value::<Scalar>()?.0);
                }
                "value" => {
                    once(&value, "value")?;
                    value = Some(map.next_value::<Scalar>()?.0);
                }
                "rate_limit" => {
                    once(&rule, "rate_limit")?;
                    rule = Some(map.next_value::<RawRule>()?);
                }
                "descriptors" => {
                    once(&children, "descriptors")?;
                    children = Some(map.next_value_seed(ListSeed {
                        depth: self.depth + 1,
                    })?);
                }
                "metadata" => {
                    map.next_value::<IgnoredAny>()?;
                }
                other => match flag(other) {
                    Some(i) => {
                        if flags[i].is_some() {
                            return Err(de::Error::custom(format!("duplicate key '{other}'")));
                        }
                        flags[i] = Some(map.next_value::<bool>()?);
                    }
                    None => return Err(de::Error::custom(format!("unknown key '{other}'"))),
                },
            }
        }
        let key = key.unwrap_or_default();
        if key.is_empty() {
            return Err(de::Error::custom("descriptor has empty key"));
        }
        let value = value.filter(|v| !v.is_empty());
        let composite = match &value {
            Some(v) => format!("{key}_{v}"),
            None => key.clone(),
        };
        if !self.seen.insert((key.clone(), value.clone())) {
            return Err(de::Error::custom(format!(
                "duplicate descriptor composite key '{composite}'"
            )));
        }
        let [
            shadow_mode,
            quota_mode,
            detailed_metric,
            _value_to_metric,
            share_threshold,
        ] = flags.map(|f| f.unwrap_or(false));
        let wildcard = value.clone().filter(|v| v.contains('*'));
        if share_threshold && wildcard.is_none() {
            return Err(de::Error::custom(format!(
                "share_threshold can only be set on a value with a wildcard ('{composite}')"
            )));
        }
        let rule = rule
            .map(|r| r.build(&composite))
            .transpose()
            .map_err(de::Error::custom)?;
        Ok(Node {
            key,
            value,
            stat_key: String::new(),
            rule,
            shadow_mode,
            quota_mode,
            detailed_metric,
            share_threshold,
            wildcard,
            descriptors: children.unwrap_or_default(),
        })
    }
}

/// A `rate_limit` block as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    unit: Option<Scalar>,
    #[serde(default)]
    requests_per_unit: Option<u32>,
    #[serde(default)]
    unlimited: bool,
    #[serde(default)]
    name: Option<Scalar>,
    #[serde(default)]
    replaces: Vec<RawReplace>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplace {
    #[serde(default)]
    name: Option<Scalar>,
}

impl RawRule {
    fn build(self, composite: &str) -> Result<Rule, String> {
        let unit = match (&self.unit, self.unlimited) {
            (Some(u), true) if !u.0.is_empty() => {
                return Err(format!(
                    "should not specify rate limit unit when unlimited ('{composite}')"
                ));
            }
            (_, true) => None,
            (Some(u), false) => Some(
                Unit::parse(&u.0)
                    .ok_or_else(|| format!("invalid rate limit unit '{}' ('{composite}')", u.0))?,
            ),
            (None, false) => {
                return Err(format!("invalid rate limit unit '' ('{composite}')"));
            }
        };
        let mut replaces = Vec::with_capacity(self.replaces.len());
        for r in self.replaces {
            match r.name {
                Some(n) if !n.0.is_empty() => replaces.push(n.0),
                _ => return Err(format!("replaces entry has an empty name ('{composite}')")),
            }
        }
        let requests_per_unit = self.requests_per_unit.unwrap_or(0);
        let quota = match unit {
            Some(u) if requests_per_unit > 0 => Some(
                Quota::per_period(requests_per_unit, u.period())
                    .map_err(|e| format!("{e} ('{composite}')"))?,
            ),
            _ => None,
        };
        Ok(Rule {
            name: self.name.map(|n| n.0).filter(|n| !n.is_empty()),
            unit,
            requests_per_unit,
            unlimited: self.unlimited,
            replaces,
            quota,
        })
    }
}
