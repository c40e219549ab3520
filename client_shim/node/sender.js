'use strict';
// The connection to ingest.sock and what happens to lines it cannot take: the bounded
// backlog, reconnects with backoff, the stall watchdog, the spool, the exit flush, and the
// drop-count line that tells the daemon what was lost.

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { fallbackRuntimeDir, preferredRuntimeDir, privateDirProblem, pyPath } = require('./paths.js');
const { Spool } = require('./spool.js');
const { createHandover, REPORTED } = require('./handover.js');
const { installExitHandlers, ownedByUs, onlyShimWritesKeepAlive } = require('./exit.js');

// The same caps as the Python shim: at most this many events, and bytes, wait in memory;
// the oldest beyond them go to the spool.
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
// spool what was in flight, and retry later with backoff.
const STALL_MS = 500;
// A daemon that reads, but slowly, would keep a finished agent alive until the backlog is
// written (seconds for megabytes). Once nothing but these writes keeps the process alive,
// the daemon gets this long, as from the Python shim at exit; then the rest is spooled.
const EXIT_BUDGET_MS = 2000;

// `atExit(why)` runs first when the process ends (see exit.js).
function createSender(settings, atExit = () => {}) {
  const state = {
    sock: null,
    connected: false,
    checking: false, // the ownership checks of the socket and its folder are under way
    generation: 0, // bumped by reconfigure() so that a check for an old path is ignored
    backlog: [],
    backlogBytes: 0,
    overflow: [], // lines past the backlog's caps, on their way to the spool
    overflowBytes: 0,
    overflowScheduled: false,
    inFlight: 0, // event lines handed to the socket whose write has not completed
    unacked: new Set(), // those chunks, as [chunk, events]: resent at process.exit()
    backoff: BACKOFF_MIN_MS,
    timer: null,
    connectFailures: 0,
    watchdog: null,
    lastProgress: 0,
    stalled: false,
    hungUp: false, // the last connection was dropped because the daemon stopped reading
    exitFlush: false,
    exited: false, // the exit write is done: no callback will run again
    pumpScheduled: false,
    finishedSince: 0, // when the agent was first seen done but for our writes
    sent: 0,
    spooled: 0,
    spool: new Spool(settings.spoolDir),
    drops: {
      backlog_full: 0,
      invalid: 0,
      too_large: 0,
      spool_full: 0,
      spool_failed: 0,
      mode_off: 0,
      disabled: 0,
      no_socket_path: 0,
    },
    reported: Object.fromEntries(REPORTED.map((reason) => [reason, 0])),
  };
  const handover = createHandover(state, settings);
  const { takeDropsLine, spoolText, sealSpool, spoolBacklog, spoolOverflow } = handover;

  // -- taking lines -------------------------------------------------------------------------

  function enqueue(line) {
    state.backlog.push(line);
    state.backlogBytes += line.length;
    if (state.exited) {
      exit.writeLate();
      return;
    }
    if (state.backlog.length > MAX_BACKLOG_EVENTS || state.backlogBytes > MAX_BACKLOG_BYTES) overflow();
    // On a live connection lines are written together, once a chunk's worth waits or on the
    // event loop's next turn: a write per event was a system call, and a write request and
    // its callback for the collector, in every track() — about half of what a call cost.
    if (state.connected && state.backlogBytes < WRITE_CHUNK_BYTES) {
      if (!state.pumpScheduled) {
        state.pumpScheduled = true;
        setImmediate(scheduledPump);
      }
      return;
    }
    pump();
  }

  function scheduledPump() {
    state.pumpScheduled = false;
    pump();
  }

  // The oldest eighth of a full backlog goes to the spool, from the event loop's next turn:
  // track() does no file system work. Shifting one line off at a time would copy the whole
  // array on every call. A synchronous loop that outruns even that is held to the same
  // byte cap again, oldest dropped and counted.
  function overflow() {
    let count = 0;
    let bytes = 0;
    const events = state.backlog.length - (MAX_BACKLOG_EVENTS - (MAX_BACKLOG_EVENTS >> 3));
    const excess = state.backlogBytes - (MAX_BACKLOG_BYTES - (MAX_BACKLOG_BYTES >> 3));
    while (count < state.backlog.length && (count < events || bytes < excess)) {
      bytes += state.backlog[count].length;
      count += 1;
    }
    state.overflow.push(...state.backlog.splice(0, count));
    state.backlogBytes -= bytes;
    state.overflowBytes += bytes;
    if (state.overflowBytes > MAX_BACKLOG_BYTES) {
      let dropped = 0;
      while (state.overflowBytes > MAX_BACKLOG_BYTES - (MAX_BACKLOG_BYTES >> 3)) {
        state.overflowBytes -= state.overflow[dropped].length;
        dropped += 1;
      }
      state.overflow.splice(0, dropped);
      state.drops.backlog_full += dropped;
    }
    if (!state.overflowScheduled) {
      state.overflowScheduled = true;
      setImmediate(spoolOverflow);
    }
  }

  // -- the connection -----------------------------------------------------------------------

  function pump() {
    if (!state.sock) {
      const waiting = state.backlog.length || state.spool.isOpen;
      if (!state.timer && !state.checking && waiting) connect();
      return;
    }
    if (!state.connected) return;
    const sock = state.sock;
    while (state.backlog.length && sock.writableLength < SOCKET_HIGH_WATER) {
      // New drop counts ride at the head of the next chunk.
      const control = takeDropsLine();
      let size = 0;
      let count = 0;
      while (count < state.backlog.length && (size < WRITE_CHUNK_BYTES || count === 0)) {
        size += state.backlog[count].length;
        count += 1;
      }
      const chunk = control + state.backlog.splice(0, count).join('');
      state.backlogBytes -= size;
      state.inFlight += count;
      const entry = [chunk, count];
      state.unacked.add(entry);
      // Node keeps the unwritten tail of a chunk itself, so a line is never cut short on a
      // live connection; a chunk still buffered when the connection dies goes to the spool
      // (lines of it the daemon did get are kept once, by their uuid).
      sock.write(chunk, (error) => {
        state.inFlight -= count;
        state.unacked.delete(entry);
        state.lastProgress = Date.now();
        // Node also completes, without an error, writes it discards while destroying a
        // stalled socket: those go to the spool too (any the daemon did get, it keeps once).
        if (error || sock.destroyed) spoolText(chunk);
        else {
          state.sent += count;
          state.hungUp = false;
        }
      });
    }
    if (state.inFlight) watchForStall();
  }

  function watchForStall() {
    if (state.watchdog) return;
    state.lastProgress = Date.now();
    state.finishedSince = 0; // a new watch: the agent is judged afresh
    state.watchdog = setInterval(() => {
      if (!state.inFlight || !state.sock) {
        clearInterval(state.watchdog);
        state.watchdog = null;
      } else if (Date.now() - state.lastProgress > STALL_MS || finishedFor() > EXIT_BUDGET_MS) {
        state.stalled = true;
        state.hungUp = true;
        state.sock.destroy();
      }
    }, STALL_MS / 5);
    state.watchdog.unref(); // the pending write, not this timer, is what keeps the loop alive
  }

  // How long the agent has been done but for our writes (0 while it is not).
  function finishedFor() {
    if (!onlyShimWritesKeepAlive(state.sock)) {
      state.finishedSince = 0;
      return 0;
    }
    if (!state.finishedSince) state.finishedSince = Date.now();
    return Date.now() - state.finishedSince;
  }

  // The socket path to try: the configured one, or the default rule's, checked without
  // blocking (a runtime folder that is not the user's own gives way to `<data dir>/run`).
  function resolveSocketPath(done) {
    if (settings.socketPathGiven) {
      done(settings.socketPath);
      return;
    }
    let preferred;
    try {
      preferred = preferredRuntimeDir();
    } catch {
      done(settings.socketPath);
      return;
    }
    fs.lstat(preferred, (error, stat) => {
      let dir = preferred;
      try {
        if (privateDirProblem(error, stat) !== null) dir = fallbackRuntimeDir();
      } catch {
        // no data dir to fall back to: the preferred folder fails the check below
      }
      settings.socketPath = pyPath(dir, 'ingest.sock');
      done(settings.socketPath);
    });
  }

  function connect() {
    if (settings.socketPath === null) return;
    // A socket another user put in our path, or in a folder someone else can change, would
    // read every event we send. The checks are lstat()/stat() on libuv's thread pool: no
    // file system work on the caller's path.
    state.checking = true;
    const generation = state.generation;
    const stillCurrent = () => generation === state.generation;
    resolveSocketPath((socketPath) => {
      if (!stillCurrent()) return;
      fs.lstat(path.dirname(socketPath), (dirError, dirStat) => {
        if (!stillCurrent()) return;
        if (dirError || privateDirProblem(null, dirStat) !== null) {
          state.checking = false;
          failed();
          return;
        }
        fs.stat(socketPath, (error, stat) => {
          if (!stillCurrent()) return;
          state.checking = false;
          if (error || !ownedByUs(stat)) failed();
          else openSocket(socketPath);
        });
      });
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
      sealSpool(); // a daemon that is back reads it when an agent connects
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
    // Down, missing or not the user's: what waits goes to the spool, where the daemon finds
    // it when it starts (or when this process reconnects).
    spoolBacklog();
    if (state.exitFlush) return; // leaving anyway: no retries
    const delay = state.backoff;
    state.backoff = Math.min(state.backoff * 2, BACKOFF_MAX_MS);
    state.timer = setTimeout(() => {
      state.timer = null;
      pump();
    }, delay);
    state.timer.unref();
  }

  function reconfigure() {
    if (state.checking) {
      state.checking = false;
      state.generation += 1; // the checks under way were for the old path
    }
    if (state.sock) state.sock.destroy(); // reconnect to the (maybe new) path
    if (state.timer) {
      clearTimeout(state.timer); // at once, not after the old path's backoff
      state.timer = null;
    }
    state.backoff = BACKOFF_MIN_MS;
    pump();
  }

  // -- what callers see ---------------------------------------------------------------------

  function pending() {
    return state.backlog.length + state.overflow.length + state.inFlight;
  }

  function stats() {
    const dropped = Object.values(state.drops).reduce((a, b) => a + b, 0);
    return {
      queued: pending(),
      sent: state.sent,
      spooled: state.spooled,
      spoolFiles: state.spool.sealed,
      dropped,
      drops: { ...state.drops },
      connected: state.connected,
      connectFailures: state.connectFailures,
      disabled: settings.disabled,
      agent: settings.agent,
      socketPath: settings.socketPath,
      spoolDir: settings.spoolDir,
    };
  }

  /** Resolve true once every queued event is written to the socket or the spool. */
  function flush(timeoutMs = 1000) {
    // Anything but a number of 0 or more waits for nothing: NaN would be a deadline never
    // reached, and Date.now() plus a BigInt or a Symbol throws, rejecting the promise.
    const waitMs = typeof timeoutMs === 'number' && timeoutMs >= 0 ? timeoutMs : 0;
    return new Promise((resolve) => {
      const deadline = Date.now() + waitMs;
      if (state.timer) {
        clearTimeout(state.timer); // cut a reconnect backoff short
        state.timer = null;
      }
      if (state.overflow.length) spoolOverflow();
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

  const exit = installExitHandlers(state, settings, pump, handover, atExit);
  return { enqueue, reconfigure, flush, stats, drops: state.drops };
}

module.exports = { createSender };
