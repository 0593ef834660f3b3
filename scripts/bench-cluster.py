#!/usr/bin/env python3
"""`make bench-cluster`: rooms across processes linked through NATS, on one
machine (loopback), against rooms in one process.

Starts a real nats-server and three `ricochet serve --cluster` processes of
one shard each (the "hosts"), plus one process without --cluster, all pinned
to the server CPU; `ricochet bench` runs pinned to the load CPU. Prints
Markdown tables (docs/cluster.md keeps the current ones):

1. fan-out, chat and lock-step points, one process against three linked ones: server
   CPU per delivery (the three summed, NATS apart) and publish-to-delivery
   latency for members on the publisher's process and on another one;
2. the bridge's cost per message each way: one publisher on one process at a
   fixed rate, one member on each of the two others; the cluster-bridge
   threads' CPU time from /proc.

Usage: scripts/bench-cluster.py [--backend epoll|uring] [--rounds N]
       [--server-cpu 0] [--load-cpu 1] [--seconds 5]
"""

import argparse
import datetime
import os
import re
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RICOCHET = os.path.join(ROOT, "target", "release", "ricochet")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, limit=10):
    t0 = time.time()
    while time.time() - t0 < limit:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench-cluster: nothing listens on {port}")


def cpu_seconds(pid, task=None):
    """utime + stime of a process (or one of its threads), in seconds."""
    path = f"/proc/{pid}/stat" if task is None else f"/proc/{pid}/task/{task}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bridge_task(pid):
    for t in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{t}/comm") as f:
            if f.read().strip() == "cluster-bridge":
                return t
    sys.exit(f"bench-cluster: process {pid} has no cluster-bridge thread")


class Server:
    def __init__(self, args, cpu, backend):
        cmd = ["taskset", "-c", str(cpu), RICOCHET, "serve", "--listen", "127.0.0.1:0", "--shards", "1",
               "--no-pin", "--backend", backend, "--reply", "room", "--idle-timeout", "0",
               "--metrics-listen", "127.0.0.1:0"] + args
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.p.stdout.readline()
        m = re.match(r"listening on (\S+)", line)
        if not m:
            sys.exit(f"bench-cluster: ricochet did not start: {line!r}")
        self.addr = m.group(1)
        self.metrics = re.match(r"metrics on (\S+)", self.p.stdout.readline()).group(1)

    def dropped(self):
        """Messages the bridge dropped so far, by reason."""
        import urllib.request
        body = urllib.request.urlopen(f"http://{self.metrics}/metrics").read().decode()
        out = {}
        for l in body.splitlines():
            m = re.match(r'ricochet_cluster_dropped_total\{reason="(\w+)"\} (\S+)', l)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out


    def url(self, path):
        return f"ws://{self.addr}{path}"

    def stop(self):
        self.p.terminate()
        self.p.wait()


def dropped_sum(hosts):
    """Drops by reason, summed over `hosts`."""
    total = {}
    for h in hosts:
        for k, v in h.dropped().items():
            total[k] = total.get(k, 0) + v
    return total


def bench(urls, pids, load_cpu, seconds, extra):
    cmd = ["taskset", "-c", str(load_cpu), RICOCHET, "bench", urls[0], "--mode", "room", "--json",
           "--duration", f"{seconds}s", "--cpu", str(load_cpu), "--server-pid", ",".join(map(str, pids))]
    for u in urls[1:]:
        cmd += ["--also", u]
    out = subprocess.run(cmd + extra, capture_output=True, text=True)
    import json
    try:
        r = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        sys.exit(f"bench-cluster: bench failed: {out.stdout}{out.stderr}")
    if r["mismatched_echoes"] or r["missing_echoes"] or r["failed_connections"]:
        r["errors"] = f'{r["mismatched_echoes"]} wrong, {r["missing_echoes"]} missing, {r["failed_connections"]} failed'
    return r


POINTS_ALL = [
    ("fan-out 1:1,000 at 100/s", ["--connections", "1000", "--rooms", "1", "--publishers", "1", "--rate", "100", "--size", "64"]),
    ("fan-out 1:1,000 at 1,000/s", ["--connections", "1000", "--rooms", "1", "--publishers", "1", "--rate", "1000", "--size", "64"]),
    ("chat: 100 rooms of 10, 2,000/s in all", ["--connections", "1000", "--rooms", "100", "--publishers", "1000", "--rate", "2000", "--size", "64"]),
    ("lock step: 100 in one room, closed loop", ["--connections", "100", "--rooms", "1", "--publishers", "100", "--size", "64"]),
]
POINTS = [p for p in POINTS_ALL if not os.environ.get("BENCH_CLUSTER_ONLY") or os.environ["BENCH_CLUSTER_ONLY"] in p[0]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="epoll")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=5)
    a = ap.parse_args()
    nats_port = free_port()
    nats = subprocess.Popen(["taskset", "-c", str(a.server_cpu), "nats-server", "-a", "127.0.0.1", "-p", str(nats_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(nats_port)
    url = f"nats://127.0.0.1:{nats_port}"
    hosts = [Server(["--cluster", url], a.server_cpu, a.backend) for _ in range(3)]
    alone = Server([], a.server_cpu, a.backend)
    try:
        rows = []
        for name, extra in POINTS:
            one, three = [], []
            for _ in range(a.rounds):
                # Alternating: one process, then three linked ones.
                one.append(bench([alone.url("/b")], [alone.p.pid], a.load_cpu, a.seconds, extra))
                n0 = cpu_seconds(nats.pid)
                d0 = dropped_sum(hosts)
                r = bench([h.url("/b") for h in hosts], [h.p.pid for h in hosts], a.load_cpu, a.seconds, extra)
                r["nats_cpu"] = cpu_seconds(nats.pid) - n0
                # The bridges count slow_consumer drops from async-nats'
                # events, which a bridge thread starved on the shared CPU
                # handles late: read them once they had time to arrive (read
                # at once, runs with gaps showed no drops).
                time.sleep(2)
                r["bridge_dropped"] = {k: v - d0.get(k, 0) for k, v in dropped_sum(hosts).items() if v > d0.get(k, 0)}
                three.append(r)
            rows.append((name, one, three))
        # The bridge's cost: one publisher on host 0, members on hosts 1 and 2.
        bridge = []
        for _ in range(a.rounds):
            tasks = [bridge_task(h.p.pid) for h in hosts]
            before = [cpu_seconds(h.p.pid, t) for h, t in zip(hosts, tasks)]
            n0 = cpu_seconds(nats.pid)
            r = bench([h.url("/x") for h in hosts], [h.p.pid for h in hosts], a.load_cpu, a.seconds,
                      ["--connections", "3", "--rooms", "1", "--publishers", "1", "--rate", "20000", "--size", "64"])
            after = [cpu_seconds(h.p.pid, t) for h, t in zip(hosts, tasks)]
            published = r["published"]
            bridge.append((published, after[0] - before[0], (after[1] - before[1] + after[2] - before[2]) / 2,
                           cpu_seconds(nats.pid) - n0, r))
    finally:
        for h in hosts + [alone]:
            h.stop()
        nats.terminate()
        nats.wait()
    med = statistics.median
    cpu = open("/proc/cpuinfo").read()
    model = re.search(r"model name\s*:\s*(.*)", cpu).group(1)
    print(f"Measured {datetime.date.today()} on {model}, backend {a.backend}; servers and nats-server on CPU "
          f"{a.server_cpu}, the load on CPU {a.load_cpu}; {a.rounds} alternating rounds of {a.seconds} s, medians; "
          f"each process one shard. `make bench-cluster`.\n")
    print("| point | processes | deliveries/s | deliveries per server CPU-second | NATS CPU | p50 / p99 same process (ms) | p50 / p99 another process (ms) | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, one, three in rows:
        for label, rs in (("1", one), ("3 + NATS", three)):
            dps = med(r["messages_per_second"] for r in rs)
            per = med(r["messages"] / max(r["server_cpu_seconds"] or 1e-9, 1e-9) for r in rs)
            lat = f'{med(r["latency_us"]["p50"] for r in rs) / 1000:.2f} / {med(r["latency_us"]["p99"] for r in rs) / 1000:.2f}'
            remote = "–"
            nats_cpu = "–"
            if label != "1":
                remote = (f'{med(r["latency_remote_us"]["p50"] for r in rs) / 1000:.2f} / '
                          f'{med(r["latency_remote_us"]["p99"] for r in rs) / 1000:.2f}')
                nats_cpu = f'{100 * med(r["nats_cpu"] / r["window_seconds"] for r in rs):.0f}%'
            errors = "; ".join(r["errors"] for r in rs if "errors" in r) or "none"
            if label != "1":
                dropped = ["+".join(f"{int(v):,} {k}" for k, v in r["bridge_dropped"].items()) for r in rs]
                if any(dropped):
                    errors += f" (messages the bridges counted as dropped, by run: {'; '.join(d or '0' for d in dropped)})"
            print(f"| {name} | {label} | {dps:,.0f} | {per:,.0f} | {nats_cpu} | {lat} | {remote} | {errors} |")
    print()
    print("The bridge, one publisher at 20,000 messages/s of 64 B on process 0, one member on each of processes 1 and 2:\n")
    print("| messages/s published | bridge CPU per message out (µs) | bridge CPU per message in (µs) | messages per bridge CPU-second out / in | NATS CPU per message (µs) |")
    print("| --- | --- | --- | --- | --- |")
    rate = med(b[4]["published"] / b[4]["window_seconds"] for b in bridge)
    out_us = med(b[1] / b[0] * 1e6 for b in bridge)
    in_us = med(b[2] / b[0] * 1e6 for b in bridge)
    nats_us = med(b[3] / b[0] * 1e6 for b in bridge)
    print(f"| {rate:,.0f} | {out_us:.2f} | {in_us:.2f} | {1e6 / out_us:,.0f} / {1e6 / in_us:,.0f} | {nats_us:.2f} |")


if __name__ == "__main__":
    main()
