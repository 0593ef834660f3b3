//! `ricochet tune`: audit a host's kernel settings for a stated load.
//!
//! Reads the live values (sysctls under `/proc/sys`, this process's
//! RLIMIT_NOFILE, CPUs, io_uring, each NIC's queue count under
//! `/sys/class/net`), compares each with what the load needs, and says what
//! to change and the exact command that changes it. Buffer sizes come from
//! the bandwidth-delay product: a TCP connection can only keep `window`
//! bytes in flight per round trip, so filling a path of bandwidth B and
//! round-trip time RTT needs a window of B x RTT bytes. docs/tuning.md
//! explains each rule.
//!
//! Every path is relative to a root (`/` on a real host) so that the rules can
//! be tested against a fake tree.

use crate::server::config::{parse_duration, ConfigError};
use clap::{Args, ValueEnum};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned table for people.
    Table,
    /// A JSON object for machines: the load audited and the findings.
    Json,
}

/// `ricochet tune` flags.
#[derive(Args, Debug, Clone)]
pub struct TuneArgs {
    /// Concurrent connections the host must hold
    #[arg(long, default_value_t = 100_000)]
    pub connections: u64,
    /// Bandwidth of one busy connection's path, e.g. 10Gbit, 1Gbit, 100Mbit
    #[arg(long, default_value = "10Gbit")]
    pub bandwidth: String,
    /// Round-trip time of that path, e.g. 100us, 1ms, 50ms
    #[arg(long, default_value = "1ms")]
    pub rtt: String,
    /// table (for people) or json (an object: the load and a list of findings)
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Which host this is: server (runs `ricochet serve`), load-generator (runs `ricochet bench` or other clients: wide source port range, TIME_WAIT reuse), or both on one host
    #[arg(long, value_enum, default_value_t = Role::Server)]
    pub role: Role,
    /// The server's listen port, kept out of the ephemeral port range (ip_local_reserved_ports) so outgoing connections cannot take it (repeatable)
    #[arg(long = "listen-port", value_name = "PORT", default_value = "8080", value_delimiter = ',')]
    pub listen_ports: Vec<u16>,
    /// Write the recommended sysctls to /etc/sysctl.d/99-ricochet-tune.conf and load them (root only)
    #[arg(long)]
    pub apply: bool,
    /// Root of the tree to audit (tests point this at a fake /proc and /sys)
    #[arg(long, default_value = "/", hide = true)]
    pub root: PathBuf,
}

/// Why the audit could not run.
#[derive(Debug, Error)]
pub enum TuneError {
    /// A flag value is invalid.
    #[error("invalid {setting} {value:?}: {allowed}")]
    Invalid {
        /// Flag.
        setting: &'static str,
        /// Value.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// A duration flag is invalid.
    #[error(transparent)]
    Setting(#[from] ConfigError),
    /// `--apply` needs root.
    #[error("--apply changes kernel settings and must run as root")]
    NotRoot,
    /// Writing a setting failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// File.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Which side of the traffic a host is on; each has its own settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Runs `ricochet serve`.
    Server,
    /// Opens many outgoing connections (`ricochet bench`, test clients).
    LoadGenerator,
    /// Both on one host.
    Both,
}

impl Role {
    fn includes(self, side: Role) -> bool {
        self == Role::Both || self == side
    }
}

/// What to do about a setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Good for the stated load.
    Ok,
    /// Too low.
    Raise,
    /// Too high (costs memory or CPU for nothing).
    Lower,
    /// A mode set to another mode (not a quantity: neither more nor less).
    Change,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Raise => "raise",
            Status::Lower => "lower",
            Status::Change => "change",
        }
    }
}

/// One line of the audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The setting (a sysctl name, `RLIMIT_NOFILE`, `nic:<iface>` ...).
    pub setting: String,
    /// Its current value, or `unavailable`.
    pub current: String,
    /// The recommended value for the load.
    pub recommended: String,
    /// ok, raise, lower, or change (a mode, not a quantity).
    pub status: Status,
    /// The command that applies the recommendation (empty when ok).
    pub fix: String,
    /// Why, in a few words.
    pub why: String,
    /// For sysctls: the value `--apply` writes.
    pub sysctl_value: Option<String>,
    /// The side it matters to: [`Role::Server`] or [`Role::LoadGenerator`].
    pub side: Role,
}

/// The load the host is audited for.
#[derive(Clone, Debug, PartialEq)]
pub struct Load {
    /// Concurrent connections.
    pub connections: u64,
    /// Bits per second of one busy path.
    pub bandwidth_bps: f64,
    /// Round-trip time.
    pub rtt: Duration,
    /// Which side of the traffic this host is on.
    pub role: Role,
    /// The server's listen ports, to keep out of the ephemeral range.
    pub listen_ports: Vec<u16>,
}

impl Load {
    /// Bandwidth-delay product in bytes: what one connection must keep in
    /// flight to fill its path (window = bandwidth x RTT).
    pub fn bdp_bytes(&self) -> u64 {
        (self.bandwidth_bps / 8.0 * self.rtt.as_secs_f64()).round() as u64
    }
}

/// Parses `10Gbit`, `1Gbit`, `100Mbit`, `2.5G`, `100M` (bits per second; `bps`, `bit/s` also accepted).
pub fn parse_rate(v: &str) -> Option<f64> {
    let t = v.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches("bit/s").trim_end_matches("bps").trim_end_matches("bit").trim_end_matches("b/s");
    let mult = match unit {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        _ => return None,
    };
    (n > 0.0).then_some(n * mult)
}

/// Reads a sysctl (e.g. `net.core.somaxconn`) under `root`.
pub fn read_sysctl(root: &Path, key: &str) -> Option<String> {
    let path = sysctl_path(root, key);
    std::fs::read_to_string(path).ok().map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn sysctl_path(root: &Path, key: &str) -> PathBuf {
    root.join("proc/sys").join(key.replace('.', "/"))
}

/// Numbers of a sysctl value (`tcp_rmem` has three).
fn numbers(v: &str) -> Vec<u64> {
    v.split_whitespace().filter_map(|x| x.parse().ok()).collect()
}

/// What the host has, read once.
#[derive(Clone, Debug)]
pub struct Host {
    /// Tree root.
    pub root: PathBuf,
    /// Soft RLIMIT_NOFILE of this process.
    pub nofile: u64,
    /// CPUs this process may run on.
    pub cpus: usize,
    /// Page size in bytes.
    pub page_size: u64,
    /// Physical memory in bytes.
    pub mem_bytes: u64,
    /// The io_uring probe's answer (live hosts only; `None` judges by the sysctl alone).
    pub uring: Option<Result<(), String>>,
}

impl Host {
    /// The live host.
    pub fn live(root: &Path) -> Host {
        // SAFETY: sysconf has no preconditions.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
        let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) }.max(0) as u64;
        Host {
            root: root.to_owned(),
            nofile: nofile_limit().0,
            cpus: crate::server::config::available_cpus(),
            page_size,
            mem_bytes: pages * page_size,
            uring: (root == Path::new("/"))
                .then(|| crate::io::uring::probe::probe().map(|_| ()).map_err(|e| e.to_string())),
        }
    }
}

/// The soft and hard RLIMIT_NOFILE of this process.
pub fn nofile_limit() -> (u64, u64) {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct passed.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
    (l.rlim_cur, l.rlim_max)
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    let (soft, hard) = nofile_limit();
    if soft < hard {
        let l = libc::rlimit { rlim_cur: hard, rlim_max: hard };
        // SAFETY: setrlimit only reads the struct passed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) } == 0 {
            return hard;
        }
    }
    soft
}

const MIB: u64 = 1 << 20;

/// A sysctl that must be at least `want` (single number).
fn at_least(host: &Host, key: &str, want: u64, why: &str) -> Finding {
    let cur = read_sysctl(&host.root, key);
    let status = match cur.as_deref().and_then(|c| numbers(c).first().copied()) {
        Some(v) if v >= want => Status::Ok,
        _ => Status::Raise,
    };
    sysctl_finding(key, cur, want.to_string(), status, why)
}

/// A sysctl that should be exactly `want`.
fn exactly(host: &Host, key: &str, want: u64, why: &str) -> Finding {
    let cur = read_sysctl(&host.root, key);
    let status = match cur.as_deref().and_then(|c| numbers(c).first().copied()) {
        Some(v) if v == want => Status::Ok,
        Some(v) if v > want => Status::Lower,
        _ => Status::Raise,
    };
    sysctl_finding(key, cur, want.to_string(), status, why)
}

/// A sysctl whose values are modes, not quantities (tcp_tw_reuse: 0 off, 1
/// everywhere, 2 loopback only): anything but `want` is to change.
fn mode(host: &Host, key: &str, want: u64, why: &str) -> Finding {
    let mut f = exactly(host, key, want, why);
    if f.status != Status::Ok {
        f.status = Status::Change;
    }
    f
}

/// A three-number sysctl (min default max) judged by its third number.
fn triple_max(host: &Host, key: &str, min_default: (u64, u64), want_max: u64, why: &str) -> Finding {
    let cur = read_sysctl(&host.root, key);
    let nums = cur.as_deref().map(numbers).unwrap_or_default();
    let (lo, def) = match nums.as_slice() {
        [a, b, _] => ((*a).min(min_default.0).max(1), (*b).max(min_default.1)),
        _ => min_default,
    };
    let status = match nums.get(2) {
        Some(&m) if m >= want_max => Status::Ok,
        _ => Status::Raise,
    };
    sysctl_finding(key, cur, format!("{lo} {def} {want_max}"), status, why)
}

fn sysctl_finding(key: &str, cur: Option<String>, rec: String, status: Status, why: &str) -> Finding {
    let fix = if status == Status::Ok { String::new() } else { format!("sysctl -w {key}=\"{rec}\"") };
    Finding {
        setting: key.into(),
        current: cur.unwrap_or_else(|| "unavailable".into()),
        recommended: rec.clone(),
        status,
        fix,
        why: why.into(),
        sysctl_value: Some(rec),
        side: Role::Server,
    }
}

/// The same finding, as advice for the load generator's host.
fn for_load_generator(mut f: Finding) -> Finding {
    f.side = Role::LoadGenerator;
    f
}

/// Rounds up to a power of two (buffer sizes read better that way).
fn pow2(n: u64) -> u64 {
    n.max(1).next_power_of_two()
}

/// Audits `host` for `load`.
pub fn audit(host: &Host, load: &Load) -> Vec<Finding> {
    let bdp = load.bdp_bytes();
    // Receive autotuning sizes the window up to tcp_rmem's max, of which the
    // kernel offers about half as window (the rest covers skb overhead,
    // net.ipv4.tcp_adv_win_scale), hence 2 x BDP.
    let buf_max = pow2(2 * bdp).max(6 * MIB);
    let n = load.connections;
    let files = n + 1024;
    let mut f = vec![
        at_least(host, "net.core.somaxconn", 4096, "caps every listen backlog (ricochet's default is 4096)"),
        at_least(host, "net.ipv4.tcp_max_syn_backlog", 8192, "half-open connections queued during a connect burst"),
        at_least(host, "net.core.rmem_max", buf_max, "largest SO_RCVBUF a socket may ask for: 2 x BDP"),
        at_least(host, "net.core.wmem_max", buf_max, "largest SO_SNDBUF a socket may ask for: 2 x BDP"),
        triple_max(host, "net.ipv4.tcp_rmem", (4096, 131072), buf_max, "receive autotuning range; max 2 x BDP"),
        triple_max(host, "net.ipv4.tcp_wmem", (4096, 16384), buf_max, "send autotuning range; max 2 x BDP"),
        tcp_mem(host, load),
        at_least(host, "net.core.netdev_max_backlog", 16384, "packets queued per CPU before the stack drops them"),
        at_least(host, "fs.nr_open", files, "per-process file limit ceiling: one per connection plus slack"),
        at_least(host, "fs.file-max", files + 65536, "system-wide open files"),
        nofile(host, files),
        // Reserve before widening: `--apply` writes in this order.
        reserved_ports(host, load),
        for_load_generator(port_range(host, n)),
        for_load_generator(mode(
            host,
            "net.ipv4.tcp_tw_reuse",
            1,
            "load generator side: reuse TIME_WAIT ports for new connections",
        )),
        at_most(
            host,
            "net.ipv4.tcp_notsent_lowat",
            131072,
            "unsent bytes a socket buffers: less memory, less latency per slow client",
        ),
        exactly(
            host,
            "net.ipv4.tcp_migrate_req",
            1,
            "a closing SO_REUSEPORT listener hands its queued connections to another instead of resetting them",
        ),
        exactly(host, "net.core.busy_poll", 0, "busy polling burns a core; only for dedicated cores"),
        exactly(host, "net.core.busy_read", 0, "busy polling burns a core; only for dedicated cores"),
        cpus(host),
    ];
    f.extend(io_uring(host));
    f.extend(nics(host));
    f.retain(|x| load.role.includes(x.side) || x.side == Role::Both);
    f
}

/// Port ranges of `ip_local_reserved_ports` (`8080,9000-9010`).
fn port_ranges(v: &str) -> Vec<(u16, u16)> {
    v.split([',', ' ', '\t'])
        .filter_map(|p| {
            let (lo, hi) = p.split_once('-').unwrap_or((p, p));
            Some((lo.trim().parse().ok()?, hi.trim().parse().ok()?))
        })
        .collect()
}

/// The listen ports must be kept out of the ephemeral range: an outgoing
/// connection that takes port 8080 as its source port would stop the server
/// from binding it. Needed wherever the range covers a listen port, and
/// always for a load generator, whose range this audit widens to 1024-65535.
/// Judged against the range as it is now and as `--apply` would leave it.
fn reserved_ports(host: &Host, load: &Load) -> Finding {
    let key = "net.ipv4.ip_local_reserved_ports";
    let cur = read_sysctl(&host.root, key);
    let mut ranges = cur.as_deref().map(port_ranges).unwrap_or_default();
    let range = read_sysctl(&host.root, "net.ipv4.ip_local_port_range").map(|v| numbers(&v)).unwrap_or_default();
    let in_range = |p: u16| match range.as_slice() {
        [lo, hi] => (*lo..=*hi).contains(&u64::from(p)),
        _ => false,
    };
    let exposed = load.listen_ports.iter().any(|&p| in_range(p) || load.role.includes(Role::LoadGenerator));
    let missing: Vec<u16> =
        load.listen_ports.iter().copied().filter(|&p| !ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&p))).collect();
    ranges.extend(missing.iter().map(|&p| (p, p)));
    ranges.sort_unstable();
    ranges.dedup();
    let rec =
        ranges.iter().map(|&(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") }).collect::<Vec<_>>();
    let status = if missing.is_empty() || !exposed { Status::Ok } else { Status::Raise };
    // Not exposed: nothing to reserve, so the row recommends what is there.
    let rec = if status == Status::Ok && !missing.is_empty() {
        cur.clone().filter(|c| !c.trim().is_empty()).unwrap_or_else(|| "(none needed)".into())
    } else {
        rec.join(",")
    };
    let mut f = sysctl_finding(
        key,
        cur,
        rec,
        status,
        "the server's listen ports, kept out of the ephemeral range so outgoing connections cannot take them",
    );
    f.side = Role::Both;
    f
}

/// A sysctl that should be at most `want`.
fn at_most(host: &Host, key: &str, want: u64, why: &str) -> Finding {
    let cur = read_sysctl(&host.root, key);
    let status = match cur.as_deref().and_then(|c| numbers(c).first().copied()) {
        Some(v) if v <= want => Status::Ok,
        Some(_) => Status::Lower,
        None => Status::Raise,
    };
    sysctl_finding(key, cur, want.to_string(), status, why)
}

/// tcp_mem (pages: low pressure high) bounds all TCP buffer memory. An idle
/// WebSocket holds almost none; budget 16 KiB per connection plus full
/// buffers for the busy ones (one in a hundred), capped at half of RAM.
fn tcp_mem(host: &Host, load: &Load) -> Finding {
    let key = "net.ipv4.tcp_mem";
    let busy = (load.connections / 100).max(1);
    let budget = load.connections * 16 * 1024 + busy * 2 * load.bdp_bytes();
    let budget = budget.min(host.mem_bytes / 2).max(64 * MIB);
    let high = budget / host.page_size;
    let cur = read_sysctl(&host.root, key);
    let nums = cur.as_deref().map(numbers).unwrap_or_default();
    let status = match nums.get(2) {
        Some(&h) if h >= high => Status::Ok,
        _ => Status::Raise,
    };
    let rec = format!("{} {} {}", high / 2, high * 3 / 4, high);
    sysctl_finding(
        key,
        cur,
        rec,
        status,
        "pages all TCP buffers may use: 16 KiB per connection plus busy ones' 2 x BDP",
    )
}

fn nofile(host: &Host, want: u64) -> Finding {
    let status = if host.nofile >= want { Status::Ok } else { Status::Raise };
    Finding {
        setting: "RLIMIT_NOFILE".into(),
        current: host.nofile.to_string(),
        recommended: want.to_string(),
        status,
        fix: if status == Status::Ok {
            String::new()
        } else {
            format!("LimitNOFILE={want} in ricochet.service (or ulimit -n {want})")
        },
        why: "open files per process: one per connection".into(),
        sysctl_value: None,
        side: Role::Both,
    }
}

fn port_range(host: &Host, connections: u64) -> Finding {
    let key = "net.ipv4.ip_local_port_range";
    let cur = read_sysctl(&host.root, key);
    let nums = cur.as_deref().map(numbers).unwrap_or_default();
    let span = match nums.as_slice() {
        [lo, hi] if hi >= lo => hi - lo + 1,
        _ => 0,
    };
    let status = if span >= connections.min(64512) { Status::Ok } else { Status::Raise };
    // A range wide enough for the load is kept as it is: the row recommends
    // what it compared, not a wider range nobody needs.
    let rec = match (&cur, status) {
        (Some(c), Status::Ok) => numbers(c).iter().map(u64::to_string).collect::<Vec<_>>().join(" "),
        _ => "1024 65535".into(),
    };
    sysctl_finding(key, cur, rec, status, "load generator side: source ports per destination address")
}

fn io_uring(host: &Host) -> Vec<Finding> {
    let key = "kernel.io_uring_disabled";
    let cur = read_sysctl(&host.root, key);
    // 0: everyone may use io_uring; 1: only a group; 2: nobody. Absent: a
    // kernel from before the knob, where io_uring is on if the kernel has it.
    let status = match cur.as_deref() {
        Some("0") | None => Status::Ok,
        Some(_) => Status::Lower,
    };
    let mut f = sysctl_finding(key, cur, "0".into(), status, "the io_uring backend needs io_uring allowed");
    if f.current == "unavailable" {
        f.current = "absent (no knob)".into();
        f.sysctl_value = None;
    }
    let mut out = vec![f];
    if let Some(probe) = &host.uring {
        let ok = probe.is_ok();
        out.push(Finding {
            setting: "io_uring (probe)".into(),
            current: match probe {
                Ok(()) => "available".into(),
                Err(e) => e.clone(),
            },
            recommended: "available".into(),
            status: if ok { Status::Ok } else { Status::Raise },
            fix: if ok { String::new() } else { "allow io_uring (sysctl, seccomp) or run Linux 6.0+".into() },
            why: "ring setup, provided buffer ring and multishot receive, tried for real".into(),
            sysctl_value: None,
            side: Role::Server,
        });
    }
    out
}

/// CPUs set the default shard count; informational.
fn cpus(host: &Host) -> Finding {
    Finding {
        setting: "CPUs available".into(),
        current: host.cpus.to_string(),
        recommended: host.cpus.to_string(),
        status: Status::Ok,
        fix: String::new(),
        why: "one shard per CPU by default (affinity mask: taskset, cpusets, CPUAffinity=)".into(),
        sysctl_value: None,
        side: Role::Server,
    }
}

/// One finding per NIC (not loopback): receive queues at least the CPUs, so
/// each shard's CPU can take its own queue's interrupts (RSS).
fn nics(host: &Host) -> Vec<Finding> {
    let dir = host.root.join("sys/class/net");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    names
        .into_iter()
        .filter(|n| n != "lo" && dir.join(n).join("device").exists())
        .filter_map(|n| {
            let queues = std::fs::read_dir(dir.join(&n).join("queues")).ok()?;
            let rx =
                queues.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count();
            let want = host.cpus;
            let status = if rx >= want { Status::Ok } else { Status::Raise };
            Some(Finding {
                setting: format!("nic:{n} rx queues"),
                current: rx.to_string(),
                recommended: want.to_string(),
                status,
                fix: if status == Status::Ok {
                    String::new()
                } else {
                    format!("ethtool -L {n} combined {want} (if the NIC has that many; else RPS: docs/tuning.md)")
                },
                why: "one receive queue per shard CPU (RSS), IRQs pinned to match".into(),
                sysctl_value: None,
                side: Role::Both,
            })
        })
        .collect()
}

/// Renders findings as an aligned table.
pub fn table(findings: &[Finding], load: &Load) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "load: {} connections, {:.3} Gbit/s x {:?} RTT -> BDP {} bytes",
        load.connections,
        load.bandwidth_bps / 1e9,
        load.rtt,
        load.bdp_bytes()
    );
    let _ = writeln!(out, "role: {} (--role server, load-generator or both)", role_name(load.role));
    let w = |f: &dyn Fn(&Finding) -> usize, h: usize| findings.iter().map(f).max().unwrap_or(0).max(h);
    let (w1, w2, w3) = (w(&|f| f.setting.len(), 7), w(&|f| f.current.len(), 7), w(&|f| f.recommended.len(), 11));
    let _ = writeln!(out, "{:w1$}  {:w2$}  {:w3$}  {:6}  fix", "setting", "current", "recommended", "status");
    for f in findings {
        let _ = writeln!(
            out,
            "{:w1$}  {:w2$}  {:w3$}  {:6}  {}",
            f.setting,
            f.current,
            f.recommended,
            f.status.as_str(),
            f.fix
        );
    }
    out
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Server => "server",
        Role::LoadGenerator => "load-generator",
        Role::Both => "both",
    }
}

/// Renders the audit as a JSON object: the load (with the role) and the
/// findings, each with the side it matters to (hand-written: a handful of
/// string fields).
pub fn json(findings: &[Finding], load: &Load) -> String {
    let esc = |s: &str| {
        let mut o = String::with_capacity(s.len() + 2);
        o.push('"');
        for c in s.chars() {
            match c {
                '"' => o.push_str("\\\""),
                '\\' => o.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(o, "\\u{:04x}", c as u32);
                }
                c => o.push(c),
            }
        }
        o.push('"');
        o
    };
    let mut out = format!(
        "{{\"load\":{{\"connections\":{},\"bandwidth_bps\":{},\"rtt_us\":{},\"bdp_bytes\":{},\"role\":\"{}\"}},\"findings\":[",
        load.connections,
        load.bandwidth_bps,
        load.rtt.as_micros(),
        load.bdp_bytes(),
        role_name(load.role)
    );
    for (i, f) in findings.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"setting\":{},\"current\":{},\"recommended\":{},\"status\":{},\"fix\":{},\"why\":{},\"side\":\"{}\"}}",
            esc(&f.setting),
            esc(&f.current),
            esc(&f.recommended),
            esc(f.status.as_str()),
            esc(&f.fix),
            esc(&f.why),
            role_name(f.side)
        );
    }
    out.push_str("]}\n");
    out
}

/// The sysctl.d file `--apply` writes.
pub const APPLY_FILE: &str = "etc/sysctl.d/99-ricochet-tune.conf";

/// Writes the sysctls that are not ok into the sysctl.d file under `root` and
/// into the live tree; returns what changed as `(key, old, new)`.
pub fn apply(root: &Path, findings: &[Finding]) -> Result<Vec<(String, String, String)>, TuneError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(TuneError::NotRoot);
    }
    let todo: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.status != Status::Ok && f.sysctl_value.is_some() && f.current != "unavailable")
        .collect();
    let mut conf = String::from("# Written by `ricochet tune --apply`; see docs/tuning.md for what each does.\n");
    for f in &todo {
        let _ = writeln!(conf, "# {}\n{} = {}", f.why, f.setting, f.sysctl_value.as_deref().unwrap_or_default());
    }
    let file = root.join(APPLY_FILE);
    write_atomically(&file, &conf).map_err(|source| TuneError::Write { path: file.clone(), source })?;
    let mut changed = Vec::new();
    for f in todo {
        let value = f.sysctl_value.clone().unwrap_or_default();
        // Loading is what `sysctl -p` does: write the value to /proc/sys.
        let path = sysctl_path(root, &f.setting);
        std::fs::write(&path, format!("{value}\n")).map_err(|source| TuneError::Write { path, source })?;
        changed.push((f.setting.clone(), f.current.clone(), value));
    }
    Ok(changed)
}

/// Replaces `path` with `text` so that a reader (or a boot) sees the old file
/// or the new one, never a part: written beside it, synced, then renamed over it.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable once the directory is synced.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Runs `ricochet tune`: prints the audit; returns whether everything was ok.
pub fn run(args: &TuneArgs) -> Result<bool, TuneError> {
    let bandwidth_bps = parse_rate(&args.bandwidth).ok_or_else(|| TuneError::Invalid {
        setting: "bandwidth",
        value: args.bandwidth.clone(),
        allowed: "a rate in bits per second such as 10Gbit, 1Gbit, 100Mbit",
    })?;
    let rtt = parse_duration("rtt", &args.rtt, false)?;
    let load = Load {
        connections: args.connections,
        bandwidth_bps,
        rtt,
        role: args.role,
        listen_ports: args.listen_ports.clone(),
    };
    let host = Host::live(&args.root);
    let findings = audit(&host, &load);
    match args.format {
        Format::Table => print!("{}", table(&findings, &load)),
        Format::Json => print!("{}", json(&findings, &load)),
    }
    if args.apply {
        let changed = apply(&args.root, &findings)?;
        eprintln!("wrote {}", args.root.join(APPLY_FILE).display());
        for (k, old, new) in &changed {
            eprintln!("changed {k}: {old} -> {new}");
        }
        if changed.is_empty() {
            eprintln!("nothing to change");
        }
        // After applying, judge the host again.
        return Ok(audit(&host, &load).iter().all(|f| f.status == Status::Ok || f.sysctl_value.is_none()));
    }
    Ok(findings.iter().all(|f| f.status == Status::Ok))
}

/// One line per limit that would cap `ricochet serve` with these settings.
pub fn serve_warnings(root: &Path, max_connections: u64, backlog: u64, nofile: u64) -> Vec<String> {
    let mut w = Vec::new();
    if nofile_short(max_connections, nofile) {
        w.push(format!(
            "open file limit {nofile} is below --max-connections {max_connections}: raise LimitNOFILE (ricochet tune)"
        ));
    }
    if let Some(s) = read_sysctl(root, "net.core.somaxconn").and_then(|v| v.parse::<u64>().ok()) {
        if s < backlog {
            w.push(format!("net.core.somaxconn {s} caps --backlog {backlog}: sysctl -w net.core.somaxconn={backlog}"));
        }
    }
    w
}

/// Whether `nofile` open files (the hard limit, once raised to it) fall short
/// of `max_connections` plus the few the process needs besides.
pub fn nofile_short(max_connections: u64, nofile: u64) -> bool {
    nofile < max_connections + 64
}

#[cfg(test)]
#[path = "tune_tests.rs"]
mod tests;
