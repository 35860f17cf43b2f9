// ably-js Rest against a real cluster (tests/interop/test_ably_rest.py). config.scenario:
//
// fanout:  a realtime subscriber on each frontend (config.ports); then, through the router,
//          REST publishes (single, arrays, extras, clientId, binary, both formats), a re-publish
//          of the same ids (idempotent), a batch publish to two channels, a publish on behalf of
//          subscriber 0 sent to another frontend, and capability refusals with a narrow token.
//          Emits what each subscriber received once every one has everything.
// tokens:  realtime through the router with authCallback -> createTokenRequest() (short ttl, so
//          the server expires it mid-stream) and with authUrl -> a TokenRequest from a local
//          HTTP server (renewed by authorize() before expiry), both subscribed while REST
//          publishes numbered messages; an expired token on REST. Emits states and receipts.
// history: REST publishes config.count messages; pages history backwards by config.limit;
//          after the first page emits "page1" and waits for SIGUSR2 (the test moves the
//          channel's home meanwhile), then follows next() to the end.
import http from 'node:http';
import * as Ably from 'ably';
import { config, emit, sleep, Condition } from './common.mjs';

const base = { endpoint: '127.0.0.1', tls: false, disableConnectivityCheck: true, logLevel: 1 };
const at = (port, extra = {}) => ({ ...base, port, ...extra });
const errorOf = (e) => ({ code: e && e.code, statusCode: e && e.statusCode, message: e && e.message });

async function expectError(what, fn) {
  try {
    await fn();
    emit('refusal', { what, error: null });
  } catch (e) {
    emit('refusal', { what, error: errorOf(e) });
  }
}

function subscriber(port, channel, got, cond, extra = {}) {
  const rt = new Ably.Realtime(at(port, { key: config.key, disconnectedRetryTimeout: 300, ...extra }));
  const ch = rt.channels.get(channel);
  const list = [];
  got.push(list);
  ch.subscribe((m) => {
    list.push({ name: m.name, data: Buffer.isBuffer(m.data) ? { bin: [...m.data] } : m.data, id: m.id,
      serial: m.serial, clientId: m.clientId || null, connectionId: m.connectionId || null,
      extras: m.extras || null, channel });
    cond.poke();
  });
  return { rt, ch, list };
}

async function fanout() {
  const cond = new Condition();
  const got = [];
  const subs = config.ports.map((p, i) => subscriber(p, config.channel, got, cond, { useBinaryProtocol: i % 2 === 0 }));
  const other = subscriber(config.ports[1], config.channel2, got, cond);
  await Promise.all([...subs, other].map((s) => s.ch.attach()));
  const rest = new Ably.Rest(at(config.port, { key: config.key }));
  const restJson = new Ably.Rest(at(config.port, { key: config.key, useBinaryProtocol: false }));
  const ch = rest.channels.get(config.channel);
  const chJson = restJson.channels.get(config.channel);
  const results = [];
  results.push(await ch.publish('m0', 'text'));
  results.push(await chJson.publish([{ name: 'm1', data: { json: true } }, { name: 'm2', data: Buffer.from([1, 2, 3]) }]));
  results.push(await ch.publish({ name: 'm3', data: 'x', clientId: 'alice', extras: { headers: { k: 'v' } } }));
  results.push(await chJson.publish({ name: 'm4', data: Buffer.from([9, 8]), id: 'explicit-id-4' }));
  // The same ids again, through the router (a retry after a lost response): answered, not delivered.
  results.push(await ch.publish({ name: 'm4-again', data: 'dup', id: 'explicit-id-4' }));
  results.push(await ch.publish([{ name: 'm5', id: 'fixedbase:0' }, { name: 'm6', id: 'fixedbase:1' }]));
  results.push(await chJson.publish([{ name: 'm5-again', id: 'fixedbase:0' }, { name: 'm6-again', id: 'fixedbase:1' }]));
  // The same id over realtime, from a connection on another frontend: deduplicated at the home too.
  const realtimeDup = await subs[2].ch.publish({ name: 'm4-realtime', data: 'dup', id: 'explicit-id-4' });
  const batch = await rest.batchPublish([{ channels: [config.channel, config.channel2], messages: [{ name: 'm7', data: 'batch' }] }]);
  // On behalf of subscriber 0 (owned by the frontend at ports[0]), sent to the frontend at ports[1].
  const onBehalf = new Ably.Rest(at(config.ports[1], { key: config.key }));
  results.push(await onBehalf.channels.get(config.channel).publish({ name: 'm8', data: 'obo', connectionKey: subs[0].rt.connection.key }));
  emit('published', { results, batch, realtimeDup, sub0: subs[0].rt.connection.id });

  // Capability refusals with a token limited to subscribe on the channel.
  const narrow = new Ably.Rest(at(config.port, {
    authCallback: (_p, cb) => rest.auth.createTokenRequest({ capability: { [config.channel]: ['subscribe'] }, clientId: 'bob' }).then((tr) => cb(null, tr), cb),
  }));
  await expectError('publish', () => narrow.channels.get(config.channel).publish('no', 'no'));
  await expectError('history', () => narrow.channels.get(config.channel).history());
  await expectError('other-channel', () => narrow.channels.get('elsewhere').publish('no', 'no'));
  const bob = new Ably.Rest(at(config.port, {
    authCallback: (_p, cb) => rest.auth.createTokenRequest({ capability: { [config.channel]: ['publish'] }, clientId: 'bob' }).then((tr) => cb(null, tr), cb),
  }));
  await expectError('clientId', () => bob.channels.get(config.channel).publish({ name: 'no', clientId: 'mallory' }));
  await expectError('wrong-secret', () => new Ably.Rest(at(config.port, { key: config.key.split(':')[0] + ':wrong' })).channels.get(config.channel).publish('no', 'no'));

  // A last message on each channel: delivery is in order, so a duplicate would arrive before it.
  await ch.publish('end', 'end');
  await rest.channels.get(config.channel2).publish('end', 'end');
  const ended = (list) => list.some((m) => m.name === 'end');
  await cond.wait(() => subs.every((s) => ended(s.list)) && ended(other.list), 'all deliveries', 20000);
  emit('received', { subs: subs.map((s) => s.list), other: other.list, status: await ch.status() });
  for (const s of [...subs, other]) s.rt.close();
}

async function tokens() {
  const cond = new Condition();
  const keyRest = new Ably.Rest(at(config.port, { key: config.key }));
  let callbacks = 0;
  const server = http.createServer(async (req, res) => {
    const tr = await keyRest.auth.createTokenRequest({ clientId: 'url-user', ttl: config.ttl * 4 });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(tr));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const authUrl = `http://127.0.0.1:${server.address().port}/auth`;
  const lane = config.transports ? { transports: config.transports } : {};
  const mk = (auth) => new Ably.Realtime(at(config.port, { disconnectedRetryTimeout: 300, ...lane, ...auth }));
  const clients = {
    callback: mk({ authCallback: (_p, cb) => { callbacks += 1; keyRest.auth.createTokenRequest({ clientId: 'cb-user', ttl: config.ttl }).then((tr) => cb(null, tr), cb); } }),
    url: mk({ authUrl }),
  };
  const got = {};
  const states = {};
  for (const [name, rt] of Object.entries(clients)) {
    got[name] = [];
    states[name] = [];
    rt.connection.on((c) => { states[name].push({ current: c.current, id: rt.connection.id, code: c.reason && c.reason.code }); cond.poke(); });
    rt.channels.get(config.channel).subscribe((m) => { got[name].push(Number(m.data)); cond.poke(); });
  }
  await Promise.all(Object.values(clients).map((rt) => rt.channels.get(config.channel).attach()));
  const ids = Object.fromEntries(Object.entries(clients).map(([k, rt]) => [k, rt.connection.id]));
  emit('connected', { ids, clientIds: { callback: clients.callback.auth.clientId, url: clients.url.auth.clientId },
    transports: Object.values(clients).map((rt) => rt.connection.connectionManager.activeProtocol.getTransport().shortName) });
  const ch = keyRest.channels.get(config.channel);
  let n = 0;
  const started = Date.now();
  let renewed = null;
  while (Date.now() - started < config.ttl * 2.5) {
    await ch.publish('n', String(n));
    n += 1;
    if (renewed === null && Date.now() - started > config.ttl / 2) {
      renewed = await clients.url.auth.authorize();  // AUTH on the live connection, before expiry
    }
    await sleep(50); // pacing: the stream spans the token's expiry
  }
  await ch.publish('n', '-1'); // the end: delivery is in order, so a duplicate would arrive before it
  await cond.wait(() => Object.values(got).every((g) => g.includes(-1)), 'every message', 20000);
  for (const g of Object.values(got)) g.splice(g.indexOf(-1), 1);
  // An expired token on REST, with no way to renew: refused.
  const shortTr = await keyRest.auth.createTokenRequest({ ttl: 1000 });
  const shortTd = await keyRest.auth.requestToken(null, { authCallback: (_p, cb) => cb(null, shortTr) });
  await sleep(1200); // the token's lifetime (1 s) runs out: time itself is what is waited for
  await expectError('expired', () => new Ably.Rest(at(config.port, { token: shortTd.token })).channels.get(config.channel).publish('x', 'y'));
  emit('done', { n, got, states, ids, callbacks, renewedToken: renewed && renewed.token ? true : false,
    finalIds: Object.fromEntries(Object.entries(clients).map(([k, rt]) => [k, rt.connection.id])) });
  for (const rt of Object.values(clients)) rt.close();
  server.close();
}

async function history() {
  const rest = new Ably.Rest(at(config.port, { key: config.key, useBinaryProtocol: config.binary }));
  const ch = rest.channels.get(config.channel);
  for (let i = 0; i < config.count; i += 5) {
    await ch.publish(Array.from({ length: 5 }, (_, j) => ({ name: `h${i + j}`, data: String(i + j) })));
  }
  let page = await ch.history({ limit: config.limit });
  const pages = [page.items.map((m) => [Number(m.data), m.serial])];
  emit('page1', { items: pages[0], hasNext: page.hasNext() });
  let go;
  const signalled = new Promise((r) => { go = r; });
  process.on('SIGUSR2', () => go());
  const keepAlive = setInterval(() => {}, 1000); // nothing else holds the event loop meanwhile
  await signalled;
  clearInterval(keepAlive);
  while (page.hasNext()) {
    page = await page.next();
    pages.push(page.items.map((m) => [Number(m.data), m.serial]));
  }
  const forwards = await ch.history({ direction: 'forwards', limit: 1000 });
  emit('pages', { pages, forwards: forwards.items.map((m) => Number(m.data)) });
}

try {
  await { fanout, tokens, history }[config.scenario]();
  process.exit(0);
} catch (e) {
  emit('fatal', { error: String(e && e.stack || e), code: e && e.code });
  process.exit(1);
}
