//! Heads written by the lean path: the upstream request head, the client response head and
//! local responses, serialised straight into the connection's outgoing buffer.

use http::Response;

use super::head::{Field, Framing, Kind, RequestHead, ResponseHead};
use crate::body::ProxyBody;
use crate::framing::push_decimal;
use crate::headers::Forwarding;

/// The upstream request head: request line (the normalised `path` the route matched and
/// the query as sent), the client's fields without hop-by-hop ones and without its
/// framing fields, `Host` (the client's when `preserve_host`, else `upstream_host`), the
/// framing written from the decided `framing`, and `X-Forwarded-For` / `Forwarded` with
/// the client appended.
#[allow(clippy::too_many_arguments)]
pub(super) fn request_head(
    w: &mut Vec<u8>,
    head: &RequestHead,
    buf: &[u8],
    path: &[u8],
    framing: Framing,
    preserve_host: bool,
    upstream_host: Option<&[u8]>,
    forwarding: &Forwarding,
    budget: Option<&Budget<'_>>,
) {
    w.clear();
    w.extend_from_slice(&buf[head.method.clone()]);
    w.push(b' ');
    w.extend_from_slice(path);
    w.extend_from_slice(head.query(buf));
    w.extend_from_slice(b" HTTP/1.1\r\n");
    let text = |f: &Field| std::str::from_utf8(&buf[f.value.clone()]).ok();
    let mut prev_xff = None;
    let mut prev_forwarded = None;
    let mut has_host = false;
    for f in &head.fields.list {
        match f.kind {
            Kind::XForwardedFor => {
                prev_xff = prev_xff.or_else(|| text(f));
                continue;
            }
            Kind::Forwarded => {
                prev_forwarded = prev_forwarded.or_else(|| text(f));
                continue;
            }
            Kind::Host if preserve_host => has_host = true,
            Kind::Host => continue,
            _ => {}
        }
        if budget.is_some_and(|b| b.replaces(&buf[f.name.clone()])) {
            continue;
        }
        if forwardable(head, buf, f) {
            field_line(w, &buf[f.name.clone()], &buf[f.value.clone()]);
        }
    }
    if let Some(b) = budget {
        b.write(w);
    }
    if !has_host && let Some(h) = upstream_host {
        field_line(w, b"host", h);
    }
    framing_line(w, framing, None);
    forwarding.write_fields(w, prev_xff, prev_forwarded, head.host(buf));
    w.extend_from_slice(b"\r\n");
}

/// The client's remaining time budget, written in place of the fields that stated it.
pub(super) struct Budget<'a> {
    pub(super) remaining: std::time::Duration,
    /// The request carried `grpc-timeout`.
    pub(super) grpc: bool,
    /// The route's deadline header, when the request carried it.
    pub(super) header: Option<&'a [u8]>,
}

impl Budget<'_> {
    /// Whether the field `name` is one this budget replaces.
    fn replaces(&self, name: &[u8]) -> bool {
        (self.grpc && name.eq_ignore_ascii_case(b"grpc-timeout"))
            || self.header.is_some_and(|h| name.eq_ignore_ascii_case(h))
    }

    /// The fields with the remaining budget (`grpc-timeout` in gRPC's units, the header in
    /// whole milliseconds).
    fn write(&self, w: &mut Vec<u8>) {
        if self.grpc {
            let (n, unit) = tailwater_tower::edge::grpc_timeout_value(self.remaining);
            w.extend_from_slice(b"grpc-timeout: ");
            push_decimal(w, n);
            w.push(unit as u8);
            w.extend_from_slice(b"\r\n");
        }
        if let Some(h) = self.header {
            w.extend_from_slice(h);
            w.extend_from_slice(b": ");
            push_decimal(w, crate::deadline::millis(self.remaining));
            w.extend_from_slice(b"\r\n");
        }
    }
}

/// The client response head from the upstream's `resp` (parsed from `buf`): hop-by-hop
/// fields and the upstream's framing fields dropped, framing written from the decided
/// `framing` (the length a HEAD or 304 response announces restated from the validated
/// `Content-Length`), `Connection: close` when the connection ends after it.
pub(super) fn response_head(
    w: &mut Vec<u8>,
    resp: &ResponseHead,
    buf: &[u8],
    framing: Framing,
    close: bool,
) {
    w.clear();
    w.extend_from_slice(b"HTTP/1.1 ");
    w.extend_from_slice(&status_digits(resp.status));
    w.push(b' ');
    w.extend_from_slice(&buf[resp.reason.clone()]);
    w.extend_from_slice(b"\r\n");
    for f in &resp.fields.list {
        let skip = matches!(
            f.kind,
            Kind::HopByHop
                | Kind::Connection
                | Kind::Upgrade
                | Kind::TransferEncoding
                | Kind::ContentLength
        );
        if skip || resp.fields.named_in_connection(buf, f) {
            continue;
        }
        field_line(w, &buf[f.name.clone()], &buf[f.value.clone()]);
    }
    // A bodiless response announces a length only where one means something (RFC 9110
    // §8.6: never on 1xx and 204).
    let announced = (resp.status >= 200 && resp.status != 204)
        .then(|| resp.fields.framing.content_length())
        .flatten();
    framing_line(w, framing, announced);
    if close {
        field_line(w, b"connection", b"close");
    }
    w.extend_from_slice(b"\r\n");
}

/// A local response (status, fields, `Content-Length`, body; no body for HEAD).
pub(super) fn local_response(
    w: &mut Vec<u8>,
    resp: &Response<ProxyBody>,
    close: bool,
    head_request: bool,
) {
    let body = resp.body().local_data().map_or(&[][..], |b| &b[..]);
    w.clear();
    w.extend_from_slice(b"HTTP/1.1 ");
    w.extend_from_slice(resp.status().as_str().as_bytes());
    w.push(b' ');
    w.extend_from_slice(resp.status().canonical_reason().unwrap_or("").as_bytes());
    w.extend_from_slice(b"\r\n");
    for (name, value) in resp.headers() {
        field_line(w, name.as_str().as_bytes(), value.as_bytes());
    }
    w.extend_from_slice(b"content-length: ");
    push_decimal(w, body.len() as u64);
    w.extend_from_slice(b"\r\n");
    if close {
        field_line(w, b"connection", b"close");
    }
    w.extend_from_slice(b"\r\n");
    if !head_request {
        w.extend_from_slice(body);
    }
}

/// Whether a request field is forwarded: not hop-by-hop, not named in `Connection`, not
/// one the proxy rewrites (framing is written from the decision, never copied).
fn forwardable(head: &RequestHead, buf: &[u8], f: &Field) -> bool {
    !matches!(
        f.kind,
        Kind::HopByHop
            | Kind::Connection
            | Kind::TransferEncoding
            | Kind::ContentLength
            | Kind::Upgrade
            | Kind::Expect
    ) && !head.fields.named_in_connection(buf, f)
}

/// The framing field of a forwarded message, from the decision: the length, `chunked`,
/// or for a bodiless message the length it `announced` (HEAD and 304 responses).
fn framing_line(w: &mut Vec<u8>, framing: Framing, announced: Option<u64>) {
    let length = match framing {
        Framing::Length(n) => Some(n),
        Framing::Empty => announced,
        Framing::Chunked => {
            field_line(w, b"transfer-encoding", b"chunked");
            None
        }
        Framing::Close => None,
    };
    if let Some(n) = length {
        w.extend_from_slice(b"content-length: ");
        push_decimal(w, n);
        w.extend_from_slice(b"\r\n");
    }
}

fn field_line(w: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    w.extend_from_slice(name);
    w.extend_from_slice(b": ");
    w.extend_from_slice(value);
    w.extend_from_slice(b"\r\n");
}

/// A status code's three digits.
fn status_digits(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::super::head::Parsed;
    use super::*;

    fn text(w: &[u8]) -> String {
        String::from_utf8_lossy(w).into_owned()
    }

    #[test]
    fn the_request_head_drops_hop_by_hop_fields_and_adds_forwarding() {
        let raw = b"POST /a?b HTTP/1.1\r\nHost: front.example:8080\r\nConnection: keep-alive, X-Hop\r\n\
                    X-Hop: secret\r\nKeep-Alive: 5\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\n\
                    X-Forwarded-For: 203.0.113.9\r\nX-End: kept\r\n\r\n";
        let mut head = RequestHead::default();
        assert!(matches!(head.parse(raw, 100), Parsed::Complete));
        let forwarding = Forwarding::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let mut w = Vec::new();
        let head_request = |w: &mut Vec<u8>, preserve| {
            let framing = head.body().expect("valid framing");
            let path = head.path(raw);
            request_head(
                w,
                &head,
                raw,
                path,
                framing,
                preserve,
                Some(b"up:9000"),
                &forwarding,
                None,
            );
        };
        head_request(&mut w, false);
        assert_eq!(
            text(&w),
            "POST /a?b HTTP/1.1\r\nX-End: kept\r\nhost: up:9000\r\ntransfer-encoding: chunked\r\n\
             x-forwarded-for: 203.0.113.9, 127.0.0.1\r\n\
             forwarded: for=127.0.0.1;proto=http;host=\"front.example\"\r\n\r\n"
        );
        head_request(&mut w, true);
        assert!(
            text(&w).contains("Host: front.example:8080\r\n"),
            "{}",
            text(&w)
        );
        assert!(!text(&w).contains("host: up:9000"), "{}", text(&w));
    }

    #[test]
    fn the_response_head_restates_framing() {
        let raw =
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\
                    Connection: x-internal\r\nX-Internal: 1\r\nX-Kept: 2\r\n\r\n";
        let mut resp = ResponseHead::default();
        assert_eq!(resp.parse(raw), Ok(true));
        let mut w = Vec::new();
        response_head(&mut w, &resp, raw, Framing::Chunked, true);
        assert_eq!(
            text(&w),
            "HTTP/1.1 502 Bad Gateway\r\nX-Kept: 2\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn the_response_head_never_copies_framing_fields() {
        // RFC 9110 §7.6.1 with RFC 9112 §6.3: a length named as a connection option still
        // frames the body; the client must get it, or it reads to the close.
        let raw = b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n";
        let mut resp = ResponseHead::default();
        assert_eq!(resp.parse(raw), Ok(true));
        let framing = resp.body(false).expect("valid");
        let mut w = Vec::new();
        response_head(&mut w, &resp, raw, framing, false);
        assert_eq!(text(&w), "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
        // HEAD: the announced length is restated, from the validated value.
        response_head(&mut w, &resp, raw, resp.body(true).expect("valid"), false);
        assert_eq!(text(&w), "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
    }

    /// The fields forwarded by the lean path's writer, lowercased, in order.
    fn lean_fields(raw: &[u8]) -> Vec<(String, String)> {
        let mut head = RequestHead::default();
        assert!(matches!(head.parse(raw, 100), Parsed::Complete));
        let forwarding = Forwarding::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let mut w = Vec::new();
        let framing = head.body().expect("valid framing");
        request_head(
            &mut w,
            &head,
            raw,
            head.path(raw),
            framing,
            true,
            None,
            &forwarding,
            None,
        );
        fields_of(&w)
    }

    /// The fields the hyper path forwards for the same head (its hop-by-hop removal and
    /// framing restatement), lowercased, sorted.
    fn hyper_fields(raw: &[u8]) -> Vec<(String, String)> {
        let mut headers = http::HeaderMap::new();
        for (name, value) in fields_of(raw) {
            let name = http::HeaderName::from_bytes(name.as_bytes()).expect("name");
            headers.append(name, value.parse().expect("value"));
        }
        let framing = crate::framing::FramingFields::of_headers(&headers)
            .request()
            .expect("valid framing");
        crate::headers::strip_hop_by_hop(&mut headers, false);
        crate::framing::set_request_fields(&mut headers, framing, true);
        let mut out: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        out.sort();
        out
    }

    fn fields_of(head: &[u8]) -> Vec<(String, String)> {
        text(head)
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(": "))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
            .filter(|(n, _)| n != "x-forwarded-for" && n != "forwarded")
            .collect()
    }

    /// Each row: the `Connection` and framing fields of a request, and the fields both
    /// engines forward (besides the forwarding ones), with the rule.
    #[test]
    fn connection_tokens_table() {
        type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let rows: &[Row<'_>] = &[
            (
                "Connection: close",
                &[],
                "RFC 9112 §9.6: close is for this hop",
            ),
            (
                "Connection: keep-alive\r\nKeep-Alive: 5",
                &[],
                "RFC 9112 §9.3 / C.2.2",
            ),
            (
                "Connection: x-hop\r\nX-Hop: 1",
                &[],
                "RFC 9110 §7.6.1: named field removed",
            ),
            (
                "Connection: X-Hop , ,close\r\nX-Hop: 1",
                &[],
                "RFC 9110 §7.6.1: list, any case",
            ),
            (
                "Connection: x-a\r\nConnection: x-b\r\nX-A: 1\r\nX-B: 2",
                &[],
                "RFC 9110 §5.3: lines combine",
            ),
            (
                "Connection: x-absent\r\nX-Kept: 1",
                &[("x-kept", "1")],
                "RFC 9110 §7.6.1",
            ),
            (
                "Connection: content-length\r\nContent-Length: 3",
                &[("content-length", "3")],
                "RFC 9110 §7.6.1 (never for all-recipient fields) + RFC 9112 §6.3: framing kept",
            ),
            (
                "Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked",
                &[("transfer-encoding", "chunked")],
                "RFC 9112 §6.1: chunked restated by the proxy",
            ),
            (
                "Connection: close, content-length, host\r\nContent-Length: 0",
                &[("content-length", "0")],
                "RFC 9112 §3.2: Host kept; a zero length restated",
            ),
            (
                "TE: trailers\r\nTrailer: x\r\nUpgrade-Insecure-Requests: 1",
                &[("upgrade-insecure-requests", "1")],
                "RFC 9110 §7.6.1: TE, Trailer hop-by-hop",
            ),
            (
                "Proxy-Connection: keep-alive\r\nProxy-Authorization: x",
                &[],
                "RFC 9110 §11.7.2, legacy",
            ),
        ];
        for (fields, want, why) in rows {
            let raw = format!("POST /p HTTP/1.1\r\nHost: h\r\n{fields}\r\n\r\n");
            let mut want: Vec<(String, String)> = want
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .chain([("host".to_owned(), "h".to_owned())])
                .collect();
            want.sort();
            let mut lean = lean_fields(raw.as_bytes());
            lean.sort();
            assert_eq!(lean, want, "lean: {fields:?} ({why})");
            assert_eq!(
                hyper_fields(raw.as_bytes()),
                want,
                "hyper: {fields:?} ({why})"
            );
        }
    }

    #[test]
    fn local_responses_carry_their_length_and_no_body_for_head() {
        let resp = crate::body::local(http::StatusCode::NOT_FOUND, "no route\n");
        let mut w = Vec::new();
        local_response(&mut w, &resp, false, false);
        assert_eq!(
            text(&w),
            "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 9\r\n\r\nno route\n"
        );
        local_response(&mut w, &resp, true, true);
        assert!(text(&w).ends_with("content-length: 9\r\nconnection: close\r\n\r\n"));
    }
}
