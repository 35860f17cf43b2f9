// ably-js token revocation (auth.revokeTokens, RSA17) and batch presence (rest.batchPresence,
// RSC24) against a real cluster (tests/interop/test_ably_rest_revoke.py).
//
// Three realtime clients on token auth, connected straight to frontends (config.ports; the
// third frontend is left to the test, which kills and restarts it): alice on the first with a
// fixed token (it cannot renew), bob on the fourth with an authCallback (it renews), carol on
// the second with a fixed token that is not revoked. carol enters presence on two channels.
// A narrow token's Rest asks batchPresence for both through the router (one is outside its
// capability). Then a Rest on the second frontend revokes clientId:alice and clientId:bob (plus
// an invalid target).
// Emits: "presence" (the BatchResult), "revoked" (the revocation's BatchResult), then "states"
// once alice is failed and bob connected again: each client's state changes with their error
// codes and connectionIds, and the revoked token string for the test to try on every frontend.
import * as Ably from 'ably';
import { config, emit, Condition } from './common.mjs';

const base = { endpoint: '127.0.0.1', tls: false, disableConnectivityCheck: true, logLevel: 1 };
const at = (port, extra = {}) => ({ ...base, port, ...extra });

const cond = new Condition();
const rest = new Ably.Rest(at(config.port, { key: config.key }));

function watch(name, rt, log) {
  rt.connection.on((change) => {
    log.push({ state: change.current, code: change.reason ? change.reason.code : null, id: rt.connection.id });
    cond.poke();
  });
}

const [aliceTd, carolTd] = await Promise.all([
  rest.auth.requestToken({ clientId: 'alice' }),
  rest.auth.requestToken({ clientId: 'carol' }),
]);
const logs = { alice: [], bob: [], carol: [] };
const alice = new Ably.Realtime(at(config.ports[0], { token: aliceTd, disconnectedRetryTimeout: 300 }));
let bobTokens = 0;
const bob = new Ably.Realtime(at(config.ports[3], {
  authCallback: (_params, cb) => {
    bobTokens += 1;
    rest.auth.requestToken({ clientId: 'bob' }).then((td) => cb(null, td), (err) => cb(err));
  },
  disconnectedRetryTimeout: 300,
}));
const carol = new Ably.Realtime(at(config.ports[1], { token: carolTd }));
watch('alice', alice, logs.alice);
watch('bob', bob, logs.bob);
watch('carol', carol, logs.carol);
await Promise.all([alice, bob, carol].map((rt) => rt.connection.once('connected')));
const bobId = bob.connection.id;

await carol.channels.get('bp:allowed').presence.enter('here');
await carol.channels.get('bp:denied').presence.enter('here');
const narrowTd = await rest.auth.requestToken({ capability: { 'bp:allowed': ['presence'] } });
const narrow = new Ably.Rest(at(config.port, { token: narrowTd }));
emit('presence', { result: await narrow.batchPresence(['bp:denied', 'bp:allowed']) });

const revoker = new Ably.Rest(at(config.ports[1], { key: config.key }));
const result = await revoker.auth.revokeTokens([
  { type: 'clientId', value: 'alice' },
  { type: 'clientId', value: 'bob' },
  { type: 'invalidType', value: 'abc' },
]);
emit('revoked', { result });

const seen = (log, state) => log.some((c) => c.state === state);
await cond.wait(() => seen(logs.alice, 'failed'), 'alice failed');
await cond.wait(
  () => seen(logs.bob, 'disconnected') && logs.bob[logs.bob.length - 1].state === 'connected',
  'bob reconnected',
);
emit('states', { logs, bobId, bobIdAfter: bob.connection.id, bobTokens, aliceToken: aliceTd.token });
for (const rt of [alice, bob, carol]) rt.close();
process.exit(0);
