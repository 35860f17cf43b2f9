// Load clients for the benchmarks, one implementation for both servers so that the client side
// costs the same whichever server is measured.
//
//   node client.mjs sub    --target continuity|socketio --url URL --n 100
//   node client.mjs pub    --target ... --url URL --rate 500 --seconds 10 [--window 64]
//   node client.mjs resume --target ... --url URL --n 50 --away 3 --rounds 1
//   node client.mjs idle   --target ... --url URL --n 5000 [--channels 10] [--concurrency 200]
//
// Continuity is spoken to as raw Ably protocol v3 in JSON over `ws` (CONNECT query, ATTACH with
// channelSerial, MESSAGE/ACK, resume=connectionKey); Socket.IO through socket.io-client with
// transports: ["websocket"]. Every payload is the same string "<i> <t_ms> <padding>", where t_ms
// is the publisher's wall clock (performance.timeOrigin + performance.now()) just before sending.
//
// Protocol with the orchestrator (bench/harness.py): one JSON object per stdout line; commands
// on stdin, one per line: "expect N" (finish once every subscriber has N messages), "stop"
// (report now and exit), "drop" (idle: cut every transport without a close frame). Progress and
// errors go to stderr.
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { WebSocket } from "ws";
import { io } from "socket.io-client";

const MODE = process.argv[2];
const { values: opt } = parseArgs({
  args: process.argv.slice(3),
  options: {
    target: { type: "string", default: "continuity" },
    url: { type: "string" },
    key: { type: "string", default: "bench.key:secret" },
    channel: { type: "string", default: "bench:fanout" },
    n: { type: "string", default: "1" },
    rate: { type: "string", default: "0" },
    seconds: { type: "string", default: "10" },
    count: { type: "string", default: "0" },
    window: { type: "string", default: "64" },
    size: { type: "string", default: "64" },
    away: { type: "string", default: "3" },
    rounds: { type: "string", default: "1" },
    spread: { type: "string", default: "2" },
    channels: { type: "string", default: "0" },
    concurrency: { type: "string", default: "200" },
    samples: { type: "string", default: "20000" },
    sioclient: { type: "string", default: "raw" },
    // idle: the source address of every connection (e.g. 127.0.1.7): each address has its own
    // ~28k ephemeral ports to the one server port, so 50,000 connections need two or more.
    "local-address": { type: "string", default: "" },
  },
});

const ACTION = { HEARTBEAT: 0, ACK: 1, NACK: 2, CONNECTED: 4, DISCONNECTED: 6, CLOSE: 7, ERROR: 9, ATTACH: 10,
  ATTACHED: 11, DETACHED: 13, MESSAGE: 15 };
const FLAG_RESUMED = 1 << 2;
const MODE_SUBSCRIBE = 1 << 18;
const MODE_PUBLISH = 1 << 17;

const nowMs = () => performance.timeOrigin + performance.now();
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
// Exit once stdout has taken everything written: a pipe is asynchronous in Node, and exiting on a
// timer cut a large result line (every latency sample) short when the reader was slow under load.
const exitAfterFlush = () => process.stdout.write("", () => setTimeout(() => process.exit(0), 20));
const warn = (...args) => process.stderr.write(`[client ${MODE} ${process.pid}] ${args.join(" ")}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function continuityUrl(extra = {}) {
  const u = new URL(opt.url);
  const q = { key: opt.key, format: "json", v: "3", heartbeats: "true", ...extra };
  for (const [k, v] of Object.entries(q)) u.searchParams.set(k, v);
  return u.toString();
}

function parsePayload(data) {
  const sp1 = data.indexOf(" ");
  const sp2 = data.indexOf(" ", sp1 + 1);
  return [Number(data.slice(0, sp1)), Number(data.slice(sp1 + 1, sp2 < 0 ? undefined : sp2))];
}

// ---- a latency sink: every value kept in a growable Float64Array, sampled at the end ----------
class Samples {
  constructor() { this.buf = new Float64Array(1 << 16); this.n = 0; }
  push(v) {
    if (this.n === this.buf.length) {
      const b = new Float64Array(this.buf.length * 2); b.set(this.buf); this.buf = b;
    }
    this.buf[this.n++] = v;
  }
  sampled(max) {
    const all = this.buf.subarray(0, this.n).sort();
    const step = Math.max(1, Math.floor(all.length / max));
    const out = [];
    for (let i = 0; i < all.length; i += step) out.push(Math.round(all[i] * 1000) / 1000);
    if (all.length && out[out.length - 1] !== all[all.length - 1]) out.push(all[all.length - 1]);
    return out;
  }
}

// ---- one subscriber, either server; calls onMessage(i, t_pub) ---------------------------------
class Subscriber {
  constructor(onMessage) {
    this.onMessage = onMessage;
    this.count = 0; this.last = null; this.gaps = 0; this.dupes = 0;
    this.serial = null; this.key = null; this.id = null; this.socket = null; this.ws = null;
  }

  track(i, t) {
    if (this.last !== null) {
      if (i <= this.last) { this.dupes++; return; }
      if (i !== this.last + 1) this.gaps++;
    }
    this.last = i;
    this.count++;
    this.onMessage(this, i, t);
  }

  // Resolves once attached (Continuity: ATTACHED; Socket.IO: connected, the room is joined
  // server-side during the connection handler).
  open({ resume = false, onConnected = () => {}, onAttached = () => {} } = {}) {
    if (opt.target === "socketio") return this.openSocketIO(onConnected);
    return new Promise((resolve, reject) => {
      const extra = resume && this.key ? { resume: this.key } : {};
      const ws = new WebSocket(continuityUrl(extra), { perMessageDeflate: false });
      this.ws = ws;
      ws.on("error", (e) => reject(e));
      ws.on("message", (raw) => {
        const pm = JSON.parse(raw.toString());
        switch (pm.action) {
          case ACTION.MESSAGE:
            if (pm.channelSerial) this.serial = pm.channelSerial;
            for (const m of pm.messages) {
              const [i, t] = parsePayload(m.data);
              this.track(i, t);
            }
            break;
          case ACTION.CONNECTED: {
            const sameId = this.id === null || this.id === pm.connectionId;
            this.id = pm.connectionId;
            this.key = pm.connectionDetails?.connectionKey ?? pm.connectionKey;
            onConnected(sameId);
            const attach = { action: ACTION.ATTACH, channel: opt.channel, flags: MODE_SUBSCRIBE };
            if (this.serial) attach.channelSerial = this.serial;
            ws.send(JSON.stringify(attach));
            break;
          }
          case ACTION.ATTACHED:
            onAttached(Boolean(pm.flags & FLAG_RESUMED) && !pm.error);
            resolve();
            break;
          case ACTION.ERROR: case ACTION.DETACHED: case ACTION.DISCONNECTED:
            warn("server said", JSON.stringify(pm).slice(0, 300));
            break;
          default:
        }
      });
    });
  }

  openSocketIO(onConnected) {
    if (opt.sioclient === "raw") return this.openSocketIORaw(onConnected);
    return new Promise((resolve, reject) => {
      if (this.socket) { // reconnect of an existing socket (resume mode)
        this.socket.io.opts.reconnection = true;
        return;
      }
      const socket = io(opt.url, {
        transports: ["websocket"],
        reconnectionDelay: Number(opt.away) * 1000,
        reconnectionDelayMax: Number(opt.away) * 1000,
        randomizationFactor: 0,
        query: { role: "sub" },
      });
      this.socket = socket;
      socket.on("m", (data) => {
        const [i, t] = parsePayload(data);
        this.track(i, t);
      });
      socket.on("connect", () => {
        onConnected(socket.recovered || this.id === null);
        this.id = socket.id;
        resolve();
      });
      socket.on("connect_error", (e) => reject(e));
    });
  }

  // Socket.IO over a bare `ws`, as the Continuity client is: Engine.IO v4 + Socket.IO v5 framing
  // ("0" open, "40" connect with {pid, offset} for recovery, "42[event,...args,offset]", "2"/"3"
  // ping/pong), so that both servers are fed by clients of the same weight.
  openSocketIORaw(onConnected) {
    return new Promise((resolve, reject) => {
      const u = new URL(opt.url);
      u.protocol = "ws:"; u.pathname = "/socket.io/";
      u.search = "?EIO=4&transport=websocket&role=sub";
      const ws = new WebSocket(u.toString(), { perMessageDeflate: false });
      this.ws = ws;
      ws.on("error", (e) => reject(e));
      ws.on("message", (raw) => {
        const text = raw.toString();
        const type = text.charCodeAt(0);
        if (type === 52 && text.charCodeAt(1) === 50) { // "42": EVENT
          const args = JSON.parse(text.slice(2));
          if (args[0] === "m") {
            this.offset = args[args.length - 1];
            const [i, t] = parsePayload(args[1]);
            this.track(i, t);
          }
        } else if (type === 50) ws.send("3"); // ping -> pong
        else if (type === 48) { // "0": Engine.IO open -> Socket.IO CONNECT, with recovery state
          ws.send(this.pid ? "40" + JSON.stringify({ pid: this.pid, offset: this.offset }) : "40");
        } else if (type === 52 && text.charCodeAt(1) === 48) { // "40": CONNECT answered
          const body = JSON.parse(text.slice(2));
          const recovered = Boolean(this.pid && body.pid === this.pid);
          if (!this.pid || !recovered) this.pid = body.pid;
          this.id = body.sid;
          onConnected(recovered);
          resolve();
        } else if (type === 52 && text.charCodeAt(1) === 52) warn("connect_error", text.slice(0, 200));
      });
    });
  }

  // Cut the transport without a close handshake; the session stays on the server.
  drop() {
    if (opt.target === "socketio" && opt.sioclient === "raw") this.ws.terminate();
    else if (opt.target === "socketio") this.socket.io.engine.close();
    else this.ws.terminate();
  }

  close() {
    if (this.socket) this.socket.disconnect();
    if (this.ws) this.ws.terminate();
  }
}

function onStdin(handler) {
  createInterface({ input: process.stdin }).on("line", (line) => handler(line.trim().split(/\s+/)));
}

// ---- sub: N subscribers, latency of every delivery ----------------------------------------------
async function sub() {
  const n = Number(opt.n);
  const lat = new Samples();
  let expect = Infinity; let firstRecv = 0; let lastRecv = 0; let complete = 0;
  const subs = [];
  let reported = false;
  const report = () => {
    if (reported) return;
    reported = true;
    emit({ event: "result", received: subs.reduce((a, s) => a + s.count, 0), complete,
      gaps: subs.reduce((a, s) => a + s.gaps, 0), dupes: subs.reduce((a, s) => a + s.dupes, 0),
      first_recv_ms: firstRecv, last_recv_ms: lastRecv, latencies: lat.sampled(Number(opt.samples)) });
    for (const s of subs) s.close();
    exitAfterFlush();
  };
  const onMessage = (s, _i, t) => {
    const now = nowMs();
    if (!firstRecv) firstRecv = now;
    lastRecv = now;
    lat.push(now - t);
    if (s.count === expect) { complete++; if (complete === n) report(); }
  };
  onStdin(([cmd, arg]) => {
    if (cmd === "expect") {
      expect = Number(arg);
      complete = subs.filter((s) => s.count >= expect).length;
      if (complete === n) report();
    } else if (cmd === "stop") report();
  });
  // Open in slices so that a 1000-connection worker does not stampede the accept queue.
  for (let k = 0; k < n; k += 100) {
    const batch = [];
    for (let j = k; j < Math.min(n, k + 100); j++) {
      const s = new Subscriber(onMessage); subs.push(s); batch.push(s.open());
    }
    await Promise.all(batch);
  }
  emit({ event: "ready", subscribers: n });
}

// ---- pub: one publisher, paced or max rate, with a window of un-ACKed publishes ----------------
async function pub() {
  const rate = Number(opt.rate); const seconds = Number(opt.seconds); const windowSize = Number(opt.window);
  const pad = "x".repeat(Math.max(0, Number(opt.size) - 24));
  const count = Number(opt.count); // stop after this many (0: no limit)
  const pubChannels = opt.channel.split(","); // Continuity: round-robin over these
  let attached = 0;
  let sent = 0; let acked = 0; let inflight = 0; let stopped = false; let start = 0;
  let sendOne; let finish;
  const done = new Promise((r) => { finish = r; });
  onStdin(([cmd]) => { if (cmd === "stop") stopped = true; });

  if (opt.target === "socketio" && opt.sioclient === "raw") {
    const u = new URL(opt.url);
    u.protocol = "ws:"; u.pathname = "/socket.io/"; u.search = "?EIO=4&transport=websocket&role=pub";
    const ws = new WebSocket(u.toString(), { perMessageDeflate: false });
    await new Promise((resolve, reject) => {
      ws.on("error", reject);
      ws.on("message", (raw) => {
        const text = raw.toString();
        if (text.startsWith("43")) { // ACK: "43<id>[]"
          inflight--; acked++; pump();
        } else if (text === "2") ws.send("3");
        else if (text[0] === "0") ws.send("40");
        else if (text.startsWith("40")) resolve();
      });
    });
    let ackId = 0;
    sendOne = (payload) => ws.send(`42${ackId++}${JSON.stringify(["pub", payload])}`);
    finish.close = () => ws.close();
  } else if (opt.target === "socketio") {
    const socket = io(opt.url, { transports: ["websocket"], query: { role: "pub" } });
    await new Promise((r, j) => { socket.on("connect", r); socket.on("connect_error", j); });
    const onAck = () => { inflight--; acked++; pump(); };
    sendOne = (payload) => socket.emit("pub", payload, onAck);
    finish.close = () => socket.disconnect();
  } else {
    const ws = new WebSocket(continuityUrl({ echo: "false" }), { perMessageDeflate: false });
    await new Promise((resolve, reject) => {
      ws.on("error", reject);
      ws.on("message", (raw) => {
        const pm = JSON.parse(raw.toString());
        if (pm.action === ACTION.CONNECTED) {
          for (const channel of pubChannels) {
            ws.send(JSON.stringify({ action: ACTION.ATTACH, channel, flags: MODE_PUBLISH }));
          }
        } else if (pm.action === ACTION.ATTACHED) { if (++attached === pubChannels.length) resolve(); }
        else if (pm.action === ACTION.ACK || pm.action === ACTION.NACK) {
          if (pm.action === ACTION.NACK) warn("NACK", JSON.stringify(pm).slice(0, 200));
          const c = pm.count ?? 1; inflight -= c; acked += c; pump();
        } else if (pm.action === ACTION.ERROR) warn("server said", JSON.stringify(pm).slice(0, 300));
      });
    });
    let msgSerial = 0;
    sendOne = (payload) => ws.send(JSON.stringify({ action: ACTION.MESSAGE,
      channel: pubChannels[msgSerial % pubChannels.length],
      msgSerial: msgSerial++, messages: [{ name: "t", data: payload }] }));
    // A clean Ably close (CLOSE -> CLOSED) ends the session instead of leaving it detached.
    finish.close = () => ws.send(JSON.stringify({ action: ACTION.CLOSE }));
  }

  let timer = null;
  function pump() {
    if (stopped || (seconds > 0 && nowMs() - start >= seconds * 1000) || (count > 0 && sent >= count)) {
      if (inflight === 0) finish();
      return;
    }
    const due = rate > 0 ? Math.floor(((nowMs() - start) * rate) / 1000) + 1 : Infinity;
    while (inflight < windowSize && sent < due && (count === 0 || sent < count)) {
      sendOne(`${sent} ${nowMs().toFixed(3)} ${pad}`);
      sent++; inflight++;
    }
    if (rate > 0 && timer === null) {
      timer = setTimeout(() => { timer = null; pump(); }, Math.max(1, 1000 / rate));
    }
  }
  emit({ event: "ready" });
  start = nowMs();
  pump();
  // A publisher whose window never drains must still end.
  const guard = setInterval(pump, 50);
  await Promise.race([done, sleep(seconds > 0 ? (seconds + 30) * 1000 : 2 ** 31 - 1)]);
  clearInterval(guard);
  const end = nowMs();
  emit({ event: "result", published: sent, acked, publish_start_ms: start, publish_end_ms: end,
    publish_seconds: (end - start) / 1000 });
  finish.close();
  exitAfterFlush();
}

// ---- resume: each subscriber drops its transport, stays away, resumes; time to caught up ---------
async function resume() {
  const n = Number(opt.n); const rounds = Number(opt.rounds); const away = Number(opt.away) * 1000;
  const spread = Number(opt.spread) * 1000;
  const catchup = []; const reconnect = []; let notResumed = 0; let failed = 0;
  const subs = [];
  // A subscriber is "caught up" once it holds every message published before its CONNECTED:
  // at the first message published after t_connected, catch-up = the arrival of the latest
  // message published before t_connected, minus t_connected (0 if none was missing).
  const onMessage = (s, _i, t) => {
    if (s.tConnected === null) return;
    const now = nowMs();
    if (t < s.tConnected) { s.lastPre = now; return; }
    catchup.push(s.lastPre === null ? 0 : s.lastPre - s.tConnected);
    s.tConnected = null; s.lastPre = null;
    s.roundDone?.();
  };
  for (let k = 0; k < n; k++) {
    const s = new Subscriber(onMessage); s.tConnected = null; s.lastPre = null; subs.push(s);
    await s.open();
  }
  emit({ event: "ready", subscribers: n });
  const cycle = async (s) => {
    await sleep(1000); // let the publisher start
    for (let r = 0; r < rounds; r++) {
      await sleep(Math.random() * spread);
      const roundDone = new Promise((res) => { s.roundDone = res; });
      const tDrop = nowMs();
      s.drop();
      const onConnected = (same) => {
        s.tConnected = nowMs(); s.lastPre = null;
        reconnect.push(s.tConnected - tDrop - away);
        if (!same) notResumed++;
      };
      const onAttached = (resumed) => { if (!resumed) notResumed++; };
      if (opt.target === "socketio" && opt.sioclient !== "raw") {
        s.socket.once("connect", () => onConnected(s.socket.recovered));
      } else {
        await sleep(away);
        try { await s.open({ resume: true, onConnected, onAttached }); } catch (e) { warn(e); failed++; }
      }
      const ok = await Promise.race([roundDone.then(() => true), sleep(away + 30_000).then(() => false)]);
      if (!ok) failed++;
    }
  };
  await Promise.all(subs.map(cycle));
  emit({ event: "result", samples: catchup.length, catchup_ms: catchup, reconnect_ms: reconnect,
    not_resumed: notResumed, failed, gaps: subs.reduce((a, s) => a + s.gaps, 0),
    dupes: subs.reduce((a, s) => a + s.dupes, 0) });
  for (const s of subs) s.close();
  exitAfterFlush();
}

// ---- idle: many connections, optionally attached to channels; connect rate -----------------------
async function idle() {
  const n = Number(opt.n); const channels = Number(opt.channels); const conc = Number(opt.concurrency);
  const conns = []; let failed = 0; let next = 0;
  const openOne = () => new Promise((resolve) => {
    if (opt.target === "socketio") {
      const socket = io(opt.url, { transports: ["websocket"], reconnection: false, query: { role: "idle" } });
      conns.push({ drop: () => socket.io.engine.close(), close: () => socket.disconnect() });
      socket.on("connect", resolve);
      socket.on("connect_error", () => { failed++; resolve(); });
      return;
    }
    const wsOpts = { perMessageDeflate: false };
    if (opt["local-address"]) wsOpts.localAddress = opt["local-address"];
    const ws = new WebSocket(continuityUrl(), wsOpts);
    conns.push({ drop: () => ws.terminate(), close: () => ws.terminate() });
    let attached = 0;
    ws.on("error", () => { failed++; resolve(); });
    ws.on("message", (raw) => {
      const pm = JSON.parse(raw.toString());
      if (pm.action === ACTION.CONNECTED) {
        if (channels === 0) resolve();
        for (let c = 0; c < channels; c++) {
          ws.send(JSON.stringify({ action: ACTION.ATTACH, channel: `bench:idle:${c}`, flags: MODE_SUBSCRIBE }));
        }
      } else if (pm.action === ACTION.ATTACHED) {
        if (++attached === channels) resolve();
      } else if (pm.action === ACTION.ERROR) { failed++; resolve(); }
    });
  });
  const t0 = nowMs();
  let lastReport = t0;
  const lane = async () => {
    while (next < n) {
      next++;
      await openOne();
      if (nowMs() - lastReport > 2000) {
        lastReport = nowMs();
        warn(`${conns.length}/${n} connections`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(conc, n) }, lane));
  const seconds = (nowMs() - t0) / 1000;
  emit({ event: "ready", connected: n - failed, failed, seconds, per_s: (n - failed) / seconds });
  onStdin(([cmd]) => {
    if (cmd === "drop") { for (const c of conns) c.drop(); emit({ event: "dropped" }); }
    if (cmd === "stop") { for (const c of conns) c.close(); exitAfterFlush(); }
  });
}

for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
process.stdin.on("end", () => setTimeout(() => process.exit(0), 100));

const modes = { sub, pub, resume, idle };
if (!modes[MODE]) {
  process.stderr.write("usage: node client.mjs sub|pub|resume|idle --target continuity|socketio --url URL ...\n");
  process.exit(2);
}
modes[MODE]().catch((e) => { warn("failed:", e?.stack ?? e); process.exit(1); });
