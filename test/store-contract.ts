/**
 * The Store contract: the same assertions, run against every implementation
 * (EmbeddedStore in test/unit/store-embedded.test.ts, EmbeddedStore and
 * EtcdStore in test/e2e/store-conformance.test.ts). Whatever the daemon
 * relies on from a store belongs here, so a network of swarm scope behaves
 * like a local one.
 *
 * `open()` must give a fresh, empty store (its own directory, or its own key
 * prefix on a shared etcd); `dispose()` closes and removes it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CasError, Collection, type Store, type WatchEvent } from '../src/store/store.js';

export interface StoreFixture {
  store: Store;
  dispose(): Promise<void>;
}

/** Polls until cond() holds (watch delivery is asynchronous on a cluster store). */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function expectCas(p: Promise<unknown>, key: string, actual: number): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof CasError, `expected CasError, got ${String(e)}`);
    assert.equal(e.key, key);
    assert.equal(e.actual, actual);
    return true;
  });
}

export function storeContract(label: string, open: () => Promise<StoreFixture>): void {
  const withStore = (name: string, body: (s: Store) => Promise<void>): void =>
    void test(`${label}: ${name}`, async () => {
      const fx = await open();
      try {
        await body(fx.store);
      } finally {
        await fx.dispose();
      }
    });

  withStore('put, get, list by prefix (sorted), delete', async (s) => {
    const r1 = await s.put('networks/b', '2');
    const r2 = await s.put('networks/a', '1');
    await s.put('networksX/z', 'not under networks/');
    await s.put('containers/x', '3');
    assert.ok(r2 > r1);
    assert.deepEqual(await s.get('networks/a'), { key: 'networks/a', value: '1', revision: r2 });
    assert.equal(await s.get('networks/none'), undefined);
    assert.deepEqual(
      (await s.list('networks/')).map((kv) => [kv.key, kv.value, kv.revision]),
      [
        ['networks/a', '1', r2],
        ['networks/b', '2', r1],
      ],
    );
    assert.equal((await s.list('')).length, 4, "the empty prefix lists every key, and only the caller's");
    assert.deepEqual(await s.list('nothing/'), []);
    assert.equal(await s.delete('networks/a'), true);
    assert.equal(await s.delete('networks/a'), false);
    assert.equal(await s.get('networks/a'), undefined);
  });

  withStore('values are kept byte for byte (empty, unicode, JSON, large)', async (s) => {
    const values = ['', 'ünïcødé ☃ 網絡', JSON.stringify({ a: [1, 2], b: 'x\n"y"' }), 'x'.repeat(100_000)];
    for (const [i, v] of values.entries()) await s.put(`v/${i}`, v);
    for (const [i, v] of values.entries()) assert.equal((await s.get(`v/${i}`))?.value, v);
  });

  withStore('revisions: strictly increasing, one per write, equal to what get reports', async (s) => {
    let last = 0;
    for (let i = 0; i < 20; i++) {
      const rev =
        i % 3 === 2 ? await s.txn([{ key: `r/${i}`, value: String(i) }]) : await s.put(`r/${i % 4}`, String(i));
      assert.ok(rev > last, `revision ${rev} after ${last}`);
      last = rev;
    }
    const kv = await s.get('r/1');
    assert.ok(kv && kv.revision <= last);
    // Every write of one transaction carries the same revision.
    const rev = await s.txn([
      { key: 't/a', value: 'a' },
      { key: 't/b', value: 'b' },
    ]);
    assert.equal((await s.get('t/a'))?.revision, rev);
    assert.equal((await s.get('t/b'))?.revision, rev);
    assert.ok(rev > last);
  });

  withStore('compare-and-swap: 0 means "must not exist"; a stale revision fails with the actual one', async (s) => {
    const rev = await s.put('k', 'v1', 0);
    await expectCas(s.put('k', 'again', 0), 'k', rev);
    await expectCas(s.put('k', 'v2', rev + 100), 'k', rev);
    await expectCas(s.put('missing', 'x', 5), 'missing', 0);
    assert.equal((await s.get('k'))?.value, 'v1', 'failed CAS changed nothing');
    const rev2 = await s.put('k', 'v2', rev);
    assert.ok(rev2 > rev);
    assert.equal((await s.get('k'))?.value, 'v2');
    await expectCas(s.delete('k', rev), 'k', rev2);
    await expectCas(s.delete('k', 0), 'k', rev2);
    assert.equal(await s.delete('nope', 0), false);
    assert.equal(await s.delete('k', rev2), true);
    assert.equal(await s.get('k'), undefined);
    // Deleted means "does not exist" again.
    assert.ok((await s.put('k', 'v3', 0)) > rev2);
  });

  withStore('transaction: all or nothing', async (s) => {
    const cur = await s.put('k', 'v');
    await expectCas(
      s.txn([
        { key: 'a', value: 'x' },
        { key: 'k', expectRevision: cur - 1, value: 'v3' },
      ]),
      'k',
      cur,
    );
    assert.equal(await s.get('a'), undefined, 'no write of a failed transaction applies');
    assert.equal((await s.get('k'))?.value, 'v');
    await expectCas(
      s.txn([
        { key: 'k', expectRevision: 0 },
        { key: 'b', value: 'y' },
      ]),
      'k',
      cur,
    );
    assert.equal(await s.get('b'), undefined);
    // A check-only op guards a write of another key.
    const rev = await s.txn([
      { key: 'a', value: 'x', expectRevision: 0 },
      { key: 'k', expectRevision: cur, value: null },
      { key: 'guard', expectRevision: 0 },
    ]);
    assert.equal((await s.get('a'))?.value, 'x');
    assert.equal((await s.get('a'))?.revision, rev);
    assert.equal(await s.get('k'), undefined);
    // Checks only: no write, and it still fails on a mismatch.
    const now = await s.txn([{ key: 'a', expectRevision: rev }]);
    assert.ok(now >= rev);
    assert.equal((await s.get('a'))?.revision, rev, 'a check-only transaction writes nothing');
    await expectCas(s.txn([{ key: 'a', expectRevision: rev + 1 }]), 'a', rev);
    // Two writes of one key in one transaction: the last one wins.
    await s.txn([
      { key: 'dup', value: '1' },
      { key: 'dup', value: '2' },
    ]);
    assert.equal((await s.get('dup'))?.value, '2');
  });

  withStore(
    'transaction: a prefix check fails when any key under it is newer (added or changed), not otherwise',
    async (s) => {
      const r1 = await s.put('members/a', '1');
      const r2 = await s.put('members/b', '1');
      await s.put('membersx', 'outside the prefix');
      const max = Math.max(r1, r2);
      await s.txn([
        { key: 'members/', prefixUnchangedAfter: max },
        { key: 'claim/1', expectRevision: 0, value: 'a' },
      ]);
      assert.equal((await s.get('claim/1'))?.value, 'a');
      // An empty prefix passes.
      await s.txn([{ key: 'nobody/', prefixUnchangedAfter: 0 }]);
      const r3 = await s.put('members/c', '1');
      await expectCas(s.txn([{ key: 'members/', prefixUnchangedAfter: max, value: 'ignored' }]), 'members/', r3);
      await expectCas(
        s.txn([
          { key: 'members/', prefixUnchangedAfter: max },
          { key: 'claim/2', expectRevision: 0, value: 'b' },
        ]),
        'members/',
        r3,
      );
      assert.equal(await s.get('claim/2'), undefined, 'nothing written when the prefix check fails');
      assert.equal(await s.get('members/'), undefined, 'a prefix check never writes its key');
    },
  );

  withStore('collection: 50 concurrent CAS updates never lose a write', async (s) => {
    const c = new Collection<{ n: number }>(s, 'counters');
    await Promise.all(Array.from({ length: 50 }, () => c.update('a', (cur) => ({ n: (cur?.n ?? 0) + 1 }))));
    assert.equal((await c.get('a'))?.value.n, 50);
    assert.deepEqual(
      (await c.list()).map((x) => [x.id, x.value.n]),
      [['a', 50]],
    );
    // update() returning undefined deletes.
    await c.update('a', () => undefined);
    assert.equal(await c.get('a'), undefined);
  });

  withStore('watch: every put and delete under the prefix, in order, with values and revisions', async (s) => {
    const seen: WatchEvent[] = [];
    const stop = s.watch('w/', (ev) => seen.push(ev));
    const expected: Array<[string, string, string, number]> = [];
    for (let i = 0; i < 20; i++) {
      const key = `w/${i % 5}`;
      const rev = await s.put(key, `v${i}`);
      expected.push(['put', key, `v${i}`, rev]);
      await s.put(`other/${i}`, 'not watched');
    }
    for (let i = 0; i < 5; i++) {
      const before = (await s.get(`w/${i}`))!;
      assert.equal(await s.delete(`w/${i}`), true);
      // A delete event carries the value the key had.
      expected.push(['delete', `w/${i}`, before.value, -1]);
    }
    const txRev = await s.txn([
      { key: 'w/t1', value: 'a' },
      { key: 'w/t2', value: 'b' },
    ]);
    expected.push(['put', 'w/t1', 'a', txRev], ['put', 'w/t2', 'b', txRev]);
    await waitFor(() => seen.length >= expected.length, `${expected.length} watch events (have ${seen.length})`);
    const got = seen.map((ev) => [ev.type, ev.kv.key, ev.kv.value, ev.type === 'delete' ? -1 : ev.kv.revision]);
    assert.deepEqual(got, expected);
    for (let i = 1; i < seen.length; i++)
      assert.ok(seen[i]!.kv.revision >= seen[i - 1]!.kv.revision, 'events in revision order');
    stop();
    await new Promise((r) => setTimeout(r, 20));
    const n = seen.length;
    await s.put('w/after-stop', 'x');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(seen.length, n, 'no event after stop()');
  });

  withStore('watch: a change made right after watch() returns is reported; one made before is not', async (s) => {
    await s.put('x/before', '1');
    const seen: string[] = [];
    const stop = s.watch('x/', (ev) => seen.push(`${ev.type} ${ev.kv.key}`));
    await s.put('x/after', '2');
    await waitFor(() => seen.length >= 1, 'the put after watch()');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(seen, ['put x/after']);
    stop();
  });

  withStore('watch: two watchers on overlapping prefixes each get their events', async (s) => {
    const a: string[] = [];
    const b: string[] = [];
    const stopA = s.watch('n/', (ev) => a.push(ev.kv.key));
    const stopB = s.watch('n/x/', (ev) => b.push(ev.kv.key));
    await s.put('n/1', '1');
    await s.put('n/x/2', '2');
    await waitFor(() => a.length >= 2 && b.length >= 1, 'both watchers');
    assert.deepEqual(a, ['n/1', 'n/x/2']);
    assert.deepEqual(b, ['n/x/2']);
    stopA();
    stopB();
  });

  withStore(
    'leases: a leased key lives while its lease is held (past the TTL), revoke deletes it for watchers too, a plain put unbinds a key',
    async (s) => {
      const seen: string[] = [];
      const stop = s.watch('alive/', (ev) => seen.push(`${ev.type} ${ev.kv.key}`));
      const l = s.lease(2);
      const rev = await l.put('alive/n1', 'up');
      assert.ok(rev > 0);
      assert.deepEqual(await s.get('alive/n1'), { key: 'alive/n1', value: 'up', revision: rev });
      await l.put('alive/n2', 'up');
      await s.put('alive/n2', 'plain'); // no lease any more
      await new Promise((r) => setTimeout(r, 3000)); // longer than the TTL: the holder renews it
      assert.equal((await s.get('alive/n1'))?.value, 'up', 'held: not expired');
      await l.revoke();
      assert.equal(await s.get('alive/n1'), undefined);
      assert.equal((await s.get('alive/n2'))?.value, 'plain', 'an unbound key outlives the lease');
      await waitFor(() => seen.includes('delete alive/n1'), 'the delete of the revoked key');
      assert.deepEqual(seen, ['put alive/n1', 'put alive/n2', 'put alive/n2', 'delete alive/n1']);
      stop();
    },
  );

  withStore('leases: keys of a lease nobody renews (a holder that died: release) expire after the TTL', async (s) => {
    const l = s.lease(2);
    await l.put('alive/n3', 'up');
    const other = s.lease(2);
    await other.put('alive/n4', 'up');
    l.release();
    assert.equal((await s.get('alive/n3'))?.value, 'up', 'not at once');
    const t0 = Date.now();
    while ((await s.get('alive/n3')) !== undefined) {
      if (Date.now() - t0 > 15_000) assert.fail("the released lease's key did not expire within 15 s");
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(Date.now() - t0 >= 1000, `expired after about the TTL (${Date.now() - t0} ms), not at once`);
    assert.equal((await s.get('alive/n4'))?.value, 'up', 'another lease is untouched');
    await other.revoke();
  });
}
