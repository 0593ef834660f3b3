//! Frame header codec (RFC 6455 §5.2): parse a header where it lies, and write
//! one in front of a payload.

use crate::ws::error::ProtocolError;

/// Longest possible header: 2 + 8 (64-bit length) + 4 (mask key).
pub const MAX_HEADER_LEN: usize = 14;
/// Longest header a server writes (servers never mask, RFC 6455 §5.1).
pub const MAX_SERVER_HEADER_LEN: usize = 10;
/// RSV1 in [`FrameHeader::rsv`]: "Per-Message Compressed" under
/// permessage-deflate (RFC 7692 §6).
pub const RSV1: u8 = 0b100;
/// RSV1 in a frame's first byte.
pub const RSV1_BIT: u8 = 0x40;
/// Largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Frame opcodes (RFC 6455 §5.2, §11.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: a text message (payload is UTF-8).
    Text,
    /// 0x2: a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// Decodes the 4-bit opcode; reserved values (0x3–0x7, 0xB–0xF) are `None`.
    pub fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Control frames have the high opcode bit set (RFC 6455 §5.5).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// A parsed frame header. `len` is the payload length; the payload starts
/// `header_len` bytes after the first header byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN bit: last frame of a message.
    pub fin: bool,
    /// RSV1–RSV3 as the low three bits.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub len: u64,
    /// Bytes the header occupies on the wire.
    pub header_len: usize,
}

/// Outcome of parsing a header from a possibly incomplete buffer, in the
/// manner of `httparse::Status`: `Partial` is not an error.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderStatus {
    /// The whole header was present.
    Complete(FrameHeader),
    /// More bytes are needed; the first two bytes (if present) were already
    /// checked, so a violation visible there is reported at once (fail fast).
    Partial,
}

/// Parses a frame header at the start of `buf`, with no extension negotiated.
///
/// Checks what the header alone can tell: reserved opcode, nonzero RSV bits,
/// control frame fragmented or longer than 125 bytes, and a 64-bit length
/// with its top bit set. Whether a mask is required is the caller's decision
/// (servers require one, clients forbid it).
#[inline]
pub fn parse_header(buf: &[u8]) -> Result<HeaderStatus, ProtocolError> {
    parse_header_with(buf, false)
}

/// [`parse_header`], with permessage-deflate negotiated if `deflate`: then
/// RSV1 may be set on a text or binary frame (RFC 7692 §6), and is an error
/// on a control or continuation frame (§6.1). RSV2 and RSV3 stay errors.
/// Inlined: it is on the hot path of every frame, and a call costs more than
/// the parse of a short header.
#[inline(always)]
pub fn parse_header_with(buf: &[u8], deflate: bool) -> Result<HeaderStatus, ProtocolError> {
    if buf.len() < 2 {
        return Ok(HeaderStatus::Partial);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    let fin = b0 & 0x80 != 0;
    let rsv = (b0 >> 4) & 0x7;
    // RFC 6455 §5.2: RSV bits MUST be 0 unless an extension defines them.
    let allowed = if deflate { RSV1 } else { 0 };
    if rsv & !allowed != 0 {
        return Err(ProtocolError::ReservedBits(rsv));
    }
    // RFC 6455 §5.2: reserved opcodes fail the connection.
    let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0f))?;
    if rsv & RSV1 != 0 {
        // RFC 7692 §6.1: only a data message's first frame may say "compressed".
        if opcode.is_control() {
            return Err(ProtocolError::CompressedControl);
        }
        if opcode == OpCode::Continuation {
            return Err(ProtocolError::CompressedContinuation);
        }
    }
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7f;
    if opcode.is_control() {
        // RFC 6455 §5.5: control frames are never fragmented and carry at most 125 bytes.
        if !fin {
            return Err(ProtocolError::FragmentedControl);
        }
        if len7 as usize > MAX_CONTROL_PAYLOAD {
            return Err(ProtocolError::ControlTooLong);
        }
    }
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header_len = 2 + ext + if masked { 4 } else { 0 };
    if buf.len() < header_len {
        return Ok(HeaderStatus::Partial);
    }
    let len = match ext {
        0 => len7 as u64,
        2 => u16::from_be_bytes([buf[2], buf[3]]) as u64,
        _ => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let v = u64::from_be_bytes(b);
            // RFC 6455 §5.2: the most significant bit MUST be 0.
            if v >> 63 != 0 {
                return Err(ProtocolError::LengthTopBit);
            }
            v
        }
    };
    let mask = masked.then(|| {
        let m = 2 + ext;
        [buf[m], buf[m + 1], buf[m + 2], buf[m + 3]]
    });
    Ok(HeaderStatus::Complete(FrameHeader { fin, rsv, opcode, mask, len, header_len }))
}

/// Bytes an unmasked (server) header takes for a payload of `len` bytes.
#[inline]
pub fn server_header_len(len: u64) -> usize {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// Writes a header into `out`, which must hold at least `header_len` bytes
/// (2–10, plus 4 with a mask), and returns the number of bytes written.
/// The length uses the minimal encoding (RFC 6455 §5.2).
#[inline]
pub fn write_header(out: &mut [u8], fin: bool, opcode: OpCode, len: u64, mask: Option<[u8; 4]>) -> usize {
    out[0] = if fin { 0x80 } else { 0 } | opcode.as_u8();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = match len {
        0..=125 => {
            out[1] = mask_bit | len as u8;
            2
        }
        126..=65535 => {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&len.to_be_bytes());
            10
        }
    };
    if let Some(m) = mask {
        out[n..n + 4].copy_from_slice(&m);
        n += 4;
    }
    n
}

/// Appends a complete unmasked frame (header and payload) to `out`.
pub fn encode_frame(out: &mut Vec<u8>, fin: bool, opcode: OpCode, payload: &[u8]) {
    let mut hdr = [0u8; MAX_SERVER_HEADER_LEN];
    let n = write_header(&mut hdr, fin, opcode, payload.len() as u64, None);
    out.extend_from_slice(&hdr[..n]);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> FrameHeader {
        match parse_header(buf).unwrap() {
            HeaderStatus::Complete(h) => h,
            HeaderStatus::Partial => panic!("partial"),
        }
    }

    #[test]
    fn parses_each_length_encoding() {
        assert_eq!(complete(&[0x81, 0x05]).len, 5);
        let h = complete(&[0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4]);
        assert_eq!((h.len, h.header_len, h.mask), (256, 8, Some([1, 2, 3, 4])));
        let h = complete(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!((h.len, h.header_len), (65536, 10));
    }

    #[test]
    fn partial_header_is_not_an_error() {
        for n in 0..8 {
            assert_eq!(parse_header(&[0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4][..n]).unwrap(), HeaderStatus::Partial);
        }
    }

    #[test]
    fn rejects_reserved_bits_opcodes_and_bad_control_frames() {
        assert_eq!(parse_header(&[0xc1, 0x80]), Err(ProtocolError::ReservedBits(4)));
        assert_eq!(parse_header(&[0x83, 0x80]), Err(ProtocolError::ReservedOpcode(3)));
        assert_eq!(parse_header(&[0x8b, 0x80]), Err(ProtocolError::ReservedOpcode(0xb)));
        assert_eq!(parse_header(&[0x09, 0x80]), Err(ProtocolError::FragmentedControl));
        assert_eq!(parse_header(&[0x89, 0xfe]), Err(ProtocolError::ControlTooLong));
        assert_eq!(parse_header(&[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0]), Err(ProtocolError::LengthTopBit));
    }

    #[test]
    fn rsv1_is_allowed_only_on_a_first_data_frame_with_deflate() {
        // RFC 7692 §6.1.
        assert_eq!(parse_header(&[0xc1, 0x80]), Err(ProtocolError::ReservedBits(4)));
        let h = match parse_header_with(&[0xc1, 0x80, 1, 2, 3, 4], true).unwrap() {
            HeaderStatus::Complete(h) => h,
            HeaderStatus::Partial => panic!("partial"),
        };
        assert_eq!((h.rsv, h.opcode), (RSV1, OpCode::Text));
        assert!(matches!(parse_header_with(&[0xc2, 0x80], true), Ok(HeaderStatus::Partial)));
        assert_eq!(parse_header_with(&[0xc0, 0x80], true), Err(ProtocolError::CompressedContinuation));
        assert_eq!(parse_header_with(&[0xc9, 0x80], true), Err(ProtocolError::CompressedControl));
        assert_eq!(parse_header_with(&[0xa1, 0x80], true), Err(ProtocolError::ReservedBits(2)));
        assert_eq!(parse_header_with(&[0x91, 0x80], true), Err(ProtocolError::ReservedBits(1)));
    }

    #[test]
    fn write_then_parse_round_trips() {
        for len in [0u64, 1, 125, 126, 65535, 65536, 1 << 40] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let mut b = [0u8; MAX_HEADER_LEN];
                let n = write_header(&mut b, false, OpCode::Binary, len, mask);
                let h = complete(&b[..n]);
                assert_eq!((h.len, h.header_len, h.mask, h.fin), (len, n, mask, false));
                if mask.is_none() {
                    assert_eq!(n, server_header_len(len));
                }
            }
        }
    }
}
