//! The files in tuning/ agree with the code and the kernel: every sysctl in
//! the sysctl.d file exists, passes `ricochet tune`'s own rules, and the
//! example config and systemd unit match the server's defaults.

use ricochet::server::config::{ServeArgs, Settings};
use ricochet::tune::{audit, Host, Load, Role, Status};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tuning");

fn sysctl_file() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(format!("{DIR}/sysctl.d/99-ricochet.conf")).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not key = value: {l}"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

#[test]
fn every_sysctl_in_the_file_exists_on_this_kernel() {
    let mut checked = 0;
    for key in sysctl_file().keys() {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        // Checkable where the key's directory is visible (a network namespace
        // may hide some of net.*).
        if path.parent().is_some_and(|p| p.is_dir()) {
            assert!(path.exists(), "{key} does not exist under /proc/sys");
            checked += 1;
        } else {
            eprintln!("cannot check {key}: {} not visible here", path.parent().unwrap().display());
        }
    }
    assert!(checked > 0, "no key could be checked");
}

#[test]
fn the_file_passes_the_audit_for_the_load_it_names() {
    // Fake tree holding exactly the file's values (tcp_mem, left to the
    // audit because it depends on RAM, uses the value its comment gives).
    let dir = tempfile::tempdir().unwrap();
    let mut values = sysctl_file();
    values.insert("net.ipv4.tcp_mem".into(), "505175 757763 1010351".into());
    values.insert("kernel.io_uring_disabled".into(), "0".into());
    for (k, v) in &values {
        let p = dir.path().join("proc/sys").join(k.replace('.', "/"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, v).unwrap();
    }
    let host =
        Host { root: dir.path().into(), nofile: 1_048_576, cpus: 8, page_size: 4096, mem_bytes: 64 << 30, uring: None };
    let load = Load {
        connections: 100_000,
        bandwidth_bps: 10e9,
        rtt: Duration::from_millis(1),
        role: Role::Both,
        listen_ports: vec![8080],
    };
    for f in audit(&host, &load) {
        assert_eq!(f.status, Status::Ok, "{}: file has {}, audit wants {}", f.setting, f.current, f.recommended);
        if f.sysctl_value.is_some() && f.setting != "kernel.io_uring_disabled" {
            assert!(values.contains_key(&f.setting), "{} is audited but not in the file", f.setting);
        }
    }
}

#[test]
fn example_config_is_the_defaults_with_the_admin_listener_on_loopback() {
    let mut from_file =
        Settings::resolve(&ServeArgs { config: Some(format!("{DIR}/ricochet.toml").into()), ..Default::default() })
            .unwrap();
    // Whether a value was written out is not a value: compare the values.
    from_file.listen_set = false;
    from_file.max_connections_set = false;
    // The one departure: the unit and the example turn the admin listener on, privately.
    let defaults =
        Settings::resolve(&ServeArgs { metrics_listen: Some("127.0.0.1:9090".into()), ..Default::default() }).unwrap();
    assert_eq!(Settings::resolve(&ServeArgs::default()).unwrap().metrics_listen, None);
    assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
    // Every setting appears, commented out where its default is "unset".
    let text = std::fs::read_to_string(format!("{DIR}/ricochet.toml")).unwrap();
    for key in [
        "listen",
        "tls-listen",
        "metrics-listen",
        "proxy-protocol",
        "takeover",
        "tls-cert",
        "tls-key",
        "tls-self-signed",
        "tls-client-ca",
        "tls-client-auth",
        "shards",
        "pin",
        "backlog",
        "rcvbuf",
        "sndbuf",
        "nodelay",
        "max-connections",
        "max-connections-per-ip",
        "ipv6-prefix",
        "max-message-rate",
        "max-bytes-per-second",
        "max-message-size",
        "handshake-timeout",
        "idle-timeout",
        "close-timeout",
        "allowed-origin",
        "allow-missing-origin",
        "share-port",
        "path",
        "permessage-deflate",
        "inflate-pool",
        "auth-tokens",
        "subprotocol",
        "log-format",
        "log-messages",
        "reply",
        "shutdown-grace",
        "read-buffer",
        "backend",
        "ring-entries",
        "uring-buffers",
        "uring-buffer-size",
    ] {
        assert!(text.lines().any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} ="))), "{key} missing");
    }
    // And commented: every group of setting lines follows a comment saying what it does.
    let lines: Vec<&str> = text.lines().collect();
    let is_key = |l: &str| {
        let l = l.trim_start_matches("# ");
        l.split(" =").next().is_some_and(|k| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        }) && l.contains(" =")
    };
    for (i, l) in lines.iter().enumerate() {
        if !is_key(l) || l.starts_with('#') {
            continue;
        }
        let mut j = i;
        while j > 0 && is_key(lines[j - 1]) {
            j -= 1;
        }
        assert!(j > 0 && lines[j - 1].starts_with('#'), "{l:?} has no comment above it");
    }
}

#[test]
fn the_file_reserves_the_port_before_widening_the_range() {
    let text = std::fs::read_to_string(format!("{DIR}/sysctl.d/99-ricochet.conf")).unwrap();
    let at = |k: &str| text.find(&format!("\n{k} =")).unwrap_or_else(|| panic!("{k} missing"));
    assert!(at("net.ipv4.ip_local_reserved_ports") < at("net.ipv4.ip_local_port_range"));
}

#[test]
fn systemd_unit_fits_the_config() {
    let unit = std::fs::read_to_string(format!("{DIR}/ricochet.service")).unwrap();
    let get = |k: &str| unit.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(str::trim);
    let defaults = Settings::resolve(&ServeArgs::default()).unwrap();
    let stop: u64 = get("TimeoutStopSec").unwrap().parse().unwrap();
    assert!(Duration::from_secs(stop) > defaults.shutdown_grace, "systemd must outwait the shutdown grace");
    let nofile: usize = get("LimitNOFILE").unwrap().parse().unwrap();
    assert!(nofile > defaults.max_connections);
    assert!(get("ExecStart").unwrap().contains("serve --config /etc/ricochet/ricochet.toml"));
    for line in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing");
    }
}
