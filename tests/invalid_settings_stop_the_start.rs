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
        (vec!["serve", "--path", "ws"], vec![], "path"),
        (vec!["serve"], vec![("RICOCHET_HANDSHAKE_TIMEOUT", "0")], "handshake-timeout"),
        (vec!["serve", "--config", bad_file], vec![], "backlog"),
        (vec!["serve", "--config", "/nonexistent/r.toml"], vec![], "config file"),
        (vec!["serve", "--no-such-flag"], vec![], "--no-such-flag"),
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
        "--path",
        "--reply",
        "--shutdown-grace",
        "--config",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(help.contains("autotuning"), "--help should say why rcvbuf is unset");
}
