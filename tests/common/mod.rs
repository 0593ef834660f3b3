//! Shared by the integration tests: start the real `ricochet` binary on a free
//! loopback port, talk to it over real sockets, read its memory and logs.
#![allow(dead_code)]

pub mod admin;
pub mod haproxy;
pub mod listeners;
pub mod members;
pub mod nats;
pub mod restarts;
pub mod tls;

use ricochet::ws::client::{decode_server_frames_with, encode_masked, events, Event, ServerFrame};
use ricochet::ws::frame::{parse_header, parse_header_with, HeaderStatus, OpCode};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every blocking socket call in the tests gives up after this long.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A current-thread tokio runtime for the tests that use a Rust client crate.
pub fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// True when the transport tests run over TLS (`RICOCHET_TEST_TLS=1`, set
/// by `make test` for its third pass): `Server::start` then serves wss://
/// only, with a certificate from the test CA, and the clients verify it.
pub fn over_tls() -> bool {
    std::env::var("RICOCHET_TEST_TLS").is_ok_and(|v| v == "1")
}

/// A running server process; killed when dropped.
pub struct Server {
    child: Child,
    /// Where it listens (the first ready line's address).
    pub addr: SocketAddr,
    /// Every ready line's address, with whether it is TLS.
    pub listeners: Vec<(SocketAddr, bool)>,
    /// The admin listener (`metrics on ADDR`), if one was asked for.
    pub metrics: Option<SocketAddr>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// `ricochet serve --listen 127.0.0.1:0 --shards 1 --no-pin --backend B`
    /// plus `extra` (later flags win over these). B is `RICOCHET_TEST_BACKEND`
    /// (`make test` runs the suite once per backend), epoll if unset.
    pub fn start(extra: &[&str]) -> Server {
        Server::spawn(&mut Server::command(extra))
    }

    /// The command `start` runs: plain, or TLS only when [`over_tls`].
    fn command(extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
        cmd.args(["serve", "--shards", "1", "--no-pin", "--backend", &backend()]);
        if over_tls() {
            let (_, cert, key) = tls::shared();
            cmd.args(["--tls-listen", "127.0.0.1:0", "--tls-cert"]).arg(cert).arg("--tls-key").arg(key);
        } else {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(extra);
        cmd
    }

    /// True when the server was started to speak TLS on `addr`.
    pub fn is_tls(&self) -> bool {
        self.listeners.first().is_some_and(|l| l.1)
    }

    /// Starts the binary with exactly `args`; waits for `listening on`.
    pub fn start_raw(args: &[&str]) -> Server {
        Server::spawn(Command::new(env!("CARGO_BIN_EXE_ricochet")).args(args))
    }

    /// Like `start`, logging at `debug` (refusals, protocol errors).
    pub fn start_debug(extra: &[&str]) -> Server {
        Server::spawn_logging(&mut Server::command(extra), "debug")
    }

    /// Like `start_raw`, with io_uring forbidden to the process by a seccomp filter.
    pub fn start_without_io_uring(args: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
        cmd.args(args);
        deny_io_uring(&mut cmd);
        Server::spawn(&mut cmd)
    }

    pub(crate) fn spawn(cmd: &mut Command) -> Server {
        Server::spawn_logging(cmd, "info")
    }

    pub(crate) fn spawn_logging(cmd: &mut Command, level: &str) -> Server {
        let mut child = cmd
            .env("RUST_LOG", level)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ricochet");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while err.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Every line to the channel; this also keeps stdout drained.
            let mut line = String::new();
            while out.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                let _ = tx.send(std::mem::take(&mut line));
            }
        });
        // The ready lines come in one write: the first, then any right behind it.
        let mut lines = vec![rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default()];
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(l);
        }
        let listeners: Vec<(SocketAddr, bool)> = lines
            .iter()
            .filter_map(|l| {
                let a = l.strip_prefix("listening on ")?.trim();
                let (a, tls) = a.strip_suffix(" (tls)").map_or((a, false), |a| (a, true));
                Some((a.parse().ok()?, tls))
            })
            .collect();
        let Some(&(addr, _)) = listeners.first() else {
            let _ = child.kill();
            panic!("server did not start: {lines:?}\n{}", stderr.lock().unwrap());
        };
        let metrics = lines.iter().find_map(|l| l.strip_prefix("metrics on ")?.trim().parse().ok());
        Server { child, addr, listeners, metrics, stderr }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        ricochet::bench::pid_rss_kib(self.pid()).expect("VmRSS")
    }

    /// Sends a signal (libc number).
    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Everything logged on stderr so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits up to 10 s until the log contains `needle`; returns the log.
    pub fn wait_for_log(&self, needle: &str) -> String {
        self.wait_for_log_lines(needle, 1)
    }

    /// Waits up to 10 s until `needle` is on `n` lines of the log (the log is
    /// read by another thread, so it can lag the process); returns the log.
    pub fn wait_for_log_lines(&self, needle: &str, n: usize) -> String {
        let t0 = Instant::now();
        loop {
            let log = self.log();
            if log.lines().filter(|l| l.contains(needle)).count() >= n || t0.elapsed() > Duration::from_secs(10) {
                return log;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `ws://ADDR/`, or `wss://ADDR/` on a TLS server.
    pub fn url(&self) -> String {
        format!("{}://{}/", if self.is_tls() { "wss" } else { "ws" }, self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The payload byte at `offset` of a flood (a pattern no frame boundary aligns with).
pub fn flood_pattern(offset: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = ((offset + i as u64) % 251) as u8;
    }
}

/// Checks the whole echoed data frames at the front of `buf[..have]`
/// against [`flood_pattern`] from `got` on; moves what is left of a frame to
/// the front and returns (bytes left in `buf`, payload bytes checked so far).
pub fn check_flood_echo(buf: &mut [u8], have: usize, mut got: u64, expect: &mut [u8]) -> (usize, u64) {
    let mut pos = 0;
    while let Ok(HeaderStatus::Complete(h)) = parse_header(&buf[pos..have]) {
        assert!(!h.opcode.is_control(), "unexpected control frame");
        let (start, end) = (pos + h.header_len, pos + h.header_len + h.len as usize);
        if end > have {
            break;
        }
        let n = end - start;
        flood_pattern(got, &mut expect[..n]);
        assert!(buf[start..end] == expect[..n], "payload differs at offset {got}");
        got += n as u64;
        pos = end;
    }
    buf.copy_within(pos..have, 0);
    (have - pos, got)
}

/// `ricochet serve` on wss:// only, with the shared test certificate, the
/// test backend and `extra`.
pub fn start_tls(extra: &[&str]) -> Server {
    let (_, cert, key) = tls::shared();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args(["serve", "--tls-listen", "127.0.0.1:0", "--shards", "1", "--no-pin", "--backend", &backend()])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .args(extra);
    Server::spawn(&mut cmd)
}

/// The test backend (`RICOCHET_TEST_BACKEND`, epoll if unset).
pub fn backend() -> String {
    std::env::var("RICOCHET_TEST_BACKEND").unwrap_or_else(|_| "epoll".into())
}

/// Sends `request` on a new connection and returns everything the server
/// answers until it closes.
pub fn http_exchange(addr: SocketAddr, request: &str) -> String {
    let mut c = RawClient::connect(addr);
    c.send_raw(request.as_bytes());
    String::from_utf8_lossy(&c.read_to_end()).into_owned()
}

/// Makes `io_uring_setup` fail with EPERM in the child, as a container's
/// seccomp profile would.
pub fn deny_io_uring(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls prctl with a filter that lives on its stack.
    unsafe {
        cmd.pre_exec(|| {
            const BPF_LD_W_ABS: u16 = 0x20;
            const BPF_JEQ_K: u16 = 0x15;
            const BPF_RET_K: u16 = 0x06;
            let nr = libc::SYS_io_uring_setup as u32;
            let filter = [
                libc::sock_filter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: 0 }, // seccomp_data.nr
                libc::sock_filter { code: BPF_JEQ_K, jt: 0, jf: 1, k: nr },
                libc::sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32 },
                libc::sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_ALLOW },
            ];
            let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const _ as usize, 0, 0) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A valid upgrade request for `path`.
pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A client's byte stream: plain TCP, or TLS over it.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS (the test CA verified).
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// Its local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp().local_addr()
    }
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(b),
            Stream::Tls(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(b),
            Stream::Tls(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A client that can send anything, valid or not, over plain TCP or (when
/// [`over_tls`]) inside TLS.
pub struct RawClient {
    /// The connection.
    pub stream: Stream,
    buf: Vec<u8>,
    /// permessage-deflate was negotiated: frames may carry RSV1.
    deflate: bool,
}

impl RawClient {
    /// Connects without a WebSocket handshake (TLS is set up when [`over_tls`]).
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = if over_tls() {
            let s = tls::connect(addr, "127.0.0.1");
            Stream::Tls(Box::new(s))
        } else {
            Stream::Plain(TcpStream::connect(addr).expect("connect"))
        };
        let tcp = stream.tcp();
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        tcp.set_nodelay(true).unwrap();
        RawClient { stream, buf: Vec::new(), deflate: false }
    }

    /// Runs over an open TCP connection (TLS is set up when [`over_tls`]).
    pub fn over(tcp: TcpStream) -> RawClient {
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        tcp.set_nodelay(true).unwrap();
        let stream = if over_tls() { Stream::Tls(Box::new(tls::over(tcp, "127.0.0.1"))) } else { Stream::Plain(tcp) };
        RawClient { stream, buf: Vec::new(), deflate: false }
    }

    /// Connects and writes `prefix` (a PROXY header) on the bare TCP
    /// connection, one byte per write when `bytewise`, before anything else
    /// (TLS included).
    pub fn connect_after(addr: SocketAddr, prefix: &[u8], bytewise: bool) -> RawClient {
        let mut tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_nodelay(true).unwrap();
        if bytewise {
            for b in prefix {
                tcp.write_all(&[*b]).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        } else {
            tcp.write_all(prefix).unwrap();
        }
        RawClient::over(tcp)
    }

    /// Connects and completes the handshake.
    pub fn open(addr: SocketAddr) -> RawClient {
        let mut c = RawClient::connect(addr);
        c.send_raw(upgrade_request("/").as_bytes());
        let head = c.read_http_head();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        c
    }

    /// Connects and completes a handshake offering `offer` in
    /// `Sec-WebSocket-Extensions`; returns the client and the response head.
    pub fn open_with_extensions(addr: SocketAddr, offer: &str) -> (RawClient, String) {
        let mut c = RawClient::connect(addr);
        let req = upgrade_request("/").replace("\r\n\r\n", &format!("\r\nSec-WebSocket-Extensions: {offer}\r\n\r\n"));
        c.send_raw(req.as_bytes());
        let head = c.read_http_head();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        c.deflate = head.to_ascii_lowercase().contains("sec-websocket-extensions: permessage-deflate");
        (c, head)
    }

    /// Sends one masked frame with RSV1 set ("compressed", RFC 7692 §6).
    pub fn send_compressed(&mut self, fin: bool, op: OpCode, payload: &[u8]) {
        let mut f = Vec::new();
        encode_masked(&mut f, fin, op, payload, [0xa1, 0xb2, 0xc3, 0xd4]);
        f[0] |= ricochet::ws::frame::RSV1_BIT;
        self.send_raw(&f);
    }

    /// Writes bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends one masked frame.
    pub fn send(&mut self, fin: bool, op: OpCode, payload: &[u8]) {
        let mut f = Vec::new();
        encode_masked(&mut f, fin, op, payload, [0xa1, 0xb2, 0xc3, 0xd4]);
        self.send_raw(&f);
    }

    fn fill(&mut self) -> usize {
        let mut tmp = [0u8; 65536];
        match self.stream.read(&mut tmp) {
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                n
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset) => 0,
            // A TLS peer that closed without close_notify after its last bytes.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::UnexpectedEof) => 0,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// Reads an HTTP response head (up to the blank line); keeps what follows.
    pub fn read_http_head(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                return String::from_utf8_lossy(&head).into_owned();
            }
            assert!(self.fill() > 0, "connection closed before the response head");
        }
    }

    /// Reads until the peer closes; returns everything unread.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill() > 0 {}
        std::mem::take(&mut self.buf)
    }

    /// Reads the next complete frame.
    pub fn next_frame(&mut self) -> Option<ServerFrame> {
        loop {
            if let Ok(HeaderStatus::Complete(h)) = parse_header_with(&self.buf, self.deflate) {
                let total = h.header_len + h.len as usize;
                if self.buf.len() >= total {
                    let (mut frames, _) =
                        decode_server_frames_with(&self.buf[..total], self.deflate).expect("server frame decodes");
                    self.buf.drain(..total);
                    return frames.pop();
                }
            }
            if self.fill() == 0 {
                return None;
            }
        }
    }

    /// Reads frames until a complete message, ping, pong or close arrives.
    pub fn next_event(&mut self) -> Option<Event> {
        let mut frames = Vec::new();
        loop {
            let f = self.next_frame()?;
            let done = f.fin || f.opcode.is_control();
            let control = f.opcode.is_control();
            if control {
                return events(&[f]).pop();
            }
            frames.push(f);
            if done {
                return events(&frames).pop();
            }
        }
    }

    /// Reads until a close frame and returns its code (None if the
    /// connection ended without one).
    pub fn expect_close(&mut self) -> Option<u16> {
        while let Some(ev) = self.next_event() {
            if let Event::Close(code, _) = ev {
                return code;
            }
        }
        None
    }
}

/// Opens a WebSocket with tokio-tungstenite: `ws://` as it is, `wss://`
/// with a rustls client that trusts only the test CA.
pub async fn ws_connect(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let connector =
        url.starts_with("wss://").then(|| tokio_tungstenite::Connector::Rustls(tls::shared().0.client_config()));
    let connect = tokio_tungstenite::connect_async_tls_with_config(url, None, true, connector);
    tokio::time::timeout(IO_TIMEOUT, connect).await.expect("connect timeout").expect("connect").0
}

/// Asserts that an independent client's check script (it prints
/// "N passed, 0 failed" and exits 0 when all went well) passed; shows its
/// output and the server's log if not.
pub fn assert_script_passed(what: &str, out: std::process::Output, server: &Server) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(" passed, 0 failed"),
        "{what}:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

/// The Python interpreter of the venv `make venv` builds.
pub fn python() -> String {
    std::env::var("RICOCHET_PYTHON").unwrap_or_else(|_| {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
        assert!(std::path::Path::new(p).exists(), "Python websockets client missing: run `make venv` (or `make test`)");
        p.to_string()
    })
}
