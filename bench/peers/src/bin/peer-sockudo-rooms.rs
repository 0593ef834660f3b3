//! A room server on sockudo-ws 3.1's `pubsub` (topics after uWebSockets'
//! design: a subscriber is an unbounded channel, `publish` clones the
//! message's `Bytes` into each member's channel), as its own `pubsub_echo`
//! example serves it, on a tokio current-thread runtime. A connection's
//! room (topic) is its request path, as with `ricochet serve --reply room`;
//! every data message goes to every member, the sender included.

use bytes::BytesMut;
use ricochet_peers::Stream;
use sockudo_ws::handshake::{build_response, generate_accept_key, parse_request};
use sockudo_ws::pubsub::PubSub;
use sockudo_ws::{Config, Message, WebSocketStream};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Reads the upgrade request and answers it; returns the request path.
async fn handshake(stream: &mut Stream) -> Option<String> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if stream.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
        if let Some((req, _)) = parse_request(&buf).ok()? {
            let path = req.path.split('?').next().unwrap_or("/").to_string();
            let response = build_response(&generate_accept_key(req.key), None, None);
            stream.write_all(&response).await.ok()?;
            return Some(path);
        }
    }
}

fn main() {
    let pubsub = Arc::new(PubSub::new());
    ricochet_peers::serve_current_thread(move |mut stream| {
        let pubsub = pubsub.clone();
        async move {
            let Some(topic) = handshake(&mut stream).await else { return };
            let (mut reader, mut writer) = WebSocketStream::server(stream, Config::default()).split();
            let (tx, mut rx) = mpsc::unbounded_channel();
            let id = pubsub.create_subscriber(tx);
            pubsub.subscribe(id, &topic);
            loop {
                tokio::select! {
                    msg = reader.next() => match msg {
                        Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                            pubsub.publish(&topic, m);
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => {}
                    },
                    Some(m) = rx.recv() => {
                        if writer.send(m).await.is_err() {
                            break;
                        }
                    }
                }
            }
            pubsub.remove_subscriber(id);
        }
    });
}
