//! An independent Rust client (tokio-tungstenite) gets every message back
//! intact: text and binary at the length-encoding boundaries and 16 MiB,
//! whole and fragmented, pings, the close handshake, 200 connections at once.

mod common;

use common::{tokio_runtime, Server};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

const SIZES: [usize; 7] = [0, 1, 125, 126, 127, 65535, 65536];
const LIMIT: Duration = Duration::from_secs(30);

async fn connect(server: &Server) -> Ws {
    common::ws_connect(&server.url()).await
}

async fn next(ws: &mut Ws) -> Message {
    timeout(LIMIT, ws.next()).await.expect("echo timeout").expect("stream ended").expect("read")
}

/// Multi-byte text of at most `len` bytes.
fn text_of(len: usize) -> String {
    "héllo wörld ✓ "
        .chars()
        .cycle()
        .scan(0, |n, c| {
            *n += c.len_utf8();
            (*n <= len).then_some(c)
        })
        .collect()
}

#[test]
fn text_and_binary_messages_echo_intact() {
    let server = Server::start(&[]);
    tokio_runtime().block_on(async {
        let mut ws = connect(&server).await;
        for len in SIZES {
            let bin: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            ws.send(Message::binary(bin.clone())).await.unwrap();
            assert_eq!(next(&mut ws).await, Message::binary(bin), "binary {len}");
            let mut text = text_of(len);
            while text.len() < len {
                text.push('a');
            }
            ws.send(Message::text(text.clone())).await.unwrap();
            assert_eq!(next(&mut ws).await, Message::text(text), "text {len}");
        }
    });
}

#[test]
fn sixteen_mib_message_echoes_intact() {
    let server = Server::start(&[]);
    tokio_runtime().block_on(async {
        // The echo streams back while the message is still arriving, and the
        // server stops reading when its output backs up: the client must
        // read while it writes, as with any bounded-memory echo.
        let ws = connect(&server).await;
        let (mut tx, mut rx) = ws.split();
        let big: Vec<u8> = (0..16 << 20).map(|i: usize| (i % 253) as u8).collect();
        let send = async { tx.send(Message::binary(big.clone())).await.unwrap() };
        let recv = async { timeout(LIMIT, rx.next()).await.unwrap().unwrap().unwrap() };
        let ((), got) = tokio::join!(send, recv);
        match got {
            Message::Binary(b) => assert!(b[..] == big[..], "16 MiB payload differs"),
            other => panic!("unexpected {other:?}"),
        }
    });
}

#[test]
fn fragmented_messages_echo_intact() {
    let server = Server::start(&[]);
    tokio_runtime().block_on(async {
        let mut ws = connect(&server).await;
        let parts: [&str; 3] = ["frag", "ment", "ed ✓"];
        ws.send(Message::Frame(Frame::message(parts[0], OpCode::Data(Data::Text), false))).await.unwrap();
        ws.send(Message::Ping("between".into())).await.unwrap();
        ws.send(Message::Frame(Frame::message(parts[1], OpCode::Data(Data::Continue), false))).await.unwrap();
        ws.send(Message::Frame(Frame::message(parts[2], OpCode::Data(Data::Continue), true))).await.unwrap();
        assert_eq!(next(&mut ws).await, Message::Pong("between".into()));
        assert_eq!(next(&mut ws).await, Message::text(parts.concat()));
        let big = vec![7u8; 70000];
        ws.send(Message::Frame(Frame::message(big[..1].to_vec(), OpCode::Data(Data::Binary), false))).await.unwrap();
        ws.send(Message::Frame(Frame::message(big[1..].to_vec(), OpCode::Data(Data::Continue), true))).await.unwrap();
        assert_eq!(next(&mut ws).await, Message::binary(big));
    });
}

#[test]
fn ping_gets_pong_and_close_handshake_completes() {
    let server = Server::start(&[]);
    tokio_runtime().block_on(async {
        let mut ws = connect(&server).await;
        ws.send(Message::Ping("are you there?".into())).await.unwrap();
        assert_eq!(next(&mut ws).await, Message::Pong("are you there?".into()));
        ws.send(Message::Close(Some(CloseFrame { code: 4000.into(), reason: "done".into() }))).await.unwrap();
        match next(&mut ws).await {
            Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 4000),
            other => panic!("expected close, got {other:?}"),
        }
        // The server closes TCP after the handshake: the stream ends.
        assert!(timeout(LIMIT, ws.next()).await.unwrap().is_none());
    });
}

#[test]
fn two_hundred_concurrent_connections_each_get_their_own_echoes() {
    let server = Server::start(&[]);
    tokio_runtime().block_on(async {
        let mut tasks = Vec::new();
        let url = server.url();
        let local = tokio::task::LocalSet::new();
        for id in 0..200u32 {
            let url = url.clone();
            tasks.push(local.spawn_local(async move {
                let mut ws = common::ws_connect(&url).await;
                for i in 0..20u32 {
                    let msg = format!("conn {id} msg {i}");
                    ws.send(Message::text(msg.clone())).await.unwrap();
                    let got = timeout(LIMIT, ws.next()).await.unwrap().unwrap().unwrap();
                    assert_eq!(got, Message::text(msg));
                }
                ws.close(None).await.unwrap();
            }));
        }
        local
            .run_until(async {
                for t in tasks {
                    t.await.unwrap();
                }
            })
            .await;
    });
}
