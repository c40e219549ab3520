'use strict';
// agent-telemetry Node shim: fire-and-forget events to the local daemon's ingest.sock.
// No dependencies. track() and span() never throw and never wait; see README.md.

const path = require('node:path');
const paths = require('./paths.js');
const wire = require('./wire.js');
const { createSender } = require('./sender.js');
const { makeSpan, currentSpan } = require('./span.js');
const { flag } = require('./consent.js');

// -- settings ---------------------------------------------------------------------------

function cleanAgent(name) {
  return wire.truncate(String(name).replace(/[\x00-\x1f\x7f]/g, ''), wire.MAX_AGENT_NAME);
}

// `node -e code a b` (and -p, and code piped to node) runs no script: process.argv[1] is
// then the code's first argument, a name that says nothing of the program (and may be user
// data), so the agent is `node`, as it is `python` for `python -c`.
function evaluated() {
  try {
    if (typeof process._eval === 'string') return true;
    return process.execArgv.some((arg) => /^(?:-[ep]|--eval|--print)(?:=|$)/.test(arg));
  } catch {
    return false;
  }
}

function defaultAgent(env = process.env) {
  const fromEnv = cleanAgent(env.AGENT_TELEMETRY_AGENT || '');
  if (fromEnv) return fromEnv;
  const script = process.argv[1] && !evaluated() ? path.basename(process.argv[1]) : '';
  return cleanAgent(script.replace(/\.(?:c|m)?js$/, '')) || 'node';
}

// The daemon's reading, the same here as for the spool's mode check: any value but empty,
// 0, false, no or off.
function envDisabled(env = process.env) {
  return flag(env.AGENT_TELEMETRY_DISABLED);
}

// DO_NOT_TRACK where the agent runs, read by the same rule: its events are sent as
// `local_only`, kept for the user and never uploaded, whatever the daemon's own environment.
function envDoNotTrack(env = process.env) {
  return flag(env.DO_NOT_TRACK);
}

// The socket path as the environment names it (whether its folder is the user's own is
// checked, without blocking, when connecting), or null when the environment gives none that
// can be reached: a home of `~someone-else`, or a relative one while the working directory
// is gone. Events are then dropped and counted as `no_socket_path`; require() never throws.
function defaultSocketPath() {
  try {
    return paths.pyPath(paths.preferredRuntimeDir(), 'ingest.sock');
  } catch {
    return null;
  }
}

function defaultSpoolDir() {
  try {
    return paths.spoolDir();
  } catch {
    return null; // no home: spooling is refused and counted (spool_failed)
  }
}

const settings = {
  disabled: envDisabled(),
  localOnly: envDoNotTrack(),
  agent: defaultAgent(),
  socketPath: defaultSocketPath(),
  socketPathGiven: false,
  spoolDir: defaultSpoolDir(),
};
// Spans still open when the process ends (process.exit(), a fatal signal) end first, so
// that their events go out with the rest.
const sender = createSender(settings, (why) => spans.endOpen(why));

/** Re-read the environment, then apply the overrides: {agent, disabled, socketPath, spoolDir}. */
function configure(options = {}) {
  try {
    settings.disabled = options.disabled === undefined ? envDisabled() : Boolean(options.disabled);
    settings.localOnly = envDoNotTrack();
    settings.agent = options.agent ? cleanAgent(options.agent) : defaultAgent();
    settings.socketPathGiven = Boolean(options.socketPath);
    settings.socketPath = options.socketPath ? String(options.socketPath) : defaultSocketPath();
    settings.spoolDir = options.spoolDir ? String(options.spoolDir) : defaultSpoolDir();
    sender.reconfigure();
  } catch {
    // Configuration mistakes must not break the agent either.
  }
}

// -- events -------------------------------------------------------------------------------

function encodeEvent(event, properties, options = {}, nowMs = Date.now()) {
  return wire.encodeEvent(event, properties, options, nowMs, settings.agent, settings.localOnly);
}

// One event into the sender, at `nowMs`; never throws.
function emit(event, properties, options, nowMs) {
  try {
    if (settings.disabled) {
      sender.drops.disabled += 1;
      return;
    }
    if (settings.socketPath === null) {
      sender.drops.no_socket_path += 1;
      return;
    }
    const line = wire.encodeEvent(
      event,
      properties,
      options || {},
      nowMs,
      settings.agent,
      settings.localOnly,
    );
    sender.enqueue(line);
  } catch (error) {
    if (error instanceof wire.TooLargeError) sender.drops.too_large += 1;
    else sender.drops.invalid += 1;
  }
}

/** Queue one event for the daemon; encodes it now, never throws, never waits. */
function track(event, properties, options) {
  emit(event, properties, options, Date.now());
}

const spans = makeSpan(emit, () => {
  sender.drops.invalid += 1;
});
const span = spans.span;

module.exports = {
  track,
  span,
  currentSpan,
  flush: sender.flush,
  stats: sender.stats,
  configure,
  uuid7: wire.uuid7,
  encodeEvent,
  runtimeDir: paths.runtimeDir,
  ingestSocketPath: paths.ingestSocketPath,
  dataDir: paths.dataDir,
  spoolDir: paths.spoolDir,
};
