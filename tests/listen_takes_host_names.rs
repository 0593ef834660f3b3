//! `--listen localhost:PORT` is accepted as `ricochet bench ws://localhost/`
//! is: the name is resolved at start and each of its addresses listened on.

mod common;

use common::{RawClient, Server};
use ricochet::ws::client::Event;
use ricochet::ws::frame::OpCode;

#[test]
fn a_host_name_listens_on_its_addresses() {
    let server = Server::start_raw(&["serve", "--listen", "localhost:0", "--shards", "1", "--no-pin"]);
    assert!(server.listeners.iter().all(|(a, tls)| a.ip().is_loopback() && !tls), "{:?}", server.listeners);
    for &(addr, _) in &server.listeners {
        let mut c = RawClient::open(addr);
        c.send(true, OpCode::Text, b"by name");
        assert!(matches!(c.next_event(), Some(Event::Message(OpCode::Text, t)) if t == b"by name"));
    }
}
