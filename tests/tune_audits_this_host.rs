//! `ricochet tune` on the machine running the tests: a well-formed JSON
//! report, an exit status that agrees with it, and one-line errors.

use std::process::Command;

fn tune(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ricochet")).arg("tune").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn json_report_has_every_finding_and_matches_the_exit_status() {
    let (code, stdout, stderr) =
        tune(&["--format", "json", "--connections", "5000", "--bandwidth", "1Gbit", "--rtt", "50ms"]);
    assert!(code == 0 || code == 1, "exit {code}: {stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("valid JSON");
    assert_eq!(v["load"]["connections"], 5000);
    assert_eq!(v["load"]["bdp_bytes"], 6_250_000);
    let findings = v["findings"].as_array().expect("findings array");
    let names: Vec<&str> = findings.iter().map(|f| f["setting"].as_str().unwrap()).collect();
    for key in [
        "net.core.somaxconn",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
        "net.ipv4.tcp_mem",
        "fs.nr_open",
        "RLIMIT_NOFILE",
    ] {
        assert!(names.contains(&key), "no finding for {key}: {names:?}");
    }
    let mut all_ok = true;
    for f in findings {
        for field in ["setting", "current", "recommended", "status", "fix", "why"] {
            assert!(f[field].is_string(), "{field} missing in {f}");
        }
        let status = f["status"].as_str().unwrap();
        assert!(["ok", "raise", "lower"].contains(&status), "{f}");
        assert_eq!(status == "ok", f["fix"].as_str().unwrap().is_empty(), "a fix exactly when not ok: {f}");
        all_ok &= status == "ok";
    }
    assert_eq!(code == 0, all_ok, "exit status disagrees with the findings");
}

#[test]
fn table_shows_the_bdp_and_a_row_per_setting() {
    let (_, stdout, _) = tune(&["--bandwidth", "10Gbit", "--rtt", "100us"]);
    assert!(stdout.starts_with("load: 100000 connections, 10.000 Gbit/s x 100µs RTT -> BDP 125000 bytes"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("net.core.somaxconn")));
}

#[test]
fn bad_values_are_one_line_with_exit_2() {
    for args in [["--bandwidth", "fast"], ["--rtt", "soon"]] {
        let (code, _, stderr) = tune(&args);
        assert_eq!(code, 2, "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&args[0][2..]), "{stderr}");
    }
}

#[test]
fn roles_keep_load_generator_advice_apart() {
    let names = |role: &str| -> Vec<String> {
        let (_, stdout, stderr) = tune(&["--format", "json", "--role", role]);
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
        assert_eq!(v["load"]["role"], role);
        v["findings"].as_array().unwrap().iter().map(|f| f["setting"].as_str().unwrap().to_string()).collect()
    };
    let server = names("server");
    assert!(!server.iter().any(|n| n == "net.ipv4.tcp_tw_reuse" || n == "net.ipv4.ip_local_port_range"), "{server:?}");
    let generator = names("load-generator");
    for key in ["net.ipv4.tcp_tw_reuse", "net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports"] {
        assert!(generator.iter().any(|n| n == key), "{key} missing: {generator:?}");
    }
    assert!(!generator.iter().any(|n| n == "net.core.somaxconn"), "{generator:?}");
    assert!(names("both").len() > server.len());
}
