// ably-js with tls: true against a router or frontend terminating TLS with a test CA's
// certificate (NODE_EXTRA_CA_CERTS names the CA): connect over wss://, publish, receive, and
// reach the REST time endpoint over https://.
import { config, emit, realtime, connected, Condition, errorInfo, logErrors, main } from './common.mjs';

await main(async () => {
  const opts = { tls: true, tlsPort: config.port, port: undefined, endpoint: config.host };
  const sub = realtime(opts);
  const pub = realtime(opts);
  const [subId, pubId] = await Promise.all([connected(sub), connected(pub)]);
  const channel = sub.channels.get(config.channel);
  const received = [];
  const cond = new Condition();
  await channel.subscribe((msg) => { received.push(msg.data); cond.poke(); });
  await pub.channels.get(config.channel).publish('n', 'over tls');
  await cond.wait(() => received.length >= 1, 'the message');
  emit('result', {
    subConnectionId: subId,
    pubConnectionId: pubId,
    transport: sub.connection.connectionManager.activeProtocol?.getTransport()?.shortName ?? null,
    received,
    logErrors,
  });
  sub.close();
  pub.close();
});
