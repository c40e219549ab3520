'use strict';
// What the sender does with lines the daemon cannot take (the spool), and how it tells the
// daemon what was lost (the drop-count line). Shares the sender's state.

const { encodeClientDrops } = require('./wire.js');
const { modeIsOff } = require('./consent.js');

// The drop reasons the daemon is told about (not `disabled`, `no_socket_path`, `mode_off`:
// the user asked for those, or there is no daemon to tell).
const REPORTED = ['backlog_full', 'invalid', 'too_large', 'spool_full', 'spool_failed'];
const CONTROL_PREFIX = '{"client_drops":';

function createHandover(state, settings) {
  // -- drop counts ------------------------------------------------------------------------

  function unreportedDrops() {
    let delta = null;
    for (const reason of REPORTED) {
      const count = state.drops[reason] - state.reported[reason];
      if (count > 0) (delta = delta || {})[reason] = count;
    }
    return delta;
  }

  function markReported(delta, sign = 1) {
    for (const [reason, count] of Object.entries(delta)) {
      if (reason in state.reported) state.reported[reason] += sign * count;
    }
  }

  // The counts not yet reported as one line, counted as reported from now on.
  function takeDropsLine() {
    const delta = unreportedDrops();
    if (!delta) return '';
    markReported(delta);
    return encodeClientDrops(delta, settings.agent);
  }

  // -- the spool --------------------------------------------------------------------------

  function syncSpoolDir() {
    if (state.spool.directory !== settings.spoolDir) {
      state.spool.seal();
      state.spool.directory = settings.spoolDir;
    }
  }

  // Event lines to the spool, or counted when they cannot go there.
  function spoolOut(lines) {
    if (!lines.length) return;
    syncSpoolDir();
    if (modeIsOff()) {
      state.spool.discard(); // nothing is kept in `off`, not even what was spooled before
      state.drops.mode_off += lines.length;
      return;
    }
    const [written, reason] = state.spool.write(lines);
    state.spooled += written;
    if (reason) state.drops[reason] += lines.length - written;
  }

  // Text taken back from the socket (whole lines): events to the spool; a drop-count line
  // among them is counted as unreported again, to go with the next one.
  function spoolText(text) {
    const events = [];
    for (const line of text.split('\n')) {
      if (!line) continue;
      if (line.startsWith(CONTROL_PREFIX)) {
        try {
          markReported(JSON.parse(line).client_drops, -1);
        } catch {
          // not ours after all: nothing to put back
        }
      } else events.push(line + '\n');
    }
    spoolOut(events);
  }

  // Complete the spool file for the daemon, with the drop counts not yet reported. Without
  // a file open the counts wait for the connection, unless `dropsNeedAFile` (at exit).
  function sealSpool(dropsNeedAFile = false) {
    const delta = unreportedDrops();
    if (delta && (state.spool.isOpen || dropsNeedAFile) && !modeIsOff()) {
      syncSpoolDir();
      if (state.spool.writeControl(encodeClientDrops(delta, settings.agent))) markReported(delta);
    }
    state.spool.seal();
  }

  function spoolBacklog() {
    const lines = state.backlog;
    state.backlog = [];
    state.backlogBytes = 0;
    spoolOut(lines);
  }

  function spoolOverflow() {
    state.overflowScheduled = false;
    const lines = state.overflow;
    state.overflow = [];
    state.overflowBytes = 0;
    spoolOut(lines);
  }

  return { takeDropsLine, spoolOut, spoolText, sealSpool, spoolBacklog, spoolOverflow };
}

module.exports = { createHandover, REPORTED, CONTROL_PREFIX };
