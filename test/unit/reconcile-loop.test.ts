import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReconcileLoop, type KickSource } from '../../src/common/reconcile-loop.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A pass that waits for the test to release it, counting passes and overlaps. */
function gatedPass() {
  let release: (() => void) | undefined;
  const st = { passes: 0, inPass: 0, overlaps: 0, fail: undefined as Error | undefined };
  const pass = async () => {
    st.passes++;
    st.inPass++;
    if (st.inPass > 1) st.overlaps++;
    await new Promise<void>((r) => {
      release = r;
    });
    st.inPass--;
    if (st.fail !== undefined) {
      const e = st.fail;
      st.fail = undefined;
      throw e;
    }
  };
  return { st, pass, release: () => release?.() };
}

test('reconcile loop: kicks from a source during a pass ask for exactly one more; passes never overlap; stop stops the source', async () => {
  const g = gatedPass();
  let kickFromWatch: (() => void) | undefined;
  let unsubscribed = 0;
  const watch: KickSource = (kick) => {
    kickFromWatch = kick;
    return () => {
      unsubscribed++;
    };
  };
  const loop = new ReconcileLoop({ pass: g.pass, periodMs: 60_000, sources: [watch], onError: () => undefined });
  loop.start();
  loop.start(); // idempotent
  assert.equal(g.st.passes, 1, 'start asks for a first pass');
  for (let i = 0; i < 5; i++) kickFromWatch!();
  g.release();
  await sleep(5);
  assert.equal(g.st.passes, 2, 'five kicks during a pass: one more pass');
  g.release();
  await loop.idle();
  assert.equal(g.st.overlaps, 0);
  const stopping = loop.stop();
  await stopping;
  assert.equal(unsubscribed, 1);
  kickFromWatch!();
  loop.kick();
  await sleep(5);
  assert.equal(g.st.passes, 2, 'no pass after stop');
});

test('reconcile loop: a failed pass goes to onError (true: again at once); an onError that throws does not end the loop', async () => {
  const errors: unknown[] = [];
  let n = 0;
  const loop = new ReconcileLoop({
    pass: async () => {
      n++;
      if (n === 1) throw new Error('lost a race');
      if (n === 3) throw new Error('bad');
    },
    periodMs: 60_000,
    onError: (err) => {
      errors.push(err);
      if ((err as Error).message === 'bad') throw new Error('handler broke');
      return true;
    },
  });
  loop.start();
  await loop.idle();
  assert.equal(n, 2, 'retried once after the error asking for it, then idle');
  loop.kick();
  await loop.idle();
  assert.equal(n, 3);
  loop.kick();
  await loop.idle();
  assert.equal(n, 4, 'still kickable after a handler that threw');
  assert.deepEqual(
    errors.map((e) => (e as Error).message),
    ['lost a race', 'bad'],
  );
  await loop.stop();
});

test('reconcile loop: the periodic pass runs without kicks; stop waits for the pass under way', async () => {
  const g = gatedPass();
  const loop = new ReconcileLoop({ pass: g.pass, periodMs: 20, onError: () => undefined });
  loop.start();
  g.release();
  const until = Date.now() + 5000;
  while (g.st.passes < 3 && Date.now() < until) {
    await sleep(5);
    g.release();
  }
  assert.ok(g.st.passes >= 3, `periodic passes ran (${g.st.passes})`);
  await sleep(30); // a pass is under way (gated)
  let stopped = false;
  const stopping = loop.stop().then(() => {
    stopped = true;
  });
  await sleep(10);
  assert.equal(stopped, g.st.inPass === 0, 'stop waits while a pass runs');
  g.release();
  await stopping;
  assert.equal(g.st.inPass, 0);
});

test('reconcile loop: with debounceMs a burst of kicks costs one pass', async () => {
  let n = 0;
  const loop = new ReconcileLoop({
    pass: async () => {
      n++;
    },
    periodMs: 60_000,
    debounceMs: 30,
    onError: () => undefined,
  });
  loop.start();
  for (let i = 0; i < 10; i++) loop.kick();
  assert.equal(n, 0, 'nothing before the debounce ends');
  await sleep(200);
  await loop.idle();
  assert.equal(n, 1);
  await loop.stop();
});
