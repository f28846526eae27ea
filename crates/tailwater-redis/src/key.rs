//! Redis key layout, with user-supplied parts escaped so they cannot collide or inject.
//!
//! ```text
//! {prefix}:{<escaped key>}:g:<T ns>:<burst>
//! ```
//!
//! - `prefix` is chosen by the operator (default `tw`) and may not contain `{`, `}` or
//!   whitespace, so the first `{` of every key is ours.
//! - `<escaped key>` is the user's key with `%`, `{`, `}`, `:` and every byte outside
//!   printable ASCII written as `%XX` (upper-case hex). The encoding is injective (two
//!   different keys never give the same string) and the result contains no `}`, so the
//!   part between the braces is exactly the Redis Cluster **hash tag**: all quotas of one
//!   key live in one slot and one script can update them atomically.
//! - `g:<T>:<burst>` names one quota by its emission interval (ns) and burst, so two
//!   quotas of one key (per second, per day) have their own state, and changing a quota
//!   starts it from a full bucket instead of misreading the old state.
//!
//! The value of each key is the GCRA TAT in decimal nanoseconds since the Unix epoch
//! (Redis `TIME`). Keys carry a `PEXPIRE` until their TAT: idle keys disappear.

use std::fmt::Write as _;

use tailwater_core::ConfigError;
use tailwater_core::rate::Quota;

/// How keys are named in Redis:
///
/// ```text
/// {prefix}:{<escaped key>}:g:<T ns>:<burst>
/// ```
///
/// The prefix (default `tw`) may not contain `{`, `}` or whitespace. The user's key is
/// percent-escaped (`%`, `{`, `}`, `:` and bytes outside printable ASCII become `%XX`):
/// the encoding is injective, so keys cannot collide or inject, and the escaped key is the
/// Redis Cluster hash tag, so all quotas of one key share a slot. Each quota is named by
/// its emission interval `T` and burst. The value is the GCRA TAT in decimal nanoseconds
/// since the Unix epoch, with a `PEXPIRE` until the TAT.
///
/// ```
/// use tailwater_redis::KeyLayout;
/// use tailwater_core::rate::Quota;
/// let layout = KeyLayout::new("rl")?;
/// let q = Quota::per_second(10)?;
/// assert_eq!(layout.quota_key("user:42", &q), "rl:{user%3A42}:g:100000000:10");
/// assert_eq!(layout.quota_key("a}b", &q), "rl:{a%7Db}:g:100000000:10");
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
}

impl Default for KeyLayout {
    fn default() -> Self {
        Self {
            prefix: "tw".to_owned(),
        }
    }
}

impl KeyLayout {
    /// A layout with `prefix` (non-empty, no `{`, `}`, whitespace or control characters).
    pub fn new(prefix: &str) -> Result<Self, ConfigError> {
        if prefix.is_empty() {
            return Err(ConfigError::new("prefix", "must not be empty"));
        }
        if let Some(c) = prefix
            .chars()
            .find(|c| *c == '{' || *c == '}' || c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError::new(
                "prefix",
                format!("must not contain {c:?} (braces would break the cluster hash tag)"),
            ));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}:{<escaped key>}`: the part shared by all quotas of `key`.
    pub fn base(&self, key: &str) -> String {
        let mut s = String::with_capacity(self.prefix.len() + key.len() + 4);
        s.push_str(&self.prefix);
        s.push_str(":{");
        escape_into(&mut s, key.as_bytes());
        s.push('}');
        s
    }

    /// The Redis key holding the state of `quota` for `key`.
    pub fn quota_key(&self, key: &str, quota: &Quota) -> String {
        let mut s = self.base(key);
        suffix(&mut s, quota);
        s
    }

    /// `{prefix}:{<escaped tag>}:<escaped key>`: `key` stored under the Redis Cluster hash
    /// tag `tag` instead of its own, so that keys sharing a tag share a slot and one script
    /// can update them together (the RLS puts all keys of one domain under the domain's
    /// tag). The escaped key has no `:`, so a tagged key never equals an untagged one.
    pub fn tagged_base(&self, tag: &str, key: &str) -> String {
        let mut s = String::with_capacity(self.prefix.len() + tag.len() + key.len() + 5);
        s.push_str(&self.prefix);
        s.push_str(":{");
        escape_into(&mut s, tag.as_bytes());
        s.push_str("}:");
        escape_into(&mut s, key.as_bytes());
        s
    }

    /// The Redis key holding the state of `quota` for `key` under the hash tag `tag`.
    pub fn tagged_quota_key(&self, tag: &str, key: &str, quota: &Quota) -> String {
        let mut s = self.tagged_base(tag, key);
        suffix(&mut s, quota);
        s
    }

    /// The keys of all `quotas` for `key`, in order.
    pub fn quota_keys(&self, key: &str, quotas: &[Quota]) -> Vec<String> {
        let base = self.base(key);
        quotas
            .iter()
            .map(|q| {
                let mut s = base.clone();
                suffix(&mut s, q);
                s
            })
            .collect()
    }
}

fn suffix(s: &mut String, q: &Quota) {
    let _ = write!(s, ":g:{}:{}", q.emission_nanos(), q.burst());
}

/// Percent-escapes `%`, `{`, `}`, `:` and bytes outside printable ASCII.
fn escape_into(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        let plain = (0x21..=0x7e).contains(&b) && !matches!(b, b'%' | b'{' | b'}' | b':');
        if plain {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_injective_on_tricky_inputs() {
        let l = KeyLayout::default();
        let inputs = [
            "", "a", "a:b", "a%3Ab", "{a}", "a}b", "a{b", "%", "%25", " ", "é", "a\nb", "a\r\n",
        ];
        let mut seen = std::collections::HashSet::new();
        for i in inputs {
            let b = l.base(i);
            assert!(seen.insert(b.clone()), "collision for {i:?}: {b}");
            // Exactly one '{' and one '}' and the tag is between them.
            assert_eq!(b.matches('{').count(), 1, "{b}");
            assert_eq!(b.matches('}').count(), 1, "{b}");
            assert!(b.ends_with('}'));
        }
    }

    proptest::proptest! {
        #[test]
        fn distinct_keys_never_share_a_redis_key(a in ".{0,12}", b in ".{0,12}") {
            let l = KeyLayout::default();
            let (ka, kb) = (l.base(&a), l.base(&b));
            proptest::prop_assert_eq!(a == b, ka == kb);
            proptest::prop_assert_eq!(ka.matches('{').count(), 1);
            proptest::prop_assert_eq!(ka.matches('}').count(), 1);
        }
    }

    #[test]
    fn tagged_keys_never_equal_untagged_or_other_tagged_keys() {
        let l = KeyLayout::default();
        let q = Quota::per_second(10).expect("valid");
        let mut seen = std::collections::HashSet::new();
        for (tag, key) in [
            ("a", ""),
            ("a", "b"),
            ("a:b", ""),
            ("a", "b:c"),
            ("a}", "b"),
        ] {
            let k = l.tagged_quota_key(tag, key, &q);
            assert!(seen.insert(k.clone()), "collision {k}");
            assert_eq!(k.matches('{').count(), 1, "{k}");
        }
        for key in ["a", "a:", "a}:b"] {
            assert!(seen.insert(l.quota_key(key, &q)), "untagged {key} collides");
        }
        assert_eq!(l.tagged_base("dom", "k:1"), "tw:{dom}:k%3A1");
    }

    #[test]
    fn open_outside_a_runtime_is_an_error_not_a_panic() {
        let err = crate::RedisConnection::open(
            "redis://127.0.0.1:1/",
            crate::ConnectionOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.field(), "runtime");
    }

    #[test]
    fn prefix_is_validated() {
        assert_eq!(KeyLayout::new("").unwrap_err().field(), "prefix");
        assert_eq!(KeyLayout::new("a{b").unwrap_err().field(), "prefix");
        assert_eq!(KeyLayout::new("a b").unwrap_err().field(), "prefix");
        assert!(KeyLayout::new("app:rl").is_ok());
    }
}
