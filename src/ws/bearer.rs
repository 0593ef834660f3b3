//! Where a client may put a bearer token in a WebSocket handshake, and how a
//! token is named in logs. Three places, for programs and browsers alike:
//!
//! - `Authorization: Bearer TOKEN` (RFC 6750 §2.1), for programs;
//! - the query parameter `access_token=TOKEN` (RFC 6750 §2.3), since a
//!   browser cannot set headers on a WebSocket (the query string ends up in
//!   proxy and server logs: prefer the next form there);
//! - a `Sec-WebSocket-Protocol` entry `bearer.TOKEN`, which the server never
//!   selects (the client offers a real subprotocol beside it, which the
//!   server selects, as Kubernetes does with
//!   `base64url.bearer.authorization.k8s.io.TOKEN` beside `binary.k8s.io`).

use ring::digest::{digest, SHA256};

/// The subprotocol-entry prefix that carries a token.
pub const PROTOCOL_PREFIX: &str = "bearer.";

/// Every token `headers` and the request `target` carry, in the order above.
pub fn candidates<'a>(headers: &'a [httparse::Header<'a>], target: &'a str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for h in headers {
        if h.name.eq_ignore_ascii_case("authorization") {
            let v = h.value.trim_ascii();
            // RFC 6750 §2.1: the scheme is case-insensitive (RFC 9110 §11.1).
            if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
                out.push(v[7..].trim_ascii().to_vec());
            }
        }
    }
    if let Some((_, query)) = target.split_once('?') {
        for pair in query.split('&') {
            if let Some(v) = pair.strip_prefix("access_token=") {
                out.push(percent_decode(v));
            }
        }
    }
    for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol")) {
        for entry in h.value.split(|&b| b == b',') {
            let e = entry.trim_ascii();
            if e.len() > PROTOCOL_PREFIX.len()
                && e[..PROTOCOL_PREFIX.len()].eq_ignore_ascii_case(PROTOCOL_PREFIX.as_bytes())
            {
                out.push(e[PROTOCOL_PREFIX.len()..].to_vec());
            }
        }
    }
    out
}

/// A short, one-way name for a token in logs: the first 8 hex digits of its
/// SHA-256. Tells clients apart without writing any token down.
pub fn fingerprint(token: &[u8]) -> String {
    digest(&SHA256, token).as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// `%XX` escapes decoded (RFC 3986 §2.1); `+` kept (it is not a space in a
/// URI's query, only in HTML forms); a bad escape is kept as it is.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header { name, value: value.as_bytes() }
    }

    #[test]
    fn every_place_is_read() {
        let headers = [
            h("Authorization", "Bearer  from-header "),
            h("Sec-WebSocket-Protocol", "chat, bearer.from-protocol"),
            h("authorization", "Basic dXNlcjpwYXNz"),
        ];
        let got = candidates(&headers, "/ws?x=1&access_token=from%2Dquery&y=2");
        let got: Vec<String> = got.into_iter().map(|t| String::from_utf8(t).unwrap()).collect();
        assert_eq!(got, ["from-header", "from-query", "from-protocol"]);
        assert!(candidates(&[h("Authorization", "bearer x")], "/").len() == 1);
        assert!(candidates(&[h("Authorization", "Bearer")], "/").is_empty());
        assert!(candidates(&[h("Sec-WebSocket-Protocol", "bearer.")], "/?access_token").is_empty());
    }

    #[test]
    fn fingerprints_are_short_and_not_the_token() {
        let f = fingerprint(b"s3cret-token");
        assert_eq!(f.len(), 8);
        assert!(!f.contains("s3cret"));
        assert_ne!(f, fingerprint(b"s3cret-tokem"));
    }
}
