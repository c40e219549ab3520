'use strict';
// Spans: a timed unit of work that becomes one event when it ends. Nesting follows
// AsyncLocalStorage, so spans opened in concurrent async work each get the right parent.

const { AsyncLocalStorage } = require('node:async_hooks');
const { performance } = require('node:perf_hooks');
const { randomHex } = require('./wire.js');

const storage = new AsyncLocalStorage();
const MAX_OPEN_SPANS = 10000;

class Span {
  constructor(name, properties, parent) {
    this.name = name;
    this.properties = properties;
    this.traceId = parent ? parent.traceId : randomHex(32);
    this.spanId = randomHex(16);
    this.parentSpanId = parent ? parent.spanId : null;
    this.startMs = Date.now();
    this.startPerf = performance.now();
    this.ended = false;
  }

  /** Add or replace one property of the span's event; never throws. Returns the span. */
  set(key, value) {
    try {
      this.properties[key] = value;
    } catch {
      // properties that were not an object: the event is counted as invalid
    }
    return this;
  }
}

// What currentSpan() gives outside any span: no ids, and set() goes nowhere.
const DETACHED = Object.freeze({
  name: '',
  properties: Object.freeze({}),
  traceId: '',
  spanId: '',
  parentSpanId: null,
  set() {
    return DETACHED;
  },
});

/** The innermost open span of this async context, or a stand-in whose set() does nothing. */
function currentSpan() {
  return storage.getStore() || DETACHED;
}

// A copy of a plain object's own properties (set() must not change the caller's object);
// anything else is kept as it is, for the encoder to refuse as track() would.
function ownProperties(properties) {
  if (properties == null) return {};
  if (typeof properties !== 'object') return properties;
  const proto = Object.getPrototypeOf(properties);
  if (proto !== Object.prototype && proto !== null) return properties;
  return Object.assign(proto === null ? Object.create(null) : {}, properties);
}

function errorType(error) {
  if (error !== null && typeof error === 'object') {
    try {
      const name = error.constructor && error.constructor.name;
      return typeof name === 'string' && name ? name : 'Error';
    } catch {
      return 'Error'; // a getter that throws (a Proxy, say): the span's event still goes
    }
  }
  return typeof error; // a thrown string or number: its type, never its value
}

function isThenable(value) {
  try {
    return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof value.then === 'function';
  } catch {
    return false;
  }
}

/**
 * `emit(event, properties, options, nowMs)` queues one event; `invalid()` counts a call
 * that could not become one.
 */
function makeSpan(emit, invalid) {
  // Spans begun and not yet ended: process.exit() and a fatal signal end the process
  // without returning to span(), so they are ended from there (endOpen). Bounded: spans
  // whose promise never settles must not grow it for the life of a server.
  const open = new Set();

  // `typeName` names the failure when there is no error object (the process ending).
  function end(span, error, failed, typeName) {
    if (span.ended) return; // one event per span
    span.ended = true;
    open.delete(span);
    try {
      const properties = span.properties;
      if (properties !== null && typeof properties === 'object' && !Array.isArray(properties)) {
        properties.duration_ms = Math.round((performance.now() - span.startPerf) * 1000) / 1000;
        if (failed) {
          // The type only: an error's message may hold user data.
          properties.status = 'error';
          properties.error_type = typeName || errorType(error);
        }
      }
      const options = { trace_id: span.traceId, span_id: span.spanId };
      if (span.parentSpanId) options.parent_span_id = span.parentSpanId;
      emit(span.name, properties, options, span.startMs);
    } catch {
      invalid();
    }
  }

  /**
   * Run `fn(span)` as a span named `name`; returns what fn returns (a promise's result
   * once it settles). One event when it ends, with `timestamp` = its start, `duration_ms`,
   * its trace ids, and when fn throws or rejects `status: "error"` and the error's type.
   * fn's errors go on unchanged; the shim's own never reach the caller.
   */
  function span(name, properties, fn) {
    if (typeof properties === 'function' && fn === undefined) {
      fn = properties;
      properties = undefined;
    }
    if (typeof fn !== 'function') {
      invalid();
      return undefined;
    }
    let current;
    try {
      current = new Span(name, ownProperties(properties), storage.getStore());
    } catch {
      // Properties that throw when copied (a getter, a Proxy): fn still runs, and the span's
      // event, which cannot be made, is counted.
      invalid();
      return fn(DETACHED);
    }
    if (open.size < MAX_OPEN_SPANS) open.add(current);
    let result;
    try {
      result = storage.run(current, fn, current);
    } catch (error) {
      end(current, error, true);
      throw error;
    }
    if (!isThenable(result)) {
      end(current, undefined, false);
      return result;
    }
    // A Promise (or subclass) keeps its own then(); another thenable is adopted as `await`
    // adopts it: its then() is called later, and what it gives, or throws, settles the
    // span. Calling it here would return whatever it returns (nothing, for some), and a
    // throw from it would escape span() with the span's event lost.
    const settled = result instanceof Promise ? result : Promise.resolve(result);
    return settled.then(
      (value) => {
        end(current, undefined, false);
        return value;
      },
      (error) => {
        end(current, error, true);
        throw error;
      },
    );
  }

  /**
   * End every open span, innermost first: the process is ending. `why` is null for a normal
   * end (exit code 0), else what ended it (`ProcessExit` for another code, a signal's name),
   * recorded as the spans' error type.
   */
  function endOpen(why) {
    for (const span of [...open].reverse()) end(span, undefined, why !== null, why);
  }

  return { span, endOpen };
}

module.exports = { makeSpan, currentSpan };
