//! The client side of the frame codec: masked frames out, server frames in.
//! Used by the load generator, the tests and the fuzz target.

use crate::ws::deflate::inflate::TAIL;
use crate::ws::error::ProtocolError;
use crate::ws::frame::{self, HeaderStatus, OpCode, MAX_HEADER_LEN};
use crate::ws::mask::apply_mask;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// Compresses one message as a permessage-deflate client with no context
/// takeover sends it (RFC 7692 §7.2.1): a raw DEFLATE stream, flushed to a
/// byte boundary, without the final `00 00 ff ff`. For the load generator
/// and test clients; the server never compresses anything.
pub fn deflate_message(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    loop {
        let used = c.total_in() as usize;
        out.reserve(data.len() - used + 1024);
        c.compress_vec(&data[used..], &mut out, FlushCompress::Sync).expect("compressing into a growing buffer");
        if c.total_in() as usize == data.len() && out.ends_with(&TAIL) && out.len() < out.capacity() {
            break;
        }
    }
    out.truncate(out.len() - TAIL.len());
    out
}

/// Inflates one compressed message's payload (RFC 7692 §7.2.2); `None` if
/// it is not valid DEFLATE data. For test clients and the load generator.
pub fn inflate_message(payload: &[u8]) -> Option<Vec<u8>> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&TAIL);
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(payload.len() * 4 + 64);
    let mut pos = 0;
    loop {
        out.reserve(out.len().max(1024));
        let before = d.total_in();
        let status = d.decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync).ok()?;
        pos += (d.total_in() - before) as usize;
        if status == flate2::Status::StreamEnd {
            d.reset(false);
        }
        if pos == input.len() && out.len() < out.capacity() {
            return Some(out);
        }
    }
}

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
    /// RSV1: the message is compressed (RFC 7692 §6).
    pub compressed: bool,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Decodes the complete unmasked frames at the start of `bytes`; returns
/// them and the number of bytes they took (a trailing partial frame is left).
pub fn decode_server_frames(bytes: &[u8]) -> Result<(Vec<ServerFrame>, usize), ProtocolError> {
    decode_server_frames_with(bytes, false)
}

/// [`decode_server_frames`], with permessage-deflate negotiated if `deflate`.
pub fn decode_server_frames_with(bytes: &[u8], deflate: bool) -> Result<(Vec<ServerFrame>, usize), ProtocolError> {
    let mut frames = Vec::new();
    let mut pos = 0;
    while let HeaderStatus::Complete(h) = frame::parse_header_with(&bytes[pos..], deflate)? {
        if h.mask.is_some() {
            return Err(ProtocolError::Masked);
        }
        let start = pos + h.header_len;
        let Some(end) = start.checked_add(h.len as usize).filter(|&e| e <= bytes.len()) else {
            break;
        };
        let compressed = h.rsv & frame::RSV1 != 0;
        frames.push(ServerFrame { fin: h.fin, opcode: h.opcode, compressed, payload: bytes[start..end].to_vec() });
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

/// Reassembles frames into events (RFC 6455 §5.4), inflating compressed
/// messages (an invalid one is reported empty, with opcode `Close`); a
/// message left open at the end is reported, where it began, with opcode
/// `Continuation`.
pub fn events(frames: &[ServerFrame]) -> Vec<Event> {
    let mut ev = Vec::new();
    let mut compressed = false;
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
                    compressed = f.compressed;
                }
                let (op, mut data) = msg.take().unwrap_or((f.opcode, Vec::new()));
                data.extend_from_slice(&f.payload);
                if f.fin {
                    match compressed {
                        false => ev.push(Event::Message(op, data)),
                        true => match inflate_message(&data) {
                            Some(d) => ev.push(Event::Message(op, d)),
                            None => ev.push(Event::Message(OpCode::Close, Vec::new())),
                        },
                    }
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
