"""The status page in a real browser: headless Chromium opens the admin
listener's page, which must show the open WebSocket connections the test
holds, one row per shard, a chart that moves under the test's load, the
backend and uptime, and an echo console whose message comes back with its
round-trip time.

Usage: chromium_status.py http://ADMIN/ OPEN BACKEND [SCREENSHOT.png]
Prints one line per check and "N passed, N failed"; exit status 1 on any failure.
"""
import asyncio
import json
import sys

from cdp import evaluate
from report import check, finish

URL, OPEN, BACKEND = sys.argv[1], int(sys.argv[2]), sys.argv[3]
SHOT = sys.argv[4] if len(sys.argv) > 4 else None

PAGE_JS = """
(async (open) => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const until = async (f, ms) => {
    const t0 = Date.now();
    while (Date.now() - t0 < ms) { const v = f(); if (v) return v; await sleep(100); }
    return null;
  };
  const text = (id) => document.getElementById(id).textContent;
  await until(() => document.readyState === "complete", 10000);
  const openSeen = await until(() => text("websockets-open") === String(open), 15000);
  const canvas = await until(() => document.querySelector("#chart-msgs-0 canvas"), 10000);
  const before = canvas ? canvas.toDataURL() : "";
  await sleep(2500);
  const after = canvas ? canvas.toDataURL() : "";
  const peak = Math.max(0, ...Object.values(window.ricochetSeries).flatMap((s) => s.mi));
  const state = {
    open: text("websockets-open"), openSeen: !!openSeen, rows: document.querySelectorAll("#shards tbody tr").length,
    chartMoved: !!canvas && before !== after, peak, backend: text("backend"), uptime: text("uptime"),
    settings: document.querySelectorAll("#settings tr").length, messagesIn: text("messages-in"),
  };
  document.getElementById("echo-input").value = "console \\u2713";
  document.getElementById("echo-send").click();
  state.echo = await until(() => [...document.querySelectorAll("#echo-log div")]
    .map((d) => d.textContent).find((t) => t.startsWith("echo: console \\u2713")), 10000);
  return state;
})
"""


async def main():
    try:
        seen = await evaluate(f"{PAGE_JS}({OPEN})", url=URL, screenshot=SHOT, insecure_tls=True)
    except RuntimeError as e:
        check("page script ran", False, str(e))
        return
    check(f"shows the {OPEN} open connections", seen["openSeen"], seen)
    check("one row per shard", seen["rows"] == 2, seen)
    check("a chart moves under load", seen["chartMoved"] and seen["peak"] > 0, seen)
    check("messages/s shown", seen["messagesIn"] not in ("", "–", "0"), seen)
    check("backend and uptime shown", seen["backend"].startswith(BACKEND) and seen["uptime"].endswith("s"), seen)
    check("settings shown", seen["settings"] >= 5, seen)
    echo = seen.get("echo") or ""
    check("the console's echo arrives with its round trip", echo.endswith(" ms)") and "(?" not in echo, seen)


asyncio.run(main())
finish()
