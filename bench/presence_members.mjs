// Presence load for bench/presence.py: `clients` ably-js connections (key auth, no clientId),
// each entering `perClient` members with enterClient, and `observers` connections watching
// every presence event. Prints JSON lines; reads commands on stdin:
//   {cmd: 'status'}   -> {event: 'status', clients: [{i, id, serverId, state}]}
//   {cmd: 'mark'}     -> observers start counting presence events from here
//   {cmd: 'report'}   -> {event: 'report', observers: [{i, serverId, counts, members, syncMs}]}
// A `late` connection attaches after `report` and its get() time and size are reported too.
import * as readline from 'node:readline';
import * as Ably from 'ably';

const config = JSON.parse(process.argv[process.argv.length - 1]);
const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');

function realtime(extra = {}) {
  return new Ably.Realtime({
    key: config.key, endpoint: '127.0.0.1', port: config.port, tls: false,
    disableConnectivityCheck: true, disconnectedRetryTimeout: 300, logLevel: 0,
    // A loaded 2-core machine runs these clients and the cluster: allow slow attaches.
    realtimeRequestTimeout: 30000, ...extra,
  });
}
const serverOf = (c) => c.connection.connectionManager?.connectionDetails?.serverId ?? null;
const connected = (c) => (c.connection.state === 'connected' ? Promise.resolve() : c.connection.once('connected'));

async function main() {
  const observers = [];
  for (let i = 0; i < config.observers; i++) {
    const c = realtime();
    await connected(c);
    const ch = c.channels.get(config.channel);
    const o = { i, c, ch, counts: {}, marked: false };
    await ch.presence.subscribe((p) => { if (o.marked) o.counts[p.action] = (o.counts[p.action] ?? 0) + 1; });
    observers.push(o);
  }
  const clients = [];
  const t0 = Date.now();
  for (let i = 0; i < config.clients; i++) {
    const c = realtime();
    // PRESENCE mode only: a member connection does not receive everyone's events.
    clients.push({ i, c, ch: c.channels.get(config.channel, { modes: ['PRESENCE'] }) });
  }
  // In batches of 8 connections: each connects, attaches and enters its members (in parallel).
  for (let b = 0; b < clients.length; b += 8) {
    await Promise.all(clients.slice(b, b + 8).map(async (m) => {
      await connected(m.c);
      m.id = m.c.connection.id;
      await m.ch.attach();
      const entered = [];
      for (let j = 0; j < config.perClient; j++) entered.push(m.ch.presence.enterClient(`m${m.i}-${j}`, { j }));
      await Promise.all(entered);
    }));
  }
  const enterMs = Date.now() - t0;
  const total = config.clients * config.perClient;
  await Promise.all(observers.map(async (o) => {
    while ((await o.ch.presence.get()).length < total) await new Promise((r) => setTimeout(r, 100));
  }));
  emit('ready', { enterMs, total });

  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const cmd = JSON.parse(line);
    if (cmd.cmd === 'status') {
      emit('status', { clients: clients.map((m) => ({ i: m.i, id: m.c.connection.id, first: m.id, serverId: serverOf(m.c), state: m.c.connection.state, channel: m.ch.state })) });
    } else if (cmd.cmd === 'mark') {
      for (const o of observers) o.marked = true;
      emit('marked', { observers: observers.map((o) => ({ i: o.i, serverId: serverOf(o.c) })) });
    } else if (cmd.cmd === 'report') {
      const out = [];
      for (const o of observers) out.push({ i: o.i, serverId: serverOf(o.c), state: o.c.connection.state, counts: o.counts, members: (await o.ch.presence.get()).length });
      const late = realtime();
      await connected(late);
      const t = Date.now();
      const members = (await late.channels.get(config.channel).presence.get()).length;
      emit('report', { observers: out, late: { members, attachAndSyncMs: Date.now() - t, serverId: serverOf(late) } });
      late.close();
      process.exit(0);
    }
  }
}

main().catch((err) => { emit('fatal', { error: String(err?.stack ?? err) }); process.exit(1); });
