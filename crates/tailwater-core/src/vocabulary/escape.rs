//! Escaping a label value for the Prometheus text exposition format.

use std::borrow::Cow;

/// A label value as the Prometheus text format writes it between double quotes: backslash,
/// double quote and line feed escaped as `\\`, `\"` and `\n` (the format's only three
/// escapes); anything else unchanged. Borrows when there is nothing to escape.
///
/// Every crate that writes exposition text by hand (the proxy's `/metrics`, the RLS's
/// per-rule counters) uses this one function, so a key with a quote in it cannot break one
/// endpoint's output and not another's.
///
/// ```
/// use tailwater_core::vocabulary::escape_label_value;
/// assert_eq!(escape_label_value("api"), "api");
/// assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
/// ```
pub fn escape_label_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}
