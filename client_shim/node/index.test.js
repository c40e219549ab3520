'use strict';
// Run with `node --test client_shim/node/` (the Python suite does, under `make test`).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { tempHome, removeAtExit, listen, runAgent, waitFor, spooled } = require('./test-helpers.js');

// The shim under test in this process spools into a home of its own, never the user's.
const OWN_HOME = fs.mkdtempSync('/tmp/atn-self-');
process.env.AGENT_TELEMETRY_HOME = OWN_HOME;
for (const key of Object.keys(process.env)) {
  if (key.startsWith('AGENT_TELEMETRY_') && key !== 'AGENT_TELEMETRY_HOME') delete process.env[key];
}
const shim = require('./index.js');
const SHIM = path.join(__dirname, 'index.js');
removeAtExit(OWN_HOME);

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

test('with no daemon, track never throws and counts bad input', () => {
  shim.configure({ socketPath: '/tmp/atn-nobody-here.sock' });
  const circular = {};
  circular.self = circular;
  const bad = [[123], ['', {}], ['x', [1]], ['x', circular], ['x', { n: 1n }], ['x', {}, { colour: 'red' }],
    ['x', {}, { timestamp: 'yesterday' }], ['x', {}, { uuid: 'nope' }]];
  const before = shim.stats().drops.invalid;
  for (const args of bad) assert.doesNotThrow(() => shim.track(...args));
  assert.equal(shim.stats().drops.invalid - before, bad.length);
  // What a call costs is measured in bench/, not asserted here.
  for (let i = 0; i < 10000; i++) assert.doesNotThrow(() => shim.track('agent.step', { i }));
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

test('with no daemon a script exits and leaves its events in a private spool file', async () => {
  const home = tempHome();
  try {
    const result = await runAgent(
      home,
      `const { track } = require(SHIM);
       for (let i = 0; i < 100; i++) track('agent.step', { i });`,
    );
    assert.equal(result.code, 0, result.stderr);
    const files = spooled(home);
    assert.equal(files.temporary.length, 0);
    assert.equal(files.sealed.length, 1);
    assert.match(path.basename(files.sealed[0]), /^\d+-[0-9a-f]{12}\.ndjson$/);
    assert.equal(fs.statSync(files.sealed[0]).mode & 0o777, 0o600);
    assert.equal(fs.statSync(files.folder).mode & 0o777, 0o700);
    assert.deepEqual(files.events.map((e) => e.properties.i), [...Array(100).keys()]);
    assert.deepEqual(Object.keys(files.events[0]), ['event', 'properties', 'timestamp', 'uuid', 'agent']);
    assert.deepEqual(files.control, []);
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
});

// Any value but empty, 0, false, no or off: the rule the daemon and the Python shim read it by.
for (const value of ['1', 'y', '2', 'enabled']) {
  test(`AGENT_TELEMETRY_DISABLED=${value} sends nothing`, async () => {
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
        { AGENT_TELEMETRY_DISABLED: value },
      );
      assert.equal(result.code, 0, result.stderr);
      const stats = JSON.parse(result.stdout);
      assert.equal(stats.disabled, true);
      assert.equal(stats.drops.disabled, 100);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(connections, 0);
      assert.equal(lines.length, 0);
    } finally {
      server.close();
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
}

test('what the daemon would refuse for its keys is counted invalid, and names count characters', () => {
  shim.configure({ socketPath: '/tmp/atn-nobody-here.sock' });
  const keys = (n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]));
  const items = (n) => ({ items: Array.from({ length: n }, (_, i) => ({ i })) });
  // Kept: the daemon takes 256 keys, counted over every nested object, and 150 emoji.
  for (const [name, properties] of [['a', keys(256)], ['b', items(255)], ['😀'.repeat(150), {}]]) {
    assert.doesNotThrow(() => shim.encodeEvent(name, properties));
  }
  const before = shim.stats().drops;
  shim.track('flat', keys(300));
  shim.track('nested', items(300)); // 301 keys in all
  shim.track('😀'.repeat(201), {}); // 201 characters
  const after = shim.stats().drops;
  assert.equal(after.invalid - before.invalid, 3);
  // An array that could never fit is too large before it is walked or encoded.
  shim.track('big', { list: new Array(2_000_000).fill(0) });
  assert.equal(shim.stats().drops.too_large - before.too_large, 1);
});

test('events tracked before the daemon starts are spooled, and the file is completed when it is up', async () => {
  const home = tempHome();
  const socketPath = path.join(home, 'run', 'ingest.sock');
  const spoolDir = path.join(home, 'data', 'spool');
  shim.configure({ socketPath, spoolDir });
  const before = shim.stats();
  for (let i = 0; i < 50; i++) shim.track('agent.late', { i });
  assert.ok(await waitFor(() => shim.stats().spooled - before.spooled === 50));
  assert.equal(shim.stats().connected, false);
  assert.equal(spooled(home).temporary.length, 1); // not yet for the daemon's eyes
  const { server, lines } = await listen(socketPath);
  try {
    // No new event: the shim keeps trying while a spool file is open.
    assert.ok(await waitFor(() => shim.stats().connected, 10000));
    const files = spooled(home);
    assert.equal(files.temporary.length, 0);
    assert.equal(files.sealed.length, 1);
    const seen = files.events.map((e) => e.properties.i);
    assert.deepEqual(seen.sort((a, b) => a - b), [...Array(50).keys()]);
    assert.equal(lines.length, 0);
  } finally {
    shim.configure({ socketPath: '/tmp/atn-nobody-here.sock' });
    server.close();
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test('track() on a live connection writes events together, not one system call each', async () => {
  const home = tempHome();
  const { server, lines } = await listen(path.join(home, 'run', 'ingest.sock'));
  try {
    const result = await runAgent(
      home,
      `const net = require('node:net');
       const { track, flush } = require(SHIM);
       let writes = 0;
       const write = net.Socket.prototype.write;
       net.Socket.prototype.write = function (...args) {
         writes += 1;
         return write.apply(this, args);
       };
       track('agent.start');
       flush(5000).then(async (connected) => {
         writes = 0;
         for (let i = 0; i < 2000; i++) track('agent.step', { i });
         const sync = writes;
         await new Promise((resolve) => setImmediate(resolve));
         for (let i = 0; i < 10; i++) track('agent.step', { i: 2000 + i });
         await flush(5000);
         console.log(JSON.stringify({ connected, sync, writes }));
       });`,
    );
    assert.equal(result.code, 0, result.stderr);
    const { connected, sync, writes } = JSON.parse(result.stdout);
    assert.ok(connected);
    // 2,000 events of about 130 bytes: a few 64 KiB chunks while the loop runs, the rest
    // on the next turn; the ten after it, one write.
    assert.ok(sync <= 5, `${sync} writes during the loop`);
    assert.ok(writes <= 8, `${writes} writes in all`);
    assert.ok(await waitFor(() => lines.length >= 2011), `only ${lines.length} arrived`);
    assert.equal(new Set(lines.map((l) => JSON.parse(l).uuid)).size, 2011);
  } finally {
    server.close();
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test('track() does no file system work on the calling path', async () => {
  const home = tempHome();
  const { server, lines } = await listen(path.join(home, 'run', 'ingest.sock'));
  try {
    const result = await runAgent(
      home,
      `const fs = require('node:fs');
       let sync = 0;
       for (const name of ['statSync', 'lstatSync', 'existsSync', 'accessSync']) {
         const original = fs[name];
         fs[name] = (...args) => { sync += 1; return original(...args); };
       }
       const { track, flush } = require(SHIM);
       track('agent.step', { i: 1 });
       const during = sync;
       flush(2000).then((ok) => console.log(JSON.stringify({ during, ok })));`,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), { during: 0, ok: true });
    assert.ok(await waitFor(() => lines.length >= 1));
  } finally {
    server.close();
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test('values JSON would change or drop make the event invalid, as in Python', () => {
  shim.configure({ socketPath: '/tmp/atn-nobody-here.sock' });
  class Point {
    constructor() {
      this.x = 1;
    }
  }
  let deep = 1;
  for (let i = 0; i < 11; i++) deep = { k: deep };
  const bad = [
    { x: NaN },
    { x: -Infinity },
    { x: new Set([1]) },
    { x: new Map([[1, 2]]) },
    { x: undefined },
    { f: () => 1 },
    { x: Symbol('s') },
    { x: new Date(0) },
    { x: '\ud800' },
    { ['\udc00']: 1 },
    { list: [1, NaN] },
    { list: [undefined] },
    { nested: { x: new Point() } },
    new Point(),
    new Date(0),
    deep, // 11 levels with the properties object itself
  ];
  const before = shim.stats().drops.invalid;
  for (const properties of bad) shim.track('agent.step', properties);
  assert.equal(shim.stats().drops.invalid - before, bad.length);
  // Timestamps the daemon refuses: before 1970 or after 9999.
  for (const timestamp of [new Date(-1), new Date(8.64e15), new Date(Date.UTC(10000, 0, 1)), '0999-12-31T00:00:00Z']) {
    assert.throws(() => shim.encodeEvent('e', {}, { timestamp }), RangeError);
  }
  // These are fine.
  const ok = JSON.parse(
    shim.encodeEvent('e', { a: [1, 'x', null, true, { b: '😀' }], n: -0.5, o: Object.create(null) }, {
      timestamp: new Date(Date.UTC(9999, 11, 31, 23, 59, 59, 999)),
    }),
  );
  assert.equal(ok.timestamp, '9999-12-31T23:59:59.999Z');
  assert.deepEqual(ok.properties.a[4], { b: '😀' });
});

test('properties over the daemon limit of 32 KiB are dropped as too_large', () => {
  shim.configure({ socketPath: '/tmp/atn-nobody-here.sock' });
  const fits = { blob: 'x'.repeat(32 * 1024 - '{"blob":""}'.length) };
  assert.ok(shim.encodeEvent('e', fits));
  const before = shim.stats().drops.too_large;
  shim.track('e', { blob: fits.blob + 'x' });
  shim.track('e', { blob: 'é'.repeat(16 * 1024) }); // 32 KiB of UTF-8 in 16 Ki characters
  assert.equal(shim.stats().drops.too_large - before, 2);
});

test('a string of megabytes is refused before it is read or encoded, as in Python', () => {
  shim.configure({ socketPath: '/tmp/atn-nobody-here.sock' });
  const huge = 'x'.repeat(8 * 1024 * 1024);
  const seen = [];
  const { stringify } = JSON;
  const { isWellFormed } = String.prototype;
  JSON.stringify = (value, ...rest) => {
    seen.push(typeof value === 'string' ? value.length : Infinity); // properties: encoded
    return stringify(value, ...rest);
  };
  String.prototype.isWellFormed = function () {
    seen.push(this.length);
    return isWellFormed.call(this);
  };
  const before = shim.stats().drops.too_large;
  try {
    shim.track('e', { blob: huge });
    shim.track('e', { list: ['a', huge] });
    shim.track('e', { [huge]: 1 });
    // Past the bound whatever follows: Python counts it too_large before finding the lone
    // surrogate at the end.
    shim.track('e', { blob: 'x'.repeat(40000) + '\ud800' });
  } finally {
    JSON.stringify = stringify;
    String.prototype.isWellFormed = isWellFormed;
  }
  assert.equal(shim.stats().drops.too_large - before, 4);
  assert.ok(seen.every((length) => length < 1024), 'nothing big was read or encoded');
  // Options: text longer than any the option takes is refused unread.
  for (const options of [{ uuid: huge }, { timestamp: huge + 'Z' }, { trace_id: huge }, { span_id: huge }]) {
    assert.throws(() => shim.encodeEvent('e', {}, options));
  }
});

test('code run by node -e or -p is the agent `node`, not its first argument', async () => {
  const { spawnSync } = require('node:child_process');
  const code = `const s = require(${JSON.stringify(SHIM)}); console.log(s.stats().agent)`;
  for (const flag of ['-e', '--eval']) {
    const result = spawnSync(process.execPath, [flag, code, '/home/someone/private-notes.js'], {
      env: { ...process.env, AGENT_TELEMETRY_HOME: OWN_HOME },
      encoding: 'utf8',
    });
    assert.equal(result.stdout.trim(), 'node', result.stderr);
  }
});

test('an empty agent option falls back to the default name, as in Python', () => {
  const doc = JSON.parse(shim.encodeEvent('e', {}, { agent: '' }));
  assert.equal(doc.agent, shim.stats().agent);
});

test('past the backlog caps the oldest go to the spool, outside track()', async () => {
  const spoolDir = fs.mkdtempSync('/tmp/atn-spool-');
  shim.configure({ socketPath: '/tmp/atn-nobody-here.sock', spoolDir });
  try {
    const before = shim.stats();
    for (let i = 0; i < 80000; i++) shim.track('agent.fill', { i });
    const during = shim.stats();
    assert.equal(during.spooled, before.spooled, 'no spooling inside track()');
    assert.equal(during.queued + during.spooled + during.dropped - before.spooled - before.dropped, 80000);
    assert.equal(await shim.flush(5000), true);
    const after = shim.stats();
    assert.equal(after.spooled - before.spooled + (after.dropped - before.dropped), 80000);
    assert.equal(after.drops.backlog_full, before.drops.backlog_full);
  } finally {
    shim.configure({ socketPath: '/tmp/atn-nobody-here.sock' });
    fs.rmSync(spoolDir, { recursive: true, force: true });
  }
});

test('~ in AGENT_TELEMETRY_HOME is expanded as Python and the daemon expand it', () => {
  const home = os.homedir();
  assert.equal(shim.runtimeDir({ AGENT_TELEMETRY_HOME: '~/x' }, 'linux'), path.join(home, 'x', 'run'));
  assert.equal(shim.runtimeDir({ AGENT_TELEMETRY_HOME: '~' }, 'linux'), path.join(home, 'run'));
  const me = os.userInfo();
  assert.equal(shim.runtimeDir({ AGENT_TELEMETRY_HOME: `~${me.username}/x` }, 'linux'), path.join(me.homedir, 'x', 'run'));
  assert.throws(() => shim.runtimeDir({ AGENT_TELEMETRY_HOME: '~nosuchuser-at/x' }, 'linux'));
});

for (const [label, agentHome] of [
  ['an unknown user home', '~nosuchuser-at/x'],
  ['a relative home in a deleted working directory', 'relative/home'],
]) {
  test(`require() never throws with ${label}; events count as no_socket_path`, async () => {
    const home = tempHome();
    const gone = path.join(home, 'gone');
    fs.mkdirSync(gone);
    try {
      const result = await runAgent(
        home,
        `process.chdir(${JSON.stringify(gone)});
         require('node:fs').rmdirSync(${JSON.stringify(gone)});
         const { track, stats } = require(SHIM);
         track('agent.step', { i: 1 });
         track('agent.step', { i: 2 });
         console.log(JSON.stringify(stats()));`,
        { AGENT_TELEMETRY_HOME: agentHome },
      );
      assert.equal(result.code, 0, result.stderr);
      const s = JSON.parse(result.stdout);
      assert.equal(s.socketPath, null);
      assert.equal(s.drops.no_socket_path, 2);
      assert.equal(s.queued, 0);
    } finally {
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
}
