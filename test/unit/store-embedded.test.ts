import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { CasError, Collection } from '../../src/store/store.js';

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'cove-store-'));
}

test('embedded store: put, get, list by prefix, delete', async () => {
  const dir = tmp();
  try {
    const s = new EmbeddedStore(dir);
    const r1 = await s.put('networks/a', '1');
    const r2 = await s.put('networks/b', '2');
    await s.put('containers/x', '3');
    assert.ok(r2 > r1);
    assert.equal((await s.get('networks/a'))?.value, '1');
    assert.deepEqual((await s.list('networks/')).map((kv) => kv.key), ['networks/a', 'networks/b']);
    assert.equal(await s.delete('networks/a'), true);
    assert.equal(await s.delete('networks/a'), false);
    assert.equal(await s.get('networks/a'), undefined);
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('embedded store: compare-and-swap refuses stale revisions and existing keys', async () => {
  const dir = tmp();
  try {
    const s = new EmbeddedStore(dir);
    const rev = await s.put('k', 'v1', 0);
    await assert.rejects(s.put('k', 'again', 0), CasError);
    await assert.rejects(s.put('k', 'v2', rev + 100), CasError);
    await s.put('k', 'v2', rev);
    assert.equal((await s.get('k'))?.value, 'v2');
    // A transaction applies all or nothing.
    const cur = (await s.get('k'))!.revision;
    await assert.rejects(s.txn([{ key: 'a', value: 'x' }, { key: 'k', expectRevision: cur - 1, value: 'v3' }]), CasError);
    assert.equal(await s.get('a'), undefined);
    await s.txn([{ key: 'a', value: 'x', expectRevision: 0 }, { key: 'k', expectRevision: cur, value: null }]);
    assert.equal((await s.get('a'))?.value, 'x');
    assert.equal(await s.get('k'), undefined);
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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

test('collection: concurrent CAS updates never lose a write', async () => {
  const dir = tmp();
  try {
    const s = new EmbeddedStore(dir);
    const c = new Collection<{ n: number }>(s, 'counters');
    await Promise.all(Array.from({ length: 50 }, () => c.update('a', (cur) => ({ n: (cur?.n ?? 0) + 1 }))));
    assert.equal((await c.get('a'))?.value.n, 50);
    const seen: string[] = [];
    const stop = s.watch('counters/', (ev) => seen.push(ev.type));
    await c.delete('a');
    stop();
    assert.deepEqual(seen, ['delete']);
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
