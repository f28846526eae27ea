//! Logging for the long-running commands (the proxy): human text by default, JSON lines with
//! `--log-format json` for log shippers.
//!
//! Text carries ANSI colour codes only when stderr is a terminal, so a log redirected to a
//! file or collected by systemd/journald or a container runtime stays plain text. The level
//! filter comes from `RUST_LOG` (default `info`).

use std::io::IsTerminal as _;

use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One human-readable line per event; coloured only on a terminal.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`),
    /// and the current `span`/`spans`.
    Json,
}

fn filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// Builds the subscriber writing to `writer`; `terminal` says whether it is a terminal (the
/// only case with ANSI colours).
pub(crate) fn subscriber<W>(
    format: LogFormat,
    writer: W,
    terminal: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(terminal).finish()),
        LogFormat::Json => Box::new(builder.json().with_ansi(false).finish()),
    }
}

/// Installs the global subscriber on stderr (once; later calls are no-ops).
pub(crate) fn init(format: LogFormat) {
    let terminal = std::io::stderr().is_terminal();
    let _ = tracing::subscriber::set_global_default(subscriber(format, std::io::stderr, terminal));
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex, PoisonError};

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn log(format: LogFormat, terminal: bool) -> String {
        let cap = Capture::default();
        tracing::subscriber::with_default(subscriber(format, cap.clone(), terminal), || {
            tracing::warn!(route = "api", limit = 12, "limit lowered");
        });
        let bytes = cap.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
        String::from_utf8(bytes).expect("utf-8 logs")
    }

    #[test]
    fn text_off_a_terminal_has_no_ansi_codes() {
        let plain = log(LogFormat::Text, false);
        assert!(
            plain.contains("WARN") && plain.contains("limit lowered"),
            "{plain}"
        );
        assert!(!plain.contains('\u{1b}'), "escape codes in {plain:?}");
        // On a terminal the same line is coloured, so the flag is what removes them.
        assert!(log(LogFormat::Text, true).contains('\u{1b}'));
    }

    #[test]
    fn json_is_one_object_per_line() {
        let out = log(LogFormat::Json, true);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON line");
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["fields"]["message"], "limit lowered");
        assert_eq!(v["fields"]["route"], "api");
        assert_eq!(v["fields"]["limit"], 12);
        assert!(!out.contains('\u{1b}'));
    }
}
