// Load client for bench/many_channels.py: many small channels (rooms), a few members each, one of
// whom publishes once per second. One process holds the members of a contiguous range of channels.
//
//   node many.mjs --target continuity|socketio --url URL --first 0 --channels 625 --members 4
//                 [--prefix bench:many:] [--local-address 127.0.1.3] [--concurrency 200]
//
// Every channel has --members connections, all subscribed; the first of them also publishes on it
// (so a publish is delivered to all --members, itself included: Ably's echo, Socket.IO's
// io.to(room).emit). Both servers are spoken to as in client.mjs: raw Ably protocol v3 in JSON, or
// raw Engine.IO 4 / Socket.IO 5 framing, over a bare `ws` with one JSON.parse per frame; the
// Socket.IO peer (server.mjs) joins a subscriber to the room named in its query and broadcasts
// ("pub", room, data, ack) to that room. Payload "<i> <t_ms> <padding>" (i counts per channel).
//
// Stdout, one JSON object per line: {"event":"ready",...} once every connection is attached, then
// {"event":"result",...}. Stdin: "go SECONDS" (publish for SECONDS: channel c of this process at
// offsets spread evenly over each second), "expect N" (report once every member has N messages),
// "stop" (report now).
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { WebSocket } from "ws";

const { values: opt } = parseArgs({
  options: {
    target: { type: "string", default: "continuity" },
    url: { type: "string" },
    key: { type: "string", default: "bench.key:secret" },
    prefix: { type: "string", default: "bench:many:" },
    first: { type: "string", default: "0" },
    channels: { type: "string", default: "1" },
    members: { type: "string", default: "4" },
    size: { type: "string", default: "64" },
    concurrency: { type: "string", default: "200" },
    samples: { type: "string", default: "20000" },
    "local-address": { type: "string", default: "" },
  },
});

const ACTION = { ACK: 1, NACK: 2, CONNECTED: 4, DISCONNECTED: 6, CLOSE: 7, ERROR: 9, ATTACH: 10, ATTACHED: 11,
  DETACHED: 13, MESSAGE: 15 };
const MODE_PUBLISH = 1 << 17;
const MODE_SUBSCRIBE = 1 << 18;
const SIO = opt.target === "socketio";
const FIRST = Number(opt.first); const CHANNELS = Number(opt.channels); const MEMBERS = Number(opt.members);
const PAD = "x".repeat(Math.max(0, Number(opt.size) - 24));

const nowMs = () => performance.timeOrigin + performance.now();
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
// Exit once stdout has taken everything written: a pipe is asynchronous in Node, and exiting on a
// timer cut a large result line (every latency sample) short when the reader was slow under load.
const exitAfterFlush = () => process.stdout.write("", () => setTimeout(() => process.exit(0), 20));
const warn = (...a) => process.stderr.write(`[many ${process.pid}] ${a.join(" ")}\n`);

const lat = { buf: new Float64Array(1 << 16), n: 0 };
function pushLatency(v) {
  if (lat.n === lat.buf.length) { const b = new Float64Array(lat.n * 2); b.set(lat.buf); lat.buf = b; }
  lat.buf[lat.n++] = v;
}
function sampled(max) {
  const all = lat.buf.subarray(0, lat.n).sort();
  const step = Math.max(1, Math.floor(all.length / max));
  const out = [];
  for (let i = 0; i < all.length; i += step) out.push(Math.round(all[i] * 1000) / 1000);
  if (all.length && out[out.length - 1] !== all[all.length - 1]) out.push(all[all.length - 1]);
  return out;
}

let expect = Infinity; let complete = 0; let firstRecv = 0; let lastRecv = 0;
let published = 0; let acked = 0; let nacked = 0; let failed = 0; let publishStart = 0;
let cut = 0; // connections the server closed after they were attached (Continuity: slow consumer)
const members = []; // every connection
const publishers = []; // per channel: its first member

class Member {
  constructor(channel, publisher) {
    this.channel = channel; this.publisher = publisher;
    this.count = 0; this.last = -1; this.gaps = 0; this.dupes = 0; this.ws = null;
    this.msgSerial = 0; this.ackId = 0; this.seq = 0;
  }

  received(data) {
    const sp1 = data.indexOf(" "); const sp2 = data.indexOf(" ", sp1 + 1);
    const i = Number(data.slice(0, sp1)); const t = Number(data.slice(sp1 + 1, sp2 < 0 ? undefined : sp2));
    if (i <= this.last) { this.dupes++; return; }
    if (i !== this.last + 1) this.gaps++;
    this.last = i; this.count++;
    const now = nowMs();
    if (!firstRecv) firstRecv = now;
    lastRecv = now;
    pushLatency(now - t);
    if (this.count === expect && ++complete === members.length) report();
  }

  open() {
    return new Promise((resolve) => {
      const wsOpts = { perMessageDeflate: false };
      if (opt["local-address"]) wsOpts.localAddress = opt["local-address"];
      const u = new URL(opt.url);
      if (SIO) {
        u.protocol = "ws:"; u.pathname = "/socket.io/";
        u.search = `?EIO=4&transport=websocket&role=sub&room=${encodeURIComponent(this.channel)}`;
      } else {
        for (const [k, v] of Object.entries({ key: opt.key, format: "json", v: "3", heartbeats: "true" })) {
          u.searchParams.set(k, v);
        }
      }
      const ws = new WebSocket(u.toString(), wsOpts);
      this.ws = ws;
      let done = false;
      const settle = (ok) => { if (!done) { done = true; if (!ok) failed++; resolve(); } };
      ws.on("error", (e) => { if (!done) warn("connect:", e.message); settle(false); });
      ws.on("close", () => { if (done && expect !== -1) cut++; });
      ws.on("message", SIO ? (raw) => this.onSocketIO(raw.toString(), settle) : (raw) => this.onAbly(raw, settle));
    });
  }

  onAbly(raw, settle) {
    const pm = JSON.parse(raw.toString());
    switch (pm.action) {
      case ACTION.MESSAGE:
        for (const m of pm.messages) this.received(m.data);
        break;
      case ACTION.ACK: acked += pm.count ?? 1; break;
      case ACTION.NACK: nacked += pm.count ?? 1; warn("NACK", JSON.stringify(pm).slice(0, 200)); break;
      case ACTION.CONNECTED: {
        const flags = MODE_SUBSCRIBE | (this.publisher ? MODE_PUBLISH : 0);
        this.ws.send(JSON.stringify({ action: ACTION.ATTACH, channel: this.channel, flags }));
        break;
      }
      case ACTION.ATTACHED: settle(true); break;
      case ACTION.ERROR: case ACTION.DETACHED: case ACTION.DISCONNECTED:
        if (!cut) warn("server said", JSON.stringify(pm).slice(0, 300), "(only the first is shown)");
        settle(false);
        break;
      default:
    }
  }

  onSocketIO(text, settle) {
    const type = text.charCodeAt(0);
    if (type === 52 && text.charCodeAt(1) === 50) { // "42": EVENT ["m", data, offset]
      const args = JSON.parse(text.slice(2));
      if (args[0] === "m") this.received(args[1]);
    } else if (type === 52 && text.charCodeAt(1) === 51) acked++; // "43<id>[]": ACK
    else if (type === 50) this.ws.send("3"); // ping -> pong
    else if (type === 48) this.ws.send("40"); // Engine.IO open -> Socket.IO CONNECT
    else if (type === 52 && text.charCodeAt(1) === 48) settle(true); // CONNECT answered, room joined
    else if (type === 52 && text.charCodeAt(1) === 52) { warn("connect_error", text.slice(0, 200)); settle(false); }
  }

  publish() {
    const payload = `${this.seq++} ${nowMs().toFixed(3)} ${PAD}`;
    if (SIO) this.ws.send(`42${this.ackId++}${JSON.stringify(["pub", this.channel, payload])}`);
    else {
      this.ws.send(JSON.stringify({ action: ACTION.MESSAGE, channel: this.channel, msgSerial: this.msgSerial++,
        messages: [{ name: "t", data: payload }] }));
    }
    published++;
  }
}

let reported = false;
function report() {
  if (reported) return;
  reported = true;
  emit({ event: "result", connections: members.length, received: members.reduce((a, m) => a + m.count, 0),
    complete, gaps: members.reduce((a, m) => a + m.gaps, 0), dupes: members.reduce((a, m) => a + m.dupes, 0),
    published, acked, nacked, cut, publish_start_ms: publishStart, first_recv_ms: firstRecv, last_recv_ms: lastRecv,
    latencies: sampled(Number(opt.samples)) });
  expect = -1;
  for (const m of members) m.ws.terminate();
  exitAfterFlush();
}

// Publish for `seconds`: the k-th publish of this process goes to channel k % CHANNELS at
// start + k * 1000 / CHANNELS ms, so each channel publishes once a second, evenly spread.
function go(seconds) {
  const total = seconds * CHANNELS;
  let k = 0;
  publishStart = nowMs();
  const tick = () => {
    const due = Math.min(total, Math.floor(((nowMs() - publishStart) * CHANNELS) / 1000) + 1);
    for (; k < due; k++) publishers[k % CHANNELS].publish();
    if (k < total) setTimeout(tick, 5);
    else emit({ event: "published", published, publish_seconds: (nowMs() - publishStart) / 1000 });
  };
  tick();
}

async function main() {
  for (let c = 0; c < CHANNELS; c++) {
    const name = `${opt.prefix}${FIRST + c}`;
    for (let j = 0; j < MEMBERS; j++) {
      const m = new Member(name, j === 0);
      members.push(m);
      if (j === 0) publishers.push(m);
    }
  }
  const t0 = nowMs();
  let next = 0;
  const lane = async () => {
    while (next < members.length) await members[next++].open();
  };
  await Promise.all(Array.from({ length: Math.min(Number(opt.concurrency), members.length) }, lane));
  const seconds = (nowMs() - t0) / 1000;
  emit({ event: "ready", connected: members.length - failed, failed, seconds,
    per_s: (members.length - failed) / seconds });
  createInterface({ input: process.stdin }).on("line", (line) => {
    const [cmd, arg] = line.trim().split(/\s+/);
    if (cmd === "go") go(Number(arg));
    else if (cmd === "expect") {
      expect = Number(arg);
      complete = members.filter((m) => m.count >= expect).length;
      if (complete === members.length) report();
    } else if (cmd === "stop") report();
  });
}

for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
process.stdin.on("end", () => setTimeout(() => process.exit(0), 100));
main().catch((e) => { warn("failed:", e?.stack ?? e); process.exit(1); });
