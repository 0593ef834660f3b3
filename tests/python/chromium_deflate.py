"""permessage-deflate with a real browser: headless Chromium (Debian's
`chromium`), driven over the DevTools protocol, opens a WebSocket to the
server (Chromium always offers permessage-deflate and compresses every
message) and checks each echo and `ws.extensions`.

Usage: chromium_deflate.py ws://127.0.0.1:PORT/   (wss:// too: Chromium is told
to accept the test certificate)
Prints one line per check and "N passed, N failed"; exit status 1 on any failure.
"""
import asyncio
import json
import sys

from cdp import evaluate
from report import check, finish

URL = sys.argv[1]

# Runs in the page: each case sent, its echo compared; returns what it saw.
PAGE_JS = """
(async (url) => {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error("cannot connect")); });
  const text = Array.from({ length: 20000 }, (_, i) => `héllo ${i} ✓ `).join("");
  const bin = new Uint8Array(70000).map((_, i) => i % 251);
  const cases = [["short text", "Hello"], ["empty text", ""], ["1 KiB text", text.slice(0, 1024)],
                 ["300 KiB text", text.slice(0, 300000)], ["binary", bin], ["1 MiB of zeros", new Uint8Array(1 << 20)]];
  const out = { extensions: ws.extensions, checks: [] };
  for (const [name, data] of cases) {
    const got = await new Promise((ok) => { ws.onmessage = (e) => ok(e.data); ws.send(data); });
    let same;
    if (typeof data === "string") same = got === data;
    else { const g = new Uint8Array(got); same = g.length === data.length && g.every((b, i) => b === data[i]); }
    out.checks.push([name, same, typeof got === "string" ? got.length : got.byteLength]);
  }
  ws.close(1000);
  out.closeCode = await new Promise((ok) => { ws.onclose = (e) => ok(e.code); });
  return out;
})
"""



async def main():
    try:
        seen = await evaluate(f"{PAGE_JS}({json.dumps(URL)})", insecure_tls=URL.startswith("wss://"))
    except RuntimeError as e:
        check("page script ran", False, str(e))
        return
    ext = seen["extensions"]
    check("ws.extensions names permessage-deflate", ext.startswith("permessage-deflate"), ext)
    check("both no_context_takeover answered", "server_no_context_takeover" in ext and "client_no_context_takeover" in ext, ext)
    for name, same, length in seen["checks"]:
        check(f"echo {name}", same, f"got {length}")
    check("close handshake 1000", seen["closeCode"] == 1000, seen["closeCode"])


asyncio.run(main())
finish()
