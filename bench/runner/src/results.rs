//! What a `make bench` run recorded (the JSON file) and the figures derived from it.

use ricochet::bench::Report;
use serde::{Deserialize, Serialize};

/// The machine and the run's settings, so a results file explains itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Host {
    /// Host name.
    pub hostname: String,
    /// Kernel release.
    pub kernel: String,
    /// CPU model.
    pub cpu_model: String,
    /// CPUs this run could use.
    pub cpus: usize,
    /// UTC time the run started (RFC 3339).
    pub started: String,
    /// `git describe` of the tree that was measured, when known.
    pub commit: Option<String>,
    /// CPUs the server under test was pinned to.
    pub server_cpus: String,
    /// CPUs the load generator threads were pinned to.
    pub client_cpus: String,
}

/// What kind of point a sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Closed-loop echo of `size`-byte messages over `connections`.
    Echo,
    /// New connections and handshakes per second.
    Connect,
    /// Server RSS with `connections` idle connections.
    Idle,
    /// Open-loop echo at a fixed offered rate (`Sample::offered`): latency
    /// and server CPU per message at equal work.
    Rate,
    /// Reconnect storm: `connections` clients connect at once, one echo each.
    Storm,
    /// wss:// handshakes per second that resume a TLS 1.3 session (the
    /// load generator keeps tickets; each connector's first is full).
    Resume,
    /// Room fan-out (`ricochet bench --mode room`): `connections` members
    /// in `Sample::room`'s rooms; the report counts deliveries.
    Room,
}

/// How a room point spreads its members and who publishes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RoomShape {
    /// Rooms the members are spread over.
    pub rooms: usize,
    /// Members that publish (0 at an idle point: memory per member).
    pub publishers: usize,
    /// Messages per second in all (open loop), or closed loop when None.
    pub rate: Option<f64>,
}

/// One measurement of one server at one point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Echo, connect or idle.
    pub kind: Kind,
    /// Server name (see `servers::Spec`).
    pub server: String,
    /// Connections the load generator opened.
    pub connections: usize,
    /// Message size in bytes (0 for connect and idle).
    pub size: usize,
    /// Messages in flight per connection (echo points).
    #[serde(default = "one")]
    pub pipeline: usize,
    /// Rate points: messages per second offered, and that as a share of the
    /// slowest server's closed-loop saturation at the same point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered: Option<Offered>,
    /// Room points (and idle points against a room server): the rooms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomShape>,
    /// The load generator's report; None when the run failed outright.
    pub report: Option<Report>,
    /// Why the run failed or was unclean, if it was.
    pub error: Option<String>,
}

impl Sample {
    /// Messages (or handshakes) per second.
    pub fn rate(&self) -> Option<f64> {
        self.clean().map(|r| r.messages as f64 / r.window_seconds.max(1e-9))
    }

    /// Messages per second of server CPU time: the figure that stays fair
    /// when the load generator, not the server, is the bottleneck.
    pub fn per_server_cpu_second(&self) -> Option<f64> {
        let r = self.clean()?;
        Some(r.messages as f64 / r.server_cpu_seconds?.max(1e-9))
    }

    /// Server CPU time over wall time (1.0 = one CPU busy all along).
    pub fn server_share(&self) -> Option<f64> {
        let r = self.clean()?;
        Some(r.server_cpu_seconds? / r.window_seconds.max(1e-9))
    }

    /// Load generator CPU time over wall time, per client thread.
    pub fn client_share(&self, client_threads: usize) -> Option<f64> {
        let r = self.clean()?;
        Some(r.client_cpu_seconds / r.window_seconds.max(1e-9) / client_threads.max(1) as f64)
    }

    /// Server RSS growth per idle connection, in bytes.
    pub fn bytes_per_idle_connection(&self) -> Option<f64> {
        let r = self.clean()?;
        let (before, after) = (r.server_rss_kib_before?, r.server_rss_kib_after?);
        // A server whose memory fell during the run was not fresh: no figure.
        (after > before).then(|| (after - before) as f64 * 1024.0 / r.connections.max(1) as f64)
    }

    /// Median connect-to-101 latency in microseconds (connect points).
    pub fn p50_us(&self) -> Option<f64> {
        self.clean().map(|r| r.latency_us.p50)
    }

    /// Resumed TLS handshakes per second (resume points); None when fewer
    /// than nine in ten of the handshakes resumed (each connector's first is
    /// full), since then the figure would not be of resumption.
    pub fn resumed_rate(&self) -> Option<f64> {
        let r = self.clean()?;
        (r.resumed_handshakes * 10 >= r.messages * 9).then(|| r.resumed_handshakes as f64 / r.window_seconds.max(1e-9))
    }

    /// A latency percentile in microseconds, picked by `f`.
    pub fn latency_us(&self, f: impl Fn(&ricochet::bench::Percentiles) -> f64) -> Option<f64> {
        self.clean().map(|r| f(&r.latency_us))
    }

    /// Storm points: seconds from the first connect to the last first echo.
    pub fn window_seconds(&self) -> Option<f64> {
        self.clean().map(|r| r.window_seconds)
    }

    /// Server CPU microseconds per thing the report counts: per handshake
    /// (connect and resume points; the fair figure when the load generator
    /// limits handshakes per second), per message (rate points), per
    /// connection (storm points).
    pub fn server_us_each(&self) -> Option<f64> {
        let r = self.clean()?;
        Some(r.server_cpu_seconds? * 1e6 / r.messages.max(1) as f64)
    }

    /// Connections, size and messages in flight.
    pub fn point(&self) -> Point {
        (self.connections, self.size, self.pipeline)
    }

    fn clean(&self) -> Option<&Report> {
        self.report.as_ref().filter(|r| r.clean() && self.error.is_none())
    }
}

/// The spread of `metric` over the `samples` that `which` selects; None
/// when there are none or any of them failed (a failure is never averaged away).
pub fn spread_in(
    samples: &[Sample],
    which: impl Fn(&Sample) -> bool,
    metric: impl Fn(&Sample) -> Option<f64>,
) -> Option<Spread> {
    let xs: Option<Vec<f64>> = samples.iter().filter(|s| which(s)).map(metric).collect();
    Spread::of(xs?)
}

/// What a rate point offers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Offered {
    /// Messages per second, in all.
    pub rate: f64,
    /// `rate` over the slowest server's closed-loop messages per second at this point.
    pub load: f64,
}

fn one() -> usize {
    1
}

/// An echo point: connections, message size, messages in flight per connection.
pub type Point = (usize, usize, usize);

/// Everything one run recorded: written as `bench/results/<date>-<host>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// Where and when.
    pub host: Host,
    /// The command line that produced this file.
    pub command: String,
    /// Seconds measured per echo or connect sample.
    pub duration_s: f64,
    /// Seconds of traffic before each echo and fixed-rate sample's window
    /// (runs before it was recorded had none).
    #[serde(default)]
    pub warmup_s: f64,
    /// Samples per server and point.
    pub repeat: usize,
    /// Load generator threads per sample.
    pub client_threads: usize,
    /// The servers, in alternation order.
    pub servers: Vec<crate::servers::Spec>,
    /// Servers left out, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Every sample, in the order taken.
    pub samples: Vec<Sample>,
    /// The TLS crypto provider every wss:// server was built with (the one
    /// `make bench-build` compiled in); runs before it was recorded used ring.
    #[serde(default = "ring")]
    pub tls_provider: String,
}

fn ring() -> String {
    "ring".into()
}

/// Median with the range it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The median.
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Spread {
    /// None when `xs` is empty.
    pub fn of(mut xs: Vec<f64>) -> Option<Spread> {
        if xs.is_empty() {
            return None;
        }
        xs.sort_by(f64::total_cmp);
        let n = xs.len();
        let median = if n % 2 == 1 { xs[n / 2] } else { (xs[n / 2 - 1] + xs[n / 2]) / 2.0 };
        Some(Spread { median, min: xs[0], max: xs[n - 1] })
    }
}

impl Results {
    /// The spread of `metric` over the samples of one server at one point;
    /// None when any sample there failed (a failure is never averaged away).
    pub fn spread(
        &self,
        kind: Kind,
        server: &str,
        (connections, size, pipeline): Point,
        metric: impl Fn(&Sample) -> Option<f64>,
    ) -> Option<Spread> {
        spread_in(
            &self.samples,
            |s| s.kind == kind && s.server == server && s.point() == (connections, size, pipeline),
            metric,
        )
    }

    /// The spread of `metric` over the samples `which` selects; None when
    /// there are none or any of them failed.
    pub fn spread_where(
        &self,
        which: impl Fn(&Sample) -> bool,
        metric: impl Fn(&Sample) -> Option<f64>,
    ) -> Option<Spread> {
        spread_in(&self.samples, which, metric)
    }

    /// The spread of `metric` over `server`'s rate samples at offered load `o`.
    pub fn at_load(&self, server: &str, o: Offered, metric: impl Fn(&Sample) -> Option<f64>) -> Option<Spread> {
        self.spread_where(|s| s.kind == Kind::Rate && s.server == server && s.offered == Some(o), metric)
    }

    /// The servers with samples of `kind`, in table order.
    pub fn servers_with(&self, kind: Kind) -> Vec<&str> {
        self.servers
            .iter()
            .map(|s| s.name.as_str())
            .filter(|n| self.samples.iter().any(|s| s.kind == kind && s.server == *n))
            .collect()
    }

    /// The offered loads of the rate points, in the order first run.
    pub fn loads(&self) -> Vec<Offered> {
        let mut v: Vec<Offered> = Vec::new();
        for o in self.samples.iter().filter(|s| s.kind == Kind::Rate).filter_map(|s| s.offered) {
            if !v.contains(&o) {
                v.push(o);
            }
        }
        v
    }

    /// The echo points in the order they were run.
    pub fn echo_points(&self) -> Vec<Point> {
        self.echo_points_of(&self.servers.iter().map(|s| s.name.as_str()).collect::<Vec<_>>())
    }

    /// The echo points measured for any of `servers`, in order of first appearance.
    pub fn echo_points_of(&self, servers: &[&str]) -> Vec<Point> {
        let mut v: Vec<Point> = Vec::new();
        for s in self.samples.iter().filter(|s| s.kind == Kind::Echo && servers.contains(&s.server.as_str())) {
            if !v.contains(&(s.connections, s.size, s.pipeline)) {
                v.push((s.connections, s.size, s.pipeline));
            }
        }
        v
    }

    /// Samples that failed, as `server at point: why` lines.
    pub fn failures(&self) -> Vec<String> {
        self.failures_where(|_| true)
    }

    /// The failures that fail a run: all but a peer's room sample that only
    /// missed deliveries (a room server that cannot keep up with a fixed
    /// rate falls behind: the tables show how much, and that is the finding).
    pub fn run_failures(&self) -> Vec<String> {
        let peer = |name: &str| self.servers.iter().any(|s| s.name == name && !s.ricochet);
        self.failures_where(|s| {
            let behind = s
                .report
                .as_ref()
                .is_some_and(|r| r.mismatched_echoes == 0 && r.failed_connections == 0 && r.missing_echoes > 0);
            !(s.kind == Kind::Room && s.error.is_none() && behind && peer(&s.server))
        })
    }

    fn failures_where(&self, counts: impl Fn(&Sample) -> bool) -> Vec<String> {
        self.samples
            .iter()
            .filter(|s| counts(s))
            .filter_map(|s| {
                let why = s.error.clone().or_else(|| {
                    let r = s.report.as_ref()?;
                    (!r.clean()).then(|| {
                        format!(
                            "{} wrong, {} missing, {} failed connections",
                            r.mismatched_echoes, r.missing_echoes, r.failed_connections
                        )
                    })
                })?;
                Some(format!("{} {:?} {} conns {} B x{}: {why}", s.server, s.kind, s.connections, s.size, s.pipeline))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_middle_and_the_ends() {
        assert_eq!(Spread::of(vec![3.0, 1.0, 2.0]), Some(Spread { median: 2.0, min: 1.0, max: 3.0 }));
        assert_eq!(Spread::of(vec![4.0, 1.0]).map(|s| s.median), Some(2.5));
        assert_eq!(Spread::of(vec![]), None);
    }

    #[test]
    fn a_failed_sample_spoils_its_point() {
        let ok = Report { messages: 100, window_seconds: 1.0, server_cpu_seconds: Some(0.5), ..Default::default() };
        let bad = Report { missing_echoes: 1, ..ok.clone() };
        let sample = |r: Report| Sample {
            kind: Kind::Echo,
            server: "s".into(),
            connections: 1,
            size: 20,
            pipeline: 1,
            offered: None,
            room: None,
            report: Some(r),
            error: None,
        };
        let mut results = Results {
            host: Host {
                hostname: String::new(),
                kernel: String::new(),
                cpu_model: String::new(),
                cpus: 2,
                started: String::new(),
                commit: None,
                server_cpus: "0".into(),
                client_cpus: "1".into(),
            },
            tls_provider: "ring".into(),
            command: String::new(),
            duration_s: 1.0,
            warmup_s: 0.0,
            repeat: 2,
            client_threads: 1,
            servers: vec![],
            skipped: vec![],
            samples: vec![sample(ok.clone()), sample(ok)],
        };
        let per = |r: &Results| r.spread(Kind::Echo, "s", (1, 20, 1), Sample::per_server_cpu_second);
        assert_eq!(per(&results).map(|s| s.median), Some(200.0));
        results.samples.push(sample(bad));
        assert_eq!(per(&results), None);
        assert_eq!(results.failures().len(), 1);
    }
}
