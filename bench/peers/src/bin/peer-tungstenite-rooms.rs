//! A room server as most Rust applications write one: tokio-tungstenite on a
//! tokio current-thread runtime, one `tokio::sync::broadcast` channel per
//! room. A connection's room is its request path (without the query), as
//! with `ricochet serve --reply room`; every data message goes to every
//! member, the sender included. Each receiver clones the message out of the
//! channel (a reference count: tungstenite 0.26 keeps payloads in `Bytes`)
//! and tungstenite encodes a frame per receiver; what waits for a receiver
//! goes out in one flush. A receiver more than `CAPACITY` messages behind
//! loses the oldest (`RecvError::Lagged`): broadcast's own policy, counted
//! by no one, as in most applications (`ricochet bench` reports such a loss
//! as missing messages).

use futures_util::{SinkExt, StreamExt};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// Messages a room's channel holds for its slowest receiver.
const CAPACITY: usize = 4096;

type Rooms = Rc<RefCell<HashMap<String, broadcast::Sender<Message>>>>;

fn main() {
    let rooms: Rooms = Rc::default();
    ricochet_peers::serve_current_thread(move |stream| {
        let rooms = rooms.clone();
        async move {
            let mut path = String::from("/");
            // The Err type is tungstenite's own (an HTTP response), as its callback API fixes it.
            #[allow(clippy::result_large_err)]
            let callback = |req: &Request, resp: Response| {
                path = req.uri().path().to_string();
                Ok(resp)
            };
            let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else { return };
            let tx = rooms.borrow_mut().entry(path.clone()).or_insert_with(|| broadcast::channel(CAPACITY).0).clone();
            let mut rx = tx.subscribe();
            let (mut sink, mut source) = ws.split();
            loop {
                tokio::select! {
                    msg = source.next() => match msg {
                        Some(Ok(m)) if m.is_text() || m.is_binary() => {
                            let _ = tx.send(m);
                        }
                        Some(Ok(m)) if m.is_close() => break,
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                    got = rx.recv() => match got {
                        Ok(m) => {
                            // Everything already waiting goes out in one
                            // flush (tungstenite buffers what it is fed).
                            let mut ok = sink.feed(m).await.is_ok();
                            while ok {
                                match rx.try_recv() {
                                    Ok(m) => ok = sink.feed(m).await.is_ok(),
                                    Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                                    Err(_) => break,
                                }
                            }
                            if !ok || sink.flush().await.is_err() {
                                break;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
            drop(rx);
            // The last member gone: the room goes too.
            let mut rooms = rooms.borrow_mut();
            if rooms.get(&path).is_some_and(|t| t.receiver_count() == 0) {
                rooms.remove(&path);
            }
        }
    });
}
