//! `--log-format json`: every line the server logs is one JSON object with
//! `timestamp`, `level`, `target`, `message` and the event's own fields at
//! the top level, for log shippers; text stays the default.

mod common;

use common::Server;

#[test]
fn every_line_is_a_json_object_with_the_events_fields() {
    let server = Server::start_debug(&["--log-format", "json"]);
    // A refused handshake adds a debug line with fields of its own.
    let out = common::http_exchange(server.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    let log = server.wait_for_log("handshake refused");
    let mut seen_accepting = false;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v.get(key).is_some(), "{key} missing: {line}");
        }
        if v["message"] == "shard accepting" {
            seen_accepting = v["shard"] == 0 && v["addr"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:"));
        }
        if v["message"] == "handshake refused" {
            assert_eq!(v["status"], 400, "{line}");
            assert!(v["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:")), "{line}");
        }
    }
    assert!(seen_accepting, "{log}");
    // The default is text.
    let text = Server::start(&[]);
    let line = text.wait_for_log("shard accepting");
    assert!(!line.trim_start().starts_with('{'), "{line}");
}

#[test]
fn an_unknown_format_is_one_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args(["serve", "--log-format", "xml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.lines().count() == 1 && stderr.contains("log-format") && stderr.contains("text or json"),
        "{stderr}"
    );
}
