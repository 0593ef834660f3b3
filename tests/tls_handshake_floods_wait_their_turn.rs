//! A flood of TLS handshakes that arrives at once is worked on at most
//! `TLS_HANDSHAKES_PER_TURN` per turn of the shard's event loop: the rest
//! wait for later turns (counted in `ricochet_tls_handshakes_deferred_total`),
//! an established connection keeps echoing, and every handshake completes.

mod common;

use common::admin::{sum, wait_for};
use common::tls::{echo, echo_again};
use rustls::pki_types::ServerName;
use std::net::TcpStream;

const FLOOD: usize = 100;

#[test]
fn a_flood_of_tls_handshakes_waits_its_turn_and_every_one_completes() {
    let server = common::start_tls(&["--metrics-listen", "127.0.0.1:0"]);
    let admin = server.metrics.expect("metrics listener");
    let mut established = common::tls::connect(server.addr, "localhost");
    established.sock.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    echo(&mut established, "before the flood");

    // Stopped, the server cannot take any of them early: once it runs again,
    // all the ClientHellos are waiting for it in the same turn.
    server.signal(libc::SIGSTOP);
    let config = common::tls::shared().0.client_config();
    let mut flood: Vec<_> = (0..FLOOD)
        .map(|_| {
            let mut tcp = TcpStream::connect(server.addr).expect("connect (the backlog holds them)");
            tcp.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let mut conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
            conn.write_tls(&mut tcp).expect("ClientHello");
            rustls::StreamOwned::new(conn, tcp)
        })
        .collect();
    server.signal(libc::SIGCONT);

    echo_again(&mut established, "during the flood");
    for (i, s) in flood.iter_mut().enumerate() {
        echo(s, &format!("flooder {i}"));
    }
    echo_again(&mut established, "after the flood");

    let m = wait_for(admin, "every handshake counted", |m| {
        sum(m, "ricochet_tls_handshakes_total", &["result=\"full\""]) == (FLOOD + 1) as f64
    });
    let deferred = sum(&m, "ricochet_tls_handshakes_deferred_total", &[]);
    assert!(deferred > 0.0, "{FLOOD} ClientHellos in one turn, none deferred");
    assert_eq!(sum(&m, "ricochet_tls_handshakes_total", &["result=\"failed\""]), 0.0);
}
