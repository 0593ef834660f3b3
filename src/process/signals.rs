//! Signals: SIGINT/SIGTERM drain and stop, SIGHUP reloads.

use super::systemd::STOP_MARGIN;
use super::ServeError;
use crate::server::notify::Notifier;
use crate::server::shared::Shared;
use crate::server::tls::Certificates;
use crate::server::tokens::Tokens;
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
    shared: Arc<Shared>,
    wakers: Vec<Box<dyn Fn() + Send>>,
    certs: Option<Arc<Certificates>>,
    tokens: Option<Arc<Tokens>>,
    notifier: Arc<Notifier>,
    grace: std::time::Duration,
) -> Result<(), ServeError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(ServeError::Signals)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
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
                    shared.request_shutdown();
                    for wake in &wakers {
                        wake();
                    }
                    // The drain may take the whole grace period: ask systemd
                    // for that much (and a little) beyond its stop timeout.
                    let extend = (grace + STOP_MARGIN).as_micros();
                    notifier.notify(&format!("STOPPING=1\nEXTEND_TIMEOUT_USEC={extend}\nSTATUS=draining connections"));
                    info!(signal = sig, "shutting down gracefully (send again to exit at once)");
                } else {
                    std::process::exit(128 + sig);
                }
            }
        })
        .map_err(ServeError::Signals)?;
    Ok(())
}
