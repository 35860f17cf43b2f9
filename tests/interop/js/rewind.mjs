// Channel params with ably-js: publish `publish` numbered messages (awaiting each ACK), then a
// fresh client attaches with `params` (e.g. {rewind: '5'}) and reports what it receives: the
// rewound messages, then one live message published after the attach (so "no more than N" is
// checked without waiting on a timer). With `expectFailure`, the attach must fail instead.
import { config, emit, realtime, connected, Condition, describeMessage, errorInfo, logErrors, main } from './common.mjs';

await main(async () => {
  const pub = realtime();
  await connected(pub);
  const pch = pub.channels.get(config.channel);
  const serials = [];
  for (let i = 0; i < (config.publish ?? 0); i++) {
    const res = await pch.publish('n', { i });
    serials.push(...res.serials);
  }
  emit('published', { serials });
  if (!config.params) {
    pub.close();
    return;
  }
  const sub = realtime();
  await connected(sub);
  const channel = sub.channels.get(config.channel, { params: config.params });
  if (config.expectFailure) {
    let error = null;
    try {
      await channel.attach();
    } catch (err) {
      error = errorInfo(err);
    }
    // The connection keeps being served: another channel attaches.
    await sub.channels.get(config.channel + ':other').attach();
    emit('result', { error, state: channel.state, connection: sub.connection.state, logErrors });
    sub.close();
    pub.close();
    return;
  }
  const received = [];
  const cond = new Condition();
  let attached = null;
  channel.once('attached', (c) => {
    attached = { resumed: !!c.resumed, hasBacklog: !!c.hasBacklog, reason: errorInfo(c.reason) };
  });
  await channel.subscribe((msg) => { received.push(describeMessage(msg)); cond.poke(); });
  const expected = config.expect;
  await cond.wait(() => received.length >= expected, `${expected} rewound messages`);
  const live = await pch.publish('live', { live: true });
  await cond.wait(() => received.some((m) => m.name === 'live'), 'the live message');
  emit('result', {
    serials,
    live: live.serials,
    received,
    attached,
    params: channel.params ?? null,
    errorReason: errorInfo(channel.errorReason),
    attachSerial: channel.properties.attachSerial ?? null,
    logErrors,
  });
  sub.close();
  pub.close();
});
