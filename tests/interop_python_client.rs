//! An independent Python client (`websockets`, from the venv `make venv`
//! builds) gets every message back intact; see tests/python/interop.py.

mod common;

use common::{python, Server};
use std::process::Command;

#[test]
fn python_websockets_client_passes_every_check() {
    let server = Server::start(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/interop.py");
    let out = Command::new(python())
        .arg(script)
        .arg(server.url())
        .env("RICOCHET_TEST_CA", common::tls::shared().0.ca_file())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}\nserver log:\n{}", String::from_utf8_lossy(&out.stderr), server.log());
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
