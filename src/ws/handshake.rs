//! The server side of the opening handshake (RFC 6455 §4.2), over `httparse`.
//!
//! [`parse_request`] reads a request head that may still be arriving (a
//! partial head is not an error) and decides: upgrade, health check, or a
//! rejection with an HTTP status and a one-line reason.

use crate::ws::bearer;
use crate::ws::deflate::{self, Agreement};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use thiserror::Error;

/// The GUID appended to the key before hashing (RFC 6455 §1.3).
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Header fields accepted in one request; more is a 431.
const MAX_HEADERS: usize = 64;
/// Length of a `Sec-WebSocket-Accept` value (base64 of a 20-byte SHA-1).
pub const ACCEPT_LEN: usize = 28;
/// The path answered with `200 ok` to a plain GET, for load balancers.
pub const HEALTH_PATH: &str = "/healthz";

/// What the server allows in a handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakePolicy {
    /// Largest request head (request line and headers) in bytes; 431 beyond.
    pub max_head_bytes: usize,
    /// Origins allowed to connect; empty allows every origin (and none).
    pub allowed_origins: Vec<String>,
    /// With `allowed_origins` set, also admit a request without `Origin`
    /// (RFC 6455 §10.2: only browsers are bound to send one).
    pub allow_missing_origin: bool,
    /// The only path that upgrades (query string ignored); `None` allows any.
    pub path: Option<String>,
    /// Accept a permessage-deflate offer (RFC 7692).
    pub permessage_deflate: bool,
    /// Subprotocols selected when offered (RFC 6455 §4.2.2, §11.3.4): the
    /// first of the client's entries, in its order, that is one of these.
    pub subprotocols: Vec<String>,
}

impl Default for HandshakePolicy {
    fn default() -> Self {
        HandshakePolicy {
            max_head_bytes: 8 * 1024,
            allowed_origins: Vec::new(),
            allow_missing_origin: false,
            path: None,
            permessage_deflate: false,
            subprotocols: Vec::new(),
        }
    }
}

/// Decides whether one more connection may be upgraded (the overload hook)
/// and, with tokens configured, whether it may connect at all.
pub trait Admission {
    /// Counts the connection in, or says why not: [`Rejection::Overloaded`]
    /// (503) at the server's limit, [`Rejection::TooManyFromAddress`] (429)
    /// at the client address's.
    fn try_admit(&self) -> Result<(), Rejection>;

    /// Whether a handshake must carry a bearer token (see [`crate::ws::bearer`]).
    fn tokens_required(&self) -> bool {
        false
    }

    /// Whether `token` is one the server accepts.
    fn accepts_token(&self, _token: &[u8]) -> bool {
        true
    }

    /// Whether a connection on request path `path` (without its query) may
    /// be admitted; consulted once, before [`Admission::try_admit`], for a
    /// handshake that is otherwise valid. An implementation that reserves
    /// something here undoes it itself if the handshake is refused after.
    fn admit_path(&self, _path: &str) -> Result<(), Rejection> {
        Ok(())
    }
}

/// Admits every connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct AdmitAll;

impl Admission for AdmitAll {
    fn try_admit(&self) -> Result<(), Rejection> {
        Ok(())
    }
}

/// A well-formed outcome of reading the request head.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// More bytes are needed.
    Partial,
    /// A valid upgrade: the head is `head_len` bytes; answer 101 with `accept`.
    Upgrade {
        /// Bytes of the request head, including the final CRLF CRLF.
        head_len: usize,
        /// The `Sec-WebSocket-Accept` value.
        accept: [u8; ACCEPT_LEN],
        /// The permessage-deflate offer accepted, if any.
        deflate: Option<Agreement>,
        /// The subprotocol selected: an index into [`HandshakePolicy::subprotocols`].
        protocol: Option<usize>,
        /// With tokens required: the fingerprint of the one that was
        /// accepted (see [`bearer::fingerprint`]), for logs.
        token: Option<String>,
    },
    /// A plain `GET` or `HEAD /healthz` (HTTP/1.0 or 1.1): answer `200 ok`.
    Health {
        /// A `HEAD` request: the same status and headers, no body (RFC 9110 §9.3.2).
        head: bool,
    },
}

/// Why a handshake was refused; each maps to an HTTP status.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Rejection {
    /// The head did not end within the size limit.
    #[error("request head larger than {0} bytes")]
    HeadTooLarge(usize),
    /// More header fields than the parser accepts.
    #[error("too many header fields")]
    TooManyHeaders,
    /// Not HTTP at all (TLS on the plain port, binary noise) or malformed.
    #[error("malformed HTTP request: {0}")]
    Malformed(&'static str),
    /// RFC 6455 §4.1: the method must be GET.
    #[error("method {0} not allowed, use GET")]
    MethodNotAllowed(String),
    /// RFC 6455 §4.1: HTTP/1.1 or later.
    #[error("HTTP/1.1 is required")]
    NotHttp11,
    /// RFC 6455 §4.1: a Host header is required.
    #[error("missing Host header")]
    MissingHost,
    /// RFC 6455 §4.2.1: `Upgrade` must contain `websocket`.
    #[error("expected a WebSocket upgrade (Upgrade: websocket)")]
    NotUpgrade,
    /// RFC 6455 §4.2.1: `Connection` must contain `Upgrade`.
    #[error("Connection header must contain Upgrade")]
    NoConnectionUpgrade,
    /// RFC 6455 §4.2.2: only version 13 is spoken.
    #[error("unsupported Sec-WebSocket-Version, use 13")]
    UnsupportedVersion,
    /// RFC 6455 §4.2.1: the key is base64 of 16 bytes.
    #[error("Sec-WebSocket-Key must be base64 of 16 bytes")]
    BadKey,
    /// The path is not the configured one.
    #[error("no WebSocket endpoint at this path")]
    PathNotFound,
    /// RFC 6455 §10.2: the Origin is not allowed.
    #[error("origin not allowed")]
    OriginForbidden,
    /// RFC 6750 §3: no bearer token, or none the server accepts (with the
    /// fingerprint of the first one offered, for logs; never the token).
    #[error("{}", match .0 { None => "a bearer token is required".to_string(), Some(f) => format!("bearer token not accepted (sha256 {f})") })]
    Unauthorized(Option<String>),
    /// The server is at its connection limit.
    #[error("server at capacity, try again later")]
    Overloaded,
    /// The client's address has as many connections open as one may have
    /// (`--max-connections-per-ip`).
    #[error("too many connections from your address (at most {0}), try again later")]
    TooManyFromAddress(u32),
    /// The request head did not arrive within the handshake timeout.
    #[error("handshake timed out")]
    Timeout,
    /// The server is shutting down.
    #[error("server shutting down")]
    ShuttingDown,
    /// A plain HTTP request on a port that speaks TLS.
    #[error("this port speaks TLS: use https:// or wss://")]
    NotTls,
    /// `--reply room`: the handshake would open a room past `--max-rooms`.
    #[error("too many rooms open (at most {0}), try again later")]
    TooManyRooms(usize),
}

/// Every refusal's short name and HTTP status, in [`Rejection::index`]
/// order: the bounded label set of the refusal metrics.
pub const REFUSALS: [(&str, u16); 19] = [
    ("head_too_large", 431),
    ("too_many_headers", 431),
    ("malformed", 400),
    ("method_not_allowed", 405),
    ("not_http11", 400),
    ("missing_host", 400),
    ("not_upgrade", 400),
    ("no_connection_upgrade", 400),
    ("unsupported_version", 426),
    ("bad_key", 400),
    ("path_not_found", 404),
    ("origin_forbidden", 403),
    ("unauthorized", 401),
    ("overloaded", 503),
    ("timeout", 408),
    ("shutting_down", 503),
    ("not_tls", 400),
    ("too_many_from_address", 429),
    ("too_many_rooms", 503),
];

impl Rejection {
    /// This refusal's place in [`REFUSALS`].
    pub fn index(&self) -> usize {
        match self {
            Rejection::HeadTooLarge(_) => 0,
            Rejection::TooManyHeaders => 1,
            Rejection::Malformed(_) => 2,
            Rejection::MethodNotAllowed(_) => 3,
            Rejection::NotHttp11 => 4,
            Rejection::MissingHost => 5,
            Rejection::NotUpgrade => 6,
            Rejection::NoConnectionUpgrade => 7,
            Rejection::UnsupportedVersion => 8,
            Rejection::BadKey => 9,
            Rejection::PathNotFound => 10,
            Rejection::OriginForbidden => 11,
            Rejection::Unauthorized(_) => 12,
            Rejection::Overloaded => 13,
            Rejection::Timeout => 14,
            Rejection::ShuttingDown => 15,
            Rejection::NotTls => 16,
            Rejection::TooManyFromAddress(_) => 17,
            Rejection::TooManyRooms(_) => 18,
        }
    }

    /// HTTP status code and reason phrase.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Rejection::HeadTooLarge(_) | Rejection::TooManyHeaders => (431, "Request Header Fields Too Large"),
            Rejection::MethodNotAllowed(_) => (405, "Method Not Allowed"),
            Rejection::UnsupportedVersion => (426, "Upgrade Required"),
            Rejection::PathNotFound => (404, "Not Found"),
            Rejection::OriginForbidden => (403, "Forbidden"),
            Rejection::Unauthorized(_) => (401, "Unauthorized"),
            Rejection::Overloaded | Rejection::ShuttingDown | Rejection::TooManyRooms(_) => {
                (503, "Service Unavailable")
            }
            Rejection::TooManyFromAddress(_) => (429, "Too Many Requests"),
            Rejection::Timeout => (408, "Request Timeout"),
            _ => (400, "Bad Request"),
        }
    }

    /// Header lines the status requires (RFC 9110 §15.5.6, RFC 6455 §4.4).
    fn extra_headers(&self) -> &'static str {
        match self {
            Rejection::MethodNotAllowed(_) => "Allow: GET\r\n",
            Rejection::UnsupportedVersion => "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n",
            // RFC 6750 §3: no error code when no token came, invalid_token when a wrong one did.
            Rejection::Unauthorized(None) => "WWW-Authenticate: Bearer\r\n",
            Rejection::Unauthorized(Some(_)) => "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n",
            // RFC 6585 §4: the client may say when to try again.
            Rejection::TooManyFromAddress(_) | Rejection::TooManyRooms(_) => "Retry-After: 5\r\n",
            _ => "",
        }
    }

    /// Appends the complete HTTP response for this rejection to `out`.
    pub fn write_response(&self, out: &mut Vec<u8>) {
        let (code, phrase) = self.status();
        let body = format!("{self}\n");
        write_plain(out, code, phrase, self.extra_headers(), &body);
    }
}

/// Appends a complete `Connection: close` plain-text response to `out`.
fn write_plain(out: &mut Vec<u8>, code: u16, phrase: &str, extra: &str, body: &str) {
    use std::io::Write;
    let _ = write!(
        out,
        "HTTP/1.1 {code} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
}

/// Appends the health check answer (`200 ok`) to `out`; for a `HEAD`
/// request without the body but with its `Content-Length` (RFC 9110 §9.3.2).
pub fn write_health_response(out: &mut Vec<u8>, head: bool) {
    let body = "ok\n";
    write_plain(out, 200, "OK", "", body);
    if head {
        out.truncate(out.len() - body.len());
    }
}

/// Appends the 101 response that completes the handshake (RFC 6455 §4.2.2),
/// with the selected subprotocol and the accepted extension, if any.
pub fn write_accept_response(
    out: &mut Vec<u8>,
    accept: &[u8; ACCEPT_LEN],
    protocol: Option<&str>,
    deflate: Option<&Agreement>,
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept);
    out.extend_from_slice(b"\r\n");
    if let Some(p) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(a) = deflate {
        a.write_header(out);
    }
    out.extend_from_slice(b"\r\n");
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)) (RFC 6455 §4.2.2).
pub fn accept_key(key: &[u8]) -> [u8; ACCEPT_LEN] {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(WS_GUID);
    let mut out = [0u8; ACCEPT_LEN];
    let n = BASE64.encode_slice(sha.digest().bytes(), &mut out).expect("28 bytes hold base64 of 20");
    debug_assert_eq!(n, ACCEPT_LEN);
    out
}

/// Parses the request head at the start of `buf` into `req`: its length,
/// or `None` while it is incomplete. The limits and errors of every request
/// Ricochet reads, the handshake's and the admin listener's.
fn parse_head<'h, 'b>(
    req: &mut httparse::Request<'h, 'b>,
    buf: &'b [u8],
    max_head_bytes: usize,
) -> Result<Option<usize>, Rejection> {
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > max_head_bytes => Err(Rejection::HeadTooLarge(max_head_bytes)),
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if buf.len() >= max_head_bytes => Err(Rejection::HeadTooLarge(max_head_bytes)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Rejection::TooManyHeaders),
        Err(e) => Err(Rejection::Malformed(parse_error_text(e))),
    }
}

/// A plain HTTP request (the admin listener's): what it asks for and
/// whether the connection stays open after the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlainRequest {
    /// Bytes of `buf` the head took (a GET has no body).
    pub len: usize,
    /// `GET` or `HEAD`; other methods are refused with 405.
    pub head: bool,
    /// The path, without the query.
    pub path: String,
    /// HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `Connection:
    /// keep-alive` (RFC 9112 §9.3).
    pub keep_alive: bool,
}

/// Reads a plain GET or HEAD request head from `buf`; `None` while it is
/// incomplete. A request with a body is refused: nothing here takes one.
pub fn parse_plain_request(buf: &[u8], max_head_bytes: usize) -> Result<Option<PlainRequest>, Rejection> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Some(len) = parse_head(&mut req, buf, max_head_bytes)? else { return Ok(None) };
    let method = req.method.unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return Err(Rejection::MethodNotAllowed(method.chars().take(16).collect()));
    }
    let has_body = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && h.value.trim_ascii() != b"0")
    });
    if has_body {
        return Err(Rejection::Malformed("a GET or HEAD request carries no body here"));
    }
    let target = req.path.unwrap_or("/");
    let path = target.split('?').next().unwrap_or(target).to_string();
    let keep_alive = if req.version == Some(1) {
        !header_has_token(req.headers, "connection", "close")
    } else {
        header_has_token(req.headers, "connection", "keep-alive")
    };
    Ok(Some(PlainRequest { len, head: method == "HEAD", path, keep_alive }))
}

/// Reads a request head from `buf` (which may hold only part of it, or the
/// head followed by frames) and applies `policy`.
pub fn parse_request(buf: &[u8], policy: &HandshakePolicy, admission: &dyn Admission) -> Result<Request, Rejection> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Some(head_len) = parse_head(&mut req, buf, policy.max_head_bytes)? else { return Ok(Request::Partial) };
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("/");
    let path = target.split('?').next().unwrap_or(target);
    let has = |name: &str| req.headers.iter().any(|h| h.name.eq_ignore_ascii_case(name));
    // Health checks of load balancers (HAProxy's `option httpchk`,
    // keepalived's HTTP_GET) send HTTP/1.0 and sometimes HEAD: answered
    // before the WebSocket rules, which need GET over HTTP/1.1.
    if path == HEALTH_PATH && !has("upgrade") && (method == "GET" || method == "HEAD") {
        return Ok(Request::Health { head: method == "HEAD" });
    }
    if method != "GET" {
        let shown: String = method.chars().take(16).collect();
        return Err(Rejection::MethodNotAllowed(shown));
    }
    if req.version != Some(1) {
        return Err(Rejection::NotHttp11);
    }
    if !has("host") {
        return Err(Rejection::MissingHost);
    }
    if !header_has_token(req.headers, "upgrade", "websocket") {
        return Err(Rejection::NotUpgrade);
    }
    if !header_has_token(req.headers, "connection", "upgrade") {
        return Err(Rejection::NoConnectionUpgrade);
    }
    if !header_has_token(req.headers, "sec-websocket-version", "13") {
        return Err(Rejection::UnsupportedVersion);
    }
    let key = single_header(req.headers, "sec-websocket-key").ok_or(Rejection::BadKey)?;
    let key = trim(key);
    let mut decoded = [0u8; 18];
    match BASE64.decode_slice(key, &mut decoded) {
        Ok(16) => {}
        _ => return Err(Rejection::BadKey),
    }
    if let Some(want) = &policy.path {
        if path != want {
            return Err(Rejection::PathNotFound);
        }
    }
    if !policy.allowed_origins.is_empty() {
        let ok = match single_header(req.headers, "origin").map(trim) {
            Some(o) => policy.allowed_origins.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(o)),
            None => policy.allow_missing_origin,
        };
        if !ok {
            return Err(Rejection::OriginForbidden);
        }
    }
    let mut token = None;
    if admission.tokens_required() {
        let offered = bearer::candidates(req.headers, target);
        match offered.iter().find(|t| admission.accepts_token(t)) {
            Some(t) => token = Some(bearer::fingerprint(t)),
            None => return Err(Rejection::Unauthorized(offered.first().map(|t| bearer::fingerprint(t)))),
        }
    }
    let protocol = select_protocol(req.headers, &policy.subprotocols);
    admission.admit_path(path)?;
    admission.try_admit()?;
    let deflate = if policy.permessage_deflate {
        deflate::negotiate(
            req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions")).map(|h| h.value),
        )
    } else {
        None
    };
    Ok(Request::Upgrade { head_len, accept: accept_key(key), deflate, protocol, token })
}

/// The first subprotocol the client offers (RFC 6455 §4.1: in its order of
/// preference) that is one of `ours`; `bearer.` entries carry tokens and are
/// never selected.
fn select_protocol(headers: &[httparse::Header<'_>], ours: &[String]) -> Option<usize> {
    if ours.is_empty() {
        return None;
    }
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(|e| e.trim_ascii())
        .filter(|e| !e.starts_with(bearer::PROTOCOL_PREFIX.as_bytes()))
        .find_map(|e| ours.iter().position(|o| o.as_bytes() == e))
}

fn parse_error_text(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::Token => "not an HTTP request",
        httparse::Error::Version => "bad HTTP version",
        httparse::Error::Status => "bad status",
        httparse::Error::HeaderName => "bad header name",
        httparse::Error::HeaderValue => "bad header value",
        httparse::Error::NewLine => "bad line ending",
        httparse::Error::TooManyHeaders => "too many headers",
    }
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

fn single_header<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

/// Whether any header `name` lists `token` in its comma-separated value,
/// compared case-insensitively (RFC 9110 §5.6.1).
fn header_has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Version: 13\r\n\r\n";

    struct Deny;
    impl Admission for Deny {
        fn try_admit(&self) -> Result<(), Rejection> {
            Err(Rejection::Overloaded)
        }
    }

    fn parse(req: &str) -> Result<Request, Rejection> {
        parse_request(req.as_bytes(), &HandshakePolicy::default(), &AdmitAll)
    }

    #[test]
    fn plain_requests_say_what_they_ask_for_and_whether_to_keep_the_connection() {
        let p = |r: &str| parse_plain_request(r.as_bytes(), 8192);
        let r = p("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\nGET").unwrap().unwrap();
        assert_eq!(r, PlainRequest { len: 38, head: false, path: "/metrics".into(), keep_alive: true });
        assert!(!p("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap().unwrap().keep_alive);
        assert!(!p("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().keep_alive);
        assert!(p("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().unwrap().keep_alive);
        assert!(p("HEAD /healthz HTTP/1.1\r\n\r\n").unwrap().unwrap().head);
        assert_eq!(p("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        assert_eq!(p("POST /metrics HTTP/1.1\r\n\r\n").unwrap_err().status().0, 405);
        assert_eq!(p("GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello").unwrap_err().status().0, 400);
        assert_eq!(p("\x16\x03\x01").unwrap_err().status().0, 400);
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(p(&huge).unwrap_err().status().0, 431);
    }

    #[test]
    fn every_refusal_has_its_status_in_the_label_table() {
        let mut seen = std::collections::HashSet::new();
        for r in [
            Rejection::HeadTooLarge(1),
            Rejection::TooManyHeaders,
            Rejection::Malformed("x"),
            Rejection::MethodNotAllowed("POST".into()),
            Rejection::NotHttp11,
            Rejection::MissingHost,
            Rejection::NotUpgrade,
            Rejection::NoConnectionUpgrade,
            Rejection::UnsupportedVersion,
            Rejection::BadKey,
            Rejection::PathNotFound,
            Rejection::OriginForbidden,
            Rejection::Unauthorized(None),
            Rejection::Overloaded,
            Rejection::Timeout,
            Rejection::ShuttingDown,
            Rejection::NotTls,
            Rejection::TooManyFromAddress(3),
            Rejection::TooManyRooms(2),
        ] {
            assert_eq!(REFUSALS[r.index()].1, r.status().0, "{r:?}");
            assert!(seen.insert(r.index()), "{r:?} shares its index");
        }
        assert_eq!(seen.len(), REFUSALS.len());
    }

    #[test]
    fn rfc_sample_key_gives_rfc_accept() {
        // RFC 6455 §1.3.
        assert_eq!(&accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(
            parse(GOOD),
            Ok(Request::Upgrade {
                head_len: GOOD.len(),
                accept: *b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                deflate: None,
                protocol: None,
                token: None
            })
        );
    }

    #[test]
    fn deflate_is_negotiated_only_when_enabled() {
        let req = GOOD.replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: foo\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n");
        let Ok(Request::Upgrade { deflate, accept, .. }) = parse(&req) else { panic!() };
        assert_eq!(deflate, None);
        let on = HandshakePolicy { permessage_deflate: true, ..Default::default() };
        let Ok(Request::Upgrade { deflate, .. }) = parse_request(req.as_bytes(), &on, &AdmitAll) else { panic!() };
        let a = deflate.expect("the second header's offer is taken");
        let mut out = Vec::new();
        write_accept_response(&mut out, &accept, None, Some(&a));
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n"), "{text}");
        // No offer: no extension header at all.
        let Ok(Request::Upgrade { deflate, .. }) = parse_request(GOOD.as_bytes(), &on, &AdmitAll) else { panic!() };
        assert_eq!(deflate, None);
    }

    #[test]
    fn every_prefix_is_partial() {
        for n in 0..GOOD.len() {
            assert_eq!(parse(&GOOD[..n]), Ok(Request::Partial), "prefix {n}");
        }
    }

    #[test]
    fn tokens_match_case_insensitively_in_lists() {
        let req = GOOD
            .replace("Connection: Upgrade", "Connection: keep-alive, UPGRADE")
            .replace("Upgrade: websocket", "Upgrade: WebSocket");
        assert!(matches!(parse(&req), Ok(Request::Upgrade { .. })));
    }

    #[test]
    fn each_violation_gets_its_status() {
        let cases: Vec<(String, u16)> = vec![
            (GOOD.replace("GET", "POST"), 405),
            (GOOD.replace("HTTP/1.1", "HTTP/1.0"), 400),
            (GOOD.replace("Host: server.example.com\r\n", ""), 400),
            (GOOD.replace("Upgrade: websocket\r\n", ""), 400),
            (GOOD.replace("Connection: Upgrade", "Connection: keep-alive"), 400),
            (GOOD.replace("Version: 13", "Version: 8"), 426),
            (GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ=="), 400),
            (GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "!!!"), 400),
            (String::from_utf8_lossy(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03").into_owned(), 400),
        ];
        for (req, status) in cases {
            let r = parse(&req).expect_err(&req);
            assert_eq!(r.status().0, status, "{req:?}: {r}");
        }
    }

    #[test]
    fn policy_rejections() {
        let p = HandshakePolicy { path: Some("/ws".into()), ..Default::default() };
        assert_eq!(parse_request(GOOD.as_bytes(), &p, &AdmitAll), Err(Rejection::PathNotFound));
        let p = HandshakePolicy { allowed_origins: vec!["https://ok.example".into()], ..Default::default() };
        assert_eq!(parse_request(GOOD.as_bytes(), &p, &AdmitAll), Err(Rejection::OriginForbidden));
        let p = HandshakePolicy { allowed_origins: vec!["HTTP://example.com".into()], ..Default::default() };
        assert!(parse_request(GOOD.as_bytes(), &p, &AdmitAll).is_ok());
        // No Origin at all: refused once a list is set, unless allowed.
        let no_origin = GOOD.replace("Origin: http://example.com\r\n", "");
        assert_eq!(parse_request(no_origin.as_bytes(), &p, &AdmitAll), Err(Rejection::OriginForbidden));
        let p = HandshakePolicy { allow_missing_origin: true, ..p };
        assert!(parse_request(no_origin.as_bytes(), &p, &AdmitAll).is_ok());
        assert_eq!(
            parse_request(GOOD.replace("example.com", "evil.example").as_bytes(), &p, &AdmitAll),
            Err(Rejection::OriginForbidden)
        );
        assert_eq!(parse_request(GOOD.as_bytes(), &HandshakePolicy::default(), &Deny), Err(Rejection::Overloaded));
    }

    #[test]
    fn oversized_head_is_431() {
        let big = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n", "a".repeat(9000));
        assert_eq!(parse(&big).unwrap_err().status().0, 431);
    }

    #[test]
    fn health_check_without_upgrade() {
        assert_eq!(parse("GET /healthz HTTP/1.1\r\n\r\n"), Ok(Request::Health { head: false }));
    }

    #[test]
    fn health_check_over_http_1_0_and_head() {
        // HAProxy's `option httpchk GET /healthz` and keepalived's HTTP_GET send HTTP/1.0.
        assert_eq!(parse("GET /healthz HTTP/1.0\r\n\r\n"), Ok(Request::Health { head: false }));
        assert_eq!(parse("GET /healthz?x=1 HTTP/1.0\r\nHost: a\r\n\r\n"), Ok(Request::Health { head: false }));
        assert_eq!(parse("HEAD /healthz HTTP/1.0\r\n\r\n"), Ok(Request::Health { head: true }));
        assert_eq!(parse("HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(Request::Health { head: true }));
        // Only the health check: elsewhere HEAD is 405 and HTTP/1.0 is 400.
        assert_eq!(parse("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap_err().status().0, 405);
        assert_eq!(parse("POST /healthz HTTP/1.1\r\nHost: a\r\n\r\n").unwrap_err().status().0, 405);
        assert_eq!(parse("GET / HTTP/1.0\r\nHost: a\r\n\r\n").unwrap_err(), Rejection::NotHttp11);
    }

    #[test]
    fn head_answer_has_no_body_but_its_length() {
        let (mut get, mut head) = (Vec::new(), Vec::new());
        write_health_response(&mut get, false);
        write_health_response(&mut head, true);
        let get = String::from_utf8(get).unwrap();
        let head = String::from_utf8(head).unwrap();
        assert!(get.ends_with("\r\n\r\nok\n"), "{get}");
        assert!(head.ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"), "{head}");
        assert_eq!(format!("{head}ok\n"), get);
    }

    #[test]
    fn rejection_response_is_complete_http() {
        let mut out = Vec::new();
        Rejection::MethodNotAllowed("POST".into()).write_response(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("Allow: GET\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        let body = "method POST not allowed, use GET\n";
        assert!(text.ends_with(&format!("\r\n\r\n{body}")));
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
    }
}
