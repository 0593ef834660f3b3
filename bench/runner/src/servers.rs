//! The servers `make bench` compares: how to find, start, watch and stop each.
//!
//! Every server runs one thread pinned to the server CPU set (with `taskset`,
//! so a peer needs no pinning code of its own) and prints `listening on ADDR`
//! on stdout once it accepts; the runner reads that line to learn the port.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use thiserror::Error;

/// One server under test.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Spec {
    /// Short name used in tables and the chart.
    pub name: String,
    /// True for Ricochet itself (the numerator of every ratio).
    pub ricochet: bool,
    /// True for the raw TCP echo: `tcp://` URLs, no WebSocket framing.
    pub raw: bool,
    /// Threads (shards), each given a CPU of its own.
    #[serde(default = "one")]
    pub threads: usize,
    /// The command line, after `taskset -c CPUS`.
    pub argv: Vec<String>,
    /// Extra environment, e.g. GOMAXPROCS.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Serves wss:// (its rows go to the TLS tables).
    #[serde(default)]
    pub tls: bool,
    /// Accepts permessage-deflate: measured with compressed text
    /// (`ricochet bench --deflate`), in the tables of their own.
    #[serde(default)]
    pub deflate: bool,
    /// Serves rooms (every message to every member of its path): measured
    /// with `ricochet bench --mode room`, in the fan-out tables only.
    #[serde(default)]
    pub rooms: bool,
}

fn one() -> usize {
    1
}

/// A server that could not be started.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The binary is missing.
    #[error("{name}: {path} not found (run `cargo build --release --workspace`)")]
    Missing {
        /// Server name.
        name: String,
        /// Where it was looked for.
        path: String,
    },
    /// Spawning failed.
    #[error("{name}: cannot start: {source}")]
    Spawn {
        /// Server name.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// It exited or printed something else before `listening on`.
    #[error("{name}: did not announce its address (first line {line:?})")]
    NoAddress {
        /// Server name.
        name: String,
        /// What it printed instead.
        line: String,
    },
}

/// The servers to compare, in alternation order. `bin` holds the release
/// binaries; `shards` > 1 adds Ricochet with that many shards.
pub fn specs(bin: &Path, gorilla: Option<PathBuf>, shards: usize) -> Vec<Spec> {
    let path = |name: &str| bin.join(name).to_string_lossy().into_owned();
    let ricochet = |name: &str, backend: &str, shards: usize| Spec {
        name: name.into(),
        ricochet: true,
        raw: false,
        threads: shards,
        argv: [&path("ricochet"), "serve", "--listen", "127.0.0.1:0", "--shards", &shards.to_string()]
            .into_iter()
            .chain(["--backend", backend])
            .map(String::from)
            .collect(),
        env: vec![],
        tls: false,
        deflate: false,
        rooms: false,
    };
    let peer = |name: &str, exe: String, raw: bool| Spec {
        name: name.into(),
        ricochet: false,
        raw,
        threads: 1,
        argv: vec![exe, "--listen".into(), "127.0.0.1:0".into()],
        env: vec![],
        tls: false,
        deflate: false,
        rooms: false,
    };
    let mut v = vec![
        ricochet("ricochet-epoll", "epoll", 1),
        ricochet("ricochet-uring", "uring", 1),
        peer("fastwebsockets", path("peer-fastwebsockets"), false),
        peer("tokio-tungstenite", path("peer-tungstenite"), false),
    ];
    if let Some(go) = gorilla {
        let mut g = peer("gorilla", go.to_string_lossy().into_owned(), false);
        g.env.push(("GOMAXPROCS".into(), "1".into()));
        v.push(g);
    }
    v.push(peer("raw-tcp-echo", path("peer-raw-echo"), true));
    if shards > 1 {
        v.push(ricochet(&format!("ricochet-epoll-{shards}-shards"), "epoll", shards));
    }
    v
}

/// Ricochet on each backend with permessage-deflate on, for the compressed
/// text tables. (No Rust peer here speaks permessage-deflate: fastwebsockets
/// and tokio-tungstenite 0.26 have no compression.)
pub fn deflate_specs(bin: &Path) -> Vec<Spec> {
    let exe = bin.join("ricochet").to_string_lossy().into_owned();
    ["epoll", "uring"]
        .into_iter()
        .map(|backend| Spec {
            name: format!("ricochet-{backend}-deflate"),
            ricochet: true,
            raw: false,
            threads: 1,
            argv: [
                &exe,
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--shards",
                "1",
                "--backend",
                backend,
                "--permessage-deflate",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            env: vec![],
            tls: false,
            deflate: true,
            rooms: false,
        })
        .collect()
}

/// The room servers of the fan-out tables: Ricochet with `--reply room` on
/// both backends, sockudo-ws' pub/sub, tokio-tungstenite with a
/// `tokio::sync::broadcast` channel per room (`bench/peers`) and, when it
/// was built, gorilla's hub pattern (`bench/peers/go/hub.go`), each with its
/// room the request path and the sender included.
pub fn room_specs(bin: &Path, gorilla_hub: Option<PathBuf>) -> Vec<Spec> {
    let path = |name: &str| bin.join(name).to_string_lossy().into_owned();
    let ricochet = |backend: &str| Spec {
        name: format!("ricochet-{backend}-rooms"),
        ricochet: true,
        raw: false,
        threads: 1,
        argv: [&path("ricochet"), "serve", "--listen", "127.0.0.1:0", "--shards", "1", "--backend", backend]
            .into_iter()
            .map(String::from)
            .chain(["--reply".to_string(), "room".into()])
            .collect(),
        env: vec![],
        tls: false,
        deflate: false,
        rooms: true,
    };
    let peer = |name: &str, exe: String| Spec {
        name: name.into(),
        ricochet: false,
        raw: false,
        threads: 1,
        argv: vec![exe, "--listen".into(), "127.0.0.1:0".into()],
        env: vec![],
        tls: false,
        deflate: false,
        rooms: true,
    };
    let mut v = vec![
        ricochet("epoll"),
        ricochet("uring"),
        peer("sockudo-ws-rooms", path("peer-sockudo-rooms")),
        peer("tokio-tungstenite-rooms", path("peer-tungstenite-rooms")),
    ];
    if let Some(hub) = gorilla_hub {
        let mut g = peer("gorilla-hub-rooms", hub.to_string_lossy().into_owned());
        g.env.push(("GOMAXPROCS".into(), "1".into()));
        v.push(g);
    }
    v
}

/// The wss:// servers: Ricochet on both backends, and fastwebsockets and
/// tokio-tungstenite behind tokio-rustls, all with the certificate and key
/// in `cert` and `key` (the same provider as Ricochet, and the same rustls defaults).
pub fn tls_specs(bin: &Path, cert: &Path, key: &Path) -> Vec<Spec> {
    let path = |name: &str| bin.join(name).to_string_lossy().into_owned();
    let files =
        || ["--tls-cert".to_string(), cert.display().to_string(), "--tls-key".into(), key.display().to_string()];
    let ricochet = |name: &str, backend: &str| Spec {
        name: name.into(),
        ricochet: true,
        raw: false,
        threads: 1,
        argv: [
            path("ricochet"),
            "serve".into(),
            "--tls-listen".into(),
            "127.0.0.1:0".into(),
            "--shards".into(),
            "1".into(),
        ]
        .into_iter()
        .chain(["--backend".to_string(), backend.into()])
        .chain(files())
        .collect(),
        env: vec![],
        tls: true,
        deflate: false,
        rooms: false,
    };
    let peer = |name: &str, exe: &str| Spec {
        name: name.into(),
        ricochet: false,
        raw: false,
        threads: 1,
        argv: [path(exe), "--listen".into(), "127.0.0.1:0".into()].into_iter().chain(files()).collect(),
        env: vec![],
        tls: true,
        deflate: false,
        rooms: false,
    };
    vec![
        ricochet("ricochet-epoll-wss", "epoll"),
        ricochet("ricochet-uring-wss", "uring"),
        peer("fastwebsockets-wss", "peer-fastwebsockets"),
        peer("tokio-tungstenite-wss", "peer-tungstenite"),
    ]
}

/// Writes a CA and a leaf for 127.0.0.1 signed by it (rcgen) into `dir`;
/// returns (CA file, certificate file, key file).
pub fn test_certificate(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let e = |e: rcgen::Error| e.to_string();
    let ca_key = rcgen::KeyPair::generate().map_err(e)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "ricochet-bench CA");
    let ca = ca_params.self_signed(&ca_key).map_err(e)?;
    let key = rcgen::KeyPair::generate().map_err(e)?;
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .map_err(e)?
        .signed_by(&key, &ca, &ca_key)
        .map_err(e)?;
    {
        use std::os::unix::fs::DirBuilderExt;
        // Only this user may read the key.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|err| format!("{}: {err}", dir.display()))?;
    }
    let files = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    for (path, text) in [(&files.0, ca.pem()), (&files.1, leaf.pem()), (&files.2, key.serialize_pem())] {
        std::fs::write(path, text).map_err(|err| format!("{}: {err}", path.display()))?;
    }
    Ok(files)
}

/// Builds a Go gorilla server (`bench/peers/go/NAME.go`) into `out` as
/// `peer-gorilla-NAME` when `go` and Debian's gorilla/websocket package are
/// both present; the reason otherwise.
pub fn build_gorilla(source: &Path, out: &Path) -> Result<PathBuf, String> {
    const GOPATH: &str = "/usr/share/gocode";
    if !Path::new(GOPATH).join("src/github.com/gorilla/websocket").is_dir() {
        return Err("Debian's golang-github-gorilla-websocket-dev is not installed".into());
    }
    let out = std::path::absolute(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let stem = source.file_stem().unwrap_or_default().to_string_lossy();
    let exe = out.join(format!("peer-gorilla-{stem}"));
    let cache = out.join("go-build-cache");
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&exe)
        .arg(source)
        .env("GOPATH", GOPATH)
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", &cache)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match status {
        Err(e) => Err(format!("go is not available ({e})")),
        Ok(o) if !o.status.success() => {
            Err(format!("go build failed: {}", String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or("")))
        }
        Ok(_) => Ok(exe),
    }
}

/// A started server.
pub struct Running {
    /// What was started.
    pub spec: Spec,
    /// The process.
    pub child: Child,
    /// `ws://ADDR/`, `wss://ADDR/` or `tcp://ADDR`.
    pub url: String,
}

impl Running {
    /// Starts `spec` pinned to `cpus` (a taskset list such as `0` or `0-3`).
    pub fn start(spec: &Spec, cpus: &str) -> Result<Running, ServerError> {
        let exe = &spec.argv[0];
        if !Path::new(exe).exists() {
            return Err(ServerError::Missing { name: spec.name.clone(), path: exe.clone() });
        }
        let mut child = Command::new("taskset")
            .arg("-c")
            .arg(cpus)
            .args(&spec.argv)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| ServerError::Spawn { name: spec.name.clone(), source })?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ServerError::NoAddress { name: spec.name.clone(), line });
        };
        let url = match addr.strip_suffix(" (tls)") {
            Some(addr) => format!("wss://{addr}/"),
            None if spec.raw => format!("tcp://{addr}"),
            None => format!("ws://{addr}/"),
        };
        Ok(Running { spec: spec.clone(), child, url })
    }

    /// The process id, for CPU and RSS readings.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL after five seconds.
    pub fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        for _ in 0..50 {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
