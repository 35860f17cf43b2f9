// Resume across a cut. The subscriber (and, with pubViaTunnel, the publisher)
// connects through the test's tunnel; a publisher streams numbered messages.
// Once the stream flows the script emits `ready`; the test cuts the tunnel.
// After the subscriber's channel is attached again the publisher sends
// `tail` more messages, then the script reports what arrived.
import { config, emit, realtime, connected, Condition, errorInfo, logErrors, track, sleep, main } from './common.mjs';

await main(async () => {
  const sub = realtime({ port: config.tunnelPort });
  const pub = realtime({ port: config.pubViaTunnel ? config.tunnelPort : config.port });
  const channel = sub.channels.get(config.channel);
  const log = [];
  track(sub, channel, log);
  const cond = new Condition();
  const nums = [];
  let acked = 0;
  let sent = 0;
  let stop = false;
  const note = (what) => log.push({ kind: 'mark', what, state: what === 'sub-channel' ? channel.state : sub.connection.state, acked, sent, received: nums.length });
  sub.connection.on(() => { note('sub-connection'); cond.poke(); });
  channel.on(() => { note('sub-channel'); cond.poke(); });
  pub.connection.on((c) => log.push({ kind: 'pub-connection', current: c.current, reason: errorInfo(c.reason), id: pub.connection.id }));

  const [subIdBefore, pubIdBefore] = await Promise.all([connected(sub), connected(pub)]);
  await channel.subscribe((msg) => { nums.push(msg.data.n); cond.poke(); });

  const pch = pub.channels.get(config.channel);
  const pending = [];
  // Sequential: each publish awaits its ACK. Pipelined (publisher behind the
  // tunnel): publishes do not wait, so some are in flight when the cut hits
  // and ably-js re-sends them with their msgSerials on resume (RTN19a).
  const publishing = (async () => {
    while (!stop) {
      const n = sent++;
      const p = pch.publish('n', { n }).then(() => { acked += 1; cond.poke(); });
      if (config.pubViaTunnel) pending.push(p);
      else await p;
      await sleep(config.intervalMs);
    }
    await Promise.all(pending);
  })();

  await cond.wait(() => nums.length >= 10, 'the stream to flow');
  emit('ready', { connectionId: subIdBefore });

  // The cut: the channel leaves `attached`, then comes back.
  await cond.wait(() => channel.state !== 'attached', 'the cut to reach the channel');
  await cond.wait(() => channel.state === 'attached' && sub.connection.state === 'connected', 're-attach', 20000);
  const resumedAt = acked;
  await cond.wait(() => acked >= resumedAt + config.tail, 'the tail to be published');
  stop = true;
  await publishing;
  await cond.wait(() => nums.length >= sent && nums[nums.length - 1] >= sent - 1, 'the last message', 10000);

  emit('result', {
    subIdBefore,
    subIdAfter: sub.connection.id,
    pubIdBefore,
    pubIdAfter: pub.connection.id,
    acked,
    sent,
    nums,
    log,
    logErrors,
  });
  sub.close();
  pub.close();
});
