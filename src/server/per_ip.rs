//! Upgraded connections per client address, across all shards: touched at
//! a handshake and at a close, never per message. IPv6 clients are counted
//! per prefix (a /64 by default: one subscriber's network, where a single
//! host may hold many addresses).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;

/// The per-address limit and its counts.
#[derive(Debug)]
pub struct PerIp {
    max: u32,
    v6_prefix: u8,
    counts: Mutex<HashMap<IpAddr, u32>>,
}

impl PerIp {
    /// At most `max` connections per IPv4 address or per IPv6 `/v6_prefix`.
    pub fn new(max: u32, v6_prefix: u8) -> PerIp {
        PerIp { max, v6_prefix: v6_prefix.clamp(1, 128), counts: Mutex::default() }
    }

    /// The limit.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// What `ip` is counted under: an IPv4 address as it is (also when it
    /// comes IPv4-mapped, as on a dual-stack socket), an IPv6 address cut to
    /// the prefix.
    pub fn key(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(self.v6_prefix)).unwrap_or(0);
                    IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
                }
            },
        }
    }

    /// Counts one more connection from `ip`, unless it already has `max`.
    pub fn acquire(&self, ip: IpAddr) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(self.key(ip)).or_insert(0);
        if *n >= self.max {
            return false;
        }
        *n += 1;
        true
    }

    /// Gives back a connection from `ip` (the entry goes with its last one,
    /// so the map holds only addresses with connections open).
    pub fn release(&self, ip: IpAddr) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let key = self.key(ip);
        if let Some(n) = counts.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&key);
            }
        }
    }

    /// Addresses (or IPv6 prefixes) with connections open.
    pub fn addresses(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_limit_and_a_release_frees_a_place() {
        let p = PerIp::new(2, 64);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        assert!(p.acquire(a) && p.acquire(a));
        assert!(!p.acquire(a), "a third from the same address");
        assert!(p.acquire(b), "another address is unaffected");
        p.release(a);
        assert!(p.acquire(a));
        p.release(a);
        p.release(a);
        p.release(b);
        assert_eq!(p.addresses(), 0, "no entry outlives its connections");
    }

    #[test]
    fn ipv6_counts_per_prefix_and_mapped_ipv4_as_ipv4() {
        let p = PerIp::new(1, 64);
        assert!(p.acquire("2001:db8:1:2::1".parse().unwrap()));
        assert!(!p.acquire("2001:db8:1:2:ffff::9".parse().unwrap()), "same /64");
        assert!(p.acquire("2001:db8:1:3::1".parse().unwrap()), "another /64");
        assert!(p.acquire("192.0.2.1".parse().unwrap()));
        assert!(!p.acquire("::ffff:192.0.2.1".parse().unwrap()), "the same IPv4 client, mapped");
        let all = PerIp::new(1, 128);
        assert!(all.acquire("2001:db8::1".parse().unwrap()) && all.acquire("2001:db8::2".parse().unwrap()));
        assert_eq!(
            PerIp::new(1, 48).key("2001:db8:1:2::1".parse().unwrap()),
            "2001:db8:1::".parse::<IpAddr>().unwrap()
        );
    }
}
