'use strict';
// agent-telemetry Node shim: fire-and-forget events to the local daemon's ingest.sock.
// No dependencies. track() never throws and never waits; see README.md.

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const crypto = require('node:crypto');

const MAX_EVENT_NAME = 200;
const MAX_AGENT_NAME = 100;
const MAX_LINE_BYTES = 64 * 1024; // the daemon skips longer lines (DESIGN §6)
const MAX_BACKLOG_EVENTS = 20000;
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
const CONTROL = /[\x00-\x1f\x7f]/;
const OFFSET = /(?:Z|[+-]\d\d:?\d\d)$/i;
const OPTIONS = new Set(['timestamp', 'uuid', 'agent']);
const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function runtimeDir(env = process.env, platform = process.platform) {
  if (env.AGENT_TELEMETRY_HOME) return path.join(path.resolve(env.AGENT_TELEMETRY_HOME), 'run');
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

const settings = { disabled: envDisabled(), agent: defaultAgent(), socketPath: ingestSocketPath() };

function configure(options = {}) {
  try {
    settings.disabled = options.disabled === undefined ? envDisabled() : Boolean(options.disabled);
    settings.agent = options.agent ? cleanAgent(options.agent) : defaultAgent();
    settings.socketPath = options.socketPath || ingestSocketPath();
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
  if (value.length < 1 || value.length > limit || CONTROL.test(value)) {
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
  return new Date(ms).toISOString();
}

class TooLarge extends RangeError {}

function encodeEvent(event, properties, options = {}, nowMs = Date.now()) {
  const doc = { event: checkName('event', event, MAX_EVENT_NAME) };
  if (properties !== undefined && properties !== null) {
    if (typeof properties !== 'object' || Array.isArray(properties)) {
      throw new TypeError('properties must be an object');
    }
    doc.properties = properties;
  }
  for (const key of Object.keys(options)) {
    if (!OPTIONS.has(key)) throw new TypeError(`unknown option ${key}`);
  }
  doc.timestamp = options.timestamp == null ? new Date(nowMs).toISOString() : isoTimestamp(options.timestamp);
  if (options.uuid == null) doc.uuid = uuid7(nowMs);
  else if (typeof options.uuid === 'string' && CANONICAL_UUID.test(options.uuid.toLowerCase())) {
    doc.uuid = options.uuid.toLowerCase();
  } else throw new TypeError('uuid must be a UUID string');
  doc.agent = options.agent == null ? settings.agent : checkName('agent', options.agent, MAX_AGENT_NAME);
  const line = JSON.stringify(doc) + '\n';
  if (Buffer.byteLength(line) > MAX_LINE_BYTES) throw new TooLarge('event too large');
  return line;
}

// -- sending ------------------------------------------------------------------------------

const state = {
  sock: null,
  connected: false,
  backlog: [],
  backlogBytes: 0,
  inFlight: 0, // lines handed to the socket whose write has not completed
  backoff: BACKOFF_MIN_MS,
  timer: null,
  connectFailures: 0,
  watchdog: null,
  lastProgress: 0,
  stalled: false,
  exitFlush: false,
  sent: 0,
  drops: { backlog_full: 0, invalid: 0, too_large: 0, disabled: 0, connection_lost: 0 },
};

function track(event, properties, options) {
  try {
    if (settings.disabled) {
      state.drops.disabled += 1;
      return;
    }
    const line = encodeEvent(event, properties, options || {});
    state.backlog.push(line);
    state.backlogBytes += line.length;
    while (state.backlog.length > MAX_BACKLOG_EVENTS || state.backlogBytes > MAX_BACKLOG_BYTES) {
      state.backlogBytes -= state.backlog.shift().length; // oldest first
      state.drops.backlog_full += 1;
    }
    pump();
  } catch (error) {
    if (error instanceof TooLarge) state.drops.too_large += 1;
    else state.drops.invalid += 1;
  }
}

function pump() {
  if (!state.sock) {
    if (!state.timer && state.backlog.length) connect();
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
    // Node keeps the unwritten tail of a chunk itself, so a line is never cut short on a
    // live connection; lines still buffered when the connection dies are counted as lost.
    sock.write(chunk, (error) => {
      state.inFlight -= count;
      state.lastProgress = Date.now();
      if (error) state.drops.connection_lost += count;
      else state.sent += count;
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
      state.sock.destroy();
    }
  }, STALL_MS / 5);
  state.watchdog.unref(); // the pending write, not this timer, is what keeps the loop alive
}

function ownedByUs(socketPath) {
  if (!process.getuid) return true;
  return fs.statSync(socketPath).uid === process.getuid();
}

function connect() {
  const socketPath = settings.socketPath;
  let sock;
  try {
    if (!ownedByUs(socketPath)) throw new Error('ingest socket belongs to another user');
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
// done; the timer alone would not keep the process alive for them.
process.once('beforeExit', () => {
  if (!state.backlog.length || state.sock) return;
  state.exitFlush = true;
  if (state.timer) {
    clearTimeout(state.timer);
    state.timer = null;
  }
  pump();
});

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
