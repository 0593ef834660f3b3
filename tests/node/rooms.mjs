// Room members with an independent client: Node's `ws`. The same messages
// and checks as tests/python/rooms.py (see there for the usage), so members
// of both languages can share a room and check each other's messages.
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import WebSocket from "ws";

const [url, name, membersArg, sendersArg] = process.argv.slice(2);
const exclude = process.argv.includes("--exclude-sender");
const tls = url.startsWith("wss://") ? { ca: readFileSync(process.env.RICOCHET_TEST_CA) } : {};
const SPEC = [
  [true, 20, 1],
  [false, 125, 1],
  [true, 126, 1],
  [false, 65536, 1],
  [true, 70000, 3],
  [false, 1 << 20, 4],
  [false, 0, 1],
];
const results = [];
const check = (what, ok, detail = "") => {
  results.push(ok);
  console.log((ok ? "ok   " : "FAIL ") + what + (!ok && detail ? `: ${detail}` : ""));
};

function payload(sender, i) {
  const [text, size] = SPEC[i];
  if (size === 0) return text ? "" : Buffer.alloc(0);
  const prefix = `${sender}:${i}:`;
  if (text) {
    const filler = [..."héllo ✓ "];
    let out = prefix;
    let n = Buffer.byteLength(prefix);
    for (let k = 0; ; k++) {
      const c = filler[k % filler.length];
      const len = Buffer.byteLength(c);
      if (n + len > size) break;
      out += c;
      n += len;
    }
    return out;
  }
  const head = Buffer.from(prefix);
  const body = Buffer.alloc(size - head.length);
  for (let j = 0; j < body.length; j++) body[j] = (j * 31 + i) % 256;
  return Buffer.concat([head, body]);
}

// Messages can arrive before the test says "go" (another process's members
// may start first): they wait here until the member's handler is set.
function open() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 0, ...tls });
    ws.early = [];
    ws.on("message", (m, isBinary) => (ws.handler ? ws.handler(m, isBinary) : ws.early.push([m, isBinary])));
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

function sendAll(ws, me) {
  for (let i = 0; i < SPEC.length; i++) {
    const [text, , frags] = SPEC[i];
    const data = payload(me, i);
    if (frags === 1) {
      ws.send(data, { binary: !text });
      continue;
    }
    // Fragments of one message: `ws` sends each as a frame, FIN on the last.
    const bytes = Buffer.from(data);
    const step = Math.max(1, Math.floor(bytes.length / frags));
    for (let k = 0; k < frags; k++) {
      const end = k < frags - 1 ? (k + 1) * step : bytes.length;
      ws.send(bytes.subarray(k * step, end), { binary: !text, fin: k === frags - 1 });
    }
  }
}

function member(ws, me, all) {
  const from = all.filter((s) => !(exclude && s === me));
  const want = from.length * SPEC.length;
  return new Promise((resolve) => {
    let got = 0;
    let empty = 0;
    const next = new Map();
    const bad = [];
    const seen = () => [...next.entries()].map(([s, n]) => `${s}:${n}`).join(" ");
    const timer = setTimeout(() => finish(`timed out with ${got} of ${want} (next due: ${seen()}; ${empty} empty)`), 90000);
    const finish = (why) => {
      clearTimeout(timer);
      check(`${me} got ${want} messages whole and in each sender's order`, !why && bad.length === 0, [why, ...bad.slice(0, 5)].filter(Boolean).join("; "));
      check(`${me} got every sender's empty message`, empty === from.length, `${empty} of ${from.length}`);
      check(`${me} heard from every sender`, [...next.keys()].sort().join() === [...from].sort().join(), [...next.keys()].join());
      resolve();
    };
    ws.handler = (m, isBinary) => {
      got++;
      if (m.length === 0) {
        empty++;
      } else {
        const colon1 = m.indexOf(":");
        const colon2 = m.indexOf(":", colon1 + 1);
        const sender = m.subarray(0, colon1).toString();
        const i = Number(m.subarray(colon1 + 1, colon2).toString());
        const due = next.get(sender) ?? 0;
        if (i !== due) bad.push(`${sender} message ${i} came when ${due} was due`);
        next.set(sender, i + 1);
        const expect = payload(sender, i);
        const same = isBinary ? Buffer.compare(m, expect) === 0 : m.toString() === expect;
        if (!same || isBinary !== !SPEC[i][0]) bad.push(`${sender} message ${i} differs (${m.length} bytes)`);
      }
      if (got === want) finish();
    };
    for (const [m, isBinary] of ws.early.splice(0)) ws.handler(m, isBinary);
    ws.on("close", (code) => got < want && finish(`closed with ${code} after ${got} of ${want}`));
    sendAll(ws, me);
  });
}

const names = Array.from({ length: Number(membersArg) }, (_, k) => `${name}${k}`);
const socks = [];
for (const _ of names) socks.push(await open());
console.log("joined");
const rl = createInterface({ input: process.stdin });
const line = await new Promise((resolve) => rl.once("line", resolve));
rl.close();
const all = line.split(" ")[1].split(",");
if (all.length !== Number(sendersArg)) check("the room is as large as said", false, `${all.length} vs ${sendersArg}`);
await Promise.all(socks.map((ws, k) => member(ws, names[k], all)));
for (const ws of socks) ws.close();
const failed = results.filter((r) => !r).length;
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
