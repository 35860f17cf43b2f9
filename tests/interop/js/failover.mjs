// Failover through a cluster's router: `config.subs` ably-js subscribers on one
// channel, each with its own `useBinaryProtocol`. The script streams what it
// sees as JSON lines and runs until the test kills it:
//   conn  {i, change, current, previous, id, serverId, reason}   every connection state change or update
//   chan  {i, change, current, previous, resumed, reason, attachSerial}   every channel state change or update
//   ready {subs:[{i, binary, id, serverId, attachSerial}]}   once every subscriber is attached
//   msg   {i, n, serial}   every message delivered to a subscriber
// serverId is CONNECTED's connectionDetails.serverId ("continuity.<node_id>").
import { config, emit, realtime, connected, errorInfo, main } from './common.mjs';

const serverId = (client) => client.connection.connectionManager.connectionDetails?.serverId ?? null;

await main(async () => {
  const subs = config.subs.map((binary, i) => {
    const client = realtime({ useBinaryProtocol: binary });
    const channel = client.channels.get(config.channel);
    // State-change objects carry no `event`; the emitter passes it as `this.event`.
    client.connection.on(function (c) {
      emit('conn', {
        i,
        change: this.event,
        current: c.current,
        previous: c.previous,
        id: client.connection.id ?? null,
        serverId: serverId(client),
        reason: errorInfo(c.reason),
      });
    });
    channel.on(function (c) {
      emit('chan', {
        i,
        change: this.event,
        current: c.current,
        previous: c.previous,
        resumed: !!c.resumed,
        reason: errorInfo(c.reason),
        attachSerial: channel.properties.attachSerial ?? null,
      });
    });
    return { i, binary, client, channel };
  });

  await Promise.all(subs.map((s) => connected(s.client)));
  await Promise.all(
    subs.map((s) =>
      s.channel.subscribe((msg) => emit('msg', { i: s.i, n: msg.data?.n ?? null, serial: msg.serial ?? null })),
    ),
  );
  emit('ready', {
    subs: subs.map((s) => ({
      i: s.i,
      binary: s.binary,
      id: s.client.connection.id,
      serverId: serverId(s.client),
      attachSerial: s.channel.properties.attachSerial ?? null,
    })),
  });
  // Run until the test kills the process (the guard in main() bounds it).
  await new Promise(() => {});
});
