//! Close codes (RFC 6455 §7.4) and the validation of a received close frame.

use crate::ws::error::ProtocolError;
use crate::ws::utf8;

/// 1000: normal closure.
pub const NORMAL: u16 = 1000;
/// 1001: going away (server shutting down).
pub const GOING_AWAY: u16 = 1001;
/// 1005: no status code was present (never sent; RFC 6455 §7.4.1).
pub const NO_STATUS: u16 = 1005;
/// 1002: protocol error.
pub const PROTOCOL_ERROR: u16 = 1002;
/// 1007: message data not consistent with its type (bad UTF-8).
pub const INVALID_PAYLOAD: u16 = 1007;
/// 1009: message too big to process.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// RFC 6455 §7.4.1: the endpoint received something against its policy
/// (a room member too slow for its backlog).
pub const POLICY_VIOLATION: u16 = 1008;
/// 1011: the server met an unexpected condition.
pub const INTERNAL_ERROR: u16 = 1011;

/// Whether `code` may appear in a close frame on the wire (RFC 6455 §7.4.1,
/// §7.4.2 and the IANA registry): 1000–1003, 1007–1014 and 3000–4999.
/// 1004 is reserved, 1005/1006/1015 must never be sent.
pub fn is_valid_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Validates an unmasked close payload and returns the code to echo back:
/// the client's code, or 1000 when it sent none (RFC 6455 §5.5.1).
pub fn parse_close_payload(payload: &[u8]) -> Result<u16, ProtocolError> {
    match payload.len() {
        0 => Ok(NORMAL),
        // RFC 6455 §5.5.1: a body, if present, starts with a 2-byte code.
        1 => Err(ProtocolError::CloseOneByte),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_code(code) {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            // RFC 6455 §5.5.1: the reason is UTF-8.
            utf8::validate(&payload[2..]).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_ranges_follow_the_registry() {
        for c in [1000, 1001, 1002, 1003, 1007, 1010, 1011, 1014, 3000, 4999] {
            assert!(is_valid_code(c), "{c}");
        }
        for c in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!is_valid_code(c), "{c}");
        }
    }

    #[test]
    fn payload_rules() {
        assert_eq!(parse_close_payload(b""), Ok(1000));
        assert_eq!(parse_close_payload(b"\x03"), Err(ProtocolError::CloseOneByte));
        assert_eq!(parse_close_payload(b"\x03\xe9bye"), Ok(1001));
        assert_eq!(parse_close_payload(b"\x03\xed"), Err(ProtocolError::InvalidCloseCode(1005)));
        assert_eq!(parse_close_payload(b"\x03\xe8\xff"), Err(ProtocolError::InvalidUtf8));
    }
}
