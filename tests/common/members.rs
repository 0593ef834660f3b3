//! Room members on real WebSockets (tokio-tungstenite) for the tests of
//! rooms across hosts: each records every message it gets, with when; the
//! messages are `SENDER:SEQ`, so a check can tell loss, duplicates and
//! reordering per sender.

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

/// One member: what it got, and its connection's open/closed state.
pub struct Member {
    /// Its name, the SENDER part of what it sends.
    pub name: String,
    sink: Sink,
    got: Arc<Mutex<Vec<(String, Instant)>>>,
    closed: Arc<std::sync::atomic::AtomicBool>,
    close_code: Arc<Mutex<Option<u16>>>,
    sent: u64,
}

impl Member {
    /// Connects to `url` and starts recording.
    pub async fn join(name: &str, url: &str) -> Member {
        let Ok(joined) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(url)).await
        else {
            panic!("{name}: no handshake from {url} in 10 s")
        };
        let (ws, _) = joined.unwrap_or_else(|e| panic!("{name}: cannot join {url}: {e}"));
        let (sink, mut stream) = ws.split();
        let got = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let close_code = Arc::new(Mutex::new(None));
        let (g, c, code) = (got.clone(), closed.clone(), close_code.clone());
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                match m {
                    Message::Text(t) => g.lock().unwrap().push((t.to_string(), Instant::now())),
                    Message::Binary(b) => g.lock().unwrap().push((String::from_utf8_lossy(&b).into(), Instant::now())),
                    Message::Close(f) => {
                        *code.lock().unwrap() = f.map(|f| u16::from(f.code));
                        break;
                    }
                    _ => {}
                }
            }
            c.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        Member { name: name.into(), sink, got, closed, close_code, sent: 0 }
    }

    /// Sends `m` as it is (not counted as one of its numbered messages).
    pub async fn send_raw(&mut self, m: Message) {
        self.sink.send(m).await.expect("send");
    }

    /// The close code the server sent, once it closed.
    pub fn close_code(&self) -> Option<u16> {
        *self.close_code.lock().unwrap()
    }

    /// Sends its next message (`NAME:SEQ`); returns its sequence number.
    pub async fn send_next(&mut self) -> u64 {
        let seq = self.sent;
        self.sink.send(Message::text(format!("{}:{seq}", self.name))).await.expect("send");
        self.sent += 1;
        seq
    }

    /// Messages sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Everything it got so far.
    pub fn got(&self) -> Vec<(String, Instant)> {
        self.got.lock().unwrap().clone()
    }

    /// How many messages it got.
    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// Its connection ended (the server closed or went away).
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Sequence numbers got from each sender, in the order they came.
pub fn by_sender(got: &[(String, Instant)]) -> BTreeMap<String, Vec<u64>> {
    let mut m: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (text, _) in got {
        let (sender, seq) = text.rsplit_once(':').unwrap_or_else(|| panic!("not SENDER:SEQ: {text:?}"));
        m.entry(sender.to_string()).or_default().push(seq.parse().unwrap());
    }
    m
}

/// Checks that `got` holds, from each of `senders` (name, sent), every
/// message once and in order, and nothing else.
pub fn check_complete(who: &str, got: &[(String, Instant)], senders: &[(String, u64)]) -> Result<(), String> {
    let m = by_sender(got);
    for (name, sent) in senders {
        let seqs = m.get(name).map(Vec::as_slice).unwrap_or(&[]);
        if seqs.len() as u64 != *sent || seqs.iter().enumerate().any(|(i, s)| *s != i as u64) {
            let head: Vec<_> = seqs.iter().take(12).collect();
            return Err(format!("{who} got {} of {sent} from {name}, not 0..{sent} in order: {head:?}…", seqs.len()));
        }
    }
    if let Some(other) = m.keys().find(|k| !senders.iter().any(|(n, _)| n == *k)) {
        return Err(format!("{who} got messages from {other}, which is not in its room"));
    }
    Ok(())
}

/// Waits (up to `limit`) until every member has at least `want` messages.
pub async fn wait_for_counts(members: &[&Member], want: usize, limit: Duration) {
    let t0 = Instant::now();
    while members.iter().any(|m| m.count() < want) && t0.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A multi-threaded runtime: the members' readers run while a test thread
/// blocks on a scrape.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}
