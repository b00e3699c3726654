import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Limiter } from '../../src/common/limiter.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('limiter: at most `limit` at once, the rest in arrival order', async () => {
  const l = new Limiter(2);
  let now = 0;
  let most = 0;
  const order: number[] = [];
  const gates: Array<() => void> = [];
  const job = (i: number): Promise<number> =>
    l.run(async () => {
      now++;
      most = Math.max(most, now);
      order.push(i);
      await new Promise<void>((r) => gates.push(r));
      now--;
      return i;
    });
  const all = Promise.all([0, 1, 2, 3, 4].map(job));
  await tick();
  assert.deepEqual(order, [0, 1]);
  assert.equal(l.running, 2);
  assert.equal(l.queued, 3);
  while (order.length < 5 || gates.length) {
    gates.shift()?.();
    await tick();
    await tick();
  }
  assert.deepEqual(await all, [0, 1, 2, 3, 4]);
  assert.deepEqual(order, [0, 1, 2, 3, 4], 'first come, first served');
  assert.equal(most, 2);
  assert.equal(l.running, 0);
  assert.equal(l.queued, 0);
});

test('limiter: tryAcquire takes a free slot only, never ahead of a waiter; release hands over', async () => {
  const l = new Limiter(1);
  assert.equal(l.tryAcquire(), true);
  assert.equal(l.tryAcquire(), false);
  let got = false;
  const waiting = l.acquire().then(() => (got = true));
  await tick();
  assert.equal(got, false);
  l.release();
  await waiting;
  assert.equal(got, true);
  assert.equal(l.running, 1, 'the slot went to the waiter, still held');
  assert.equal(l.tryAcquire(), false);
  l.release();
  assert.equal(l.running, 0);
  assert.equal(l.tryAcquire(), true);
  l.release();
  l.release();
  assert.equal(l.running, 0, 'an extra release does not go below zero');
});

test('limiter: a failing job frees its slot', async () => {
  const l = new Limiter(1);
  await assert.rejects(
    l.run(async () => {
      throw new Error('boom');
    }),
    /boom/,
  );
  assert.equal(l.running, 0);
  assert.equal(await l.run(async () => 7), 7);
  assert.throws(() => new Limiter(0), RangeError);
});
