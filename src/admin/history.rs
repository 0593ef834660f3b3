//! The last minutes of per-shard rates, sampled once a second by the admin
//! listener's sampler thread, for the status page's charts: a page opened
//! now shows the minutes before it, not an empty chart.

use crate::server::metrics::ShardMetrics;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Arc;

/// Samples kept: five minutes at one a second.
pub const KEEP: usize = 300;

/// One shard over one sampling interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ShardRates {
    /// TCP connections open at the end of the interval.
    pub open: u64,
    /// Messages received per second.
    pub messages_in: f64,
    /// Messages echoed per second.
    pub messages_out: f64,
    /// Bytes read per second.
    pub bytes_in: f64,
    /// Bytes written per second.
    pub bytes_out: f64,
}

/// Every shard at one moment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    /// Seconds since the Unix epoch.
    pub t: f64,
    /// Per shard, in shard order.
    pub shards: Vec<ShardRates>,
}

/// The counters a rate is taken from, as last read.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    messages_in: u64,
    messages_out: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Totals {
    fn read(m: &ShardMetrics) -> Totals {
        Totals {
            messages_in: m.messages.get() + m.core.messages_discarded.get(),
            messages_out: m.messages.get(),
            bytes_in: m.bytes_in.get(),
            bytes_out: m.bytes_out.get(),
        }
    }
}

/// The rates of the last [`KEEP`] intervals.
#[derive(Debug, Default)]
pub struct History {
    points: VecDeque<Point>,
    last: Vec<Totals>,
    last_t: Option<f64>,
}

impl History {
    /// Reads every shard at time `t` (seconds since the epoch) and, from the
    /// second reading on, adds a point with the rates since the last one.
    pub fn sample(&mut self, shards: &[Arc<ShardMetrics>], t: f64) {
        let now: Vec<Totals> = shards.iter().map(|m| Totals::read(m)).collect();
        if let Some(t0) = self.last_t.filter(|&t0| t > t0) {
            let dt = t - t0;
            let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
            let rates = shards
                .iter()
                .zip(now.iter().zip(&self.last))
                .map(|(m, (n, l))| ShardRates {
                    open: m.connections_open.get(),
                    messages_in: rate(n.messages_in, l.messages_in),
                    messages_out: rate(n.messages_out, l.messages_out),
                    bytes_in: rate(n.bytes_in, l.bytes_in),
                    bytes_out: rate(n.bytes_out, l.bytes_out),
                })
                .collect();
            if self.points.len() == KEEP {
                self.points.pop_front();
            }
            self.points.push_back(Point { t, shards: rates });
        }
        self.last = now;
        self.last_t = Some(t);
    }

    /// The points kept, oldest first.
    pub fn points(&self) -> impl Iterator<Item = &Point> {
        self.points.iter()
    }

    /// The newest point.
    pub fn latest(&self) -> Option<&Point> {
        self.points.back()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_the_growth_per_second_and_the_oldest_points_go() {
        let m = Arc::new(ShardMetrics::default());
        let shards = [m.clone()];
        let mut h = History::default();
        h.sample(&shards, 100.0);
        assert!(h.latest().is_none(), "one reading makes no rate");
        m.messages.add(50);
        m.bytes_in.add(1000);
        m.connections_open.set(3);
        h.sample(&shards, 102.0);
        let p = h.latest().unwrap();
        assert_eq!(p.t, 102.0);
        assert_eq!(
            p.shards[0],
            ShardRates { open: 3, messages_in: 25.0, messages_out: 25.0, bytes_in: 500.0, bytes_out: 0.0 }
        );
        for k in 0..KEEP + 10 {
            h.sample(&shards, 103.0 + k as f64);
        }
        assert_eq!(h.points().count(), KEEP);
        assert_eq!(h.points().next().unwrap().t, 103.0 + 10.0);
        assert_eq!(h.latest().unwrap().shards[0].messages_in, 0.0);
    }
}
