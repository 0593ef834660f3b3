"""Interop checks with an independent client (Python `websockets`).

Usage: interop.py ws://127.0.0.1:PORT/   (or wss://, verifying the CA in $RICOCHET_TEST_CA)
Prints one line per check and "N passed, N failed"; exit status 1 on any failure.
"""
import asyncio
import os
import ssl
import sys

from websockets.asyncio.client import connect

URL = sys.argv[1]
# wss:// verifies the server against the test CA only (never the system's).
TLS = {"ssl": ssl.create_default_context(cafile=os.environ["RICOCHET_TEST_CA"])} if URL.startswith("wss://") else {}
SIZES = [0, 1, 125, 126, 127, 65535, 65536, 16 * 1024 * 1024]
LIMIT = 60
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(("ok   " if ok else "FAIL ") + name + (f": {detail}" if detail and not ok else ""), flush=True)


async def sizes():
    async with connect(URL, **TLS, max_size=None, ping_interval=None) as ws:
        for n in SIZES:
            data = bytes(i % 251 for i in range(n)) if n < 70000 else bytes(range(256)) * (n // 256)
            await ws.send(data)
            got = await asyncio.wait_for(ws.recv(), LIMIT)
            check(f"binary {n} bytes", got == data, f"got {len(got)} bytes")
            text = ("héllo ✓ " * (n // 8 + 1)).encode()[:n].decode("utf-8", "ignore")
            # A large text frame comes back in pieces as it arrives (so bad
            # UTF-8 can fail fast), and websockets stops reading after 16
            # queued frames: receive while sending, as any streaming echo needs.
            got, _ = await asyncio.wait_for(asyncio.gather(ws.recv(), ws.send(text)), LIMIT)
            check(f"text {len(text.encode())} bytes", got == text, f"got {len(got)} chars")


async def fragmented():
    async with connect(URL, **TLS, max_size=None, ping_interval=None) as ws:
        parts = ["frag", "ment", "ed ✓"]
        await ws.send(parts)  # an iterable is sent as one fragmented message
        got = await asyncio.wait_for(ws.recv(), LIMIT)
        check("fragmented text", got == "".join(parts), repr(got))
        chunks = [b"\x00" * 70000, b"\x01" * 3, b""]
        await ws.send(chunks)
        got = await asyncio.wait_for(ws.recv(), LIMIT)
        check("fragmented binary", got == b"".join(chunks), f"{len(got)} bytes")


async def ping_and_close():
    ws = await connect(URL, **TLS, ping_interval=None)
    latency = await asyncio.wait_for(await ws.ping(b"are you there"), LIMIT)
    check("ping answered", latency >= 0)
    await ws.close(code=4000, reason="done")
    rcvd = ws.protocol.close_rcvd
    check("close handshake echoes the code", rcvd is not None and rcvd.code == 4000, repr(rcvd))


async def concurrent(n=200):
    async def one(i):
        async with connect(URL, **TLS, ping_interval=None) as ws:
            for k in range(10):
                msg = f"conn {i} msg {k}"
                await ws.send(msg)
                if await asyncio.wait_for(ws.recv(), LIMIT) != msg:
                    return False
        return True

    ok = await asyncio.gather(*(one(i) for i in range(n)))
    check(f"{n} concurrent connections", all(ok), f"{ok.count(False)} failed")


async def main():
    for t in (sizes, fragmented, ping_and_close, concurrent):
        try:
            await asyncio.wait_for(t(), 3 * LIMIT)
        except Exception as e:  # a crash in one check is a failure, not the end
            check(t.__name__, False, repr(e))
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


asyncio.run(main())
