// Recover (RTN16) in a new client instance.
//  role "old": attach, receive 1..before, print createRecoveryKey(), then wait
//              to be killed (a crash: no CLOSE reaches the server).
//  role "new": publish before+1..before+away while the old instance is gone,
//              then recover from the key, attach, and report what arrives.
import { config, emit, realtime, connected, Condition, describeMessage, errorInfo, logErrors, track, main } from './common.mjs';

const cond = new Condition();

async function old() {
  const client = realtime();
  const pub = realtime();
  await Promise.all([connected(client), connected(pub)]);
  const channel = client.channels.get(config.channel);
  const nums = [];
  await channel.subscribe((msg) => { nums.push(msg.data.n); cond.poke(); });
  const pch = pub.channels.get(config.channel);
  for (let n = 1; n <= config.before; n++) await pch.publish('n', { n });
  await cond.wait(() => nums.length >= config.before, 'the first messages');
  emit('recoveryKey', { key: client.connection.createRecoveryKey(), connectionId: client.connection.id, nums });
  await new Promise(() => {}); // until killed
}

async function recover() {
  const pub = realtime();
  await connected(pub);
  const pch = pub.channels.get(config.channel);
  const last = config.before + config.away;
  for (let n = config.before + 1; n <= last; n++) await pch.publish('n', { n });

  let recoveryKey = config.recoveryKey;
  if (config.forge) recoveryKey = forge(recoveryKey, config.forge);
  const client = realtime({ recover: recoveryKey });
  const log = [];
  const channel = client.channels.get(config.channel);
  track(client, channel, log);
  const connectionId = await connected(client);
  const errorReason = errorInfo(client.connection.errorReason);

  const received = [];
  let attached = null;
  channel.once('attached', (c) => { attached = { resumed: !!c.resumed, reason: errorInfo(c.reason) }; });
  await channel.subscribe((msg) => { received.push(describeMessage(msg)); cond.poke(); });
  const has = (n) => received.some((m) => m.data?.n === n);
  // A sentinel after the attach: everything before it has been delivered by then.
  await pch.publish('n', { n: last + 1 });
  await cond.wait(() => has(last + 1), 'the sentinel');
  // The recovered connection publishes too (msgSerial continues from the key).
  const own = await channel.publish('n', { n: last + 2 });
  await cond.wait(() => has(last + 2), 'our own message');

  emit('result', {
    connectionId,
    errorReason,
    attached,
    own,
    received,
    log,
    logErrors,
  });
  client.close();
  pub.close();
}

// A forged recovery key: the connectionKey's MAC (its last segment) altered,
// and with mode "all" the channel serials replaced by ones from an unknown epoch.
function forge(text, mode) {
  const key = JSON.parse(text);
  const ck = key.connectionKey;
  const last = ck[ck.length - 1];
  key.connectionKey = ck.slice(0, -1) + (last === 'A' ? 'B' : 'A');
  if (mode === 'all') {
    for (const name of Object.keys(key.channelSerials)) key.channelSerials[name] = 'forgedepoch:3';
  }
  return JSON.stringify(key);
}

await main(config.role === 'old' ? old : recover);
