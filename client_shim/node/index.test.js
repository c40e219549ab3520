'use strict';
// Run with `node --test client_shim/node/` (the Python suite does, under `make test`).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');

const shim = require('./index.js');
const SHIM = path.join(__dirname, 'index.js');

function tempHome() {
  // Short path under /tmp: a Unix socket path must fit in 107 bytes.
  const home = fs.mkdtempSync('/tmp/atn-');
  fs.mkdirSync(path.join(home, 'run'), { mode: 0o700 });
  return home;
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

function runAgent(home, code, env = {}) {
  const script = path.join(home, 'node_agent.js');
  fs.writeFileSync(script, code.replace('SHIM', JSON.stringify(SHIM)));
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
    child.on('close', (code) => resolve({ code, stdout, stderr, exited: Date.now() }));
  });
}

async function waitFor(predicate, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return predicate();
}

test('uuid7 is version 7, RFC variant, time-ordered and unique', () => {
  const ids = Array.from({ length: 20000 }, () => shim.uuid7());
  assert.deepEqual([...ids].sort(), ids);
  assert.equal(new Set(ids).size, ids.length);
  for (const id of ids.slice(0, 100)) {
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  }
  const ms = Date.now() + 1000;
  const sameMs = Array.from({ length: 1000 }, () => shim.uuid7(ms));
  assert.deepEqual([...sameMs].sort(), sameMs);
  assert.equal(parseInt(sameMs[0].replace(/-/g, '').slice(0, 12), 16), ms);
});

test('socket path follows the same rules as the Python shim', () => {
  assert.equal(shim.ingestSocketPath({ AGENT_TELEMETRY_HOME: '/srv/at' }, 'linux'), '/srv/at/run/ingest.sock');
  assert.equal(
    shim.ingestSocketPath({ XDG_RUNTIME_DIR: '/run/user/1000' }, 'linux'),
    '/run/user/1000/agent-telemetry/ingest.sock',
  );
  assert.equal(shim.runtimeDir({ TMPDIR: '/var/folders/T/' }, 'darwin'), '/var/folders/T/agent-telemetry');
  assert.equal(shim.runtimeDir({}, 'linux'), `/tmp/agent-telemetry-${process.getuid()}`);
});

test('encoded line has the wire fields and a UTC millisecond timestamp', () => {
  const line = shim.encodeEvent('agent.run', { ms: 5 }, { timestamp: '2026-11-24T22:00:00.5+01:00' });
  assert.ok(line.endsWith('\n'));
  const doc = JSON.parse(line);
  assert.deepEqual(Object.keys(doc), ['event', 'properties', 'timestamp', 'uuid', 'agent']);
  assert.equal(doc.timestamp, '2026-11-24T21:00:00.500Z');
});

test('with no daemon, track never throws, stays fast and counts bad input', () => {
  shim.configure({ socketPath: '/tmp/atn-nobody-here.sock' });
  const circular = {};
  circular.self = circular;
  const bad = [[123], ['', {}], ['x', [1]], ['x', circular], ['x', { n: 1n }], ['x', {}, { colour: 'red' }],
    ['x', {}, { timestamp: 'yesterday' }], ['x', {}, { uuid: 'nope' }]];
  const before = shim.stats().drops.invalid;
  for (const args of bad) assert.doesNotThrow(() => shim.track(...args));
  assert.equal(shim.stats().drops.invalid - before, bad.length);
  const start = process.hrtime.bigint();
  for (let i = 0; i < 10000; i++) shim.track('agent.step', { i });
  assert.ok(Number(process.hrtime.bigint() - start) / 1e9 < 1);
  assert.equal(shim.stats().sent, 0);
});

test('a script that tracks then ends delivers every event', async () => {
  const home = tempHome();
  const { server, lines, torn } = await listen(path.join(home, 'run', 'ingest.sock'));
  try {
    const result = await runAgent(
      home,
      `const { track } = require(SHIM);
       for (let i = 0; i < 3000; i++) track('agent.step', { i });`,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.ok(await waitFor(() => lines.length >= 3000));
    const events = lines.map((l) => JSON.parse(l));
    assert.equal(events.length, 3000);
    assert.equal(new Set(events.map((e) => e.uuid)).size, 3000);
    assert.deepEqual(events.map((e) => e.properties.i).sort((a, b) => a - b), [...Array(3000).keys()]);
    assert.equal(events[0].agent, 'node_agent');
    assert.deepEqual(torn, []);
  } finally {
    server.close();
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test('with no daemon a script still exits promptly', async () => {
  const home = tempHome();
  try {
    const result = await runAgent(
      home,
      `const { track } = require(SHIM);
       for (let i = 0; i < 100; i++) track('agent.step', { i });
       console.log(Date.now());`,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.ok(result.exited - Number(result.stdout.trim()) < 1000);
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test('AGENT_TELEMETRY_DISABLED=1 sends nothing', async () => {
  const home = tempHome();
  const { server, lines } = await listen(path.join(home, 'run', 'ingest.sock'));
  let connections = 0;
  server.on('connection', () => (connections += 1));
  try {
    const result = await runAgent(
      home,
      `const { track, stats } = require(SHIM);
       for (let i = 0; i < 100; i++) track('agent.step', { i });
       console.log(JSON.stringify(stats()));`,
      { AGENT_TELEMETRY_DISABLED: '1' },
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(JSON.parse(result.stdout).drops.disabled, 100);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(connections, 0);
    assert.equal(lines.length, 0);
  } finally {
    server.close();
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test('events tracked before the daemon starts are delivered once it is up', async () => {
  const home = tempHome();
  const socketPath = path.join(home, 'run', 'ingest.sock');
  shim.configure({ socketPath });
  for (let i = 0; i < 50; i++) shim.track('agent.late', { i });
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(shim.stats().connected, false);
  const { server, lines } = await listen(socketPath);
  try {
    assert.equal(await shim.flush(3000), true);
    assert.ok(await waitFor(() => lines.filter((l) => l.includes('agent.late')).length >= 50));
  } finally {
    shim.configure({ socketPath: '/tmp/atn-nobody-here.sock' });
    server.close();
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test('a daemon that stops reading does not keep a script from exiting', async () => {
  const home = tempHome();
  const socketPath = path.join(home, 'run', 'ingest.sock');
  const conns = [];
  const server = net.createServer((conn) => {
    conn.pause(); // accept, never read: the socket fills up
    conns.push(conn);
  });
  await new Promise((resolve) => server.listen(socketPath, resolve));
  try {
    const result = await runAgent(
      home,
      `const { track } = require(SHIM);
       for (let i = 0; i < 20000; i++) track('agent.step', { i, pad: 'p'.repeat(200) });
       console.log(Date.now());`,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.ok(result.exited - Number(result.stdout.trim()) < 3000, 'exit waited on the daemon');
  } finally {
    for (const conn of conns) conn.destroy();
    server.close();
    fs.rmSync(home, { recursive: true, force: true });
  }
});
