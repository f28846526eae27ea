//! draft-ietf-httpapi-ratelimit-headers-10: `RateLimit-Policy` and `RateLimit`, as
//! Structured Field lists, one item per limited descriptor of the call.
//!
//! ```text
//! RateLimit-Policy: "per_ip";q=10;w=1, "example.to_number";q=100;w=86400
//! RateLimit: "per_ip";r=9;t=1, "example.to_number";r=99;t=864
//! ```
//!
//! `q` is `requests_per_unit`, `w` the unit in seconds, `r` the remaining hits and `t` the
//! seconds (rounded up) until the budget is full again.

/// One limited descriptor's part of the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyItem<'a> {
    /// The policy name (the rule's `name`, else its stat key), borrowed from the call.
    pub name: &'a str,
    /// Quota per window.
    pub quota: u32,
    /// Window in seconds.
    pub window_secs: u64,
    /// Remaining.
    pub remaining: u32,
    /// Seconds until full.
    pub reset_secs: u64,
}

/// The two header values for `items` (`None` when there is nothing to say).
pub fn render(items: &[PolicyItem<'_>]) -> Option<(String, String)> {
    if items.is_empty() {
        return None;
    }
    // One allocation per header for the usual short list.
    let cap = items.iter().map(|i| i.name.len() + 32).sum();
    let (mut policy, mut limit) = (String::with_capacity(cap), String::with_capacity(cap));
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            policy.push_str(", ");
            limit.push_str(", ");
        }
        sf_string(&mut policy, it.name);
        policy.push_str(";q=");
        push_u64(&mut policy, u64::from(it.quota));
        policy.push_str(";w=");
        push_u64(&mut policy, it.window_secs);
        sf_string(&mut limit, it.name);
        limit.push_str(";r=");
        push_u64(&mut limit, u64::from(it.remaining));
        limit.push_str(";t=");
        push_u64(&mut limit, it.reset_secs);
    }
    Some((policy, limit))
}

/// Appends `n` in decimal: `write!` goes through `core::fmt` (about a third of the
/// instructions of a call's own work, measured with callgrind); this does not.
pub(crate) fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        // `n % 10` < 10: the cast cannot truncate.
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

/// An sf-string (RFC 9651 §3.3.3): printable ASCII, `"` and `\` escaped; other bytes
/// become `_` so that a hostile descriptor value cannot break the header.
fn sf_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            ' '..='~' => out.push(ch),
            _ => out.push('_'),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lists_and_escapes() {
        let items = [
            PolicyItem {
                name: "a\"b\n",
                quota: 10,
                window_secs: 1,
                remaining: 9,
                reset_secs: 1,
            },
            PolicyItem {
                name: "d",
                quota: 100,
                window_secs: 86_400,
                remaining: 0,
                reset_secs: 864,
            },
        ];
        let (p, l) = render(&items).expect("some");
        assert_eq!(p, r#""a\"b_";q=10;w=1, "d";q=100;w=86400"#);
        assert_eq!(l, r#""a\"b_";r=9;t=1, "d";r=0;t=864"#);
        assert_eq!(render(&[]), None);
    }

    #[test]
    fn decimal_numbers_match_format() {
        for n in [0, 1, 9, 10, 99, 100, 86_400, u64::from(u32::MAX), u64::MAX] {
            let mut s = String::from("x");
            push_u64(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
    }
}
