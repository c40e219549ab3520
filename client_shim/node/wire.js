'use strict';
// The wire format agents send to ingest.sock: one JSON object a line (as the Python shim's
// _wire.py writes it), UUIDv7 ids, and the drop-count line.

const crypto = require('node:crypto');

const MAX_EVENT_NAME = 200;
const MAX_AGENT_NAME = 100;
const MAX_LINE_BYTES = 64 * 1024; // the daemon skips longer lines
// The daemon's default limits on properties: an event beyond them would be refused there,
// so it is dropped and counted by the shim instead.
const MAX_PROPERTIES_BYTES = 32 * 1024;
const MAX_DEPTH = 10; // the properties object itself is level 1
const MAX_KEYS = 256; // keys of the properties object and of every object nested in it
const MAX_TIMESTAMP_MS = 253402300800000; // 10000-01-01T00:00:00Z; the daemon takes 1970-9999
// RFC 3339 text is never longer ("9999-12-31T23:59:59.999999999+00:00" is 35): a longer
// string is refused before it is parsed. Ids likewise, by their fixed length.
const MAX_TIMESTAMP_TEXT = 64;
const CONTROL = /[\x00-\x1f\x7f]/;
const OFFSET = /(?:Z|[+-]\d\d:?\d\d)$/i;
const OPTIONS = new Set(['timestamp', 'uuid', 'agent', 'trace_id', 'span_id', 'parent_span_id']);
const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const HEX_ID = { 32: /^[0-9a-f]{32}$/, 16: /^[0-9a-f]{16}$/ };
const TRACE_FIELDS = [
  ['trace_id', 32],
  ['span_id', 16],
  ['parent_span_id', 16],
];

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

// -- encoding -----------------------------------------------------------------------------

function checkName(field, value, limit) {
  if (typeof value !== 'string') throw new TypeError(`${field} must be a string`);
  if (value.length < 1 || codePoints(value, limit) > limit || CONTROL.test(value) || !wellFormed(value)) {
    throw new RangeError(`${field} must be 1-${limit} characters without control characters`);
  }
  return value;
}

// Characters as the daemon (Python) counts them: code points, not UTF-16 units, so an
// emoji is one. Counted only when the units alone could be over `limit`.
function codePoints(text, limit) {
  if (text.length <= limit) return text.length;
  if (text.length > 2 * limit) return text.length; // over even if every one is a pair
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

// `name` cut to at most `limit` characters, never between the halves of a pair.
function truncate(name, limit) {
  return codePoints(name, limit) <= limit ? name : Array.from(name).slice(0, limit).join('');
}

function isoTimestamp(value) {
  let ms;
  if (value instanceof Date) ms = value.getTime();
  else if (typeof value === 'string' && value.length <= MAX_TIMESTAMP_TEXT && OFFSET.test(value)) {
    ms = Date.parse(value);
  }
  else throw new TypeError('timestamp must be a Date or an RFC 3339 string with an offset');
  if (!Number.isFinite(ms)) throw new RangeError('timestamp is not a valid time');
  if (ms < 0 || ms >= MAX_TIMESTAMP_MS) throw new RangeError('timestamp must be between 1970 and 9999');
  return new Date(ms).toISOString();
}

// JSON.stringify would quietly change what it cannot represent: NaN and Infinity become
// null, a Set or Map {}, a Date a string, functions and undefined vanish, a lone surrogate
// goes out as text the daemon rejects. Such an event is refused (`invalid`), as Python does.
const wellFormed =
  typeof String.prototype.isWellFormed === 'function'
    ? (text) => text.isWellFormed()
    : (text) => !/[\ud800-\udfff]/.test(text) || !LONE_SURROGATE.test(text);
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

// `tally` is what the properties hold so far: `keys` counted as the daemon counts them
// (every object's, nested ones included) and `least`, a lower bound of their encoded size.
function checkValue(value, depth, tally) {
  switch (typeof value) {
    case 'string':
      // Its quotes, less the byte countItems() gave it; a UTF-16 unit is at least one byte
      // of UTF-8. Counted before the string is read: a string of megabytes is refused
      // without being checked or encoded on the caller's time, as the Python shim does.
      tally.least += value.length + 1;
      if (tally.least > MAX_PROPERTIES_BYTES) throw new TooLargeError('properties too large');
      if (!wellFormed(value)) throw new TypeError('a string is not valid Unicode');
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('numbers must be finite');
      return;
    case 'boolean':
      return;
    case 'object':
      if (value === null) return;
      checkObject(value, depth, tally);
      return;
    default: // undefined, function, symbol, bigint
      throw new TypeError(`a ${typeof value} is not JSON`);
  }
}

function checkObject(value, depth, tally) {
  if (depth > MAX_DEPTH) throw new TypeError(`properties are nested deeper than ${MAX_DEPTH} levels`);
  if (Array.isArray(value)) {
    countItems(value.length, tally);
    for (let i = 0; i < value.length; i++) checkValue(value[i], depth + 1, tally);
    return;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw new TypeError('objects in properties must be plain objects');
  }
  const keys = Object.keys(value);
  tally.keys += keys.length;
  if (tally.keys > MAX_KEYS) throw new TypeError(`properties have more than ${MAX_KEYS} keys`);
  countItems(keys.length, tally);
  for (const key of keys) {
    tally.least += key.length + 3; // its quotes and the colon, counted before it is read
    if (tally.least > MAX_PROPERTIES_BYTES) throw new TooLargeError('properties too large');
    if (!wellFormed(key)) throw new TypeError('a property name is not valid Unicode');
    checkValue(value[key], depth + 1, tally);
  }
}

// Each item takes two bytes at the least: one of its own, and a comma or the closing
// bracket after it. A container with more than could ever fit is refused before its items
// are looked at or encoded, which for an array of millions would take the caller's time.
function countItems(count, tally) {
  tally.least += 2 * count;
  if (tally.least > MAX_PROPERTIES_BYTES) throw new TooLargeError('properties too large');
}

// `defaultAgent` names the source when options.agent is empty or missing; `localOnly` asks
// the daemon to keep the event for the user and never upload it (DO_NOT_TRACK).
function encodeEvent(
  event,
  properties,
  options = {},
  nowMs = Date.now(),
  defaultAgent = 'node',
  localOnly = false,
) {
  let line = '{"event":' + JSON.stringify(checkName('event', event, MAX_EVENT_NAME));
  if (properties !== undefined && properties !== null) {
    if (typeof properties !== 'object' || Array.isArray(properties)) {
      throw new TypeError('properties must be an object');
    }
    checkObject(properties, 1, { keys: 0, least: 1 });
    const body = JSON.stringify(properties);
    // Bytes as the daemon counts them: UTF-8, at most 3 bytes a UTF-16 unit.
    if (body.length * 3 > MAX_PROPERTIES_BYTES && Buffer.byteLength(body) > MAX_PROPERTIES_BYTES) {
      throw new TooLargeError('properties too large');
    }
    line += ',"properties":' + body;
  }
  for (const key of Object.keys(options)) {
    if (!OPTIONS.has(key)) throw new TypeError(`unknown option ${key}`);
  }
  const timestamp = options.timestamp == null ? new Date(nowMs).toISOString() : isoTimestamp(options.timestamp);
  let uuid;
  if (options.uuid == null) uuid = uuid7(nowMs);
  else if (
    typeof options.uuid === 'string' &&
    options.uuid.length === 36 &&
    CANONICAL_UUID.test(options.uuid.toLowerCase())
  ) {
    uuid = options.uuid.toLowerCase();
  } else throw new TypeError('uuid must be a UUID string');
  // An empty or missing agent falls back to the process's name, as in the Python shim.
  const agent = options.agent ? checkName('agent', options.agent, MAX_AGENT_NAME) : defaultAgent;
  line += `,"timestamp":"${timestamp}","uuid":"${uuid}","agent":${JSON.stringify(agent)}`;
  line += traceFields(options);
  if (localOnly) line += ',"local_only":true';
  line += '}\n';
  if (line.length * 3 > MAX_LINE_BYTES && Buffer.byteLength(line) > MAX_LINE_BYTES) {
    throw new TooLargeError('event too large');
  }
  return line;
}

// A W3C trace or span id in lower case: `digits` hex digits, not all zero.
function checkHexId(field, value, digits) {
  if (typeof value !== 'string') throw new TypeError(`${field} must be a string`);
  if (value.length !== digits) throw new RangeError(`${field} must be ${digits} hex digits`);
  const lowered = value.toLowerCase();
  if (!HEX_ID[digits].test(lowered) || !/[^0]/.test(lowered)) {
    throw new RangeError(`${field} must be ${digits} hex digits, not all zero`);
  }
  return lowered;
}

function traceFields(options) {
  if (options.trace_id == null && options.span_id == null && options.parent_span_id == null) return '';
  let out = '';
  for (const [field, digits] of TRACE_FIELDS) {
    if (options[field] != null) out += `,"${field}":"${checkHexId(field, options[field], digits)}"`;
  }
  return out;
}

// Random hex ids for spans, from the same pool as the uuids: 128 bits, or 64.
function randomHex(digits) {
  let out = '';
  while (out.length < digits) out += randomUint32().toString(16).padStart(8, '0');
  return /[^0]/.test(out) ? out : randomHex(digits); // all zeros is not a valid id
}

/**
 * The line that reports events an agent lost before the daemon could take them:
 * `{"client_drops": {"<reason>": <count>, ...}, "agent": "<name>"}`, counts since the last
 * such line handed over; the daemon counts them as `dropped_by_reason.client_<reason>`.
 */
function encodeClientDrops(counts, agent) {
  const body = { client_drops: counts };
  if (agent) body.agent = agent;
  return JSON.stringify(body) + '\n';
}

class TooLargeError extends RangeError {}


module.exports = {
  MAX_AGENT_NAME,
  truncate,
  TooLargeError,
  uuid7,
  randomHex,
  encodeEvent,
  encodeClientDrops,
  checkName,
};
