//! Differential fuzzing of the proxy's two engines (the lean HTTP/1.1 path and hyper's,
//! `server.lean_http1 = false`) against a backend that records every byte it receives.
//!
//! A seeded generator writes client connections from a grammar of what has gone wrong
//! before (issue 11): `Connection` options naming framing fields or `Host`, lengths and
//! codings mixed, repeated and malformed, duplicate, missing and invalid `Host`, pipelined
//! requests, chunk extensions and trailers, odd paths (escapes, dot segments, `//`, `%2F`,
//! fragments), bodies that are themselves requests; each request asks the backend for a
//! response from a grammar too (`Connection: content-length`, length with `chunked`,
//! chunked twice, an unknown coding, close-delimited, 204/304 with a length, a body that
//! is itself a response, an unsolicited 101). Every request carries a unique id the
//! backend echoes. A reference parser reads each client's bytes by RFC 9112 and says
//! which ids are requests (and with which body); the invariants:
//!
//! - every byte the backend receives belongs to a request (no garbage), each request
//!   carries an id that the reference reads as a request of some client (never an id
//!   from inside a body), at most once, with the body the reference gave it, and with
//!   clean framing (one `Host`, never length and coding together, no extension, no
//!   malformed trailer);
//! - the backend's own reading of the path and `Host` (fully decoded, dot segments
//!   resolved) picks the route whose listener received the request (one listener per
//!   route): what was counted on a route is what the backend serves for it;
//! - per route, requests whose response the proxy relayed ≤ requests the backend parsed
//!   ≤ requests the proxy admitted;
//! - every client gets well-framed responses, in order, each carrying the id of its own
//!   request at that position (or a local one without an id), never another's.
//!
//! Both engines run over plain TCP and over TLS (ALPN `http/1.1`: the lean path serves
//! those connections too, so its defences must hold on them).
//!
//! CI runs `TAILWATER_DIFF_CASES` (default 1000) connections per engine and transport;
//! `TAILWATER_DIFF_CASES=100000 cargo test --release -p tailwater-proxy --test
//! differential` is the long run (`TAILWATER_DIFF_SEED` picks another seed).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::raw::{self, ReadError, Recorder, Seen};
use common::tls::{Transport, connect};
use common::*;
use proptest::prelude::RngExt;
use proptest::test_runner::{RngAlgorithm, TestRng};
use tokio::io::AsyncWriteExt;

/// Routes, one backend listener each, in the order of the listeners.
const ROUTES: [&str; 4] = ["main", "api", "admin", "internal"];
/// Connections in flight at once (so a desynchronised pooled connection reaches others).
const PARALLEL: usize = 8;
/// Longest wait for a response that should come.
const RESPONSE_WAIT: Duration = Duration::from_secs(5);

fn proxy_toml(backend: &Recorder, lean: bool, transport: Transport) -> String {
    let a = &backend.addrs;
    format!(
        "[server]\nlean_http1 = {lean}\n{}\
         [[route]]\nname = \"main\"\nupstream = \"http://{}\"\n\
         [[route]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"http://{}\"\n\
         [[route]]\nname = \"admin\"\npath_prefix = \"/admin\"\nupstream = \"http://{}\"\n\
         [[route.rate_limit]]\nname = \"admin\"\nrate = 40\nperiod = \"1m\"\n\
         [[route]]\nname = \"internal\"\nhost = \"internal.example\"\nupstream = \"http://{}\"\n",
        transport.server_toml(),
        a[0],
        a[1],
        a[2],
        a[3]
    )
}

/// The route a backend would serve `seen` as: by `Host`, then by the path fully
/// percent-decoded, `//` merged and dot segments resolved (what a lenient framework does).
fn classify(seen: &Seen) -> usize {
    let host = seen.header("host").unwrap_or("");
    let host = host.split(':').next().unwrap_or("").to_ascii_lowercase();
    if host == "internal.example" {
        return 3;
    }
    let path = seen.target.split(['?', '#']).next().unwrap_or("");
    let path = path
        .strip_prefix("http://")
        .map_or(path, |rest| rest.find('/').map_or("/", |i| &rest[i..]));
    let bytes = path.as_bytes();
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                decoded.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut stack: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg.split(';').next().unwrap_or("") {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            _ => stack.push(seg),
        }
    }
    let resolved = format!("/{}", stack.join("/"));
    if resolved.starts_with("/admin") {
        2
    } else if resolved.starts_with("/api") {
        1
    } else {
        0
    }
}

/// What the backend answers: the response kind the request asks for (`x-resp`).
fn respond(seen: &Seen) -> (Vec<u8>, bool) {
    let id = seen.header("x-id").unwrap_or("none").to_owned();
    let kind: u32 = seen
        .header("x-resp")
        .and_then(|k| k.parse().ok())
        .unwrap_or(0);
    let head_only = seen.method == "HEAD";
    let body = format!("id={id}");
    let (head, body, close): (String, Vec<u8>, bool) = match kind {
        1 => (
            "transfer-encoding: chunked\r\n".into(),
            format!(
                "3;ext=\"a b\"\r\nid=\r\n{:x}\r\n{id}\r\n0\r\nx-trailer: t\r\n\r\n",
                id.len()
            )
            .into_bytes(),
            false,
        ),
        2 => (
            format!(
                "connection: content-length\r\ncontent-length: {}\r\n",
                body.len()
            ),
            body.into_bytes(),
            false,
        ),
        3 => (
            "content-length: 999\r\ntransfer-encoding: chunked\r\n".into(),
            format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).into_bytes(),
            false,
        ),
        4 => (
            "transfer-encoding: chunked, chunked\r\n".into(),
            format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).into_bytes(),
            true,
        ),
        5 => ("connection: close\r\n".into(), body.into_bytes(), true),
        6 => {
            return (
                format!("HTTP/1.1 204 No Content\r\nx-echo-id: {id}\r\ncontent-length: 5\r\n\r\n")
                    .into_bytes(),
                false,
            );
        }
        7 => (
            "transfer-encoding: gzip\r\n".into(),
            body.into_bytes(),
            true,
        ),
        8 => ("content-length: 0\r\n".into(), Vec::new(), false),
        9 => (
            "connection: transfer-encoding\r\ntransfer-encoding: chunked\r\n".into(),
            format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).into_bytes(),
            false,
        ),
        10 => {
            let forged = "HTTP/1.1 200 OK\r\nx-echo-id: forged\r\ncontent-length: 0\r\n\r\n";
            (
                format!("content-length: {}\r\n", forged.len()),
                forged.as_bytes().to_vec(),
                false,
            )
        }
        11 => {
            return (
                format!(
                    "HTTP/1.1 304 Not Modified\r\nx-echo-id: {id}\r\ncontent-length: 10\r\n\r\n"
                )
                .into_bytes(),
                false,
            );
        }
        12 => {
            return (
                b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n"
                    .to_vec(),
                true,
            );
        }
        _ => (
            format!("content-length: {}\r\n", body.len()),
            body.into_bytes(),
            false,
        ),
    };
    let mut out = format!("HTTP/1.1 200 OK\r\nx-echo-id: {id}\r\n{head}\r\n").into_bytes();
    if !head_only {
        out.extend_from_slice(&body);
    }
    (out, close)
}

/// One request as the reference (RFC 9112, lenient where the RFC lets a recipient be)
/// reads a client's bytes.
#[derive(Debug, Clone)]
struct RefRequest {
    id: Option<String>,
    head_request: bool,
    /// `None` when the bytes end inside the body (a proxy may forward what it has).
    body: Option<Vec<u8>>,
}

/// The requests in `bytes`, up to the first the RFC leaves no way to delimit (what comes
/// after it is not a request under any reading a proxy may take), and whether the bytes
/// where it stopped start a HEAD request (its refusal has no body).
fn reference(bytes: &[u8]) -> (Vec<RefRequest>, bool) {
    let mut out = Vec::new();
    let at = read_requests(bytes, &mut out);
    (out, bytes[at.min(bytes.len())..].starts_with(b"HEAD "))
}

/// Reads requests from `bytes` into `out`; returns where it stopped.
fn read_requests(bytes: &[u8], out: &mut Vec<RefRequest>) -> usize {
    let mut at = 0;
    while at < bytes.len() {
        let Some(end) = bytes[at..].windows(4).position(|w| w == b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&bytes[at..at + end]).into_owned();
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or("");
        let parts: Vec<&str> = line.split(' ').collect();
        if parts.len() != 3 || parts[2] != "HTTP/1.1" {
            break;
        }
        let mut fields = Vec::new();
        for l in lines {
            match l.split_once(':') {
                Some((n, v)) if !n.is_empty() && !n.contains(' ') => {
                    fields.push((n.to_ascii_lowercase(), v.trim().to_owned()));
                }
                _ => return at,
            }
        }
        let values = |name: &str| -> Vec<String> {
            fields
                .iter()
                .filter(|(n, _)| n == name)
                .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
                .filter(|s| !s.is_empty())
                .collect()
        };
        let codings = values("transfer-encoding");
        let coded = fields.iter().any(|(n, _)| n == "transfer-encoding");
        let lengths = values("content-length");
        let mut body_at = at + end + 4;
        let body;
        if coded {
            if codings.last().map(String::as_str) != Some("chunked") {
                break;
            }
            let mut data = Vec::new();
            match dechunk_lenient(&bytes[body_at..], &mut data) {
                Ok(Some(used)) => {
                    body = Some(data);
                    body_at += used;
                }
                Ok(None) => {
                    body = None;
                    body_at = bytes.len();
                }
                Err(()) => break,
            }
        } else if !lengths.is_empty() {
            let n: Vec<Option<usize>> = lengths
                .iter()
                .map(|v| {
                    v.bytes()
                        .all(|b| b.is_ascii_digit())
                        .then(|| v.parse().ok())
                        .flatten()
                })
                .collect();
            let Some(Some(len)) = n.first().copied() else {
                break;
            };
            if n.iter().any(|x| *x != Some(len)) {
                break;
            }
            if bytes.len() < body_at + len {
                body = None;
                body_at = bytes.len();
            } else {
                body = Some(bytes[body_at..body_at + len].to_vec());
                body_at += len;
            }
        } else {
            body = Some(Vec::new());
        }
        let id = fields
            .iter()
            .find(|(n, _)| n == "x-id")
            .map(|(_, v)| v.clone());
        out.push(RefRequest {
            id,
            head_request: parts[0] == "HEAD",
            body,
        });
        at = body_at;
        if values("connection").iter().any(|t| t == "close") {
            break;
        }
    }
    at
}

/// A chunked body read leniently (extensions, any trailer lines): the bytes used,
/// `Ok(None)` when it does not end in `bytes`, `Err` when it is malformed.
fn dechunk_lenient(bytes: &[u8], body: &mut Vec<u8>) -> Result<Option<usize>, ()> {
    let mut at = 0;
    loop {
        let Some(eol) = bytes[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&bytes[at..at + eol]).into_owned();
        let digits = line.split([';', ' ', '\t']).next().unwrap_or("");
        if digits.is_empty() || digits.len() > 16 {
            return Err(());
        }
        let size = u64::from_str_radix(digits, 16).map_err(|_| ())?;
        at += eol + 2;
        if size == 0 {
            loop {
                let Some(eol) = bytes[at..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some(at));
                }
            }
        }
        let Some(end) = usize::try_from(size).ok().and_then(|n| at.checked_add(n)) else {
            return Ok(None);
        };
        if bytes.len() < end + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&bytes[at..end]);
        at = end;
        if &bytes[at..at + 2] != b"\r\n" {
            return Err(());
        }
        at += 2;
    }
}

/// The generator of one case (a client connection).
struct Gen {
    rng: TestRng,
    case: u64,
    ids: u64,
}

impl Gen {
    fn pct(&mut self, p: u32) -> bool {
        self.rng.random_range(0..100) < p
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.random_range(0..items.len())]
    }

    fn id(&mut self) -> String {
        self.ids += 1;
        format!("c{}r{}", self.case, self.ids)
    }

    fn path(&mut self) -> String {
        let base = self
            .pick(&["/", "/api/v1", "/admin/x", "/x", "/apix", "/admin"])
            .to_owned();
        let mut p = match self.rng.random_range(0..24) {
            0 => base.replace("admin", "%61dmin"),
            1 => base.replace("api", "%61p%69"),
            2 => format!("/.{base}"),
            3 => format!("/x/..{base}"),
            4 => format!("/{base}"),
            5 => format!("/%2e%2e{base}"),
            6 => format!("/x%2F..%2F{}", base.trim_start_matches('/')),
            7 => format!("/x/..;{base}"),
            8 => format!("{base}#/admin"),
            9 => format!("/x/%2E%2e{base}"),
            10 => format!("{base}/."),
            11 => format!("{base}%zz"),
            12 => format!("/x%5c..%5c{}", base.trim_start_matches('/')),
            13 => format!("http://a.example{base}"),
            14 => format!("http://internal.example{base}"),
            15 => format!("{base}//..//admin"),
            // Bytes httparse admits and hyper's URI refuses (both engines refuse them),
            // and UTF-8 (both forward it as sent).
            16 => format!("{base}<x"),
            17 => format!("{base}/caf\u{e9}"),
            _ => base,
        };
        if self.pct(30) {
            p.push_str(self.pick(&["?q=1", "?a=%2F..%2Fadmin", "?x=/../admin", "?", "?q=\"1\""]));
        }
        p
    }

    fn host_lines(&mut self) -> String {
        match self.rng.random_range(0..100) {
            0..4 => String::new(),
            4..8 => "Host: public\r\nHost: internal.example\r\n".into(),
            8..11 => "Host: a.example\r\nHost: a.example\r\n".into(),
            11..14 => "Host: a b/c\r\n".into(),
            14..16 => "Host:\r\n".into(),
            16..30 => "Host: internal.example\r\n".into(),
            30..40 => "host: A.example:8080\r\n".into(),
            _ => "Host: a.example\r\n".into(),
        }
    }

    fn connection(&mut self) -> (String, bool) {
        if self.pct(45) {
            return (String::new(), false);
        }
        let n = self.rng.random_range(1..4);
        let mut tokens = Vec::new();
        for _ in 0..n {
            tokens.push(self.pick(&[
                "content-length",
                "Content-Length",
                "transfer-encoding",
                "host",
                "x-hop",
                "te",
                "keep-alive",
                "close",
                "upgrade",
            ]));
        }
        let close = tokens.contains(&"close");
        let mut line = format!("Connection: {}\r\n", tokens.join(", "));
        if tokens.contains(&"x-hop") {
            line.push_str("X-Hop: secret\r\n");
        }
        (line, close)
    }

    fn chunked(&mut self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < body.len() {
            let n = self.rng.random_range(1..=body.len() - at);
            let size = if self.pct(10) {
                format!("{n:X}")
            } else {
                format!("{n:x}")
            };
            out.extend_from_slice(size.as_bytes());
            if self.pct(15) {
                out.extend_from_slice(
                    self.pick(&[";a=b", " ; x=\"y z\"", ";GET / HTTP/1.1"])
                        .as_bytes(),
                );
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body[at..at + n]);
            out.extend_from_slice(b"\r\n");
            at += n;
        }
        out.extend_from_slice(b"0\r\n");
        match self.rng.random_range(0..100) {
            0..10 => out.extend_from_slice(b"X-Trailer: 1\r\n"),
            10..13 => out.extend_from_slice(b"no colon here\r\n"),
            13..15 => out.extend_from_slice(b"Content-Length: 0\r\n"),
            _ => {}
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    /// One request; `nested` requests (inside bodies) have no body of their own.
    fn request(&mut self, nested: bool) -> (Vec<u8>, bool, bool) {
        let id = self.id();
        let method = self.pick(&["GET", "GET", "POST", "POST", "PUT", "DELETE", "HEAD"]);
        let path = self.path();
        let resp = self.rng.random_range(0..16);
        let (conn, close) = self.connection();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\n{}x-id: {id}\r\nx-resp: {resp}\r\n{conn}",
            self.host_lines()
        );
        let with_body = !nested && (matches!(method, "POST" | "PUT") || self.pct(10));
        let mut hang = false;
        let mut body = Vec::new();
        if with_body {
            let content: Vec<u8> = if self.pct(35) {
                self.request(true).0
            } else {
                let n = self.rng.random_range(0..48);
                (0..n)
                    .map(|i| b"abcXYZ0123 \r\n/"[(i * 7 + n) % 14])
                    .collect()
            };
            let len = content.len();
            match self.rng.random_range(0..100) {
                0..45 => {
                    head.push_str(&format!("Content-Length: {len}\r\n"));
                    body = content;
                }
                45..67 => {
                    head.push_str("Transfer-Encoding: chunked\r\n");
                    body = self.chunked(&content);
                }
                67..71 => {
                    head.push_str(&format!("Content-Length: {len}, {len}\r\n"));
                    body = content;
                }
                71..74 => {
                    head.push_str(&format!(
                        "Content-Length: {len}\r\ncontent-length: {len}\r\n"
                    ));
                    body = content;
                }
                74..77 => {
                    head.push_str(&format!(
                        "Content-Length: {len}\r\nContent-Length: {}\r\n",
                        len + 1
                    ));
                    body = content;
                }
                77..83 => {
                    body = self.chunked(&content);
                    let cl = if self.pct(50) { body.len() } else { len };
                    if self.pct(50) {
                        head.push_str(&format!(
                            "Content-Length: {cl}\r\nTransfer-Encoding: chunked\r\n"
                        ));
                    } else {
                        head.push_str(&format!(
                            "Transfer-Encoding: chunked\r\nContent-Length: {cl}\r\n"
                        ));
                    }
                }
                83..86 => {
                    head.push_str("Transfer-Encoding: chunked, chunked\r\n");
                    body = self.chunked(&content);
                }
                86..88 => {
                    head.push_str("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n");
                    body = self.chunked(&content);
                }
                88..90 => {
                    head.push_str("Transfer-Encoding: gzip, chunked\r\n");
                    body = self.chunked(&content);
                }
                90..92 => {
                    head.push_str(&format!("Content-Length: +{len}\r\n"));
                    body = content;
                }
                92..94 => {
                    head.push_str("Transfer-Encoding: chunked\r\n");
                    body = b"8000000000000000\r\nxyz".to_vec();
                    hang = true;
                }
                // A body without framing: what follows the head is the next "request".
                _ => body = content,
            }
        } else if self.pct(15) {
            head.push_str("Content-Length: 0\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&body);
        (bytes, close, hang)
    }

    /// A client connection's bytes: 1–3 requests, then a last one that closes; `true`
    /// when the bytes may leave a body unfinished (the client then ends its side).
    fn connection_bytes(&mut self) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        for _ in 0..self.rng.random_range(1..4) {
            let (bytes, _close, hang) = self.request(false);
            out.extend_from_slice(&bytes);
            if hang {
                return (out, true);
            }
        }
        let id = self.id();
        out.extend_from_slice(
            format!("GET /api/end HTTP/1.1\r\nHost: a.example\r\nx-id: {id}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        (out, false)
    }
}

/// Runs one connection and returns the violations the client saw.
async fn run_case(
    addr: std::net::SocketAddr,
    transport: Transport,
    bytes: Vec<u8>,
    hang: bool,
    (refs, tail_head): (Vec<RefRequest>, bool),
) -> Vec<String> {
    let mut problems = Vec::new();
    let Ok(mut s) = connect(addr, transport).await else {
        return vec!["connect failed".into()];
    };
    let split = bytes.len() / 2;
    if s.write_all(&bytes[..split]).await.is_err() || s.write_all(&bytes[split..]).await.is_err() {
        return problems; // the proxy closed early (a refused head): nothing to check
    }
    if hang {
        let _ = s.shutdown().await;
    }
    let mut buf = Vec::new();
    for i in 0.. {
        let head_request = refs.get(i).map_or(tail_head, |r| r.head_request);
        match raw::read_response(&mut s, &mut buf, head_request, RESPONSE_WAIT).await {
            Ok(resp) => {
                let echo = resp.header("x-echo-id");
                let want = refs.get(i).and_then(|r| r.id.as_deref());
                // Bytes the reference cannot read as a request get a local answer (400).
                if refs.get(i).is_none() && (echo.is_some() || resp.status < 400) {
                    problems.push(format!(
                        "response {i} ({}, {echo:?}) to no request",
                        resp.status
                    ));
                } else if echo.is_some() && echo != want {
                    problems.push(format!("response {i} carries {echo:?}, expected {want:?}"));
                }
            }
            Err(ReadError::Closed) => break,
            Err(ReadError::Timeout) if hang => break,
            Err(e) => {
                problems.push(format!("response {i}: {e:?}"));
                break;
            }
        }
    }
    problems
}

/// `tailwater_requests_total` of `route` with `outcome` (and `reason`, if given).
fn count(text: &str, route: &str, outcome: &str, reason: Option<&str>) -> u64 {
    text.lines()
        .filter(|l| {
            l.starts_with(&format!(
                "tailwater_requests_total{{route=\"{route}\",outcome=\"{outcome}\""
            ))
        })
        .filter(|l| reason.is_none_or(|r| l.contains(&format!("reason=\"{r}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn run_engine(lean: bool, transport: Transport, cases: u64, seed: u64) -> (Vec<String>, u64) {
    let backend = raw::recorder(ROUTES.len(), Arc::new(respond)).await;
    let running = start_proxy(config(&proxy_toml(&backend, lean, transport))).await;
    let mut seed_bytes = [0u8; 16];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    seed_bytes[8..].copy_from_slice(&(!seed).to_le_bytes());
    let mut generator = Gen {
        rng: TestRng::from_seed(RngAlgorithm::XorShift, &seed_bytes),
        case: 0,
        ids: 0,
    };
    let violations = Arc::new(Mutex::new(Vec::new()));
    let allowed: Arc<Mutex<HashMap<String, Option<Vec<u8>>>>> = Arc::default();
    let slots = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut tasks = tokio::task::JoinSet::new();
    let mut requests = 0u64;
    // The bytes of every case, to show with a violation the backend found (kept small).
    let mut texts: HashMap<u64, String> = HashMap::new();
    for case in 0..cases {
        generator.case = case;
        let (bytes, hang) = generator.connection_bytes();
        let refs = reference(&bytes);
        requests += refs.0.len() as u64;
        if cases <= 5_000 {
            texts.insert(case, String::from_utf8_lossy(&bytes).into_owned());
        }
        {
            let mut allowed = allowed.lock().expect("lock");
            for r in &refs.0 {
                if let Some(id) = &r.id {
                    allowed.insert(id.clone(), r.body.clone());
                }
            }
        }
        let permit = Arc::clone(&slots).acquire_owned().await.expect("semaphore");
        let violations = Arc::clone(&violations);
        let addr = running.addr;
        tasks.spawn(async move {
            let shown = String::from_utf8_lossy(&bytes).into_owned();
            let found = run_case(addr, transport, bytes, hang, refs).await;
            drop(permit);
            if !found.is_empty() {
                violations
                    .lock()
                    .expect("lock")
                    .push(format!("case {case}: {found:?}\n{shown}"));
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let proxy = running.proxy.clone();
    eventually(Duration::from_secs(10), || {
        proxy.status().iter().all(|r| r.in_flight == 0)
    })
    .await;

    let mut v = violations.lock().expect("lock").clone();
    for g in backend.garbage() {
        v.push(format!("backend received bytes that are no request: {g}"));
    }
    let allowed = std::mem::take(&mut *allowed.lock().expect("lock"));
    let mut ids = HashSet::new();
    let mut received = [0u64; ROUTES.len()];
    for seen in backend.seen() {
        received[seen.listener] += 1;
        let case = seen
            .header("x-id")
            .and_then(|id| id.strip_prefix('c')?.split('r').next()?.parse::<u64>().ok());
        let sent = case.and_then(|c| texts.get(&c)).map_or("", String::as_str);
        let what = format!(
            "{} {} on {}, sent:\n{sent}",
            seen.method, seen.target, ROUTES[seen.listener]
        );
        match seen.header("x-id") {
            None => v.push(format!("request without an id: {what}")),
            Some(id) if !allowed.contains_key(id) => {
                v.push(format!("smuggled request {id}: {what}"))
            }
            Some(id) if !ids.insert(id.to_owned()) => {
                v.push(format!("request {id} received twice: {what}"))
            }
            Some(id) if seen.complete && allowed[id].as_ref().is_some_and(|b| *b != seen.body) => {
                v.push(format!(
                    "request {id} framed differently: body {:?}, sent {:?}: {what}",
                    String::from_utf8_lossy(&seen.body),
                    allowed[id].as_deref().map(String::from_utf8_lossy)
                ));
            }
            Some(_) => {}
        }
        if !seen.problems.is_empty() {
            v.push(format!("{what}: forwarded with {:?}", seen.problems));
        }
        let route = classify(&seen);
        if route != seen.listener {
            v.push(format!(
                "{what}: counted on {} but served as {}",
                ROUTES[seen.listener], ROUTES[route]
            ));
        }
    }
    let metrics = running.proxy.metrics_text();
    let mut admitted = [0u64; ROUTES.len()];
    for (i, status) in running.proxy.status().iter().enumerate() {
        let r = ROUTES.iter().position(|n| *n == status.name).unwrap_or(i);
        admitted[r] = status.admitted;
        let relayed = count(&metrics, &status.name, "success", None)
            + count(
                &metrics,
                &status.name,
                "upstream_error",
                Some("upstream_status"),
            );
        if !(relayed <= received[r] && received[r] <= status.admitted) {
            v.push(format!(
                "route {}: relayed {relayed}, backend parsed {}, admitted {}",
                status.name, received[r], status.admitted
            ));
        }
    }
    let forwarded: u64 = received.iter().sum();
    // Not vacuous: most of what the reference reads as requests is valid and forwarded.
    if forwarded * 4 < requests {
        v.push(format!(
            "only {forwarded} of {requests} requests reached the backend"
        ));
    }
    eprintln!(
        "lean={lean} {transport:?}: per route {ROUTES:?}: backend parsed {received:?}, proxy admitted {admitted:?}"
    );
    running.shutdown(Duration::from_secs(10)).await;
    (v, requests)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs the generated connections through both engines over `transport`.
async fn both_engines(transport: Transport) {
    let cases = env("TAILWATER_DIFF_CASES", 1000);
    let seed = env("TAILWATER_DIFF_SEED", 11);
    for lean in [true, false] {
        let started = std::time::Instant::now();
        let (violations, requests) = run_engine(lean, transport, cases, seed).await;
        eprintln!(
            "lean={lean} {transport:?}: {cases} connections, {requests} requests by the reference, {} violations, {:?}",
            violations.len(),
            started.elapsed()
        );
        assert!(
            violations.is_empty(),
            "lean={lean} {transport:?}: {} violations, first ones:\n{}",
            violations.len(),
            violations
                .iter()
                .take(8)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_engines_forward_exactly_what_they_admit() {
    both_engines(Transport::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_engines_forward_exactly_what_they_admit_over_tls() {
    both_engines(Transport::Tls).await;
}

/// Answers by path: gRPC overload (`UNAVAILABLE`) in a chunked body's trailer, in the
/// head (trailers-only), or `OK` in a trailer.
fn grpc_script() -> raw::Script {
    Arc::new(|seen: &Seen| {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\n";
        let out = match seen.target.as_str() {
            "/trailer" => format!(
                "{head}transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\ngrpc-status: 14\r\ngrpc-message: busy\r\n\r\n"
            ),
            "/head" => format!("{head}grpc-status: 14\r\ncontent-length: 0\r\n\r\n"),
            _ => format!(
                "{head}transfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nGRPC-Status: 0\r\n\r\n"
            ),
        };
        (out.into_bytes(), false)
    })
}

/// The value of the `tailwater_requests_total` line of `route` with `outcome` (and
/// `reason`), 0 when absent.
fn requests(text: &str, outcome: &str, reason: Option<&str>) -> u64 {
    count(text, "default", outcome, reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_engines_count_a_grpc_overload_in_the_trailers_or_the_head_as_a_drop() {
    let rec = raw::recorder(1, grpc_script()).await;
    let mut seen_by_engine = Vec::new();
    for lean in [true, false] {
        let toml = format!(
            "[server]\nlean_http1 = {lean}\n[[route]]\nupstream = \"http://{}\"\n\
             [route.limit]\nalgorithm = \"aimd\"\ninitial_limit = 20\n",
            rec.addrs[0]
        );
        let running = start_proxy(config(&toml)).await;
        let c = client();
        for path in ["/trailer", "/head", "/ok", "/trailer"] {
            let (parts, _) = get(&c, running.addr, path).await.expect("response");
            assert_eq!(parts.status, 200, "lean={lean} {path}: relayed as is");
        }
        // A request is counted once its answer's last byte is written, which can follow
        // the client's read of it: wait until all four are counted.
        let counted = || {
            let m = running.proxy.metrics_text();
            requests(&m, "upstream_error", None) + requests(&m, "success", None)
        };
        eventually(Duration::from_secs(5), || counted() >= 4).await;
        let m = running.proxy.metrics_text();
        let dropped = requests(&m, "upstream_error", Some("upstream_status"));
        let ok = requests(&m, "success", None);
        seen_by_engine.push((dropped, ok));
        assert_eq!(
            (dropped, ok),
            (3, 1),
            "lean={lean}: two trailers and one head said UNAVAILABLE:\n{m}"
        );
        running.shutdown(Duration::from_secs(5)).await;
    }
    assert_eq!(seen_by_engine[0], seen_by_engine[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_engines_answer_a_redis_rate_limit_alike() {
    let test = "both_engines_answer_a_redis_rate_limit_alike";
    if !tailwater_test::redis::redis_available(test) {
        return;
    }
    let server = tailwater_test::redis::RedisServer::start().expect("redis");
    let rec = raw::recorder(1, raw::echo_target()).await;
    let mut answers = Vec::new();
    for lean in [true, false] {
        let toml = format!(
            "[server]\nlean_http1 = {lean}\n[[route]]\nupstream = \"http://{}\"\n\
             [[route.rate_limit]]\nname = \"redis\"\nrate = 2\nperiod = \"1h\"\nkey = \"header:x-user\"\n\
             store = \"redis\"\nredis_url = \"{}\"\nredis_prefix = \"diff-{lean}\"\n\
             call_timeout = \"2s\"\non_store_error = \"closed\"\n",
            rec.addrs[0],
            server.url()
        );
        let running = start_proxy(config(&toml)).await;
        let c = client();
        let mut got = Vec::new();
        for user in ["a", "a", "b", "a", "b", "b", "a"] {
            let req = hyper::Request::get(format!("http://{}/x", running.addr))
                .header("x-user", user)
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .expect("request");
            let resp = c.request(req).await.expect("response");
            let h = resp.headers();
            let field = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
            got.push((
                resp.status().as_u16(),
                field("ratelimit-policy"),
                field("retry-after").is_some(),
            ));
        }
        let statuses: Vec<u16> = got.iter().map(|g| g.0).collect();
        assert_eq!(
            statuses,
            [200, 200, 200, 429, 200, 429, 429],
            "lean={lean}: two per user per hour, in Redis"
        );
        // Counted once each answer is written, which can follow the client's read.
        let counted = || {
            let m = running.proxy.metrics_text();
            requests(&m, "rate_limited", None) + requests(&m, "success", None)
        };
        eventually(Duration::from_secs(5), || counted() >= 7).await;
        let m = running.proxy.metrics_text();
        assert_eq!(requests(&m, "rate_limited", None), 3, "lean={lean}:\n{m}");
        answers.push(got);
        running.shutdown(Duration::from_secs(5)).await;
    }
    assert_eq!(answers[0], answers[1], "both engines answer alike");
}
