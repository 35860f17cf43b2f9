// Channel-scoped refusals and channel modes (issue 17, points 1-3), with the unmodified SDK.
//  part "scope": invalid names and params fail their channel only; the connection and a live
//                channel keep working.
//  part "modes": setOptions re-attaches with new modes (RTL16a) and they take effect.
//  part "denied": adding publish through setOptions when the token's capability forbids it.
//  part "reauth": a reauth that narrows the capability fails the channels it no longer allows.
//  part "widen": reauths that add, then remove, publish on an attached channel (RTN22).
//  part "resubscribe": reauths that drop, then grant again, subscribe on channels whose home is
//                another frontend: delivery stops, then starts again.
//  part "unsupported": message updates, deletes and appends are NACKed and a derived channel fails,
//                each with an error that says so; nothing is delivered in their stead.
import { config, emit, realtime, connected, Condition, errorInfo, main } from './common.mjs';

const cond = new Condition();

async function outcome(promise) {
  try {
    await promise;
    return { ok: true };
  } catch (err) {
    return { ok: false, error: errorInfo(err) };
  }
}

async function scope() {
  const client = realtime();
  const pub = realtime();
  const connectionId = await connected(client);
  await connected(pub);
  const live = client.channels.get('scope:live');
  const got = [];
  await live.subscribe((m) => { got.push(m.data); cond.poke(); });
  const attempts = {};
  for (const name of ['', ':hell', '[meta', '[]name', '[meta]']) {
    const channel = client.channels.get(name);
    attempts[name] = { ...(await outcome(channel.attach())), state: channel.state, reason: errorInfo(channel.errorReason) };
  }
  const badParams = client.channels.get('scope:params', { params: { rewind: 1, delta: { x: 1 } } });
  attempts.params = { ...(await outcome(badParams.attach())), state: badParams.state, reason: errorInfo(badParams.errorReason) };
  const goodParams = client.channels.get('scope:params-ok', { params: { occupancy: 'metrics', custom: 'x' } });
  await goodParams.attach();
  const echoedParams = goodParams.params;
  const byParam = client.channels.get('scope:modes-param', { params: { modes: 'subscribe' } });
  await byParam.attach();
  const modesFromParam = byParam.modes;
  const publishInvalid = await outcome(client.channels.get(':hell2').publish('n', 'x'));
  await pub.channels.get('scope:live').publish('n', 'after');
  await cond.wait(() => got.includes('after'), 'the live channel still delivering');
  emit('result', {
    attempts,
    publishInvalid,
    echoedParams,
    modesFromParam,
    connectionState: client.connection.state,
    sameConnection: client.connection.id === connectionId,
    liveState: live.state,
    got,
  });
}

async function modes() {
  const client = realtime();
  const pub = realtime();
  await Promise.all([connected(client), connected(pub)]);
  const name = config.channel;
  const channel = client.channels.get(name, { modes: ['PUBLISH'] });
  await channel.attach();
  const got = [];
  const sentinels = [];
  // strictMode rejects a subscribe without the subscribe mode (90009), with the listener registered.
  const refused = await outcome(channel.subscribe((m) => { got.push(m.data); cond.poke(); }));
  const sentinel = client.channels.get(name + ':sentinel');
  await sentinel.subscribe((m) => { sentinels.push(m.data); cond.poke(); });
  const pch = pub.channels.get(name);
  const psent = pub.channels.get(name + ':sentinel');
  const step = async (data) => {
    await pch.publish('n', data);
    await psent.publish('n', data);
    await cond.wait(() => sentinels.includes(data), `sentinel ${data}`);
  };
  const result = { modes: [channel.modes], subscribeWithoutMode: refused };
  await step('while-publish-only');
  await channel.setOptions({ modes: ['PUBLISH', 'SUBSCRIBE'] });
  result.modes.push(channel.modes);
  await step('after-adding-subscribe');
  await cond.wait(() => got.includes('after-adding-subscribe'), 'delivery after adding subscribe');
  await channel.setOptions({ modes: ['SUBSCRIBE'] });
  result.modes.push(channel.modes);
  result.publishWithoutMode = await outcome(channel.publish('n', 'own'));
  await channel.setOptions({ modes: ['PUBLISH'] });
  result.modes.push(channel.modes);
  result.publishWithMode = await outcome(channel.publish('n', 'own'));
  await step('after-removing-subscribe');
  result.got = got;
  result.connectionState = client.connection.state;
  emit('result', result);
}

async function denied() {
  const client = realtime();
  await connected(client);
  const channel = client.channels.get(config.channel, { modes: ['SUBSCRIBE'] });
  await channel.attach();
  await channel.setOptions({ modes: ['SUBSCRIBE', 'PUBLISH'] });
  const publish = await outcome(channel.publish('n', 'x'));
  emit('result', { modes: channel.modes, publish, connectionState: client.connection.state, channelState: channel.state });
}

async function rewind() {
  const pub = realtime();
  await connected(pub);
  const pch = pub.channels.get(config.channel);
  for (const data of ['r1', 'r2', 'r3']) await pch.publish('n', data);
  const client = realtime();
  await connected(client);
  const got = [];
  const channel = client.channels.get(config.channel, { params: { rewind: '2' } });
  let attached = null;
  channel.once('attached', (c) => { attached = { resumed: c.resumed, hasBacklog: !!c.hasBacklog, reason: errorInfo(c.reason) }; });
  await channel.subscribe((m) => { got.push(m.data); cond.poke(); });
  await pch.publish('n', 'r4');
  await cond.wait(() => got.includes('r4'), 'the live message after the rewind');
  // A channel that asks for more than the log holds gets what there is.
  const all = [];
  const wide = client.channels.get(config.channel + ':wide', { params: { rewind: '50' } });
  await pub.channels.get(config.channel + ':wide').publish('n', 'w1');
  await wide.subscribe((m) => { all.push(m.data); cond.poke(); });
  await cond.wait(() => all.includes('w1'), 'the rewound message of a short channel');
  emit('result', { got, attached, wide: all });
}

async function reauth() {
  let calls = 0;
  const client = realtime({
    authCallback: (_params, cb) => cb(null, config.tokens[Math.min(calls++, config.tokens.length - 1)]),
  });
  const connectionId = await connected(client);
  const kept = client.channels.get('keep:x');
  const lost = client.channels.get('lose:x');
  await kept.attach();
  await lost.attach();
  let failed = null;
  const lostFailed = new Promise((resolve) => lost.once('failed', (c) => { failed = errorInfo(c.reason); resolve(); }));
  await client.auth.authorize();
  await lostFailed;
  emit('result', {
    sameConnection: client.connection.id === connectionId,
    connectionState: client.connection.state,
    kept: kept.state,
    lost: lost.state,
    failed,
  });
}

async function widen() {
  let calls = 0;
  const client = realtime({
    authCallback: (_params, cb) => cb(null, config.tokens[Math.min(calls++, config.tokens.length - 1)]),
  });
  const connectionId = await connected(client);
  const channel = client.channels.get(config.channel);
  const got = [];
  await channel.subscribe((m) => { got.push(m.data); cond.poke(); });
  const before = await outcome(channel.publish('n', 'before'));
  await client.auth.authorize();  // the capability now allows publish
  const widened = await outcome(channel.publish('n', 'widened'));
  await cond.wait(() => got.includes('widened'), 'the publish allowed by the wider capability');
  await client.auth.authorize();  // and no longer does
  const narrowed = await outcome(channel.publish('n', 'narrowed'));
  emit('result', {
    before, widened, narrowed, got,
    sameConnection: client.connection.id === connectionId,
    connectionState: client.connection.state,
    channelState: channel.state,
  });
}

async function unsupported() {
  const client = realtime();
  const connectionId = await connected(client);
  const channel = client.channels.get(config.channel);
  const got = [];
  await channel.subscribe((m) => { got.push({ action: m.action, data: m.data }); cond.poke(); });
  const { serials } = await channel.publish('original', 'Hello');
  const operations = {};
  for (const op of ['updateMessage', 'deleteMessage', 'appendMessage']) {
    operations[op] = await outcome(channel[op]({ serial: serials[0], data: 'changed' }, { description: op }));
  }
  const derived = client.channels.getDerived(config.channel, { filter: 'name == `"original"`' });
  const derivedAttach = await outcome(derived.attach());
  await channel.publish('sentinel', 'end');
  await cond.wait(() => got.some((m) => m.data === 'end'), 'the sentinel after the refused operations');
  emit('result', {
    operations, derivedAttach, derivedState: derived.state, got,
    sameConnection: client.connection.id === connectionId,
    connectionState: client.connection.state,
    channelState: channel.state,
  });
}

async function resubscribe() {
  let calls = 0;
  const client = realtime({
    authCallback: (_params, cb) => cb(null, config.tokens[Math.min(calls++, config.tokens.length - 1)]),
  });
  const pub = realtime({ key: config.key });
  const connectionId = await connected(client);
  await connected(pub);
  const got = {};
  for (const name of config.channels) {
    got[name] = [];
    await client.channels.get(name).subscribe((m) => { got[name].push(m.data); cond.poke(); });
  }
  const publishAll = async (data) => {
    for (const name of config.channels) await pub.channels.get(name).publish('n', data);
  };
  const everywhere = (data) => config.channels.every((name) => got[name].includes(data));
  await publishAll('a');
  await cond.wait(() => everywhere('a'), 'a on every channel');
  await client.auth.authorize();  // publish only: delivery stops
  await publishAll('b');
  await client.auth.authorize();  // subscribe again: delivery starts again
  await publishAll('c');
  await cond.wait(() => everywhere('c'), 'c on every channel', 10000).catch(() => {});
  emit('result', {
    got,
    states: config.channels.map((name) => client.channels.get(name).state),
    sameConnection: client.connection.id === connectionId,
  });
}

main(async () => {
  if (config.part === 'resubscribe') await resubscribe();
  else if (config.part === 'unsupported') await unsupported();
  else if (config.part === 'reauth') await reauth();
  else if (config.part === 'widen') await widen();
  else if (config.part === 'rewind') await rewind();
  else if (config.part === 'scope') await scope();
  else if (config.part === 'modes') await modes();
  else await denied();
});
