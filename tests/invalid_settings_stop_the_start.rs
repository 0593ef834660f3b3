//! An invalid setting, from a flag, the environment or the config file,
//! stops the start with one line naming it and exit status 2.

use std::process::Command;

/// Arguments, environment, and the setting the error must name.
type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ricochet")).args(args).envs(env.iter().copied()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn each_bad_value_is_one_line_naming_the_setting() {
    let dir = std::env::temp_dir().join(format!("ricochet-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_file = dir.join("bad.toml");
    std::fs::write(&bad_file, "backlog = \"lots\"\n").unwrap();
    let bad_file = bad_file.to_str().unwrap();
    let cases: Vec<Case> = vec![
        (vec!["serve", "--listen", "nowhere"], vec![], "listen"),
        (vec!["serve", "--shards", "0"], vec![], "shards"),
        (vec!["serve", "--backlog", "-1"], vec![], "backlog"),
        (vec!["serve", "--max-message-size", "12Q"], vec![], "max-message-size"),
        (vec!["serve", "--idle-timeout", "soon"], vec![], "idle-timeout"),
        (vec!["serve", "--reply", "shout"], vec![], "reply"),
        (vec!["serve", "--inflate-pool", "0"], vec![], "inflate-pool"),
        (vec!["serve"], vec![("RICOCHET_PERMESSAGE_DEFLATE", "perhaps")], "RICOCHET_PERMESSAGE_DEFLATE"),
        (vec!["serve", "--path", "ws"], vec![], "path"),
        (vec!["serve"], vec![("RICOCHET_HANDSHAKE_TIMEOUT", "0")], "handshake-timeout"),
        (vec!["serve", "--config", bad_file], vec![], "backlog"),
        (vec!["serve", "--config", "/nonexistent/r.toml"], vec![], "config file"),
        (vec!["serve", "--no-such-flag"], vec![], "--no-such-flag"),
        (vec!["serve", "--allowed-origin", ""], vec![], "allowed-origin"),
        (vec!["serve"], vec![("RICOCHET_ALLOWED_ORIGIN", "")], "allowed-origin"),
        (vec!["serve"], vec![("RICOCHET_NO_PIN", "maybe")], "RICOCHET_NO_PIN"),
        // The useful part of clap's message, which it puts on later lines.
        (vec!["bench"], vec![], "<URL>"),
        (vec!["tune", "--format", "yaml"], vec![], "table, json"),
    ];
    for (args, env, name) in cases {
        let (code, stderr) = run(&args, &env);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(name), "{args:?}: {stderr}");
    }
}

#[test]
fn help_lists_every_setting_with_its_default() {
    let out = Command::new(env!("CARGO_BIN_EXE_ricochet")).args(["serve", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--shards",
        "--no-pin",
        "--backlog",
        "--rcvbuf",
        "--sndbuf",
        "--no-nodelay",
        "--max-connections",
        "--max-message-size",
        "--handshake-timeout",
        "--idle-timeout",
        "--allowed-origin",
        "--allow-missing-origin",
        "--share-port",
        "--tls-listen",
        "--tls-cert",
        "--tls-key",
        "--tls-self-signed",
        "--path",
        "--reply",
        "--permessage-deflate",
        "--inflate-pool",
        "--auth-tokens",
        "--subprotocol",
        "--log-format",
        "--tls-client-ca",
        "--tls-client-auth",
        "--shutdown-grace",
        "--config",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(help.contains("autotuning"), "--help should say why rcvbuf is unset");
    assert!(help.contains("a bare number is seconds"), "--help should say what a bare time means");
}

#[test]
fn boolean_variables_take_1_and_0() {
    // `RICOCHET_NO_PIN=1` is accepted: the start fails only on the bad listen address after it.
    for v in ["1", "0", "true", "false"] {
        let (code, stderr) = run(&["serve", "--listen", "nowhere"], &[("RICOCHET_NO_PIN", v)]);
        assert_eq!(code, 2);
        assert!(stderr.contains("invalid listen"), "RICOCHET_NO_PIN={v}: {stderr}");
    }
}

#[test]
fn a_bare_ricochet_prints_the_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_ricochet")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    for word in ["Usage: ricochet <COMMAND>", "serve", "bench", "tune", "--help"] {
        assert!(text.contains(word), "{word} missing from: {text}");
    }
}

#[test]
fn version_names_the_commit_and_the_features() {
    let out = Command::new(env!("CARGO_BIN_EXE_ricochet")).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    assert!(text.starts_with(&format!("ricochet {} (commit {head}", env!("CARGO_PKG_VERSION"))), "{text}");
    for feature in ["tls (rustls", "permessage-deflate", "io_uring"] {
        assert!(text.contains(feature), "{text}");
    }
}

#[test]
fn every_start_up_failure_is_one_line_saying_where_the_value_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let bad_value = dir.path().join("bad.toml");
    std::fs::write(&bad_value, "# a comment\nshards = 2\nbacklog = \"lots\"\n").unwrap();
    let bad_syntax = dir.path().join("syntax.toml");
    std::fs::write(&bad_syntax, "shards = 2\nlisten = \"0.0.0.0:80\n").unwrap();
    let (bad_value, bad_syntax) = (bad_value.to_str().unwrap(), bad_syntax.to_str().unwrap());
    let cases: Vec<Case> = vec![
        (vec!["serve", "--idle-timeout", "soon"], vec![], "(from --idle-timeout)"),
        (
            vec!["serve"],
            vec![("RICOCHET_HANDSHAKE_TIMEOUT", "0")],
            "(from the environment variable RICOCHET_HANDSHAKE_TIMEOUT)",
        ),
        (vec!["serve", "--config", bad_value], vec![], "bad.toml:3)"),
        // A TOML syntax error names the file, line and column.
        (vec!["serve", "--config", bad_syntax], vec![], "syntax.toml:2:"),
        // An address this host does not have (the documentation range:
        // bind refuses it without a packet sent), after the start's INFO lines.
        (vec!["serve", "--listen", "192.0.2.1:9000", "--shards", "1"], vec![], "192.0.2.1:9000"),
        (
            vec!["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "192.0.2.1:9090", "--shards", "1"],
            vec![],
            "192.0.2.1:9090",
        ),
        (
            vec![
                "serve",
                "--tls-listen",
                "127.0.0.1:0",
                "--tls-cert",
                "/nonexistent.pem",
                "--tls-key",
                "/nonexistent.key",
            ],
            vec![],
            "/nonexistent",
        ),
    ];
    for (args, env, name) in cases {
        let (code, stderr) = run(&args, &env);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("ricochet: ") && stderr.contains(name), "{args:?}: {stderr}");
    }
}
