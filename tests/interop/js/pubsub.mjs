// Basic pub/sub: a subscriber and a publisher (each in its own format) on one
// channel. Publishes are awaited for their ACK serials; the subscriber's view
// of each message is reported so the test can match serial, id, connectionId.
import { config, emit, realtime, connected, Condition, describeMessage, errorInfo, logErrors, main } from './common.mjs';

await main(async () => {
  const sub = realtime({ useBinaryProtocol: config.binary });
  const pub = realtime({ useBinaryProtocol: config.pubBinary ?? config.binary });
  const [subId, pubId] = await Promise.all([connected(sub), connected(pub)]);

  const channel = sub.channels.get(config.channel);
  const received = [];
  const cond = new Condition();
  let attached = null;
  channel.once('attached', (c) => { attached = { resumed: !!c.resumed, reason: errorInfo(c.reason) }; });
  // strictMode: subscribe() throws 90009 if ATTACHED lacks the SUBSCRIBE mode bit.
  await channel.subscribe((msg) => { received.push(describeMessage(msg)); cond.poke(); });

  const pch = pub.channels.get(config.channel);
  const results = [];
  for (let i = 0; i < config.count; i++) {
    results.push(await pch.publish('n', { i }));
  }
  // One ProtocolMessage with two messages: one ACK, two serials.
  results.push(await pch.publish([{ name: 'batch', data: 'a' }, { name: 'batch', data: 'b' }]));
  // Binary data must survive both formats (base64 transcoding for JSON).
  results.push(await pch.publish('bin', Buffer.from([0, 1, 2, 253, 254, 255])));
  const expected = config.count + 3;
  await cond.wait(() => received.length >= expected, `${expected} messages`);

  emit('result', {
    subConnectionId: subId,
    pubConnectionId: pubId,
    pubClientId: pub.auth.clientId ?? null,
    results,
    received,
    attached,
    modes: channel.modes ?? null,
    logErrors,
  });
  sub.close();
  pub.close();
});
