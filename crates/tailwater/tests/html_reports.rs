//! Every HTML report the `tailwater` command writes (`load --report`, `drill --report`),
//! opened in a real headless browser (Debian's `chromium`): it must load with no console
//! error, no uncaught exception and no resource that fails to load.
//!
//! How: a copy of each report gets a first script that records `console.error`, uncaught
//! errors, rejected promises and failed resources (the `error` event, captured) into an
//! element; chromium runs the page (`--virtual-time-budget` lets its scripts and timers
//! finish) and prints the final DOM (`--dump-dom`), which the test reads. Chromium's own
//! console log (`--enable-logging=stderr`) is checked for `Uncaught` as well.
//!
//! Without chromium the test says so on stderr and passes, unless
//! `TAILWATER_REQUIRE_CHROMIUM=1` (CI), where it fails.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The injected recorder: the first script of the page.
const CAPTURE: &str = r#"<script>
(function () {
  var seen = [];
  function note(kind, text) {
    seen.push(kind + ": " + text);
    var el = document.getElementById("tw-console-errors");
    if (el) { el.textContent = seen.join("\n"); }
  }
  window.__twNote = note;
  var error = console.error;
  console.error = function () {
    note("console.error", Array.prototype.map.call(arguments, String).join(" "));
    return error.apply(console, arguments);
  };
  window.addEventListener("error", function (e) {
    if (e.target && e.target !== window && (e.target.src || e.target.href)) {
      note("resource", e.target.src || e.target.href);
    } else {
      note("uncaught", e.message);
    }
  }, true);
  window.addEventListener("unhandledrejection", function (e) {
    note("unhandledrejection", String(e.reason));
  });
  document.addEventListener("DOMContentLoaded", function () {
    var el = document.createElement("pre");
    el.id = "tw-console-errors";
    el.textContent = seen.join("\n");
    document.body.appendChild(el);
  });
})();
</script>"#;

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Chromium, or `None` after saying why the check is skipped (a failure when
/// `TAILWATER_REQUIRE_CHROMIUM=1`).
fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        let required = std::env::var("TAILWATER_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{test}: chromium not found and TAILWATER_REQUIRE_CHROMIUM=1 (apt-get install chromium)"
        );
        eprintln!(
            "SKIPPED {test}: chromium is not installed (apt-get install chromium); the HTML \
             reports were not checked in a browser"
        );
    }
    found
}

/// The console errors of `report` loaded in `browser`: what the injected recorder saw and
/// chromium's own `Uncaught` lines.
fn console_errors(browser: &Path, report: &Path, scratch: &Path) -> Vec<String> {
    let html = std::fs::read_to_string(report).expect("report");
    let at = html
        .find("<head>")
        .map(|i| i + "<head>".len())
        .expect("the report has a <head>");
    let mut checked = html.clone();
    checked.insert_str(at, CAPTURE);
    let page = scratch.join(format!(
        "checked-{}",
        report
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("report.html")
    ));
    std::fs::write(&page, checked).expect("write page");
    let profile = scratch.join("profile");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {:?}", out.status);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("id=\"tw-console-errors\""),
        "the page did not run its scripts: {}",
        &dom[..dom.len().min(500)]
    );
    let mut errors: Vec<String> = dom
        .split("<pre id=\"tw-console-errors\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let log = String::from_utf8_lossy(&out.stderr);
    errors.extend(
        log.lines()
            .filter(|l| l.contains(":CONSOLE") && l.contains("Uncaught"))
            .map(str::to_owned),
    );
    errors
}

/// A loopback HTTP/1.1 server answering `200 ok` to everything, on a thread per connection.
fn ok_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(reply).is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    url
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tw-html-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn tailwater(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_tailwater"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tailwater");
    assert_eq!(
        out.status.code(),
        Some(0),
        "tailwater {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_recorder_sees_console_errors() {
    let Some(browser) = chromium_or_skip("the_recorder_sees_console_errors") else {
        return;
    };
    let dir = scratch("broken");
    let broken = dir.join("broken.html");
    std::fs::write(
        &broken,
        "<!doctype html><html><head><title>x</title></head><body>\
         <script>console.error('boom'); missingFunction();</script></body></html>",
    )
    .expect("write");
    let errors = console_errors(&browser, &broken, &dir);
    assert!(errors.iter().any(|e| e.contains("boom")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("missingFunction")),
        "{errors:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_load_report_has_no_console_errors() {
    let Some(browser) = chromium_or_skip("the_load_report_has_no_console_errors") else {
        return;
    };
    let dir = scratch("load");
    let report = dir.join("load.html");
    let url = ok_server();
    tailwater(&[
        "load",
        &url,
        "-R",
        "200",
        "-d",
        "2s",
        "-q",
        "--report",
        report.to_str().expect("utf-8"),
    ]);
    let errors = console_errors(&browser, &report, &dir);
    assert!(errors.is_empty(), "load report: {errors:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_drill_report_has_no_console_errors() {
    let Some(browser) = chromium_or_skip("the_drill_report_has_no_console_errors") else {
        return;
    };
    let dir = scratch("drill");
    let report = dir.join("drill.html");
    tailwater(&[
        "drill",
        "--phase",
        "500ms",
        "--multipliers",
        "0.5,2",
        "--report",
        report.to_str().expect("utf-8"),
    ]);
    let errors = console_errors(&browser, &report, &dir);
    assert!(errors.is_empty(), "drill report: {errors:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
