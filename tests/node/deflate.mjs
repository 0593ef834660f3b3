// permessage-deflate with an independent client: Node's `ws`, compression on
// (its default offer), every message compressed (threshold 0: `ws` would
// otherwise send messages under 1 KiB uncompressed).
//
// Usage: node deflate.mjs ws://127.0.0.1:PORT/   (or wss://, trusting the CA in $RICOCHET_TEST_CA)
// Prints one line per check and "N passed, N failed"; exit status 1 on any failure.
import { readFileSync } from "node:fs";
import WebSocket from "ws";

const url = process.argv[2];
const tls = url.startsWith("wss://") ? { ca: readFileSync(process.env.RICOCHET_TEST_CA) } : {};
const results = [];
const check = (name, ok, detail = "") => {
  results.push(ok);
  console.log((ok ? "ok   " : "FAIL ") + name + (!ok && detail ? `: ${detail}` : ""));
};

function open(perMessageDeflate) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate, maxPayload: 0, ...tls });
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

function echo(ws, data, binary) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timeout")), 60000);
    ws.once("message", (msg, isBinary) => {
      clearTimeout(timer);
      resolve({ msg, isBinary });
    });
    ws.send(data, { binary, compress: true });
  });
}

async function run(name, options) {
  const ws = await open(options);
  check(`${name}: permessage-deflate negotiated`, ws.extensions.startsWith("permessage-deflate"), ws.extensions);
  const text = Array.from({ length: 20000 }, (_, i) => `héllo ${i} ✓ `).join("");
  const cases = [
    ["short text", "Hello", false],
    ["empty text", "", false],
    ["1 KiB text", text.slice(0, 1024), false],
    ["300 KiB text", text.slice(0, 300000), false],
    ["binary", Buffer.from(Array.from({ length: 70000 }, (_, i) => i % 251)), true],
    ["4 MiB of zeros", Buffer.alloc(4 << 20), true],
  ];
  for (const [what, data, binary] of cases) {
    const { msg, isBinary } = await echo(ws, data, binary);
    const same = binary ? Buffer.compare(msg, data) === 0 : msg.toString("utf8") === data;
    check(`${name}: ${what}`, same && isBinary === binary, `got ${msg.length} bytes`);
  }
  await new Promise((resolve) => {
    ws.once("close", (code) => {
      check(`${name}: close handshake`, code === 1000, `code ${code}`);
      resolve();
    });
    ws.close(1000);
  });
}

try {
  await run("default offer", { threshold: 0 });
  await run("server window 10", { threshold: 0, serverMaxWindowBits: 10, clientMaxWindowBits: true });
  await run("server window 9, no client bound", { threshold: 0, serverMaxWindowBits: 9, clientMaxWindowBits: false });
} catch (e) {
  check("no error", false, String(e));
}
const passed = results.filter(Boolean).length;
console.log(`${passed} passed, ${results.length - passed} failed`);
process.exit(passed === results.length && passed > 0 ? 0 : 1);
