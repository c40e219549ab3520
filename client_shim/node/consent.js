'use strict';
// Whether the user turned telemetry off: the shim spools nothing then. The daemon's order,
// as far as an agent can see it: AGENT_TELEMETRY_DISABLED (any value but empty, 0, false,
// no, off), AGENT_TELEMETRY_MODE, the mode stored by `agent-telemetry mode|enable|disable`
// (consent.json next to the config file), `mode` in config.toml, else `local`. A stored choice
// that is there but cannot be read counts as `off`, as the daemon counts it: it may have been.
// Neither file is read unless it is a regular file (openRegularSync): a named pipe in its
// place would hold the agent in open() for good, and the shim must never hold an agent up.

const fs = require('node:fs');
const {
  configFile,
  consentFile,
  openRegularSync,
  othersFileProblem,
  readRegularSync,
} = require('./paths.js');

const MODES = new Set(['off', 'local', 'upload']);

// What Python's str.strip() removes, which is not what String.prototype.trim() removes
// (Python strips \x1c-\x1f and \x85, and keeps U+FEFF): a value must mean the same to
// this shim as to the daemon and the Python shim.
const PY_SPACE = String.raw`\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000`;
const PY_STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'g');

function pyStrip(text) {
  return text.replace(PY_STRIP, '');
}

/** The daemon's reading of a flag such as AGENT_TELEMETRY_DISABLED: set and not 0/false/no/off. */
function flag(value) {
  return !['', '0', 'false', 'no', 'off'].includes(pyStrip(String(value || '')).toLowerCase());
}

function asMode(value) {
  if (typeof value !== 'string') return null;
  const mode = pyStrip(value).toLowerCase();
  return MODES.has(mode) ? mode : null;
}

// A file's text, refused (thrown) when it is not UTF-8, as the daemon and the Python shim
// refuse it: readFileSync(file, 'utf8') would put U+FFFD in place of the bad bytes and read
// on, finding a mode where they find none.
const UTF8 = new TextDecoder('utf-8', { fatal: true });
function readUtf8(file) {
  return UTF8.decode(readRegularSync(file));
}

// The mode a record's text names, or null when it names none.
function parsedMode(text) {
  try {
    const data = JSON.parse(text);
    return data && typeof data === 'object' && MODES.has(data.mode) ? data.mode : null;
  } catch {
    return null;
  }
}

/** The mode a command stored, exactly as the daemon writes it; null when none; 'off' when
 * the file is there but does not say one (unreadable, not JSON, no mode). A record someone
 * else may have written counts only when it says `off`, as the daemon counts it. */
function storedMode(file) {
  let others = null;
  let text;
  let fd = null;
  try {
    fd = openRegularSync(file);
    others = othersFileProblem(fs.fstatSync(fd));
    text = UTF8.decode(fs.readFileSync(fd));
  } catch (error) {
    if (error && error.code === 'ENOENT') return null;
    if (others === null) {
      try {
        others = othersFileProblem(fs.statSync(file)); // not opened: still, whose is it?
      } catch {
        // nothing more to learn
      }
    }
    return others === null ? 'off' : null;
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
  const mode = parsedMode(text);
  if (others !== null) return mode === 'off' ? 'off' : null;
  return mode || 'off';
}

// A minimal reading of TOML, enough for one top-level string key: comments, blank lines and
// other keys are skipped, and the first [table] header ends the top level. A file this
// cannot read as such yields no mode, as the daemon's parser yields no mode for a file it
// rejects.
const KEY_LINE = /^\s*(?:mode|"mode"|'mode')\s*=\s*(?:"([^"\\]*)"|'([^']*)')\s*(?:#.*)?$/;

function configuredMode(file) {
  let text;
  try {
    text = readUtf8(file);
  } catch {
    return null;
  }
  for (const line of text.split(/\r?\n/)) {
    if (/^\s*\[/.test(line)) return null; // past the top level
    const match = KEY_LINE.exec(line);
    if (match) return asMode(match[1] !== undefined ? match[1] : match[2]);
  }
  return null;
}

/** True when the user's choice, as this process can see it, is `off`. */
function modeIsOff(env = process.env) {
  try {
    if (flag(env.AGENT_TELEMETRY_DISABLED)) return true;
    const fromEnv = asMode(env.AGENT_TELEMETRY_MODE);
    if (fromEnv) return fromEnv === 'off';
    const stored = storedMode(consentFile(env));
    if (stored) return stored === 'off';
    return configuredMode(configFile(env)) === 'off';
  } catch {
    return false; // no home to read a choice from; nor, then, a place to spool
  }
}

module.exports = { flag, modeIsOff, configuredMode, storedMode };
