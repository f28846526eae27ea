//! Descriptors built from a request, as Envoy's `rate_limits` actions build them.
//!
//! A [`DescriptorSpec`] is a list of [`Action`]s; each action appends one entry
//! (`key`, `value`) taken from the request. As in Envoy, when an action cannot produce its
//! entry (a `request_header` whose header is absent, no remote address) the whole
//! descriptor is not sent, unless the action says `skip_if_absent` (then only its entry is
//! left out). A request for which no descriptor is produced is not limited.

use std::net::IpAddr;

use serde::Deserialize;

use crate::proto::{Entry, RateLimitDescriptor};

/// What an [`Action`] reads from a request: implemented for `http::request::Parts` and by
/// servers with their own request type (the proxy).
pub trait RequestParts {
    /// The first value of header `name` (lowercase), if it is valid UTF-8.
    fn header(&self, name: &str) -> Option<&str>;
    /// The request path (without the query, as Envoy's `:path` minus the query).
    fn path(&self) -> &str;
    /// The peer's IP address (from the connection, never from `X-Forwarded-For`).
    fn remote_address(&self) -> Option<IpAddr>;
}

/// One entry of a descriptor, after Envoy's `rate_limits.actions` (same names, same
/// default keys). In TOML: `{ source = "header", name = "x-api-key", key = "api_key" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Envoy `request_headers`: (`key`, the header's value).
    Header {
        /// The header name (case-insensitive).
        name: String,
        /// The descriptor key (Envoy `descriptor_key`).
        key: String,
        /// Leave the entry out instead of dropping the descriptor when the header is
        /// absent (Envoy `skip_if_absent`).
        #[serde(default)]
        skip_if_absent: bool,
    },
    /// Envoy `remote_address`: (`remote_address`, the peer's IP).
    RemoteAddress,
    /// Envoy `generic_key`: (`key`, a fixed `value`); `key` defaults to `generic_key`.
    GenericKey {
        /// The fixed value (Envoy `descriptor_value`).
        value: String,
        /// The key (Envoy `descriptor_key`, default `generic_key`).
        #[serde(default = "generic_key")]
        key: String,
    },
    /// The request path: Envoy `request_headers` on `:path` (the query left out); `key`
    /// defaults to `path`.
    Path {
        /// The key (default `path`).
        #[serde(default = "path_key")]
        key: String,
    },
}

fn generic_key() -> String {
    "generic_key".to_owned()
}

fn path_key() -> String {
    "path".to_owned()
}

/// One descriptor: its actions, in order (the entries' order is the RLS tree's order).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptorSpec {
    /// The actions; at least one.
    pub entries: Vec<Action>,
}

/// A descriptor spec that cannot be used: the field (relative to the spec, e.g.
/// `entries[1].name`) and why. Callers prefix the field with where the spec came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    /// The field, relative to the spec.
    pub field: String,
    /// Why it is refused.
    pub reason: String,
}

impl DescriptorSpec {
    /// A descriptor of `entries`, validated.
    pub fn new(entries: Vec<Action>) -> Result<Self, SpecError> {
        let spec = Self { entries };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks the spec: at least one and at most [`MAX_ENTRIES`](crate::service::MAX_ENTRIES)
    /// entries, valid header names, no empty key or value.
    pub fn validate(&self) -> Result<(), SpecError> {
        let err = |field: String, reason: &str| {
            Err(SpecError {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.entries.is_empty() {
            return err("entries".into(), "a descriptor needs at least one entry");
        }
        if self.entries.len() > crate::service::MAX_ENTRIES {
            return err("entries".into(), "too many entries (at most 32)");
        }
        for (i, a) in self.entries.iter().enumerate() {
            let f = |what: &str| format!("entries[{i}].{what}");
            match a {
                Action::Header { name, key, .. } => {
                    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        return err(f("name"), "not a header name");
                    }
                    if key.is_empty() {
                        return err(f("key"), "must not be empty");
                    }
                }
                Action::GenericKey { value, key } => {
                    if value.is_empty() {
                        return err(f("value"), "must not be empty");
                    }
                    if key.is_empty() {
                        return err(f("key"), "must not be empty");
                    }
                }
                Action::Path { key } if key.is_empty() => {
                    return err(f("key"), "must not be empty");
                }
                Action::Path { .. } | Action::RemoteAddress => {}
            }
        }
        Ok(())
    }

    /// The descriptor for `request`, or `None` when an action without `skip_if_absent`
    /// finds nothing (Envoy then sends no descriptor for this spec).
    pub fn build(&self, request: &impl RequestParts) -> Option<RateLimitDescriptor> {
        let mut entries = Vec::with_capacity(self.entries.len());
        for a in &self.entries {
            let (key, value) = match a {
                Action::Header {
                    name,
                    key,
                    skip_if_absent,
                } => match request.header(name) {
                    Some(v) => (key.as_str(), v.to_owned()),
                    None if *skip_if_absent => continue,
                    None => return None,
                },
                Action::RemoteAddress => ("remote_address", request.remote_address()?.to_string()),
                Action::GenericKey { value, key } => (key.as_str(), value.clone()),
                Action::Path { key } => (key.as_str(), request.path().to_owned()),
            };
            entries.push(Entry {
                key: key.to_owned(),
                value,
            });
        }
        if entries.is_empty() {
            return None;
        }
        Some(RateLimitDescriptor {
            entries,
            ..Default::default()
        })
    }
}

impl RequestParts for http::request::Parts {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn path(&self) -> &str {
        self.uri.path()
    }

    fn remote_address(&self) -> Option<IpAddr> {
        use tailwater_tower::rate_limit::PeerAddr;
        if let Some(PeerAddr(a)) = self.extensions.get::<PeerAddr>() {
            return Some(a.ip());
        }
        self.extensions
            .get::<std::net::SocketAddr>()
            .map(|a| a.ip())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Req(Vec<(&'static str, &'static str)>);

    impl RequestParts for Req {
        fn header(&self, name: &str) -> Option<&str> {
            self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
        }
        fn path(&self) -> &str {
            "/v1/items"
        }
        fn remote_address(&self) -> Option<IpAddr> {
            Some(IpAddr::from([10, 0, 0, 7]))
        }
    }

    fn pairs(d: &RateLimitDescriptor) -> Vec<(&str, &str)> {
        d.entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect()
    }

    #[test]
    fn entries_follow_envoy_actions() {
        let spec = DescriptorSpec::new(vec![
            Action::GenericKey {
                value: "api".into(),
                key: generic_key(),
            },
            Action::Header {
                name: "x-api-key".into(),
                key: "api_key".into(),
                skip_if_absent: false,
            },
            Action::RemoteAddress,
            Action::Path { key: path_key() },
        ])
        .expect("valid");
        let d = spec.build(&Req(vec![("x-api-key", "k1")])).expect("built");
        assert_eq!(
            pairs(&d),
            [
                ("generic_key", "api"),
                ("api_key", "k1"),
                ("remote_address", "10.0.0.7"),
                ("path", "/v1/items"),
            ]
        );
        // A missing header drops the descriptor, unless skip_if_absent.
        assert!(spec.build(&Req(vec![])).is_none());
        let skip = DescriptorSpec::new(vec![
            Action::Header {
                name: "x-api-key".into(),
                key: "api_key".into(),
                skip_if_absent: true,
            },
            Action::Path { key: path_key() },
        ])
        .expect("valid");
        let d = skip.build(&Req(vec![])).expect("built");
        assert_eq!(pairs(&d), [("path", "/v1/items")]);
    }

    #[test]
    fn bad_specs_name_the_field() {
        let e = DescriptorSpec::new(vec![]).expect_err("empty");
        assert_eq!(e.field, "entries");
        let e = DescriptorSpec::new(vec![Action::Header {
            name: "bad name".into(),
            key: "k".into(),
            skip_if_absent: false,
        }])
        .expect_err("bad header");
        assert_eq!(e.field, "entries[0].name");
    }
}
