import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { Collection } from '../../src/store/store.js';
import { storeContract } from '../store-contract.js';

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'cove-store-'));
}

// The behaviour every Store shares (also run against etcd in test/e2e/store-conformance.test.ts).
storeContract('embedded store', async () => {
  const dir = tmp();
  const store = new EmbeddedStore(dir);
  return {
    store,
    async dispose() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

test('embedded store: state survives a reopen, compaction and a torn last write', async () => {
  const dir = tmp();
  try {
    const s = new EmbeddedStore(dir, 5);
    for (let i = 0; i < 12; i++) await s.put(`k/${i}`, String(i));
    await s.delete('k/3');
    await s.close();
    appendFileSync(join(dir, 'store.log'), '{"rev":99,"ops":[{"key":"k/torn"'); // crash mid-write
    const s2 = new EmbeddedStore(dir, 5);
    const keys = (await s2.list('k/')).map((kv) => kv.key);
    assert.equal(keys.length, 11);
    assert.ok(!keys.includes('k/3'));
    assert.ok(!keys.includes('k/torn'));
    await s2.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('embedded store: keys of a lease die with the process that held it (reopen), from the log and from a snapshot', async () => {
  for (const compactAfter of [1000, 2]) {
    const dir = tmp();
    try {
      const s = new EmbeddedStore(dir, compactAfter);
      const l = s.lease(30);
      await l.put('alive/self', 'up');
      await l.put('alive/unbound', 'up');
      await s.put('alive/unbound', 'kept'); // a plain put takes it off the lease
      await s.put('networks/n', 'kept');
      await s.close(); // the daemon dies without revoking
      const s2 = new EmbeddedStore(dir, compactAfter);
      assert.equal(await s2.get('alive/self'), undefined, "the dead holder's key is gone");
      assert.equal((await s2.get('alive/unbound'))?.value, 'kept');
      assert.equal((await s2.get('networks/n'))?.value, 'kept');
      // A new lease of the new process works as before.
      const l2 = s2.lease(30);
      await l2.put('alive/self', 'up again');
      await s2.close();
      const s3 = new EmbeddedStore(dir, compactAfter);
      assert.equal(await s3.get('alive/self'), undefined);
      await s3.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('embedded store: list(prefix) from the sorted index matches a scan, through puts, deletes, txns and a reopen', async () => {
  const dir = tmp();
  try {
    const s = new EmbeddedStore(dir, 50);
    const model = new Map<string, string>();
    let seed = 7;
    const rnd = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    const prefixes = ['a/', 'a/b', 'ab/', 'b/', ''];
    const check = async (st: EmbeddedStore): Promise<void> => {
      for (const p of prefixes) {
        const want = [...model.keys()].filter((k) => k.startsWith(p)).sort();
        assert.deepEqual(
          (await st.list(p)).map((kv) => kv.key),
          want,
          `prefix '${p}'`,
        );
      }
    };
    for (let i = 0; i < 400; i++) {
      const k = `${['a/', 'a/b', 'ab/', 'b/', 'c'][rnd(5)]}${rnd(40)}`;
      if (rnd(3) === 0) {
        await s.delete(k);
        model.delete(k);
      } else if (rnd(4) === 0) {
        await s.txn([
          { key: k, value: 'x' },
          { key: `${k}z`, value: null },
        ]);
        model.set(k, 'x');
        model.delete(`${k}z`);
      } else {
        await s.put(k, String(i));
        model.set(k, String(i));
      }
      if (i % 50 === 0) await check(s);
    }
    await check(s);
    await s.close();
    const s2 = new EmbeddedStore(dir, 50);
    await check(s2);
    await s2.put('a/new', '1');
    model.set('a/new', '1');
    await check(s2);
    await s2.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Collection.listShared: parsed once per revision, fresh after a change', async () => {
  const dir = tmp();
  try {
    const s = new EmbeddedStore(dir);
    const c = new Collection<{ n: number }>(s, 'things');
    await c.put('x', { n: 1 });
    await c.put('y', { n: 2 });
    const a = await c.listShared();
    const b = await c.listShared();
    assert.deepEqual(
      a.map((e) => [e.id, e.value.n]),
      [
        ['x', 1],
        ['y', 2],
      ],
    );
    assert.equal(a[0]!.value, b[0]!.value, 'the same parsed object while unchanged');
    await c.put('x', { n: 3 });
    const d = await c.listShared();
    assert.equal(d[0]!.value.n, 3);
    assert.equal(d[1]!.value, a[1]!.value);
    assert.notEqual((await c.list())[1]!.value, a[1]!.value, 'list() still hands out copies');
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
