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

/// Log lines written while a start is under way ([`hold`]): they go out when
/// it succeeds ([`release`]) and are dropped when it fails ([`discard`]), so
/// a failed start prints exactly one line, its error. `None`: not holding.
static HELD: std::sync::Mutex<Option<Vec<u8>>> = std::sync::Mutex::new(None);

/// At most this much is held; past it, lines go out as they come.
const HELD_MAX: usize = 1 << 20;

/// Holds log lines from now on (see [`HELD`]).
pub fn hold() {
    *HELD.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
}

/// Writes the held lines and stops holding.
pub fn release() {
    let held = HELD.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(bytes) = held {
        let _ = io::stderr().write_all(&bytes);
    }
}

/// Drops the held lines and stops holding.
pub fn discard() {
    HELD.lock().unwrap_or_else(|e| e.into_inner()).take();
}

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        {
            let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(h) = held.as_mut().filter(|h| h.len() + buf.len() <= HELD_MAX) {
                h.extend_from_slice(buf);
                return Ok(buf.len());
            }
        }
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
    // The NATS client's own info lines repeat the bridge's one line per
    // change of state (src/cluster/bridge.rs); its errors still show.
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,async_nats=error".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| LossyStderr);
    use tracing_subscriber::layer::SubscriberExt;
    let installed = match format {
        LogFormat::Text => {
            let colour = io::IsTerminal::is_terminal(&io::stderr()) && std::env::var_os("NO_COLOR").is_none();
            tracing::subscriber::set_global_default(builder.with_ansi(colour).finish().with(nats_repeats()))
        }
        LogFormat::Json => tracing::subscriber::set_global_default(
            builder.json().flatten_event(true).with_current_span(false).finish().with(nats_repeats()),
        ),
    };
    if installed.is_ok() && log::set_logger(&LogRecords).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}

/// How often one line of the NATS client's may repeat.
const NATS_REPEAT: std::time::Duration = std::time::Duration::from_secs(60);

/// The NATS client (`--cluster`) logs a failed connection attempt (an
/// authorization violation, say) at every retry, every 2 s for as long as
/// it fails: each of its log lines (by callsite) is let through at most
/// once a minute. The bridge's own lines say when the state changes.
/// (Judged per event: a callsite's interest is cached, so a filter on
/// metadata alone would be asked only once.)
struct NatsRepeats {
    seen: std::sync::Mutex<Vec<(tracing::callsite::Identifier, std::time::Instant)>>,
}

fn nats_repeats() -> NatsRepeats {
    NatsRepeats { seen: std::sync::Mutex::new(Vec::new()) }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for NatsRepeats {
    fn event_enabled(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) -> bool {
        let meta = event.metadata();
        if !meta.target().starts_with("async_nats") {
            return true;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        match seen.iter_mut().find(|(id, _)| *id == meta.callsite()) {
            Some((_, at)) if now.duration_since(*at) < NATS_REPEAT => false,
            Some((_, at)) => {
                *at = now;
                true
            }
            // One entry per callsite of the client's: a few dozen at most.
            None => {
                seen.push((meta.callsite(), now));
                true
            }
        }
    }
}

/// Forwards records of crates that log through `log` (rustls, mio) to
/// `tracing`, rustls' warnings at debug (and its debug lines at trace): its warnings are about
/// what a client sent (an IP address as SNI, a renegotiation attempt;
/// testssl alone drew 448 of them), not the operator's business, and
/// Ricochet counts and logs (at debug) every TLS failure itself.
struct LogRecords;

impl log::Log for LogRecords {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, r: &log::Record<'_>) {
        let target = r.target();
        let level = match r.level() {
            _ if !target.starts_with("rustls") => r.level(),
            log::Level::Error | log::Level::Warn | log::Level::Info => log::Level::Debug,
            // Its own debug lines dump every handshake message.
            log::Level::Debug | log::Level::Trace => log::Level::Trace,
        };
        // tracing's macros need a level known at compile time.
        match level {
            log::Level::Error => tracing::error!(target: "log", from = target, "{}", r.args()),
            log::Level::Warn => tracing::warn!(target: "log", from = target, "{}", r.args()),
            log::Level::Info => tracing::info!(target: "log", from = target, "{}", r.args()),
            log::Level::Debug => tracing::debug!(target: "log", from = target, "{}", r.args()),
            log::Level::Trace => tracing::trace!(target: "log", from = target, "{}", r.args()),
        }
    }

    fn flush(&self) {}
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
