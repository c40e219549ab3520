'use strict';
// span(): one event per span, with trace ids that follow the code's async nesting.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { tempHome, removeAtExit, listen, waitFor, runAgent, spooled } = require('./test-helpers.js');

const OWN_HOME = fs.mkdtempSync('/tmp/atn-span-');
process.env.AGENT_TELEMETRY_HOME = OWN_HOME;
const shim = require('./index.js');
removeAtExit(OWN_HOME);

const TRACE_ID = /^[0-9a-f]{32}$/;
const SPAN_ID = /^[0-9a-f]{16}$/;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let home;
let daemon;
test.before(async () => {
  home = tempHome();
  const socketPath = path.join(home, 'run', 'ingest.sock');
  daemon = await listen(socketPath);
  shim.configure({ socketPath, agent: 'span-test' });
});
test.after(() => {
  shim.configure({ socketPath: '/tmp/atn-nobody-here.sock' }); // hang up: the server can close
  daemon.server.close();
  fs.rmSync(home, { recursive: true, force: true });
});

// The events received since `from`, once `count` of them are there.
async function received(from, count) {
  assert.equal(await shim.flush(5000), true);
  assert.ok(await waitFor(() => daemon.lines.length >= from + count), `got ${daemon.lines.length - from}`);
  return daemon.lines.slice(from).map((line) => JSON.parse(line));
}

test('spans nested in concurrent async code get their own parents', async () => {
  const from = daemon.lines.length;
  async function tool(name, delay) {
    return shim.span('tool.call', { tool: name }, async (outer) => {
      await sleep(delay); // the other tool runs meanwhile
      await shim.span(`tool.${name}.step`, {}, async () => {
        await sleep(1);
      });
      assert.equal(shim.currentSpan(), outer);
      return outer.spanId;
    });
  }
  const [rootId, ids] = await shim.span('agent.run', { task: 'two tools' }, async (root) => [
    root.spanId,
    await Promise.all([tool('a', 20), tool('b', 5)]),
  ]);
  assert.equal(shim.currentSpan().spanId, ''); // nothing open once the run ended
  const events = await received(from, 5);
  const byName = Object.fromEntries(events.map((e) => [e.event === 'tool.call' ? `tool.${e.properties.tool}` : e.event, e]));
  const root = byName['agent.run'];
  assert.match(root.trace_id, TRACE_ID);
  assert.match(root.span_id, SPAN_ID);
  assert.equal(root.span_id, rootId);
  assert.equal('parent_span_id' in root, false);
  assert.equal(new Set(events.map((e) => e.trace_id)).size, 1);
  assert.equal(byName['tool.a'].span_id, ids[0]);
  assert.equal(byName['tool.b'].span_id, ids[1]);
  assert.equal(byName['tool.a'].parent_span_id, rootId);
  assert.equal(byName['tool.b'].parent_span_id, rootId);
  assert.equal(byName['tool.a.step'].parent_span_id, ids[0]);
  assert.equal(byName['tool.b.step'].parent_span_id, ids[1]);
  assert.ok(byName['tool.a'].properties.duration_ms >= 20);
  assert.ok(root.properties.duration_ms >= byName['tool.a'].properties.duration_ms);
  // The event's time is the span's start.
  assert.ok(Date.parse(root.timestamp) <= Date.parse(byName['tool.a'].timestamp));
  assert.equal(root.agent, 'span-test');
});

test('a sync span returns what fn returns and set() adds properties', async () => {
  const from = daemon.lines.length;
  const given = { model: 'm1' };
  const value = shim.span('llm.call', given, (s) => {
    s.set('input_tokens', 812).set('output_tokens', 40);
    return 42;
  });
  assert.equal(value, 42);
  assert.deepEqual(given, { model: 'm1' }); // the caller's object is not changed
  const [event] = await received(from, 1);
  assert.deepEqual(Object.keys(event.properties), ['model', 'input_tokens', 'output_tokens', 'duration_ms']);
  assert.deepEqual(Object.keys(event), ['event', 'properties', 'timestamp', 'uuid', 'agent', 'trace_id', 'span_id']);
});

test('a throw or a rejection marks the span with the error type only, and goes on unchanged', async () => {
  const from = daemon.lines.length;
  class QuotaExceeded extends Error {}
  const canary = 'canary-7c2e-user@example.com-sk-live-secret';
  const thrown = new QuotaExceeded(canary);
  assert.throws(
    () =>
      shim.span('tool.sync', { tool: 'x' }, () => {
        throw thrown;
      }),
    (error) => error === thrown,
  );
  const rejected = new TypeError(canary);
  await assert.rejects(
    shim.span('tool.async', async () => {
      await sleep(1);
      throw rejected;
    }),
    (error) => error === rejected,
  );
  const events = await received(from, 2);
  const text = daemon.lines.slice(from).join('\n');
  assert.equal(text.includes(canary), false);
  const byName = Object.fromEntries(events.map((e) => [e.event, e]));
  assert.equal(byName['tool.sync'].properties.status, 'error');
  assert.equal(byName['tool.sync'].properties.error_type, 'QuotaExceeded');
  assert.equal(byName['tool.async'].properties.error_type, 'TypeError');
});

test('span() never throws on its own account and counts what cannot be an event', async () => {
  const before = shim.stats().drops.invalid;
  assert.doesNotThrow(() => shim.span('no function'));
  assert.doesNotThrow(() => shim.span('bad properties', [1, 2], () => 1));
  assert.doesNotThrow(() => shim.span(42, {}, () => 1));
  assert.equal(shim.span('x', 'not an object', () => 'still runs'), 'still runs');
  assert.equal(shim.stats().drops.invalid - before, 4);
});

test('properties that throw when copied still run fn, and the lost event is counted', () => {
  const before = shim.stats().drops.invalid;
  const getter = {
    get secret() {
      throw new Error('no');
    },
  };
  const proxy = new Proxy(
    {},
    {
      ownKeys() {
        throw new Error('no');
      },
    },
  );
  assert.equal(shim.span('getter', getter, () => 'ran'), 'ran');
  assert.equal(shim.span('proxy', proxy, () => 'ran'), 'ran');
  assert.equal(shim.stats().drops.invalid - before, 2);
});

test('a thenable that is not a Promise settles the span with its own value or failure', async () => {
  const from = daemon.lines.length;
  // `then` returns nothing, as some query builders' do: awaiting the span gives fn's value.
  const value = await shim.span('thenable.ok', {}, () => ({
    then(resolve) {
      resolve(7);
    },
  }));
  assert.equal(value, 7);
  // `then` throws: a rejection like `await` makes of it, and the span records the error.
  let thrown = null;
  let outcome;
  try {
    outcome = shim.span('thenable.bad', {}, () => ({
      then() {
        throw new RangeError('from then');
      },
    }));
  } catch (error) {
    thrown = error;
  }
  assert.equal(thrown, null);
  await assert.rejects(outcome, RangeError);
  const events = await received(from, 2);
  const byName = Object.fromEntries(events.map((e) => [e.event, e]));
  assert.equal(byName['thenable.ok'].properties.status, undefined);
  assert.equal(byName['thenable.bad'].properties.status, 'error');
  assert.equal(byName['thenable.bad'].properties.error_type, 'RangeError');
});

for (const code of [0, 2]) {
  test(`spans open at process.exit(${code}) still send their events`, async () => {
    const agentHome = tempHome();
    const agentDaemon = await listen(path.join(agentHome, 'run', 'ingest.sock'));
    try {
      const result = await runAgent(
        agentHome,
        `const { span } = require(SHIM);
         span('agent.run', { task: 't' }, async () => {
           await span('tool.call', async () => {
             await new Promise((resolve) => setTimeout(resolve, 5));
             process.exit(${code});
           });
         });`,
      );
      assert.equal(result.code, code, result.stderr);
      assert.ok(await waitFor(() => agentDaemon.lines.length >= 2), `got ${agentDaemon.lines.length}`);
      const byName = Object.fromEntries(agentDaemon.lines.map((l) => JSON.parse(l)).map((e) => [e.event, e]));
      assert.equal(byName['tool.call'].parent_span_id, byName['agent.run'].span_id);
      for (const event of Object.values(byName)) {
        assert.ok(event.properties.duration_ms >= 0);
        assert.equal(event.properties.status, code === 0 ? undefined : 'error');
        assert.equal(event.properties.error_type, code === 0 ? undefined : 'ProcessExit');
      }
    } finally {
      agentDaemon.server.close();
      fs.rmSync(agentHome, { recursive: true, force: true });
    }
  });
}

test('a span open at a fatal signal is spooled, its error type the signal', async () => {
  const agentHome = tempHome();
  try {
    const result = await runAgent(
      agentHome,
      `const { span } = require(SHIM);
       span('agent.run', () => new Promise(() => {
         setTimeout(() => {}, 60000);
         setTimeout(() => process.kill(process.pid, 'SIGTERM'), 5);
       }));`,
    );
    assert.equal(result.signal, 'SIGTERM', result.stderr);
    const { events } = spooled(agentHome);
    assert.equal(events.length, 1);
    assert.equal(events[0].event, 'agent.run');
    assert.equal(events[0].properties.error_type, 'SIGTERM');
  } finally {
    fs.rmSync(agentHome, { recursive: true, force: true });
  }
});
