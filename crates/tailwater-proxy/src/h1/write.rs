//! Heads written by the lean path: the upstream request head, the client response head and
//! local responses, serialised straight into the connection's outgoing buffer.

use http::Response;

use super::head::{Field, Framing, Kind, RequestHead, ResponseHead};
use crate::body::ProxyBody;
use crate::headers::Forwarding;

/// The upstream request head: request line, the client's fields without hop-by-hop ones,
/// `Host` (the client's when `preserve_host`, else `upstream_host`), chunked framing when
/// the body has it, and `X-Forwarded-For` / `Forwarded` with the client appended.
pub(super) fn request_head(
    w: &mut Vec<u8>,
    head: &RequestHead,
    buf: &[u8],
    preserve_host: bool,
    upstream_host: Option<&[u8]>,
    forwarding: &Forwarding,
) {
    w.clear();
    w.extend_from_slice(&buf[head.method.clone()]);
    w.push(b' ');
    w.extend_from_slice(&buf[head.target.clone()]);
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
        if forwardable(head, buf, f) {
            field_line(w, &buf[f.name.clone()], &buf[f.value.clone()]);
        }
    }
    if !has_host && let Some(h) = upstream_host {
        field_line(w, b"host", h);
    }
    if head.body() == Framing::Chunked {
        field_line(w, b"transfer-encoding", b"chunked");
    }
    let (xff, forwarded) = forwarding.values_after(prev_xff, prev_forwarded, head.host(buf));
    if let Some(v) = xff {
        field_line(w, b"x-forwarded-for", v.as_bytes());
    }
    if let Some(v) = forwarded {
        field_line(w, b"forwarded", v.as_bytes());
    }
    w.extend_from_slice(b"\r\n");
}

/// The client response head from the upstream's `resp` (parsed from `buf`): hop-by-hop
/// fields dropped, framing restated (`chunked`, or nothing when the body ends at the
/// close), `Connection: close` when the connection ends after it.
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
        let skip = match f.kind {
            Kind::HopByHop | Kind::Connection | Kind::Upgrade => true,
            // Chunked is written below; a coding without chunked ends at the close and
            // is passed on as sent.
            Kind::TransferEncoding => framing != Framing::Close,
            // Never next to chunked (RFC 9112 §6.3: the coding wins).
            Kind::ContentLength => matches!(framing, Framing::Chunked | Framing::Close),
            _ => false,
        };
        if skip || resp.fields.named_in_connection(buf, f) {
            continue;
        }
        field_line(w, &buf[f.name.clone()], &buf[f.value.clone()]);
    }
    if framing == Framing::Chunked {
        field_line(w, b"transfer-encoding", b"chunked");
    }
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
    field_line(w, b"content-length", body.len().to_string().as_bytes());
    if close {
        field_line(w, b"connection", b"close");
    }
    w.extend_from_slice(b"\r\n");
    if !head_request {
        w.extend_from_slice(body);
    }
}

/// Whether a request field is forwarded: not hop-by-hop, not named in `Connection`, not
/// one the proxy rewrites.
fn forwardable(head: &RequestHead, buf: &[u8], f: &Field) -> bool {
    !matches!(
        f.kind,
        Kind::HopByHop | Kind::Connection | Kind::TransferEncoding | Kind::Upgrade | Kind::Expect
    ) && !head.fields.named_in_connection(buf, f)
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
        request_head(&mut w, &head, raw, false, Some(b"up:9000"), &forwarding);
        assert_eq!(
            text(&w),
            "POST /a?b HTTP/1.1\r\nX-End: kept\r\nhost: up:9000\r\ntransfer-encoding: chunked\r\n\
             x-forwarded-for: 203.0.113.9, 127.0.0.1\r\n\
             forwarded: for=127.0.0.1;proto=http;host=\"front.example\"\r\n\r\n"
        );
        request_head(&mut w, &head, raw, true, Some(b"up:9000"), &forwarding);
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
    fn local_responses_carry_their_length_and_no_body_for_head() {
        let resp = crate::service::local(http::StatusCode::NOT_FOUND, "no route\n");
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
