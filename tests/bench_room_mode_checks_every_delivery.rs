//! `ricochet bench --mode room` checks every delivery: against a room server
//! every member gets every publisher's messages and the run exits 0 with
//! deliveries and latency; against an echo server (where nobody hears the
//! others) the messages the members never got are counted missing, exit 1.

mod common;

use common::Server;
use std::process::Command;

fn bench(server: &Server, extra: &[&str]) -> (bool, String) {
    let url = format!("{}lobby", server.url());
    let out = Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args(["bench", &url, "--mode", "room", "--duration", "500ms", "--server-pid"])
        .arg(server.pid().to_string())
        .args(extra)
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn figure(out: &str, line: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix(line))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {line:?} in {out}"))
}

#[test]
fn a_room_server_delivers_everything_and_the_run_exits_0() {
    let server = Server::start(&["--reply", "room", "--shards", "2"]);
    for extra in [
        &["--connections", "20", "--publishers", "1", "--size", "64"][..],
        &["--connections", "30", "--rooms", "3", "--publishers", "6", "--size", "2000", "--threads", "2"][..],
        &["--connections", "20", "--publishers", "2", "--rate", "400", "--size", "100"][..],
    ] {
        let (ok, out) = bench(&server, extra);
        assert!(ok, "{out}");
        assert!(out.contains("0 wrong, repeated or out of order, 0 missing, 0 failed connections"), "{out}");
        let (published, deliveries) = (figure(&out, "published"), figure(&out, "deliveries"));
        assert!(published > 0 && deliveries > 0, "{out}");
        assert!(out.contains("publish-to-delivery (us)") && out.contains("per server CPU-second"), "{out}");
    }
}

#[test]
fn an_echo_server_is_not_a_room_and_the_run_says_so() {
    let server = Server::start(&[]);
    let (ok, out) = bench(&server, &["--connections", "5", "--publishers", "1", "--size", "64"]);
    assert!(!ok, "{out}");
    let words: Vec<&str> = out
        .lines()
        .find_map(|l| l.strip_prefix("errors"))
        .unwrap_or_else(|| panic!("{out}"))
        .split_whitespace()
        .collect();
    let at = words.iter().position(|w| *w == "missing,").unwrap_or_else(|| panic!("{out}"));
    let missing: u64 = words[at - 1].parse().unwrap();
    assert!(missing > 0, "the 4 members that heard nothing miss every message: {out}");
}
