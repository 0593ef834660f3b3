//! `--cluster`: rooms across processes through a real `nats-server` (the
//! Debian package), on loopback, with real WebSocket clients
//! (tokio-tungstenite). Three Ricochet processes stand for three hosts.
//!
//! - Every message from every host reaches every member once, whole, in
//!   its sender's order; another room hears nothing; each process publishes
//!   each of its messages once and receives each remote one once.
//! - NATS stopped mid-run: local delivery never stops; remote delivery
//!   comes back within seconds of NATS's return; the drops each process
//!   counted are all missing at the others, and every message missing was
//!   sent while NATS was down or being reconnected to.
//! - A NATS cluster of two (tuning/nats-cluster.conf) with the server a
//!   Ricochet is connected to stopped: delivery goes on through the other.
//! - TLS to NATS, with the operator's CA; NATS down at start (served
//!   locally, linked once it comes) and `--cluster-required`; a message
//!   larger than the server's `max_payload` is refused with 1009.
//!
//! Run by `make test` once per backend (`RICOCHET_TEST_BACKEND`).

mod common;

use common::admin::{scrape, sum, wait_for};
use common::members::{by_sender, check_complete, runtime, wait_for_counts, Member};
use common::nats::{free_port, Nats};
use common::Server;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A Ricochet "host": two shards, rooms, linked through `urls`.
fn host(urls: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--reply", "room", "--shards", "2", "--metrics-listen", "127.0.0.1:0", "--cluster", urls];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn url(s: &Server, path: &str) -> String {
    format!("ws://{}{path}", s.addr)
}

fn metrics(s: &Server) -> SocketAddr {
    s.metrics.expect("metrics listener")
}

/// Waits until the host is connected to NATS with `rooms` room subscriptions.
fn linked(s: &Server, rooms: f64) {
    wait_for(metrics(s), "linked to NATS with its rooms subscribed", |m| {
        sum(m, "ricochet_cluster_connected", &[]) == 1.0 && sum(m, "ricochet_cluster_subscriptions", &[]) == rooms
    });
}

fn counter(s: &Server, name: &str, labels: &[&str]) -> u64 {
    sum(&scrape(metrics(s)), name, labels) as u64
}

/// Drops of messages going out of `s` (each one reaches no other host).
fn dropped_out(s: &Server) -> u64 {
    ["queue_full", "disconnected", "too_large"]
        .iter()
        .map(|r| counter(s, "ricochet_cluster_dropped_total", &[&format!("reason=\"{r}\"")]))
        .sum()
}

#[test]
fn every_message_from_every_host_reaches_every_member_once_in_order() {
    const PER_MEMBER: u64 = 40;
    let nats = Nats::start(&[]);
    let hosts: Vec<Server> = (0..3).map(|_| host(&nats.url(), &[])).collect();
    let rt = runtime();
    // A path with a space and a dot: its subject escapes both.
    let room = "/lobby%20one.v1";
    let (mut members, quiet) = rt.block_on(async {
        let mut members = Vec::new();
        let mut quiet = Vec::new();
        for (h, s) in hosts.iter().enumerate() {
            for m in 0..3 {
                members.push(Member::join(&format!("h{h}m{m}"), &url(s, room)).await);
            }
            quiet.push(Member::join(&format!("h{h}q"), &url(s, "/quiet")).await);
        }
        (members, quiet)
    });
    for (h, s) in hosts.iter().enumerate() {
        linked(s, 2.0);
        // Members on both shards of every host (the kernel spreads
        // connections by their addresses: more join until it did), so that
        // remote messages go to two inboxes.
        let on = |shard: &str| sum(&scrape(metrics(s)), "ricochet_room_members", &[shard]);
        let mut n = 3;
        while on("shard=\"0\"") == 0.0 || on("shard=\"1\"") == 0.0 {
            assert!(n < 20, "host {h}: 20 members, all on one shard");
            members.push(rt.block_on(Member::join(&format!("h{h}m{n}"), &url(s, room))));
            n += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let per_host: Vec<u64> =
        (0..3).map(|h| members.iter().filter(|m| m.name.starts_with(&format!("h{h}m"))).count() as u64).collect();
    rt.block_on(async {
        // Everyone publishes at once, interleaved.
        for _ in 0..PER_MEMBER {
            for m in members.iter_mut() {
                m.send_next().await;
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let all: Vec<&Member> = members.iter().collect();
        wait_for_counts(&all, members.len() * PER_MEMBER as usize, Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_millis(300)).await; // anything extra would show now
    });
    let senders: Vec<(String, u64)> = members.iter().map(|m| (m.name.clone(), PER_MEMBER)).collect();
    for m in &members {
        check_complete(&m.name, &m.got(), &senders).unwrap();
    }
    for q in &quiet {
        assert_eq!(q.count(), 0, "{} is in another room and heard {:?}", q.name, q.got().first());
    }
    for (h, s) in hosts.iter().enumerate() {
        let m = scrape(metrics(s));
        // Each message of a member here crossed once, whatever the rooms'
        // sizes elsewhere; each remote message came in once.
        let here = per_host[h];
        let elsewhere: u64 = per_host.iter().sum::<u64>() - here;
        assert_eq!(sum(&m, "ricochet_cluster_published_total", &[]) as u64, here * PER_MEMBER, "{m:?}");
        assert_eq!(sum(&m, "ricochet_cluster_received_total", &[]) as u64, elsewhere * PER_MEMBER, "{m:?}");
        assert_eq!(sum(&m, "ricochet_cluster_dropped_total", &[]), 0.0, "{m:?}");
        assert_eq!(sum(&m, "ricochet_cluster_max_payload_bytes", &[]), 1048576.0);
    }
}

#[test]
fn nats_stopped_mid_run_stops_only_what_crosses_and_every_drop_is_counted() {
    const EVERY: Duration = Duration::from_millis(20);
    const RUN: Duration = Duration::from_secs(6);
    let mut nats = Nats::start(&[]);
    let hosts: Vec<Server> = (0..2).map(|_| host(&nats.url(), &[])).collect();
    let rt = runtime();
    let mut members = rt.block_on(async {
        let mut v = Vec::new();
        for (h, s) in hosts.iter().enumerate() {
            for m in 0..2 {
                v.push((h, Member::join(&format!("h{h}m{m}"), &url(s, "/live")).await));
            }
        }
        v
    });
    for s in &hosts {
        linked(s, 1.0);
    }
    // NATS goes away at 1.5 s and comes back 2 s later, while every member
    // publishes every 20 ms for 6 s.
    let t0 = Instant::now();
    let metrics_of: Vec<SocketAddr> = hosts.iter().map(metrics).collect();
    let outage = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let stopped = Instant::now();
        nats.stop();
        std::thread::sleep(Duration::from_secs(2));
        nats.resume();
        let back = Instant::now();
        // Linked again: every host connected (and subscribed) once more.
        for &m in &metrics_of {
            wait_for(m, "connected again", |s| sum(s, "ricochet_cluster_connected", &[]) == 1.0);
        }
        (nats, stopped, back, Instant::now())
    });
    let sent_at: Vec<Vec<Instant>> = rt.block_on(async {
        let mut times = vec![Vec::new(); members.len()];
        while t0.elapsed() < RUN {
            for (i, (_, m)) in members.iter_mut().enumerate() {
                m.send_next().await;
                times[i].push(Instant::now());
            }
            tokio::time::sleep(EVERY).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await; // the last ones land
        times
    });
    let (_nats, stopped, back, relinked) = outage.join().unwrap();
    assert!(relinked - back < Duration::from_secs(5), "remote delivery took {:?} to come back", relinked - back);
    // Every message missing anywhere was sent from just before the stop to
    // just after every host was linked again.
    let window = (stopped - Duration::from_millis(100), relinked + Duration::from_millis(300));
    let drops: Vec<u64> = hosts.iter().map(dropped_out).collect();
    for (h, m) in &members {
        let got = by_sender(&m.got());
        for (j, (sh, sender)) in members.iter().enumerate() {
            let seqs = got.get(&sender.name).cloned().unwrap_or_default();
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{} got {} out of order or twice", m.name, sender.name);
            let sent = sender.sent();
            if sh == h {
                // Local delivery never stopped.
                assert_eq!(seqs.len() as u64, sent, "{} lost local messages of {}", m.name, sender.name);
                continue;
            }
            let missing: Vec<u64> = (0..sent).filter(|s| seqs.binary_search(s).is_err()).collect();
            for &s in &missing {
                let at = sent_at[j][s as usize];
                assert!(
                    at >= window.0 && at <= window.1,
                    "{} missed {}:{s}, sent {:?} after the start, outside the outage ({:?}..{:?})",
                    m.name,
                    sender.name,
                    at - t0,
                    window.0 - t0,
                    window.1 - t0
                );
            }
            assert_eq!(seqs.last().copied(), Some(sent - 1), "remote delivery of {} did not resume", sender.name);
        }
        // What the other host counted as dropped is missing here, and
        // nothing is missing that was not sent during the outage.
        let other = 1 - h;
        let missing_from_other: u64 = members
            .iter()
            .filter(|(sh, _)| *sh == other)
            .map(|(_, s)| s.sent() - got.get(&s.name).map_or(0, |v| v.len() as u64))
            .sum();
        assert!(
            drops[other] <= missing_from_other,
            "host {other} counted {} drops, but only {missing_from_other} are missing at {}",
            drops[other],
            m.name
        );
        assert!(drops[other] > 0, "NATS was down for 2 s and host {other} dropped nothing it sent");
        eprintln!(
            "{}: {missing_from_other} of host {other}'s messages missing, {} counted as dropped there",
            m.name, drops[other]
        );
    }
    for s in &hosts {
        assert!(counter(s, "ricochet_cluster_reconnects_total", &[]) >= 1);
        assert!(s.log().contains("lost the NATS connection"), "{}", s.log());
        // One line per change of state, not one per message.
        assert!(s.log().lines().filter(|l| l.contains("NATS")).count() <= 4, "{}", s.log());
    }
}

/// tuning/nats-cluster.conf with only the addresses changed: node `name`
/// on `port` (routes on `route`), routed to each of `peers`, monitoring on `http`.
fn cluster_config(
    dir: &std::path::Path,
    name: &str,
    port: u16,
    route: u16,
    peers: &[u16],
    http: u16,
) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/nats-cluster.conf")).unwrap();
    assert!(shipped.contains("server_name: $NATS_SERVER_NAME"));
    let mut out = String::new();
    for l in shipped.lines() {
        let t = l.trim();
        if t.starts_with("nats-route://") {
            if t.starts_with("nats-route://nats1.") {
                for p in peers {
                    out.push_str(&format!("    nats-route://127.0.0.1:{p}\n"));
                }
            }
            continue;
        }
        let l = l
            .replace("listen: 0.0.0.0:4222", &format!("listen: 127.0.0.1:{port}"))
            .replace("listen: 0.0.0.0:6222", &format!("listen: 127.0.0.1:{route}"))
            .replace("http: 0.0.0.0:8222", &format!("http: 127.0.0.1:{http}"));
        out.push_str(&l);
        out.push('\n');
    }
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, out).unwrap();
    path
}

/// Ricochet clients connected to the NATS server whose monitoring port is `http`.
fn ricochet_clients(http: u16) -> usize {
    let r = common::admin::get(SocketAddr::from(([127, 0, 0, 1], http)), "/connz");
    r.body.matches("\"name\": \"ricochet ").count() + r.body.matches("\"name\":\"ricochet ").count()
}

#[test]
fn a_nats_cluster_goes_on_when_one_of_its_servers_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2, r1, r2, m1, m2) = (free_port(), free_port(), free_port(), free_port(), free_port(), free_port());
    let c1 = cluster_config(dir.path(), "nats1", p1, r1, &[r1, r2], m1);
    let c2 = cluster_config(dir.path(), "nats2", p2, r2, &[r1, r2], m2);
    let mut n1 = Nats::with_config(&c1, p1, &[("NATS_SERVER_NAME", "nats1")]);
    let mut n2 = Nats::with_config(&c2, p2, &[("NATS_SERVER_NAME", "nats2")]);
    let both = format!("nats://127.0.0.1:{p1},nats://127.0.0.1:{p2}");
    let hosts: Vec<Server> = (0..3).map(|_| host(&both, &[])).collect();
    let rt = runtime();
    let mut members = rt.block_on(async {
        let mut v = Vec::new();
        for (h, s) in hosts.iter().enumerate() {
            v.push(Member::join(&format!("h{h}"), &url(s, "/game")).await);
        }
        v
    });
    for s in &hosts {
        linked(s, 1.0);
    }
    // The routes carry subscriptions a moment after they are made: a first
    // message from every host, until each reaches everyone.
    rt.block_on(async {
        let t0 = Instant::now();
        loop {
            for m in members.iter_mut() {
                m.send_next().await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let senders: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
            let heard = members.iter().all(|m| {
                let got = by_sender(&m.got());
                senders.iter().all(|s| got.contains_key(s))
            });
            if heard {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(15), "the two NATS servers never routed the rooms");
        }
    });
    // Stop the server that holds Ricochet clients (async-nats picks one of
    // the two at random), so that someone has to move.
    let on1 = ricochet_clients(m1);
    let on2 = ricochet_clients(m2);
    assert_eq!(on1 + on2, 3, "three Ricochet clients on the two servers");
    let movers = if on1 > 0 {
        n1.stop();
        on1
    } else {
        n2.stop();
        on2
    };
    let t0 = Instant::now();
    while hosts.iter().map(|s| counter(s, "ricochet_cluster_reconnects_total", &[])).sum::<u64>() < movers as u64 {
        assert!(t0.elapsed() < Duration::from_secs(10), "the clients of the stopped server never moved");
        std::thread::sleep(Duration::from_millis(20));
    }
    for s in &hosts {
        linked(s, 1.0);
    }
    // Delivery goes on: a round from every host reaches every member.
    let before: Vec<usize> = members.iter().map(Member::count).collect();
    rt.block_on(async {
        for _ in 0..10 {
            for m in members.iter_mut() {
                m.send_next().await;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t0 = Instant::now();
        while members.iter().zip(&before).any(|(m, b)| m.count() < b + 30) && t0.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    for (m, b) in members.iter().zip(&before) {
        let got = m.got();
        let after = &got[*b..];
        let seqs = by_sender(after);
        for s in &members {
            let v = seqs.get(&s.name).cloned().unwrap_or_default();
            let want: Vec<u64> = (s.sent() - 10..s.sent()).collect();
            assert_eq!(v, want, "{} after the stop, from {}", m.name, s.name);
        }
    }
    drop((n1, n2));
}

#[test]
fn nats_over_tls_is_checked_against_the_operators_ca() {
    let (pki, cert, key) = common::tls::shared();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("tls.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{port}\ntls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let _nats = Nats::with_config(&conf, port, &[]);
    let tls_url = format!("tls://127.0.0.1:{port}");
    let ca = pki.ca_file();
    let ca = ca.to_str().unwrap();
    let a = host(&tls_url, &["--cluster-ca", ca]);
    let b = host(&tls_url, &["--cluster-ca", ca]);
    let rt = runtime();
    let (mut ma, mut mb) =
        rt.block_on(async { (Member::join("a", &url(&a, "/s")).await, Member::join("b", &url(&b, "/s")).await) });
    linked(&a, 1.0);
    linked(&b, 1.0);
    rt.block_on(async {
        ma.send_next().await;
        mb.send_next().await;
        wait_for_counts(&[&ma, &mb], 2, Duration::from_secs(10)).await;
    });
    let senders = [("a".to_string(), 1), ("b".to_string(), 1)];
    check_complete("a", &ma.got(), &senders).unwrap();
    check_complete("b", &mb.got(), &senders).unwrap();
    // Without the CA, the server's certificate is refused: no link.
    let c = host(&tls_url, &[]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(counter(&c, "ricochet_cluster_connected", &[]), 0, "linked to a server it cannot verify");
}

#[test]
fn nats_down_at_start_serves_locally_then_links_and_required_refuses_to_start() {
    let port = free_port();
    let down = format!("nats://127.0.0.1:{port}");
    let a = host(&down, &[]);
    assert!(a.log().contains("NATS is not reachable"), "{}", a.log());
    let rt = runtime();
    let mut m = rt.block_on(Member::join("a", &url(&a, "/r")));
    rt.block_on(async {
        m.send_next().await;
        wait_for_counts(&[&m], 1, Duration::from_secs(5)).await;
    });
    assert_eq!(m.count(), 1, "served locally while NATS is down");
    // NATS comes: the process links, and its room reaches another host.
    let _nats = Nats::start_on(port);
    let b = host(&down, &[]);
    let mut mb = rt.block_on(Member::join("b", &url(&b, "/r")));
    linked(&a, 1.0);
    linked(&b, 1.0);
    rt.block_on(async {
        mb.send_next().await;
        wait_for_counts(&[&m], 2, Duration::from_secs(10)).await;
    });
    check_complete("a", &m.got(), &[("a".into(), 1), ("b".into(), 1)]).unwrap();
    // --cluster-required: no NATS, no start, one line.
    let dead = format!("nats://127.0.0.1:{}", free_port());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args(["serve", "--listen", "127.0.0.1:0", "--reply", "room", "--cluster", &dead, "--cluster-required"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a start-up error");
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("cannot connect to NATS at") && last.contains("--cluster-required"), "{err}");
}

#[test]
fn a_room_message_larger_than_natss_max_payload_is_refused_with_1009() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("small.conf");
    std::fs::write(&conf, format!("listen: 127.0.0.1:{port}\nmax_payload: 4096\n")).unwrap();
    let nats = Nats::with_config(&conf, port, &[]);
    let a = host(&nats.url(), &[]);
    let b = host(&nats.url(), &[]);
    let rt = runtime();
    let (mut big, local, remote) = rt.block_on(async {
        (
            Member::join("big", &url(&a, "/x")).await,
            Member::join("local", &url(&a, "/x")).await,
            Member::join("remote", &url(&b, "/x")).await,
        )
    });
    linked(&a, 1.0);
    linked(&b, 1.0);
    assert_eq!(counter(&a, "ricochet_cluster_max_payload_bytes", &[]), 4096);
    use tokio_tungstenite::tungstenite::Message;
    rt.block_on(async {
        // 4095 bytes and the kind byte: exactly max_payload, crosses.
        big.send_raw(Message::binary(vec![b'f'; 4095])).await;
        wait_for_counts(&[&local, &remote], 1, Duration::from_secs(10)).await;
        big.send_raw(Message::binary(vec![b'x'; 4096])).await;
        let t0 = Instant::now();
        while !big.is_closed() && t0.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    assert_eq!(big.close_code(), Some(1009), "the sender of a message too big for NATS");
    for m in [&local, &remote] {
        assert_eq!(
            m.count(),
            1,
            "{} got the message too big for the cluster (a room message reaches all or none)",
            m.name
        );
    }
    // A message too big and a small one behind it in one write (so in one
    // read): the small one goes nowhere either, or receivers would see a
    // gap in the sender's order.
    let mut raw = common::RawClient::connect(a.addr);
    raw.send_raw(common::upgrade_request("/x").as_bytes());
    assert!(raw.read_http_head().starts_with("HTTP/1.1 101 "));
    let mut both = Vec::new();
    let key = [1, 2, 3, 4];
    ricochet::ws::client::encode_masked(&mut both, true, ricochet::ws::frame::OpCode::Binary, &[b'y'; 5000], key);
    ricochet::ws::client::encode_masked(&mut both, true, ricochet::ws::frame::OpCode::Text, b"behind it", key);
    raw.send_raw(&both);
    assert_eq!(raw.expect_close(), Some(1009));
    std::thread::sleep(Duration::from_millis(500));
    for m in [&local, &remote] {
        assert_eq!(m.count(), 1, "{} got what a refused sender sent after the refused message", m.name);
    }
}

#[test]
fn bench_spreads_members_over_linked_servers_and_reports_what_crossed() {
    let nats = Nats::start(&[]);
    let hosts: Vec<Server> = (0..3).map(|_| host(&nats.url(), &[])).collect();
    // The room is subscribed on every host before the bench's members join:
    // a host's first member of a room gets other hosts' messages only once
    // its subscription has reached NATS (docs/cluster.md, "What the
    // counters cannot see"), and the bench publishes right after its joins.
    let rt = runtime();
    let _keep: Vec<Member> = hosts.iter().map(|s| rt.block_on(Member::join("keep", &url(s, "/bench")))).collect();
    for s in &hosts {
        linked(s, 1.0);
    }
    let pids: Vec<String> = hosts.iter().map(|s| s.pid().to_string()).collect();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args(["bench", &url(&hosts[0], "/bench"), "--mode", "room", "--duration", "1s"]);
    for s in &hosts[1..] {
        cmd.args(["--also", &url(s, "/bench")]);
    }
    cmd.args(["--connections", "30", "--publishers", "3", "--rate", "300", "--size", "64"]);
    cmd.args(["--server-pid", &pids.join(",")]);
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("0 wrong, repeated or out of order, 0 missing, 0 failed connections"), "{text}");
    // 30 members over three servers: a third of each message's deliveries
    // are on its publisher's server, two thirds crossed.
    let crossed: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("publish-to-delivery, another server (us)"))
        .and_then(|l| l.rsplit_once('(')?.1.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    let all: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("deliveries"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(crossed * 3, all * 2, "{text}");
    for s in &hosts {
        assert!(counter(s, "ricochet_cluster_published_total", &[]) > 0, "every server had a publisher");
    }
}

#[test]
fn a_token_from_a_file_is_what_nats_checks_and_a_wrong_one_is_said_once() {
    let nats = Nats::start(&["--auth", "s3cret-token"]);
    let dir = tempfile::tempdir().unwrap();
    let (good, bad) = (dir.path().join("good"), dir.path().join("bad"));
    std::fs::write(&good, "s3cret-token\n").unwrap();
    std::fs::write(&bad, "wrong\n").unwrap();
    let a = host(&nats.url(), &["--cluster-token-file", good.to_str().unwrap()]);
    let rt = runtime();
    let _m = rt.block_on(Member::join("a", &url(&a, "/t")));
    linked(&a, 1.0);
    // The token is not on the command line, where `ps` would show it.
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", a.pid())).unwrap();
    assert!(!cmdline.contains("s3cret"), "{cmdline}");
    let b = host(&nats.url(), &["--cluster-token-file", bad.to_str().unwrap()]);
    std::thread::sleep(Duration::from_secs(5)); // two retries, at least
    assert_eq!(counter(&b, "ricochet_cluster_connected", &[]), 0);
    let log = b.log();
    let said = log.lines().filter(|l| l.contains("ERROR async_nats") && l.contains("authorization violation")).count();
    assert_eq!(said, 1, "the client's error once, not at every retry:\n{log}");
    assert!(log.contains("NATS is not reachable"), "{log}");
}

#[test]
fn a_credentials_file_that_is_not_one_stops_the_start_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("ricochet.creds");
    std::fs::write(&creds, "not a credentials file\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args(["serve", "--listen", "127.0.0.1:0", "--reply", "room", "--cluster", "nats://127.0.0.1:1"])
        .arg("--cluster-credentials")
        .arg(&creds)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--cluster-credentials file") && err.contains("ricochet.creds"), "{err}");
}

#[test]
fn the_status_page_shows_the_link_to_nats() {
    let mut nats = Nats::start(&[]);
    let s = host(&nats.url(), &[]);
    let rt = runtime();
    let mut member = rt.block_on(Member::join("a", &url(&s, "/chat")));
    linked(&s, 1.0);
    rt.block_on(member.send_next());
    wait_for(metrics(&s), "one message published to NATS", |m| sum(m, "ricochet_cluster_published_total", &[]) == 1.0);
    let stats = || -> serde_json::Value {
        serde_json::from_str(&common::admin::get(metrics(&s), "/stats.json").body).expect("JSON")
    };
    let c = stats()["cluster"].clone();
    assert_eq!(c["connected"], true, "{c}");
    assert_eq!(c["servers"], serde_json::json!([nats.url()]), "{c}");
    assert_eq!((c["subscriptions"].as_u64(), c["published"].as_u64()), (Some(1), Some(1)), "{c}");
    assert_eq!(c["dropped"]["queue_full"], 0, "{c}");
    assert!(common::admin::get(metrics(&s), "/").body.contains("cluster-section"));
    // NATS gone: the page says so.
    nats.stop();
    let t0 = Instant::now();
    while stats()["cluster"]["connected"] != false {
        assert!(t0.elapsed() < Duration::from_secs(15), "still shown as linked 15 s after NATS stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(member);
}

#[test]
fn without_cluster_the_status_page_has_no_cluster() {
    let s = Server::start(&["--reply", "room", "--metrics-listen", "127.0.0.1:0"]);
    let stats: serde_json::Value =
        serde_json::from_str(&common::admin::get(metrics(&s), "/stats.json").body).expect("JSON");
    assert!(stats["cluster"].is_null(), "{}", stats["cluster"]);
}
