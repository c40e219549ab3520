'use strict';
// The sender at the process's end: one last connect attempt when the event loop empties,
// and at process.exit() a synchronous write of what is left, the rest to the spool; the
// same for events tracked after that (by later exit listeners), and at a signal that
// would end the process without an exit event.

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { ingestSocketPath, privateDirProblem } = require('./paths.js');

// process.exit() leaves no time for the event loop: what is queued then is written
// synchronously, waiting at most this long for a daemon that is slow to take it; the rest
// goes to the spool.
const EXIT_SYNC_STALL_MS = 100;
const EXIT_SYNC_BUDGET_MS = 500;
const EXIT_SLEEP = new Int32Array(new SharedArrayBuffer(4));
// Events tracked after the exit write (from exit listeners added after the shim was
// required) are each written on the spot, all together waiting for the daemon at most this
// long; past it they go straight to the spool.
const LATE_BUDGET_MS = 500;
// Signals whose default action ends the process without an 'exit' event, losing what waits
// in memory. Handled only while no one else listens: then the shim writes what is left and
// raises the signal again, so the process ends as it would have, with the same status.
const FATAL_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'];

// Whether the agent is done but for the shim's writes to `sock`: no timer or immediate of
// its own, no handle but stdout, stderr and that socket, no request but writes to it.
// Node would exit now but for those writes, which keep the event loop alive for as long
// as a slow daemon goes on reading. Node says this only through its underscore functions:
// where they are missing, the answer is no (and exit waits for the daemon, as before).
function onlyShimWritesKeepAlive(sock) {
  try {
    const handle = sock._handle;
    if (!handle || typeof process._getActiveHandles !== 'function') return false;
    for (const kind of process.getActiveResourcesInfo()) {
      if (kind === 'Timeout' || kind === 'Immediate') return false;
    }
    for (const owner of process._getActiveHandles()) {
      if (owner !== sock && owner !== process.stdout && owner !== process.stderr) return false;
    }
    for (const request of process._getActiveRequests()) {
      if (!request || request.handle !== handle) return false;
    }
    return true;
  } catch {
    return false;
  }
}

function ownedByUs(stat) {
  return !process.getuid || stat.uid === process.getuid();
}

function installExitHandlers(state, settings, pump, handover, atExit) {
  const { takeDropsLine, spoolText, sealSpool, spoolOverflow } = handover;

  // Events waiting out a reconnect backoff get one last connect attempt when the agent is
  // done (it spools them if the daemon is still away); the timer alone would not keep the
  // process alive for them. Not after a daemon that stopped reading was hung up on: it
  // already cost the stall allowance (STALL_MS, sender.js), and would again.
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
  // left synchronously on a fresh connection, and spool what that does not take. Lines
  // already handed to the old connection are sent again, since some of them may not have
  // reached the daemon; it keeps each uuid once.
  process.on('exit', (code) => {
    try {
      atExit(code === 0 ? null : 'ProcessExit');
    } catch {
      // the events it would have queued are lost; the exit goes on
    }
    try {
      writeAtExit(EXIT_SYNC_BUDGET_MS);
    } catch {
      // Best effort: never turn an exit into a crash.
    }
    state.exited = true;
  });
  installSignalHandlers();

  // After the exit write nothing else will send an event: write what was just queued now.
  let lateSpentMs = 0;
  function writeLate() {
    const start = Date.now();
    try {
      writeAtExit(LATE_BUDGET_MS - lateSpentMs);
    } catch {
      // as at exit
    }
    lateSpentMs += Date.now() - start;
  }

  function installSignalHandlers() {
    let isMainThread = true;
    try {
      isMainThread = require('node:worker_threads').isMainThread;
    } catch {
      // no worker threads in this runtime
    }
    if (!isMainThread || process.platform === 'win32') return; // signals are the process's
    for (const signal of FATAL_SIGNALS) {
      const onSignal = () => {
        // Someone else handles it: the process goes on, or ends through process.exit().
        if (process.listenerCount(signal) !== 1) return;
        try {
          atExit(signal);
          writeAtExit(EXIT_SYNC_BUDGET_MS);
          state.exited = true;
        } catch {
          // as at exit
        }
        // With no listener left Node restores the default action, which ends the process.
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal);
      };
      try {
        process.on(signal, onSignal);
      } catch {
        // a signal this platform does not have
      }
    }
  }

  function writeAtExit(budgetMs) {
    spoolOverflow();
    const chunks = [...state.unacked].map(([chunk]) => chunk);
    state.unacked.clear();
    chunks.push(state.backlog.join(''));
    state.backlog = [];
    state.backlogBytes = 0;
    // The drop counts go even with no event left: on the connection the user's `status`
    // shows them at once; in a spool file, only when the daemon next reads the spool.
    let rest = takeDropsLine() + chunks.join('');
    if (rest) {
      const written = state.hungUp || budgetMs <= 0 ? 0 : writeSyncToDaemon(Buffer.from(rest), budgetMs);
      if (written) {
        const data = Buffer.from(rest);
        // From the first line not written in full: the daemon discards a line cut short.
        rest = data.subarray(data.lastIndexOf(0x0a, written - 1) + 1).toString();
      }
      spoolText(rest);
    }
    sealSpool(true);
  }

  // Bytes of `data` written to the daemon's socket, synchronously and bounded in time.
  function writeSyncToDaemon(data, budgetMs) {
    let socketPath = settings.socketPath;
    if (!settings.socketPathGiven) {
      // Worked out now, as the Python shim does on each connect: a process.exit() right after
      // the first track() comes before the asynchronous check that finds the fallback folder.
      try {
        socketPath = ingestSocketPath();
      } catch {
        // keep the last path worked out
      }
    }
    if (socketPath === null) return 0;
    try {
      // stat() throws when the daemon is down.
      if (privateDirProblem(null, fs.lstatSync(path.dirname(socketPath))) !== null) return 0;
      if (!ownedByUs(fs.statSync(socketPath))) return 0;
    } catch {
      return 0;
    }
    // net.Socket connects a Unix socket inside createConnection() and exposes its
    // descriptor; writeSync() on it is the only way to send without the event loop.
    const sock = net.createConnection({ path: socketPath });
    sock.on('error', () => {});
    const fd = sock._handle && sock._handle.fd;
    let offset = 0;
    if (typeof fd === 'number' && fd >= 0) {
      const start = Date.now();
      let progressAt = start;
      while (offset < data.length) {
        try {
          offset += fs.writeSync(fd, data, offset);
          progressAt = Date.now();
        } catch (error) {
          if (error.code !== 'EAGAIN') break; // not connected (daemon down) or gone
          const now = Date.now();
          // A daemon that stopped reading gets nothing more; a reading one, bounded time.
          if (now - progressAt > EXIT_SYNC_STALL_MS || now - start > budgetMs) break;
          Atomics.wait(EXIT_SLEEP, 0, 0, 1); // sleep 1 ms without spinning
        }
      }
    }
    sock.destroy();
    return offset;
  }

  return { writeLate };
}

module.exports = { installExitHandlers, ownedByUs, onlyShimWritesKeepAlive };
