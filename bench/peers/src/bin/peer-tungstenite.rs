//! tokio-tungstenite echo server on a tokio current-thread runtime.

use futures_util::{SinkExt, StreamExt};

fn main() {
    ricochet_peers::serve_current_thread(|stream| async move {
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
