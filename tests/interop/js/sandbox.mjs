// A key provisioned by the dev-mode sandbox (POST /apps) carries exactly its capability:
// config.key may publish on canpublish:* and subscribe on cansubscribe:* only.
import { config, emit, realtime, connected, errorInfo, main } from './common.mjs';

async function outcome(promise) {
  try {
    const value = await promise;
    return { ok: true, value: value ?? null };
  } catch (err) {
    return { ok: false, error: errorInfo(err) };
  }
}

main(async () => {
  const client = realtime();
  const connectionId = await connected(client);
  const sub = client.channels.get('cansubscribe:sandbox');
  const pub = client.channels.get('canpublish:sandbox');
  const other = client.channels.get('elsewhere:sandbox');
  const result = {
    connectionId,
    subscribeAttach: await outcome(sub.attach().then(() => sub.state)),
    publishWhereSubscribeOnly: await outcome(sub.publish('n', 'one')),
    publishWherePermitted: await outcome(pub.publish('n', 'two').then((r) => r.serials.length)),
    attachWithoutCapability: await outcome(other.attach()),
    connectionState: client.connection.state,
  };
  client.close();
  const forged = realtime({ key: config.key.split(':')[0] + ':not-the-secret' });
  result.forged = await new Promise((resolve) => {
    forged.connection.once('failed', (c) => resolve({ state: 'failed', reason: errorInfo(c.reason) }));
    forged.connection.once('connected', () => resolve({ state: 'connected' }));
  });
  forged.close();
  emit('result', result);
});
