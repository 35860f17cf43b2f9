// channel.history({untilAttach: true}) with ably-js while publishing goes on: a publisher keeps
// publishing numbered messages; a subscriber attaches mid-stream (with `params`, e.g. a rewind,
// if given), pages back through history untilAttach, and records what its subscription delivers.
// Reported: every ACKed serial, the history serials (newest first) and the delivered serials.
import { config, emit, realtime, connected, Condition, errorInfo, logErrors, main } from './common.mjs';

await main(async () => {
  const pub = realtime();
  const sub = realtime();
  await Promise.all([connected(pub), connected(sub)]);
  const pch = pub.channels.get(config.channel);
  const acked = [];
  let stop = false;
  const publishing = (async () => {
    for (let n = 0; !stop; n++) {
      const res = await pch.publish('n', { n });
      acked.push(...res.serials);
    }
  })();
  const cond = new Condition();
  const waitAcked = (count) => new Promise((resolve) => {
    const timer = setInterval(() => { if (acked.length >= count) { clearInterval(timer); resolve(); } }, 5);
  });
  await waitAcked(config.before ?? 20);
  const channel = sub.channels.get(config.channel, config.params ? { params: config.params } : {});
  const delivered = [];
  await channel.subscribe((msg) => { delivered.push(msg.serial); cond.poke(); });
  const history = [];
  let page = await channel.history({ untilAttach: true, limit: config.limit ?? 7 });
  let pages = 1;
  for (;;) {
    history.push(...page.items.map((m) => m.serial));
    if (!page.hasNext()) break;
    page = await page.next();
    pages += 1;
  }
  await waitAcked(acked.length + (config.after ?? 20));
  stop = true;
  await publishing;
  const last = acked[acked.length - 1];
  await cond.wait(() => delivered.includes(last), 'the last ACKed message');
  emit('result', {
    acked, history, delivered, pages,
    attachSerial: channel.properties.attachSerial ?? null,
    logErrors,
  });
  pub.close();
  sub.close();
});
