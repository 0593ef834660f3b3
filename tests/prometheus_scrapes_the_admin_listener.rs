//! A real Prometheus server (Debian's `prometheus` package) scrapes the
//! admin listener every second; after real echoes, its query API reads back
//! exactly the messages sent, and the target is up.

mod common;

use common::admin::get;
use common::{RawClient, Server};
use ricochet::ws::client::Event;
use ricochet::ws::frame::OpCode;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Prometheus process, killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: ricochet\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        // A free port for its web API (a tiny race with other tests, on loopback only).
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let log = dir.path().join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prometheus (Debian's prometheus package; scripts/install-deps.sh installs it)");
        Prometheus { child, addr, log, _dir: dir }
    }

    /// The value of an instant query's single result, if it has one.
    fn query(&self, q: &str) -> Option<String> {
        let encoded: String = q
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b == b'_' { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        std::net::TcpStream::connect(self.addr).ok()?; // not listening yet
        let r = get(self.addr, &format!("/api/v1/query?query={encoded}"));
        let j: serde_json::Value = serde_json::from_str(&r.body).ok()?;
        Some(j["data"]["result"].get(0)?["value"][1].as_str()?.to_string())
    }

    /// Waits up to 60 s for `q` to read `want`.
    fn wait_for(&self, q: &str, want: &str) {
        let t0 = Instant::now();
        let mut last = None;
        while t0.elapsed() < Duration::from_secs(60) {
            last = self.query(q);
            if last.as_deref() == Some(want) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("{q}: {last:?}, not {want}\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_reads_back_the_messages_sent() {
    let server = Server::start(&["--metrics-listen", "127.0.0.1:0", "--shards", "2"]);
    let admin = server.metrics.expect("metrics on");
    let prometheus = Prometheus::start(admin);
    prometheus.wait_for("up{job=\"ricochet\"}", "1");
    let mut sent = 0;
    for c in 0..3 {
        let mut client = RawClient::open(server.addr);
        for k in 0..10 {
            let text = format!("to prometheus {c}.{k}");
            client.send(true, OpCode::Binary, text.as_bytes());
            assert_eq!(client.next_event(), Some(Event::Message(OpCode::Binary, text.into_bytes())));
            sent += 1;
        }
    }
    prometheus.wait_for("sum(ricochet_messages_received_total)", &sent.to_string());
    prometheus.wait_for("sum(ricochet_messages_sent_total)", &sent.to_string());
    prometheus.wait_for("sum(ricochet_handshakes_total)", "3");
    prometheus.wait_for(&format!("count(ricochet_build_info{{backend=\"{}\"}})", backend_label()), "1");
}

fn backend_label() -> &'static str {
    if common::backend() == "uring" {
        "io_uring"
    } else {
        "epoll"
    }
}
