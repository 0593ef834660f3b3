//! Every TLS start-up error is one line naming the file and what is wrong,
//! exit status 2, before any port is taken.

mod common;

use common::tls::Pki;
use std::process::Command;

fn serve(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args(["serve", "--tls-listen", "127.0.0.1:0", "--shards", "1"])
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn each_bad_certificate_or_key_stops_the_start() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("good", &["localhost"]);
    let (_, other_key) = pki.leaf("other", &["localhost"]);
    let dir = &pki.dir;
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let missing = s(&dir.join("missing.pem"));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--tls-cert".into(), missing.clone(), "--tls-key".into(), s(&key)], "cannot read"),
        (vec!["--tls-cert".into(), s(&cert), "--tls-key".into(), missing], "cannot read"),
        (vec!["--tls-cert".into(), s(&empty), "--tls-key".into(), s(&key)], "no PEM certificate"),
        (vec!["--tls-cert".into(), s(&cert), "--tls-key".into(), s(&cert)], "no PEM private key"),
        (vec!["--tls-cert".into(), s(&cert), "--tls-key".into(), s(&other_key)], "does not match"),
        (vec!["--tls-cert".into(), s(&cert)], "in pairs"),
        (vec![], "in pairs"),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stderr) = serve(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    // Certificates without a TLS listener are a mistake too.
    let out = Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args(["serve", "--tls-cert", &s(&cert), "--tls-key", &s(&key)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls-listen"));
}
