//! The request target as routing sees it: the `Host` rules of RFC 9112 §3.2 and the
//! normalised path routes match on, shared by both engines.
//!
//! # The path rule (as nginx matches `location`s)
//!
//! Routes match the path after normalisation, and the **normalised path is what is
//! forwarded** (with the query as sent), so the upstream is asked for exactly the path the
//! route matched, however it would itself decode or resolve the one the client sent:
//!
//! 1. percent-encoded unreserved characters are decoded and the hex digits of the other
//!    escapes uppercased (RFC 3986 §6.2.2.1–2: `/%61dmin` is `/admin`); a `%` not followed
//!    by two hex digits is refused;
//! 2. `//` is merged into `/` (nginx's `merge_slashes`; not an RFC equivalence);
//! 3. dot segments are removed (RFC 3986 §5.2.4; `..` above the root stays at the root);
//! 4. refused (400), because upstreams disagree about them and the proxy cannot know which
//!    segments they see: an encoded slash or backslash (`%2F`, `%5C`: decoded by some
//!    frameworks, not by others, like Apache's `AllowEncodedSlashes Off`), a raw backslash,
//!    `%00`, and a dot segment with path parameters (`..;`, which Tomcat resolves);
//! 5. a `#fragment` (never part of a request target, RFC 9112 §3.2) is dropped, as hyper's
//!    parser does.
//!
//! A path needing none of this (nearly all) is used as it is, without allocation.

use std::borrow::Cow;

use http::StatusCode;

/// Why a request's target or `Host` is refused (400, RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TargetError {
    /// An HTTP/1.1 request without `Host`.
    #[error("missing Host")]
    MissingHost,
    /// More than one `Host` field line.
    #[error("duplicate Host")]
    DuplicateHost,
    /// A `Host` that is not `uri-host [ ":" port ]` (RFC 3986 §3.2.2).
    #[error("invalid Host")]
    InvalidHost,
    /// An absolute-form target whose authority differs from `Host` (RFC 9112 §3.2).
    #[error("Host differs from the target's authority")]
    HostMismatch,
    /// A path the proxy refuses (see the module docs).
    #[error("invalid path")]
    BadPath,
}

impl TargetError {
    /// The status of the local response (always 400).
    pub(crate) fn status(self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }

    /// The local response body.
    pub(crate) fn text(self) -> &'static str {
        match self {
            TargetError::MissingHost => "missing host\n",
            TargetError::DuplicateHost => "duplicate host\n",
            TargetError::InvalidHost => "invalid host\n",
            TargetError::HostMismatch => "host differs from the request target\n",
            TargetError::BadPath => "invalid path\n",
        }
    }
}

/// The bytes of a `reg-name` (RFC 3986 §3.2.2: unreserved, sub-delims, `%`), as a table:
/// every request's `Host` is checked byte by byte.
const REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
            );
        i += 1;
    }
    t
};

/// Checks a `Host` value (or URI authority): `uri-host [ ":" port ]` of RFC 3986 §3.2.2,
/// a non-empty host (RFC 9110 §4.2.1 for `http`), a port of at most five digits.
///
/// A reg-name is checked in the same pass that finds its end (every request's `Host`
/// comes through here).
pub(crate) fn valid_host(v: &[u8]) -> bool {
    let port = if let Some(rest) = v.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &rest[..end];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        &rest[end + 1..]
    } else {
        // The reg-name ends at its first byte outside the set: the port's `:`, or a byte
        // that makes the whole value invalid (then no port below accepts it).
        let end = v
            .iter()
            .position(|&b| !REG_NAME[usize::from(b)])
            .unwrap_or(v.len());
        if end == 0 {
            return false;
        }
        &v[end..]
    };
    match port {
        [] => true,
        [b':', digits @ ..] => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// The one `Host` of a request, checked: `values` are its `Host` field values,
/// `authority` the absolute-form target's (or HTTP/2 `:authority`), `required` whether the
/// request must have a `Host` field (HTTP/1.1). Returns the host to route on (port
/// included).
pub(crate) fn request_host<'a>(
    mut values: impl Iterator<Item = &'a [u8]>,
    authority: Option<&'a str>,
    required: bool,
) -> Result<Option<&'a str>, TargetError> {
    let host = values.next();
    if values.next().is_some() {
        return Err(TargetError::DuplicateHost);
    }
    let host = match host {
        Some(h) if !valid_host(h) => return Err(TargetError::InvalidHost),
        // Valid hosts are ASCII.
        Some(h) => Some(std::str::from_utf8(h).map_err(|_| TargetError::InvalidHost)?),
        None => None,
    };
    match (host, authority) {
        (Some(h), Some(a)) if !same_authority(h, a) => Err(TargetError::HostMismatch),
        (Some(h), _) => Ok(Some(h)),
        // RFC 9112 §3.2: every HTTP/1.1 request has a Host, absolute form or not.
        (None, _) if required => Err(TargetError::MissingHost),
        (None, Some(a)) if valid_host(without_userinfo(a).as_bytes()) => {
            Ok(Some(without_userinfo(a)))
        }
        (None, Some(_)) => Err(TargetError::InvalidHost),
        (None, None) => Ok(None),
    }
}

/// Whether `host` and `authority` name the same host and port (case-insensitively, port
/// 80 when absent; userinfo in the authority is ignored, RFC 9112 §3.2).
fn same_authority(host: &str, authority: &str) -> bool {
    let (h1, p1) = split_port(host);
    let (h2, p2) = split_port(without_userinfo(authority));
    h1.eq_ignore_ascii_case(h2) && p1 == p2
}

/// A host and its port (80 when absent).
fn split_port(s: &str) -> (&str, u16) {
    let h = host_without_port(s);
    let after = match s.strip_prefix('[') {
        Some(_) => s.split_once(']').map_or("", |(_, rest)| rest),
        None => s.split_once(':').map_or("", |(_, p)| p),
    };
    let port = after.trim_start_matches(':').parse::<u16>().unwrap_or(80);
    (h, port)
}

fn without_userinfo(authority: &str) -> &str {
    authority.rsplit_once('@').map_or(authority, |(_, a)| a)
}

/// The path routes match on and that is forwarded (see the module docs), or why the
/// path is refused. `raw` is the path without the query; a `#fragment` is dropped.
pub(crate) fn normalise_path(raw: &str) -> Result<Cow<'_, str>, TargetError> {
    Ok(match normalise_path_bytes(raw.as_bytes())? {
        // A prefix of `raw`, cut at an ASCII byte.
        Cow::Borrowed(p) => Cow::Borrowed(&raw[..p.len()]),
        // Bytes of `raw` between ASCII `/`s, decoded unreserved ASCII and escapes: UTF-8
        // whenever `raw` is.
        Cow::Owned(p) => Cow::Owned(String::from_utf8(p).map_err(|_| TargetError::BadPath)?),
    })
}

/// [`normalise_path`] on the bytes of a request target (the lean path's: httparse has
/// checked them, and they are routed on and forwarded as they are, never decoded as text).
/// Bytes other than escapes are copied as they are.
pub(crate) fn normalise_path_bytes(raw: &[u8]) -> Result<Cow<'_, [u8]>, TargetError> {
    let raw = raw
        .iter()
        .position(|&b| b == b'#')
        .map_or(raw, |i| &raw[..i]);
    if !needs_work(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    if !raw.starts_with(b"/") {
        // `*` (OPTIONS) or an empty path: no route matches it, nothing to resolve.
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = decode_unreserved(raw)?;
    let mut out = Vec::with_capacity(decoded.len());
    let mut stack: Vec<&[u8]> = Vec::new();
    let segments: Vec<&[u8]> = decoded.split(|&b| b == b'/').skip(1).collect();
    let mut trailing = false;
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let bare = seg.split(|&b| b == b';').next().unwrap_or(seg);
        if bare.len() != seg.len() && (bare == b"." || bare == b"..") {
            return Err(TargetError::BadPath);
        }
        match *seg {
            b"" | b"." => trailing = last,
            b".." => {
                stack.pop();
                trailing = last;
            }
            s => {
                stack.push(s);
                trailing = false;
            }
        }
    }
    for s in &stack {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() || trailing {
        out.push(b'/');
    }
    Ok(Cow::Owned(out))
}

/// Whether `path` might change under normalisation or be refused: it has a `%`, a
/// backslash, an empty segment before the end, or a `.`/`..` segment (with or without
/// path parameters).
///
/// One pass over the bytes (every request's path goes through it).
fn needs_work(path: &[u8]) -> bool {
    if !path.starts_with(b"/") {
        return true;
    }
    // Start of the segment being read (after its `/`).
    let mut seg = 1;
    for (i, &b) in path.iter().enumerate().skip(1) {
        match b {
            b'%' | b'\\' => return true,
            // An empty segment (`//`) or a dot segment before this `/`.
            b'/' if i == seg || dot_segment(&path[seg..i]) => return true,
            b'/' => seg = i + 1,
            _ => {}
        }
    }
    dot_segment(&path[seg..])
}

/// Whether a path segment is `.` or `..`, with or without path parameters (`..;x`).
fn dot_segment(seg: &[u8]) -> bool {
    let bare = seg
        .iter()
        .position(|&b| b == b';')
        .map_or(seg, |i| &seg[..i]);
    bare == b"." || bare == b".."
}

/// `path` with unreserved characters decoded and other escapes uppercased; encoded
/// slashes, backslashes and NUL, raw backslashes and broken escapes are refused.
fn decode_unreserved(path: &[u8]) -> Result<Vec<u8>, TargetError> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        match path[i] {
            b'\\' => return Err(TargetError::BadPath),
            b'%' => {
                let hex = |b: u8| char::from(b).to_digit(16);
                let (Some(hi), Some(lo)) = (
                    path.get(i + 1).copied().and_then(hex),
                    path.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(TargetError::BadPath);
                };
                let byte = (hi * 16 + lo) as u8;
                if matches!(byte, b'/' | b'\\' | 0) {
                    return Err(TargetError::BadPath);
                }
                if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                    out.push(byte);
                } else {
                    out.extend_from_slice(&[
                        b'%',
                        path[i + 1].to_ascii_uppercase(),
                        path[i + 2].to_ascii_uppercase(),
                    ]);
                }
                i += 3;
            }
            b => {
                // Copied as it is: visible ASCII for hyper's parser; httparse also admits
                // UTF-8, whose bytes are kept (never re-encoded one by one).
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Which bytes an origin-form target may hold, as the `http` crate (1.x) decides for
/// hyper: see [`origin_form_accepted`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum TargetByte {
    Valid,
    /// `?`: the query starts (in the path only).
    Query,
    /// `#`: a fragment starts; nothing after it is checked.
    Fragment,
    /// Beyond ASCII: valid only as part of UTF-8.
    High,
    Invalid,
}

/// The classes of the path's bytes (WHATWG URL "path state", plus `"`, `{` and `}`,
/// which clients send unencoded and `http` accepts).
const PATH_BYTES: [TargetByte; 256] = target_bytes(false);
/// The classes of the query's bytes (WHATWG URL "query state").
const QUERY_BYTES: [TargetByte; 256] = target_bytes(true);

const fn target_bytes(query: bool) -> [TargetByte; 256] {
    let mut t = [TargetByte::Invalid; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = match b {
            b'#' => TargetByte::Fragment,
            b'?' if !query => TargetByte::Query,
            0x80..=0xFF => TargetByte::High,
            0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E if query => TargetByte::Valid,
            0x21 | b'"' | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7B | 0x7C | 0x7D | 0x7E
                if !query =>
            {
                TargetByte::Valid
            }
            _ => TargetByte::Invalid,
        };
        i += 1;
    }
    t
}

/// Whether hyper would accept `target`, an origin-form request target (`/…`) that
/// httparse has admitted, as its URI: the rule of the `http` crate's `PathAndQuery`
/// (1.x), which refuses some bytes httparse admits (`<`, `>` and `` ` `` in the path,
/// `"`, `<` and `>` in the query) and bytes beyond ASCII that are not UTF-8.
///
/// The lean path asks this first, so both engines refuse (400) and forward the same
/// targets: the proxy must not pass on what its other engine refuses, least of all
/// bytes that are not UTF-8, which a lenient decoder upstream may read as another path
/// than the one the route matched (an overlong `.`, `0xC0 0xAE`, read as `.`). A
/// differential test checks it against `PathAndQuery` itself.
pub(crate) fn origin_form_accepted(target: &[u8]) -> bool {
    let mut map = &PATH_BYTES;
    let mut end = target.len();
    let mut high = false;
    for (i, &b) in target.iter().enumerate() {
        match map[usize::from(b)] {
            TargetByte::Valid => {}
            TargetByte::Query => map = &QUERY_BYTES,
            TargetByte::Fragment => {
                end = i;
                break;
            }
            TargetByte::High => high = true,
            TargetByte::Invalid => return false,
        }
    }
    !high || std::str::from_utf8(&target[..end]).is_ok()
}

/// `raw` (a `Host` value or URI authority) without its port or IPv6 brackets.
pub(crate) fn host_without_port(raw: &str) -> &str {
    if raw.starts_with('[') {
        raw.split_once(']')
            .map_or(raw, |(h, _)| h)
            .trim_start_matches('[')
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each row: a path, what routes match and what is forwarded (or refused), and why.
    #[test]
    fn path_normalisation_table() {
        let rows: &[(&str, Option<&str>, &str)] = &[
            ("/", Some("/"), "unchanged"),
            ("/api/v1/x", Some("/api/v1/x"), "unchanged"),
            ("/a/b/", Some("/a/b/"), "trailing slash kept"),
            (
                "/%61dmin/x",
                Some("/admin/x"),
                "RFC 3986 §6.2.2.2: unreserved decoded",
            ),
            ("/%7euser", Some("/~user"), "RFC 3986 §6.2.2.2"),
            (
                "/a%3fb",
                Some("/a%3Fb"),
                "RFC 3986 §6.2.2.1: hex uppercased, reserved kept",
            ),
            ("/caf%c3%a9", Some("/caf%C3%A9"), "RFC 3986 §6.2.2.1"),
            (
                "/./admin/x",
                Some("/admin/x"),
                "RFC 3986 §5.2.4: `.` removed",
            ),
            (
                "/x/../admin/x",
                Some("/admin/x"),
                "RFC 3986 §5.2.4: `..` removes a segment",
            ),
            (
                "/../admin",
                Some("/admin"),
                "RFC 3986 §5.2.4: above the root stays at /",
            ),
            ("/a/b/..", Some("/a/"), "RFC 3986 §5.2.4 example"),
            ("/a/.", Some("/a/"), "RFC 3986 §5.2.4"),
            (
                "/%2e%2e/admin",
                Some("/admin"),
                "RFC 3986 §6.2.2.2 then §5.2.4",
            ),
            (
                "/x/%2E./admin",
                Some("/admin"),
                "RFC 3986 §6.2.2.2 then §5.2.4",
            ),
            ("//admin/x", Some("/admin/x"), "nginx merge_slashes"),
            ("/a//b///c", Some("/a/b/c"), "nginx merge_slashes"),
            ("/a//../b", Some("/b"), "merge first, as nginx"),
            (
                "/a#frag",
                Some("/a"),
                "RFC 9112 §3.2: no fragment in a target",
            ),
            ("/x/..#/admin", Some("/"), "RFC 9112 §3.2"),
            ("/x%2F..%2Fadmin", None, "encoded slash: upstreams disagree"),
            ("/x%2f..", None, "encoded slash, lowercase"),
            ("/x%5C..%5Cadmin", None, "encoded backslash"),
            ("/x\\..\\admin", None, "raw backslash"),
            ("/a%00b", None, "NUL"),
            ("/a%zz", None, "RFC 3986 §2.1: broken escape"),
            ("/a%4", None, "RFC 3986 §2.1: broken escape"),
            (
                "/x/..;/admin",
                None,
                "path parameters on a dot segment (Tomcat)",
            ),
            ("/x/.;a/admin", None, "path parameters on a dot segment"),
            (
                "/x;a/y",
                Some("/x;a/y"),
                "path parameters elsewhere are data",
            ),
            (
                "/a..b/.c",
                Some("/a..b/.c"),
                "dots inside segments are data",
            ),
            ("*", Some("*"), "RFC 9112 §3.2.4: asterisk-form"),
        ];
        for (raw, want, why) in rows {
            let got = normalise_path(raw).ok().map(Cow::into_owned);
            assert_eq!(got.as_deref(), *want, "{raw} ({why})");
        }
        assert!(matches!(
            normalise_path("/plain/path"),
            Ok(Cow::Borrowed(_))
        ));
    }

    /// Each row: the `Host` lines, the target's authority, whether a host is required,
    /// and the decision (RFC 9112 §3.2 unless stated).
    #[test]
    fn host_rules_table() {
        use TargetError::*;
        type Row<'a> = (
            &'a [&'a str],
            Option<&'a str>,
            bool,
            Result<Option<&'a str>, TargetError>,
        );
        let rows: &[Row<'_>] = &[
            (&["a.example"], None, true, Ok(Some("a.example"))),
            (&["a.example:8080"], None, true, Ok(Some("a.example:8080"))),
            (
                &["[2001:db8::1]:80"],
                None,
                true,
                Ok(Some("[2001:db8::1]:80")),
            ),
            (&["127.0.0.1"], None, true, Ok(Some("127.0.0.1"))),
            (&[], None, true, Err(MissingHost)),
            (&[], None, false, Ok(None)), // HTTP/1.0
            (&["public", "internal"], None, true, Err(DuplicateHost)),
            (&["a", "a"], None, true, Err(DuplicateHost)),
            (&[""], None, true, Err(InvalidHost)), // RFC 9110 §4.2.1: http needs a host
            (&["a b/c"], None, true, Err(InvalidHost)), // RFC 3986 §3.2.2
            (&["a/b"], None, true, Err(InvalidHost)),
            (&["a:80:80"], None, true, Err(InvalidHost)),
            (&["a:http"], None, true, Err(InvalidHost)),
            (&["[::1"], None, true, Err(InvalidHost)),
            (&["a@b"], None, true, Err(InvalidHost)), // no userinfo in Host
            (
                &["A.example"],
                Some("a.example"),
                true,
                Ok(Some("A.example")),
            ),
            (
                &["a.example"],
                Some("a.example:80"),
                true,
                Ok(Some("a.example")),
            ),
            (
                &["a.example"],
                Some("u@a.example"),
                true,
                Ok(Some("a.example")),
            ),
            (&["public"], Some("internal"), true, Err(HostMismatch)),
            (&["a:81"], Some("a:82"), true, Err(HostMismatch)),
            (&[], Some("a.example"), true, Err(MissingHost)), // HTTP/1.1 absolute form
            (&[], Some("a.example"), false, Ok(Some("a.example"))), // RFC 9113 §8.3.1
            (&[], Some("u@a.example"), false, Ok(Some("a.example"))),
        ];
        for (lines, authority, required, want) in rows {
            let got = request_host(lines.iter().map(|l| l.as_bytes()), *authority, *required);
            assert_eq!(got, *want, "{lines:?} {authority:?}");
        }
    }

    /// `valid_host` as it was first written (two passes over a reg-name): the one-pass
    /// version must agree with it on every value.
    fn valid_host_reference(v: &[u8]) -> bool {
        let (host, port) = if let Some(rest) = v.strip_prefix(b"[") {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let literal = &rest[..end];
            if literal.is_empty()
                || !literal
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            {
                return false;
            }
            (&v[..end + 2], &rest[end + 1..])
        } else {
            match v.iter().position(|&b| b == b':') {
                Some(i) => (&v[..i], &v[i..]),
                None => (v, &b""[..]),
            }
        };
        let reg_name = |b: u8| REG_NAME[usize::from(b)];
        let host_ok =
            !host.is_empty() && (host.starts_with(b"[") || host.iter().all(|&b| reg_name(b)));
        let port_ok = match port {
            [] => true,
            [b':', digits @ ..] => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
            _ => false,
        };
        host_ok && port_ok
    }

    /// `needs_work` as it was first written (several passes): the one-pass version must
    /// agree with it on every path.
    fn needs_work_reference(path: &[u8]) -> bool {
        if path.iter().any(|&b| b == b'%' || b == b'\\') || !path.starts_with(b"/") {
            return true;
        }
        path.windows(2).any(|w| w == b"//")
            || path.split(|&b| b == b'/').any(|seg| {
                let bare = seg.split(|&b| b == b';').next().unwrap_or(seg);
                bare == b"." || bare == b".."
            })
    }

    #[test]
    fn needs_work_cases() {
        for (path, want) in [
            ("/", false),
            ("/a/b/", false),
            ("/a..b/.c;x", false),
            ("", true),
            ("*", true),
            ("//", true),
            ("/a//b", true),
            ("/.", true),
            ("/..", true),
            ("/a/./b", true),
            ("/a/..;x/b", true),
            ("/a/.;", true),
            ("/%41", true),
            ("/a\\b", true),
        ] {
            assert_eq!(needs_work(path.as_bytes()), want, "{path}");
            assert_eq!(needs_work_reference(path.as_bytes()), want, "{path}");
        }
    }

    /// The lean path normalises bytes: bytes other than escapes (UTF-8, which both
    /// engines admit in a target: `origin_form_accepted`) are copied as they are, never
    /// re-encoded one by one.
    #[test]
    fn bytes_outside_ascii_are_kept_as_sent() {
        let raw = "/caf\u{e9}/x/../y";
        assert_eq!(
            normalise_path_bytes(raw.as_bytes()).map(Cow::into_owned),
            Ok("/caf\u{e9}/y".as_bytes().to_vec())
        );
        assert_eq!(
            normalise_path(raw).map(Cow::into_owned),
            Ok("/caf\u{e9}/y".to_owned())
        );
    }

    /// What hyper's `http` crate decides for an origin-form target.
    fn http_accepts(target: &[u8]) -> bool {
        http::uri::PathAndQuery::try_from(target).is_ok()
    }

    #[test]
    fn origin_form_targets_are_accepted_as_http_accepts_them() {
        for target in [
            &b"/"[..],
            b"/a/b?c=d&e",
            b"/caf\xC3\xA9?q=\xC3\xA9",
            b"/\"{json}\"",
            b"/p?a=\"x\"",
            b"/a<b",
            b"/a?b<c",
            b"/a`b",
            b"/a?b`c",
            b"/x/\xC0\xAE\xC0\xAE/admin",
            b"/\xFF",
            b"/a#\xFF<>",
            b"/a?b?c",
            b"/a|b^c[d]",
            b"/a\\b",
        ] {
            assert_eq!(
                origin_form_accepted(target),
                http_accepts(target),
                "{:?}",
                String::from_utf8_lossy(target)
            );
        }
        assert!(!origin_form_accepted(b"/x/\xC0\xAE\xC0\xAE/admin"));
        assert!(origin_form_accepted("/caf\u{e9}".as_bytes()));
    }

    proptest::proptest! {
        /// `origin_form_accepted` decides as the `http` crate does, on any bytes after
        /// the leading `/` (ASCII, UTF-8 and not).
        #[test]
        fn origin_form_accepted_matches_http(rest in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::num::u8::ANY,
                proptest::sample::select(b"?#/%\"<>`{}|^ azAZ09\xC3\xA9".to_vec()),
            ],
            0..24,
        )) {
            let mut target = b"/".to_vec();
            target.extend_from_slice(&rest);
            proptest::prop_assert_eq!(origin_form_accepted(&target), http_accepts(&target));
        }

        /// The one-pass `valid_host` decides as the reference does.
        #[test]
        fn valid_host_matches_the_reference(v in "\\[?[a-f0-9.:\\[\\]/@ %é-]{0,12}") {
            proptest::prop_assert_eq!(valid_host(v.as_bytes()), valid_host_reference(v.as_bytes()));
        }

        /// The one-pass `needs_work` decides as the reference does.
        #[test]
        fn needs_work_matches_the_reference(path in "[a-z/.;%\\\\]{0,16}") {
            proptest::prop_assert_eq!(
                needs_work(path.as_bytes()),
                needs_work_reference(path.as_bytes())
            );
        }

        /// Normalising bytes and text agree on every path that is text.
        #[test]
        fn bytes_and_text_normalise_alike(path in "/[a-z./%2eEfF;\\u{e9}]{0,24}") {
            let text = normalise_path(&path).map(|p| p.into_owned().into_bytes());
            let bytes = normalise_path_bytes(path.as_bytes()).map(Cow::into_owned);
            proptest::prop_assert_eq!(text, bytes);
        }

        /// Normalising is idempotent, keeps the path absolute, and leaves no dot segment
        /// or empty segment behind (nothing the upstream could resolve differently).
        #[test]
        fn normalised_paths_are_fixed_points(path in "/[a-z./%2eE;]{0,24}") {
            if let Ok(p) = normalise_path(&path) {
                proptest::prop_assert!(p.starts_with('/'));
                let again = normalise_path(&p).map(Cow::into_owned);
                proptest::prop_assert_eq!(again.as_deref(), Ok(&*p));
                proptest::prop_assert!(!needs_work(p.as_bytes()) || p.contains('%'));
            }
        }
    }
}
