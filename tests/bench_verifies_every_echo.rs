//! `ricochet bench` checks every echoed byte: a clean run against the echo
//! server exits 0; against a server that answers something else it counts
//! wrong echoes and exits 1.

mod common;

use common::Server;
use std::process::Command;

fn bench(server: &Server, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args(["bench", &server.url(), "--connections", "4", "--duration", "500ms", "--server-pid"])
        .arg(server.pid().to_string())
        .args(extra)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn clean_run_reports_throughput_and_exits_0() {
    let server = Server::start(&[]);
    for size in ["0", "20", "70000"] {
        let (ok, out) = bench(&server, &["--size", size, "--pipeline", "4"]);
        assert!(ok, "{out}");
        assert!(out.contains("0 wrong echoes, 0 missing, 0 failed connections"), "{out}");
        let messages: u64 = out
            .lines()
            .find_map(|l| l.strip_prefix("messages"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(messages > 0, "{out}");
        assert!(out.contains("server CPU"), "{out}");
    }
}

#[test]
fn wrong_echoes_are_counted_and_fail_the_run() {
    let server = Server::start(&["--reply", "pong"]);
    let (ok, out) = bench(&server, &["--size", "20"]);
    assert!(!ok, "{out}");
    assert!(!out.contains(" 0 wrong echoes"), "{out}");
}

#[test]
fn idle_mode_reports_server_memory() {
    let server = Server::start(&[]);
    let (ok, out) = bench(&server, &["--mode", "idle", "--connections", "50"]);
    assert!(ok, "{out}");
    assert!(out.contains("connections    50") && out.contains("bytes per connection"), "{out}");
}
