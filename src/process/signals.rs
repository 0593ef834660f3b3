//! Signals: SIGINT/SIGTERM drain and stop, SIGHUP reloads.

use super::drain::Drain;
use super::ServeError;
use crate::server::tls::Certificates;
use crate::server::tokens::Tokens;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::{info, warn};

/// First SIGINT/SIGTERM: graceful shutdown. Second: exit at once. SIGHUP
/// (a closed terminal, a dropped ssh session, `systemctl reload`) is never
/// fatal: it re-reads the bearer tokens and the TLS certificates, if any,
/// and is logged.
///
/// Each action comes before its log line: logging may fail (standard error a
/// closed pipe), and a shutdown must not depend on it.
pub(super) fn watch(
    drain: Arc<Drain>,
    certs: Option<Arc<Certificates>>,
    tokens: Option<Arc<Tokens>>,
    takeover: Option<PathBuf>,
) -> Result<(), ServeError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR2]).map_err(ServeError::Signals)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                if sig == SIGUSR2 {
                    match &takeover {
                        None => warn!("SIGUSR2: a restart that refuses no connection needs --takeover; still serving"),
                        Some(_) if drain.shared.shutdown_requested() => warn!("SIGUSR2: already draining"),
                        Some(path) => match start_successor() {
                            Ok(pid) => info!(pid, path = %path.display(), "SIGUSR2: started a new server to take over"),
                            Err(e) => warn!("SIGUSR2: cannot start a new server: {e}"),
                        },
                    }
                    continue;
                }
                if sig == SIGHUP {
                    match &tokens {
                        None => {}
                        Some(t) => match t.reload() {
                            Ok(n) => info!(tokens = n, "SIGHUP: bearer tokens re-read"),
                            Err(e) => warn!("SIGHUP: keeping the tokens in use: {e}"),
                        },
                    }
                    match &certs {
                        None if tokens.is_some() => {}
                        None => info!("SIGHUP: nothing to reload, still serving"),
                        Some(c) => match c.reload() {
                            Ok(notes) => {
                                for n in notes {
                                    if n.warn {
                                        warn!("SIGHUP: {}", n.text);
                                    } else {
                                        info!("SIGHUP: {}", n.text);
                                    }
                                }
                            }
                            Err(e) => warn!("SIGHUP: keeping the certificates in use: {e}"),
                        },
                    }
                    continue;
                }
                seen += 1;
                if seen == 1 {
                    drain.line_due.store(true, std::sync::atomic::Ordering::Release);
                    drain.start();
                    info!(signal = sig, "shutting down gracefully (send again to exit at once)");
                    drain.line_due.store(false, std::sync::atomic::Ordering::Release);
                } else {
                    // At once: no destructors, no atexit handlers, no flush of
                    // a log a full pipe may block, whatever the shards do.
                    // SAFETY: _exit ends the process; nothing runs after it.
                    unsafe { libc::_exit(128 + sig) };
                }
            }
        })
        .map_err(ServeError::Signals)?;
    Ok(())
}

/// SIGUSR2 (nginx's signal for a binary upgrade): runs the program at the
/// path this one was started as (the new binary, after an upgrade) with the
/// same arguments; it takes the listeners over `--takeover` and this
/// process drains once it accepts. Under systemd it becomes the main
/// process (`MAINPID=`, which needs `NotifyAccess=all`), and it feeds the
/// watchdog itself.
fn start_successor() -> std::io::Result<u32> {
    let mut args = std::env::args_os();
    let program = args.next().ok_or_else(|| std::io::Error::other("no program name"))?;
    let child = std::process::Command::new(program)
        .args(args)
        .env_remove("WATCHDOG_PID")
        .stdin(std::process::Stdio::null())
        .spawn()?;
    Ok(child.id())
}
