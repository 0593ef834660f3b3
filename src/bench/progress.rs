//! The progress bar `ricochet bench` draws on stderr while it runs.
//!
//! Client threads add to two relaxed counters once per event-loop turn (not
//! per message, so the bar costs nothing measurable); the main thread redraws
//! ten times a second. indicatif draws nothing when stderr is not a terminal,
//! and `--json` hides the bar outright, so scripted runs print only the report.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Live counters shared by the client threads, and the bar that shows them.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    measuring: OnceLock<Instant>,
    /// Echoes (or handshakes, in connect mode) completed so far.
    messages: AtomicU64,
    /// Connections that finished their opening handshake.
    connected: AtomicU64,
}

impl Progress {
    /// A bar over `duration`; hidden when `visible` is false.
    pub fn new(duration: Duration, visible: bool) -> Self {
        let target = if visible { ProgressDrawTarget::stderr_with_hz(10) } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(Some(duration.as_millis().max(1) as u64), target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {elapsed:>3}/{duration_s} {msg}")
                .expect("static template")
                .with_key("duration_s", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}s", s.len().unwrap_or(0).div_ceil(1000));
                })
                .progress_chars("=> "),
        );
        Progress {
            bar,
            started: Instant::now(),
            measuring: OnceLock::new(),
            messages: AtomicU64::new(0),
            connected: AtomicU64::new(0),
        }
    }

    /// Adds `n` completed messages.
    pub fn add_messages(&self, n: u64) {
        if n > 0 {
            self.messages.fetch_add(n, Relaxed);
        }
    }

    /// Counts one connection through its handshake.
    pub fn add_connected(&self) {
        self.connected.fetch_add(1, Relaxed);
    }

    /// Marks the start of the measured period (the first thread to get there wins).
    pub fn start_measuring(&self, at: Instant) {
        let _ = self.measuring.set(at);
    }

    /// Redraws from the counters.
    pub fn tick(&self) {
        let messages = self.messages.load(Relaxed);
        let connected = self.connected.load(Relaxed);
        match self.measuring.get() {
            Some(t) => {
                let secs = t.elapsed().as_secs_f64().max(1e-3);
                self.bar.set_position(t.elapsed().as_millis() as u64);
                self.bar
                    .set_message(format!("{connected} connected, {messages} done, {:.0}/s", messages as f64 / secs));
            }
            None => self
                .bar
                .set_message(format!("connecting: {connected} up after {:.1}s", self.started.elapsed().as_secs_f64())),
        }
    }

    /// Removes the bar before the report is printed.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
