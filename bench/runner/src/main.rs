//! `make bench`: Ricochet and peer echo servers under one load generator
//! (`ricochet bench`), side by side, on this machine.
//!
//! Every server starts once, pinned to the server CPU with one thread, and
//! stays up; the load generator runs on the other CPUs. For each point the
//! servers take turns (A B C A B C ...), so drift in a noisy machine falls on
//! all of them alike, and each point is repeated: tables show medians with
//! the min–max. Results go to `bench/results/<date>-<host>.{json,md,svg}`.

mod chart;
mod results;
mod servers;
mod table;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use results::{Host, Kind, Offered, Results, RoomShape, Sample};
use ricochet::bench::Report;
use servers::{Running, Spec};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Measures Ricochet against peer echo servers and writes a table and a chart.
///
/// The figure that settles comparisons is messages per server CPU-second: on a
/// small machine the load generator often saturates before the server does,
/// and then msgs/s measures the client while CPU per message still measures
/// the server.
#[derive(Parser, Debug)]
#[command(name = "ricochet-bench")]
struct Args {
    /// Time measured per sample, e.g. 2s
    #[arg(long, default_value = "2s")]
    duration: String,
    /// Traffic before each echo and fixed-rate sample's measured window,
    /// counted nowhere: TCP windows, each new connection's quick-ACK
    /// allowance and the server's buffers settle first ("0s" leaves it out)
    #[arg(long, default_value = "1s")]
    warmup: String,
    /// Samples per server and point (medians and min–max are over these)
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Connection counts of the echo matrix
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    connections: Vec<usize>,
    /// Message sizes of the echo matrix (one message in flight per connection)
    #[arg(long, value_delimiter = ',', default_value = "20,1K,16K,64K")]
    sizes: Vec<String>,
    /// Message sizes of the wss:// matrix (over --connections, one in flight); empty leaves TLS out
    #[arg(long, value_delimiter = ',', default_value = "20,1K,16K")]
    tls_sizes: Vec<String>,
    /// Message sizes (of text, before compression) of the permessage-deflate matrix (over --connections, one in flight); empty leaves it out
    #[arg(long, value_delimiter = ',', default_value = "1K,16K")]
    deflate_sizes: Vec<String>,
    /// Extra pipelined points: these sizes over the first connection count, --pipeline messages in flight each
    #[arg(long, value_delimiter = ',', default_value = "20,1K")]
    pipelined_sizes: Vec<String>,
    /// Messages in flight per connection at the pipelined points (0 leaves them out)
    #[arg(long, default_value_t = 16)]
    pipeline: usize,
    /// Concurrent connectors for the handshakes-per-second figure
    #[arg(long, default_value_t = 20)]
    connectors: usize,
    /// Idle connections for the memory-per-connection figure
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Open-loop latency points: offered rates as percentages of the slowest
    /// server's closed-loop saturation at --latency-connections x
    /// --latency-size (measured in the same run); empty leaves them out
    #[arg(long, value_delimiter = ',', default_value = "25,50,75,90")]
    latency_loads: Vec<String>,
    /// Connections of the open-loop latency points
    #[arg(long, default_value_t = 1000)]
    latency_connections: usize,
    /// Message size of the open-loop latency points
    #[arg(long, default_value = "1K")]
    latency_size: String,
    /// Reconnect storm: this many clients connect at once, one echo each (0 leaves it out)
    #[arg(long, default_value_t = 10_000)]
    storm: usize,
    /// How long a storm may take before the clients without an echo count as missing
    #[arg(long, default_value = "60s")]
    storm_limit: String,
    /// Fan-out: members of the one room at the fixed-rate points (one publisher)
    #[arg(long, default_value_t = 1000)]
    fanout_members: usize,
    /// Fan-out: messages per second the one publisher sends at each fixed-rate point; empty leaves them out
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    fanout_rates: Vec<String>,
    /// Fan-out: a chat, ROOMSxMEMBERS with every member publishing (closed loop); empty leaves it out
    #[arg(long, default_value = "100x10")]
    chat: String,
    /// Fan-out: one room of N members all publishing in lock step (N² deliveries a round), per N; empty leaves them out
    #[arg(long, value_delimiter = ',', default_value = "100,500")]
    lockstep: Vec<String>,
    /// Fan-out: idle room members for the memory-per-member figure, spread over --room-idle-rooms rooms (0 leaves it out)
    #[arg(long, default_value_t = 10_000)]
    room_idle: usize,
    /// Fan-out: rooms the idle members are spread over
    #[arg(long, default_value_t = 1000)]
    room_idle_rooms: usize,
    /// Fan-out: message size of the room points
    #[arg(long, default_value = "64")]
    room_size: String,
    /// Quick look (under 2 minutes): one 1-second sample per point, 2,000 idle connections
    #[arg(long)]
    quick: bool,
    /// Only these servers (names as in the table), e.g. ricochet-epoll,raw-tcp-echo
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where the release binaries are
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Where results are written
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Also put the full tables and charts between `<!-- bench:start -->` and
    /// `<!-- bench:end -->` in this file (`make bench`: docs/performance.md)
    #[arg(long, alias = "readme", value_name = "FILE")]
    guide: Option<PathBuf>,
    /// Also put the small table (a few echo points, ws:// without
    /// compression) between `<!-- bench-summary:start -->` and
    /// `<!-- bench-summary:end -->` in this file (`make bench`: README.md)
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
    /// Render the table and chart of an earlier results JSON instead of measuring
    #[arg(long, value_name = "JSON")]
    render: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ricochet-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(mut args: Args) -> Result<bool, String> {
    let results = match &args.render {
        Some(json) => {
            let text = std::fs::read_to_string(json).map_err(|e| format!("{}: {e}", json.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))?
        }
        None => {
            if args.quick {
                args.repeat = 1;
                args.duration = "1s".into();
                args.warmup = "250ms".into();
                args.idle = args.idle.min(2_000);
                args.storm = args.storm.min(2_000);
                args.room_idle = args.room_idle.min(2_000);
                args.room_idle_rooms = args.room_idle_rooms.min(200);
            }
            measure(&args)?
        }
    };
    // A run of the room servers alone has no echo tables to write.
    let has_echo = results.samples.iter().any(|s| s.kind != Kind::Room && s.room.is_none());
    // A quick run, or one of the rooms alone, must not overwrite the day's full one.
    let stem = format!(
        "{}-{}{}{}",
        &results.host.started[..10.min(results.host.started.len())],
        results.host.hostname,
        if args.quick { "-quick" } else { "" },
        if has_echo { "" } else { "-rooms" }
    );
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let json_path = args.out.join(format!("{stem}.json"));
    let md_path = args.out.join(format!("{stem}.md"));
    let svg_path = args.out.join(format!("{stem}.svg"));
    if args.render.is_none() {
        let json = serde_json::to_string_pretty(&results).expect("results serialise");
        std::fs::write(&json_path, json).map_err(|e| format!("{}: {e}", json_path.display()))?;
    }
    let fanout = table::fanout(&results);
    let md = match (&fanout, has_echo) {
        (Some(f), true) => format!("{}\n{f}", table::markdown(&results)),
        (Some(f), false) => f.clone(),
        (None, _) => table::markdown(&results),
    };
    std::fs::write(&md_path, &md).map_err(|e| format!("{}: {e}", md_path.display()))?;
    if has_echo {
        chart::write_svg(&results, &svg_path).map_err(|e| format!("{}: {e}", svg_path.display()))?;
    }
    let latency_svg = args.out.join(format!("{stem}-latency.svg"));
    let has_latency = !results.loads().is_empty();
    if has_latency {
        chart::write_latency_svg(&results, &latency_svg).map_err(|e| format!("{}: {e}", latency_svg.display()))?;
    }
    println!("{md}");
    if has_echo {
        println!("wrote {}, {} and {}", json_path.display(), md_path.display(), svg_path.display());
    } else {
        println!("wrote {} and {}", json_path.display(), md_path.display());
    }
    if has_latency {
        println!("wrote {}", latency_svg.display());
    }
    if let (Some(guide), Some(f)) = (&args.guide, &fanout) {
        splice(guide, "bench-rooms", &format!("Produced by `{}`:\n\n{f}", results.command))?;
    }
    if let Some(guide) = args.guide.as_ref().filter(|_| has_echo) {
        // Image paths are relative to the page that shows them.
        let from = guide.parent().unwrap_or(Path::new("."));
        let mut section =
            format!("Produced by `{}`:\n\n{md}\n![chart]({})\n", results.command, relative(&svg_path, from)?);
        if has_latency {
            section.push_str(&format!("\n![latency under fixed load]({})\n", relative(&latency_svg, from)?));
        }
        splice(guide, "bench", &section)?;
        println!("updated {}", guide.display());
    }
    if let Some(summary) = args.summary.as_ref().filter(|_| has_echo) {
        splice(summary, "bench-summary", &table::summary(&results))?;
        println!("updated {}", summary.display());
    }
    Ok(results.run_failures().is_empty())
}

/// `target` as a path relative to the directory `from` (both must exist).
fn relative(target: &Path, from: &Path) -> Result<String, String> {
    let canon = |p: &Path| {
        let p = if p.as_os_str().is_empty() { Path::new(".") } else { p };
        p.canonicalize().map_err(|e| format!("{}: {e}", p.display()))
    };
    let (t, f) = (canon(target)?, canon(from)?);
    let (tc, fc): (Vec<_>, Vec<_>) = (t.components().collect(), f.components().collect());
    let common = tc.iter().zip(&fc).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..fc.len() {
        out.push("..");
    }
    for c in &tc[common..] {
        out.push(c);
    }
    Ok(out.display().to_string())
}

/// Replaces what lies between the `<!-- {marker}:start -->` and
/// `<!-- {marker}:end -->` lines of `path`.
fn splice(path: &Path, marker: &str, section: &str) -> Result<(), String> {
    let start = format!("<!-- {marker}:start -->");
    let end = format!("<!-- {marker}:end -->");
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (Some(a), Some(b)) = (text.find(&start), text.find(&end)) else {
        return Err(format!("{}: no {start} ... {end} section", path.display()));
    };
    if b < a {
        return Err(format!("{}: {end} comes before {start}", path.display()));
    }
    let new = format!("{}{start}\n{section}{}", &text[..a], &text[b..]);
    std::fs::write(path, new).map_err(|e| format!("{}: {e}", path.display()))
}

/// The CPUs this process may run on, in order.
fn allowed_cpus() -> Result<Vec<usize>, String> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
    ids.sort_unstable();
    if ids.len() < 2 {
        return Err("needs at least 2 CPUs: one for the server, one for the load generator".into());
    }
    Ok(ids)
}

/// How the CPUs `ids` are shared: one-thread servers get the first; with 4
/// or more, Ricochet also runs with a shard on each CPU of the first half
/// (the returned shard count); the load always gets the CPUs no server uses.
fn cpu_plan(ids: &[usize]) -> (usize, Vec<usize>) {
    let shards = if ids.len() >= 4 { ids.len() / 2 } else { 1 };
    (shards, ids[shards..].to_vec())
}

fn list(cpus: &[usize]) -> String {
    cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

fn host(server_cpus: &str, client_cpus: &str, cpus: usize) -> Host {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
    let cpu_model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let commit = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    Host {
        hostname: read("/proc/sys/kernel/hostname"),
        kernel: read("/proc/sys/kernel/osrelease"),
        cpu_model,
        cpus,
        started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        commit,
        server_cpus: server_cpus.into(),
        client_cpus: client_cpus.into(),
    }
}

/// One `ricochet bench` invocation and what it should measure.
struct Job<'a> {
    kind: Kind,
    connections: usize,
    size: usize,
    pipeline: usize,
    duration: &'a str,
    /// Rate points: what is offered.
    offered: Option<Offered>,
    /// Room points: the rooms.
    room: Option<RoomShape>,
}

impl<'a> Job<'a> {
    /// A job with nothing offered (every kind but rate points).
    fn new(kind: Kind, connections: usize, size: usize, pipeline: usize, duration: &'a str) -> Job<'a> {
        Job { kind, connections, size, pipeline, duration, offered: None, room: None }
    }

    /// This job's sample of `server`.
    fn sample(&self, server: &str, report: Option<Report>, error: Option<String>) -> Sample {
        let (kind, connections, size, pipeline, offered, room) =
            (self.kind, self.connections, self.size, self.pipeline, self.offered, self.room);
        Sample { kind, server: server.into(), connections, size, pipeline, offered, room, report, error }
    }
}

fn measure(args: &Args) -> Result<Results, String> {
    ricochet::tune::raise_nofile_limit();
    let ids = allowed_cpus()?;
    let all_cpus = ids.len();
    let (shards, client_cpus) = cpu_plan(&ids);
    let server_list = list(&ids[..1]);
    let client_list = list(&client_cpus);
    let mut skipped = Vec::new();
    let go_source = |stem: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../peers/go/{stem}.go"));
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let mut go =
        |name: &str, stem: &str| match wanted(name).then(|| servers::build_gorilla(&go_source(stem), &args.bin_dir)) {
            Some(Ok(exe)) => Some(exe),
            Some(Err(why)) => {
                skipped.push((name.to_string(), why));
                None
            }
            None => None,
        };
    let gorilla = go("gorilla", "echo");
    let room_points = room_points(args)?;
    let gorilla_hub = if !room_points.is_empty() || args.room_idle > 0 { go("gorilla-hub-rooms", "hub") } else { None };
    let mut specs: Vec<Spec> = servers::specs(&args.bin_dir, gorilla, shards);
    // wss://: the same certificate for every server, from a CA the load
    // generator trusts, made for this run in a private temporary folder
    // (never next to the results: no key is ever written where it could be committed).
    let deflate_sizes = sizes("--deflate-sizes", &args.deflate_sizes)?;
    if !deflate_sizes.is_empty() {
        specs.extend(servers::deflate_specs(&args.bin_dir));
    }
    if !room_points.is_empty() || args.room_idle > 0 {
        specs.extend(servers::room_specs(&args.bin_dir, gorilla_hub));
    }
    let tls_sizes = sizes("--tls-sizes", &args.tls_sizes)?;
    let tls_dir = std::env::temp_dir().join(format!("ricochet-bench-tls-{}", std::process::id()));
    let ca = if tls_sizes.is_empty() {
        None
    } else {
        let (ca, cert, key) = servers::test_certificate(&tls_dir)?;
        specs.extend(servers::tls_specs(&args.bin_dir, &cert, &key));
        Some(ca)
    };
    if !args.only.is_empty() {
        let known = |o: &String| specs.iter().any(|s| &s.name == o) || skipped.iter().any(|(n, _)| n == o);
        if let Some(bad) = args.only.iter().find(|o| !known(o)) {
            let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
            let _ = std::fs::remove_dir_all(&tls_dir);
            return Err(format!("--only {bad:?}: not one of {}", names.join(", ")));
        }
        specs.retain(|s| args.only.contains(&s.name));
    }
    let pin = |s: &Spec| -> String { list(&ids[..s.threads]) };
    let mut points: Vec<(usize, usize, usize)> = Vec::new();
    for &c in &args.connections {
        points.extend(sizes("--sizes", &args.sizes)?.into_iter().map(|s| (c, s, 1)));
    }
    if let (Some(&c), true) = (args.connections.first(), args.pipeline > 1) {
        points.extend(sizes("--pipelined-sizes", &args.pipelined_sizes)?.into_iter().map(|s| (c, s, args.pipeline)));
    }
    let loads: Vec<f64> = args
        .latency_loads
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.trim().trim_end_matches('%').parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(p / 100.0),
            _ => Err(format!("--latency-loads: {l:?} is not a percentage in (0, 100]")),
        })
        .collect::<Result<_, _>>()?;
    let latency_size = ricochet::server::config::parse_size("--latency-size", &args.latency_size, 1, 16 << 20)
        .map_err(|e| e.to_string())?;
    if !loads.is_empty() && !points.contains(&(args.latency_connections, latency_size, 1)) {
        // The saturation the loads are shares of is measured in this run.
        points.push((args.latency_connections, latency_size, 1));
    }
    let started = Instant::now();
    let host = host(&server_list, &client_list, all_cpus);
    let mut running: Vec<Running> = Vec::new();
    for s in &specs {
        running.push(Running::start(s, &pin(s)).map_err(|e| e.to_string())?);
    }

    let d = args.duration.as_str();
    let mut jobs: Vec<(Job, usize)> = Vec::new();
    let ws: Vec<usize> = (0..specs.len()).filter(|&i| !specs[i].raw && !specs[i].rooms).collect();
    let rooms: Vec<usize> = (0..specs.len()).filter(|&i| specs[i].rooms).collect();
    // An idle deflate connection is measured after one compressed echo.
    let idle_size = |i: usize| if specs[i].deflate { deflate_sizes.first().copied().unwrap_or(1024) } else { 0 };
    // Held 3 s before the server's RSS is read: io_uring gives back the pages
    // of receive buffers unused for a second or two, and an idle server is
    // one that has been idle for a while, not one just out of a burst.
    for &i in &ws {
        jobs.push((Job::new(Kind::Idle, args.idle, idle_size(i), 1, "3s"), i));
    }
    if args.room_idle > 0 {
        for &i in &rooms {
            let mut job = Job::new(Kind::Idle, args.room_idle, 0, 1, "3s");
            job.room = Some(RoomShape { rooms: args.room_idle_rooms.max(1), publishers: 0, rate: None });
            jobs.push((job, i));
        }
    }
    for _ in 0..args.repeat {
        for &i in &ws {
            jobs.push((Job::new(Kind::Connect, args.connectors, 0, 1, d), i));
        }
    }
    for _ in 0..args.repeat {
        for i in (0..specs.len()).filter(|&i| specs[i].tls) {
            jobs.push((Job::new(Kind::Resume, args.connectors, 0, 1, d), i));
        }
    }
    let room_size =
        ricochet::server::config::parse_size("--room-size", &args.room_size, 1, 16 << 20).map_err(|e| e.to_string())?;
    for &(members, shape) in &room_points {
        for _ in 0..args.repeat {
            for &i in &rooms {
                let mut job = Job::new(Kind::Room, members, room_size, 1, d);
                job.room = Some(shape);
                jobs.push((job, i));
            }
        }
    }
    let plain: Vec<usize> =
        (0..specs.len()).filter(|&i| !specs[i].tls && !specs[i].deflate && !specs[i].rooms).collect();
    let deflate: Vec<usize> = (0..specs.len()).filter(|&i| specs[i].deflate).collect();
    let tls: Vec<usize> = (0..specs.len()).filter(|&i| specs[i].tls).collect();
    for &(connections, size, pipeline) in &points {
        for _ in 0..args.repeat {
            for &i in &plain {
                jobs.push((Job::new(Kind::Echo, connections, size, pipeline, d), i));
            }
        }
    }
    for &connections in &args.connections {
        for &size in &deflate_sizes {
            for _ in 0..args.repeat {
                for &i in &deflate {
                    jobs.push((Job::new(Kind::Echo, connections, size, 1, d), i));
                }
            }
        }
    }
    for &connections in &args.connections {
        for &size in &tls_sizes {
            for _ in 0..args.repeat {
                for &i in &tls {
                    jobs.push((Job::new(Kind::Echo, connections, size, 1, d), i));
                }
            }
        }
    }

    let mut samples = Vec::new();
    let mut turns = Turns {
        bin: &args.bin_dir,
        specs: &specs,
        running: &mut running,
        pin: &pin,
        client_cpus: &client_cpus,
        ca: ca.as_deref(),
        warmup: &args.warmup,
    };
    turns.run(&jobs, &mut samples)?;

    // Phase two: points that depend on what phase one measured.
    let mut later: Vec<(Job, usize)> = Vec::new();
    let rate_point = (args.latency_connections, latency_size, 1);
    let saturation = plain
        .iter()
        .map(|&i| {
            let at = |s: &Sample| s.kind == Kind::Echo && s.server == specs[i].name && s.point() == rate_point;
            results::spread_in(&samples, at, Sample::rate).map(|x| x.median)
        })
        .collect::<Option<Vec<f64>>>()
        .and_then(|v| v.into_iter().reduce(f64::min));
    match (saturation, loads.is_empty() || plain.is_empty()) {
        (_, true) => {}
        (Some(sat), false) => {
            for &load in &loads {
                let offered = Offered { rate: (sat * load).floor().max(1.0), load };
                for _ in 0..args.repeat {
                    for &i in &plain {
                        let mut job = Job::new(Kind::Rate, rate_point.0, rate_point.1, 1, d);
                        job.offered = Some(offered);
                        later.push((job, i));
                    }
                }
            }
        }
        (None, false) => eprintln!(
            "no latency points: a closed-loop sample at {} conns x {} failed",
            rate_point.0,
            table::size_label(rate_point.1)
        ),
    }
    if args.storm > 0 {
        for _ in 0..args.repeat {
            for &i in &plain {
                later.push((Job::new(Kind::Storm, args.storm, 20, 1, &args.storm_limit), i));
            }
        }
    }
    turns.run(&later, &mut samples)?;
    for r in running {
        r.stop();
    }
    let _ = std::fs::remove_dir_all(&tls_dir);
    eprintln!("measured in {:.0} s", started.elapsed().as_secs_f64());
    // `make bench` says how it was invoked, so the README names the command
    // a reader would type rather than the binary it runs.
    let command = std::env::var("RICOCHET_BENCH_COMMAND").unwrap_or_else(|_| {
        std::iter::once("ricochet-bench".to_string()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" ")
    });
    Ok(Results {
        host,
        command,
        duration_s: ricochet::server::config::parse_duration("--duration", d, false)
            .map_err(|e| e.to_string())?
            .as_secs_f64(),
        warmup_s: ricochet::server::config::parse_duration("--warmup", &args.warmup, true)
            .map_err(|e| e.to_string())?
            .as_secs_f64(),
        repeat: args.repeat,
        client_threads: client_cpus.len(),
        servers: specs,
        skipped,
        samples,
        tls_provider: ricochet::server::tls::PROVIDER.into(),
    })
}

/// Runs jobs against the running servers, restarting any that died.
struct Turns<'a, 'p> {
    bin: &'a Path,
    specs: &'a [Spec],
    running: &'a mut Vec<Running>,
    pin: &'p dyn Fn(&Spec) -> String,
    client_cpus: &'a [usize],
    ca: Option<&'a Path>,
    warmup: &'a str,
}

impl Turns<'_, '_> {
    /// Runs `jobs` in order, appending a sample each to `samples`.
    fn run(&mut self, jobs: &[(Job, usize)], samples: &mut Vec<Sample>) -> Result<(), String> {
        let (specs, client_list) = (self.specs, list(self.client_cpus));
        let bar = ProgressBar::new(jobs.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("[{bar:30}] {pos}/{len} {elapsed_precise} (eta {eta}) {msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        for (job, i) in jobs {
            let label = match job.room.filter(|_| job.kind == Kind::Room) {
                Some(shape) => format!(
                    "{} room {} members in {} rooms, {} publishing{}",
                    specs[*i].name,
                    job.connections,
                    shape.rooms,
                    shape.publishers,
                    shape.rate.map(|r| format!(" {r:.0}/s")).unwrap_or_default()
                ),
                None => match job.offered {
                    Some(o) => format!("{} {:?} {:.0}/s ({:.0}%)", specs[*i].name, job.kind, o.rate, o.load * 100.0),
                    None => format!(
                        "{} {:?} {} conns {} x{}",
                        specs[*i].name,
                        job.kind,
                        job.connections,
                        table::size_label(job.size),
                        job.pipeline
                    ),
                },
            };
            bar.set_message(label.clone());
            if !self.running[*i].alive() {
                // A crashed server is a failed sample and is started again.
                samples.push(job.sample(&specs[*i].name, None, Some("the server had exited".into())));
                self.running[*i] = Running::start(&specs[*i], &(self.pin)(&specs[*i])).map_err(|e| e.to_string())?;
            }
            let threads = self.client_cpus.len().min(job.connections.max(1));
            let sample = sample(self.bin, &self.running[*i], job, &client_list, threads, self.ca, self.warmup);
            if bar.is_hidden() {
                let got = match (&sample.error, job.kind) {
                    (Some(e), _) => Some(format!("error: {e}")),
                    (None, Kind::Idle) => {
                        sample.bytes_per_idle_connection().map(|b| format!("{b:.0} B per connection"))
                    }
                    (None, Kind::Rate) => sample.latency_us(|l| l.p99).map(|p| format!("p99 {p:.0} µs")),
                    (None, Kind::Storm) => sample.window_seconds().map(|w| format!("all echoed in {w:.2} s")),
                    (None, _) => sample.rate().map(|r| format!("{}/s", table::si(r))),
                }
                .unwrap_or_else(|| "unclean: wrong or missing echoes, or failed connections".into());
                eprintln!("[{}/{}] {label}: {got}", bar.position() + 1, jobs.len());
            }
            samples.push(sample);
            bar.inc(1);
            // A storm leaves thousands of connections closing: let the
            // server's CPU settle before the next sample measures another.
            std::thread::sleep(Duration::from_millis(if job.kind == Kind::Storm { 2000 } else { 100 }));
        }
        bar.finish_and_clear();
        Ok(())
    }
}

/// The fan-out points: members and how they spread and publish. The fixed
/// rates at one room of `--fanout-members` with one publisher, the chat
/// (`--chat`, every member publishing) and the lock-step rooms.
fn room_points(args: &Args) -> Result<Vec<(usize, RoomShape)>, String> {
    let mut v = Vec::new();
    for r in args.fanout_rates.iter().filter(|r| !r.trim().is_empty()) {
        let rate: f64 =
            r.trim().parse().ok().filter(|&x: &f64| x > 0.0).ok_or(format!("--fanout-rates: {r:?} is not a rate"))?;
        v.push((args.fanout_members.max(1), RoomShape { rooms: 1, publishers: 1, rate: Some(rate) }));
    }
    if !args.chat.trim().is_empty() {
        let bad = || format!("--chat: {:?} is not ROOMSxMEMBERS, e.g. 100x10", args.chat);
        let (r, m) = args.chat.trim().split_once('x').ok_or_else(bad)?;
        let (r, m): (usize, usize) = (r.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if r == 0 || m == 0 {
            return Err(bad());
        }
        v.push((r * m, RoomShape { rooms: r, publishers: r * m, rate: None }));
    }
    for n in args.lockstep.iter().filter(|n| !n.trim().is_empty()) {
        let n: usize =
            n.trim().parse().ok().filter(|&n| n > 0).ok_or(format!("--lockstep: {n:?} is not a member count"))?;
        v.push((n, RoomShape { rooms: 1, publishers: n, rate: None }));
    }
    Ok(v)
}

/// Parses a list of sizes given to `flag`.
fn sizes(flag: &'static str, list: &[String]) -> Result<Vec<usize>, String> {
    // `--tls-sizes ''` arrives as one empty item: it means none.
    list.iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| ricochet::server::config::parse_size(flag, s, 1, 16 << 20).map_err(|e| e.to_string()))
        .collect()
}

/// Runs the load generator once against `server`.
fn sample(
    bin: &Path,
    server: &Running,
    job: &Job,
    cpus: &str,
    threads: usize,
    ca: Option<&Path>,
    warmup: &str,
) -> Sample {
    let mut cmd = Command::new(bin.join("ricochet"));
    cmd.args(["bench", &server.url, "--json", "--cpu", cpus]);
    if let (true, Some(ca)) = (server.spec.tls, ca) {
        cmd.arg("--ca").arg(ca);
    }
    if server.spec.deflate {
        cmd.arg("--deflate");
    }
    cmd.args(["--threads", &threads.to_string(), "--server-pid", &server.pid().to_string()]).args([
        "--connections",
        &job.connections.to_string(),
        "--duration",
        job.duration,
    ]);
    match job.kind {
        Kind::Echo => {
            cmd.args(["--size", &job.size.to_string(), "--pipeline", &job.pipeline.to_string(), "--warmup", warmup])
        }
        Kind::Connect => cmd.args(["--mode", "connect"]),
        Kind::Resume => cmd.args(["--mode", "connect", "--resume"]),
        Kind::Idle => cmd.args(["--mode", "idle", "--size", &job.size.to_string()]),
        Kind::Room => {
            let shape = job.room.expect("a room point has its rooms");
            cmd.args(["--mode", "room", "--size", &job.size.to_string()]).args([
                "--rooms",
                &shape.rooms.to_string(),
                "--publishers",
                &shape.publishers.to_string(),
            ]);
            if let Some(rate) = shape.rate {
                cmd.args(["--rate", &rate.to_string()]);
            }
            &mut cmd
        }
        Kind::Rate => {
            let rate = job.offered.map_or(0.0, |o| o.rate).to_string();
            cmd.args(["--size", &job.size.to_string(), "--rate", &rate, "--warmup", warmup])
        }
        Kind::Storm => cmd.args(["--mode", "storm", "--size", &job.size.to_string()]),
    };
    if let (Kind::Idle, Some(shape)) = (job.kind, job.room) {
        cmd.args(["--rooms", &shape.rooms.to_string()]);
    }
    let (report, error) = match run_with_timeout(cmd, Duration::from_secs(120)) {
        Err(e) => (None, Some(e)),
        Ok(stdout) => match serde_json::from_str::<Report>(stdout.trim()) {
            Ok(r) => (Some(r), None),
            Err(_) => (None, Some(format!("no report: {}", stdout.lines().next().unwrap_or("(nothing)")))),
        },
    };
    job.sample(&server.spec.name, report, error)
}

/// Runs `cmd` and returns its stdout, killing it after `limit`.
fn run_with_timeout(mut cmd: Command, limit: Duration) -> Result<String, String> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| format!("bench: {e}"))?;
    // Both pipes are drained while the child runs: one left unread could
    // fill up and stall it until the timeout.
    let (stdout, stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err_reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("bench did not finish within {} s", limit.as_secs()));
            }
        }
    }
    let stderr = err_reader.join().unwrap_or_default();
    let out = reader.join().unwrap_or_default();
    if out.trim().is_empty() {
        return Err(stderr.lines().next().unwrap_or("bench printed nothing").to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_cpus_give_one_to_the_server_and_one_to_the_load() {
        assert_eq!(cpu_plan(&[0, 1]), (1, vec![1]));
        assert_eq!(cpu_plan(&[2, 5, 7]), (1, vec![5, 7]));
    }

    #[test]
    fn four_or_more_cpus_add_an_all_shards_row_on_the_first_half() {
        assert_eq!(cpu_plan(&[0, 1, 2, 3, 4, 5, 6, 7]), (4, vec![4, 5, 6, 7]));
        let (shards, _) = cpu_plan(&[0, 1, 2, 3]);
        let specs = servers::specs(Path::new("bin"), None, shards);
        let all = specs.iter().find(|s| s.name == "ricochet-epoll-2-shards").expect("all-shards row");
        assert_eq!(all.threads, 2);
        assert!(all.argv.windows(2).any(|w| w == ["--shards", "2"]));
        assert!(!servers::specs(Path::new("bin"), None, 1).iter().any(|s| s.threads > 1));
    }

    #[test]
    fn the_readme_table_and_the_guide_come_from_one_results_file() {
        let dir = tempfile_dir();
        let json = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/2026-12-01-vm.json");
        let text = std::fs::read_to_string(json).unwrap();
        let results: Results = serde_json::from_str(&text).unwrap();
        let page = dir.join("page.md");
        std::fs::write(&page, "intro\n<!-- bench-summary:start -->\nold\n<!-- bench-summary:end -->\nafter\n").unwrap();
        splice(&page, "bench-summary", &table::summary(&results)).unwrap();
        let out = std::fs::read_to_string(&page).unwrap();
        assert!(out.starts_with("intro\n<!-- bench-summary:start -->\nMessages echoed"), "{out}");
        assert!(out.ends_with("<!-- bench-summary:end -->\nafter\n"), "{out}");
        assert!(!out.contains("old"));
        assert!(out.contains("2026-12-01") && out.contains("AMD EPYC"), "date and CPU: {out}");
        // The 2026-12-01 run's io_uring median at 100 × 20 B, as its full table has it.
        assert!(out.contains("| 100 × 20 B | 130k | 189k |"), "{out}");
        assert!(splice(&page, "bench", "x").is_err(), "a page without the markers is an error");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn image_paths_are_relative_to_the_page() {
        let dir = tempfile_dir();
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        std::fs::create_dir_all(dir.join("bench/results")).unwrap();
        std::fs::write(dir.join("bench/results/a.svg"), "").unwrap();
        assert_eq!(relative(&dir.join("bench/results/a.svg"), &dir.join("docs")).unwrap(), "../bench/results/a.svg");
        assert_eq!(relative(&dir.join("bench/results/a.svg"), &dir).unwrap(), "bench/results/a.svg");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ricochet-bench-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
