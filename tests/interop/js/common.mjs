// Shared helpers for the interop scripts: the test (pytest, trio) starts a
// script with its config as JSON in the last argv item, reads JSON events from
// stdout (one per line).
import * as Ably from 'ably';

export const config = JSON.parse(process.argv[process.argv.length - 1]);

export function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Ably errors logged by the SDK (logLevel 1 = errors only), e.g. 90009.
export const logErrors = [];

export function realtime(overrides = {}) {
  const auth = config.token
    ? { authCallback: (_params, cb) => cb(null, config.token) }
    : { key: config.key };
  const opts = {
    endpoint: '127.0.0.1',
    port: config.port,
    tls: false,
    disableConnectivityCheck: true,
    useBinaryProtocol: config.binary,
    // A refused reconnect must be retried quickly, not after the 15 s default.
    disconnectedRetryTimeout: 300,
    strictMode: true,
    logLevel: 1,
    logHandler: (msg) => logErrors.push(String(msg)),
    // e.g. ['comet'] to force the HTTP long-poll transport (PROTOCOL.md 6.1).
    ...(config.transports ? { transports: config.transports } : {}),
    ...auth,
    ...overrides,
  };
  return new Ably.Realtime(opts);
}

// Resolve when `predicate()` holds, re-checked on every `poke()`.
export class Condition {
  constructor() {
    this.waiters = [];
  }
  wait(predicate, what, timeoutMs = 15000) {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
      this.waiters.push({ predicate, resolve: () => { clearTimeout(timer); resolve(); } });
    });
  }
  poke() {
    this.waiters = this.waiters.filter((w) => {
      if (!w.predicate()) return true;
      w.resolve();
      return false;
    });
  }
}

export function errorInfo(err) {
  if (!err) return null;
  return { code: err.code ?? null, statusCode: err.statusCode ?? null, message: String(err.message ?? err) };
}

export function describeMessage(msg) {
  let data = msg.data;
  if (Buffer.isBuffer(data) || data instanceof Uint8Array || data instanceof ArrayBuffer) {
    data = { buffer: Buffer.from(data).toString('base64') };
  }
  return {
    id: msg.id,
    name: msg.name,
    data,
    encoding: msg.encoding ?? null,
    serial: msg.serial ?? null,
    connectionId: msg.connectionId,
    clientId: msg.clientId ?? null,
    timestamp: msg.timestamp,
  };
}

// Record every connection and channel state change, for the result.
export function track(client, channel, log) {
  client.connection.on((c) => {
    log.push({ kind: 'connection', current: c.current, previous: c.previous, reason: errorInfo(c.reason), id: client.connection.id });
  });
  if (channel) {
    channel.on((c) => {
      log.push({ kind: 'channel', event: c.event, current: c.current, previous: c.previous, resumed: !!c.resumed, reason: errorInfo(c.reason) });
    });
  }
}

export async function connected(client) {
  if (client.connection.state !== 'connected') await client.connection.once('connected');
  return client.connection.id;
}

// Run the script; any exception becomes a `fatal` event and a non-zero exit.
export async function main(fn) {
  const guard = setTimeout(() => {
    emit('fatal', { error: 'script timeout' });
    process.exit(3);
  }, config.timeoutMs ?? 40000);
  try {
    await fn();
    clearTimeout(guard);
    emit('done');
    process.exit(0);
  } catch (err) {
    emit('fatal', { error: String(err?.stack ?? err), code: err?.code ?? null, logErrors });
    process.exit(1);
  }
}
