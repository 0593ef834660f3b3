//! The Markdown tables a run prints and writes next to its JSON.

use crate::results::{Kind, Point, Results, RoomShape, Sample, Spread};
use std::fmt::Write;

/// 137 → "137", 13_700 → "13.7k", 1_370_000 → "1.37M".
pub fn si(x: f64) -> String {
    let (v, unit) = match x.abs() {
        a if a >= 1e6 => (x / 1e6, "M"),
        a if a >= 1e3 => (x / 1e3, "k"),
        _ => return format!("{x:.0}"),
    };
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{unit}")
}

/// "20 B", "1 KiB", "64 KiB".
pub fn size_label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

fn spread_cell(s: Option<Spread>, f: impl Fn(f64) -> String) -> String {
    match s {
        None => "failed".into(),
        Some(s) if s.min == s.max => f(s.median),
        Some(s) => format!("{} ({}–{})", f(s.median), f(s.min), f(s.max)),
    }
}

fn row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

fn header(out: &mut String, cells: &[String]) {
    out.push_str(&row(cells));
    out.push_str(&row(&vec!["---".to_string(); cells.len()]));
}

/// The full Markdown report of a run: the ws:// tables, then the wss://
/// ones (each server behind TLS with the same certificate and provider).
pub fn markdown(r: &Results) -> String {
    let mut out = section(r, false);
    if r.samples.iter().any(|s| s.kind == Kind::Rate) {
        out.push_str(&latency_section(r));
    }
    if r.samples.iter().any(|s| s.kind == Kind::Storm) {
        out.push_str(&storm_section(r));
    }
    if r.servers.iter().any(|s| s.deflate) {
        out.push_str(&deflate_section(r));
    }

    if r.servers.iter().any(|s| s.tls) {
        let _ = writeln!(
            out,
            "\n### wss:// (TLS 1.3, the same certificate, rustls and {} for every server)\n",
            r.tls_provider
        );
        out.push_str(&section(r, true));
    }
    footer(r, &mut out);
    out
}

/// The echo points the README's small table shows, where a run has them:
/// small and mid-size messages at both connection counts, and pipelining.
const SUMMARY_POINTS: [Point; 4] = [(100, 20, 1), (1000, 1024, 1), (1000, 16 * 1024, 1), (100, 1024, 16)];

/// The README's small table: messages per server CPU-second of the ws://
/// servers (no compression) at [`SUMMARY_POINTS`] (or, for a run with
/// none of them, at the run's own points), medians, with the date,
/// the CPU and the command of the run it comes from, so the README and the
/// performance chapter are filled from one JSON and cannot disagree.
pub fn summary(r: &Results) -> String {
    let names: Vec<&str> =
        r.servers.iter().filter(|s| !s.tls && !s.deflate && !s.rooms).map(|s| s.name.as_str()).collect();
    let present = r.echo_points_of(&names);
    let mut points: Vec<Point> = SUMMARY_POINTS.iter().copied().filter(|p| present.contains(p)).collect();
    if points.is_empty() {
        // A run with another matrix: its own points.
        points = present;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Messages echoed per second of server CPU (higher is better; median of {} run{}), one server thread \
         on CPU {} and the load generator on CPU {}, on {} with {} CPUs, kernel {}, {}, `{}`:\n",
        r.repeat,
        if r.repeat == 1 { "" } else { "s" },
        r.host.server_cpus,
        r.host.client_cpus,
        r.host.cpu_model,
        r.host.cpus,
        r.host.kernel,
        &r.host.started[..10.min(r.host.started.len())],
        r.command
    );
    header(&mut out, &[vec!["connections × size".to_string()], names.iter().map(|n| n.to_string()).collect()].concat());
    for (c, s, p) in points {
        let lead = if p == 1 {
            format!("{c} × {}", size_label(s))
        } else {
            format!("{c} × {}, {p} in flight", size_label(s))
        };
        let cells = names.iter().map(|n| {
            r.spread(Kind::Echo, n, (c, s, p), Sample::per_server_cpu_second)
                .map(|x| si(x.median))
                .unwrap_or_else(|| "failed".into())
        });
        out.push_str(&row(&[vec![lead], cells.collect()].concat()));
    }
    out
}

/// The tables of the ws:// servers, or of the wss:// ones.
fn section(r: &Results, tls: bool) -> String {
    let servers = || r.servers.iter().filter(|s| s.tls == tls && !s.deflate && !s.rooms);
    let names: Vec<&str> = servers().map(|s| s.name.as_str()).collect();
    let ours: Vec<&str> = servers().filter(|s| s.ricochet).map(|s| s.name.as_str()).collect();
    let peers: Vec<&str> = servers().filter(|s| !s.ricochet).map(|s| s.name.as_str()).collect();
    let points = r.echo_points_of(&names);
    let mut out = String::new();
    let lead = |(c, s, p): Point| vec![c.to_string(), size_label(s), p.to_string()];
    let keys = || vec!["connections".to_string(), "size".into(), "in flight".into()];

    let _ = writeln!(
        out,
        "**Messages per server CPU-second** (higher is better), median (min–max) of {} runs:\n",
        r.repeat
    );
    header(&mut out, &[keys(), names.iter().map(|n| n.to_string()).collect()].concat());
    for &pt in &points {
        let cells = names.iter().map(|n| spread_cell(r.spread(Kind::Echo, n, pt, Sample::per_server_cpu_second), si));
        out.push_str(&row(&[lead(pt), cells.collect()].concat()));
    }

    let _ = writeln!(out, "\n**Ricochet ÷ peer** in messages per server CPU-second, medians ({}):\n", ours.join(" · "));
    header(&mut out, &[keys(), peers.iter().map(|p| format!("÷ {p}")).collect()].concat());
    for &pt in &points {
        let per = |n: &str| r.spread(Kind::Echo, n, pt, Sample::per_server_cpu_second).map(|x| x.median);
        let cells = peers.iter().map(|p| {
            ours.iter()
                .map(|o| match (per(o), per(p)) {
                    (Some(a), Some(b)) => format!("{:.2}", a / b),
                    _ => "–".into(),
                })
                .collect::<Vec<_>>()
                .join(" · ")
        });
        out.push_str(&row(&[lead(pt), cells.collect()].concat()));
    }

    let _ = writeln!(
        out,
        "\n**Throughput** in messages per second each way, median, with the server's CPU share and the load \
         generator's (per thread, {} thread{}):\n",
        r.client_threads,
        if r.client_threads == 1 { "" } else { "s" }
    );
    header(&mut out, &[keys(), names.iter().map(|n| n.to_string()).collect()].concat());
    for &pt in &points {
        let cells = names.iter().map(|n| {
            let m = |f: &dyn Fn(&Sample) -> Option<f64>| r.spread(Kind::Echo, n, pt, f).map(|x| x.median);
            match (m(&Sample::rate), m(&Sample::server_share), m(&|x| x.client_share(r.client_threads))) {
                (Some(rate), Some(srv), Some(cli)) => {
                    format!("{} · server {:.0}% · client {:.0}%", si(rate), srv * 100.0, cli * 100.0)
                }
                _ => "failed".into(),
            }
        });
        out.push_str(&row(&[lead(pt), cells.collect()].concat()));
    }

    // The connections (or connectors) of this section's points of `kind`, if it has any.
    let count = |kind: Kind| {
        r.samples.iter().find(|s| s.kind == kind && names.contains(&s.server.as_str())).map(|s| s.connections)
    };
    let (connect, idle, resume) = (count(Kind::Connect), count(Kind::Idle), count(Kind::Resume));
    if connect.is_some() || idle.is_some() {
        let _ = writeln!(out, "\n**Connections**:\n");
        let mut keys = vec![
            "server".into(),
            format!("handshakes/s ({} connectors)", connect.unwrap_or(0)),
            "server CPU per handshake".into(),
            "connect-to-101 p50".into(),
            format!("server RSS per idle connection ({} idle)", idle.unwrap_or(0)),
        ];
        if resume.is_some() {
            keys.push("resumed handshakes/s".into());
            keys.push("server CPU per resumed handshake".into());
        }
        header(&mut out, &keys);
        for n in &names {
            let spec = r.servers.iter().find(|s| s.name == *n).expect("named server");
            if spec.raw {
                continue;
            }
            let hs = connect.map(|c| spread_cell(r.spread(Kind::Connect, n, (c, 0, 1), Sample::rate), si));
            let cpu = connect.map(|c| {
                spread_cell(r.spread(Kind::Connect, n, (c, 0, 1), Sample::server_us_each), |x| format!("{x:.0} µs"))
            });
            let p50 = connect
                .map(|c| spread_cell(r.spread(Kind::Connect, n, (c, 0, 1), Sample::p50_us), |x| format!("{x:.0} µs")));
            let rss = idle.map(|c| {
                spread_cell(r.spread(Kind::Idle, n, (c, 0, 1), Sample::bytes_per_idle_connection), |x| {
                    format!("{x:.0} B")
                })
            });
            let dash = || "–".to_string();
            let mut cells = vec![
                n.to_string(),
                hs.unwrap_or_else(dash),
                cpu.unwrap_or_else(dash),
                p50.unwrap_or_else(dash),
                rss.unwrap_or_else(dash),
            ];
            if let Some(c) = resume {
                let at = (c, 0, 1);
                cells.push(spread_cell(r.spread(Kind::Resume, n, at, Sample::resumed_rate), si));
                cells
                    .push(spread_cell(r.spread(Kind::Resume, n, at, Sample::server_us_each), |x| format!("{x:.0} µs")));
            }
            out.push_str(&row(&cells));
        }
    }

    out
}

/// "850 µs", "12.3 ms", "1.20 s".
pub fn duration_us(us: f64) -> String {
    match us {
        u if u >= 1e6 => format!("{:.2} s", u / 1e6),
        u if u >= 1e4 => format!("{:.0} ms", u / 1e3),
        u if u >= 1e3 => format!("{:.1} ms", u / 1e3),
        u => format!("{u:.0} µs"),
    }
}

/// Open-loop points: each server at the same offered rates, so equal work:
/// latency percentiles, and server CPU per message (the fairest comparison
/// of cost, since every server does the same work).
fn latency_section(r: &Results) -> String {
    let names = r.servers_with(Kind::Rate);
    let loads = r.loads();
    let Some(first) = r.samples.iter().find(|s| s.kind == Kind::Rate) else { return String::new() };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### Latency under fixed load (open loop)\n\n\
         {} connections × {}, one message sent every 1/rate seconds round-robin whatever the echoes do; latency \
         counts from each message's intended send time, so a stall shows as latency rather than as fewer samples. \
         The rates are shares of the slowest server's closed-loop saturation at this point (above), so every \
         server does the same work.\n\n\
         **Latency** p50 · p99 · p99.9 · max, medians of {} runs:\n",
        first.connections,
        size_label(first.size),
        r.repeat
    );
    let keys = vec!["load".to_string(), "offered".into()];
    header(&mut out, &[keys.clone(), names.iter().map(|n| n.to_string()).collect()].concat());
    for &o in &loads {
        let cells = names.iter().map(|n| {
            let m =
                |f: fn(&ricochet::bench::Percentiles) -> f64| r.at_load(n, o, |s| s.latency_us(f)).map(|x| x.median);
            let achieved = r.at_load(n, o, Sample::rate).map(|x| x.median);
            match (m(|l| l.p50), m(|l| l.p99), m(|l| l.p99_9), m(|l| l.max)) {
                (Some(a), Some(b), Some(c), Some(d)) => {
                    let mut cell =
                        format!("{} · {} · {} · {}", duration_us(a), duration_us(b), duration_us(c), duration_us(d));
                    if let Some(got) = achieved.filter(|g| *g < 0.97 * o.rate) {
                        let _ = write!(cell, " (kept up with {}/s only)", si(got));
                    }
                    cell
                }
                _ => "failed".into(),
            }
        });
        let lead = vec![format!("{:.0}%", o.load * 100.0), format!("{}/s", si(o.rate))];
        out.push_str(&row(&[lead, cells.collect()].concat()));
    }
    let _ =
        writeln!(out, "\n**Server CPU per message** at the same offered rates (lower is better), median (min–max):\n");
    header(&mut out, &[keys, names.iter().map(|n| n.to_string()).collect()].concat());
    for &o in &loads {
        let cells =
            names.iter().map(|n| spread_cell(r.at_load(n, o, Sample::server_us_each), |x| format!("{x:.2} µs")));
        let lead = vec![format!("{:.0}%", o.load * 100.0), format!("{}/s", si(o.rate))];
        out.push_str(&row(&[lead, cells.collect()].concat()));
    }
    out
}

/// The reconnect storm: every client at once, one echo each.
fn storm_section(r: &Results) -> String {
    let names = r.servers_with(Kind::Storm);
    let Some(first) = r.samples.iter().find(|s| s.kind == Kind::Storm) else { return String::new() };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### Reconnect storm\n\n\
         {} clients connect at once (as after a balancer failover; the load generator opens them as fast as it \
         can make sockets, with no limit on handshakes in flight), each sends one {} message after its \
         handshake. Medians (min–max) of {} runs:\n",
        first.connections,
        size_label(first.size),
        r.repeat
    );
    header(
        &mut out,
        &[
            "server".to_string(),
            "all first echoes after".into(),
            "connect-to-first-echo p50".into(),
            "p99".into(),
            "max".into(),
            "server CPU per connection".into(),
        ],
    );
    for n in &names {
        let of = |s: &Sample| s.kind == Kind::Storm && s.server == *n;
        let lat = |f: fn(&ricochet::bench::Percentiles) -> f64| {
            spread_cell(r.spread_where(of, |s| s.latency_us(f)), duration_us)
        };
        out.push_str(&row(&[
            n.to_string(),
            spread_cell(r.spread_where(of, Sample::window_seconds), |x| duration_us(x * 1e6)),
            lat(|l| l.p50),
            lat(|l| l.p99),
            lat(|l| l.max),
            spread_cell(r.spread_where(of, Sample::server_us_each), |x| format!("{x:.0} µs")),
        ]));
    }
    out
}

/// Compressed text under permessage-deflate: each deflate server's messages
/// per server CPU-second, and its server CPU per message against the same
/// backend's uncompressed (binary) echo of the same size.
fn deflate_section(r: &Results) -> String {
    let names: Vec<&str> = r.servers.iter().filter(|s| s.deflate).map(|s| s.name.as_str()).collect();
    let points = r.echo_points_of(&names);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### permessage-deflate: compressed text, echoed as it came\n\n\
         **Messages per server CPU-second** (higher is better), median (min–max) of {} runs, and **server CPU \
         per message ÷ the same backend's uncompressed echo** of the same size (binary, the tables above); \
         sizes are of the text before compression (about 3:1):\n",
        r.repeat
    );
    let keys = vec!["connections".to_string(), "size".into()];
    header(&mut out, &[keys, names.iter().map(|n| n.to_string()).collect()].concat());
    for &(c, size, p) in &points {
        let cells = names.iter().map(|n| {
            let per = |name: &str| r.spread(Kind::Echo, name, (c, size, p), Sample::per_server_cpu_second);
            let ours = spread_cell(per(n), si);
            let plain = n.strip_suffix("-deflate").and_then(&per);
            match (per(n), plain) {
                (Some(z), Some(u)) => format!("{ours} · ×{:.2} CPU", u.median / z.median),
                _ => ours,
            }
        });
        out.push_str(&row(&[vec![c.to_string(), size_label(size)], cells.collect()].concat()));
    }
    let idle: Vec<String> = names
        .iter()
        .filter_map(|n| {
            let s = r.samples.iter().find(|s| s.kind == Kind::Idle && s.server == *n)?;
            let b = r.spread(Kind::Idle, n, (s.connections, s.size, 1), Sample::bytes_per_idle_connection)?;
            Some(format!("{n} {:.0} B ({} idle, each after one compressed echo)", b.median, s.connections))
        })
        .collect();
    if !idle.is_empty() {
        let _ = writeln!(out, "\nServer RSS per idle connection with permessage-deflate: {}.", idle.join("; "));
    }
    out
}

/// A fan-out point: members, their rooms, the message size.
type RoomPoint = (usize, RoomShape, usize);

/// What a fan-out point is, in words.
fn room_label((members, shape, size): RoomPoint) -> String {
    let what = match shape.rate {
        Some(rate) => format!("1 room × {members}, 1 publisher at {}/s", si(rate)),
        None if shape.rooms == 1 => format!("1 room × {members}, all publishing in lock step"),
        None => format!("{} rooms × {}, all publishing", shape.rooms, members / shape.rooms.max(1)),
    };
    format!("{what}, {}", size_label(size))
}

/// The fan-out tables of a run that has room points (`make bench` puts
/// them between their own markers, so a run of the rooms alone,
/// `make bench-rooms`, refreshes them and leaves the echo tables be).
pub fn fanout(r: &Results) -> Option<String> {
    r.samples.iter().any(|s| s.kind == Kind::Room).then(|| {
        // With its own host line: these tables stand on their own page section.
        let mut out = fanout_section(r);
        footer(r, &mut out);
        out
    })
}

/// Rooms: deliveries per server CPU-second at each fan-out point, Ricochet
/// over the best peer, publish-to-delivery latency, and memory per idle
/// member. A server that lost or never delivered messages at a point shows
/// how many, not a figure.
fn fanout_section(r: &Results) -> String {
    let names: Vec<&str> = r.servers.iter().filter(|s| s.rooms).map(|s| s.name.as_str()).collect();
    let ours: Vec<&str> = r.servers.iter().filter(|s| s.rooms && s.ricochet).map(|s| s.name.as_str()).collect();
    let peers: Vec<&str> = r.servers.iter().filter(|s| s.rooms && !s.ricochet).map(|s| s.name.as_str()).collect();
    let mut points: Vec<RoomPoint> = Vec::new();
    for s in r.samples.iter().filter(|s| s.kind == Kind::Room) {
        if let Some(shape) = s.room {
            if !points.contains(&(s.connections, shape, s.size)) {
                points.push((s.connections, shape, s.size));
            }
        }
    }
    let at = |n: &str, (members, shape, size): RoomPoint| {
        let n = n.to_string();
        move |s: &Sample| {
            s.kind == Kind::Room && s.server == n && s.connections == members && s.room == Some(shape) && s.size == size
        }
    };
    // A figure, or what went wrong at the point (messages not delivered).
    let cell = |n: &str, p: RoomPoint, metric: &dyn Fn(&Sample) -> Option<f64>, f: &dyn Fn(f64) -> String| match r
        .spread_where(at(n, p), metric)
    {
        Some(x) => spread_cell(Some(x), f),
        None => {
            let missing: u64 = r
                .samples
                .iter()
                .filter(|s| at(n, p)(s))
                .filter_map(|s| s.report.as_ref())
                .map(|rep| rep.missing_echoes + rep.mismatched_echoes)
                .max()
                .unwrap_or(0);
            if missing > 0 {
                format!("lost {} deliveries", si(missing as f64))
            } else {
                "failed".into()
            }
        }
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Fan-out: rooms\n\n\
         Each message a member publishes goes to every member of its room, the sender included; every member \
         checks every message (whole, once, in each publisher's order) and the load generator times it from \
         publish to delivery (`ricochet bench --mode room`). Peers: sockudo-ws' pub/sub (topics after \
         uWebSockets'), tokio-tungstenite with a `tokio::sync::broadcast` channel per room, and (when Go is \
         installed) gorilla/websocket's chat-hub pattern with a `PreparedMessage` per message \
         (`bench/peers/go/hub.go`).\n\n\
         **Deliveries per server CPU-second** (higher is better), median (min–max) of {} runs:\n",
        r.repeat
    );
    header(&mut out, &[vec!["point".to_string()], names.iter().map(|n| n.to_string()).collect()].concat());
    for &p in &points {
        let cells = names.iter().map(|n| cell(n, p, &Sample::per_server_cpu_second, &si));
        out.push_str(&row(&[vec![room_label(p)], cells.collect()].concat()));
    }
    let _ = writeln!(
        out,
        "
**Ricochet ÷ best peer** in deliveries per server CPU-second, medians:
"
    );
    header(&mut out, &[vec!["point".to_string()], ours.iter().map(|o| format!("{o} ÷ best peer")).collect()].concat());
    for &p in &points {
        let median = |n: &str| r.spread_where(at(n, p), Sample::per_server_cpu_second).map(|x| x.median);
        let best = peers
            .iter()
            .filter_map(|&n| median(n).map(|m| (n, m)))
            .max_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal));
        let cells = ours.iter().map(|o| match (median(o), best) {
            (Some(a), Some((peer, b))) => format!("{:.2} ({peer})", a / b),
            _ => "–".into(),
        });
        out.push_str(&row(&[vec![room_label(p)], cells.collect()].concat()));
    }
    let _ = writeln!(
        out,
        "
**Publish-to-delivery latency**, p50 · p99, medians:
"
    );
    header(&mut out, &[vec!["point".to_string()], names.iter().map(|n| n.to_string()).collect()].concat());
    for &p in &points {
        let cells = names.iter().map(|n| {
            let q = |f: fn(&ricochet::bench::Percentiles) -> f64| {
                r.spread_where(at(n, p), |s| s.latency_us(f)).map(|x| duration_us(x.median))
            };
            match (q(|l| l.p50), q(|l| l.p99)) {
                (Some(a), Some(b)) => format!("{a} · {b}"),
                _ => cell(n, p, &Sample::per_server_cpu_second, &si),
            }
        });
        out.push_str(&row(&[vec![room_label(p)], cells.collect()].concat()));
    }
    let idle: Vec<String> = names
        .iter()
        .filter_map(|n| {
            let s = r.samples.iter().find(|s| s.kind == Kind::Idle && s.server == *n && s.room.is_some())?;
            let b = r.spread_where(
                |x| x.kind == Kind::Idle && x.server == *n && x.room.is_some(),
                Sample::bytes_per_idle_connection,
            )?;
            Some(format!("{n} {:.0} B ({} idle in {} rooms)", b.median, s.connections, s.room?.rooms))
        })
        .collect();
    if !idle.is_empty() {
        let _ = writeln!(
            out,
            "
Server RSS per idle room member: {}.",
            idle.join("; ")
        );
    }
    out
}

/// The host line, skipped servers and failed samples.
fn footer(r: &Results, out: &mut String) {
    let _ = writeln!(
        out,
        "\n{} · kernel {} · {} · {} CPUs · server on CPU {} (one thread), load on CPU {} · {} s per sample{} · {}",
        r.host.hostname,
        r.host.kernel,
        r.host.cpu_model,
        r.host.cpus,
        r.host.server_cpus,
        r.host.client_cpus,
        r.duration_s,
        // Warm-up runs before echo and fixed-rate samples only.
        if r.warmup_s > 0.0 && r.samples.iter().any(|s| matches!(s.kind, Kind::Echo | Kind::Rate)) {
            format!(" after {} s of warm-up", r.warmup_s)
        } else {
            String::new()
        },
        r.host.started
    );
    for (name, why) in &r.skipped {
        let _ = writeln!(out, "\nSkipped {name}: {why}.");
    }
    let failures = r.failures();
    if !failures.is_empty() {
        let _ = writeln!(out, "\n**Failed samples** (their points show as failed):\n");
        for f in failures {
            let _ = writeln!(out, "- {f}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_at_a_glance() {
        assert_eq!(si(137.4), "137");
        assert_eq!(si(13_740.0), "13.7k");
        assert_eq!(si(137_400.0), "137k");
        assert_eq!(si(1_374_000.0), "1.37M");
        assert_eq!(size_label(20), "20 B");
        assert_eq!(size_label(1024), "1 KiB");
        assert_eq!(size_label(65536), "64 KiB");
    }
}
