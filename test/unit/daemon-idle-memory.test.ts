import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startIdleMemory } from '../../src/daemon/idle-memory.js';
import { addon } from '../../src/kernel/native.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const QUIET = 40;

test('idle memory: one release after start, none again while nothing happens', async () => {
  let releases = 0;
  const idle = startIdleMemory({ release: () => releases++, quietMs: QUIET });
  try {
    await sleep(QUIET * 3);
    assert.equal(releases, 1);
    await sleep(QUIET * 3);
    assert.equal(releases, 1, 'once per quiet period, not repeatedly');
  } finally {
    idle.stop();
  }
});

test('idle memory: waits for requests in flight, then releases once per quiet period', async () => {
  let releases = 0;
  const idle = startIdleMemory({ release: () => releases++, quietMs: QUIET });
  try {
    await sleep(QUIET * 3);
    assert.equal(releases, 1);
    const a = idle.requestStarted();
    const b = idle.requestStarted();
    a();
    a(); // idempotent: ending twice does not end b
    await sleep(QUIET * 3);
    assert.equal(releases, 1, 'b still in flight');
    b();
    await sleep(QUIET / 2);
    assert.equal(releases, 1, 'not quiet for long enough yet');
    // A request that starts and ends within the quiet time starts it over.
    idle.requestStarted()();
    await sleep(QUIET / 2 + 5);
    assert.equal(releases, 1);
    await sleep(QUIET * 2);
    assert.equal(releases, 2);
    await sleep(QUIET * 3);
    assert.equal(releases, 2);
  } finally {
    idle.stop();
  }
});

test('idle memory: a failing release is logged, not thrown; stop() ends releases', async () => {
  const warned: unknown[] = [];
  const log = { warn: (o: unknown) => warned.push(o), debug: () => undefined } as never;
  const idle = startIdleMemory({
    release: () => {
      throw new Error('no');
    },
    quietMs: QUIET,
    log,
  });
  await sleep(QUIET * 3);
  assert.equal(warned.length, 1);
  idle.stop();
  idle.requestStarted()();
  await sleep(QUIET * 3);
  assert.equal(warned.length, 1);
});

test('the addon releases memory (V8 low-memory notification + malloc_trim)', () => {
  let junk: Array<{ i: number; s: string }> | undefined = [];
  for (let i = 0; i < 300_000; i++) junk.push({ i, s: `x${i}` });
  const grown = process.memoryUsage().heapUsed;
  junk = undefined;
  addon().releaseMemory();
  assert.ok(process.memoryUsage().heapUsed < grown / 2, `${process.memoryUsage().heapUsed} vs ${grown}`);
  assert.equal(junk, undefined);
});
