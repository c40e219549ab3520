'use strict';
// The Node shim's spool, drop counts, consent reading and runtime folder rule, with agents
// run as child processes as they would be.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { tempHome, listen, runAgent, stalledDaemon, waitFor, spooled } = require('./test-helpers.js');
const { configuredMode, storedMode } = require('./consent.js');
const paths = require('./paths.js');

function withHome(fn) {
  return async () => {
    const home = tempHome();
    try {
      await fn(home);
    } finally {
      fs.rmSync(home, { recursive: true, force: true });
    }
  };
}

const BURST = `const { track, stats, flush } = require(SHIM);
for (let i = 0; i < 500; i++) track('agent.step', { i });
flush(2000).then(() => console.log(JSON.stringify(stats())));`;

for (const setting of ['environment', 'stored choice', 'config file', 'disabled']) {
  test(
    `mode off (${setting}) leaves no file under the data dir`,
    withHome(async (home) => {
      const env = {};
      if (setting === 'environment') env.AGENT_TELEMETRY_MODE = 'off';
      if (setting === 'stored choice') fs.writeFileSync(path.join(home, 'consent.json'), '{"mode": "off"}');
      if (setting === 'config file') fs.writeFileSync(path.join(home, 'config.toml'), '# mine\nmode = "off"\n');
      if (setting === 'disabled') env.AGENT_TELEMETRY_DISABLED = '1';
      const result = await runAgent(home, BURST, env);
      assert.equal(result.code, 0, result.stderr);
      const s = JSON.parse(result.stdout);
      assert.equal(s.spooled, 0);
      assert.equal(setting === 'disabled' ? s.drops.disabled : s.drops.mode_off, 500);
      assert.equal(fs.existsSync(path.join(home, 'data')), false);
    }),
  );
}

test('the config file is read as the daemon reads it: top-level mode only', () => {
  const dir = fs.mkdtempSync('/tmp/atn-toml-');
  const file = path.join(dir, 'config.toml');
  const cases = [
    ['mode = "off"', 'off'],
    ["mode='OFF' # quiet", 'off'],
    ['  "mode" = " upload "', 'upload'],
    ['sender = "none"\nmode = "local"\n[posthog]\nmode = "off"', 'local'],
    ['[posthog]\nmode = "off"', null],
    ['mode = "sometimes"', null],
    ['# mode = "off"', null],
    ['modes = "off"', null],
  ];
  try {
    for (const [text, expected] of cases) {
      fs.writeFileSync(file, text);
      assert.equal(configuredMode(file), expected, text);
    }
    assert.equal(configuredMode(path.join(dir, 'missing.toml')), null);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a stored choice that cannot be read counts as off, as the daemon reads it', () => {
  const dir = fs.mkdtempSync('/tmp/atn-consent-');
  const file = path.join(dir, 'consent.json');
  const cases = [
    ['{"mode": "local"}', 'local'],
    ['{garbage', 'off'],
    ['{"mode": "sometimes"}', 'off'],
    ['[]', 'off'],
  ];
  try {
    for (const [text, expected] of cases) {
      fs.writeFileSync(file, text);
      assert.equal(storedMode(file), expected, text);
    }
    assert.equal(storedMode(path.join(dir, 'missing.json')), null);
    // Not UTF-8: unreadable to the daemon, so off, whatever the bytes around it say.
    fs.writeFileSync(file, Buffer.concat([Buffer.from('{"mode": "local", "note": "'), Buffer.from([0xff]), Buffer.from('"}')]));
    assert.equal(storedMode(file), 'off');
    // A config file that is not UTF-8 is rejected whole by the daemon: it says no mode.
    const config = path.join(dir, 'config.toml');
    fs.writeFileSync(config, Buffer.concat([Buffer.from('mode = "off"\n# '), Buffer.from([0xc3, 0x28]), Buffer.from('\n')]));
    assert.equal(configuredMode(config), null);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test(
  'the daemon is told what the agent lost, with its name, on the connection',
  withHome(async (home) => {
    const daemon = await listen(path.join(home, 'run', 'ingest.sock'));
    try {
      const result = await runAgent(
        home,
        `const { track } = require(SHIM);
         track(''); track('x', { n: NaN }); track('x', { blob: 'x'.repeat(40000) });
         track('agent.ok');`,
      );
      assert.equal(result.code, 0, result.stderr);
      assert.ok(await waitFor(() => daemon.lines.length >= 2));
      const [control, event] = daemon.lines.map((line) => JSON.parse(line));
      assert.deepEqual(control, { client_drops: { invalid: 2, too_large: 1 }, agent: 'node_agent' });
      assert.equal(event.event, 'agent.ok');
    } finally {
      daemon.server.close();
    }
  }),
);

test(
  'an agent whose only news is its losses tells the daemon on the connection at exit',
  withHome(async (home) => {
    const daemon = await listen(path.join(home, 'run', 'ingest.sock'));
    try {
      const result = await runAgent(home, `const { track } = require(SHIM); track(''); track('x', { n: NaN });`);
      assert.equal(result.code, 0, result.stderr);
      assert.ok(await waitFor(() => daemon.lines.length >= 1));
      assert.deepEqual(JSON.parse(daemon.lines[0]), { client_drops: { invalid: 2 }, agent: 'node_agent' });
      // Not in a spool file, which the daemon would read only when it next looks.
      assert.deepEqual(spooled(home).sealed, []);
    } finally {
      daemon.server.close();
    }
  }),
);

test(
  'what a stalled daemon did not take by exit is in the spool, once',
  withHome(async (home) => {
    const daemon = await stalledDaemon(path.join(home, 'run', 'ingest.sock'));
    try {
      const result = await runAgent(
        home,
        `const { track } = require(SHIM);
         for (let i = 0; i < 20000; i++) track('agent.step', { i, pad: 'p'.repeat(100) });`,
      );
      assert.equal(result.code, 0, result.stderr);
      const files = spooled(home);
      assert.equal(files.temporary.length, 0);
      // Read what the daemon was handed, now that the agent is gone.
      const socketLines = [];
      await Promise.all(
        daemon.conns.map(
          (conn) =>
            new Promise((resolve) => {
              let text = '';
              conn.setEncoding('utf8');
              conn.on('data', (d) => (text += d));
              conn.on('end', () => {
                socketLines.push(...text.split('\n').slice(0, -1)); // a cut-short last line is discarded
                resolve();
              });
              conn.resume();
            }),
        ),
      );
      const seen = [...socketLines.map((l) => JSON.parse(l)), ...files.events].map((e) => e.properties.i);
      assert.ok(files.events.length > 0, 'nothing was spooled');
      // Every event is on the socket or in the spool; a line sent again is kept once.
      assert.equal(new Set(seen).size, 20000);
    } finally {
      daemon.close();
    }
  }),
);

test(
  'a runtime folder that is not private gives way to the data dir, as for the daemon',
  withHome(async (home) => {
    const runtimeParent = path.join(home, 'xdg-run');
    const squatted = path.join(runtimeParent, 'agent-telemetry');
    fs.mkdirSync(squatted, { recursive: true });
    fs.chmodSync(squatted, 0o777); // anyone could swap a socket in it
    const dataHome = path.join(home, 'xdg-data');
    const env = { AGENT_TELEMETRY_HOME: '', XDG_RUNTIME_DIR: runtimeParent, XDG_DATA_HOME: dataHome };
    const fallback = path.join(dataHome, 'agent-telemetry', 'run');
    assert.equal(paths.runtimeDir(env, 'linux'), fallback);
    fs.mkdirSync(fallback, { recursive: true, mode: 0o700 });
    const decoy = await listen(path.join(squatted, 'ingest.sock'));
    const daemon = await listen(path.join(fallback, 'ingest.sock'));
    try {
      const result = await runAgent(
        home,
        `const { track, stats } = require(SHIM);
         track('agent.step', { i: 1 });
         process.on('beforeExit', () => console.log(JSON.stringify(stats())));`,
        env,
      );
      assert.equal(result.code, 0, result.stderr);
      assert.ok(await waitFor(() => daemon.lines.length >= 1));
      assert.equal(decoy.lines.length, 0);
      assert.equal(JSON.parse(result.stdout.split('\n')[0]).socketPath, path.join(fallback, 'ingest.sock'));
    } finally {
      decoy.server.close();
      daemon.server.close();
    }
  }),
);

test(
  'folders that exist are never changed, and a loose spool folder is not used',
  withHome(async (home) => {
    const shared = path.join(home, 'shared');
    fs.mkdirSync(shared);
    fs.chmodSync(shared, 0o1777); // like /tmp
    const loose = path.join(shared, 'loose-spool');
    fs.mkdirSync(loose);
    fs.chmodSync(loose, 0o755);
    const fresh = path.join(shared, 'fresh-spool');
    const result = await runAgent(
      home,
      `const { track, stats, flush, configure } = require(SHIM);
       (async () => {
         configure({ spoolDir: ${JSON.stringify(fresh)} });
         track('agent.step');
         await flush(2000);
         configure({ spoolDir: ${JSON.stringify(loose)} });
         track('agent.step');
         await flush(2000);
         console.log(JSON.stringify(stats()));
       })();`,
    );
    assert.equal(result.code, 0, result.stderr);
    const s = JSON.parse(result.stdout);
    assert.equal(fs.statSync(shared).mode & 0o7777, 0o1777);
    assert.equal(fs.statSync(loose).mode & 0o777, 0o755);
    assert.deepEqual(fs.readdirSync(loose), []);
    assert.equal(s.drops.spool_failed, 1);
    assert.equal(fs.statSync(fresh).mode & 0o777, 0o700); // made here: private
    assert.equal(fs.readdirSync(fresh).filter((n) => n.endsWith('.ndjson')).length, 1);
  }),
);
