"""Headless Chromium (Debian's `chromium`) driven over its DevTools protocol:
`evaluate(js)` starts a browser, runs an async JavaScript expression in a
blank page and returns its value. Used by the browser checks of the tests.
"""
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


async def evaluate(expression, insecure_tls=False):
    """The value of `expression` (awaited) in a fresh headless Chromium; raises on a page exception."""
    profile = tempfile.mkdtemp(prefix="ricochet-chromium-")
    args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"]
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
            await cdp.send(json.dumps({
                "id": 1, "method": "Runtime.evaluate",
                "params": {"expression": expression, "awaitPromise": True, "returnByValue": True},
            }))
            while True:
                reply = json.loads(await asyncio.wait_for(cdp.recv(), 120))
                if reply.get("id") == 1:
                    break
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
