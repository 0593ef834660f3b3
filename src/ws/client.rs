//! The client side of the frame codec: masked frames out, server frames in.
//! Used by the load generator, the tests and the fuzz target.

use crate::ws::error::ProtocolError;
use crate::ws::frame::{self, HeaderStatus, OpCode, MAX_HEADER_LEN};
use crate::ws::mask::apply_mask;

/// Appends a masked client frame (RFC 6455 §5.3) to `out`.
pub fn encode_masked(out: &mut Vec<u8>, fin: bool, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
    let mut hdr = [0u8; MAX_HEADER_LEN];
    let n = frame::write_header(&mut hdr, fin, opcode, payload.len() as u64, Some(mask));
    out.extend_from_slice(&hdr[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
}

/// One frame as a server sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFrame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: OpCode,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Decodes the complete unmasked frames at the start of `bytes`; returns
/// them and the number of bytes they took (a trailing partial frame is left).
pub fn decode_server_frames(bytes: &[u8]) -> Result<(Vec<ServerFrame>, usize), ProtocolError> {
    let mut frames = Vec::new();
    let mut pos = 0;
    while let HeaderStatus::Complete(h) = frame::parse_header(&bytes[pos..])? {
        if h.mask.is_some() {
            return Err(ProtocolError::Masked);
        }
        let start = pos + h.header_len;
        let Some(end) = start.checked_add(h.len as usize).filter(|&e| e <= bytes.len()) else {
            break;
        };
        frames.push(ServerFrame { fin: h.fin, opcode: h.opcode, payload: bytes[start..end].to_vec() });
        pos = end;
    }
    Ok((frames, pos))
}

/// What a client application sees: frames reassembled into messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete text or binary message.
    Message(OpCode, Vec<u8>),
    /// A ping with its payload.
    Ping(Vec<u8>),
    /// A pong with its payload.
    Pong(Vec<u8>),
    /// A close frame's code (if any) and reason.
    Close(Option<u16>, Vec<u8>),
}

/// Reassembles frames into events (RFC 6455 §5.4); a message left open at
/// the end is reported, where it began, with opcode `Continuation`.
pub fn events(frames: &[ServerFrame]) -> Vec<Event> {
    let mut ev = Vec::new();
    let mut msg: Option<(OpCode, Vec<u8>)> = None;
    let mut msg_at = 0;
    for f in frames {
        match f.opcode {
            OpCode::Ping => ev.push(Event::Ping(f.payload.clone())),
            OpCode::Pong => ev.push(Event::Pong(f.payload.clone())),
            OpCode::Close => {
                let code = (f.payload.len() >= 2).then(|| u16::from_be_bytes([f.payload[0], f.payload[1]]));
                ev.push(Event::Close(code, f.payload.get(2..).unwrap_or(&[]).to_vec()));
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                if msg.is_none() {
                    msg_at = ev.len();
                }
                let (op, mut data) = msg.take().unwrap_or((f.opcode, Vec::new()));
                data.extend_from_slice(&f.payload);
                if f.fin {
                    ev.push(Event::Message(op, data));
                } else {
                    msg = Some((op, data));
                }
            }
        }
    }
    if let Some((_, data)) = msg {
        ev.insert(msg_at, Event::Message(OpCode::Continuation, data));
    }
    ev
}
