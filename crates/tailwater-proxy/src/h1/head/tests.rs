use super::*;

fn request(raw: &str) -> (RequestHead, Vec<u8>) {
    let buf = raw.as_bytes().to_vec();
    let mut head = RequestHead::default();
    assert!(matches!(head.parse(&buf, 100), Parsed::Complete), "{raw}");
    (head, buf)
}

#[test]
fn a_plain_get_is_usual_and_has_no_body() {
    let (head, buf) = request(
        "GET /a/b?x=1 HTTP/1.1\r\nHost: Example.org:8080\r\nX-Criticality: sheddable\r\n\r\nNEXT",
    );
    assert_eq!(head.len, buf.len() - 4);
    assert_eq!(head.unusual(&buf), None);
    assert_eq!(head.body(), Ok(Framing::Empty));
    assert_eq!(head.path(&buf), b"/a/b");
    assert_eq!(head.query(&buf), b"?x=1");
    assert_eq!(head.host(&buf), Some(&b"Example.org"[..]));
    assert_eq!(
        head.fields.first(&buf, Kind::Criticality),
        Some(&b"sheddable"[..])
    );
}

#[test]
fn framing_and_connection_tokens() {
    let (head, buf) = request(
        "POST / HTTP/1.1\r\nContent-Length: 12\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n\r\n",
    );
    assert_eq!(head.body(), Ok(Framing::Length(12)));
    assert!(head.fields.close);
    let hop = head
        .fields
        .list
        .iter()
        .find(|f| &buf[f.name.clone()] == b"X-Hop");
    assert!(head.fields.named_in_connection(&buf, hop.unwrap()));
    let (head, buf) = request("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(
        (head.unusual(&buf), head.body()),
        (None, Ok(Framing::Chunked))
    );
    // Framing fields and Host are never connection options (RFC 9110 §7.6.1).
    let (head, _) = request(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\
         Connection: content-length, Transfer-Encoding, HOST\r\n\r\n",
    );
    assert!(head.fields.connection_named.is_empty());
    assert_eq!(head.body(), Ok(Framing::Length(3)));
}

#[test]
fn a_fragment_is_not_part_of_the_path_or_query() {
    let (head, buf) = request("GET /a#x?y HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!((head.path(&buf), head.query(&buf)), (&b"/a"[..], &b""[..]));
    let (head, buf) = request("GET /a?q#x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(
        (head.path(&buf), head.query(&buf)),
        (&b"/a"[..], &b"?q"[..])
    );
}

#[test]
fn ambiguous_framing_is_refused_on_this_path() {
    use crate::framing::FramingError::*;
    for (raw, why) in [
        (
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            BadLength,
        ),
        ("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", BadLength),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            UnknownCoding,
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            BadChunked,
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            LengthAndCoding,
        ),
    ] {
        let (head, buf) = request(raw);
        assert_eq!(head.unusual(&buf), None, "{raw}");
        assert_eq!(head.body(), Err(why), "{raw}");
    }
}

#[test]
fn unusual_requests_go_to_hyper() {
    for (raw, why) in [
        ("GET / HTTP/1.0\r\n\r\n", Unusual::Http10),
        (
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            Unusual::Upgrade,
        ),
        (
            "PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            Unusual::Expect,
        ),
        ("CONNECT a:1 HTTP/1.1\r\n\r\n", Unusual::Connect),
        ("GET http://a/ HTTP/1.1\r\n\r\n", Unusual::NotOriginForm),
    ] {
        let (head, buf) = request(raw);
        assert_eq!(head.unusual(&buf), Some(why), "{raw}");
    }
}

#[test]
fn partial_and_too_many_fields() {
    let mut head = RequestHead::default();
    assert!(matches!(
        head.parse(b"GET / HTTP/1.1\r\nHost: a\r\n", 100),
        Parsed::Partial
    ));
    let many: String = (0..5).map(|i| format!("X-{i}: v\r\n")).collect();
    let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
    assert!(matches!(
        head.parse(raw.as_bytes(), 4),
        Parsed::TooManyFields
    ));
    assert!(matches!(
        head.parse(b"\x16\x03\x01 tls", 100),
        Parsed::Invalid
    ));
}

/// A field name: the ones the path treats specially, or any token.
fn name() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        Just("Connection".to_owned()),
        Just("transfer-encoding".to_owned()),
        Just("Content-Length".to_owned()),
        Just("host".to_owned()),
        Just("Upgrade".to_owned()),
        "[A-Za-z-]{1,12}",
    ]
}

/// A field value: lists of tokens, numbers, or any visible text.
fn value() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        Just("chunked".to_owned()),
        Just("close, x-hop".to_owned()),
        "[0-9]{0,22}",
        "[ -~]{0,24}",
    ]
}

proptest::proptest! {
    /// Any fields, then any bytes: parsing never panics, every range it keeps lies
    /// inside the head, and what follows the head is not part of it.
    #[test]
    fn arbitrary_heads_are_parsed_safely(
        fields in proptest::collection::vec((name(), value()), 0..12),
        rest in proptest::collection::vec(0u8..=255, 0..64),
    ) {
        let mut buf = b"GET /p?q HTTP/1.1\r\n".to_vec();
        for (n, v) in &fields {
            buf.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        let head_len = buf.len();
        buf.extend_from_slice(&rest);
        let mut head = RequestHead::default();
        proptest::prop_assert!(matches!(head.parse(&buf, 100), Parsed::Complete));
        proptest::prop_assert_eq!(head.len, head_len);
        let within = |r: &Range<usize>| r.end <= head.len;
        proptest::prop_assert!(head.fields.list.iter().all(|f| within(&f.name) && within(&f.value)));
        proptest::prop_assert!(head.fields.connection_named.iter().all(within));
        proptest::prop_assert_eq!(head.path(&buf), b"/p");
        // A head the lean path forwards has one unambiguous framing.
        if let Ok(framing) = head.body() {
            let f = &head.fields;
            let codings = f.list.iter().filter(|x| x.kind == Kind::TransferEncoding).count();
            let lengths = f.list.iter().filter(|x| x.kind == Kind::ContentLength).count();
            proptest::prop_assert!(codings == 0 || lengths == 0);
            proptest::prop_assert_eq!(framing == Framing::Chunked, codings > 0);
        }
        let _ = (head.checked_host(&buf), head.host(&buf));

        let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
        raw.extend_from_slice(&buf[b"GET /p?q HTTP/1.1\r\n".len()..]);
        let mut resp = ResponseHead::default();
        proptest::prop_assert_eq!(resp.parse(&raw), Ok(true));
        proptest::prop_assert!(resp.reason.end <= resp.len && resp.len <= raw.len());
        let _ = resp.body(false);
    }
}

/// The user agent the head records is the first `User-Agent` field's value, whatever
/// the name's case, the same value a search of the fields finds.
#[test]
fn the_first_user_agent_is_recorded_while_parsing() {
    let searched = |head: &RequestHead, buf: &[u8]| {
        head.fields
            .list
            .iter()
            .find(|f| buf[f.name.clone()].eq_ignore_ascii_case(b"user-agent"))
            .map(|f| buf[f.value.clone()].to_vec())
    };
    for (raw, want) in [
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", None),
        (
            "GET / HTTP/1.1\r\nUser-Agent: curl/8.5.0\r\n\r\n",
            Some(&b"curl/8.5.0"[..]),
        ),
        // Repeated: the first one, as the hyper path's `HeaderMap::get`.
        (
            "GET / HTTP/1.1\r\nuser-agent: one\r\nX: y\r\nUSER-AGENT: two\r\n\r\n",
            Some(&b"one"[..]),
        ),
        (
            "GET / HTTP/1.1\r\nuSeR-aGeNt: odd\r\n\r\n",
            Some(&b"odd"[..]),
        ),
        // Empty, and surrounded by optional whitespace (httparse trims it).
        ("GET / HTTP/1.1\r\nUser-Agent:\r\n\r\n", Some(&b""[..])),
        (
            "GET / HTTP/1.1\r\nUser-Agent: \t x y \t\r\n\r\n",
            Some(&b"x y"[..]),
        ),
        // Names that are not it.
        (
            "GET / HTTP/1.1\r\nUser-Agents: no\r\nX-User-Agent: no\r\n\r\n",
            None,
        ),
    ] {
        let (head, buf) = request(raw);
        assert_eq!(head.fields.user_agent(&buf), want, "{raw}");
        assert_eq!(
            head.fields.user_agent(&buf).map(<[u8]>::to_vec),
            searched(&head, &buf),
            "{raw}"
        );
    }
    // A reused head forgets the previous request's.
    let mut head = RequestHead::default();
    let first = b"GET / HTTP/1.1\r\nUser-Agent: a\r\n\r\n";
    assert!(matches!(head.parse(first, 100), Parsed::Complete));
    let second = b"GET / HTTP/1.1\r\nHost: b\r\n\r\n";
    assert!(matches!(head.parse(second, 100), Parsed::Complete));
    assert_eq!(head.fields.user_agent(second), None);
    // A folded (obs-fold) User-Agent is refused by the parser: hyper answers it.
    let folded = b"GET / HTTP/1.1\r\nUser-Agent: a\r\n b\r\n\r\n";
    assert!(matches!(head.parse(folded, 100), Parsed::Invalid));
    // A User-Agent is forwarded like any plain field.
    let (head, buf) = request("GET / HTTP/1.1\r\nUser-Agent: a\r\n\r\n");
    assert_eq!(head.fields.list[0].kind, Kind::UserAgent);
    assert_eq!(head.unusual(&buf), None);
}

#[test]
fn host_is_the_hyper_paths_host_without_port() {
    // `host` cuts the port on the bytes; the hyper path decodes first, then cuts.
    for raw in [
        "example.org",
        "Example.org:8080",
        "127.0.0.1:19181",
        "[::1]",
        "[::1]:8080",
        "[2001:db8::7]:443",
        "a-b.c_d~e:1",
    ] {
        let (head, buf) = request(&format!("GET / HTTP/1.1\r\nHost: {raw}\r\n\r\n"));
        let want = crate::target::host_without_port(raw).as_bytes();
        assert_eq!(head.checked_host(&buf), Ok(want), "{raw}");
        assert_eq!(head.host(&buf), Some(want), "{raw}");
    }
}

/// The lean path checks the `Host` the parser found, on its bytes: it decides as
/// `target::request_host` (the hyper path's check, over every `Host` field) does, for
/// missing, repeated, invalid and valid hosts, and routes on the same name.
#[test]
fn checked_host_decides_as_request_host() {
    let cases: &[&[&str]] = &[
        &[],
        &["a.example"],
        &["A.example:8080"],
        &["[::1]:80"],
        &["a", "a"],
        &["a", "b", "c"],
        &[""],
        &["a b"],
        &["a/b"],
        &["a:80:80"],
        &["a:http"],
        &["[::1"],
        &["a@b"],
        &["x:123456"],
        &["caf\u{e9}"],
        &["bad/", "a"],
    ];
    for hosts in cases {
        let mut raw = String::from("GET / HTTP/1.1\r\nX: 1\r\n");
        for h in *hosts {
            raw.push_str(&format!("Host: {h}\r\nY: 2\r\n"));
        }
        raw.push_str("\r\n");
        let (head, buf) = request(&raw);
        let want = crate::target::request_host(hosts.iter().map(|h| h.as_bytes()), None, true)
            .map(|h| h.map(crate::target::host_without_port).map(str::as_bytes));
        assert_eq!(head.checked_host(&buf).map(Some), want, "{hosts:?}");
    }
    // A reused head forgets the previous request's `Host`.
    let mut head = RequestHead::default();
    let first = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert!(matches!(head.parse(first, 100), Parsed::Complete));
    let second = b"GET / HTTP/1.1\r\nX: b\r\n\r\n";
    assert!(matches!(head.parse(second, 100), Parsed::Complete));
    assert_eq!(head.checked_host(second), Err(TargetError::MissingHost));
    assert_eq!(head.host(second), None);
}

#[test]
fn response_framing() {
    let parse = |raw: &str| {
        let mut head = ResponseHead::default();
        assert_eq!(head.parse(raw.as_bytes()), Ok(true), "{raw}");
        head
    };
    let r = parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(
        (r.status, r.body(false), r.body(true)),
        (200, Ok(Framing::Length(5)), Ok(Framing::Empty))
    );
    let r = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(r.body(false), Ok(Framing::Chunked));
    let r = parse("HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(r.body(false), Ok(Framing::Empty));
    let r = parse("HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(r.body(false), Ok(Framing::Close));
    let r = parse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
    assert!(r.fields.close, "HTTP/1.0 without keep-alive closes");
    let r = parse("HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n");
    assert!(r.body(false).is_err());
    let r = parse("HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\n");
    assert_eq!(r.body(false), Ok(Framing::Length(2)));
}

/// Every name the lean path treats apart is recognised in any case, and nothing else is
/// (a dispatch on length and first letter, tried in session 17, cost more instructions).
#[test]
fn field_kinds_are_found_in_any_case_and_only_for_their_names() {
    let named = [
        ("te", Kind::HopByHop),
        ("host", Kind::Host),
        ("expect", Kind::Expect),
        ("upgrade", Kind::Upgrade),
        ("trailer", Kind::HopByHop),
        ("forwarded", Kind::Forwarded),
        ("connection", Kind::Connection),
        ("keep-alive", Kind::HopByHop),
        ("user-agent", Kind::UserAgent),
        ("grpc-status", Kind::GrpcStatus),
        ("content-type", Kind::ContentType),
        ("grpc-timeout", Kind::GrpcTimeout),
        ("x-criticality", Kind::Criticality),
        ("content-length", Kind::ContentLength),
        ("x-forwarded-for", Kind::XForwardedFor),
        ("proxy-connection", Kind::HopByHop),
        ("transfer-encoding", Kind::TransferEncoding),
        ("proxy-authenticate", Kind::HopByHop),
        ("proxy-authorization", Kind::HopByHop),
    ];
    for (name, kind) in named {
        assert_eq!(Kind::of(name.as_bytes()), kind, "{name}");
        assert_eq!(
            Kind::of(name.to_ascii_uppercase().as_bytes()),
            kind,
            "{name}"
        );
        // One byte changed (the first, the last) or one more: a plain field.
        let mut other = name.as_bytes().to_vec();
        other[0] ^= 0x40;
        assert_eq!(Kind::of(&other), Kind::Plain, "{other:?}");
        let mut other = name.as_bytes().to_vec();
        *other.last_mut().unwrap() = b'0';
        assert_eq!(Kind::of(&other), Kind::Plain, "{other:?}");
        assert_eq!(Kind::of(format!("{name}s").as_bytes()), Kind::Plain);
    }
    for plain in [
        "",
        "x",
        "date",
        "accept",
        "Host2",
        "@ost",
        "hos",
        "user-agents",
    ] {
        assert_eq!(Kind::of(plain.as_bytes()), Kind::Plain, "{plain}");
    }
}
