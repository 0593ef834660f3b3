"""Room members with an independent client (Python `websockets`).

Usage: rooms.py URL NAME MEMBERS SENDERS [--exclude-sender]
  URL      ws://127.0.0.1:PORT/room (or wss://, trusting the CA in $RICOCHET_TEST_CA)
  NAME     this process's members are NAME0, NAME1, ...
  MEMBERS  how many members this process opens
  SENDERS  how many members there are in the room in all (every one sends)

Opens the members, prints "joined", waits for a line "go" on stdin, then
every member sends the messages of SPEC (tests/node/rooms.mjs sends the
same ones) and reads until it has every member's (its own too, unless
--exclude-sender): each whole, once, in its sender's order. Prints one
line per check and "N passed, N failed"; exit status 1 on any failure.
"""
import asyncio
import os
import ssl
import sys

from websockets.asyncio.client import connect

URL, NAME, MEMBERS, SENDERS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
EXCLUDE = "--exclude-sender" in sys.argv
TLS = {"ssl": ssl.create_default_context(cafile=os.environ["RICOCHET_TEST_CA"])} if URL.startswith("wss://") else {}
LIMIT = 90
# (text, size in bytes, fragments): the same list in tests/node/rooms.mjs.
SPEC = [
    (True, 20, 1),
    (False, 125, 1),
    (True, 126, 1),
    (False, 65536, 1),
    (True, 70000, 3),
    (False, 1 << 20, 4),
    (False, 0, 1),
]
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(("ok   " if ok else "FAIL ") + name + (f": {detail}" if detail and not ok else ""), flush=True)


def payload(sender, i):
    """Message i of `sender`: its prefix, then filler up to its size."""
    text, size, _ = SPEC[i]
    if size == 0:
        return b"" if not text else ""
    prefix = f"{sender}:{i}:"
    if text:
        out, n, k = [prefix], len(prefix.encode()), 0
        filler = "héllo ✓ "
        while True:
            c = filler[k % len(filler)]
            if n + len(c.encode()) > size:
                break
            out.append(c)
            n += len(c.encode())
            k += 1
        return "".join(out)
    head = prefix.encode()
    return head + bytes((j * 31 + i) % 256 for j in range(size - len(head)))


def pieces(data, n):
    step = max(1, len(data) // n)
    return [data[k * step : (k + 1) * step if k < n - 1 else len(data)] for k in range(n)]


async def member(ws, me, go):
    await go.wait()
    expect_from = [s for s in ALL if not (EXCLUDE and s == me)]
    want = len(expect_from) * len(SPEC)
    got, nxt, bad, empty = 0, {}, [], 0

    async def send_all():
        for i, (_, _, frags) in enumerate(SPEC):
            data = payload(me, i)
            await ws.send(data if frags == 1 else pieces(data, frags))

    async def receive_all():
        nonlocal got, empty
        while got < want:
            try:
                m = await asyncio.wait_for(ws.recv(), LIMIT)
            except Exception as e:
                due = " ".join(f"{s}:{n}" for s, n in sorted(nxt.items()))
                raise RuntimeError(f"{me}: {e!r} with {got} of {want} (next due: {due}; {empty} empty)") from e
            got += 1
            if len(m) == 0:
                empty += 1
                continue
            raw = m.encode() if isinstance(m, str) else m
            sender, i, _ = raw.split(b":", 2)
            sender, i = sender.decode(), int(i)
            if i != nxt.get(sender, 0):
                bad.append(f"{sender} message {i} came when {nxt.get(sender, 0)} was due")
            nxt[sender] = i + 1
            if m != payload(sender, i):
                bad.append(f"{sender} message {i} differs ({len(raw)} bytes)")

    await asyncio.gather(send_all(), receive_all())
    check(f"{me} got {want} messages whole and in each sender's order", not bad, "; ".join(bad[:5]))
    check(f"{me} got every sender's empty message", empty == len(expect_from), f"{empty} of {len(expect_from)}")
    check(f"{me} heard from every sender", sorted(nxt) == sorted(s for s in expect_from), f"{sorted(nxt)}")


async def main():
    names = [f"{NAME}{k}" for k in range(MEMBERS)]
    socks = [await connect(URL, **TLS, max_size=None, ping_interval=None, max_queue=None) for _ in names]
    print("joined", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    # The test says who is in the room: "go NAME,NAME,...".
    global ALL
    ALL = line.split()[1].split(",")
    go = asyncio.Event()
    go.set()
    try:
        await asyncio.gather(*(member(ws, me, go) for ws, me in zip(socks, names)))
    except Exception as e:  # a timeout or a close: say which, as a failure
        check("every member finished", False, repr(e))
    for ws in socks:
        await ws.close()
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)


asyncio.run(main())
