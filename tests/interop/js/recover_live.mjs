// Recover (RTN16) of a connection whose first client is still live (issue 17, point 4): the
// recovering client holds the connection and gets everything; the first one is told with an error
// and carries on under a new connectionId; no ping-pong.
import { config, emit, realtime, connected, Condition, errorInfo, track, main } from './common.mjs';

const cond = new Condition();

main(async () => {
  const name = config.channel;
  const first = realtime();
  const firstLog = [];
  const firstGot = [];
  const original = await connected(first);
  track(first, null, firstLog);
  first.connection.on(() => cond.poke());
  const ch1 = first.channels.get(name);
  await ch1.subscribe((m) => { firstGot.push(m.data); cond.poke(); });

  const second = realtime({ recover: first.connection.createRecoveryKey() });
  const secondLog = [];
  const secondGot = [];
  track(second, null, secondLog);
  const recovered = await connected(second);
  const ch2 = second.channels.get(name);
  await ch2.subscribe((m) => { secondGot.push(m.data); cond.poke(); });

  await cond.wait(
    () => first.connection.state === 'connected' && first.connection.id !== original,
    'the first client under a new connectionId',
  );
  const pub = realtime();
  await connected(pub);
  const pch = pub.channels.get(name);
  for (let n = 1; n <= config.count; n++) await pch.publish('n', `m${n}`);
  await cond.wait(() => secondGot.length >= config.count, 'every message at the recovering client');
  await cond.wait(() => firstGot.includes(`m${config.count}`), 'the first client carrying on');
  emit('result', {
    original,
    recovered,
    secondId: second.connection.id,
    secondErrorReason: errorInfo(second.connection.errorReason),
    secondLog,
    secondGot,
    firstId: first.connection.id,
    firstState: first.connection.state,
    firstLog,
    firstGot,
    firstChannelState: ch1.state,
  });
});
