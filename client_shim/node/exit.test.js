'use strict';
// The end of an agent's process: scripts that finish, exit, or are signalled while the
// daemon is down, slow or not reading; agents run as child processes as they would be.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { tempHome, listen, runAgent, stalledDaemon, waitFor, spooled } = require('./test-helpers.js');

test('a daemon that stops reading does not keep a script from exiting', async () => {
  const home = tempHome();
  const daemon = await stalledDaemon(path.join(home, 'run', 'ingest.sock'));
  try {
    const result = await runAgent(
      home,
      `const { track } = require(SHIM);
       for (let i = 0; i < 20000; i++) track('agent.step', { i, pad: 'p'.repeat(200) });`,
    );
    assert.equal(result.code, 0, result.stderr);
  } finally {
    daemon.close();
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test('flush() with a timeout that is not a number of 0 or more answers false at once, never rejects', async () => {
  // Date.now() + 10n throws, and so does a Symbol: the promise rejected, and an agent that
  // awaited it unguarded died of the unhandled rejection. NaN, like the Python shim's, now
  // waits for nothing rather than being a deadline never reached.
  const home = tempHome();
  const daemon = await stalledDaemon(path.join(home, 'run', 'ingest.sock'));
  try {
    const result = await runAgent(
      home,
      `const { track, flush } = require(SHIM);
       for (let i = 0; i < 20000; i++) track('agent.step', { i, pad: 'p'.repeat(500) });
       (async () => {
         const answers = [];
         for (const timeout of [NaN, -1, 'soon', 10n, Symbol('t')]) answers.push(await flush(timeout));
         console.log(JSON.stringify(answers));
       })();`,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout.trim().split('\n').pop()), [false, false, false, false, false]);
  } finally {
    daemon.close();
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test('a daemon that reads slowly does not hold a finished script: the rest is spooled', async () => {
  const home = tempHome();
  const socketPath = path.join(home, 'run', 'ingest.sock');
  const received = new Set();
  const readers = [];
  const conns = [];
  // Reads about 64 KiB every 100 ms: a chunk's write completes each time, so the daemon is
  // never taken for stalled, but what the script tracks (5 MiB) would take it about 8 s.
  const server = net.createServer((conn) => {
    conns.push(conn);
    conn.pause();
    let rest = '';
    readers.push(
      setInterval(() => {
        let data;
        let size = 0;
        while (size < 64 * 1024 && (data = conn.read()) !== null) {
          size += data.length;
          const parts = (rest + data.toString()).split('\n');
          rest = parts.pop();
          for (const line of parts) if (!line.startsWith('{"client_drops"')) received.add(JSON.parse(line).uuid);
        }
      }, 100),
    );
  });
  await new Promise((resolve) => server.listen(socketPath, resolve));
  try {
    const result = await runAgent(
      home,
      `const { track } = require(SHIM);
       let i = 0;
       (function slice() {
         for (const end = i + 1000; i < end; i++) track('agent.step', { i, pad: 'p'.repeat(200) });
         if (i < 20000) setImmediate(slice);
       })();
`,
    );
    assert.equal(result.code, 0, result.stderr);
    // The script did not wait until the daemon had read it all: the rest is in the spool.
    // What the socket took before the hang-up is read on.
    const inSpool = spooled(home).events.map((e) => e.uuid);
    assert.ok(inSpool.length > 0);
    const all = () => new Set([...received, ...inSpool]).size;
    assert.ok(await waitFor(() => all() === 20000, 10000), `${all()} of 20000 accounted for`);
  } finally {
    for (const reader of readers) clearInterval(reader);
    for (const conn of conns) conn.destroy();
    server.close();
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test('process.exit() right after track() still delivers the events', async () => {
  const home = tempHome();
  const { server, lines } = await listen(path.join(home, 'run', 'ingest.sock'));
  try {
    const result = await runAgent(
      home,
      `const { track } = require(SHIM);
       for (let i = 0; i < 2000; i++) track('agent.step', { i });
       process.exit(0);`,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.ok(await waitFor(() => lines.length >= 2000, 3000), `only ${lines.length} arrived`);
    const events = lines.map((l) => JSON.parse(l));
    assert.equal(new Set(events.map((e) => e.uuid)).size, 2000);
  } finally {
    server.close();
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test('an event tracked in an exit listener is delivered, or spooled when the daemon is down', async () => {
  const home = tempHome();
  const agent = `const { track } = require(SHIM);
     track('agent.start');
     process.on('exit', (code) => track('agent.exit', { code }));`;
  try {
    let result = await runAgent(home, agent);
    assert.equal(result.code, 0, result.stderr);
    // Two files: the exit's own, then one for the late event (file order is by random name).
    assert.deepEqual(spooled(home).events.map((e) => e.event).sort(), ['agent.exit', 'agent.start']);
    fs.rmSync(path.join(home, 'data'), { recursive: true, force: true });
    const { server, lines } = await listen(path.join(home, 'run', 'ingest.sock'));
    try {
      result = await runAgent(home, `${agent}\nprocess.exit(3);`);
      assert.equal(result.code, 3, result.stderr);
      assert.ok(await waitFor(() => lines.length >= 2), `only ${lines.length} arrived`);
      const events = lines.map((l) => JSON.parse(l));
      assert.deepEqual(events.map((e) => [e.event, e.properties]), [
        ['agent.start', undefined],
        ['agent.exit', { code: 3 }],
      ]);
      assert.equal(spooled(home).sealed.length, 0);
    } finally {
      server.close();
    }
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
});

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  test(`${signal} with no handler of the agent's: what waits is spooled, and the signal ends the process`, async () => {
    const home = tempHome();
    try {
      // The daemon is down: the events wait out a reconnect backoff in memory.
      const result = await runAgent(
        home,
        `const { track } = require(SHIM);
         for (let i = 0; i < 5; i++) track('agent.step', { i });
         setTimeout(() => {}, 60000);
         setTimeout(() => {
           track('agent.late');
           process.kill(process.pid, '${signal}');
         }, 20);`,
      );
      assert.equal(result.signal, signal, result.stderr);
      const { events, temporary } = spooled(home);
      assert.deepEqual(events.map((e) => e.event), [...Array(5).fill('agent.step'), 'agent.late']);
      assert.equal(temporary.length, 0);
    } finally {
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
}

test("a signal the agent handles is left to it: the process goes on, and ends as it decides", async () => {
  const home = tempHome();
  const { server, lines } = await listen(path.join(home, 'run', 'ingest.sock'));
  try {
    const result = await runAgent(
      home,
      `const { track } = require(SHIM);
       const alive = setTimeout(() => {}, 60000); // signals alone keep no process alive
       process.on('SIGTERM', () => {
         track('agent.signalled');
         setTimeout(() => {
           track('agent.after');
           clearTimeout(alive);
         }, 20);
       });
       setTimeout(() => process.kill(process.pid, 'SIGTERM'), 20);`,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.ok(await waitFor(() => lines.length >= 2), `only ${lines.length} arrived`);
    assert.deepEqual(lines.map((l) => JSON.parse(l).event), ['agent.signalled', 'agent.after']);
  } finally {
    server.close();
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test('process.exit() right after the first track() reaches a daemon in the fallback folder', async () => {
  const home = tempHome();
  // The preferred runtime folder is not private: the daemon uses <data dir>/run instead.
  fs.chmodSync(path.join(home, 'run'), 0o755);
  fs.mkdirSync(path.join(home, 'data', 'run'), { recursive: true, mode: 0o700 });
  const { server, lines } = await listen(path.join(home, 'data', 'run', 'ingest.sock'));
  try {
    const result = await runAgent(home, `const { track } = require(SHIM); track('agent.quick'); process.exit(0);`);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(await waitFor(() => lines.length >= 1), 'nothing arrived');
    assert.equal(JSON.parse(lines[0]).event, 'agent.quick');
    assert.deepEqual(spooled(home).events, []);
  } finally {
    server.close();
    fs.rmSync(home, { recursive: true, force: true });
  }
});
