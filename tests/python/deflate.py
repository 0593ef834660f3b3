"""permessage-deflate with an independent client (Python `websockets`, whose
client offers compression by default).

Usage: deflate.py ws://127.0.0.1:PORT/   (or wss://, verifying the CA in $RICOCHET_TEST_CA)
Prints one line per check and "N passed, N failed"; exit status 1 on any failure.
"""
import asyncio
import os
import ssl
import sys

from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from report import check, finish

URL = sys.argv[1]
TLS = {"ssl": ssl.create_default_context(cafile=os.environ["RICOCHET_TEST_CA"])} if URL.startswith("wss://") else {}
LIMIT = 60



def payloads():
    text = "".join(f"héllo {i} ✓ " for i in range(20000))
    yield "short text", "Hello"
    yield "empty text", ""
    yield "1 KiB text", text[:1024]
    yield "300 KiB text", text[:300_000]
    yield "binary", bytes(i % 251 for i in range(70000))
    yield "4 MiB of zeros", bytes(4 << 20)


async def echo_all(name, **kw):
    async with connect(URL, **TLS, max_size=None, ping_interval=None, **kw) as ws:
        ext = [type(e).__name__ + repr(vars(e)) for e in ws.protocol.extensions]
        check(f"{name}: permessage-deflate negotiated", len(ws.protocol.extensions) == 1, ext)
        for what, data in payloads():
            # Receive while sending: a large text echo comes back while it arrives.
            got, _ = await asyncio.wait_for(asyncio.gather(ws.recv(), ws.send(data)), LIMIT)
            check(f"{name}: {what}", got == data, f"got {len(got)} of {len(data)}")
        parts = ["frag", "ment", "ed ✓"]
        await ws.send(parts)
        got = await asyncio.wait_for(ws.recv(), LIMIT)
        check(f"{name}: fragmented text", got == "".join(parts), repr(got))
        return ws.protocol.extensions


async def main():
    # The default offer: permessage-deflate; client_max_window_bits.
    await echo_all("default offer")
    # A bounded server window with a client bound: passthrough at 10 bits.
    ext = await echo_all(
        "server window 10",
        extensions=[ClientPerMessageDeflateFactory(server_max_window_bits=10, client_max_window_bits=True)],
    )
    check("server window 10: client window bounded to 10", ext and ext[0].local_max_window_bits == 10, vars(ext[0]) if ext else "")
    # A bounded server window and no client bound: the fallback echo.
    await echo_all(
        "server window 9, no client bound",
        extensions=[ClientPerMessageDeflateFactory(server_max_window_bits=9, client_max_window_bits=None)],
    )
    # Compression off on the client: plain echo as before.
    async with connect(URL, **TLS, compression=None, ping_interval=None) as ws:
        check("no offer: no extension", ws.protocol.extensions == [])
        await ws.send("plain")
        check("no offer: echo", await asyncio.wait_for(ws.recv(), LIMIT) == "plain")


asyncio.run(main())
finish()
