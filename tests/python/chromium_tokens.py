"""Bearer tokens from a real browser: headless Chromium opens WebSockets to a
server started with --auth-tokens and --subprotocol chat.v1, with the token
as `?access_token=` and as a `bearer.TOKEN` subprotocol entry beside
`chat.v1`, and without one; the first two echo exactly, the last is refused.

Usage: chromium_tokens.py ws://127.0.0.1:PORT/ TOKEN
Prints one line per check and "N passed, N failed"; exit status 1 on any failure.
"""
import asyncio
import json
import sys

from cdp import evaluate
from report import check, finish

URL, TOKEN = sys.argv[1], sys.argv[2]

PAGE_JS = """
(async (url, token) => {
  const attempt = (u, protocols) => new Promise((ok) => {
    const ws = protocols ? new WebSocket(u, protocols) : new WebSocket(u);
    ws.onerror = () => ok({ opened: false });
    ws.onopen = () => {
      ws.onmessage = (e) => { ok({ opened: true, protocol: ws.protocol, echo: e.data }); ws.close(1000); };
      ws.send("token ✓");
    };
  });
  return {
    query: await attempt(url + "?access_token=" + encodeURIComponent(token)),
    subprotocol: await attempt(url, ["bearer." + token, "chat.v1"]),
    none: await attempt(url),
    wrong: await attempt(url + "?access_token=not-" + encodeURIComponent(token)),
  };
})
"""



async def main():
    try:
        seen = await evaluate(f"{PAGE_JS}({json.dumps(URL)}, {json.dumps(TOKEN)})", insecure_tls=URL.startswith("wss://"))
    except RuntimeError as e:
        check("page script ran", False, str(e))
        return
    q, p = seen["query"], seen["subprotocol"]
    check("?access_token= opens and echoes", q.get("opened") and q.get("echo") == "token ✓", q)
    check("bearer. subprotocol entry opens and echoes", p.get("opened") and p.get("echo") == "token ✓", p)
    check("the real subprotocol is the one selected", p.get("protocol") == "chat.v1", p)
    check("no token: refused", not seen["none"]["opened"], seen["none"])
    check("wrong token: refused", not seen["wrong"]["opened"], seen["wrong"])


asyncio.run(main())
finish()
