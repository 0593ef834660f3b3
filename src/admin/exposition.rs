//! What a scrape shows: every shard's counters as metric families, encoded
//! as Prometheus text (format 0.0.4) for `/metrics` and as JSON for
//! `/stats.json`. Both encodings come from the same families, so they never
//! disagree. Labels are only of bounded cardinality: shard, backend, HTTP
//! status and reason, close code, timeout kind, TLS result.

use crate::admin::process_stats::ProcessStats;
use crate::server::metrics::{ShardMetrics, TIMEOUT_KINDS};
use crate::ws::counters::{ByCloseCode, Counter};
use crate::ws::handshake::REFUSALS;
use std::fmt::Write;

/// The content type Prometheus expects of the text format (Prometheus 3
/// refuses a scrape whose type is missing or unknown).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a family only goes up or may go down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (its name ends in `_total`).
    Counter,
    /// A current value.
    Gauge,
}

/// One labelled value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Label names and values.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

/// A metric: its name, help, kind and samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// The full name (counters with `_total`).
    pub name: &'static str,
    /// One line saying what it counts.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Its samples.
    pub samples: Vec<Sample>,
}

/// What the process is, for `ricochet_build_info` and for deciding which
/// families apply.
#[derive(Clone, Debug)]
pub struct BuildInfo {
    /// The crate version.
    pub version: &'static str,
    /// The git commit it was built from.
    pub commit: &'static str,
    /// `epoll` or `io_uring`.
    pub backend: &'static str,
    /// TLS listeners exist.
    pub tls: bool,
    /// permessage-deflate is enabled.
    pub deflate: bool,
    /// Listeners require a PROXY protocol header.
    pub proxy: bool,
    /// Connections have rate limits.
    pub rate_limited: bool,
    /// Connections are counted per client address (`--max-connections-per-ip`).
    pub per_ip: bool,
    /// With `--takeover`: the listening sockets this process took over
    /// from the one before it (0 after a fresh start).
    pub inherited: Option<u64>,
}

/// Everything one scrape reads.
pub struct Scrape<'a> {
    /// Each shard's counters, in shard order.
    pub shards: &'a [std::sync::Arc<ShardMetrics>],
    /// What the process is.
    pub info: &'a BuildInfo,
    /// WebSocket connections admitted and not yet closed, process-wide.
    pub websockets_open: u64,
    /// The process's resource use, if `/proc` could be read.
    pub process: Option<ProcessStats>,
    /// With `--reply room`: rooms open now.
    pub rooms_open: Option<u64>,
    /// With `--cluster`: the bridge's counters.
    pub cluster: Option<&'a crate::cluster::ClusterStats>,
}

fn one(value: f64) -> Vec<Sample> {
    vec![Sample { labels: Vec::new(), value }]
}

fn labelled<'a>(name: &'static str, values: impl IntoIterator<Item = (&'a str, u64)>) -> Vec<Sample> {
    values.into_iter().map(|(l, v)| Sample { labels: vec![(name, l.to_string())], value: v as f64 }).collect()
}

fn codes(c: &ByCloseCode) -> Vec<Sample> {
    labelled("code", c.values())
}

/// The codes of `c` that `keep` names (by label): a family exports only the
/// codes that can occur in it, so none is a series that never moves.
fn codes_where(c: &ByCloseCode, keep: impl Fn(&str) -> bool) -> Vec<Sample> {
    labelled("code", c.values().filter(|(l, _)| keep(l)))
}

impl Scrape<'_> {
    /// One sample per shard of what `get` reads from its counters.
    fn per_shard(&self, get: impl Fn(&ShardMetrics) -> u64) -> Vec<Sample> {
        self.shards
            .iter()
            .enumerate()
            .map(|(i, m)| Sample { labels: vec![("shard", i.to_string())], value: get(m) as f64 })
            .collect()
    }

    /// Every family, in a stable order.
    pub fn families(&self) -> Vec<Family> {
        let t = ShardMetrics::sum(self.shards.iter().map(|s| &**s));
        let i = self.info;
        let mut f = Vec::new();
        let mut add = |name, help, kind, samples| f.push(Family { name, help, kind, samples });
        use Kind::{Counter as C, Gauge as G};
        add(
            "ricochet_build_info",
            "Always 1; the labels say which build and backend this is.",
            G,
            vec![Sample {
                labels: vec![
                    ("version", i.version.to_string()),
                    ("commit", i.commit.to_string()),
                    ("backend", i.backend.to_string()),
                ],
                value: 1.0,
            }],
        );
        add("ricochet_shards", "Shards (pinned event-loop threads).", G, one(self.shards.len() as f64));
        add(
            "ricochet_connections_open",
            "TCP connections a shard holds: handshaking, open or closing.",
            G,
            self.per_shard(|m| m.connections_open.get()),
        );
        add(
            "ricochet_websockets_open",
            "WebSocket connections admitted and not yet closed (what --max-connections limits).",
            G,
            one(self.websockets_open as f64),
        );
        add(
            "ricochet_connections_accepted_total",
            "TCP connections accepted.",
            C,
            self.per_shard(|m| m.accepted.get()),
        );
        add("ricochet_handshakes_total", "WebSocket handshakes completed.", C, self.per_shard(|m| m.upgraded.get()));
        add(
            "ricochet_handshakes_refused_total",
            "Handshakes refused with an HTTP error, by status and reason.",
            C,
            REFUSALS
                .iter()
                .zip(&t.refused)
                .map(|((reason, status), n)| Sample {
                    labels: vec![("status", status.to_string()), ("reason", reason.to_string())],
                    value: n.get() as f64,
                })
                .collect(),
        );
        add(
            "ricochet_messages_received_total",
            "Data messages received whole (all but the discarded ones are echoed).",
            C,
            self.per_shard(|m| m.messages.get() + m.core.messages_discarded.get()),
        );
        add(
            "ricochet_messages_sent_total",
            "Data messages echoed (queued whole for sending).",
            C,
            self.per_shard(|m| m.messages.get()),
        );
        add(
            "ricochet_messages_discarded_total",
            "Data messages received after the server's close frame, read only to find the client's close (RFC 6455 section 5.5.1).",
            C,
            self.per_shard(|m| m.core.messages_discarded.get()),
        );
        add(
            "ricochet_received_bytes_total",
            "Bytes read from client sockets (TLS records on TLS listeners).",
            C,
            self.per_shard(|m| m.bytes_in.get()),
        );
        add(
            "ricochet_sent_bytes_total",
            "Bytes written to client sockets (TLS records on TLS listeners).",
            C,
            self.per_shard(|m| m.bytes_out.get()),
        );
        add(
            "ricochet_close_frames_received_total",
            "Valid close frames received, by code (1005: a close without a code; other: 3000-4999).",
            C,
            codes(&t.core.close_received),
        );
        // RFC 6455 §7.4.1: 1005 is never sent.
        add(
            "ricochet_close_frames_sent_total",
            "Close frames sent, by code (other: 3000-4999, echoed).",
            C,
            codes_where(&t.core.close_sent, |l| l != "1005"),
        );
        add(
            "ricochet_protocol_errors_total",
            "Connections failed for a protocol violation, by the close code sent.",
            C,
            codes_where(&t.protocol_errors, |l| {
                crate::ws::error::PROTOCOL_ERROR_CODES.iter().any(|c| c.to_string() == l)
            }),
        );
        add(
            "ricochet_backpressure_stalls_total",
            "Writes the client's socket did not take whole: the connection stopped being read until they drained.",
            C,
            self.per_shard(|m| m.backpressure_stalls.get()),
        );
        if i.rate_limited {
            add(
                "ricochet_rate_limited_total",
                "Times a connection sent more than --max-message-rate or --max-bytes-per-second allow and was not read until its bucket refilled.",
                C,
                self.per_shard(|m| m.rate_limited.get()),
            );
        }
        if let Some(open) = self.rooms_open {
            add("ricochet_rooms_open", "Rooms with members (--reply room).", G, one(open as f64));
            add(
                "ricochet_room_members",
                "Room members, by the shard that holds them.",
                G,
                self.per_shard(|m| m.room_members.get()),
            );
            add(
                "ricochet_room_messages_published_total",
                "Messages members sent into their rooms.",
                C,
                self.per_shard(|m| m.room_published.get()),
            );
            add(
                "ricochet_room_deliveries_total",
                "Room messages queued for a member, by the receiving member's shard (one per member reached).",
                C,
                self.per_shard(|m| m.room_deliveries.get()),
            );
            add(
                "ricochet_room_drops_total",
                "Room messages left out for a member whose backlog was full (--slow-member drop).",
                C,
                self.per_shard(|m| m.room_dropped.get()),
            );
            add(
                "ricochet_room_slow_closes_total",
                "Members closed with 1008 because their backlog was full (--slow-member close).",
                C,
                self.per_shard(|m| m.room_slow_closes.get()),
            );
            add(
                "ricochet_room_backlog_bytes",
                "Room output bytes waiting for members' sockets (each member counts the frames it still has to send).",
                G,
                self.per_shard(|m| m.room_backlog_bytes.get()),
            );
            add(
                "ricochet_room_inbox_depth",
                "Room messages waiting in a shard's inbox from other shards (at its last turn).",
                G,
                self.per_shard(|m| m.room_inbox_depth.get()),
            );
            add(
                "ricochet_room_inbox_waits_total",
                "Times a publishing member was not read because a shard with members of its room had a full inbox.",
                C,
                self.per_shard(|m| m.room_inbox_waits.get()),
            );
        }
        if let Some(c) = self.cluster {
            use crate::cluster::{ClusterStats as S, DropReason};
            add(
                "ricochet_cluster_connected",
                "1 while the bridge is connected to a NATS server (--cluster), else 0.",
                G,
                one(S::get(&c.connected) as f64),
            );
            add(
                "ricochet_cluster_published_total",
                "Room messages of members here published to NATS for other hosts (once each, whatever the rooms' sizes).",
                C,
                one(S::get(&c.published) as f64),
            );
            add(
                "ricochet_cluster_received_total",
                "Room messages from other hosts received from NATS.",
                C,
                one(S::get(&c.received) as f64),
            );
            add(
                "ricochet_cluster_dropped_total",
                "Room messages that did not cross between this process and NATS, by reason: queue_full, disconnected and too_large going out (a message dropped so reaches no other host); malformed, shards_busy and slow_consumer coming in.",
                C,
                labelled("reason", DropReason::ALL.iter().map(|r| (r.label(), c.dropped(*r)))),
            );
            add(
                "ricochet_cluster_reconnects_total",
                "Connections to NATS made again after one was lost.",
                C,
                one(S::get(&c.reconnects) as f64),
            );
            add(
                "ricochet_cluster_queue_depth",
                "Room messages waiting for the bridge to publish them to NATS.",
                G,
                one(S::get(&c.queue_depth) as f64),
            );
            add(
                "ricochet_cluster_queue_bytes",
                "Their payload bytes (at most --cluster-queue).",
                G,
                one(S::get(&c.queue_bytes) as f64),
            );
            add(
                "ricochet_cluster_subscriptions",
                "Rooms with members here, each subscribed to its NATS subject.",
                G,
                one(S::get(&c.subscriptions) as f64),
            );
            add(
                "ricochet_cluster_max_payload_bytes",
                "The NATS server's max_payload as last read (0 before the first connection); room messages larger than it less 1 byte are refused with 1009.",
                G,
                one(S::get(&c.max_payload) as f64),
            );
        }
        if i.per_ip {
            add(
                "ricochet_connections_refused_total",
                "Connections closed unanswered at accept (or after their PROXY header): their address already had --max-connections-per-ip connections in their handshake.",
                C,
                self.per_shard(|m| m.arrivals_refused.get()),
            );
        }
        add(
            "ricochet_timeouts_total",
            "Timeouts, by kind: handshake (request or TLS handshake too slow), idle (no frame, ping unanswered), close (after a close frame or a refusal, the client neither finished nor hung up in time).",
            C,
            labelled("kind", TIMEOUT_KINDS.iter().copied().zip(t.timeouts.iter().map(Counter::get))),
        );
        if i.backend == "io_uring" {
            add(
                "ricochet_uring_receive_starved_total",
                "io_uring receives that found no free buffer and were re-armed; many mean --uring-buffers is too small.",
                C,
                self.per_shard(|m| m.recv_starved.get()),
            );
            add(
                "ricochet_uring_receive_buffers",
                "io_uring receive buffers a shard's ring has grown to.",
                G,
                self.per_shard(|m| m.ring_buffers.get()),
            );
        }
        if i.tls {
            add(
                "ricochet_tls_handshakes_total",
                "TLS handshakes by result: full, resumed (a ticket or session ID) or failed (including non-TLS bytes).",
                C,
                labelled(
                    "result",
                    [("full", t.tls_full.get()), ("resumed", t.tls_resumed.get()), ("failed", t.tls_failures.get())],
                ),
            );
            add(
                "ricochet_tls_handshakes_deferred_total",
                "TLS handshake inputs left for a later event-loop turn: the shard's per-turn handshake budget was spent, so established connections went first.",
                C,
                self.per_shard(|m| m.tls_deferred.get()),
            );
        }
        if i.deflate {
            add(
                "ricochet_deflate_messages_inflated_total",
                "Compressed messages inflated to be checked (permessage-deflate).",
                C,
                self.per_shard(|m| m.core.inflated_messages.get()),
            );
            add(
                "ricochet_deflate_inflaters_in_use",
                "Pooled inflaters lent to compressed messages that span reads.",
                G,
                self.per_shard(|m| m.inflaters_in_use.get()),
            );
        }
        if i.proxy {
            add(
                "ricochet_proxy_headers_total",
                "PROXY protocol headers read, by result: ok, or error (missing or malformed; the connection was closed).",
                C,
                labelled("result", [("ok", t.proxy_headers.get()), ("error", t.proxy_errors.get())]),
            );
        }
        if let Some(n) = i.inherited {
            add(
                "ricochet_listeners_inherited",
                "Listening sockets this process took over from the server before it (--takeover); 0 after a fresh start.",
                G,
                one(n as f64),
            );
        }
        if let Some(p) = self.process {
            add("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", C, one(p.cpu_seconds));
            add("process_resident_memory_bytes", "Resident memory size in bytes.", G, one(p.resident_bytes as f64));
            add("process_virtual_memory_bytes", "Virtual memory size in bytes.", G, one(p.virtual_bytes as f64));
            add("process_open_fds", "Number of open file descriptors.", G, one(p.open_fds as f64));
            add("process_max_fds", "Maximum number of open file descriptors.", G, one(p.max_fds as f64));
            add(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                G,
                one(p.start_time_seconds),
            );
            add("process_threads", "Number of OS threads in the process.", G, one(p.threads as f64));
        }
        f
    }
}

/// A value as the text format writes it: integers without a fraction.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Encodes families as Prometheus text format 0.0.4.
pub fn prometheus_text(families: &[Family]) -> String {
    let mut out = String::with_capacity(8192);
    for f in families {
        // HELP escapes backslash and newline; label values also the double quote.
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help.replace('\\', "\\\\").replace('\n', "\\n"));
        let kind = if f.kind == Kind::Counter { "counter" } else { "gauge" };
        let _ = writeln!(out, "# TYPE {} {kind}", f.name);
        for s in &f.samples {
            out.push_str(f.name);
            if !s.labels.is_empty() {
                out.push('{');
                for (k, (name, value)) in s.labels.iter().enumerate() {
                    if k > 0 {
                        out.push(',');
                    }
                    let v = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                    let _ = write!(out, "{name}=\"{v}\"");
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(s.value));
        }
    }
    out
}

/// Encodes families as a JSON object: each name maps to its samples, each
/// with its labels and value (`jq '.ricochet_messages_received_total |
/// map(.value) | add'`).
pub fn json(families: &[Family]) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for f in families {
        let samples: Vec<serde_json::Value> = f
            .samples
            .iter()
            .map(|s| {
                let labels: serde_json::Map<String, serde_json::Value> =
                    s.labels.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(v.as_str()))).collect();
                serde_json::json!({ "labels": labels, "value": s.value })
            })
            .collect();
        map.insert(f.name.to_string(), serde_json::Value::Array(samples));
    }
    serde_json::Value::Object(map)
}

/// Every metric family an admin listener can export, as a Markdown table
/// (name, type, labels, what it counts), for docs/metrics.md: read off the
/// same families a scrape encodes, with every optional family switched on,
/// so the reference cannot drift from the code (`ricochet generate`).
pub fn reference_markdown() -> String {
    let shards = [std::sync::Arc::new(ShardMetrics::default())];
    let info = BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        commit: "",
        backend: "io_uring",
        tls: true,
        deflate: true,
        proxy: true,
        rate_limited: true,
        per_ip: true,
        inherited: Some(0),
    };
    let process = ProcessStats {
        cpu_seconds: 0.0,
        resident_bytes: 0,
        virtual_bytes: 0,
        open_fds: 0,
        max_fds: 0,
        start_time_seconds: 0.0,
        threads: 0,
    };
    let cluster = crate::cluster::ClusterStats::default();
    let scrape = Scrape {
        shards: &shards,
        info: &info,
        websockets_open: 0,
        process: Some(process),
        rooms_open: Some(0),
        cluster: Some(&cluster),
    };
    let mut out = String::from("| Metric | Type | Labels | What it counts |\n|---|---|---|---|\n");
    for f in scrape.families() {
        let mut labels: Vec<&str> = f.samples.iter().flat_map(|s| s.labels.iter().map(|(k, _)| *k)).collect();
        labels.sort_unstable();
        labels.dedup();
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "| `{}` | {kind} | {} | {} |", f.name, labels.join(", "), f.help.replace('|', "\\|"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn info(backend: &'static str, tls: bool, deflate: bool) -> BuildInfo {
        BuildInfo {
            version: "1.2.3",
            commit: "abc\"d",
            backend,
            tls,
            deflate,
            proxy: deflate,
            rate_limited: deflate,
            per_ip: deflate,
            inherited: deflate.then_some(3),
        }
    }

    #[test]
    fn text_has_help_type_and_escaped_labels() {
        let fams = vec![
            Family {
                name: "x_total",
                help: "a \\ b\nc",
                kind: Kind::Counter,
                samples: vec![Sample { labels: vec![("l", "q\"\\\n".into()), ("m", "2".into())], value: 3.0 }],
            },
            Family { name: "y", help: "h", kind: Kind::Gauge, samples: vec![Sample { labels: vec![], value: 0.25 }] },
        ];
        assert_eq!(
            prometheus_text(&fams),
            "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\nx_total{l=\"q\\\"\\\\\\n\",m=\"2\"} 3\n\
             # HELP y h\n# TYPE y gauge\ny 0.25\n"
        );
    }

    #[test]
    fn shards_are_labelled_and_label_sets_are_summed() {
        let a = Arc::new(ShardMetrics::default());
        let b = Arc::new(ShardMetrics::default());
        a.messages.add(5);
        b.messages.add(7);
        a.core.close_sent.count(1001);
        b.core.close_sent.count(1001);
        b.refuse(&crate::ws::handshake::Rejection::Unauthorized(None));
        let shards = [a, b];
        let i = info("epoll", false, false);
        let text = prometheus_text(
            &Scrape { shards: &shards, info: &i, websockets_open: 4, process: None, rooms_open: None, cluster: None }
                .families(),
        );
        for line in [
            "ricochet_messages_received_total{shard=\"0\"} 5",
            "ricochet_messages_received_total{shard=\"1\"} 7",
            "ricochet_close_frames_sent_total{code=\"1001\"} 2",
            "ricochet_close_frames_sent_total{code=\"other\"} 0",
            "ricochet_handshakes_refused_total{status=\"401\",reason=\"unauthorized\"} 1",
            "ricochet_websockets_open 4",
            "ricochet_build_info{version=\"1.2.3\",commit=\"abc\\\"d\",backend=\"epoll\"} 1",
            "ricochet_timeouts_total{kind=\"idle\"} 0",
            "ricochet_protocol_errors_total{code=\"1002\"} 0",
            "ricochet_close_frames_received_total{code=\"1005\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        // Series that could never move are not exported (#24): no protocol
        // error calls for 1000 or 1005, and 1005 is never sent (RFC 6455 §7.4.1).
        for absent in [
            "ricochet_protocol_errors_total{code=\"1000\"}",
            "ricochet_protocol_errors_total{code=\"1005\"}",
            "ricochet_protocol_errors_total{code=\"other\"}",
            "ricochet_close_frames_sent_total{code=\"1005\"}",
        ] {
            assert!(!text.contains(absent), "{absent} exported:\n{text}");
        }
        // Families that do not apply are left out.
        assert!(!text.contains("ricochet_tls_") && !text.contains("uring") && !text.contains("deflate"));
        assert!(!text.contains("process_"));
    }

    #[test]
    fn optional_families_appear_when_they_apply() {
        let shards = [Arc::new(ShardMetrics::default())];
        let i = info("io_uring", true, true);
        let p = ProcessStats::read().ok();
        let names: Vec<_> =
            Scrape { shards: &shards, info: &i, websockets_open: 0, process: p, rooms_open: None, cluster: None }
                .families()
                .into_iter()
                .map(|f| f.name)
                .collect();
        for n in [
            "ricochet_uring_receive_starved_total",
            "ricochet_tls_handshakes_total",
            "ricochet_deflate_messages_inflated_total",
            "ricochet_deflate_inflaters_in_use",
            "ricochet_proxy_headers_total",
            "ricochet_rate_limited_total",
            "ricochet_connections_refused_total",
            "ricochet_listeners_inherited",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(names.contains(&n), "{n} missing");
        }
        for n in &names {
            let counter =
                Scrape { shards: &shards, info: &i, websockets_open: 0, process: p, rooms_open: None, cluster: None }
                    .families()
                    .into_iter()
                    .find(|f| f.name == *n)
                    .unwrap()
                    .kind
                    == Kind::Counter;
            assert_eq!(counter, n.ends_with("_total"), "{n}: counters and only counters end in _total");
        }
    }

    #[test]
    fn json_holds_the_same_figures() {
        let a = Arc::new(ShardMetrics::default());
        a.bytes_in.add(1234);
        let shards = [a];
        let i = info("epoll", false, false);
        let fams =
            Scrape { shards: &shards, info: &i, websockets_open: 0, process: None, rooms_open: None, cluster: None }
                .families();
        let j = json(&fams);
        assert_eq!(j["ricochet_received_bytes_total"][0]["value"], 1234.0);
        assert_eq!(j["ricochet_received_bytes_total"][0]["labels"]["shard"], "0");
        assert_eq!(j.as_object().unwrap().len(), fams.len());
    }
}
