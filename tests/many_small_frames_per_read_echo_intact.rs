//! One read can hold thousands of small frames (a 128 KiB io_uring buffer of
//! 64-byte fragments is ~1,900 echoes). Their echoes must all go out intact,
//! however many there are: one `sendmsg` takes at most 1,024 slices (Autobahn
//! 9.3.1 and 9.4.1 found this: 4 MiB in 64-byte fragments).

mod common;

use common::{tokio_runtime, RawClient, Server, IO_TIMEOUT};
use futures_util::{SinkExt, StreamExt};
use ricochet::ws::client::{encode_masked, Event};
use ricochet::ws::frame::OpCode;
use std::io::Write;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode as TOpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

const FRAGMENT: usize = 64;
const MESSAGE: usize = 4 << 20;

/// Sends `payload` as one message in `FRAGMENT`-byte fragments with an
/// independent client (tokio-tungstenite, which batches frames into large
/// writes) while reading the echo, as Autobahn 9.3.1/9.4.1 do.
fn echo_fragmented(server: &Server, opcode: Data, payload: Vec<u8>) -> Message {
    tokio_runtime().block_on(async {
        let ws = common::ws_connect(&server.url()).await;
        let (mut tx, mut rx) = ws.split();
        let send = async {
            let n = payload.len() / FRAGMENT;
            for (i, part) in payload.chunks(FRAGMENT).enumerate() {
                let op = if i == 0 { TOpCode::Data(opcode) } else { TOpCode::Data(Data::Continue) };
                tx.feed(Message::Frame(Frame::message(part.to_vec(), op, i + 1 == n))).await.unwrap();
            }
            tx.flush().await.unwrap();
        };
        let recv = async { timeout(IO_TIMEOUT, rx.next()).await.expect("echo timeout").unwrap().unwrap() };
        let ((), got) = tokio::join!(send, recv);
        got
    })
}

#[test]
fn four_mib_text_in_64_byte_fragments_echoes_intact() {
    let server = Server::start(&[]);
    let text: String = "héllo wörld ✓ ".chars().cycle().take(MESSAGE).collect::<String>();
    // Whole characters up to a multiple of FRAGMENT bytes; fragments may
    // split a character (UTF-8 is judged across fragments).
    let mut bytes = text.into_bytes();
    bytes.truncate(MESSAGE);
    while std::str::from_utf8(&bytes).is_err() || bytes.len() % FRAGMENT != 0 {
        bytes.pop();
    }
    let want = String::from_utf8(bytes.clone()).unwrap();
    match echo_fragmented(&server, Data::Text, bytes) {
        Message::Text(got) => assert!(got.as_str() == want, "text echo differs ({} bytes)", got.len()),
        other => panic!("expected text, got {other:?}"),
    }
}

#[test]
fn four_mib_binary_in_64_byte_fragments_echoes_intact() {
    let server = Server::start(&[]);
    let bin: Vec<u8> = (0..MESSAGE).map(|i| (i % 251) as u8).collect();
    match echo_fragmented(&server, Data::Binary, bin.clone()) {
        Message::Binary(got) => assert!(got[..] == bin[..], "binary echo differs ({} bytes)", got.len()),
        other => panic!("expected binary, got {other:?}"),
    }
}

#[test]
fn fixed_replies_between_pongs_all_arrive() {
    // `--reply pong` answers a message with an owned frame and a ping with a
    // pong written in place: taking turns, they cannot be merged into fewer
    // slices, and 3,000 pairs arrive in few reads.
    const PAIRS: usize = 3000;
    let server = Server::start(&["--reply", "pong"]);
    let mut c = RawClient::open(server.addr);
    let mut burst = Vec::new();
    for i in 0..PAIRS {
        encode_masked(&mut burst, true, OpCode::Text, b"hi", [1, 2, 3, 4]);
        encode_masked(&mut burst, true, OpCode::Ping, &(i as u16).to_be_bytes(), [5, 6, 7, 8]);
    }
    let mut w = c.stream.tcp().try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&burst).unwrap());
    for i in 0..PAIRS {
        match c.next_event() {
            Some(Event::Message(OpCode::Text, t)) => assert_eq!(t, b"Pong", "reply {i}"),
            other => panic!("reply {i}: expected \"Pong\", got {other:?}"),
        }
        match c.next_event() {
            Some(Event::Pong(p)) => assert_eq!(p, (i as u16).to_be_bytes(), "pong {i}"),
            other => panic!("pong {i}: expected a pong, got {other:?}"),
        }
    }
    writer.join().unwrap();
}
