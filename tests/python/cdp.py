"""Headless Chromium (Debian's `chromium`) driven over its DevTools protocol:
`evaluate(js)` starts a browser, runs an async JavaScript expression in a
blank page (or the page at `url`) and returns its value, optionally saving a
screenshot afterwards. Used by the browser checks of the tests.
"""
import base64
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

from websockets.asyncio.client import connect

CHROMIUM = os.environ.get("RICOCHET_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


async def wait_loaded(cdp, url):
    """Waits until the page shows `url`, fully loaded (an expression run
    earlier would run in the blank page that comes first, and die with it)."""
    deadline = time.monotonic() + 30
    n = 100
    while time.monotonic() < deadline:
        n += 1
        await cdp.send(json.dumps({"id": n, "method": "Runtime.evaluate", "params": {
            "expression": "location.href + ' ' + document.readyState", "returnByValue": True}}))
        while True:
            reply = json.loads(await asyncio.wait_for(cdp.recv(), 30))
            if reply.get("id") == n:
                break
        value = reply.get("result", {}).get("result", {}).get("value", "")
        if value.startswith(url) and value.endswith(" complete"):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not load")


async def evaluate(expression, insecure_tls=False, url="about:blank", screenshot=None):
    """The value of `expression` (awaited) in a fresh headless Chromium on
    `url`; raises on a page exception. With `screenshot`, a PNG of the page
    is written there after the expression."""
    profile = tempfile.mkdtemp(prefix="ricochet-chromium-")
    args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--window-size=1280,1400", "--hide-scrollbars",
            "--remote-debugging-port=0", f"--user-data-dir={profile}", url]
    if insecure_tls:
        args.insert(1, "--ignore-certificate-errors")
    browser = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.monotonic() + 60
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            if time.monotonic() > deadline or browser.poll() is not None:
                raise RuntimeError("Chromium did not start its DevTools endpoint")
            await asyncio.sleep(0.1)
        port = open(port_file).read().split()[0]
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        async with connect(page["webSocketDebuggerUrl"], max_size=None, compression=None) as cdp:
            if url != "about:blank":
                await wait_loaded(cdp, url)
            await cdp.send(json.dumps({
                "id": 1, "method": "Runtime.evaluate",
                "params": {"expression": expression, "awaitPromise": True, "returnByValue": True},
            }))
            while True:
                reply = json.loads(await asyncio.wait_for(cdp.recv(), 120))
                if reply.get("id") == 1:
                    break
            if screenshot:
                await cdp.send(json.dumps({"id": 2, "method": "Page.captureScreenshot", "params": {"format": "png"}}))
                while True:
                    shot = json.loads(await asyncio.wait_for(cdp.recv(), 60))
                    if shot.get("id") == 2:
                        break
                with open(screenshot, "wb") as f:
                    f.write(base64.b64decode(shot["result"]["data"]))
        result = reply["result"]
        if "exceptionDetails" in result:
            raise RuntimeError("page script failed: " + json.dumps(result["exceptionDetails"])[:300])
        return result["result"]["value"]
    finally:
        browser.terminate()
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)
