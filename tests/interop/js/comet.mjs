// Comet failover through a cluster's router: a subscriber and a publisher,
// both on `transports: ['comet']`. The publisher streams numbered messages,
// each awaiting its ACK. Once the stream flows the script emits `ready` with
// each client's serverId; the test then kills the subscriber's owner (kill -9)
// or cuts a tunnel. When the subscriber is attached again the publisher sends
// `tail` more messages and the script reports what arrived.
//   ready  {subId, pubId, subServer, pubServer}
//   result {subIdBefore, subIdAfter, pubIdBefore, pubIdAfter, subServerAfter, acked, sent, nums, log, logErrors}
import { config, emit, realtime, connected, Condition, errorInfo, logErrors, track, sleep, main } from './common.mjs';

const serverId = (client) => client.connection.connectionManager.connectionDetails?.serverId ?? null;
const transportName = (client) => client.connection.connectionManager.activeProtocol?.getTransport()?.shortName ?? null;

await main(async () => {
  const sub = realtime({ transports: ['comet'], port: config.subPort ?? config.port });
  const pub = realtime({ transports: ['comet'] });
  const channel = sub.channels.get(config.channel);
  const log = [];
  track(sub, channel, log);
  pub.connection.on((c) => log.push({ kind: 'pub-connection', current: c.current, reason: errorInfo(c.reason), id: pub.connection.id }));
  const cond = new Condition();
  const nums = [];
  let acked = 0;
  let sent = 0;
  let stop = false;
  sub.connection.on(() => cond.poke());
  channel.on(() => cond.poke());

  const [subIdBefore, pubIdBefore] = await Promise.all([connected(sub), connected(pub)]);
  await channel.subscribe((msg) => { nums.push(msg.data.n); cond.poke(); });
  const pch = pub.channels.get(config.channel);
  const publishing = (async () => {
    while (!stop) {
      const n = sent++;
      await pch.publish('n', { n });
      acked += 1;
      cond.poke();
      await sleep(config.intervalMs);
    }
  })();

  await cond.wait(() => nums.length >= 10, 'the stream to flow');
  emit('ready', {
    subId: subIdBefore,
    pubId: pubIdBefore,
    subServer: serverId(sub),
    pubServer: serverId(pub),
    transports: [transportName(sub), transportName(pub)],
  });

  await cond.wait(() => channel.state !== 'attached' || sub.connection.state !== 'connected', 'the cut to reach the subscriber', 30000);
  await cond.wait(() => channel.state === 'attached' && sub.connection.state === 'connected', 're-attach', 30000);
  const resumedAt = acked;
  await cond.wait(() => acked >= resumedAt + config.tail, 'the tail to be published', 30000);
  stop = true;
  await publishing;
  await cond.wait(() => nums.length >= sent && nums[nums.length - 1] >= sent - 1, 'the last message', 15000);

  emit('result', {
    subIdBefore,
    subIdAfter: sub.connection.id,
    pubIdBefore,
    pubIdAfter: pub.connection.id,
    subServerAfter: serverId(sub),
    transports: [transportName(sub), transportName(pub)],
    acked,
    sent,
    nums,
    log,
    logErrors,
  });
  sub.close();
  pub.close();
});
