//! Real NATS servers (Debian's `nats-server`) on loopback for the
//! rooms-across-hosts tests: started on a free port (or a given one, to
//! come back where it was), stopped and started again, killed when dropped.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then let go).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `nats-server`; killed when dropped.
pub struct Nats {
    child: Option<Child>,
    /// Its client port.
    pub port: u16,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

fn binary() -> &'static str {
    ["/usr/bin/nats-server", "/usr/sbin/nats-server", "/usr/local/bin/nats-server"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("nats-server is not installed: run scripts/install-deps.sh (Debian package nats-server)")
}

impl Nats {
    /// `nats-server -a 127.0.0.1 -p PORT` plus `extra`, on a free port.
    pub fn start(extra: &[&str]) -> Nats {
        let port = free_port();
        let mut args: Vec<String> = vec!["-a".into(), "127.0.0.1".into(), "-p".into(), port.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Nats::with(args, Vec::new(), port)
    }

    /// `nats-server -a 127.0.0.1 -p PORT`, on `port` (where hosts were told to look).
    pub fn start_on(port: u16) -> Nats {
        Nats::with(vec!["-a".into(), "127.0.0.1".into(), "-p".into(), port.to_string()], Vec::new(), port)
    }

    /// `nats-server -c CONFIG` with `envs`, whose client port is `port`.
    pub fn with_config(config: &Path, port: u16, envs: &[(&str, &str)]) -> Nats {
        let args = vec!["-c".into(), config.display().to_string()];
        Nats::with(args, envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), port)
    }

    fn with(args: Vec<String>, envs: Vec<(String, String)>, port: u16) -> Nats {
        let mut n = Nats { child: None, port, args, envs };
        n.resume();
        n
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGKILL: a crash, nothing said to clients) and waits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again, on the same port, and waits until it accepts.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut cmd = Command::new(binary());
        cmd.args(&self.args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start nats-server"));
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(10), "nats-server did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}
