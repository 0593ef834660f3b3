//! Server settings from flags, `RICOCHET_*` environment variables and a TOML
//! file, in that order of precedence, over built-in defaults.

use crate::rooms::{RoomSettings, SlowMember};
use crate::server::tls::CertSource;
use crate::ws::{self, handshake::HandshakePolicy, Reply};
use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";

/// A setting that cannot be used; printed as one line, exit status 2.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A value outside what the setting allows.
    #[error("invalid {setting} {value:?}: {allowed}")]
    Invalid {
        /// The setting's flag name.
        setting: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// A size that does not parse or lies outside the setting's range.
    #[error("invalid {setting} {value:?}: a size from {min} to {max}, e.g. 65536, 64K, 16MiB")]
    Size {
        /// The setting's flag name.
        setting: &'static str,
        /// The value given.
        value: String,
        /// The smallest allowed, as a size (e.g. `4K`).
        min: String,
        /// The largest allowed, as a size.
        max: String,
    },
    /// A file a setting names could not be read.
    #[error("cannot read the --{setting} file {path}: {source}")]
    File {
        /// The setting's flag name.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these settings.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, on one line.
        message: String,
    },
}

/// `ricochet serve` flags. Each also reads `RICOCHET_<NAME>` and the config file.
#[derive(Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (kebab-case keys); flags and environment win over it.
    #[arg(long, env = "RICOCHET_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address every shard listens on for plain ws:// (SO_REUSEPORT): an IP address and port, or a host name and port, resolved at start and listened on at each of its addresses (localhost:8080); port 0 picks one free port for all [default: 0.0.0.0:8080, or none when --tls-listen is given]
    #[arg(long, env = "RICOCHET_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Admin listener for operators, on a thread of its own: Prometheus metrics at /metrics, the same figures as JSON at /stats.json, /healthz, and a live status page at /. Keep it private (e.g. 127.0.0.1:9090): it needs no token [default: off]
    #[arg(long, env = "RICOCHET_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Every listener requires a PROXY protocol header (v1 or v2, as HAProxy's send-proxy / send-proxy-v2 or an AWS NLB send it) before the TLS ClientHello or the HTTP request; its client address is the one logged. A connection without a valid one is closed. Only behind a balancer that always sends it: anyone who can reach the port could otherwise claim any address
    #[arg(long, env = "RICOCHET_PROXY_PROTOCOL", value_parser = clap::builder::BoolishValueParser::new())]
    pub proxy_protocol: bool,
    /// Restarts and upgrades that refuse no connection: offer the listening sockets at this unix socket (mode 0600), and at start take them from a server offering them there; that server then stops accepting and drains (echoes, then close 1001) while this one serves the same sockets. Without a server there, listeners are bound as usual [default: off]
    #[arg(long, env = "RICOCHET_TAKEOVER", value_name = "PATH")]
    pub takeover: Option<PathBuf>,
    /// Address for wss:// (TLS), repeatable; every shard listens on each. Needs --tls-cert and --tls-key, or --tls-self-signed
    #[arg(long = "tls-listen", env = "RICOCHET_TLS_LISTEN", value_name = "ADDR", value_delimiter = ',')]
    pub tls_listen: Vec<String>,
    /// PEM certificate chain, repeatable, paired in order with --tls-key; chosen by the client's SNI, the first for clients that send none
    #[arg(long = "tls-cert", env = "RICOCHET_TLS_CERT", value_name = "FILE", value_delimiter = ',')]
    pub tls_cert: Vec<PathBuf>,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1) of the --tls-cert in the same position; re-read with the certificates on SIGHUP
    #[arg(long = "tls-key", env = "RICOCHET_TLS_KEY", value_name = "FILE", value_delimiter = ',')]
    pub tls_key: Vec<PathBuf>,
    /// For trying wss:// out only: a certificate for localhost and 127.0.0.1 made at start (its SHA-256 fingerprint is logged); browsers will warn
    #[arg(long, env = "RICOCHET_TLS_SELF_SIGNED", value_parser = clap::builder::BoolishValueParser::new())]
    pub tls_self_signed: bool,
    /// TLS listeners ask for a client certificate that chains to a CA in this PEM file (rustls' WebPKI verifier); see --tls-client-auth
    #[arg(long, env = "RICOCHET_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// With --tls-client-ca: required (a client without a valid certificate fails the TLS handshake) or optional (one without any is admitted; a bad one still fails) [default: required]
    #[arg(long, env = "RICOCHET_TLS_CLIENT_AUTH", value_name = "MODE")]
    pub tls_client_auth: Option<String>,
    /// Number of shards (threads, one event loop each) [default: one per CPU this process may run on]
    #[arg(long, env = "RICOCHET_SHARDS", value_name = "N")]
    pub shards: Option<String>,
    /// Do not pin shard threads to CPUs
    #[arg(long, env = "RICOCHET_NO_PIN", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_pin: bool,
    /// Start even when another process already listens on --listen, and split new connections with it (SO_REUSEPORT). Without it such a start is refused: a forgotten instance would silently take a share of the traffic
    #[arg(long, env = "RICOCHET_SHARE_PORT", value_parser = clap::builder::BoolishValueParser::new())]
    pub share_port: bool,
    /// Listen backlog per shard; the kernel caps it at net.core.somaxconn [default: 4096]
    #[arg(long, env = "RICOCHET_BACKLOG", value_name = "N")]
    pub backlog: Option<String>,
    /// SO_RCVBUF for accepted sockets, e.g. 256K. Unset by default: setting it turns off the kernel's receive autotuning (tcp_rmem) for those sockets
    #[arg(long, env = "RICOCHET_RCVBUF", value_name = "BYTES")]
    pub rcvbuf: Option<String>,
    /// SO_SNDBUF for accepted sockets, e.g. 256K. Unset by default: setting it turns off send autotuning (tcp_wmem)
    #[arg(long, env = "RICOCHET_SNDBUF", value_name = "BYTES")]
    pub sndbuf: Option<String>,
    /// Leave Nagle's algorithm on (TCP_NODELAY is set on accepted sockets by default)
    #[arg(long, env = "RICOCHET_NO_NODELAY", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_nodelay: bool,
    /// Upgraded connections per process; further handshakes get 503 [default: 100000]
    #[arg(long, env = "RICOCHET_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<String>,
    /// Upgraded connections per client address (its PROXY header's under --proxy-protocol), across all shards; further handshakes from it get 429 with Retry-After. As many more may be in their handshake at once; a connection beyond those is closed at accept, unanswered [default: no limit]
    #[arg(long, env = "RICOCHET_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<String>,
    /// With --max-connections-per-ip: IPv6 clients are counted per network of this prefix length (one subscriber's /64 holds many addresses) [default: 64]
    #[arg(long, env = "RICOCHET_IPV6_PREFIX", value_name = "BITS")]
    pub ipv6_prefix: Option<String>,
    /// Data messages per second each connection may send (a token bucket holding one second's worth): over it, the connection is not read until the bucket refills, so TCP flow control slows the client and nothing is lost [default: no limit]
    #[arg(long, env = "RICOCHET_MAX_MESSAGE_RATE", value_name = "N")]
    pub max_message_rate: Option<String>,
    /// Bytes per second each connection may send (K/M/G suffixes; TLS records on TLS listeners), enforced like --max-message-rate: keeps a public echo endpoint from being an unmetered bandwidth source [default: no limit]
    #[arg(long, env = "RICOCHET_MAX_BYTES_PER_SECOND", value_name = "BYTES")]
    pub max_bytes_per_second: Option<String>,
    /// Largest message (all its frames); larger fails with close 1009 [default: 16MiB]
    #[arg(long, env = "RICOCHET_MAX_MESSAGE_SIZE", value_name = "BYTES")]
    pub max_message_size: Option<String>,
    /// Time allowed from accept to a complete upgrade request; then 408. Times are 500ms, 10s, 2m; a bare number is seconds [default: 10s]
    #[arg(long, env = "RICOCHET_HANDSHAKE_TIMEOUT", value_name = "TIME")]
    pub handshake_timeout: Option<String>,
    /// Close (1000) after this long without input; a ping goes out at half of it; 0 disables [default: 120s]
    #[arg(long, env = "RICOCHET_IDLE_TIMEOUT", value_name = "TIME")]
    pub idle_timeout: Option<String>,
    /// After the server's close frame (idle timeout, shutdown, protocol error) or a refused handshake: how long the client has to answer or hang up (and to read what is still queued before it) before the connection is dropped [default: 5s]
    #[arg(long, env = "RICOCHET_CLOSE_TIMEOUT", value_name = "TIME")]
    pub close_timeout: Option<String>,
    /// Allowed Origin header value, e.g. https://app.example (repeatable, or comma-separated); others get 403. None given allows every origin. Once set, a client that sends no Origin (a program; browsers always send one) is refused too, unless --allow-missing-origin
    #[arg(long = "allowed-origin", env = "RICOCHET_ALLOWED_ORIGIN", value_name = "ORIGIN", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// With --allowed-origin: also admit handshakes without an Origin header (non-browser clients)
    #[arg(long, env = "RICOCHET_ALLOW_MISSING_ORIGIN", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_missing_origin: bool,
    /// The only path that upgrades (others get 404) [default: any path]
    #[arg(long, env = "RICOCHET_PATH", value_name = "PATH")]
    pub path: Option<String>,
    /// Accept permessage-deflate (RFC 7692) when a client offers it. Off by default, as in uWebSockets, gorilla and Node's ws: it costs CPU (every compressed message is inflated once, to check it) and changes what a benchmark measures. Nothing is ever compressed: compressed messages are echoed as they came, and idle connections cost nothing extra
    #[arg(long, env = "RICOCHET_PERMESSAGE_DEFLATE", value_parser = clap::builder::BoolishValueParser::new())]
    pub permessage_deflate: bool,
    /// With --permessage-deflate: inflaters per shard for compressed messages that span reads (about 46 KiB each while in use). With all in use, such a connection waits unread (TCP flow control) until one is free; a message that arrives in one read needs none [default: 64]
    #[arg(long, env = "RICOCHET_INFLATE_POOL", value_name = "N")]
    pub inflate_pool: Option<String>,
    /// Only handshakes that carry one of the bearer tokens in this file (one per line; blank lines and # comments ignored; re-read on SIGHUP) are upgraded, others get 401. A token may come as `Authorization: Bearer TOKEN`, as `?access_token=TOKEN` (browsers; it lands in proxy logs) or as a `Sec-WebSocket-Protocol` entry `bearer.TOKEN` beside a real subprotocol (see --subprotocol) [default: anyone may connect]
    #[arg(long, env = "RICOCHET_AUTH_TOKENS", value_name = "FILE")]
    pub auth_tokens: Option<PathBuf>,
    /// Subprotocol to select when a client offers it (repeatable, or comma-separated): the first of the client's entries, in its order, that is one of these is answered in Sec-WebSocket-Protocol [default: none selected]
    #[arg(long = "subprotocol", env = "RICOCHET_SUBPROTOCOL", value_name = "NAME", value_delimiter = ',')]
    pub subprotocols: Vec<String>,
    /// Log lines as text, or as JSON objects one per line for log shippers (timestamp, level, target, message and the event's fields; the level comes from RUST_LOG) [default: text]
    #[arg(long, env = "RICOCHET_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Log each message received: its kind, frame length and first 32 bytes as text, at info; at most 20 lines a second per shard (the rest are counted in one line), so a flood cannot fill a disk. For trying a client out, not for production
    #[arg(long, env = "RICOCHET_LOG_MESSAGES", value_parser = clap::builder::BoolishValueParser::new())]
    pub log_messages: bool,
    /// echo: send every frame back; pong: answer every message with the text "Pong"; room: send every complete message to every connection on the same request path (its room, query string left out), the sender included, across shards (docs/rooms.md) [default: echo]
    #[arg(long, env = "RICOCHET_REPLY", value_name = "MODE")]
    pub reply: Option<String>,
    /// With --reply room: a member's own messages do not come back to it
    #[arg(long, env = "RICOCHET_ROOM_EXCLUDE_SENDER", value_parser = clap::builder::BoolishValueParser::new())]
    pub room_exclude_sender: bool,
    /// With --reply room: the most room output one connection may have waiting (frames its socket has not taken yet); past it, --slow-member decides [default: 1MiB]
    #[arg(long, env = "RICOCHET_ROOM_BACKLOG", value_name = "BYTES")]
    pub room_backlog: Option<String>,
    /// With --reply room: what a member whose backlog is full gets: close (close code 1008, reason "too slow") or drop (that message is left out for that member only); both are counted [default: close]
    #[arg(long, env = "RICOCHET_SLOW_MEMBER", value_name = "POLICY")]
    pub slow_member: Option<String>,
    /// With --reply room: rooms open at once; a handshake that would open one more gets 503 [default: 100000]
    #[arg(long, env = "RICOCHET_MAX_ROOMS", value_name = "N")]
    pub max_rooms: Option<String>,
    /// With --reply room: link this process's rooms to other processes' (on this host or others) through NATS, at these server URLs (nats://HOST:PORT or tls://HOST:PORT, comma-separated, tried in turn). Each message a member publishes also goes once to NATS; messages from other hosts reach the members here. At most once across hosts: what cannot cross (NATS down or slow) is dropped and counted, local delivery never waits (docs/cluster.md) [default: rooms are local to the process]
    #[arg(long, env = "RICOCHET_CLUSTER", value_name = "URLS")]
    pub cluster: Option<String>,
    /// With --cluster tls://...: PEM file of the CA the NATS servers' certificates must chain to [default: the system's roots]
    #[arg(long, env = "RICOCHET_CLUSTER_CA", value_name = "FILE")]
    pub cluster_ca: Option<PathBuf>,
    /// With --cluster: a NATS credentials (.creds) file to authenticate with (a file, so that no secret shows in `ps`)
    #[arg(long, env = "RICOCHET_CLUSTER_CREDENTIALS", value_name = "FILE")]
    pub cluster_credentials: Option<PathBuf>,
    /// With --cluster: a file holding the NATS token to authenticate with (a file, so that no secret shows in `ps`)
    #[arg(long, env = "RICOCHET_CLUSTER_TOKEN_FILE", value_name = "FILE")]
    pub cluster_token_file: Option<PathBuf>,
    /// With --cluster: room subjects start with this; the room's path follows as one token, with `.`, `*`, `>`, `%`, spaces and other bytes outside letters, digits and /-_~+,;=:@!$&'() written %XX [default: ricochet.room.]
    #[arg(long, env = "RICOCHET_CLUSTER_SUBJECT_PREFIX", value_name = "PREFIX")]
    pub cluster_subject_prefix: Option<String>,
    /// With --cluster: refuse to start while no NATS server answers (by default the server starts, serves rooms locally and keeps trying)
    #[arg(long, env = "RICOCHET_CLUSTER_REQUIRED", value_parser = clap::builder::BoolishValueParser::new())]
    pub cluster_required: bool,
    /// With --cluster: the most message bytes waiting to be sent to NATS; past it, messages for other hosts are dropped and counted [default: 8MiB]
    #[arg(long, env = "RICOCHET_CLUSTER_QUEUE", value_name = "BYTES")]
    pub cluster_queue: Option<String>,
    /// On SIGINT/SIGTERM, how long to wait for clients to finish the close handshake [default: 5s]
    #[arg(long, env = "RICOCHET_SHUTDOWN_GRACE", value_name = "TIME")]
    pub shutdown_grace: Option<String>,
    /// Receive buffer per shard, shared by all its connections (epoll) [default: 128K]
    #[arg(long, env = "RICOCHET_READ_BUFFER", value_name = "BYTES")]
    pub read_buffer: Option<String>,
    /// I/O backend: auto (io_uring where the kernel allows it, else epoll), epoll or uring [default: auto]
    #[arg(long, env = "RICOCHET_BACKEND", value_name = "NAME")]
    pub backend: Option<String>,
    /// io_uring: submission queue entries per shard ring [default: 4096]
    #[arg(long, env = "RICOCHET_RING_ENTRIES", value_name = "N")]
    pub ring_entries: Option<String>,
    /// io_uring: the most provided receive buffers per shard, a power of two; idle connections hold none. A shard starts with 256 KiB of buffers and doubles them when receives find none free, up to this. Too few and receives stall (the `recv_starved` counter at exit): 1000 busy connections on one shard needed 128 [default: 128]
    #[arg(long, env = "RICOCHET_URING_BUFFERS", value_name = "N")]
    pub uring_buffers: Option<String>,
    /// io_uring: size of each provided receive buffer; a message that fits one is received and echoed in one piece [default: 128K]
    #[arg(long, env = "RICOCHET_URING_BUFFER_SIZE", value_name = "BYTES")]
    pub uring_buffer_size: Option<String>,
}

/// Which I/O backend drives the shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// io_uring if the start-up probe succeeds, epoll otherwise.
    Auto,
    /// mio over epoll.
    Epoll,
    /// io_uring with multishot receive over a provided buffer ring.
    Uring,
}

/// The config file: the same settings, kebab-case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileSettings {
    listen: Option<String>,
    tls_listen: Option<Vec<String>>,
    metrics_listen: Option<String>,
    proxy_protocol: Option<bool>,
    takeover: Option<PathBuf>,
    tls_cert: Option<Vec<PathBuf>>,
    tls_key: Option<Vec<PathBuf>>,
    tls_self_signed: Option<bool>,
    tls_client_ca: Option<PathBuf>,
    tls_client_auth: Option<String>,
    shards: Option<toml::Value>,
    pin: Option<bool>,
    share_port: Option<bool>,
    backlog: Option<toml::Value>,
    rcvbuf: Option<toml::Value>,
    sndbuf: Option<toml::Value>,
    nodelay: Option<bool>,
    max_connections: Option<toml::Value>,
    max_connections_per_ip: Option<toml::Value>,
    ipv6_prefix: Option<toml::Value>,
    max_message_rate: Option<toml::Value>,
    max_bytes_per_second: Option<toml::Value>,
    max_message_size: Option<toml::Value>,
    handshake_timeout: Option<toml::Value>,
    idle_timeout: Option<toml::Value>,
    close_timeout: Option<toml::Value>,
    #[serde(rename = "allowed-origin", alias = "allowed-origins")]
    allowed_origins: Option<Vec<String>>,
    allow_missing_origin: Option<bool>,
    path: Option<String>,
    permessage_deflate: Option<bool>,
    inflate_pool: Option<toml::Value>,
    auth_tokens: Option<PathBuf>,
    log_format: Option<String>,
    log_messages: Option<bool>,
    #[serde(rename = "subprotocol", alias = "subprotocols")]
    subprotocols: Option<Vec<String>>,
    reply: Option<String>,
    room_exclude_sender: Option<bool>,
    room_backlog: Option<toml::Value>,
    slow_member: Option<String>,
    max_rooms: Option<toml::Value>,
    cluster: Option<String>,
    cluster_ca: Option<PathBuf>,
    cluster_credentials: Option<PathBuf>,
    cluster_token_file: Option<PathBuf>,
    cluster_subject_prefix: Option<String>,
    cluster_required: Option<bool>,
    cluster_queue: Option<toml::Value>,
    shutdown_grace: Option<toml::Value>,
    read_buffer: Option<toml::Value>,
    backend: Option<String>,
    ring_entries: Option<toml::Value>,
    uring_buffers: Option<toml::Value>,
    uring_buffer_size: Option<toml::Value>,
}

/// Resolved, validated server settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Plain listen addresses (port 0: pick one): one, or each address a
    /// host name resolved to at start; none when only TLS is served.
    pub listen: Vec<SocketAddr>,
    /// `listen` was asked for (flag, variable or file), not the default.
    pub listen_set: bool,
    /// TLS listen addresses.
    pub tls_listen: Vec<SocketAddr>,
    /// The admin listener's address (metrics, status page), if any.
    pub metrics_listen: Option<SocketAddr>,
    /// Listeners require a PROXY protocol header first.
    pub proxy_protocol: bool,
    /// Where listeners are offered to and taken from (`--takeover`).
    pub takeover: Option<PathBuf>,
    /// Where the TLS certificates come from, when there are TLS listeners.
    pub tls: Option<CertSource>,
    /// Client certificates asked for on TLS listeners, if any.
    pub tls_client: Option<ClientAuth>,
    /// Number of shards.
    pub shards: usize,
    /// Pin each shard to a CPU.
    pub pin: bool,
    /// Bind even where another process listens (SO_REUSEPORT on purpose).
    pub share_port: bool,
    /// Listen backlog.
    pub backlog: i32,
    /// SO_RCVBUF, if set.
    pub rcvbuf: Option<usize>,
    /// SO_SNDBUF, if set.
    pub sndbuf: Option<usize>,
    /// TCP_NODELAY on accepted sockets.
    pub nodelay: bool,
    /// Upgraded connections per process.
    pub max_connections: usize,
    /// `max_connections` was asked for (flag, variable or file), not the default.
    pub max_connections_set: bool,
    /// Upgraded connections per client address, if limited.
    pub max_connections_per_ip: Option<u32>,
    /// IPv6 clients are counted per network of this prefix length.
    pub ipv6_prefix: u8,
    /// Per-connection rate limits, if any.
    pub rate: Option<crate::server::rate::RateLimit>,
    /// Graceful shutdown limit.
    pub shutdown_grace: Duration,
    /// Receive buffer per shard.
    pub read_buffer: usize,
    /// The I/O backend asked for.
    pub backend: Backend,
    /// io_uring submission queue entries.
    pub ring_entries: u32,
    /// io_uring provided buffers per shard.
    pub uring_buffers: u16,
    /// io_uring provided buffer size.
    pub uring_buffer_size: usize,
    /// Inflaters per shard for compressed messages that span reads.
    pub inflate_pool: usize,
    /// `--reply room`: the room settings (None for every other reply).
    pub rooms: Option<RoomSettings>,
    /// `--cluster`: how rooms reach other processes (None: they do not).
    pub cluster: Option<crate::cluster::ClusterSettings>,
    /// The bearer token file, if handshakes need a token.
    pub auth_tokens: Option<PathBuf>,
    /// How log lines are written.
    pub log_format: crate::logging::LogFormat,
    /// Protocol core settings.
    pub core: ws::Config,
}

impl Settings {
    /// Resolves flags (already merged with the environment by clap) over the
    /// config file over defaults, and validates every value.
    pub fn resolve(args: &ServeArgs) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(p) => read_file(p)?,
            None => FileSettings::default(),
        };
        let pick = |flag: &Option<String>, file: &Option<toml::Value>| -> Option<String> {
            flag.clone().or_else(|| file.as_ref().map(value_text))
        };
        let address = |setting: &'static str, text: &str| -> Result<SocketAddr, ConfigError> {
            addresses(setting, text).map(|a| a[0])
        };
        let tls_listen_text =
            if args.tls_listen.is_empty() { file.tls_listen.unwrap_or_default() } else { args.tls_listen.clone() };
        let mut tls_listen = Vec::new();
        for t in &tls_listen_text {
            tls_listen.extend(addresses("tls-listen", t)?);
        }
        // With TLS listeners and no plain one asked for, only TLS is served.
        let listen_set = args.listen.is_some() || file.listen.is_some();
        let listen = match args.listen.clone().or(file.listen) {
            Some(t) => addresses("listen", &t)?,
            None if tls_listen.is_empty() => addresses("listen", DEFAULT_LISTEN)?,
            None => Vec::new(),
        };
        let metrics_listen =
            args.metrics_listen.clone().or(file.metrics_listen).map(|t| address("metrics-listen", &t)).transpose()?;
        let tls_cert = if args.tls_cert.is_empty() { file.tls_cert.unwrap_or_default() } else { args.tls_cert.clone() };
        let tls_key = if args.tls_key.is_empty() { file.tls_key.unwrap_or_default() } else { args.tls_key.clone() };
        let self_signed = args.tls_self_signed || file.tls_self_signed.unwrap_or(false);
        let tls = tls_source(&tls_listen, tls_cert, tls_key, self_signed)?;
        let tls_client = client_auth(
            !tls_listen.is_empty(),
            args.tls_client_ca.clone().or(file.tls_client_ca),
            args.tls_client_auth.clone().or(file.tls_client_auth),
        )?;
        let shards = match pick(&args.shards, &file.shards) {
            Some(v) => parse_int("shards", &v, 1, 4096, "a whole number from 1 to 4096")? as usize,
            None => available_cpus().max(1),
        };
        let backlog = parse_int(
            "backlog",
            &pick(&args.backlog, &file.backlog).unwrap_or_else(|| "4096".into()),
            1,
            i32::MAX as u64,
            "a whole number of at least 1",
        )? as i32;
        let rcvbuf = pick(&args.rcvbuf, &file.rcvbuf).map(|v| parse_size("rcvbuf", &v, 1024, 1 << 30)).transpose()?;
        let sndbuf = pick(&args.sndbuf, &file.sndbuf).map(|v| parse_size("sndbuf", &v, 1024, 1 << 30)).transpose()?;
        let max_connections_set = pick(&args.max_connections, &file.max_connections).is_some();
        let max_connections = parse_int(
            "max-connections",
            &pick(&args.max_connections, &file.max_connections).unwrap_or_else(|| "100000".into()),
            1,
            u32::MAX as u64,
            "a whole number of at least 1",
        )? as usize;
        let max_connections_per_ip = pick(&args.max_connections_per_ip, &file.max_connections_per_ip)
            .map(|v| parse_int("max-connections-per-ip", &v, 1, u32::MAX as u64, "a whole number of at least 1"))
            .transpose()?
            .map(|n| n as u32);
        let ipv6_prefix = parse_int(
            "ipv6-prefix",
            &pick(&args.ipv6_prefix, &file.ipv6_prefix).unwrap_or_else(|| "64".into()),
            1,
            128,
            "a prefix length from 1 to 128",
        )? as u8;
        let max_message_rate = pick(&args.max_message_rate, &file.max_message_rate)
            .map(|v| parse_int("max-message-rate", &v, 1, 1 << 32, "a whole number of messages per second, at least 1"))
            .transpose()?;
        let max_bytes_per_second = pick(&args.max_bytes_per_second, &file.max_bytes_per_second)
            .map(|v| parse_size("max-bytes-per-second", &v, 1, 1 << 40))
            .transpose()?;
        let rate =
            (max_message_rate.is_some() || max_bytes_per_second.is_some()).then(|| crate::server::rate::RateLimit {
                messages_per_second: max_message_rate.map(|n| n as f64),
                bytes_per_second: max_bytes_per_second.map(|n| n as f64),
            });
        let max_message_size = parse_size(
            "max-message-size",
            &pick(&args.max_message_size, &file.max_message_size).unwrap_or_else(|| "16MiB".into()),
            1,
            1 << 40,
        )? as u64;
        let handshake_timeout = parse_duration(
            "handshake-timeout",
            &pick(&args.handshake_timeout, &file.handshake_timeout).unwrap_or_else(|| "10s".into()),
            false,
        )?;
        let idle = parse_duration(
            "idle-timeout",
            &pick(&args.idle_timeout, &file.idle_timeout).unwrap_or_else(|| "120s".into()),
            true,
        )?;
        let close_timeout = parse_duration(
            "close-timeout",
            &pick(&args.close_timeout, &file.close_timeout).unwrap_or_else(|| "5s".into()),
            false,
        )?;
        let shutdown_grace = parse_duration(
            "shutdown-grace",
            &pick(&args.shutdown_grace, &file.shutdown_grace).unwrap_or_else(|| "5s".into()),
            true,
        )?;
        let read_buffer = parse_size(
            "read-buffer",
            &pick(&args.read_buffer, &file.read_buffer).unwrap_or_else(|| "128K".into()),
            4096,
            64 << 20,
        )?;
        let backend_text = args.backend.clone().or(file.backend).unwrap_or_else(|| "auto".into());
        let backend = match backend_text.as_str() {
            "auto" => Backend::Auto,
            "epoll" => Backend::Epoll,
            "uring" => Backend::Uring,
            _ => {
                return Err(ConfigError::Invalid {
                    setting: "backend",
                    value: backend_text,
                    allowed: "auto, epoll or uring",
                })
            }
        };
        let ring_entries = parse_int(
            "ring-entries",
            &pick(&args.ring_entries, &file.ring_entries).unwrap_or_else(|| "4096".into()),
            8,
            32768,
            "a whole number from 8 to 32768",
        )? as u32;
        let uring_buffers_text = pick(&args.uring_buffers, &file.uring_buffers).unwrap_or_else(|| "128".into());
        let uring_buffers =
            parse_int("uring-buffers", &uring_buffers_text, 1, 32768, "a power of two from 1 to 32768")?;
        if !uring_buffers.is_power_of_two() {
            return Err(ConfigError::Invalid {
                setting: "uring-buffers",
                value: uring_buffers_text,
                allowed: "a power of two from 1 to 32768",
            });
        }
        let uring_buffer_size = parse_size(
            "uring-buffer-size",
            &pick(&args.uring_buffer_size, &file.uring_buffer_size).unwrap_or_else(|| "128K".into()),
            512,
            1 << 20,
        )?;
        let reply_text = args.reply.clone().or(file.reply).unwrap_or_else(|| "echo".into());
        let reply = match reply_text.as_str() {
            "echo" => Reply::Echo,
            "pong" => Reply::fixed_text("Pong"),
            "room" => Reply::Collect,
            _ => {
                return Err(ConfigError::Invalid { setting: "reply", value: reply_text, allowed: "echo, pong or room" })
            }
        };
        let room_backlog = parse_size(
            "room-backlog",
            &pick(&args.room_backlog, &file.room_backlog).unwrap_or_else(|| "1MiB".into()),
            1024,
            1 << 40,
        )?;
        let slow_member = match args.slow_member.clone().or(file.slow_member).as_deref() {
            None | Some("close") => SlowMember::Close,
            Some("drop") => SlowMember::Drop,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    setting: "slow-member",
                    value: other.into(),
                    allowed: "close or drop",
                })
            }
        };
        let max_rooms = parse_int(
            "max-rooms",
            &pick(&args.max_rooms, &file.max_rooms).unwrap_or_else(|| "100000".into()),
            1,
            1 << 32,
            "a whole number from 1 to 4294967296",
        )? as usize;
        let rooms = (reply == Reply::Collect).then(|| RoomSettings {
            exclude_sender: args.room_exclude_sender || file.room_exclude_sender.unwrap_or(false),
            backlog: room_backlog,
            slow_member,
            max_rooms,
        });
        let cluster = crate::cluster::ClusterSettings::resolve(
            crate::cluster::settings::Given {
                servers: args.cluster.clone().or(file.cluster),
                ca: args.cluster_ca.clone().or(file.cluster_ca),
                credentials: args.cluster_credentials.clone().or(file.cluster_credentials),
                token_file: args.cluster_token_file.clone().or(file.cluster_token_file),
                subject_prefix: args.cluster_subject_prefix.clone().or(file.cluster_subject_prefix),
                required: args.cluster_required || file.cluster_required.unwrap_or(false),
                queue: pick(&args.cluster_queue, &file.cluster_queue),
            },
            rooms.is_some(),
        )?;
        let path = args.path.clone().or(file.path);
        if let Some(p) = &path {
            if !p.starts_with('/') {
                return Err(ConfigError::Invalid {
                    setting: "path",
                    value: p.clone(),
                    allowed: "an absolute path starting with /",
                });
            }
        }
        let allowed_origins = if args.allowed_origins.is_empty() {
            file.allowed_origins.unwrap_or_default()
        } else {
            args.allowed_origins.clone()
        };
        // An empty entry would match no Origin at all and lock every browser out.
        if let Some(bad) = allowed_origins.iter().find(|o| o.trim().is_empty() || o.trim() != o.as_str()) {
            return Err(ConfigError::Invalid {
                setting: "allowed-origin",
                value: bad.clone(),
                allowed:
                    "an origin such as https://app.example, without spaces; leave the setting out to allow every origin",
            });
        }
        let allow_missing_origin = args.allow_missing_origin || file.allow_missing_origin.unwrap_or(false);
        let permessage_deflate = args.permessage_deflate || file.permessage_deflate.unwrap_or(false);
        let log_messages = args.log_messages || file.log_messages.unwrap_or(false);
        let subprotocols = if args.subprotocols.is_empty() {
            file.subprotocols.unwrap_or_default()
        } else {
            args.subprotocols.clone()
        };
        // RFC 6455 §4.1: a subprotocol name is a token (RFC 9110 §5.6.2).
        let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if let Some(bad) = subprotocols.iter().find(|p| p.is_empty() || !p.chars().all(token_char)) {
            return Err(ConfigError::Invalid {
                setting: "subprotocol",
                value: bad.clone(),
                allowed: "a name of letters, digits and !#$%&'*+-.^_`|~, such as chat.v1",
            });
        }
        let auth_tokens = args.auth_tokens.clone().or(file.auth_tokens);
        let log_format = match args.log_format.clone().or(file.log_format).as_deref() {
            None | Some("text") => crate::logging::LogFormat::Text,
            Some("json") => crate::logging::LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    setting: "log-format",
                    value: other.into(),
                    allowed: "text or json",
                })
            }
        };
        let inflate_pool = parse_int(
            "inflate-pool",
            &pick(&args.inflate_pool, &file.inflate_pool).unwrap_or_else(|| "64".into()),
            1,
            1 << 20,
            "a whole number from 1 to 1048576",
        )? as usize;
        let defaults = ws::Config::default();
        Ok(Settings {
            listen,
            tls_listen,
            metrics_listen,
            proxy_protocol: args.proxy_protocol || file.proxy_protocol.unwrap_or(false),
            takeover: args.takeover.clone().or(file.takeover),
            tls,
            tls_client,
            shards,
            pin: !args.no_pin && file.pin.unwrap_or(true),
            share_port: args.share_port || file.share_port.unwrap_or(false),
            backlog,
            rcvbuf,
            sndbuf,
            nodelay: !args.no_nodelay && file.nodelay.unwrap_or(true),
            max_connections,
            max_connections_set,
            listen_set,
            max_connections_per_ip,
            ipv6_prefix,
            rate,
            shutdown_grace,
            read_buffer,
            backend,
            ring_entries,
            uring_buffers: uring_buffers as u16,
            uring_buffer_size,
            inflate_pool,
            auth_tokens,
            log_format,
            rooms,
            cluster,
            core: ws::Config {
                handshake: HandshakePolicy {
                    allowed_origins,
                    allow_missing_origin,
                    path,
                    permessage_deflate,
                    subprotocols,
                    ..defaults.handshake
                },
                max_message_size,
                reply,
                handshake_timeout,
                idle_timeout: (!idle.is_zero()).then_some(idle),
                close_timeout,
                log_messages,
            },
        })
    }
}

/// Client certificates on TLS listeners (RFC 8446 §4.3.2): whom they must chain to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAuth {
    /// PEM file of the CA certificates a client certificate must chain to.
    pub ca: PathBuf,
    /// A client may connect without a certificate (one it presents must still be valid).
    pub optional: bool,
}

/// Checks `--tls-client-ca` and `--tls-client-auth` fit together.
fn client_auth(tls: bool, ca: Option<PathBuf>, mode: Option<String>) -> Result<Option<ClientAuth>, ConfigError> {
    let optional = match mode.as_deref() {
        None | Some("required") => false,
        Some("optional") => true,
        Some(other) => {
            return Err(ConfigError::Invalid {
                setting: "tls-client-auth",
                value: other.into(),
                allowed: "required or optional",
            })
        }
    };
    match (ca, tls) {
        (None, _) if mode.is_some() => Err(ConfigError::Invalid {
            setting: "tls-client-auth",
            value: mode.unwrap_or_default(),
            allowed: "only with --tls-client-ca FILE, the CA client certificates must chain to",
        }),
        (None, _) => Ok(None),
        (Some(ca), false) => Err(ConfigError::Invalid {
            setting: "tls-client-ca",
            value: ca.display().to_string(),
            allowed: "only with --tls-listen: client certificates are part of TLS",
        }),
        (Some(ca), true) => Ok(Some(ClientAuth { ca, optional })),
    }
}

/// Checks the TLS settings fit together; the files are read at start.
fn tls_source(
    listen: &[SocketAddr],
    certs: Vec<PathBuf>,
    keys: Vec<PathBuf>,
    self_signed: bool,
) -> Result<Option<CertSource>, ConfigError> {
    let invalid = |setting, value: String, allowed| Err(ConfigError::Invalid { setting, value, allowed });
    if listen.is_empty() {
        if self_signed || !certs.is_empty() || !keys.is_empty() {
            return invalid(
                "tls-listen",
                String::new(),
                "an address such as 0.0.0.0:8443: TLS certificates were given but no TLS listener",
            );
        }
        return Ok(None);
    }
    if self_signed {
        if !certs.is_empty() || !keys.is_empty() {
            return invalid(
                "tls-self-signed",
                "true".into(),
                "either --tls-self-signed or --tls-cert/--tls-key, not both",
            );
        }
        return Ok(Some(CertSource::SelfSigned));
    }
    if certs.is_empty() || certs.len() != keys.len() {
        return invalid(
            "tls-cert",
            format!("{} certificate(s), {} key(s)", certs.len(), keys.len()),
            "--tls-listen needs --tls-cert FILE and --tls-key FILE in pairs (or --tls-self-signed to try it out)",
        );
    }
    Ok(Some(CertSource::Files(certs.into_iter().zip(keys).collect())))
}

/// The addresses `text` names: an IP address and port, or a host name and
/// port resolved now (`localhost:8080` is 127.0.0.1 and ::1), each once.
fn addresses(setting: &'static str, text: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    let text = text.trim();
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    let invalid = |allowed| ConfigError::Invalid { setting, value: text.into(), allowed };
    let (host, port) =
        text.rsplit_once(':').ok_or(invalid("an address and port, e.g. 0.0.0.0:8080, [::1]:9001 or localhost:8080"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(invalid("an address and port, e.g. 0.0.0.0:8080, [::1]:9001 or localhost:8080"));
    }
    let mut out: Vec<SocketAddr> = Vec::new();
    for a in std::net::ToSocketAddrs::to_socket_addrs(text)
        .map_err(|_| invalid("a host name this host can resolve, and a port"))?
    {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    if out.is_empty() {
        return Err(invalid("a host name this host can resolve, and a port"));
    }
    Ok(out)
}

/// CPUs this process may run on (its affinity mask, so taskset and cpuset
/// cgroups are respected).
pub fn available_cpus() -> usize {
    core_affinity::get_core_ids().map(|c| c.len()).unwrap_or(1)
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    toml::from_str(&text).map_err(|e| {
        // PATH:LINE:COLUMN, as compilers say it, from the parser's span.
        let at = e.span().map(|r| line_column(&text, r.start));
        let place = at.map_or_else(|| path.display().to_string(), |(l, c)| format!("{}:{l}:{c}", path.display()));
        ConfigError::Parse { path: PathBuf::from(place), message: e.message().replace('\n', " ") }
    })
}

/// The 1-based line and column (in characters) of byte `at` of `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl ConfigError {
    /// The setting an invalid value belongs to, if that is what this is.
    fn setting(&self) -> Option<&'static str> {
        match self {
            ConfigError::Invalid { setting, .. } | ConfigError::Size { setting, .. } => Some(setting),
            _ => None,
        }
    }

    /// Where the invalid value came from, for the one-line error: the flag
    /// (`--NAME` on the command line), the variable (`RICOCHET_NAME`), or
    /// the config file and the line that sets it; `None` if unknown.
    pub fn origin(&self, args: &ServeArgs, argv: &[String]) -> Option<String> {
        let setting = self.setting()?;
        let flag = format!("--{setting}");
        if argv.iter().any(|a| *a == flag || a.starts_with(&format!("{flag}="))) {
            return Some(format!("from {flag}"));
        }
        let var = format!("RICOCHET_{}", setting.to_ascii_uppercase().replace('-', "_"));
        if std::env::var_os(&var).is_some() {
            return Some(format!("from the environment variable {var}"));
        }
        let path = args.config.as_ref()?;
        let text = std::fs::read_to_string(path).ok()?;
        let key = setting.replace('-', "_");
        let line = text.lines().position(|l| {
            let l = l.trim_start();
            let name = l.split(['=', ' ', '\t']).next().unwrap_or("");
            !l.starts_with('#') && (name == setting || name == key)
        })?;
        Some(format!("from {}:{}", path.display(), line + 1))
    }
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn parse_int(setting: &'static str, v: &str, min: u64, max: u64, allowed: &'static str) -> Result<u64, ConfigError> {
    v.trim().parse::<u64>().ok().filter(|n| (min..=max).contains(n)).ok_or_else(|| ConfigError::Invalid {
        setting,
        value: v.into(),
        allowed,
    })
}

/// Parses `65536`, `64K`, `64KiB`, `16M`, `16MiB`, `1G` (binary multiples).
pub fn parse_size(setting: &'static str, v: &str, min: usize, max: usize) -> Result<usize, ConfigError> {
    let err = || ConfigError::Size { setting, value: v.into(), min: size_text(min), max: size_text(max) };
    let t = v.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: usize = num.parse().map_err(|_| err())?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(err()),
    };
    n.checked_mul(mult).filter(|b| (min..=max).contains(b)).ok_or_else(err)
}

/// A size as it would be written on the command line: `4K`, `16M`, `1G`, or bytes.
fn size_text(n: usize) -> String {
    match n {
        0 => "0".into(),
        n if n % (1 << 30) == 0 => format!("{}G", n >> 30),
        n if n % (1 << 20) == 0 => format!("{}M", n >> 20),
        n if n % (1 << 10) == 0 => format!("{}K", n >> 10),
        n => n.to_string(),
    }
}

/// Parses `10s`, `500ms`, `2m`, or plain seconds; `0` only where allowed.
pub fn parse_duration(setting: &'static str, v: &str, zero_ok: bool) -> Result<Duration, ConfigError> {
    let t = v.trim();
    let d = match t.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(t),
    };
    d.ok().filter(|d| zero_ok || !d.is_zero()).ok_or_else(|| ConfigError::Invalid {
        setting,
        value: v.into(),
        allowed: if zero_ok {
            "a duration such as 500ms, 10s, 2m (0 disables)"
        } else {
            "a positive duration such as 500ms, 10s, 2m"
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_resolve_to_each_of_their_addresses() {
        let args = ServeArgs { listen: Some("localhost:8080".into()), ..Default::default() };
        let s = Settings::resolve(&args).unwrap();
        assert!(s.listen.contains(&"127.0.0.1:8080".parse().unwrap()), "{:?}", s.listen);
        assert!(s.listen.iter().all(|a| a.ip().is_loopback() && a.port() == 8080), "{:?}", s.listen);
        for bad in ["localhost", "localhost:http", "no-such-host.invalid:80", ":80"] {
            let args = ServeArgs { listen: Some(bad.into()), ..Default::default() };
            let e = Settings::resolve(&args).unwrap_err().to_string();
            assert!(e.contains("invalid listen"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_close_timeout_is_a_setting() {
        let args = ServeArgs { close_timeout: Some("750ms".into()), ..Default::default() };
        assert_eq!(Settings::resolve(&args).unwrap().core.close_timeout, Duration::from_millis(750));
        let args = ServeArgs { close_timeout: Some("0".into()), ..Default::default() };
        let e = Settings::resolve(&args).unwrap_err().to_string();
        assert!(e.contains("close-timeout"), "{e}");
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::resolve(&ServeArgs::default()).unwrap();
        assert_eq!(s.listen, vec![DEFAULT_LISTEN.parse::<SocketAddr>().unwrap()]);
        assert!(s.tls_listen.is_empty() && s.tls.is_none());
        assert_eq!(s.backlog, 4096);
        assert_eq!((s.rcvbuf, s.sndbuf), (None, None));
        assert!(s.nodelay && s.pin);
        assert_eq!(s.core.max_message_size, 16 << 20);
        assert_eq!(s.core.handshake_timeout, Duration::from_secs(10));
        assert_eq!(s.core.idle_timeout, Some(Duration::from_secs(120)));
        assert_eq!(s.core.close_timeout, Duration::from_secs(5));
        assert_eq!(s.shutdown_grace, Duration::from_secs(5));
        assert_eq!(s.core.reply, Reply::Echo);
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("x", "64K", 1, usize::MAX).unwrap(), 65536);
        assert_eq!(parse_size("x", "16MiB", 1, usize::MAX).unwrap(), 16 << 20);
        assert!(parse_size("x", "12Q", 1, usize::MAX).is_err());
        let e = parse_size("read-buffer", "512", 4096, 1 << 30).unwrap_err().to_string();
        assert_eq!(e, r#"invalid read-buffer "512": a size from 4K to 1G, e.g. 65536, 64K, 16MiB"#);
        assert_eq!(parse_duration("x", "500ms", false).unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("x", "30", false).unwrap(), Duration::from_secs(30));
        assert!(parse_duration("x", "0", false).is_err());
    }

    #[test]
    fn file_is_overridden_by_flags() {
        let dir = std::env::temp_dir().join(format!("ricochet-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("r.toml");
        std::fs::write(&f, "backlog = 128\nidle-timeout = \"0\"\nreply = \"pong\"\nallowed-origin = [\"https://a\"]\n")
            .unwrap();
        let args = ServeArgs { config: Some(f.clone()), backlog: Some("256".into()), ..Default::default() };
        let s = Settings::resolve(&args).unwrap();
        assert_eq!(s.backlog, 256);
        assert_eq!(s.core.idle_timeout, None);
        assert_eq!(s.core.reply, Reply::fixed_text("Pong"));
        assert_eq!(s.core.handshake.allowed_origins, vec!["https://a".to_string()]);
        // The older key still works.
        std::fs::write(&f, "allowed-origins = [\"https://b\"]\nallow-missing-origin = true\n").unwrap();
        let s = Settings::resolve(&args).unwrap();
        assert_eq!(s.core.handshake.allowed_origins, vec!["https://b".to_string()]);
        assert!(s.core.handshake.allow_missing_origin);
        std::fs::write(&f, "bogus = 1\n").unwrap();
        let e = Settings::resolve(&args).unwrap_err().to_string();
        assert!(e.contains("unknown field") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn tls_settings_fit_together() {
        let tls = |l: &[&str], c: &[&str], k: &[&str], ss: bool| ServeArgs {
            tls_listen: l.iter().map(|s| s.to_string()).collect(),
            tls_cert: c.iter().map(PathBuf::from).collect(),
            tls_key: k.iter().map(PathBuf::from).collect(),
            tls_self_signed: ss,
            ..Default::default()
        };
        let s = Settings::resolve(&tls(&["127.0.0.1:8443"], &["a.pem"], &["a.key"], false)).unwrap();
        assert!(s.listen.is_empty(), "TLS only when no --listen is given");
        assert_eq!(s.tls, Some(CertSource::Files(vec![("a.pem".into(), "a.key".into())])));
        let s = Settings::resolve(&ServeArgs {
            listen: Some("127.0.0.1:8080".into()),
            ..tls(&["127.0.0.1:8443"], &[], &[], true)
        })
        .unwrap();
        assert!(!s.listen.is_empty() && s.tls == Some(CertSource::SelfSigned));
        for (args, setting) in [
            (tls(&["127.0.0.1:8443"], &[], &[], false), "invalid tls-cert"),
            (tls(&["127.0.0.1:8443"], &["a.pem", "b.pem"], &["a.key"], false), "invalid tls-cert"),
            (tls(&[], &["a.pem"], &["a.key"], false), "invalid tls-listen"),
            (tls(&["127.0.0.1:8443"], &["a.pem"], &["a.key"], true), "invalid tls-self-signed"),
            (tls(&["nowhere"], &[], &[], true), "invalid tls-listen"),
        ] {
            let e = Settings::resolve(&args).unwrap_err().to_string();
            assert!(e.starts_with(setting), "{e}");
        }
    }

    #[test]
    fn an_empty_origin_is_refused() {
        for o in ["", " ", " https://a"] {
            let args = ServeArgs { allowed_origins: vec![o.into()], ..Default::default() };
            let e = Settings::resolve(&args).unwrap_err().to_string();
            assert!(e.starts_with("invalid allowed-origin"), "{e}");
        }
    }

    #[test]
    fn invalid_values_name_the_setting() {
        let args = ServeArgs { shards: Some("0".into()), ..Default::default() };
        let e = Settings::resolve(&args).unwrap_err().to_string();
        assert_eq!(e, "invalid shards \"0\": a whole number from 1 to 4096");
    }
}
