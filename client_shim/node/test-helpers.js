'use strict';
// Shared by the Node shim's tests: temporary homes, a listener standing in for the daemon,
// agents run as child processes, and what they leave in the spool folder.

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');

const SHIM = path.join(__dirname, 'index.js');
const CONTROL_PREFIX = '{"client_drops":';

function tempHome() {
  // Short path under /tmp: a Unix socket path must fit in 107 bytes.
  const home = fs.mkdtempSync('/tmp/atn-');
  fs.mkdirSync(path.join(home, 'run'), { mode: 0o700 });
  return home;
}

// The shim in a test's own process spools what it still holds as that process exits (its
// drop counts, say), after every test hook has run. Its exit listener is added when it is
// required; one added after that runs after it, so the folder goes once the shim is done.
function removeAtExit(dir) {
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
}

function listen(socketPath) {
  const lines = [];
  const torn = [];
  const server = net.createServer((conn) => {
    let rest = '';
    conn.setEncoding('utf8');
    conn.on('data', (data) => {
      const parts = (rest + data).split('\n');
      rest = parts.pop();
      lines.push(...parts);
    });
    conn.on('end', () => {
      if (rest) torn.push(rest);
    });
  });
  return new Promise((resolve) => server.listen(socketPath, () => resolve({ server, lines, torn })));
}

// A daemon that accepts and never reads, so the socket fills up: `conns` are its ends of
// the agents' connections; `close()` ends them and the listener.
function stalledDaemon(socketPath) {
  const conns = [];
  const server = net.createServer((conn) => {
    conn.pause();
    conns.push(conn);
  });
  const close = () => {
    for (const conn of conns) conn.destroy();
    server.close();
  };
  return new Promise((resolve) => server.listen(socketPath, () => resolve({ server, conns, close })));
}

// The hang guard: an agent that does not exit within 20 s is killed, and its exit code
// (null) fails the test. How long an exit takes is measured in bench/, not here.
function runAgent(home, code, env = {}, timeoutMs = 20000) {
  const script = path.join(home, 'node_agent.js');
  fs.writeFileSync(script, code.replaceAll('SHIM', JSON.stringify(SHIM)));
  const childEnv = { ...process.env, AGENT_TELEMETRY_HOME: home, ...env };
  for (const key of Object.keys(childEnv)) {
    if (key.startsWith('AGENT_TELEMETRY_') && !(key in env) && key !== 'AGENT_TELEMETRY_HOME') {
      delete childEnv[key];
    }
  }
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script], { env: childEnv });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const guard = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

async function waitFor(predicate, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return predicate();
}


// Sealed spool files, temporary ones, and the events and drop counts in the sealed ones.
function spooled(home) {
  const folder = path.join(home, 'data', 'spool');
  const names = fs.existsSync(folder) ? fs.readdirSync(folder).sort() : [];
  const sealed = names.filter((n) => n.endsWith('.ndjson')).map((n) => path.join(folder, n));
  const temporary = names.filter((n) => n.endsWith('.tmp')).map((n) => path.join(folder, n));
  const events = [];
  const control = [];
  for (const file of sealed) {
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      if (!line) continue;
      (line.startsWith(CONTROL_PREFIX) ? control : events).push(JSON.parse(line));
    }
  }
  return { folder, sealed, temporary, events, control };
}

module.exports = {
  stalledDaemon,
  SHIM,
  CONTROL_PREFIX,
  tempHome,
  removeAtExit,
  listen,
  runAgent,
  waitFor,
  spooled,
};
