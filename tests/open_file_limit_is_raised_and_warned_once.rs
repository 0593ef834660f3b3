//! At start the soft open-file limit is raised to the hard limit (as Go's
//! runtime and nginx's worker_rlimit_nofile do), and only a
//! --max-connections that was asked for and that the hard limit cannot hold
//! is a warning: the default one is capped by the host, said once at info.

mod common;

use common::Server;
use std::os::unix::process::CommandExt;
use std::process::Command;

const SOFT: u64 = 1024;
const HARD: u64 = 4096;

fn start(extra: &[&str]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--shards", "1", "--no-pin", "--backend", &common::backend()]);
    cmd.args(extra);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            let l = libc::rlimit { rlim_cur: SOFT, rlim_max: HARD };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Server::spawn_logging(&mut cmd, "info")
}

fn open_files_limits(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_string()
}

#[test]
fn the_soft_limit_is_raised_and_the_default_is_no_warning() {
    let server = start(&[]);
    let line = open_files_limits(server.pid());
    let numbers: Vec<&str> = line.split_whitespace().filter(|w| w.parse::<u64>().is_ok()).collect();
    assert_eq!(numbers, [HARD.to_string(), HARD.to_string()], "{line}");
    let log = server.wait_for_log("open file limit");
    let said = log.lines().find(|l| l.contains("open file limit")).unwrap();
    assert!(said.contains("INFO") && said.contains(&format!("{HARD}")), "{said}");
    assert!(!log.contains("WARN"), "{log}");
}

#[test]
fn an_asked_for_limit_the_host_cannot_hold_is_a_warning() {
    let server = start(&["--max-connections", "10000"]);
    let log = server.wait_for_log("open file limit");
    let said = log.lines().find(|l| l.contains("open file limit")).unwrap();
    assert!(said.contains("WARN") && said.contains("--max-connections 10000"), "{said}");
    let server = start(&["--max-connections", "1000"]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!server.log().contains("open file limit"), "{}", server.log());
}
