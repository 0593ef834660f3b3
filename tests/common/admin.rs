//! Talking to the admin listener: plain HTTP GETs and the Prometheus text
//! format read back into values.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One HTTP response.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The head, as text.
    pub head: String,
    /// The body.
    pub body: String,
}

/// GETs `path` on its own connection (`Connection: close`).
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect to the admin listener");
    s.set_read_timeout(Some(super::IO_TIMEOUT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse_response(&String::from_utf8(raw).expect("UTF-8 response"))
}

/// Splits a whole response into status, head and body.
pub fn parse_response(text: &str) -> Response {
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("a status");
    Response { status, head: head.to_string(), body: body.to_string() }
}

/// `/metrics`, each sample line (`name{labels}`) mapped to its value.
pub fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200, "{}", r.head);
    parse_text(&r.body)
}

/// Sample lines of the Prometheus text format.
pub fn parse_text(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("name value");
            (k.to_string(), v.parse().expect("a number"))
        })
        .collect()
}

/// The sum of every sample of `name` whose labels contain each of `labels`
/// (`code="1000"`); 0 when there is none.
pub fn sum(m: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            let (n, l) = k.split_once('{').unwrap_or((k, ""));
            n == name && labels.iter().all(|want| l.split(',').any(|x| x.trim_end_matches('}') == *want))
        })
        .map(|(_, v)| v)
        .sum()
}

/// Scrapes until `pred` holds on a scrape (the counters are read while the
/// shards run), for up to 10 s; returns the last scrape.
pub fn wait_for(addr: SocketAddr, what: &str, pred: impl Fn(&BTreeMap<String, f64>) -> bool) -> BTreeMap<String, f64> {
    let t0 = Instant::now();
    loop {
        let m = scrape(addr);
        if pred(&m) {
            return m;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{what} never held:\n{m:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
