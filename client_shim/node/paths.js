'use strict';
// Where the daemon's files are: the same rules as the daemon and the Python shim.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const APP = 'agent-telemetry';

/**
 * `parts` joined as Python's pathlib joins them (the daemon is Python): a part that is
 * absolute starts over; `//` and `.` are collapsed but `..` is kept. path.join() would drop
 * `link/..` where the kernel goes to the parent of the link's target: a different folder
 * from the daemon's.
 */
function pyPath(...parts) {
  let full = '';
  for (const part of parts) full = part.startsWith('/') || !full ? part : `${full}/${part}`;
  // POSIX leaves the meaning of exactly two leading slashes open, and pathlib keeps them.
  const root = /^\/\/(?!\/)/.test(full) ? '//' : full.startsWith('/') ? '/' : '';
  const names = full.split('/').filter((name) => name && name !== '.');
  return root + names.join('/') || root || '.';
}

// Path(value).absolute(), as Python has it: the working directory before a relative path.
function pyAbsolute(value) {
  return value.startsWith('/') ? pyPath(value) : pyPath(process.cwd(), value);
}

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

function homeRoot(env) {
  return env.AGENT_TELEMETRY_HOME ? pyAbsolute(expandUser(env.AGENT_TELEMETRY_HOME)) : null;
}

// `~` as platformdirs reads it: $HOME when absolute, else the account's home.
function userHome(env) {
  const home = env.HOME && path.isAbsolute(env.HOME) ? env.HOME : os.userInfo().homedir;
  if (!path.isAbsolute(home)) throw new Error('the home directory cannot be worked out');
  return home.replace(/\/+$/, '') || '/';
}

// platformdirs takes an XDG variable only when it is an absolute path.
function xdg(env, name, fallback) {
  const value = env[name] || '';
  return path.isAbsolute(value) ? value : pyPath(userHome(env), fallback);
}

function macosSupport(env) {
  return pyPath(env.HOME || os.homedir(), 'Library', 'Application Support');
}

/** The daemon's data dir: `H/data`, else the platform's user data dir. */
function dataDir(env = process.env, platform = process.platform) {
  const root = homeRoot(env);
  if (root) return pyPath(root, 'data');
  if (platform === 'darwin') return pyPath(macosSupport(env), APP);
  return pyPath(xdg(env, 'XDG_DATA_HOME', '.local/share'), APP);
}

/** The config file: `AGENT_TELEMETRY_CONFIG`, else `H/config.toml`, else the user config dir. */
function configFile(env = process.env, platform = process.platform) {
  if (env.AGENT_TELEMETRY_CONFIG) return pyAbsolute(expandUser(env.AGENT_TELEMETRY_CONFIG));
  const root = homeRoot(env);
  if (root) return pyPath(root, 'config.toml');
  if (platform === 'darwin') return pyPath(macosSupport(env), APP, 'config.toml');
  return pyPath(xdg(env, 'XDG_CONFIG_HOME', '.config'), APP, 'config.toml');
}

/** Where `agent-telemetry mode|enable|disable` stores the choice: next to the config file. */
function consentFile(env = process.env, platform = process.platform) {
  return pyPath(path.dirname(configFile(env, platform)), 'consent.json');
}

function spoolDir(env = process.env, platform = process.platform) {
  return pyPath(dataDir(env, platform), 'spool');
}

/** The runtime folder the environment names, before checking who owns it. */
function preferredRuntimeDir(env = process.env, platform = process.platform) {
  const root = homeRoot(env);
  if (root) return pyPath(root, 'run');
  if (env.XDG_RUNTIME_DIR) return pyPath(env.XDG_RUNTIME_DIR, APP);
  if (platform === 'darwin') return pyPath(env.TMPDIR || '/tmp', APP);
  return `/tmp/${APP}-${process.getuid ? process.getuid() : 0}`;
}

/** The folder that stands in for a runtime folder someone else has taken. */
function fallbackRuntimeDir(env = process.env, platform = process.platform) {
  return pyPath(dataDir(env, platform), 'run');
}

// Why a folder (its lstat, or the error) is not this user's own private folder; null when
// it is, or is absent. Anyone else could read, or swap, a socket kept in it.
function privateDirProblem(error, stat) {
  if (error) return error.code === 'ENOENT' ? null : `cannot be examined (${error.code})`;
  if (stat.isSymbolicLink()) return 'is a symbolic link';
  if (!stat.isDirectory()) return 'is not a directory';
  if (process.geteuid && stat.uid !== process.geteuid()) return `belongs to uid ${stat.uid}`;
  if (stat.mode & 0o077) return `has mode ${(stat.mode & 0o777).toString(8).padStart(4, '0')}, not 0700`;
  return null;
}

// Why a file (its stat) may hold what someone else wrote; null when only this user can have.
function othersFileProblem(stat) {
  if (process.geteuid && stat.uid !== process.geteuid()) return `belongs to uid ${stat.uid}`;
  if (stat.mode & 0o022) return `has mode ${(stat.mode & 0o777).toString(8).padStart(4, '0')}, so others may change it`;
  return null;
}

// Opened without waiting: a named pipe at a file's path would hold openSync(), and the
// agent's thread with it, until someone writes into it, which may be never; another user can
// make one in a shared folder (AGENT_TELEMETRY_CONFIG=/tmp/team.toml reads /tmp/consent.json).
// A regular file opens at once either way. Links are followed, as the daemon follows them.
const READ_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK || 0);

function fileKind(stat) {
  if (stat.isFIFO()) return 'a named pipe';
  if (stat.isSocket()) return 'a socket';
  if (stat.isCharacterDevice()) return 'a character device';
  if (stat.isBlockDevice()) return 'a block device';
  if (stat.isDirectory()) return 'a directory';
  return 'not a file';
}

/** A descriptor of the regular file at `file`, opened for reading; for anything else an
 * error with code ENOTREG (and the fstat as `stat`): reading a pipe or a device could wait
 * for good, and neither is a file anyone wrote settings into. */
function openRegularSync(file) {
  const fd = fs.openSync(file, READ_FLAGS);
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) {
      const error = new Error(`${file} is not a regular file (${fileKind(stat)})`);
      error.code = 'ENOTREG';
      error.stat = stat;
      throw error;
    }
    return fd;
  } catch (error) {
    fs.closeSync(fd);
    throw error;
  }
}

/** The bytes of the regular file at `file` (see openRegularSync). */
function readRegularSync(file) {
  const fd = openRegularSync(file);
  try {
    return fs.readFileSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function privateDirProblemSync(dir) {
  try {
    return privateDirProblem(null, fs.lstatSync(dir));
  } catch (error) {
    return privateDirProblem(error, null);
  }
}

/**
 * The runtime folder to use: the preferred one, unless it exists and is not this user's own
 * 0700 folder; then `<data dir>/run`, as the daemon chooses. (The shim itself checks with an
 * asynchronous lstat when it connects; this is for callers who want the answer now.)
 */
function runtimeDir(env = process.env, platform = process.platform) {
  const preferred = preferredRuntimeDir(env, platform);
  return privateDirProblemSync(preferred) === null ? preferred : fallbackRuntimeDir(env, platform);
}

function ingestSocketPath(env = process.env, platform = process.platform) {
  return pyPath(runtimeDir(env, platform), 'ingest.sock');
}

module.exports = {
  pyPath,
  expandUser,
  dataDir,
  configFile,
  consentFile,
  spoolDir,
  preferredRuntimeDir,
  fallbackRuntimeDir,
  privateDirProblem,
  privateDirProblemSync,
  othersFileProblem,
  openRegularSync,
  readRegularSync,
  runtimeDir,
  ingestSocketPath,
};
