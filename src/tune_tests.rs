//! The rules against fixed inputs: a fake /proc and /sys tree in a temp dir.

use super::*;
use std::fs;

const GIB: u64 = 1 << 30;

/// A fake tree with every sysctl the audit reads, at stock kernel defaults.
fn stock() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let set = |k: &str, v: &str| {
        let p = sysctl_path(d.path(), k);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, format!("{v}\n")).unwrap();
    };
    for (k, v) in [
        ("net.core.somaxconn", "4096"),
        ("net.ipv4.tcp_max_syn_backlog", "1024"),
        ("net.core.rmem_max", "212992"),
        ("net.core.wmem_max", "212992"),
        ("net.ipv4.tcp_rmem", "4096\t131072\t6291456"),
        ("net.ipv4.tcp_wmem", "4096\t16384\t4194304"),
        ("net.ipv4.tcp_mem", "188964\t251953\t377928"),
        ("net.core.netdev_max_backlog", "1000"),
        ("fs.nr_open", "1048576"),
        ("fs.file-max", "9223372036854775807"),
        ("net.ipv4.ip_local_port_range", "32768\t60999"),
        ("net.ipv4.tcp_tw_reuse", "2"),
        ("net.ipv4.tcp_notsent_lowat", "4294967295"),
        ("net.core.busy_poll", "0"),
        ("net.core.busy_read", "0"),
        ("net.ipv4.tcp_migrate_req", "0"),
        ("kernel.io_uring_disabled", "0"),
        ("net.ipv4.ip_local_reserved_ports", ""),
    ] {
        set(k, v);
    }
    d
}

fn set(d: &tempfile::TempDir, k: &str, v: &str) {
    fs::write(sysctl_path(d.path(), k), format!("{v}\n")).unwrap();
}

fn host(d: &tempfile::TempDir) -> Host {
    Host { root: d.path().to_owned(), nofile: 1024, cpus: 4, page_size: 4096, mem_bytes: 16 * GIB, uring: None }
}

/// A load for a host that runs both the server and the load generator.
fn load(connections: u64, bandwidth: &str, rtt_us: u64) -> Load {
    Load {
        connections,
        bandwidth_bps: parse_rate(bandwidth).unwrap(),
        rtt: Duration::from_micros(rtt_us),
        role: Role::Both,
        listen_ports: vec![8080],
    }
}

fn find<'a>(f: &'a [Finding], key: &str) -> &'a Finding {
    f.iter().find(|x| x.setting == key).unwrap_or_else(|| panic!("no finding for {key}"))
}

#[test]
fn bandwidth_delay_product_worked_examples() {
    // docs/tuning.md: 10 Gb/s x 100 us = 125,000 bytes; 1 Gb/s x 50 ms = 6,250,000 bytes.
    assert_eq!(load(1, "10Gbit", 100).bdp_bytes(), 125_000);
    assert_eq!(load(1, "1Gbit", 50_000).bdp_bytes(), 6_250_000);
    // Without window scaling a window tops out at 65,535 bytes: on a 50 ms
    // path that is 65,535 x 8 / 0.05 = 10.5 Mbit/s, whatever the link.
    let max_rate = 65_535.0 * 8.0 / 0.05;
    assert!((max_rate - 10_485_600.0f64).abs() < 1.0);
}

#[test]
fn rates_parse_in_bits_per_second() {
    assert_eq!(parse_rate("10Gbit"), Some(10e9));
    assert_eq!(parse_rate("100Mbit"), Some(100e6));
    assert_eq!(parse_rate("2.5G"), Some(2.5e9));
    assert_eq!(parse_rate("1Gbps"), Some(1e9));
    assert_eq!(parse_rate("fast"), None);
    assert_eq!(parse_rate("0"), None);
}

#[test]
fn buffers_follow_twice_the_bdp() {
    let d = stock();
    // 1 Gbit x 50 ms: BDP 6.25 MB, 2 x BDP rounded up to 16 MiB.
    let f = audit(&host(&d), &load(1000, "1Gbit", 50_000));
    let r = find(&f, "net.ipv4.tcp_rmem");
    assert_eq!((r.recommended.as_str(), r.status), ("4096 131072 16777216", Status::Raise));
    assert_eq!(r.fix, "sysctl -w net.ipv4.tcp_rmem=\"4096 131072 16777216\"");
    assert_eq!(find(&f, "net.core.rmem_max").recommended, "16777216");
    // 10 Gbit x 100 us: BDP 125 kB; the 6 MiB floor already covers it.
    let f = audit(&host(&d), &load(1000, "10Gbit", 100));
    assert_eq!(find(&f, "net.ipv4.tcp_rmem").status, Status::Ok);
    assert_eq!(find(&f, "net.ipv4.tcp_wmem").status, Status::Raise, "stock wmem max is 4 MiB");
    set(&d, "net.ipv4.tcp_wmem", "4096 16384 6291456");
    let f = audit(&host(&d), &load(1000, "10Gbit", 100));
    assert_eq!(find(&f, "net.ipv4.tcp_wmem").status, Status::Ok);
}

#[test]
fn file_limits_follow_the_connection_count() {
    let d = stock();
    let mut h = host(&d);
    let f = audit(&h, &load(100_000, "1Gbit", 1000));
    let n = find(&f, "RLIMIT_NOFILE");
    assert_eq!((n.recommended.as_str(), n.status), ("101024", Status::Raise));
    assert!(n.fix.contains("LimitNOFILE=101024"));
    assert_eq!(find(&f, "fs.nr_open").status, Status::Ok);
    h.nofile = 200_000;
    let f = audit(&h, &load(100_000, "1Gbit", 1000));
    assert_eq!(find(&f, "RLIMIT_NOFILE").status, Status::Ok);
    let f = audit(&h, &load(2_000_000, "1Gbit", 1000));
    assert_eq!(find(&f, "fs.nr_open").status, Status::Raise);
}

#[test]
fn tcp_mem_budgets_idle_and_busy_connections() {
    let d = stock();
    // 100k connections: 16 KiB each = 1.5625 GiB, plus 1,000 busy x 2 x 125 kB.
    let f = audit(&host(&d), &load(100_000, "10Gbit", 100));
    let m = find(&f, "net.ipv4.tcp_mem");
    let high = (100_000u64 * 16384 + 1000 * 250_000) / 4096;
    assert_eq!(m.recommended, format!("{} {} {}", high / 2, high * 3 / 4, high));
    assert_eq!(m.status, Status::Raise);
    // Never more than half of RAM.
    let f = audit(&host(&d), &load(10_000_000, "10Gbit", 100));
    assert!(find(&f, "net.ipv4.tcp_mem").recommended.ends_with(&(8 * GIB / 4096).to_string()));
}

#[test]
fn listen_queues_and_load_generator_settings() {
    let d = stock();
    let f = audit(&host(&d), &load(1000, "1Gbit", 1000));
    assert_eq!(find(&f, "net.core.somaxconn").status, Status::Ok);
    assert_eq!(find(&f, "net.ipv4.tcp_max_syn_backlog").status, Status::Raise);
    assert_eq!(find(&f, "net.core.netdev_max_backlog").status, Status::Raise);
    // 1,000 connections fit the stock port range; 100,000 do not.
    assert_eq!(find(&f, "net.ipv4.ip_local_port_range").status, Status::Ok);
    assert_eq!(find(&f, "net.ipv4.ip_local_port_range").recommended, "32768 60999", "ok: keep what is there");
    let f = audit(&host(&d), &load(100_000, "1Gbit", 1000));
    assert_eq!(find(&f, "net.ipv4.ip_local_port_range").recommended, "1024 65535");
    assert_eq!(find(&f, "net.ipv4.ip_local_port_range").status, Status::Raise);
    // A mode, not a quantity: 2 (loopback only) and 0 (off) both change to 1.
    assert_eq!(find(&f, "net.ipv4.tcp_tw_reuse").status, Status::Change, "2 (loopback only) -> 1");
    set(&d, "net.ipv4.tcp_tw_reuse", "0");
    let f = audit(&host(&d), &load(1000, "1Gbit", 1000));
    assert_eq!(find(&f, "net.ipv4.tcp_tw_reuse").status, Status::Change);
}

#[test]
fn latency_knobs() {
    let d = stock();
    let f = audit(&host(&d), &load(1000, "1Gbit", 1000));
    assert_eq!(find(&f, "net.ipv4.tcp_notsent_lowat").status, Status::Lower);
    assert_eq!(find(&f, "net.core.busy_poll").status, Status::Ok);
    set(&d, "net.core.busy_poll", "50");
    let f = audit(&host(&d), &load(1000, "1Gbit", 1000));
    assert_eq!(find(&f, "net.core.busy_poll").status, Status::Lower);
}

#[test]
fn io_uring_disabled_is_flagged() {
    let d = stock();
    assert_eq!(find(&audit(&host(&d), &load(1, "1G", 1)), "kernel.io_uring_disabled").status, Status::Ok);
    set(&d, "kernel.io_uring_disabled", "2");
    assert_eq!(find(&audit(&host(&d), &load(1, "1G", 1)), "kernel.io_uring_disabled").status, Status::Lower);
    // A failed probe (a seccomp filter, say) is reported with its reason.
    let mut h = host(&d);
    h.uring = Some(Err("io_uring setup failed (Operation not permitted)".into()));
    let f = audit(&h, &load(1, "1G", 1));
    let p = find(&f, "io_uring (probe)");
    assert_eq!(p.status, Status::Raise);
    assert!(p.current.contains("Operation not permitted"));
    h.uring = Some(Ok(()));
    assert_eq!(find(&audit(&h, &load(1, "1G", 1)), "io_uring (probe)").status, Status::Ok);
}

#[test]
fn cpus_are_reported() {
    let d = stock();
    let f = audit(&host(&d), &load(1, "1G", 1));
    assert_eq!(find(&f, "CPUs available").current, "4");
}

#[test]
fn nic_queues_should_match_cpus() {
    let d = stock();
    for (nic, queues) in [("eth0", 2), ("eth1", 8)] {
        let base = d.path().join("sys/class/net").join(nic);
        fs::create_dir_all(base.join("device")).unwrap();
        for q in 0..queues {
            fs::create_dir_all(base.join(format!("queues/rx-{q}"))).unwrap();
            fs::create_dir_all(base.join(format!("queues/tx-{q}"))).unwrap();
        }
    }
    fs::create_dir_all(d.path().join("sys/class/net/lo/queues/rx-0")).unwrap();
    let f = audit(&host(&d), &load(1, "1G", 1));
    let e0 = find(&f, "nic:eth0 rx queues");
    assert_eq!((e0.current.as_str(), e0.status), ("2", Status::Raise));
    assert!(e0.fix.starts_with("ethtool -L eth0 combined 4"));
    assert_eq!(find(&f, "nic:eth1 rx queues").status, Status::Ok);
    assert!(f.iter().all(|x| x.setting != "nic:lo rx queues"));
}

#[test]
fn missing_sysctls_are_reported_unavailable() {
    let d = tempfile::tempdir().unwrap();
    let f = audit(&host(&d), &load(1, "1G", 1));
    let s = find(&f, "net.core.somaxconn");
    assert_eq!((s.current.as_str(), s.status), ("unavailable", Status::Raise));
}

#[test]
fn apply_writes_the_file_and_the_live_values() {
    let d = stock();
    let h = host(&d);
    let l = load(1000, "1Gbit", 50_000);
    let f = audit(&h, &l);
    let changed = apply(d.path(), &f).expect("tests run as root");
    assert!(changed.iter().any(|(k, _, new)| k == "net.ipv4.tcp_rmem" && new == "4096 131072 16777216"));
    let conf = fs::read_to_string(d.path().join(APPLY_FILE)).unwrap();
    assert!(conf.contains("net.ipv4.tcp_rmem = 4096 131072 16777216"), "{conf}");
    // The live tree now passes every sysctl rule.
    let after = audit(&h, &l);
    let left: Vec<_> = after.iter().filter(|x| x.status != Status::Ok && x.sysctl_value.is_some()).collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn load_generator_advice_is_apart_from_the_servers() {
    let d = stock();
    let server = Load { role: Role::Server, ..load(100_000, "1Gbit", 1000) };
    let f = audit(&host(&d), &server);
    for key in ["net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse"] {
        assert!(!f.iter().any(|x| x.setting == key), "{key} is load generator advice");
    }
    assert!(f.iter().any(|x| x.setting == "net.core.somaxconn"));
    let generator = Load { role: Role::LoadGenerator, ..server.clone() };
    let f = audit(&host(&d), &generator);
    assert!(f.iter().any(|x| x.setting == "net.ipv4.tcp_tw_reuse"));
    assert!(!f.iter().any(|x| x.setting == "net.ipv4.tcp_notsent_lowat"), "server advice");
    // Files and NIC queues matter to both.
    assert!(f.iter().any(|x| x.setting == "RLIMIT_NOFILE"));
}

#[test]
fn widening_the_port_range_reserves_the_listen_ports() {
    let d = stock();
    let l = Load { listen_ports: vec![8080, 9090], ..load(100_000, "1Gbit", 1000) };
    let f = audit(&host(&d), &l);
    assert_eq!(find(&f, "net.ipv4.ip_local_port_range").status, Status::Raise);
    let r = find(&f, "net.ipv4.ip_local_reserved_ports");
    assert_eq!((r.status, r.recommended.as_str()), (Status::Raise, "8080,9090"));
    // Reserved first, so no moment has the wide range without the reservation.
    let pos = |k: &str| f.iter().position(|x| x.setting == k).unwrap();
    assert!(pos("net.ipv4.ip_local_reserved_ports") < pos("net.ipv4.ip_local_port_range"));
    // Existing reservations are kept.
    set(&d, "net.ipv4.ip_local_reserved_ports", "9000-9010,22");
    let r = audit(&host(&d), &l).into_iter().find(|x| x.setting == "net.ipv4.ip_local_reserved_ports").unwrap();
    assert_eq!(r.recommended, "22,8080,9000-9010,9090");
    set(&d, "net.ipv4.ip_local_reserved_ports", "8000-9999");
    let r = audit(&host(&d), &l).into_iter().find(|x| x.setting == "net.ipv4.ip_local_reserved_ports").unwrap();
    assert_eq!(r.status, Status::Ok);
    // A server host whose range does not cover its port needs no reservation;
    // one whose range does, needs it.
    set(&d, "net.ipv4.ip_local_reserved_ports", "");
    let server = Load { role: Role::Server, ..l.clone() };
    let f = audit(&host(&d), &server);
    let r = find(&f, "net.ipv4.ip_local_reserved_ports");
    assert_eq!((r.status, r.recommended.as_str()), (Status::Ok, "(none needed)"));
    set(&d, "net.ipv4.ip_local_port_range", "1024\t65535");
    assert_eq!(find(&audit(&host(&d), &server), "net.ipv4.ip_local_reserved_ports").status, Status::Raise);
}

#[test]
fn apply_reserves_the_port_and_replaces_the_file_whole() {
    let d = stock();
    let h = host(&d);
    let l = load(100_000, "1Gbit", 1000);
    let file = d.path().join(APPLY_FILE);
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, "old contents\n").unwrap();
    apply(d.path(), &audit(&h, &l)).expect("tests run as root");
    assert_eq!(read_sysctl(d.path(), "net.ipv4.ip_local_port_range").as_deref(), Some("1024 65535"));
    assert_eq!(read_sysctl(d.path(), "net.ipv4.ip_local_reserved_ports").as_deref(), Some("8080"));
    let conf = fs::read_to_string(&file).unwrap();
    assert!(!conf.contains("old contents") && conf.ends_with('\n'), "{conf}");
    // sysctl --system loads files in order; the reservation comes before the wide range.
    let reserved = conf.find("net.ipv4.ip_local_reserved_ports = 8080").expect("reservation written");
    assert!(reserved < conf.find("net.ipv4.ip_local_port_range = 1024 65535").unwrap());
    // Nothing but the file is left in the directory (no temporary file).
    let names: Vec<_> = fs::read_dir(file.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![file.file_name().unwrap().to_owned()]);
}

#[test]
fn serve_warns_when_limits_would_cap_it() {
    let d = stock();
    let w = serve_warnings(d.path(), 100_000, 8192, 20_000);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("open file limit 20000") && w[0].contains("--max-connections 100000"));
    assert!(w[1].contains("net.core.somaxconn 4096 caps --backlog 8192"));
    assert!(serve_warnings(d.path(), 1000, 4096, 20_000).is_empty());
}

#[test]
fn json_is_well_formed() {
    let d = stock();
    let l = load(10, "1G", 1000);
    let j = json(&audit(&host(&d), &l), &l);
    assert!(j.starts_with("{\"load\":{\"connections\":10,"));
    assert_eq!(j.matches("\"setting\":").count(), audit(&host(&d), &l).len());
    assert!(j.trim_end().ends_with("]}"));
}
