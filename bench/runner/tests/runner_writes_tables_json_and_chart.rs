//! `ricochet-bench` end to end on a tiny matrix: Ricochet against the raw TCP
//! echo, real servers on 127.0.0.1, real load. Checks what it writes, not how
//! fast anything was (speed belongs in benchmarks, not tests).
//!
//! Needs `ricochet`, `peer-raw-echo` and `peer-tungstenite-rooms` built next to the runner
//! (`make test` builds them; `cargo build -p ricochet -p ricochet-peers`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn runner() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ricochet-bench"))
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_ricochet-bench")).parent().expect("target dir").to_path_buf()
}

#[test]
fn a_tiny_run_writes_json_markdown_svg_and_the_readme_section() {
    let dir = tempfile::tempdir().expect("tempdir");
    let readme = dir.path().join("README.md");
    std::fs::write(&readme, "# x\n\n<!-- bench-summary:start -->\nold\n<!-- bench-summary:end -->\n\nafter\n").unwrap();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    let guide = dir.path().join("docs/performance.md");
    std::fs::write(&guide, "# x\n\n<!-- bench:start -->\nold\n<!-- bench:end -->\n\nafter\n").unwrap();
    let out = runner()
        .args(["--only", "ricochet-epoll,raw-tcp-echo,ricochet-epoll-wss", "--connections", "4", "--sizes", "20,1K"])
        .args(["--tls-sizes", "1K"])
        .args([
            "--pipelined-sizes",
            "20",
            "--pipeline",
            "4",
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
            "--repeat",
            "2",
        ])
        .args(["--latency-loads", "50", "--latency-connections", "4", "--latency-size", "1K", "--storm", "50"])
        .args(["--idle", "20", "--connectors", "2", "--bin-dir"])
        .arg(bin_dir())
        .arg("--out")
        .arg(dir.path().join("results"))
        .arg("--guide")
        .arg(&guide)
        .arg("--summary")
        .arg(&readme)
        .output()
        .expect("runner runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "runner failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));

    let files: Vec<PathBuf> =
        std::fs::read_dir(dir.path().join("results")).unwrap().map(|e| e.unwrap().path()).collect();
    let find = |ext: &str| {
        let main = |p: &&PathBuf| !p.to_string_lossy().ends_with("-latency.svg");
        files.iter().filter(main).find(|p| p.extension().is_some_and(|e| e == ext)).expect(ext).clone()
    };
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(find("json")).unwrap()).unwrap();
    let samples = json["samples"].as_array().unwrap();
    // Idle once, connect twice, 3 echo points x 2 repeats, for Ricochet; the
    // raw echo has no handshake, so only its 6 echo samples.
    let count =
        |server: &str, kind: &str| samples.iter().filter(|s| s["server"] == server && s["kind"] == kind).count();
    assert_eq!(
        (count("ricochet-epoll", "idle"), count("ricochet-epoll", "connect"), count("ricochet-epoll", "echo")),
        (1, 2, 6)
    );
    assert_eq!((count("raw-tcp-echo", "connect"), count("raw-tcp-echo", "echo")), (0, 6));
    // Open loop at 50% of the slower one's saturation, and the storm: twice each, every ws:// server.
    for server in ["ricochet-epoll", "raw-tcp-echo"] {
        assert_eq!((count(server, "rate"), count(server, "storm")), (2, 2), "{server}");
    }
    let offered: Vec<f64> =
        samples.iter().filter(|s| s["kind"] == "rate").map(|s| s["offered"]["rate"].as_f64().unwrap()).collect();
    assert!(offered.iter().all(|&o| o > 0.0 && o == offered[0]), "one rate for every server: {offered:?}");
    assert!(samples.iter().filter(|s| s["kind"] == "storm").all(|s| s["report"]["messages"] == 50));
    // wss://: idle, connect twice (full and resumed handshakes), one echo point twice.
    assert_eq!(
        (
            count("ricochet-epoll-wss", "idle"),
            count("ricochet-epoll-wss", "connect"),
            count("ricochet-epoll-wss", "resume"),
            count("ricochet-epoll-wss", "echo")
        ),
        (1, 2, 2, 2)
    );
    for s in samples.iter().filter(|s| s["kind"] == "resume") {
        let r = &s["report"];
        // Each connector's first handshake is full, every later one resumes.
        let (all, resumed) = (r["messages"].as_u64().unwrap(), r["resumed_handshakes"].as_u64().unwrap());
        assert!(resumed + 2 >= all && resumed > 0, "{all} handshakes, {resumed} resumed: {s}");
    }
    for s in samples {
        assert!(s["error"].is_null(), "sample failed: {s}");
        let r = &s["report"];
        assert!(r["messages"].as_u64().unwrap() > 0 || s["kind"] == "idle", "nothing measured: {s}");
        assert!(r["server_cpu_seconds"].is_number(), "server CPU not read: {s}");
        // CPU is sampled at the window's edges: no share of a pinned thread passes one CPU.
        let secs = r["window_seconds"].as_f64().unwrap();
        assert!(r["server_cpu_seconds"].as_f64().unwrap() <= secs * 1.01, "server CPU over the window: {s}");
    }

    let md = std::fs::read_to_string(find("md")).unwrap();
    for row in ["| 4 | 20 B | 1 |", "| 4 | 1 KiB | 1 |", "| 4 | 20 B | 4 |", "÷ raw-tcp-echo", "| ricochet-epoll |"] {
        assert!(md.contains(row), "no {row:?} in\n{md}");
    }
    assert!(stdout.contains("| 4 | 20 B | 4 |"), "the table is printed too");
    assert!(md.contains("0.3 s per sample after 0.1 s of warm-up"), "the footer names the warm-up:\n{md}");
    assert_eq!(json["warmup_s"], 0.1);
    let tls = md.split("### wss://").nth(1).expect("a wss:// section");
    assert!(tls.contains("| ricochet-epoll-wss |") && tls.contains("| 4 | 1 KiB | 1 |"), "{tls}");
    assert!(tls.contains("resumed handshakes/s") && tls.contains("server CPU per resumed handshake"), "{tls}");
    let svg = std::fs::read_to_string(find("svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("ricochet-epoll") && svg.contains("4 in flight"));

    for section in ["### Latency under fixed load", "**Server CPU per message**", "### Reconnect storm", "| 50% |"] {
        assert!(md.contains(section), "no {section:?} in\n{md}");
    }
    let latency = files.iter().find(|p| p.to_string_lossy().ends_with("-latency.svg")).expect("a latency chart");
    let latency = std::fs::read_to_string(latency).unwrap();
    assert!(latency.starts_with("<svg") && latency.contains("raw-tcp-echo") && latency.contains("p99"));

    let spliced = std::fs::read_to_string(&guide).unwrap();
    assert!(!spliced.contains("old") && spliced.contains("| 4 | 20 B | 4 |") && spliced.ends_with("after\n"));
    assert!(
        spliced.contains("](../results/") && spliced.contains("-latency.svg)"),
        "charts, relative to the page:\n{spliced}"
    );
    // The README's small table: the same run's medians, with its date and CPU.
    let small = std::fs::read_to_string(&readme).unwrap();
    assert!(!small.contains("old") && small.ends_with("after\n"), "{small}");
    assert!(
        small.contains("| 4 × 20 B, 4 in flight |") && small.contains("| ricochet-epoll | raw-tcp-echo |"),
        "{small}"
    );
    assert!(!small.contains("| ricochet-epoll-wss"), "the small table is ws:// only: {small}");
}

#[test]
fn an_unknown_server_name_is_one_line_and_exit_2() {
    let out = runner().args(["--only", "nginx", "--bin-dir"]).arg(bin_dir()).output().expect("runner runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("\"nginx\"") && stderr.contains("ricochet-epoll"), "{stderr}");
}

#[test]
fn a_run_of_the_rooms_alone_writes_the_fan_out_tables_and_leaves_the_echo_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let guide = dir.path().join("performance.md");
    let before = "# x\n\n<!-- bench:start -->\necho tables\n<!-- bench:end -->\n\n\
                  <!-- bench-rooms:start -->\nold\n<!-- bench-rooms:end -->\n\nafter\n";
    std::fs::write(&guide, before).unwrap();
    let out = runner()
        .args(["--only", "ricochet-epoll-rooms,tokio-tungstenite-rooms"])
        .args(["--fanout-members", "20", "--fanout-rates", "200", "--chat", "2x3", "--lockstep", "4"])
        .args(["--room-idle", "20", "--room-idle-rooms", "4", "--duration", "300ms", "--repeat", "2", "--bin-dir"])
        .arg(bin_dir())
        .arg("--out")
        .arg(dir.path().join("results"))
        .arg("--guide")
        .arg(&guide)
        .output()
        .expect("runner runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "runner failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let files: Vec<PathBuf> =
        std::fs::read_dir(dir.path().join("results")).unwrap().map(|e| e.unwrap().path()).collect();
    let json = files.iter().find(|p| p.to_string_lossy().ends_with("-rooms.json")).expect("a -rooms.json");
    assert!(!files.iter().any(|p| p.extension().is_some_and(|e| e == "svg")), "no echo chart: {files:?}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let samples = json["samples"].as_array().unwrap();
    // Per server: 3 room points twice, and one idle point in 4 rooms.
    for server in ["ricochet-epoll-rooms", "tokio-tungstenite-rooms"] {
        let of = |kind: &str| samples.iter().filter(|s| s["server"] == server && s["kind"] == kind).count();
        assert_eq!((of("room"), of("idle")), (6, 1), "{server}");
    }
    for s in samples {
        assert!(s["error"].is_null(), "sample failed: {s}");
        assert!(s["room"]["rooms"].as_u64().unwrap() >= 1, "{s}");
    }
    let chat = samples.iter().find(|s| s["kind"] == "room" && s["room"]["rooms"] == 2).expect("the chat point");
    assert_eq!((chat["connections"].as_u64(), chat["room"]["publishers"].as_u64()), (Some(6), Some(6)));
    // Every member of the room checked every message: nothing missing.
    let r = &chat["report"];
    assert!(r["messages"].as_u64().unwrap() > 0 && r["missing_echoes"] == 0, "{chat}");

    let spliced = std::fs::read_to_string(&guide).unwrap();
    assert!(spliced.contains("echo tables"), "the echo tables are left alone:\n{spliced}");
    assert!(!spliced.contains("\nold\n") && spliced.ends_with("after\n"), "{spliced}");
    for row in [
        "| 1 room × 20, 1 publisher at 200/s, 64 B |",
        "| 2 rooms × 3, all publishing, 64 B |",
        "| 1 room × 4, all publishing in lock step, 64 B |",
        "Ricochet ÷ best peer",
        "Server RSS per idle room member",
    ] {
        assert!(spliced.contains(row), "no {row:?} in\n{spliced}");
    }
}
