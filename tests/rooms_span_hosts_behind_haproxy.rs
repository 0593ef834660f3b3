//! A real HAProxy running the configuration docs/cluster.md ships
//! (`tuning/haproxy-cluster.cfg`: TCP mode, `balance leastconn`, checks on
//! `/healthz`, `send-proxy-v2`) in front of three Ricochet processes with
//! `--proxy-protocol`, their rooms linked through a real `nats-server`.
//! Members joining through HAProxy are spread over the three; every
//! message reaches every member once, in order; when one Ricochet process
//! is killed, its members reconnect through HAProxy to the others and the
//! room goes on.

mod common;

use common::admin::{scrape, sum, wait_for};
use common::haproxy::{wait_up, write_shipped, Haproxy};
use common::members::{by_sender, check_complete, runtime, Member};
use common::nats::{free_port, Nats};
use common::Server;
use std::time::{Duration, Instant};

const ROUND: u64 = 20;

fn members_on(s: &Server) -> f64 {
    sum(&scrape(s.metrics.unwrap()), "ricochet_room_members", &[])
}

#[test]
fn members_behind_haproxy_share_a_room_across_hosts_and_survive_losing_one() {
    let nats = Nats::start(&[]);
    let mut hosts: Vec<Server> = (0..3)
        .map(|_| {
            Server::start(&[
                "--reply",
                "room",
                "--shards",
                "2",
                "--proxy-protocol",
                "--metrics-listen",
                "127.0.0.1:0",
                "--cluster",
                &nats.url(),
            ])
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let front = free_port();
    // The shipped file with only its addresses changed (and an admin socket
    // for the test to read the checks' verdicts).
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/haproxy-cluster.cfg")).unwrap();
    assert!(shipped.contains("balance leastconn") && shipped.contains("send-proxy-v2"));
    let cfg_path = dir.path().join("haproxy.cfg");
    let addrs: Vec<std::net::SocketAddr> = hosts.iter().map(|h| h.addr).collect();
    write_shipped(&shipped, front, &addrs, &socket, &cfg_path);
    let _proxy = Haproxy::start(&cfg_path);
    for name in ["ricochet1", "ricochet2", "ricochet3"] {
        // The checks carry a PROXY header, which --proxy-protocol requires.
        let stat = wait_up(&socket, "ricochet", name);
        assert!(stat.contains(",UP,") && stat.contains("L7OK"), "HAProxy's check of {name} did not pass: {stat}");
    }
    let url = format!("ws://127.0.0.1:{front}/arena");
    let rt = runtime();
    let mut members: Vec<Member> = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..9 {
            v.push(Member::join(&format!("m{i}"), &url).await);
        }
        v
    });
    // leastconn: three on each host.
    for s in &hosts {
        wait_for(s.metrics.unwrap(), "three members and the room subscribed", |m| {
            sum(m, "ricochet_room_members", &[]) == 3.0 && sum(m, "ricochet_cluster_subscriptions", &[]) == 1.0
        });
    }
    let round = |members: &mut Vec<Member>| {
        let before: Vec<usize> = members.iter().map(Member::count).collect();
        let n = members.len();
        rt.block_on(async {
            for _ in 0..ROUND {
                for m in members.iter_mut() {
                    m.send_next().await;
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            let all: Vec<&Member> = members.iter().collect();
            let t0 = Instant::now();
            while all.iter().zip(&before).any(|(m, b)| m.count() < b + n * ROUND as usize)
                && t0.elapsed() < Duration::from_secs(20)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        for (m, b) in members.iter().zip(&before) {
            let got = m.got();
            let seqs = by_sender(&got[*b..]);
            for s in members.iter() {
                let want: Vec<u64> = (s.sent() - ROUND..s.sent()).collect();
                assert_eq!(seqs.get(&s.name).cloned().unwrap_or_default(), want, "{} from {}", m.name, s.name);
            }
            assert_eq!(seqs.len(), members.len(), "{} heard from someone outside the room", m.name);
        }
    };
    round(&mut members);
    let first: Vec<(String, u64)> = members.iter().map(|m| (m.name.clone(), ROUND)).collect();
    check_complete("m0", &members[0].got(), &first).unwrap();

    // One host dies (SIGKILL: no close frames). Its members see their
    // connections end and join again through HAProxy, which sends them to
    // the two left (a refused connection is retried on another host).
    hosts[2].signal(libc::SIGKILL);
    let _ = hosts[2].wait_exit(Duration::from_secs(5));
    let lost = hosts.remove(2);
    let t0 = Instant::now();
    while members.iter().filter(|m| m.is_closed()).count() < 3 {
        assert!(t0.elapsed() < Duration::from_secs(10), "the dead host's members never saw it go");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(lost);
    rt.block_on(async {
        for m in members.iter_mut() {
            if m.is_closed() {
                let name = format!("{}-again", m.name);
                *m = Member::join(&name, &url).await;
            }
        }
    });
    let t0 = Instant::now();
    while hosts.iter().map(members_on).sum::<f64>() < 9.0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "the members never all joined the two hosts left");
        std::thread::sleep(Duration::from_millis(20));
    }
    for s in &hosts {
        assert!(members_on(s) >= 3.0, "a host left got none of the reconnected members");
    }
    // The room goes on: every member, old and reconnected, hears everyone.
    round(&mut members);
}
