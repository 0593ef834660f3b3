//! Independent clients with permessage-deflate negotiated get exact echoes:
//! Python `websockets` and Node's `ws` (both compress by default; ws is told
//! to compress every message), and headless Chromium, which checks
//! `ws.extensions` too. Each also runs the offer shapes that take the
//! bounded-window passthrough and the fallback echo. See tests/python/deflate.py,
//! tests/node/deflate.mjs and tests/python/chromium_deflate.py.

mod common;

use common::{assert_script_passed, python, Server};
use std::process::Command;

#[test]
fn python_websockets_gets_compressed_echoes() {
    let server = Server::start(&["--permessage-deflate"]);
    let out = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/deflate.py"))
        .arg(server.url())
        .env("RICOCHET_TEST_CA", common::tls::shared().0.ca_file())
        .output()
        .expect("run python");
    assert_script_passed("Python websockets", out, &server);
}

#[test]
fn node_ws_gets_compressed_echoes() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node");
    assert!(
        std::path::Path::new(dir).join("node_modules/ws").exists(),
        "Node's ws missing: run `make node-deps` (or `make test`)"
    );
    let server = Server::start(&["--permessage-deflate"]);
    let out = Command::new("node")
        .arg(format!("{dir}/deflate.mjs"))
        .arg(server.url())
        .env("RICOCHET_TEST_CA", common::tls::shared().0.ca_file())
        .output()
        .expect("run node (install Node.js)");
    assert_script_passed("Node ws", out, &server);
}

#[test]
fn headless_chromium_gets_compressed_echoes() {
    let server = Server::start(&["--permessage-deflate"]);
    let out = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/chromium_deflate.py"))
        .arg(server.url())
        .output()
        .expect("run python");
    assert_script_passed("Chromium (install Debian's chromium: scripts/install-deps.sh)", out, &server);
}
