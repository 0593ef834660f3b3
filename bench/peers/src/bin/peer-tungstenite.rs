//! tokio-tungstenite echo server on a tokio current-thread runtime.

use futures_util::{SinkExt, StreamExt};

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let listener = tokio::net::TcpListener::bind(ricochet_peers::listen_addr()).await.unwrap();
        ricochet_peers::announce(listener.local_addr().unwrap());
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::task::spawn_local(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_close() {
                        break;
                    }
                    let data = msg.is_text() || msg.is_binary();
                    if data && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}
