//! TLS between the socket and the session, without I/O: one [`TlsConn`] per
//! connection on a `--tls-listen` listener, used the same way by both
//! backends (through the connection table).
//!
//! Built on rustls' unbuffered API, so the caller owns every buffer:
//! records are decrypted where they arrived (the shard's receive buffer)
//! and their plaintext is copied once into the shard's plaintext buffer,
//! where the session unmasks and echoes in place as on plain connections;
//! the echo is then encrypted straight into the shard's output. Nothing is
//! buffered per connection but a partial record (ciphertext, at most one
//! record, kept as the connection's carry) and a partial frame (plaintext).
//!
//! Before the first record, the first byte tells a TLS client (a handshake
//! record, 0x16, RFC 8446 §5.1) from a plain HTTP request sent to the TLS
//! port by mistake, which gets a plain `400`, as nginx does.

use crate::ws::output::Output;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus};
use std::sync::Arc;
use thiserror::Error;

/// The largest TLS record on the wire: header, 2^14 bytes of plaintext and
/// the most expansion TLS 1.2 allows (RFC 5246 §6.2.3). A partial record
/// kept between reads is never longer.
pub const MAX_RECORD_LEN: usize = 5 + 16384 + 2048;

/// Plaintext bytes per record rustls writes; used to size output ahead.
const RECORD_PLAINTEXT: usize = 16384;
/// Bytes a record adds to its plaintext (TLS 1.3 AES-GCM: header 5, content
/// type 1, tag 16; TLS 1.2 adds an explicit nonce of 8 instead of the type).
const RECORD_OVERHEAD: usize = 5 + 8 + 16;

/// The TLS layer failed the connection.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// rustls rejected what the peer sent (a bad handshake, a bad record).
    #[error("TLS: {0}")]
    Protocol(String),
    /// The first bytes are not a TLS handshake record.
    #[error("not TLS: {0}")]
    NotTls(&'static str),
}

/// What the first byte on a TLS port says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniff {
    /// Not seen yet.
    Unknown,
    /// A TLS handshake record: go on with TLS.
    Tls,
    /// An ASCII letter, as an HTTP method starts: a plain HTTP request.
    PlainHttp,
    /// Anything else.
    Garbage,
}

/// What one [`TlsConn::read`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsRead {
    /// Ciphertext bytes consumed; the rest (part of a record) must be passed
    /// again in front of the next bytes read.
    pub consumed: usize,
    /// Plaintext bytes appended.
    pub plaintext: usize,
}

/// One connection's TLS state.
pub struct TlsConn {
    conn: UnbufferedServerConnection,
    sniff: Sniff,
    /// Plaintext the session left unconsumed (part of a frame), put in front
    /// of the next plaintext.
    pub plain_carry: Vec<u8>,
    close_notify_sent: bool,
    /// rustls reported an error: the connection is never called again. Its
    /// deframer may still hold ranges into the buffer of the failed call,
    /// and a call with other bytes panics inside rustls (a client could
    /// otherwise kill a shard with a bad certificate followed by more bytes).
    failed: bool,
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn").field("sniff", &self.sniff).field("carry", &self.plain_carry.len()).finish()
    }
}

impl TlsConn {
    /// A server connection with `config`.
    pub fn new(config: Arc<rustls::ServerConfig>) -> Result<TlsConn, TlsFailure> {
        let conn = UnbufferedServerConnection::new(config).map_err(|e| TlsFailure::Protocol(e.to_string()))?;
        Ok(TlsConn { conn, sniff: Sniff::Unknown, plain_carry: Vec::new(), close_notify_sent: false, failed: false })
    }

    /// What the first byte said (`Unknown` before any input).
    pub fn sniff(&self) -> Sniff {
        self.sniff
    }

    /// True once the handshake is complete and application data flows.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// True once a handshake completed by resuming an earlier session
    /// (a ticket or a session ID) rather than with a full key exchange.
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// The client's certificate chain, once the handshake has it.
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }

    /// Processes the records in `cipher`: handshake messages to send go to
    /// `out`, application data is appended to `plain`. On a first byte that
    /// is not TLS, returns [`TlsFailure::NotTls`] after setting [`Self::sniff`].
    pub fn read(&mut self, cipher: &mut [u8], plain: &mut Vec<u8>, out: &mut Output) -> Result<TlsRead, TlsFailure> {
        if self.failed {
            return Err(TlsFailure::Protocol("the TLS connection already failed".into()));
        }
        let mut r = TlsRead::default();
        if self.sniff == Sniff::Unknown {
            match cipher.first() {
                None => return Ok(r),
                Some(0x16) => self.sniff = Sniff::Tls,
                Some(b) if b.is_ascii_uppercase() => {
                    self.sniff = Sniff::PlainHttp;
                    return Err(TlsFailure::NotTls("plain HTTP on the TLS port"));
                }
                Some(_) => {
                    self.sniff = Sniff::Garbage;
                    return Err(TlsFailure::NotTls("neither TLS nor HTTP"));
                }
            }
        }
        loop {
            let UnbufferedStatus { mut discard, state } = self.conn.process_tls_records(&mut cipher[r.consumed..]);
            let state = match state {
                Ok(s) => s,
                Err(e) => {
                    r.consumed += discard;
                    self.fail(&mut cipher[r.consumed..], out);
                    return Err(TlsFailure::Protocol(e.to_string()));
                }
            };
            let mut more = true;
            match state {
                ConnectionState::ReadTraffic(mut t) => {
                    while let Some(rec) = t.next_record() {
                        let rec = rec.map_err(|e| TlsFailure::Protocol(e.to_string()))?;
                        discard += rec.discard;
                        plain.extend_from_slice(rec.payload);
                        r.plaintext += rec.payload.len();
                    }
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    append(
                        out,
                        4096,
                        |b| e.encode(b),
                        |e| match e {
                            EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
                                Some(*required_size)
                            }
                            _ => None,
                        },
                    )
                    .map_err(|e| TlsFailure::Protocol(e.to_string()))?;
                }
                // What was encoded goes out with this call's output, in order.
                ConnectionState::TransmitTlsData(t) => t.done(),
                // close_notify: the TCP FIN that follows ends the connection.
                ConnectionState::PeerClosed => {}
                // Needs more bytes (a handshake or a partial record), or nothing left to read.
                ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) | ConnectionState::Closed => {
                    more = false
                }
                // Early data is not enabled (max_early_data_size is 0).
                ConnectionState::ReadEarlyData(_) => more = false,
                _ => more = false,
            }
            r.consumed += discard;
            if !more {
                return Ok(r);
            }
        }
    }

    /// After an error: the alert rustls queued for it (RFC 8446 §6.2, e.g.
    /// `bad_certificate`) goes to `out`, from one more call over the same
    /// remaining bytes (the only input its deframer can still take); then
    /// the connection is never called again.
    fn fail(&mut self, rest: &mut [u8], out: &mut Output) {
        self.failed = true;
        if let Ok(ConnectionState::EncodeTlsData(mut e)) = self.conn.process_tls_records(rest).state {
            let _ = append(
                out,
                64,
                |b| e.encode(b),
                |e| match e {
                    EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => Some(*required_size),
                    _ => None,
                },
            );
        }
    }

    /// Encrypts every chunk of `plain_out` (resolved against `buf`) into
    /// `out`, then a close_notify if `close` (once). Fails when the
    /// handshake is not complete (nothing can be encrypted yet).
    pub fn seal(&mut self, plain_out: &Output, buf: &[u8], close: bool, out: &mut Output) -> Result<(), TlsFailure> {
        if plain_out.is_empty() && (!close || self.close_notify_sent) {
            return Ok(());
        }
        if self.failed {
            return Err(TlsFailure::Protocol("the TLS connection already failed".into()));
        }
        let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut []);
        let mut w = match state {
            Ok(ConnectionState::WriteTraffic(w)) => w,
            Ok(_) => return Err(TlsFailure::Protocol("handshake not complete".into())),
            Err(e) => return Err(TlsFailure::Protocol(e.to_string())),
        };
        let need = |e: &EncryptError| match e {
            EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => Some(*required_size),
            _ => None,
        };
        for s in plain_out.slices(buf) {
            let hint = s.len() + (s.len() / RECORD_PLAINTEXT + 1) * RECORD_OVERHEAD;
            append(out, hint, |b| w.encrypt(s, b), need).map_err(|e| TlsFailure::Protocol(e.to_string()))?;
        }
        if close && !self.close_notify_sent {
            self.close_notify_sent = true;
            append(out, 64, |b| w.queue_close_notify(b), need).map_err(|e| TlsFailure::Protocol(e.to_string()))?;
        }
        Ok(())
    }
}

/// Runs `f` on `hint` bytes of fresh room at the end of `out`'s owned bytes
/// (more if it says it needs more) and keeps what it wrote.
fn append<E>(
    out: &mut Output,
    hint: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, E>,
    required: impl Fn(&E) -> Option<usize>,
) -> Result<(), E> {
    let mut result = Ok(());
    out.push_owned_with(|o| {
        let base = o.len();
        o.resize(base + hint, 0);
        let n = match f(&mut o[base..]) {
            Ok(n) => Ok(n),
            Err(e) => match required(&e) {
                Some(size) => {
                    o.resize(base + size, 0);
                    f(&mut o[base..])
                }
                None => Err(e),
            },
        };
        match n {
            Ok(n) => o.truncate(base + n),
            Err(e) => {
                o.truncate(base);
                result = Err(e);
            }
        }
    });
    result
}
