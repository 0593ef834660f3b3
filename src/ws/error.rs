//! Why a connection fails, and which close code says so.

use crate::ws::close;
use thiserror::Error;

/// The close codes a protocol error can call for ([`ProtocolError::close_code`]):
/// 1002 (RFC 6455 §7.4.1), 1007 (§8.1, invalid UTF-8 or compressed data) and
/// 1009 (too big). The metrics export `ricochet_protocol_errors_total` with
/// these codes only, so no series stays zero forever.
pub const PROTOCOL_ERROR_CODES: [u16; 3] = [1002, 1007, 1009];

/// A violation of RFC 6455 by the peer; each maps to the close code sent back.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// RFC 6455 §5.2: RSV bits set without a negotiated extension.
    #[error("reserved bits {0:#05b} set without an extension")]
    ReservedBits(u8),
    /// RFC 6455 §5.2: opcode 0x3–0x7 or 0xB–0xF.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// RFC 6455 §5.5: a control frame with FIN clear.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// RFC 6455 §5.5: a control frame payload over 125 bytes.
    #[error("control frame longer than 125 bytes")]
    ControlTooLong,
    /// RFC 6455 §5.2: a 64-bit length with its most significant bit set.
    #[error("64-bit payload length with the top bit set")]
    LengthTopBit,
    /// RFC 6455 §5.1: a client frame without the MASK bit.
    #[error("client frame is not masked")]
    Unmasked,
    /// RFC 6455 §5.1: a server frame with the MASK bit (client side).
    #[error("server frame is masked")]
    Masked,
    /// RFC 6455 §5.4: a continuation frame with no message open.
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// RFC 6455 §5.4: a new text or binary frame inside a fragmented message.
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// RFC 6455 §5.5.1: a close payload of exactly one byte.
    #[error("close frame with a 1-byte payload")]
    CloseOneByte,
    /// RFC 6455 §7.4: a close code that may not be sent.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// RFC 6455 §8.1: a text message or close reason that is not UTF-8.
    #[error("invalid UTF-8 in text")]
    InvalidUtf8,
    /// RFC 7692 §6.1: RSV1 ("Per-Message Compressed") on a control frame.
    #[error("compressed control frame")]
    CompressedControl,
    /// RFC 7692 §6.1: RSV1 on a continuation frame (only a message's first frame carries it).
    #[error("RSV1 set on a continuation frame")]
    CompressedContinuation,
    /// RFC 7692 §7.2.2: a compressed message that is not valid DEFLATE data (1007).
    #[error("invalid DEFLATE data in a compressed message")]
    BadDeflate,
    /// The frame or message exceeds the configured maximum (RFC 6455 §7.4.1, 1009);
    /// for a compressed message, its inflated size.
    #[error("message of at least {0} bytes exceeds the limit")]
    TooBig(u64),
}

impl ProtocolError {
    /// The close code that fails the connection for this error (RFC 6455 §7.4.1).
    pub fn close_code(self) -> u16 {
        // Every code here must be in PROTOCOL_ERROR_CODES (the metrics export only those).
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::BadDeflate => close::INVALID_PAYLOAD,
            ProtocolError::TooBig(_) => close::MESSAGE_TOO_BIG,
            _ => close::PROTOCOL_ERROR,
        }
    }

    /// A short reason for the close frame (fits the 123-byte limit).
    pub fn reason(self) -> &'static str {
        match self {
            ProtocolError::ReservedBits(_) => "reserved bits set",
            ProtocolError::ReservedOpcode(_) => "reserved opcode",
            ProtocolError::FragmentedControl => "fragmented control frame",
            ProtocolError::ControlTooLong => "control frame too long",
            ProtocolError::LengthTopBit => "invalid payload length",
            ProtocolError::Unmasked => "client frames must be masked",
            ProtocolError::Masked => "server frames must not be masked",
            ProtocolError::UnexpectedContinuation => "continuation without a message",
            ProtocolError::ExpectedContinuation => "expected a continuation frame",
            ProtocolError::CloseOneByte => "close payload of one byte",
            ProtocolError::InvalidCloseCode(_) => "invalid close code",
            ProtocolError::InvalidUtf8 => "invalid UTF-8",
            ProtocolError::CompressedControl => "compressed control frame",
            ProtocolError::CompressedContinuation => "RSV1 on a continuation frame",
            ProtocolError::BadDeflate => "invalid compressed data",
            ProtocolError::TooBig(_) => "message too big",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_calls_for_a_code_the_metrics_export() {
        use ProtocolError::*;
        let all = [
            ReservedBits(1),
            ReservedOpcode(3),
            FragmentedControl,
            ControlTooLong,
            LengthTopBit,
            Unmasked,
            Masked,
            UnexpectedContinuation,
            ExpectedContinuation,
            CloseOneByte,
            InvalidCloseCode(999),
            InvalidUtf8,
            CompressedControl,
            CompressedContinuation,
            BadDeflate,
            TooBig(1 << 30),
        ];
        for e in all {
            assert!(PROTOCOL_ERROR_CODES.contains(&e.close_code()), "{e:?}");
            // A match that names every variant: a new one fails to compile here
            // until it is added to the list above.
            match e {
                ReservedBits(_)
                | ReservedOpcode(_)
                | FragmentedControl
                | ControlTooLong
                | LengthTopBit
                | Unmasked
                | Masked
                | UnexpectedContinuation
                | ExpectedContinuation
                | CloseOneByte
                | InvalidCloseCode(_)
                | InvalidUtf8
                | CompressedControl
                | CompressedContinuation
                | BadDeflate
                | TooBig(_) => {}
            }
        }
    }
}
