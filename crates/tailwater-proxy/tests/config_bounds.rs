//! Every configuration value is bounded, and cross-entry mistakes are refused, with a
//! typed error naming the field and its file:line (issue 11, item 7).

use std::path::Path;

use tailwater_proxy::Config;

const ROUTE: &str = "[[route]]\nupstream = \"http://127.0.0.1:9\"\n";

/// (what, TOML, field, line)
fn rows() -> Vec<(&'static str, String, &'static str, usize)> {
    vec![
        (
            "3.2 GB of header slots",
            format!("[server]\nmax_headers = 100000000\n{ROUTE}"),
            "server.max_headers",
            2,
        ),
        (
            "connection cap",
            format!("[server]\nmax_connections = 100000000\n{ROUTE}"),
            "server.max_connections",
            2,
        ),
        (
            "head buffer",
            format!("[server]\nmax_header_bytes = 1073741824\n{ROUTE}"),
            "server.max_header_bytes",
            2,
        ),
        (
            "body cap",
            format!("[server]\nmax_body_bytes = 18446744073709551615\n{ROUTE}"),
            "server.max_body_bytes",
            2,
        ),
        (
            "a timeout that is none",
            format!("[server]\nsend_timeout = \"100000h\"\n{ROUTE}"),
            "server.send_timeout",
            2,
        ),
        (
            "upstream timeout",
            format!("[upstream]\nrequest_timeout = \"9999h\"\n{ROUTE}"),
            "upstream.request_timeout",
            2,
        ),
        (
            "idle pool",
            format!("[upstream]\npool_max_idle_per_host = 1000000000\n{ROUTE}"),
            "upstream.pool_max_idle_per_host",
            2,
        ),
        (
            "h2 header list",
            format!("[server.http2]\nmax_header_list_size = 4000000000\n{ROUTE}"),
            "server.http2.max_header_list_size",
            2,
        ),
        (
            "queue bound",
            format!("{ROUTE}[route.queue]\ncapacity = 1000000000\n"),
            "route[0].queue.capacity",
            4,
        ),
        (
            "limit ceiling",
            format!("{ROUTE}[route.limit]\nalgorithm = \"aimd\"\nmax_limit = 1000000000\n"),
            "route[0].limit.max_limit",
            5,
        ),
        (
            "queue wait",
            format!("{ROUTE}[route.queue]\nmax_wait = \"1000h\"\n"),
            "route[0].queue.max_wait",
            4,
        ),
        (
            "duplicate prefixes",
            "[[route]]\npath_prefix = \"/api\"\nupstream = \"http://127.0.0.1:9\"\n[[route]]\nname = \"b\"\npath_prefix = \"/api\"\nupstream = \"http://127.0.0.1:10\"\n"
                .to_owned(),
            "route[1].path_prefix",
            6,
        ),
        (
            "duplicate rate-limit names",
            format!(
                "{ROUTE}[[route.rate_limit]]\nname = \"r\"\nrate = 5\n[[route.rate_limit]]\nname = \"r\"\nrate = 9\n"
            ),
            "route[0].rate_limit[1].name",
            7,
        ),
        (
            "a gigabyte of access-log queue",
            format!("{ROUTE}[access_log]\npath = \"-\"\nbuffer_bytes = 1073741824\n"),
            "access_log.buffer_bytes",
            5,
        ),
        (
            "an access-log queue too small for one line",
            format!("{ROUTE}[access_log]\npath = \"-\"\nbuffer_bytes = 4096\n"),
            "access_log.buffer_bytes",
            5,
        ),
        (
            "invalid route host",
            "[[route]]\nhost = \"a b/c\"\nupstream = \"http://127.0.0.1:9\"\n".to_owned(),
            "route[0].host",
            2,
        ),
    ]
}

#[test]
fn out_of_range_and_conflicting_values_are_refused_with_field_and_line() {
    for (what, src, field, line) in rows() {
        let err = match Config::from_toml(&src, Some(Path::new("proxy.toml"))) {
            Ok(_) => panic!("{what}: accepted\n{src}"),
            Err(e) => e,
        };
        assert_eq!(err.field(), field, "{what}: {err}");
        assert_eq!(err.line(), Some(line), "{what}: {err}");
        assert!(
            err.to_string().starts_with(&format!("proxy.toml:{line}:")),
            "{what}: {err}"
        );
    }
}

#[test]
fn the_defaults_and_wide_real_values_are_accepted() {
    let src = format!(
        "[server]\nmax_headers = 1024\nmax_connections = 100000\nsend_timeout = \"1h\"\nmax_body_bytes = 10737418240\n{ROUTE}[route.queue]\ncapacity = 100000\n[[route]]\nname = \"h\"\nhost = \"api.example.com\"\nupstream = \"http://127.0.0.1:9\"\n"
    );
    Config::from_toml(&src, None).expect("valid");
    Config::from_toml(ROUTE, None).expect("defaults valid");
}

/// A required key left out is named with its table's path, at the table's line (the key
/// has none), not reported as the table's own error.
#[test]
fn a_missing_required_key_is_named_at_its_table() {
    for (src, field, line) in [
        (
            format!("{ROUTE}[[route]]\nname = \"b\"\npath_prefix = \"/b\"\n"),
            "route[1].upstream",
            3,
        ),
        (
            format!("[server]\nworkers = 1\n{ROUTE}[[route.rate_limit]]\nburst = 5\n"),
            "route[0].rate_limit[0].rate",
            5,
        ),
    ] {
        let err = Config::from_toml(&src, Some(Path::new("proxy.toml"))).expect_err("refused");
        assert_eq!(err.field(), field, "{err}");
        assert_eq!(err.line(), Some(line), "{err}");
        assert!(err.message().contains("required"), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("proxy.toml:{line}:1: `{field}`:")),
            "{err}"
        );
    }
}
