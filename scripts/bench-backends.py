#!/usr/bin/env python3
"""epoll against io_uring, one shard pinned to CPU 0, the load generator on CPU 1.

Usage: scripts/bench-backends.py [--duration 4s] [--repeat 3] [--bin target/release/ricochet]
Prints a Markdown table of medians (min-max): msgs/s, server CPU share, and
messages per server CPU-second, for 100 and 1000 connections at 20 B, 1 KiB
and 16 KiB, then server RSS per idle connection (10,000 connections).
Backends alternate within each point so drift hits both alike.
"""
import argparse, os, re, signal, statistics, subprocess, sys, time

p = argparse.ArgumentParser()
p.add_argument("--duration", default="4s")
p.add_argument("--repeat", type=int, default=3)
p.add_argument("--bin", default="target/release/ricochet")
p.add_argument("--idle", type=int, default=10000)
a = p.parse_args()
BACKENDS = ["epoll", "uring"]


def start(backend):
    proc = subprocess.Popen(["taskset", "-c", "0", a.bin, "serve", "--listen", "127.0.0.1:0", "--shards", "1",
                             "--backend", backend], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    m = re.match(r"listening on (\S+)", line)
    if not m:
        sys.exit(f"server did not start: {line!r}")
    return proc, m.group(1)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def bench(addr, pid, extra):
    out = subprocess.run([a.bin, "bench", f"ws://{addr}/", "--cpu", "1", "--server-pid", str(pid)] + extra,
                         capture_output=True, text=True, timeout=300).stdout
    if "0 wrong echoes, 0 missing, 0 failed" not in out:
        sys.exit("bench reported errors:\n" + out)
    return out


def num(pattern, text):
    return float(re.search(pattern, text).group(1))


def fmt(xs, f="{:,.0f}"):
    return f"{f.format(statistics.median(xs))} ({f.format(min(xs))}-{f.format(max(xs))})"


rows = []
for conns in (100, 1000):
    for size in ("20", "1K", "16K"):
        res = {b: {"rate": [], "cpu": [], "per": []} for b in BACKENDS}
        for _ in range(a.repeat):
            for b in BACKENDS:
                proc, addr = start(b)
                out = bench(addr, proc.pid, ["--connections", str(conns), "--size", size, "--duration", a.duration])
                stop(proc)
                res[b]["rate"].append(num(r"throughput\s+(\d+)", out))
                res[b]["cpu"].append(num(r"server CPU\s+\S+ \((\d+)%", out))
                res[b]["per"].append(num(r"per server CPU-second\s+(\d+)", out))
        e, u = res["epoll"], res["uring"]
        ratio = statistics.median(u["per"]) / statistics.median(e["per"])
        rows.append(f"| {conns} | {size} | {fmt(e['rate'])} | {fmt(e['cpu'])} | {fmt(e['per'])} | "
                    f"{fmt(u['rate'])} | {fmt(u['cpu'])} | {fmt(u['per'])} | {ratio:.2f} |")
        print(rows[-1], file=sys.stderr, flush=True)

print("| connections | size | epoll msgs/s | epoll CPU % | epoll msgs per CPU-s | uring msgs/s | uring CPU % | uring msgs per CPU-s | uring/epoll per CPU-s |")
print("|---|---|---|---|---|---|---|---|---|")
print("\n".join(rows))
print()
for b in BACKENDS:
    proc, addr = start(b)
    out = subprocess.run([a.bin, "bench", f"ws://{addr}/", "--mode", "idle", "--connections", str(a.idle),
                          "--duration", "2s", "--server-pid", str(proc.pid)], capture_output=True, text=True).stdout
    stop(proc)
    m = re.search(r"server RSS\s+(\d+) KiB -> (\d+) KiB \((\d+) bytes per connection\)", out)
    print(f"{b}: {a.idle} idle connections: RSS {m.group(1)} KiB -> {m.group(2)} KiB, {m.group(3)} bytes per connection")
