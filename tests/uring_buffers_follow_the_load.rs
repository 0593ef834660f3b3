//! io_uring receive buffers follow the load: an idle shard holds about as
//! little as an epoll one (not `--uring-buffers` x `--uring-buffer-size`),
//! under load the ring grows, up to `--uring-buffers`, without losing or
//! stalling anything, and once the load is gone the buffers' pages go back
//! (they are trimmed after a second or two unused).

mod common;

use common::Server;
use std::process::Command;
use std::time::Duration;

/// The number after `key=` on the log's `shard stopped` lines, summed.
fn stopped_sum(log: &str, key: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("shard stopped"))
        .filter_map(|l| l.split(&format!("{key}=")).nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// 200 connections x 64 KiB, 4 in flight each, for a second: far more
/// receives at once than the ring starts with; every echo must be intact.
fn burst(server: &Server) {
    let out = Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args(["bench", &server.url(), "--connections", "200", "--size", "64K", "--pipeline", "4", "--duration", "1s"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("0 wrong echoes, 0 missing, 0 failed connections"), "{text}");
}

#[test]
fn an_idle_shard_holds_few_buffers_and_a_busy_one_grows_them() {
    // Before, each shard faulted in 128 x 128 KiB = 16 MiB at start.
    let mut server = Server::start(&["--backend", "uring", "--shards", "2"]);
    let idle_kib = server.rss_kib();
    assert!(idle_kib < 12 * 1024, "idle RSS {idle_kib} KiB with 2 shards");
    burst(&server);
    let busy_kib = server.rss_kib();
    assert!(busy_kib > idle_kib + 2 * 1024, "RSS {idle_kib} -> {busy_kib} KiB: the ring did not grow");
    let grown = busy_kib - idle_kib;
    // Idle again: most of what the rings grew by goes back within seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut after_kib = busy_kib;
    while after_kib > idle_kib + grown / 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        after_kib = server.rss_kib();
    }
    assert!(
        after_kib <= idle_kib + grown / 2,
        "RSS {idle_kib} -> {busy_kib} -> {after_kib} KiB: idle buffers were not given back"
    );
    // And the trimmed buffers serve the next burst as before.
    burst(&server);
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).expect("exit").success());
    let log = server.wait_for_log_lines("shard stopped", 2);
    let buffers = stopped_sum(&log, "ring_buffers");
    assert!(buffers > 4 && buffers <= 2 * 128, "ring buffers {buffers}\n{log}");
}

#[test]
fn growth_stops_at_the_configured_count() {
    // 64 KiB buffers: the ring starts with 4 (256 KiB) and may grow to 8.
    let mut server = Server::start(&["--backend", "uring", "--uring-buffers", "8", "--uring-buffer-size", "64K"]);
    let out = Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args([
            "bench",
            &server.url(),
            "--connections",
            "64",
            "--size",
            "16K",
            "--pipeline",
            "2",
            "--duration",
            "500ms",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("0 wrong echoes, 0 missing, 0 failed connections"), "{text}");
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).expect("exit").success());
    let log = server.wait_for_log("shard stopped");
    assert_eq!(stopped_sum(&log, "ring_buffers"), 8, "{log}");
    assert!(stopped_sum(&log, "recv_starved") > 0, "{log}");
}
