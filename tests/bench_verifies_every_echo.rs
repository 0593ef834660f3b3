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

/// A plain TCP echo on a thread per connection; `corrupt` flips every 1000th byte.
fn raw_echo_server(corrupt: bool) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                let mut total = 0usize;
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    for (i, b) in buf[..n].iter_mut().enumerate() {
                        if corrupt && (total + i) % 1000 == 999 {
                            *b ^= 1;
                        }
                    }
                    total += n;
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn bench_raw(addr: std::net::SocketAddr, size: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args(["bench", &format!("tcp://{addr}"), "--connections", "3", "--duration", "500ms", "--size", size])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn raw_mode_checks_a_plain_tcp_echo_byte_for_byte() {
    let good = raw_echo_server(false);
    for size in ["20", "70000"] {
        let (ok, out) = bench_raw(good, size);
        assert!(ok && out.contains("0 wrong echoes, 0 missing, 0 failed"), "{out}");
    }
    let bad = raw_echo_server(true);
    let (ok, out) = bench_raw(bad, "70000");
    assert!(!ok && !out.contains(" 0 wrong echoes"), "{out}");
}

#[test]
fn connect_mode_counts_completed_handshakes() {
    let server = Server::start(&[]);
    let (ok, out) = bench(&server, &["--mode", "connect", "--connections", "4"]);
    assert!(ok, "{out}");
    let handshakes: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("handshakes"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(handshakes > 0, "{out}");
}

#[test]
fn storm_mode_times_every_clients_first_echo() {
    let server = Server::start(&[]);
    let (ok, out) =
        bench(&server, &["--mode", "storm", "--connections", "300", "--size", "100", "--duration", "20s", "--json"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["mode"], "storm");
    // Every client connected and had its one echo, checked byte for byte.
    assert_eq!((v["connections"].as_u64(), v["messages"].as_u64()), (Some(300), Some(300)), "{v}");
    assert_eq!((v["mismatched_echoes"].as_u64(), v["missing_echoes"].as_u64()), (Some(0), Some(0)), "{v}");
    // The window ends at the last first echo, so no client's
    // connect-to-first-echo is longer than it, and it is well under the limit.
    let window_us = v["window_seconds"].as_f64().unwrap() * 1e6;
    let max_us = v["latency_us"]["max"].as_f64().unwrap();
    assert!(max_us > 0.0 && max_us <= window_us * 1.01 + 1000.0, "max {max_us} us, window {window_us} us");
    assert!(window_us < 20e6, "{v}");
    assert!(v["server_cpu_seconds"].as_f64().unwrap() > 0.0, "{v}");
}

#[test]
fn open_loop_sends_at_the_requested_rate_and_json_reports_it() {
    let server = Server::start(&[]);
    let (ok, out) = bench(&server, &["--rate", "2000", "--duration", "1s", "--json"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["mode"], "echo");
    assert_eq!(v["mismatched_echoes"], 0);
    assert_eq!(v["missing_echoes"], 0);
    assert_eq!(v["failed_connections"], 0);
    let sent = v["messages"].as_u64().unwrap();
    // 2,000 per second for one second: the schedule, not the server, sets the count.
    assert!((1500..=2001).contains(&sent), "{sent} messages for 2000/s over 1 s");
    let rate = v["messages_per_second"].as_f64().unwrap();
    assert!((1500.0..=2100.0).contains(&rate), "{rate}/s");
    // Every field says its unit; percentiles by name.
    for p in ["p50", "p90", "p99", "p99_9", "max"] {
        assert!(v["latency_us"][p].is_number(), "latency_us.{p} missing: {v}");
    }
    for f in ["window_seconds", "client_cpu_seconds", "server_cpu_seconds", "message_bytes", "connections"] {
        assert!(v[f].is_number(), "{f} missing: {v}");
    }
}

#[test]
fn a_warmup_is_sent_but_not_counted() {
    let server = Server::start(&["--metrics-listen", "127.0.0.1:0"]);
    let (ok, out) = bench(&server, &["--rate", "2000", "--warmup", "1s", "--threads", "2", "--json"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    let secs = v["window_seconds"].as_f64().unwrap();
    assert!((0.5..0.7).contains(&secs), "window {secs} s for --duration 500ms after a 1 s warm-up");
    // 500 ms at 2,000/s counted; the warm-up's 2,000 went to the server too.
    let counted = v["messages"].as_u64().unwrap();
    assert!((750..=1001).contains(&counted), "{counted} messages counted for 2000/s over 500 ms");
    assert_eq!((v["missing_echoes"].as_u64(), v["failed_connections"].as_u64()), (Some(0), Some(0)), "{v}");
    let m = common::admin::wait_for(server.metrics.unwrap(), "the warm-up's echoes", |m| {
        common::admin::sum(m, "ricochet_messages_sent_total", &[]) >= counted as f64 + 1500.0
    });
    let sent = common::admin::sum(&m, "ricochet_messages_sent_total", &[]);
    assert!(sent <= 3002.0, "{sent} echoed for 1.5 s at 2000/s");
}

#[test]
fn a_warmup_is_for_echo_mode_only() {
    let out = Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args(["bench", "ws://127.0.0.1:9/", "--mode", "connect", "--warmup", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--warmup applies to --mode echo only") && err.lines().count() == 1, "{err}");
}

#[test]
fn cpu_is_measured_over_the_window_alone() {
    // 1000 connections of 64 KiB take a while to open and to drain; none of
    // it may count against the window: a client thread pinned to one CPU
    // never reports more than that CPU.
    let server = Server::start(&[]);
    let cpu = core_affinity::get_core_ids().unwrap().last().unwrap().id.to_string();
    let (ok, out) =
        bench(&server, &["--connections", "1000", "--size", "64K", "--duration", "1s", "--cpu", &cpu, "--json"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    let secs = v["window_seconds"].as_f64().unwrap();
    assert!((1.0..1.2).contains(&secs), "window {secs} s for --duration 1s");
    let client = v["client_cpu_seconds"].as_f64().unwrap();
    let server_cpu = v["server_cpu_seconds"].as_f64().unwrap();
    assert!(client <= secs, "client CPU {client} s in a {secs} s window on one CPU");
    assert!(client > 0.0 && server_cpu > 0.0, "{v}");
}

#[test]
fn zero_connections_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args(["bench", "ws://127.0.0.1:9/", "--connections", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid connections \"0\"") && err.lines().count() == 1, "{err}");
}

#[test]
fn wss_echoes_are_checked_and_resumed_handshakes_counted() {
    let pki = &common::tls::shared().0;
    let server = common::start_tls(&[]);
    let url = format!("wss://127.0.0.1:{}/", server.addr.port());
    let ca = pki.ca_file();
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ricochet"))
            .args(["bench", &url, "--ca", ca.to_str().unwrap(), "--connections", "4", "--duration", "500ms"])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for size in ["20", "70000"] {
        let (code, out, err) = run(&["--size", size, "--pipeline", "2"]);
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(out.contains("0 wrong echoes, 0 missing, 0 failed connections"), "{out}");
    }
    let (code, out, err) = run(&["--mode", "connect", "--resume"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("TLS resumed"), "{out}");
    let (_, out, _) = run(&["--mode", "connect"]);
    assert!(!out.contains("TLS resumed"), "full handshakes only without --resume: {out}");
    // A certificate the client does not trust fails the run.
    let out = Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args(["bench", &url, "--ca", common::tls::Pki::new().ca_file().to_str().unwrap(), "--duration", "200ms"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn deflate_runs_send_compressed_text_and_check_every_echo() {
    let server = Server::start(&["--permessage-deflate"]);
    for size in ["20", "1K", "16K"] {
        let (ok, out) = bench(&server, &["--deflate", "--size", size, "--pipeline", "2"]);
        assert!(ok, "{out}\n{}", server.log());
        assert!(out.contains("0 wrong echoes, 0 missing, 0 failed connections"), "{out}");
    }
    // A server that does not accept the offer fails every handshake.
    let plain = Server::start(&[]);
    let (ok, out) = bench(&plain, &["--deflate", "--size", "1K"]);
    assert!(!ok, "{out}");
    assert!(!out.contains(" 0 failed connections"), "{out}");
}

#[test]
fn a_reader_gone_before_the_report_is_no_panic() {
    let server = Server::start(&[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args(["bench", &server.url(), "--connections", "2", "--duration", "300ms"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The report's reader goes away before anything is written (`| head -0`).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("panicked"), "{:?}: {stderr}", out.status);
}

/// `openssl req -x509`: a self-signed certificate with CA:TRUE, used as the
/// server's own, for `names` (a subjectAltName list); (certificate, key).
fn openssl_self_signed(dir: &std::path::Path, stem: &str, names: &str) -> (String, String) {
    let (cert, key) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}.key")));
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30"])
        .args(["-subj", &format!("/CN={stem}"), "-addext", &format!("subjectAltName={names}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (make deps installs it)");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    (cert.to_str().unwrap().to_string(), key.to_str().unwrap().to_string())
}

#[test]
fn the_certificate_people_make_first_is_trusted_as_its_own_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_self_signed(dir.path(), "server", "DNS:localhost,IP:127.0.0.1");
    let (other, _) = openssl_self_signed(dir.path(), "other", "DNS:other");
    let server = Server::start_raw(&[
        "serve",
        "--shards",
        "1",
        "--no-pin",
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    let tls = server.listeners.iter().find(|l| l.1).expect("a TLS listener").0;
    let run = |url: &str, ca: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_ricochet"))
            .args(["bench", url, "--ca", ca, "--connections", "2", "--duration", "300ms"])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, out) = run(&format!("wss://127.0.0.1:{}/", tls.port()), &cert);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&format!("wss://localhost:{}/", tls.port()), &cert);
    assert_eq!(code, Some(0), "{out}");
    // Another certificate as --ca: refused, and said in words.
    let (code, out) = run(&format!("wss://localhost:{}/", tls.port()), &other);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("the server's certificate was refused: it is a CA certificate"), "{out}");
    assert!(!out.contains("Other(") && !out.contains("OtherError"), "{out}");
}
