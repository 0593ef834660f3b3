//! The PROXY protocol header (HAProxy's "PROXY protocol" specification,
//! versions 1 and 2) that a balancer in TCP mode sends before the client's
//! first byte, naming the client's address. Sans-IO: bytes in (possibly a
//! part of the header), the header's length and the address out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use thiserror::Error;

/// The v2 signature (spec §2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The v1 prefix (spec §2.1).
const V1_PREFIX: &[u8] = b"PROXY ";

/// A v1 header is at most 107 bytes, CRLF included (spec §2.1).
pub const V1_MAX: usize = 107;

/// The largest v2 header accepted: the 16-byte head and 2,032 bytes of
/// addresses and TLVs. The specification lets the length reach 65,535, but
/// balancers send tens of bytes (an AWS NLB's VPC endpoint TLV, HAProxy's
/// unique ID or TLS details); a larger one is refused rather than buffered.
pub const V2_MAX: usize = 2048;

/// Why a PROXY header was refused.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum ProxyError {
    /// The connection did not start with a PROXY header (v1 or v2).
    #[error("no PROXY protocol header (--proxy-protocol requires one before anything else)")]
    Missing,
    /// A v1 header that breaks the grammar of spec §2.1.
    #[error("malformed PROXY v1 header: {0}")]
    BadV1(&'static str),
    /// A v2 header that breaks spec §2.2.
    #[error("malformed PROXY v2 header: {0}")]
    BadV2(&'static str),
    /// A header longer than this server accepts ([`V1_MAX`], [`V2_MAX`]).
    #[error("PROXY header longer than {0} bytes")]
    TooLong(usize),
}

/// A complete header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Its length: the client's own bytes start here.
    pub len: usize,
    /// The client's address, when the header carries one (not for v1
    /// `UNKNOWN`, v2 `LOCAL` such as a balancer's health check, or v2
    /// families other than TCP over IPv4 and IPv6): then the connection's
    /// own address stands.
    pub source: Option<SocketAddr>,
}

/// Reads a PROXY header at the start of `buf`: `Ok(None)` while what is
/// there is a prefix of one (wait for more), the header once complete.
pub fn parse(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() { Ok(None) } else { parse_v2(buf) };
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] == V1_PREFIX[..n] {
        return if n < V1_PREFIX.len() { Ok(None) } else { parse_v1(buf) };
    }
    Err(ProxyError::Missing)
}

/// Spec §2.1: `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` or `PROXY UNKNOWN ...\r\n`.
fn parse_v1(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        return if buf.len() >= V1_MAX { Err(ProxyError::TooLong(V1_MAX)) } else { Ok(None) };
    };
    match buf.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(ProxyError::BadV1("CR not followed by LF")),
    }
    let len = cr + 2;
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..cr]).map_err(|_| ProxyError::BadV1("not ASCII"))?;
    let mut f = line.split(' ');
    let proto = f.next().unwrap_or("");
    if proto == "UNKNOWN" {
        // The rest, whatever it is, is ignored (spec §2.1).
        return Ok(Some(ProxyHeader { len, source: None }));
    }
    let fields: Vec<&str> = f.collect();
    let [src, _dst, sport, _dport] = fields[..] else {
        return Err(ProxyError::BadV1("expected 4 fields after the protocol, separated by single spaces"));
    };
    let ip: IpAddr = match proto {
        "TCP4" => IpAddr::V4(src.parse().map_err(|_| ProxyError::BadV1("bad IPv4 source address"))?),
        "TCP6" => IpAddr::V6(src.parse().map_err(|_| ProxyError::BadV1("bad IPv6 source address"))?),
        _ => return Err(ProxyError::BadV1("protocol must be TCP4, TCP6 or UNKNOWN")),
    };
    // Ports are decimal, 0-65535, without leading zeros (spec §2.1).
    let port_ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0'));
    if !port_ok(sport) || !port_ok(fields[3]) {
        return Err(ProxyError::BadV1("bad port"));
    }
    let port: u16 = sport.parse().map_err(|_| ProxyError::BadV1("bad port"))?;
    fields[3].parse::<u16>().map_err(|_| ProxyError::BadV1("bad port"))?;
    Ok(Some(ProxyHeader { len, source: Some(SocketAddr::new(ip, port)) }))
}

/// Spec §2.2: signature, version and command, family and transport, length,
/// addresses, then TLVs (skipped whole, whatever they are).
fn parse_v2(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::BadV2("version must be 2"));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::BadV2("command must be LOCAL or PROXY")),
    };
    let fam = buf[13];
    let rest = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let len = 16 + rest;
    if len > V2_MAX {
        return Err(ProxyError::TooLong(V2_MAX));
    }
    // Address block sizes by family (spec §2.2): INET 12, INET6 36, UNIX 216.
    let need = match fam >> 4 {
        0 => 0,
        1 => 12,
        2 => 36,
        3 => 216,
        _ => return Err(ProxyError::BadV2("unknown address family")),
    };
    if fam & 0x0f > 2 {
        return Err(ProxyError::BadV2("unknown transport protocol"));
    }
    if rest < need {
        return Err(ProxyError::BadV2("length shorter than the address block"));
    }
    if buf.len() < len {
        return Ok(None);
    }
    // LOCAL (a balancer's own health check): the connection's address stands,
    // whatever follows (spec §2.2). So do UNSPEC, UNIX and UDP.
    let stream = fam & 0x0f == 1;
    let a = &buf[16..];
    let source = match fam >> 4 {
        _ if local || !stream => None,
        1 => Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])), u16::from_be_bytes([a[8], a[9]]))),
        2 => {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), u16::from_be_bytes([a[32], a[33]])))
        }
        _ => None,
    };
    Ok(Some(ProxyHeader { len, source }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(cmd: u8, fam: u8, addrs: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(fam);
        h.extend_from_slice(&((addrs.len() + tlvs.len()) as u16).to_be_bytes());
        h.extend_from_slice(addrs);
        h.extend_from_slice(tlvs);
        h
    }

    fn v4_block() -> Vec<u8> {
        [192, 0, 2, 7, 10, 0, 0, 1]
            .iter()
            .chain(&50000u16.to_be_bytes())
            .chain(&443u16.to_be_bytes())
            .copied()
            .collect()
    }

    /// Every way of cutting `header + rest` in two: before the header's
    /// end the parser asks for more, from it on it finds the same header.
    fn at_every_split(wire: &[u8], want: Result<ProxyHeader, ProxyError>) {
        let end = want.map_or(wire.len(), |h| h.len);
        for cut in 0..wire.len() {
            let got = parse(&wire[..cut]);
            if cut < end {
                match (got, want) {
                    (Ok(None), _) => {}
                    // An error may show before the end: it must be the same one.
                    (Err(e), Err(w)) => assert_eq!(e, w, "cut at {cut}"),
                    (g, _) => panic!("cut at {cut}: {g:?}"),
                }
            } else {
                assert_eq!(got, want.map(Some), "cut at {cut}");
            }
        }
        assert_eq!(parse(wire), want.map(Some));
    }

    #[test]
    fn v1_tcp4_and_tcp6_name_the_client() {
        let wire = b"PROXY TCP4 192.0.2.7 10.0.0.1 50000 443\r\nGET / HTTP/1.1\r\n";
        let h = ProxyHeader { len: 41, source: Some("192.0.2.7:50000".parse().unwrap()) };
        at_every_split(wire, Ok(h));
        let wire = b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 8080\r\n\x16\x03\x01";
        at_every_split(wire, Ok(ProxyHeader { len: 47, source: Some("[2001:db8::1]:65535".parse().unwrap()) }));
    }

    #[test]
    fn v1_unknown_keeps_the_connections_own_address() {
        at_every_split(b"PROXY UNKNOWN\r\nGET", Ok(ProxyHeader { len: 15, source: None }));
        at_every_split(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", Ok(ProxyHeader { len: 35, source: None }));
    }

    #[test]
    fn v1_grammar_errors_are_refused() {
        for (wire, why) in [
            (&b"PROXY TCP4 192.0.2.7 10.0.0.1 50000\r\n"[..], "expected 4 fields"),
            (b"PROXY TCP4 192.0.2.7  10.0.0.1 50000 443\r\n", "expected 4 fields"),
            (b"PROXY TCP4 2001:db8::1 10.0.0.1 50000 443\r\n", "bad IPv4"),
            (b"PROXY TCP6 192.0.2.7 10.0.0.1 50000 443\r\n", "bad IPv6"),
            (b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 443\r\n", "bad port"),
            (b"PROXY TCP4 192.0.2.7 10.0.0.1 050 443\r\n", "bad port"),
            (b"PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n", "protocol must be"),
            (b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\rX", "CR not followed by LF"),
        ] {
            let e = parse(wire).unwrap_err();
            assert!(e.to_string().contains(why), "{}: {e}", String::from_utf8_lossy(wire));
        }
        let long = format!("PROXY UNKNOWN {}", "x".repeat(200));
        assert_eq!(parse(long.as_bytes()), Err(ProxyError::TooLong(V1_MAX)));
    }

    #[test]
    fn v2_tcp4_and_tcp6_name_the_client_and_tlvs_are_skipped() {
        // An AWS NLB-like TLV (type 0xEA) after the addresses.
        let tlv = [0xEA, 0x00, 0x05, 0x01, b'v', b'p', b'c', b'e'];
        let mut wire = v2(1, 0x11, &v4_block(), &tlv);
        let len = wire.len();
        wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
        at_every_split(&wire, Ok(ProxyHeader { len, source: Some("192.0.2.7:50000".parse().unwrap()) }));

        let mut block = Vec::new();
        block.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        block.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        block.extend_from_slice(&1234u16.to_be_bytes());
        block.extend_from_slice(&443u16.to_be_bytes());
        let wire = v2(1, 0x21, &block, &[]);
        at_every_split(&wire, Ok(ProxyHeader { len: 52, source: Some("[2001:db8::7]:1234".parse().unwrap()) }));
    }

    #[test]
    fn v2_local_and_other_families_keep_the_connections_own_address() {
        // LOCAL, as in HAProxy's health checks with send-proxy-v2.
        at_every_split(&v2(0, 0x00, &[], &[]), Ok(ProxyHeader { len: 16, source: None }));
        at_every_split(&v2(0, 0x11, &v4_block(), &[]), Ok(ProxyHeader { len: 28, source: None }));
        // UDP over IPv4, and a UNIX socket.
        at_every_split(&v2(1, 0x12, &v4_block(), &[]), Ok(ProxyHeader { len: 28, source: None }));
        at_every_split(&v2(1, 0x31, &[0u8; 216], &[]), Ok(ProxyHeader { len: 232, source: None }));
    }

    #[test]
    fn v2_errors_are_refused() {
        let mut bad_version = v2(1, 0x11, &v4_block(), &[]);
        bad_version[12] = 0x11;
        at_every_split(&bad_version, Err(ProxyError::BadV2("version must be 2")));
        at_every_split(&v2(2, 0x11, &v4_block(), &[]), Err(ProxyError::BadV2("command must be LOCAL or PROXY")));
        at_every_split(&v2(1, 0x41, &v4_block(), &[]), Err(ProxyError::BadV2("unknown address family")));
        at_every_split(&v2(1, 0x13, &v4_block(), &[]), Err(ProxyError::BadV2("unknown transport protocol")));
        at_every_split(&v2(1, 0x21, &v4_block(), &[]), Err(ProxyError::BadV2("length shorter than the address block")));
        let mut huge = v2(1, 0x11, &v4_block(), &[]);
        huge[14..16].copy_from_slice(&4000u16.to_be_bytes());
        assert_eq!(parse(&huge), Err(ProxyError::TooLong(V2_MAX)));
    }

    #[test]
    fn anything_else_is_missing_a_header() {
        for wire in [&b"GET / HTTP/1.1\r\n"[..], b"\x16\x03\x01\x02\x00", b"PROXX", b"\r\n\r\nX"] {
            assert_eq!(parse(wire), Err(ProxyError::Missing), "{wire:?}");
        }
        assert_eq!(parse(b""), Ok(None));
        assert_eq!(parse(b"PRO"), Ok(None));
        assert_eq!(parse(b"\r\n\r\n\0"), Ok(None));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        /// Inputs near the grammar: a signature (v1 or v2) or not, then anything.
        fn near_headers() -> impl Strategy<Value = Vec<u8>> {
            let start = prop_oneof![
                Just(b"PROXY ".to_vec()),
                Just(b"PROXY TCP4 ".to_vec()),
                Just(b"PROXY TCP6 ".to_vec()),
                Just(b"PROXY UNKNOWN".to_vec()),
                Just(V2_SIGNATURE.to_vec()),
                Just(Vec::new()),
            ];
            (start, proptest::collection::vec(any::<u8>(), 0..300)).prop_map(|(mut s, rest)| {
                s.extend(rest);
                s
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// No input panics; a header found is found the same with more
            /// bytes behind it, and every shorter prefix asks for more or
            /// fails the same way (what feeding a connection byte by byte
            /// relies on).
            #[test]
            fn prefixes_and_extensions_agree(wire in near_headers(), tail in proptest::collection::vec(any::<u8>(), 0..32)) {
                let whole = parse(&wire);
                if let Ok(Some(h)) = whole {
                    prop_assert!(h.len <= wire.len() && h.len <= V2_MAX);
                    let mut longer = wire.clone();
                    longer.extend(&tail);
                    prop_assert_eq!(parse(&longer), Ok(Some(h)));
                    for cut in 0..h.len {
                        prop_assert_eq!(parse(&wire[..cut]), Ok(None));
                    }
                }
                if let Err(e) = whole {
                    for cut in 0..wire.len() {
                        let part = parse(&wire[..cut]);
                        prop_assert!(part == Ok(None) || part == Err(e), "cut {}: {:?} then {:?}", cut, part, e);
                    }
                }
            }
        }
    }
}
