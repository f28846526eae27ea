//! Raw HTTP/1.1 on both sides of the proxy, byte for byte: a recording backend that parses
//! every byte it receives strictly (and says which bytes it could not place in a request),
//! and a strict response reader for clients.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One request as the backend parsed it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Index of the listener that received it (one listener per route in the tests).
    pub listener: usize,
    pub method: String,
    pub target: String,
    /// Field names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was complete (not cut by the connection closing).
    pub complete: bool,
    /// Framing the proxy must never forward (both lengths and codings, a chunk extension,
    /// a trailer line without a colon, a chunk size of 2^63 or more, duplicate `Host`).
    pub problems: Vec<String>,
}

impl Seen {
    /// The first value of field `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the backend answers to a request: the bytes, and whether to close afterwards.
pub type Script = Arc<dyn Fn(&Seen) -> (Vec<u8>, bool) + Send + Sync>;

/// A recording backend with one listener per route on 127.0.0.1:0.
pub struct Recorder {
    pub addrs: Vec<SocketAddr>,
    /// Every request, in the order parsed.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Bytes that were not a request (what the backend could not parse), described.
    pub garbage: Arc<Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Recorder {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn garbage(&self) -> Vec<String> {
        self.garbage.lock().expect("lock").clone()
    }
}

/// Answers `200` with the request's target in `x-target` and as the body.
pub fn echo_target() -> Script {
    Arc::new(|seen: &Seen| {
        let body = seen.target.as_bytes();
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nx-target: {}\r\ncontent-length: {}\r\n\r\n",
            seen.target,
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        (out, false)
    })
}

pub async fn recorder(listeners: usize, script: Script) -> Recorder {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let garbage = Arc::new(Mutex::new(Vec::new()));
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for index in 0..listeners {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        addrs.push(listener.local_addr().expect("addr"));
        let (seen, garbage, script) =
            (Arc::clone(&seen), Arc::clone(&garbage), Arc::clone(&script));
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                let (seen, garbage, script) =
                    (Arc::clone(&seen), Arc::clone(&garbage), Arc::clone(&script));
                tokio::spawn(serve_conn(index, s, seen, garbage, script));
            }
        }));
    }
    Recorder {
        addrs,
        seen,
        garbage,
        tasks,
    }
}

async fn serve_conn(
    listener: usize,
    mut s: TcpStream,
    seen: Arc<Mutex<Vec<Seen>>>,
    garbage: Arc<Mutex<Vec<String>>>,
    script: Script,
) {
    let mut buf = Vec::new();
    let mut eof = false;
    loop {
        match parse_request(&buf, eof) {
            Parse::Need if eof => return,
            Parse::Need => {
                let mut chunk = [0u8; 16 * 1024];
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => eof = true,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            Parse::Garbage(why) => {
                let shown = String::from_utf8_lossy(&buf[..buf.len().min(200)]).into_owned();
                garbage
                    .lock()
                    .expect("lock")
                    .push(format!("{why}: {shown:?}"));
                return;
            }
            Parse::Request(mut req, used) => {
                req.listener = listener;
                buf.drain(..used);
                let complete = req.complete;
                let (reply, close) = script(&req);
                seen.lock().expect("lock").push(req);
                if !complete || s.write_all(&reply).await.is_err() || close {
                    return;
                }
            }
        }
    }
}

enum Parse {
    Need,
    Garbage(String),
    Request(Seen, usize),
}

/// A `tchar` of RFC 9110 §5.6.2.
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses one request from the start of `buf` (`eof`: no more bytes will come).
fn parse_request(buf: &[u8], eof: bool) -> Parse {
    if buf.is_empty() {
        return Parse::Need;
    }
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if eof {
            return Parse::Garbage("bytes that are not a request head".into());
        }
        if buf.len() > 64 * 1024 {
            return Parse::Garbage("oversized head".into());
        }
        return Parse::Need;
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let parts: Vec<&str> = line.split(' ').collect();
    if parts.len() != 3
        || parts[2] != "HTTP/1.1"
        || parts[0].is_empty()
        || !parts[0].bytes().all(tchar)
    {
        return Parse::Garbage(format!("bad request line {line:?}"));
    }
    let mut req = Seen {
        listener: 0,
        method: parts[0].to_owned(),
        target: parts[1].to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
        complete: true,
        problems: Vec::new(),
    };
    for l in lines {
        let Some((n, v)) = l.split_once(':') else {
            return Parse::Garbage(format!("field line without a colon {l:?}"));
        };
        if n.is_empty() || !n.bytes().all(tchar) {
            return Parse::Garbage(format!("bad field name {l:?}"));
        }
        req.headers
            .push((n.to_ascii_lowercase(), v.trim().to_owned()));
    }
    let count = |name: &str| req.headers.iter().filter(|(n, _)| n == name).count();
    let (cl, te, hosts) = (
        count("content-length"),
        count("transfer-encoding"),
        count("host"),
    );
    if hosts != 1 {
        req.problems.push(format!("{hosts} Host fields"));
    }
    if cl > 0 && te > 0 {
        req.problems
            .push("Content-Length with Transfer-Encoding".into());
    }
    let at = end + 4;
    if te > 0 {
        if te > 1
            || req
                .header("transfer-encoding")
                .is_none_or(|v| v != "chunked")
        {
            return Parse::Garbage("a coding other than one chunked".into());
        }
        return match dechunk(&buf[at..], &mut req) {
            Ok(Some(used)) => Parse::Request(req, at + used),
            Ok(None) if eof => {
                req.complete = false;
                Parse::Request(req, buf.len())
            }
            Ok(None) => Parse::Need,
            Err(why) => Parse::Garbage(why),
        };
    }
    let len = match req.header("content-length") {
        None => 0,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if cl == 1 && v.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Parse::Garbage(format!("bad Content-Length {v:?} ({cl} fields)")),
        },
    };
    if buf.len() < at + len {
        if !eof {
            return Parse::Need;
        }
        req.body = buf[at..].to_vec();
        req.complete = false;
        return Parse::Request(req, buf.len());
    }
    req.body = buf[at..at + len].to_vec();
    Parse::Request(req, at + len)
}

/// Decodes a chunked body strictly: `Ok(Some(used))` when complete, `Ok(None)` when more
/// bytes are needed.
fn dechunk(buf: &[u8], req: &mut Seen) -> Result<Option<usize>, String> {
    let mut at = 0;
    req.body.clear();
    loop {
        let Some(eol) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = &buf[at..at + eol];
        let size_text = String::from_utf8_lossy(line).into_owned();
        if line.contains(&b';') || line.contains(&b' ') {
            req.problems.push(format!("chunk extension {size_text:?}"));
        }
        let digits = size_text.split([';', ' ']).next().unwrap_or("");
        let size =
            u64::from_str_radix(digits, 16).map_err(|_| format!("bad chunk size {size_text:?}"))?;
        if size >= 1 << 63 {
            req.problems.push(format!("chunk size {size_text}"));
        }
        at += eol + 2;
        if size == 0 {
            // Trailer section up to the empty line.
            loop {
                let Some(eol) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                let line = &buf[at..at + eol];
                at += eol + 2;
                if line.is_empty() {
                    return Ok(Some(at));
                }
                if !line.contains(&b':') {
                    req.problems.push("trailer line without a colon".into());
                }
            }
        }
        let size = usize::try_from(size).map_err(|_| "chunk too large".to_owned())?;
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        req.body.extend_from_slice(&buf[at..at + size]);
        at += size;
        if &buf[at..at + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        at += 2;
    }
}

/// One response as a client parsed it.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why reading a response failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The connection closed before any byte of a response.
    Closed,
    /// No complete response within the deadline.
    Timeout,
    /// Bytes that are not a well-framed response (or a truncated one).
    Invalid(String),
}

/// Reads one response to a request that was (`head_request`) or was not a HEAD, strictly:
/// framed by `Content-Length`, by `chunked`, by its status, or by `Connection: close` and
/// the close. `buf` keeps what follows.
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    head_request: bool,
    deadline: Duration,
) -> Result<Resp, ReadError> {
    let end_at = tokio::time::Instant::now() + deadline;
    let mut eof = false;
    loop {
        match parse_response(buf, head_request, eof) {
            Ok(Some((resp, used))) => {
                buf.drain(..used);
                return Ok(resp);
            }
            Ok(None) if eof && buf.is_empty() => return Err(ReadError::Closed),
            Ok(None) if eof => {
                return Err(ReadError::Invalid(format!(
                    "truncated: {:?}",
                    String::from_utf8_lossy(&buf[..buf.len().min(200)])
                )));
            }
            Ok(None) => {}
            Err(why) => return Err(ReadError::Invalid(why)),
        }
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout_at(end_at, s.read(&mut chunk)).await {
            Err(_) => return Err(ReadError::Timeout),
            Ok(Ok(0) | Err(_)) => eof = true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn parse_response(
    buf: &[u8],
    head_request: bool,
    eof: bool,
) -> Result<Option<(Resp, usize)>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let status = line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut headers = Vec::new();
    for l in lines {
        let (n, v) = l
            .split_once(':')
            .ok_or_else(|| format!("field line without a colon {l:?}"))?;
        headers.push((n.to_ascii_lowercase(), v.trim().to_owned()));
    }
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    let at = end + 4;
    let count = |name: &str| resp.headers.iter().filter(|(n, _)| n == name).count();
    let (cl, te) = (count("content-length"), count("transfer-encoding"));
    if cl > 1 || (cl > 0 && te > 0) || te > 1 {
        return Err(format!("ambiguous response framing: {head:?}"));
    }
    if head_request || status < 200 || status == 204 || status == 304 {
        return Ok(Some((resp, at)));
    }
    if te == 1 {
        if resp.header("transfer-encoding") != Some("chunked") {
            return Err(format!("response coding: {head:?}"));
        }
        let mut scratch = Seen {
            listener: 0,
            method: String::new(),
            target: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
            complete: true,
            problems: Vec::new(),
        };
        return match dechunk(&buf[at..], &mut scratch)? {
            Some(used) if scratch.problems.is_empty() => {
                resp.body = scratch.body;
                Ok(Some((resp, at + used)))
            }
            Some(_) => Err(format!("response chunking: {:?}", scratch.problems)),
            None => Ok(None),
        };
    }
    if let Some(v) = resp.header("content-length") {
        let n: usize = v.parse().map_err(|_| format!("bad length {v:?}"))?;
        if buf.len() < at + n {
            return Ok(None);
        }
        resp.body = buf[at..at + n].to_vec();
        return Ok(Some((resp, at + n)));
    }
    // Delimited by the close: only allowed when the response says the connection ends.
    if !resp
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    {
        return Err(format!(
            "unframed response on a persistent connection: {head:?}"
        ));
    }
    if !eof {
        return Ok(None);
    }
    resp.body = buf[at..].to_vec();
    Ok(Some((resp, buf.len())))
}
