//! The threads that keep systemd informed: `STATUS=` lines and watchdog pings.

use crate::server::notify::Notifier;
use crate::server::shared::Shared;
use std::sync::Arc;

/// How often the open connections go to systemd as `STATUS=`.
const STATUS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Under `Type=notify`: a thread that tells systemd the open connections
/// every [`STATUS_EVERY`] (`systemctl status` shows it) until shutdown.
pub(super) fn report_status(notifier: Arc<Notifier>, shared: Arc<Shared>, addr: String) {
    let _ = std::thread::Builder::new().name("status".into()).spawn(move || {
        while !shared.shutdown_requested() {
            std::thread::sleep(STATUS_EVERY);
            if shared.shutdown_requested() {
                break;
            }
            notifier.notify(&format!("STATUS=serving on {addr}: {} connections open", shared.active()));
        }
    });
}

/// systemd's watchdog interval (`WatchdogSec=` sets `$WATCHDOG_USEC`, and
/// `$WATCHDOG_PID` names the process meant), if it is for this process.
pub(super) fn watchdog_interval() -> Option<std::time::Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| std::time::Duration::from_micros(usec))
}

/// Sends `WATCHDOG=1` every half interval, but only while every shard's
/// loop has turned within that half: a shard stuck in a loop or a system
/// call stops the pings, and systemd acts on it (`Restart=`).
pub(super) fn feed_watchdog(notifier: Arc<Notifier>, shared: Arc<Shared>, interval: std::time::Duration) {
    let half = interval / 2;
    let _ = std::thread::Builder::new().name("watchdog".into()).spawn(move || loop {
        std::thread::sleep(half);
        if shared.all_turning(std::time::Instant::now(), half) {
            notifier.notify("WATCHDOG=1");
        }
    });
}
