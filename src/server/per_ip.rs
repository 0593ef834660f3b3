//! Connections per client address, across all shards: touched at an accept,
//! a handshake and a close, never per message. Two counts per address: the
//! connections upgraded (a handshake beyond the limit gets 429) and those
//! still in their handshake (one beyond the limit is closed at accept, so
//! that one address cannot hold the server's sockets with connections that
//! never send a request). IPv6 clients are counted per prefix (a /64 by
//! default: one subscriber's network, where a single host may hold many
//! addresses).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;

/// The per-address limit and its counts.
#[derive(Debug)]
pub struct PerIp {
    max: u32,
    v6_prefix: u8,
    counts: Mutex<HashMap<IpAddr, Counts>>,
}

/// One address's connections.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// Upgraded and not yet closed.
    upgraded: u32,
    /// Accepted and still in their handshake.
    arriving: u32,
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

    /// Counts one more upgraded connection from `ip`, unless it already has `max`.
    pub fn acquire(&self, ip: IpAddr) -> bool {
        self.take(ip, |c| &mut c.upgraded)
    }

    /// Gives back an upgraded connection from `ip`.
    pub fn release(&self, ip: IpAddr) {
        self.give(ip, |c| &mut c.upgraded);
    }

    /// Counts one more connection from `ip` in its handshake, unless `max`
    /// of them already are: then it is to be closed at accept.
    pub fn arrive(&self, ip: IpAddr) -> bool {
        self.take(ip, |c| &mut c.arriving)
    }

    /// A connection from `ip` left its handshake: upgraded, refused or closed.
    pub fn arrived(&self, ip: IpAddr) {
        self.give(ip, |c| &mut c.arriving);
    }

    fn take(&self, ip: IpAddr, count: fn(&mut Counts) -> &mut u32) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = count(counts.entry(self.key(ip)).or_default());
        if *n >= self.max {
            return false;
        }
        *n += 1;
        true
    }

    /// The entry goes with the address's last connection, so the map holds
    /// only addresses with connections open.
    fn give(&self, ip: IpAddr, count: fn(&mut Counts) -> &mut u32) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let key = self.key(ip);
        if let Some(c) = counts.get_mut(&key) {
            let n = count(c);
            *n = n.saturating_sub(1);
            if c.upgraded == 0 && c.arriving == 0 {
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
    fn handshakes_are_counted_apart_from_upgraded_connections() {
        let p = PerIp::new(2, 64);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(p.acquire(a) && p.acquire(a), "two upgraded");
        assert!(p.arrive(a) && p.arrive(a), "two more may be in their handshake");
        assert!(!p.arrive(a), "a third handshake from the same address");
        assert!(!p.acquire(a), "still at most two upgraded");
        assert!(p.arrive("127.0.0.3".parse().unwrap()), "another address is unaffected");
        p.arrived(a);
        assert!(p.arrive(a), "a handshake that ended frees its place");
        p.release(a);
        p.release(a);
        assert_eq!(p.addresses(), 2, "handshakes still open keep the entry");
        p.arrived(a);
        p.arrived(a);
        assert_eq!(p.addresses(), 1);
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
