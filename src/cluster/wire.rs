//! What a room message looks like on NATS: one kind byte, then the
//! message's payload as the sender's client sent it (unmasked, and
//! inflated if it came compressed).
//!
//! - `t` (0x74): a text message; the payload must be UTF-8 (RFC 6455 §5.6);
//! - `b` (0x62): a binary message.
//!
//! So an application can publish into a room itself:
//! `nats pub 'ricochet.room./chat' 'thello'` reaches every member of
//! `/chat` on every host as the text "hello". Anything else on a room's
//! subject is dropped and counted (`malformed`).

/// The kind byte of a text message.
pub const TEXT: u8 = b't';
/// The kind byte of a binary message.
pub const BINARY: u8 = b'b';

/// Bytes the envelope adds to a payload.
pub const OVERHEAD: usize = 1;

/// The NATS payload of a message.
pub fn encode(text: bool, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + OVERHEAD);
    v.push(if text { TEXT } else { BINARY });
    v.extend_from_slice(payload);
    v
}

/// A message from NATS: (text, payload), or None if it is not one this
/// module writes (no kind byte, an unknown one, or text that is not UTF-8).
pub fn decode(data: &[u8]) -> Option<(bool, &[u8])> {
    let (&kind, payload) = data.split_first()?;
    match kind {
        TEXT if simdutf8::basic::from_utf8(payload).is_ok() => Some((true, payload)),
        BINARY => Some((false, payload)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_bad_ones_are_refused() {
        assert_eq!(decode(&encode(true, b"hi")), Some((true, &b"hi"[..])));
        assert_eq!(decode(&encode(false, &[0xff, 0])), Some((false, &[0xff, 0][..])));
        assert_eq!(decode(&encode(true, b"")), Some((true, &b""[..])));
        assert_eq!(decode(b""), None, "no kind byte");
        assert_eq!(decode(b"xhi"), None, "unknown kind");
        assert_eq!(decode(&[TEXT, 0xff]), None, "text that is not UTF-8");
    }
}
