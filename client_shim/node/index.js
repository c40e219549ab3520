'use strict';
// agent-telemetry Node shim: fire-and-forget events to the local daemon's ingest.sock.
// No dependencies. track() never throws and never waits; see README.md.

const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');

const MAX_EVENT_NAME = 200;
const MAX_AGENT_NAME = 100;
const MAX_LINE_BYTES = 64 * 1024; // the daemon skips longer lines (DESIGN §6)
// The daemon's default limits on properties (DESIGN §5): an event beyond them would be
// refused there, so it is dropped and counted here instead.
const MAX_PROPERTIES_BYTES = 32 * 1024;
const MAX_DEPTH = 10; // the properties object itself is level 1
const MAX_TIMESTAMP_MS = 253402300800000; // 10000-01-01T00:00:00Z; the daemon takes 1970-9999
// The same caps as the Python shim: at most this many events, and bytes, wait for the daemon.
const MAX_BACKLOG_EVENTS = 50000;
const MAX_BACKLOG_BYTES = 8 * 1024 * 1024;
const WRITE_CHUNK_BYTES = 64 * 1024;
// Bytes handed to the socket but not yet taken by the kernel; above this we keep lines in
// our own bounded backlog instead of letting Node's write buffer grow without limit.
const SOCKET_HIGH_WATER = 256 * 1024;
const BACKOFF_MIN_MS = 50;
const BACKOFF_MAX_MS = 5000;
// A write still waiting for the daemon keeps Node's event loop alive, so a daemon that stops
// reading would keep the agent from exiting. After this long without progress we hang up,
// count what was buffered as lost, and retry later with backoff.
const STALL_MS = 500;
// process.exit() leaves no time for the event loop: what is queued then is written
// synchronously, waiting at most this long for a daemon that is slow to take it.
const EXIT_SYNC_STALL_MS = 100;
const EXIT_SYNC_BUDGET_MS = 500;
const CONTROL = /[\x00-\x1f\x7f]/;
const OFFSET = /(?:Z|[+-]\d\d:?\d\d)$/i;
const OPTIONS = new Set(['timestamp', 'uuid', 'agent']);
const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

// `~` and `~/…` as Python's expanduser() reads them (the daemon is Python): $HOME, else the
// account's home; `~name` only for this process's own user name. Throws when it cannot.
function expandUser(value) {
  if (!value.startsWith('~')) return value;
  const slash = value.indexOf('/');
  const name = slash === -1 ? value.slice(1) : value.slice(1, slash);
  const rest = slash === -1 ? '' : value.slice(slash);
  let home;
  if (!name) home = os.homedir();
  else if (name === os.userInfo().username) home = os.userInfo().homedir;
  else throw new Error(`cannot expand ~${name}`);
  return home + rest;
}

function runtimeDir(env = process.env, platform = process.platform) {
  if (env.AGENT_TELEMETRY_HOME) {
    return path.join(path.resolve(expandUser(env.AGENT_TELEMETRY_HOME)), 'run');
  }
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'agent-telemetry');
  if (platform === 'darwin') return path.join(env.TMPDIR || '/tmp', 'agent-telemetry');
  return `/tmp/agent-telemetry-${process.getuid ? process.getuid() : 0}`;
}

function ingestSocketPath(env = process.env, platform = process.platform) {
  return path.join(runtimeDir(env, platform), 'ingest.sock');
}

// -- UUIDv7 (RFC 9562): 48-bit ms, then a 42-bit counter seeded randomly each ms ----------

const random = Buffer.alloc(4096);
let randomOffset = random.length;
function randomUint32() {
  if (randomOffset + 4 > random.length) {
    crypto.randomFillSync(random);
    randomOffset = 0;
  }
  const value = random.readUInt32BE(randomOffset);
  randomOffset += 4;
  return value;
}

const TWO_30 = 2 ** 30;
let lastMs = 0;
let counter = 0;

function seedCounter() {
  // 41 random bits: the top bit stays clear so a millisecond has room to count up.
  return (randomUint32() >>> 21) * 2 ** 30 + (randomUint32() >>> 2);
}

function uuid7(ms) {
  let time = ms === undefined ? Math.max(Date.now(), lastMs) : ms;
  let count;
  if (time > lastMs) {
    lastMs = time;
    counter = seedCounter();
    count = counter;
  } else if (time === lastMs) {
    counter += 1;
    if (counter >= 2 ** 42) {
      lastMs = time = time + 1;
      counter = seedCounter();
    }
    count = counter;
  } else {
    count = seedCounter(); // an earlier time keeps its timestamp; randomness keeps it unique
  }
  const hi = Math.floor(count / TWO_30); // 12 bits: rand_a
  const lo = count % TWO_30; // 30 bits: top of rand_b
  const t = time.toString(16).padStart(12, '0');
  const a = (0x7000 | hi).toString(16);
  const b = (0x8000 | Math.floor(lo / 2 ** 16)).toString(16);
  const c = (lo % 2 ** 16).toString(16).padStart(4, '0') + randomUint32().toString(16).padStart(8, '0');
  return `${t.slice(0, 8)}-${t.slice(8)}-${a}-${b}-${c}`;
}

// -- settings ---------------------------------------------------------------------------

function cleanAgent(name) {
  return String(name).replace(/[\x00-\x1f\x7f]/g, '').slice(0, MAX_AGENT_NAME);
}

function defaultAgent(env = process.env) {
  const fromEnv = cleanAgent(env.AGENT_TELEMETRY_AGENT || '');
  if (fromEnv) return fromEnv;
  const script = process.argv[1] ? path.basename(process.argv[1]) : '';
  return cleanAgent(script.replace(/\.(?:c|m)?js$/, '')) || 'node';
}

function envDisabled(env = process.env) {
  return ['1', 'true', 'yes', 'on'].includes(String(env.AGENT_TELEMETRY_DISABLED || '').trim().toLowerCase());
}

// The socket path, or null when the environment gives none that can be reached: a home of
// `~someone-else`, or a relative one while the working directory is gone. Events are then
// dropped and counted as `no_socket_path`; requiring the shim must never throw.
function socketPathOrNull() {
  try {
    return ingestSocketPath();
  } catch {
    return null;
  }
}

const settings = { disabled: envDisabled(), agent: defaultAgent(), socketPath: socketPathOrNull() };

function configure(options = {}) {
  try {
    settings.disabled = options.disabled === undefined ? envDisabled() : Boolean(options.disabled);
    settings.agent = options.agent ? cleanAgent(options.agent) : defaultAgent();
    settings.socketPath = options.socketPath ? String(options.socketPath) : socketPathOrNull();
    if (state.checking) {
      state.checking = false;
      state.generation += 1; // the ownership check under way was for the old path
    }
    if (state.sock) state.sock.destroy(); // reconnect to the (maybe new) path
    state.backoff = BACKOFF_MIN_MS;
    pump();
  } catch {
    // Configuration mistakes must not break the agent either.
  }
}

// -- encoding -----------------------------------------------------------------------------

function checkName(field, value, limit) {
  if (typeof value !== 'string') throw new TypeError(`${field} must be a string`);
  if (value.length < 1 || value.length > limit || CONTROL.test(value) || !wellFormed(value)) {
    throw new RangeError(`${field} must be 1-${limit} characters without control characters`);
  }
  return value;
}

function isoTimestamp(value) {
  let ms;
  if (value instanceof Date) ms = value.getTime();
  else if (typeof value === 'string' && OFFSET.test(value)) ms = Date.parse(value);
  else throw new TypeError('timestamp must be a Date or an RFC 3339 string with an offset');
  if (!Number.isFinite(ms)) throw new RangeError('timestamp is not a valid time');
  if (ms < 0 || ms >= MAX_TIMESTAMP_MS) throw new RangeError('timestamp must be between 1970 and 9999');
  return new Date(ms).toISOString();
}

class TooLarge extends RangeError {}

// JSON.stringify would quietly change what it cannot represent: NaN and Infinity become
// null, a Set or Map {}, a Date a string, functions and undefined vanish, a lone surrogate
// goes out as text the daemon rejects. Such an event is refused (`invalid`), as Python does.
const wellFormed =
  typeof String.prototype.isWellFormed === 'function'
    ? (text) => text.isWellFormed()
    : (text) => !/[\ud800-\udfff]/.test(text) || !LONE_SURROGATE.test(text);
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function checkValue(value, depth) {
  switch (typeof value) {
    case 'string':
      if (!wellFormed(value)) throw new TypeError('a string is not valid Unicode');
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('numbers must be finite');
      return;
    case 'boolean':
      return;
    case 'object':
      if (value === null) return;
      checkObject(value, depth);
      return;
    default: // undefined, function, symbol, bigint
      throw new TypeError(`a ${typeof value} is not JSON`);
  }
}

function checkObject(value, depth) {
  if (depth > MAX_DEPTH) throw new TypeError(`properties are nested deeper than ${MAX_DEPTH} levels`);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) checkValue(value[i], depth + 1);
    return;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw new TypeError('objects in properties must be plain objects');
  }
  for (const key of Object.keys(value)) {
    if (!wellFormed(key)) throw new TypeError('a property name is not valid Unicode');
    checkValue(value[key], depth + 1);
  }
}

function encodeEvent(event, properties, options = {}, nowMs = Date.now()) {
  let line = '{"event":' + JSON.stringify(checkName('event', event, MAX_EVENT_NAME));
  if (properties !== undefined && properties !== null) {
    if (typeof properties !== 'object' || Array.isArray(properties)) {
      throw new TypeError('properties must be an object');
    }
    checkObject(properties, 1);
    const body = JSON.stringify(properties);
    // Bytes as the daemon counts them: UTF-8, at most 3 bytes a UTF-16 unit.
    if (body.length * 3 > MAX_PROPERTIES_BYTES && Buffer.byteLength(body) > MAX_PROPERTIES_BYTES) {
      throw new TooLarge('properties too large');
    }
    line += ',"properties":' + body;
  }
  for (const key of Object.keys(options)) {
    if (!OPTIONS.has(key)) throw new TypeError(`unknown option ${key}`);
  }
  const timestamp = options.timestamp == null ? new Date(nowMs).toISOString() : isoTimestamp(options.timestamp);
  let uuid;
  if (options.uuid == null) uuid = uuid7(nowMs);
  else if (typeof options.uuid === 'string' && CANONICAL_UUID.test(options.uuid.toLowerCase())) {
    uuid = options.uuid.toLowerCase();
  } else throw new TypeError('uuid must be a UUID string');
  // An empty or missing agent falls back to the process's name, as in the Python shim.
  const agent = options.agent ? checkName('agent', options.agent, MAX_AGENT_NAME) : settings.agent;
  line += `,"timestamp":"${timestamp}","uuid":"${uuid}","agent":${JSON.stringify(agent)}}\n`;
  if (line.length * 3 > MAX_LINE_BYTES && Buffer.byteLength(line) > MAX_LINE_BYTES) {
    throw new TooLarge('event too large');
  }
  return line;
}

// -- sending ------------------------------------------------------------------------------

const state = {
  sock: null,
  connected: false,
  checking: false, // the ownership check of the socket file is under way
  generation: 0, // bumped by configure() so that a check for an old path is ignored
  backlog: [],
  backlogBytes: 0,
  inFlight: 0, // lines handed to the socket whose write has not completed
  unacked: new Set(), // those lines, as [chunk, count]: resent at process.exit()
  backoff: BACKOFF_MIN_MS,
  timer: null,
  connectFailures: 0,
  watchdog: null,
  lastProgress: 0,
  stalled: false,
  hungUp: false, // the last connection was dropped because the daemon stopped reading
  exitFlush: false,
  sent: 0,
  drops: { backlog_full: 0, invalid: 0, too_large: 0, disabled: 0, no_socket_path: 0, connection_lost: 0 },
};

function track(event, properties, options) {
  try {
    if (settings.disabled) {
      state.drops.disabled += 1;
      return;
    }
    if (settings.socketPath === null) {
      state.drops.no_socket_path += 1;
      return;
    }
    const line = encodeEvent(event, properties, options || {});
    state.backlog.push(line);
    state.backlogBytes += line.length;
    if (state.backlog.length > MAX_BACKLOG_EVENTS || state.backlogBytes > MAX_BACKLOG_BYTES) dropOldest();
    pump();
  } catch (error) {
    if (error instanceof TooLarge) state.drops.too_large += 1;
    else state.drops.invalid += 1;
  }
}

function dropOldest() {
  // An eighth at a time: shifting one line off a full backlog would copy the whole array
  // on every call.
  let count = 0;
  let bytes = 0;
  const events = state.backlog.length - (MAX_BACKLOG_EVENTS - (MAX_BACKLOG_EVENTS >> 3));
  const excess = state.backlogBytes - (MAX_BACKLOG_BYTES - (MAX_BACKLOG_BYTES >> 3));
  while (count < state.backlog.length && (count < events || bytes < excess)) {
    bytes += state.backlog[count].length;
    count += 1;
  }
  state.backlog.splice(0, count);
  state.backlogBytes -= bytes;
  state.drops.backlog_full += count;
}

function pump() {
  if (!state.sock) {
    if (!state.timer && !state.checking && state.backlog.length) connect();
    return;
  }
  if (!state.connected) return;
  const sock = state.sock;
  while (state.backlog.length && sock.writableLength < SOCKET_HIGH_WATER) {
    let size = 0;
    let count = 0;
    while (count < state.backlog.length && (size < WRITE_CHUNK_BYTES || count === 0)) {
      size += state.backlog[count].length;
      count += 1;
    }
    const chunk = state.backlog.splice(0, count).join('');
    state.backlogBytes -= size;
    state.inFlight += count;
    const entry = [chunk, count];
    state.unacked.add(entry);
    // Node keeps the unwritten tail of a chunk itself, so a line is never cut short on a
    // live connection; lines still buffered when the connection dies are counted as lost.
    sock.write(chunk, (error) => {
      state.inFlight -= count;
      state.unacked.delete(entry);
      state.lastProgress = Date.now();
      if (error) state.drops.connection_lost += count;
      else state.sent += count;
      // A write Node completes while destroying a stalled socket is no sign of a reader.
      if (!error && !sock.destroyed) state.hungUp = false;
    });
  }
  if (state.inFlight) watchForStall();
}

function watchForStall() {
  if (state.watchdog) return;
  state.lastProgress = Date.now();
  state.watchdog = setInterval(() => {
    if (!state.inFlight || !state.sock) {
      clearInterval(state.watchdog);
      state.watchdog = null;
    } else if (Date.now() - state.lastProgress > STALL_MS) {
      state.stalled = true;
      state.hungUp = true;
      state.sock.destroy();
    }
  }, STALL_MS / 5);
  state.watchdog.unref(); // the pending write, not this timer, is what keeps the loop alive
}

function ownedByUs(stat) {
  return !process.getuid || stat.uid === process.getuid();
}

function connect() {
  const socketPath = settings.socketPath;
  if (socketPath === null) return;
  // A socket another user put in our path would read every event we send. The check is a
  // stat() on libuv's thread pool: no file system work on the caller's path.
  state.checking = true;
  const generation = state.generation;
  fs.stat(socketPath, (error, stat) => {
    if (generation !== state.generation) return; // configure() moved on meanwhile
    state.checking = false;
    if (error || !ownedByUs(stat)) failed();
    else openSocket(socketPath);
  });
}

function openSocket(socketPath) {
  let sock;
  try {
    sock = net.createConnection({ path: socketPath });
  } catch {
    failed();
    return;
  }
  // An idle connection must not keep the agent alive; pending connects and writes do,
  // and the stall watchdog bounds how long.
  sock.unref();
  state.sock = sock;
  state.connected = false;
  sock.on('connect', () => {
    state.connected = true;
    state.backoff = BACKOFF_MIN_MS;
    pump();
  });
  sock.on('drain', pump);
  sock.on('error', () => {}); // 'close' follows; an unhandled 'error' would throw
  sock.on('close', () => {
    const retryNow = state.connected && !state.stalled;
    if (state.sock === sock) {
      state.sock = null;
      state.connected = false;
    }
    state.stalled = false;
    // A daemon that restarted gets the backlog at once; one that is down or stalled, later.
    if (!retryNow) failed();
    else if (state.backlog.length) pump();
  });
}

function failed() {
  state.connectFailures += 1;
  if (state.exitFlush) return; // leaving anyway: no retries
  const delay = state.backoff;
  state.backoff = Math.min(state.backoff * 2, BACKOFF_MAX_MS);
  state.timer = setTimeout(() => {
    state.timer = null;
    pump();
  }, delay);
  state.timer.unref();
}

function pending() {
  return state.backlog.length + state.inFlight;
}

function stats() {
  const dropped = Object.values(state.drops).reduce((a, b) => a + b, 0);
  return {
    queued: pending(),
    sent: state.sent,
    dropped,
    drops: { ...state.drops },
    connected: state.connected,
    connectFailures: state.connectFailures,
    disabled: settings.disabled,
    agent: settings.agent,
    socketPath: settings.socketPath,
  };
}

/** Resolve true once every queued event is written, false after `timeoutMs`. */
function flush(timeoutMs = 1000) {
  return new Promise((resolve) => {
    const deadline = Date.now() + timeoutMs;
    if (state.timer) {
      clearTimeout(state.timer); // cut a reconnect backoff short
      state.timer = null;
    }
    pump();
    const check = () => {
      if (pending() === 0) resolve(true);
      else if (Date.now() >= deadline) resolve(false);
      else {
        if (!state.sock && !state.timer) pump();
        setTimeout(check, 5);
      }
    };
    check();
  });
}

// Events waiting out a reconnect backoff get one last connect attempt when the agent is
// done; the timer alone would not keep the process alive for them. Not after a daemon
// that stopped reading was hung up on: it already cost STALL_MS, and would again.
process.once('beforeExit', () => {
  if (!state.backlog.length || state.sock || state.checking || state.hungUp) return;
  state.exitFlush = true;
  if (state.timer) {
    clearTimeout(state.timer);
    state.timer = null;
  }
  pump();
});

// At process.exit() (or after a hang-up) no callback will ever run again: write what is
// left synchronously on a fresh connection. Lines already handed to the old connection are
// sent again, since some of them may not have reached the daemon; it keeps each uuid once.
process.on('exit', () => {
  try {
    writeAtExit();
  } catch {
    // Best effort: never turn an exit into a crash.
  }
});

function writeAtExit() {
  if (!state.backlog.length && !state.unacked.size) return;
  const socketPath = settings.socketPath;
  if (socketPath === null || !ownedByUs(fs.statSync(socketPath))) return; // stat throws when down
  // net.Socket connects a Unix socket inside createConnection() and exposes its descriptor;
  // writeSync() on it is the only way to send without the event loop.
  const sock = net.createConnection({ path: socketPath });
  sock.on('error', () => {});
  const fd = sock._handle && sock._handle.fd;
  if (typeof fd !== 'number' || fd < 0) return;
  const chunks = [...state.unacked].map(([chunk]) => chunk);
  chunks.push(state.backlog.join(''));
  const data = Buffer.from(chunks.join(''));
  const start = Date.now();
  let offset = 0;
  let progressAt = start;
  while (offset < data.length) {
    try {
      offset += fs.writeSync(fd, data, offset);
      progressAt = Date.now();
    } catch (error) {
      if (error.code !== 'EAGAIN') break; // not connected (daemon down) or gone
      const now = Date.now();
      // A daemon that stopped reading gets nothing more; a reading one, bounded time.
      if (state.hungUp || now - progressAt > EXIT_SYNC_STALL_MS || now - start > EXIT_SYNC_BUDGET_MS) break;
      Atomics.wait(EXIT_SLEEP, 0, 0, 1); // sleep 1 ms without spinning
    }
  }
  sock.destroy();
}

const EXIT_SLEEP = new Int32Array(new SharedArrayBuffer(4));

module.exports = {
  track,
  flush,
  stats,
  configure,
  uuid7,
  encodeEvent,
  runtimeDir,
  ingestSocketPath,
};
