//! Header rewriting for a forwarding proxy: hop-by-hop removal (RFC 9110 §7.6.1) and the
//! `X-Forwarded-For` / `Forwarded` (RFC 7239) additions.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Connection-specific fields a proxy must not forward (RFC 9110 §7.6.1, plus the legacy
/// `Keep-Alive` and `Proxy-Connection`). Pre-parsed names: removing by `&str` would parse
/// and hash each name on every request.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Whether a `Connection` option naming `name` is ignored: the framing fields and `Host`
/// are never removed as hop-by-hop, whatever a sender lists (RFC 9110 §7.6.1 forbids
/// listing fields meant for every recipient). Framing is restated from the proxy's own
/// decision anyway (`framing`), and a request without its `Host` would be routed on one
/// value and read by the upstream with another.
pub(crate) fn protected(name: &[u8]) -> bool {
    [&b"content-length"[..], b"transfer-encoding", b"host"]
        .iter()
        .any(|p| name.eq_ignore_ascii_case(p))
}

/// Removes hop-by-hop headers and every header named in `Connection` except the
/// [`protected`] ones.
///
/// `TE: trailers` is kept on requests when `keep_te_trailers` is set: it is what gRPC
/// clients send to say they accept trailers, and HTTP/2 allows exactly that value.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_te_trailers: bool) {
    // One pass without hashing: most messages carry none, and then there is nothing to do.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|name| !protected(name.as_bytes()))
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    let te_trailers = keep_te_trailers
        && headers.get_all(header::TE).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
        });
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The forwarding headers of one client connection. A request without `X-Forwarded-For`
/// and `Forwarded` of its own (the common case) gets values computed once per connection
/// (and `Host`) instead of formatting and allocating two strings per request.
#[derive(Debug)]
pub(crate) struct Forwarding {
    client: IpAddr,
    /// `proto=` of the `Forwarded` element: `https` on a TLS listener.
    proto: &'static str,
    /// `X-Forwarded-For` when the request has none: the client address.
    xff: Option<HeaderValue>,
    /// The last `Host` seen on the connection and its `Forwarded` value.
    last: Mutex<Option<(Option<Box<str>>, HeaderValue)>>,
    /// `for=…;proto=…`: the `Forwarded` element before its `host=`, written as bytes by
    /// the lean path ([`write_fields`](Self::write_fields)).
    element: Box<str>,
}

impl Forwarding {
    /// The forwarding state of a plain-HTTP connection from `client`.
    #[cfg(test)]
    pub(crate) fn new(client: IpAddr) -> Self {
        Self::with_proto(client, "http")
    }

    /// The forwarding state of a connection from `client` over `proto` (`http`/`https`).
    pub(crate) fn with_proto(client: IpAddr, proto: &'static str) -> Self {
        let (xff, element) = forwarded_values(None, None, client, proto, None);
        Self {
            client,
            proto,
            xff,
            last: Mutex::new(None),
            element: element
                .and_then(|v| v.to_str().ok().map(Box::from))
                .unwrap_or_default(),
        }
    }

    /// Appends the `X-Forwarded-For` and `Forwarded` field lines of a request whose first
    /// values of them are `prev_xff` and `prev_forwarded` to the head `w`: the same values
    /// as [`values_after`](Self::values_after). A request without either (the common
    /// case) is written from the connection's text: no lock, no allocation, no reference
    /// count touched per request.
    pub(crate) fn write_fields(
        &self,
        w: &mut Vec<u8>,
        prev_xff: Option<&str>,
        prev_forwarded: Option<&str>,
        host: Option<&[u8]>,
    ) {
        let line = |w: &mut Vec<u8>, name: &[u8], value: &[u8]| {
            w.extend_from_slice(name);
            w.extend_from_slice(b": ");
            w.extend_from_slice(value);
            w.extend_from_slice(b"\r\n");
        };
        if prev_xff.is_some() || prev_forwarded.is_some() || self.element.is_empty() {
            // A host that is not text is no `host=` (`is_token_or_host`).
            let host = host.and_then(|h| std::str::from_utf8(h).ok());
            let (xff, forwarded) =
                forwarded_values(prev_xff, prev_forwarded, self.client, self.proto, host);
            if let Some(v) = xff {
                line(w, b"x-forwarded-for", v.as_bytes());
            }
            if let Some(v) = forwarded {
                line(w, b"forwarded", v.as_bytes());
            }
            return;
        }
        if let Some(v) = &self.xff {
            line(w, b"x-forwarded-for", v.as_bytes());
        }
        w.extend_from_slice(b"forwarded: ");
        w.extend_from_slice(self.element.as_bytes());
        if let Some(h) = host.filter(|h| is_token_or_host(h)) {
            w.extend_from_slice(b";host=\"");
            w.extend_from_slice(h);
            w.push(b'"');
        }
        w.extend_from_slice(b"\r\n");
    }

    /// The `X-Forwarded-For` and `Forwarded` values for a request with `headers` and
    /// `host`: the client appended to what the request carries (RFC 7239 §4–5).
    pub(crate) fn values(
        &self,
        headers: &HeaderMap,
        host: Option<&str>,
    ) -> (Option<HeaderValue>, Option<HeaderValue>) {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        self.values_after(text(&X_FORWARDED_FOR), text(&header::FORWARDED), host)
    }

    /// As [`values`](Self::values), from the request's first `X-Forwarded-For` and
    /// `Forwarded` values.
    pub(crate) fn values_after(
        &self,
        prev_xff: Option<&str>,
        prev_forwarded: Option<&str>,
        host: Option<&str>,
    ) -> (Option<HeaderValue>, Option<HeaderValue>) {
        if prev_xff.is_some() || prev_forwarded.is_some() {
            return forwarded_values(prev_xff, prev_forwarded, self.client, self.proto, host);
        }
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((h, v)) = &*last
            && h.as_deref() == host
        {
            return (self.xff.clone(), Some(v.clone()));
        }
        let (xff, forwarded) = forwarded_values(None, None, self.client, self.proto, host);
        if let Some(v) = &forwarded {
            *last = Some((host.map(Box::from), v.clone()));
        }
        (xff, forwarded)
    }

    /// Replaces the forwarding headers of `headers` with `values` (from
    /// [`values`](Self::values)); several `X-Forwarded-For` fields are folded into one.
    pub(crate) fn apply(
        headers: &mut HeaderMap,
        (xff, forwarded): (Option<HeaderValue>, Option<HeaderValue>),
    ) {
        match xff {
            Some(v) => {
                headers.insert(X_FORWARDED_FOR, v);
            }
            None => {
                headers.remove(&X_FORWARDED_FOR);
            }
        }
        match forwarded {
            Some(v) => {
                headers.insert(header::FORWARDED, v);
            }
            None => {
                headers.remove(header::FORWARDED);
            }
        }
    }
}

/// The client address appended to `X-Forwarded-For` and a `for=…;proto=…;host=…` element
/// appended to `Forwarded` (RFC 7239 §4–5; IPv6 addresses are bracketed and quoted).
fn forwarded_values(
    prev_xff: Option<&str>,
    prev_forwarded: Option<&str>,
    client: IpAddr,
    proto: &str,
    host: Option<&str>,
) -> (Option<HeaderValue>, Option<HeaderValue>) {
    // One buffer per header, handed to the `HeaderValue` without a copy.
    let mut xff = String::with_capacity(64);
    if let Some(prev) = prev_xff
        && !prev.trim().is_empty()
    {
        xff.push_str(prev);
        xff.push_str(", ");
    }
    let ip_at = xff.len();
    let _ = write!(xff, "{client}");
    let mut forwarded = String::with_capacity(64);
    if let Some(prev) = prev_forwarded
        && !prev.trim().is_empty()
    {
        forwarded.push_str(prev);
        forwarded.push_str(", ");
    }
    let ip = &xff[ip_at..];
    match client {
        IpAddr::V4(_) => {
            let _ = write!(forwarded, "for={ip};proto={proto}");
        }
        IpAddr::V6(_) => {
            let _ = write!(forwarded, "for=\"[{ip}]\";proto={proto}");
        }
    }
    if let Some(h) = host.filter(|h| is_token_or_host(h)) {
        let _ = write!(forwarded, ";host=\"{h}\"");
    }
    (
        HeaderValue::from_maybe_shared(Bytes::from(xff)).ok(),
        HeaderValue::from_maybe_shared(Bytes::from(forwarded)).ok(),
    )
}

/// Characters that can go inside a quoted `host=` without escaping.
fn is_token_or_host(h: impl AsRef<[u8]>) -> bool {
    let h = h.as_ref();
    !h.is_empty()
        && h.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("proxy-authorization", HeaderValue::from_static("x"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        let mut g = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
        strip_hop_by_hop(&mut g, true);
        assert_eq!(g.get("te").map(|v| v.as_bytes()), Some(&b"trailers"[..]));
        assert_eq!(g.len(), 2);
    }

    fn add_forwarded(h: &mut HeaderMap, client: IpAddr, host: Option<&str>) {
        let f = Forwarding::new(client);
        let values = f.values(h, host);
        Forwarding::apply(h, values);
    }

    #[test]
    fn a_connection_reuses_its_values_per_host() {
        let f = Forwarding::new("192.0.2.7".parse().unwrap());
        for host in [
            Some("a.example"),
            Some("a.example"),
            Some("b.example"),
            None,
        ] {
            let mut h = HeaderMap::new();
            let values = f.values(&h, host);
            Forwarding::apply(&mut h, values);
            assert_eq!(h["x-forwarded-for"], "192.0.2.7");
            let want = match host {
                Some(host) => format!("for=192.0.2.7;proto=http;host=\"{host}\""),
                None => "for=192.0.2.7;proto=http".to_owned(),
            };
            assert_eq!(h["forwarded"], want.as_str());
        }
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        let values = f.values(&h, None);
        Forwarding::apply(&mut h, values);
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1, "folded");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
    }

    #[test]
    fn the_lean_lines_match_the_header_values() {
        let clients: [IpAddr; 2] = ["192.0.2.7".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        let hosts = [
            None,
            Some("a.example"),
            Some("a.example:8080"),
            Some("bad host\""),
        ];
        let prevs = [None, Some("10.0.0.1")];
        for (client, proto) in clients
            .into_iter()
            .flat_map(|c| [(c, "http"), (c, "https")])
        {
            let f = Forwarding::with_proto(client, proto);
            for host in hosts {
                for (xff, fwd) in prevs.into_iter().flat_map(|x| prevs.map(|p| (x, p))) {
                    let fwd = fwd.map(|_| "for=10.0.0.1");
                    let mut w = Vec::new();
                    f.write_fields(&mut w, xff, fwd, host.map(str::as_bytes));
                    let (x, g) = f.values_after(xff, fwd, host);
                    let want = format!(
                        "x-forwarded-for: {}\r\nforwarded: {}\r\n",
                        x.unwrap().to_str().unwrap(),
                        g.unwrap().to_str().unwrap()
                    );
                    assert_eq!(
                        String::from_utf8(w).unwrap(),
                        want,
                        "{client} {host:?} {xff:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn appends_forwarding_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        add_forwarded(&mut h, "192.0.2.7".parse().unwrap(), Some("example.com"));
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(
            h["forwarded"],
            "for=192.0.2.7;proto=http;host=\"example.com\""
        );
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, "2001:db8::1".parse().unwrap(), None);
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";proto=http");
    }
}
