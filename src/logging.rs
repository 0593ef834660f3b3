//! Logging set-up: `tracing` to standard error, where a failed write is
//! dropped instead of panicking.
//!
//! `tracing-subscriber` reports a failed write with `eprintln!`, which panics
//! when standard error is a pipe whose reader has gone (`ricochet serve 2>&1 |
//! head -3`). A panic in the signal thread would leave the server unable to
//! shut down, so every write to standard error goes through [`LossyStderr`].

use std::io::{self, Write};

/// Standard error that reports every write as done: a log line that cannot
/// be written is lost, never an error or a panic.
#[derive(Clone, Copy, Debug, Default)]
pub struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log shippers: `timestamp`, `level`,
    /// `target`, `message` and the event's fields at the top level.
    Json,
}

/// Installs the global subscriber: level from `RUST_LOG` (`info` by
/// default); as text, colours only when standard error is a terminal and
/// `NO_COLOR` is unset.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| LossyStderr);
    match format {
        LogFormat::Text => {
            let colour = io::IsTerminal::is_terminal(&io::stderr()) && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).init();
        }
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}

/// Prints `ricochet: MESSAGE` on standard error, ignoring a failed write (a
/// closed pipe must not turn a clean error exit into a panic).
pub fn say_error(message: impl std::fmt::Display) {
    let _ = writeln!(LossyStderr, "ricochet: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_always_reports_every_byte_taken() {
        assert_eq!(LossyStderr.write(b"").unwrap(), 0);
        assert_eq!(LossyStderr.write(b"x\n").unwrap(), 2);
        LossyStderr.flush().unwrap();
    }
}
