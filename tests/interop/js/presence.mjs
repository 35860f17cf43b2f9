// One ably-js client on one presence channel, driven by JSON commands on stdin.
// It attaches, subscribes to every presence event (reported as `presence`
// events) and to its connection and channel states, reports `ready`, then runs
// each command and answers `ok` (or `failed` with the ErrorInfo):
//   {cmd: 'enter'|'update'|'leave', data?}      presence.enter/update/leave
//   {cmd: 'enterClient'|'leaveClient', clientId, data?}
//   {cmd: 'get', waitForSync?}                 answers with the members
//   {cmd: 'restGet', limit?}                   Ably.Rest presence.get(), every page followed
//   {cmd: 'close'}                             connection.close(), then exits
import * as readline from 'node:readline';
import * as Ably from 'ably';
import { config, emit, realtime, connected, errorInfo, logErrors, main } from './common.mjs';

function describe(p) {
  return {
    action: p.action, clientId: p.clientId ?? null, connectionId: p.connectionId, id: p.id ?? null,
    timestamp: p.timestamp ?? null, data: p.data ?? null,
  };
}

await main(async () => {
  const client = realtime(config.clientId ? { clientId: config.clientId } : {});
  client.connection.on((c) => {
    const details = client.connection.connectionManager?.connectionDetails;
    emit('conn', { current: c.current, previous: c.previous, reason: errorInfo(c.reason),
      id: client.connection.id, serverId: details?.serverId ?? null });
  });
  const id = await connected(client);
  const channel = client.channels.get(config.channel);
  channel.on((c) => emit('chan', { current: c.current, change: c.event, resumed: !!c.resumed, reason: errorInfo(c.reason) }));
  await channel.presence.subscribe((p) => emit('presence', describe(p)));
  const details = client.connection.connectionManager.connectionDetails;
  emit('ready', { id, serverId: details?.serverId ?? null, transport: client.connection.connectionManager.activeProtocol?.getTransport()?.shortName ?? null });

  const done = new Promise((resolve) => {
    const rl = readline.createInterface({ input: process.stdin });
    let queue = Promise.resolve();
    rl.on('line', (line) => {
      const cmd = JSON.parse(line);
      queue = queue.then(() => run(cmd)).then((r) => { if (r === 'exit') resolve(); });
    });
    rl.on('close', resolve);
  });

  async function run(cmd) {
    const p = channel.presence;
    try {
      let result = null;
      switch (cmd.cmd) {
        case 'enter': await p.enter(cmd.data); break;
        case 'update': await p.update(cmd.data); break;
        case 'leave': await p.leave(cmd.data); break;
        case 'enterClient': await p.enterClient(cmd.clientId, cmd.data); break;
        case 'leaveClient': await p.leaveClient(cmd.clientId, cmd.data); break;
        case 'get': result = (await p.get({ waitForSync: cmd.waitForSync ?? true })).map(describe); break;
        case 'restGet': {
          const rest = new Ably.Rest({
            key: config.key, endpoint: '127.0.0.1', port: config.port, tls: false,
            useBinaryProtocol: config.binary,
          });
          let page = await rest.channels.get(config.channel).presence.get(cmd.limit ? { limit: cmd.limit } : {});
          const items = [...page.items];
          let pages = 1;
          while (page.hasNext()) {
            page = await page.next();
            items.push(...page.items);
            pages += 1;
          }
          result = { members: items.map(describe), pages };
          break;
        }
        case 'close':
          client.close();
          await client.connection.once('closed');
          emit('ok', { cmd: cmd.cmd, tag: cmd.tag ?? null });
          return 'exit';
        default: throw new Error(`unknown command ${cmd.cmd}`);
      }
      emit('ok', { cmd: cmd.cmd, tag: cmd.tag ?? null, result });
    } catch (err) {
      emit('failed', { cmd: cmd.cmd, tag: cmd.tag ?? null, error: errorInfo(err), logErrors });
    }
    return null;
  }
  await done;
});
