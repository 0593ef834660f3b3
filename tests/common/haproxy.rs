//! A real HAProxy (Debian's `haproxy`) for the tests: started in the
//! foreground on a configuration file, asked over its admin socket whether
//! its health check passed, killed when dropped.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// HAProxy in the foreground; killed when dropped.
pub struct Haproxy(Child);

impl Haproxy {
    /// Runs `haproxy -db -f CONFIG`.
    pub fn start(config: &Path) -> Haproxy {
        let binary = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("haproxy is not installed: run scripts/install-deps.sh (Debian package haproxy)");
        let child = Command::new(binary)
            .args(["-db", "-f"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        Haproxy(child)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `show stat` over HAProxy's admin socket: the CSV line of `backend/server`.
pub fn server_stat(socket: &Path, backend: &str, server: &str) -> Option<String> {
    let mut s = std::os::unix::net::UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"show stat\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines().find(|l| l.starts_with(&format!("{backend},{server},"))).map(str::to_string)
}

/// Waits up to 20 s for `backend/server` to be UP after a passed layer-7
/// check (L7OK); returns the last stat line either way.
pub fn wait_up(socket: &Path, backend: &str, server: &str) -> String {
    let t0 = Instant::now();
    let mut last = String::new();
    while t0.elapsed() < Duration::from_secs(20) {
        last = server_stat(socket, backend, server).unwrap_or_default();
        if last.contains(",UP,") && last.contains("L7OK") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

/// A configuration file of tuning/ (`shipped`, its text) with only its
/// addresses changed: the frontend binds 127.0.0.1:`front`, each
/// documentation address of `servers` (`192.0.2.11:8080`, …) becomes the
/// real one, `server` lines whose address is not given are left out, and an
/// admin socket at `socket` lets the test read the checks' verdicts.
/// Written to `path`.
pub fn write_shipped(shipped: &str, front: u16, servers: &[std::net::SocketAddr], socket: &Path, path: &Path) {
    let doc = |i: usize| format!("192.0.2.{}:8080", 11 + i);
    let cfg: String = shipped
        .lines()
        .filter(|l| !(l.trim_start().starts_with("server ") && (servers.len()..8).any(|i| l.contains(&doc(i)))))
        .map(|l| {
            let mut l = l
                .replace("bind :80", &format!("bind 127.0.0.1:{front}"))
                .replace("global", &format!("global\n    stats socket {}", socket.display()));
            for (i, a) in servers.iter().enumerate() {
                l = l.replace(&doc(i), &a.to_string());
            }
            l
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(path, cfg + "\n").unwrap();
}
