/**
 * One Store contract, two implementations: the embedded store (one host) and
 * the etcd store (a cluster) pass the same assertions (test/store-contract.ts).
 * Then what only a cluster can show: a member killed under load, and a
 * cluster with every member down.
 *
 * The etcd members run in a lab netns `cve-*` (EtcdLab) and serve clients on
 * unix sockets, so this process (root netns) reaches them without a route.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { EtcdStore } from '../../src/store/etcd.js';
import { Collection, type WatchEvent } from '../../src/store/store.js';
import { Unavailable } from '../../src/common/errors.js';
import { GRPCDeadlineExceededError } from 'etcd3';
import { storeContract, waitFor } from '../store-contract.js';
import { EtcdLab } from './etcd-lab.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}
const fmt = (xs: number[]) =>
  `median ${percentile(xs, 50).toFixed(2)} ms, p99 ${percentile(xs, 99).toFixed(2)} ms, max ${Math.max(...xs).toFixed(2)} ms`;

storeContract('embedded store', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cove-store-'));
  const store = new EmbeddedStore(dir);
  return {
    store,
    async dispose() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe('etcd store on a one-member etcd', () => {
  let lab: EtcdLab | undefined;
  let n = 0;
  before(async () => {
    lab = new EtcdLab('one');
    await lab.startCluster(1);
  });
  after(async () => {
    await lab?.destroy();
  });

  // Each test gets its own key prefix on the shared member: a fresh, empty store.
  storeContract('etcd store', async () => {
    const store = new EtcdStore({ endpoints: lab!.endpoints, prefix: `/cove-test/${process.pid}-${n++}/` });
    return { store, dispose: () => store.close() };
  });

  test("etcd store: the prefix namespaces every key; the store's own bookkeeping keys stay hidden", async () => {
    const a = new EtcdStore({ endpoints: lab!.endpoints, prefix: '/ns-a/' });
    const b = new EtcdStore({ endpoints: lab!.endpoints, prefix: '/ns-b/' });
    try {
      await a.put('networks/x', 'from a');
      await b.put('networks/x', 'from b', 0); // the same relative key, no conflict
      assert.equal((await a.get('networks/x'))?.value, 'from a');
      assert.equal((await b.get('networks/x'))?.value, 'from b');
      assert.deepEqual(
        (await a.list('')).map((kv) => kv.key),
        ['networks/x'],
      );
      // In etcd itself the keys carry the prefix.
      const raw = lab!.etcdctl(lab!.endpoints, ['get', '--prefix', '/ns-a/networks/', '--print-value-only']);
      assert.equal(raw.out.trim(), 'from a');
      await assert.rejects(a.put('\u0000txn/x', 'y'), /reserved/);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('etcd store: a write whose reply is lost after it committed is not applied twice, nor reported as a conflict', async () => {
    const s = new EtcdStore({ endpoints: lab!.endpoints, prefix: `/cove-lost/${process.pid}/` });
    try {
      const c = new Collection<{ n: number }>(s, 'counters');
      await c.put('a', { n: 0 }, 0);
      // Stand-in for a leader dying between commit and reply: every other txn
      // reaches etcd and commits, and then its caller sees a deadline error.
      const kv = (s as unknown as { client: { kv: { txn: (req: unknown) => Promise<unknown> } } }).client.kv;
      const realTxn = kv.txn.bind(kv);
      let calls = 0;
      let lost = 0;
      kv.txn = async (req: unknown) => {
        const res = await realTxn(req);
        if (calls++ % 2 === 0) {
          lost++;
          throw new GRPCDeadlineExceededError('4 DEADLINE_EXCEEDED: reply lost (test)');
        }
        return res;
      };
      for (let i = 0; i < 10; i++) await c.update('a', (cur) => ({ n: cur!.n + 1 }));
      await Promise.all(Array.from({ length: 10 }, () => c.update('a', (cur) => ({ n: cur!.n + 1 }))));
      assert.ok(lost >= 10, `${lost} replies were lost`);
      assert.equal((await c.get('a'))?.value.n, 20, 'each update applied exactly once');
      // An unconditional put and a delete with a lost reply: one revision each, and delete still says it deleted.
      const rev = await s.put('plain', 'x');
      assert.equal((await s.get('plain'))?.revision, rev);
      assert.equal(await s.delete('plain'), true);
      assert.equal(await s.get('plain'), undefined);
      kv.txn = realTxn;
    } finally {
      await s.close();
    }
  });

  test('etcd store: a watch whose start revision was compacted away re-lists and reports what changed', async () => {
    const prefix = `/cove-compact/${process.pid}/`;
    const s = new EtcdStore({ endpoints: lab!.endpoints, prefix });
    const other = new EtcdStore({ endpoints: lab!.endpoints, prefix });
    try {
      await s.put('w/keep', '1'); // s has now seen this revision, and its next watch starts after it
      await other.put('w/changed', 'a');
      await other.put('w/changed', 'b');
      await other.put('w/gone', 'x');
      await other.delete('w/gone');
      const now = await other.put('w/last', 'z');
      const r = lab!.etcdctl(lab!.endpoints, ['compact', String(now)]);
      assert.ok(r.ok, r.out);
      const seen: string[] = [];
      const stop = s.watch('w/', (ev) => seen.push(`${ev.type} ${ev.kv.key}=${ev.kv.value}`));
      await waitFor(() => seen.length >= 2, `the resync events (have ${JSON.stringify(seen)})`);
      // The history between s's last revision and now is gone: s gets the current state of what changed.
      assert.deepEqual(seen, ['put w/changed=b', 'put w/last=z']);
      // And then the live stream continues.
      await other.put('w/new', 'n');
      await waitFor(() => seen.length >= 3, 'the live event after the resync');
      assert.equal(seen[2], 'put w/new=n');
      stop();
    } finally {
      await s.close();
      await other.close();
    }
  });

  test('etcd store: a lease granted by one client (its key put in a transaction) is kept alive by another that adopts it', async () => {
    const prefix = `/cove-adopt/${process.pid}/`;
    const granter = new EtcdStore({ endpoints: lab!.endpoints, prefix });
    const holder = new EtcdStore({ endpoints: lab!.endpoints, prefix });
    try {
      // As a swarm admission: the record and the liveness key in one transaction, the key on a fresh lease.
      const id = await granter.grantLease(2);
      await granter.txnWithLease([{ key: 'nodes/n1', expectRevision: 0, value: 'rec' }], {
        id,
        puts: [{ key: 'alive/n1', value: 'up' }],
      });
      assert.equal((await granter.get('nodes/n1'))?.value, 'rec');
      await assert.rejects(
        granter.txnWithLease([{ key: 'nodes/n1', expectRevision: 0, value: 'again' }], {
          id,
          puts: [{ key: 'alive/n1', value: 'twice' }],
        }),
        /compare-and-swap failed on nodes\/n1/,
        'its compares hold as in txn()',
      );
      const lease = holder.adoptLease(id, 2);
      let lost = false;
      lease.onLost(() => (lost = true));
      await sleep(4500); // past twice the TTL: only the holder's renewals keep it
      assert.equal((await granter.get('alive/n1'))?.value, 'up', 'the adopted lease is renewed');
      assert.equal(lost, false);
      // A put through the adopted lease binds another key to it; revoke deletes both.
      await lease.put('alive/n1-extra', 'x');
      await lease.revoke();
      assert.equal(await granter.get('alive/n1'), undefined);
      assert.equal(await granter.get('alive/n1-extra'), undefined);
      assert.equal((await granter.get('nodes/n1'))?.value, 'rec', 'keys not on the lease stay');
      // A lease that expired before it was adopted is reported lost.
      const late = await granter.grantLease(1);
      await sleep(2500);
      const gone = holder.adoptLease(late, 1);
      let goneLost = false;
      gone.onLost(() => (goneLost = true));
      await waitFor(() => goneLost, 'the expired lease reported lost');
      gone.release();
    } finally {
      await granter.close();
      await holder.close();
    }
  });

  test('etcd store: latency of put, compare-and-swap and watch delivery (one member, unix socket)', async (t) => {
    const s = new EtcdStore({ endpoints: lab!.endpoints, prefix: `/cove-perf/${process.pid}/` });
    const w = new EtcdStore({ endpoints: lab!.endpoints, prefix: `/cove-perf/${process.pid}/` });
    try {
      await s.put('warm', 'up');
      const put: number[] = [];
      for (let i = 0; i < 200; i++) {
        const t0 = performance.now();
        await s.put(`p/${i % 10}`, String(i));
        put.push(performance.now() - t0);
      }
      const cas: number[] = [];
      let rev = await s.put('cas', '0');
      for (let i = 0; i < 200; i++) {
        const t0 = performance.now();
        rev = await s.put('cas', String(i), rev);
        cas.push(performance.now() - t0);
      }
      const get: number[] = [];
      for (let i = 0; i < 200; i++) {
        const t0 = performance.now();
        await s.get('cas');
        get.push(performance.now() - t0);
      }
      // Watch delivery: from the start of a put (by another client) to its event.
      const sent = new Map<string, number>();
      const delivery: number[] = [];
      await w.get('warm'); // w has seen a revision: its watch starts there
      const stop = w.watch('lat/', (ev) => {
        const t0 = sent.get(ev.kv.value);
        if (t0 !== undefined) delivery.push(performance.now() - t0);
      });
      await sleep(100); // the watch stream is up
      for (let i = 0; i < 200; i++) {
        sent.set(String(i), performance.now());
        await s.put('lat/k', String(i));
      }
      await waitFor(() => delivery.length >= 200, `200 watch events (have ${delivery.length})`);
      stop();
      const report = [
        `put: ${fmt(put)}`,
        `CAS put: ${fmt(cas)}`,
        `get (linearizable): ${fmt(get)}`,
        `watch put→event: ${fmt(delivery)}`,
      ];
      for (const line of report) t.diagnostic(line);
      console.log(report.join('\n'));
      // Loose bounds: a store this slow would stall every network operation.
      assert.ok(percentile(put, 50) < 50, fmt(put));
      assert.ok(percentile(cas, 50) < 50, fmt(cas));
      assert.ok(percentile(delivery, 50) < 50, fmt(delivery));
    } finally {
      await s.close();
      await w.close();
    }
  });
});

describe('etcd store on a three-member etcd cluster', () => {
  let lab: EtcdLab | undefined;
  before(async () => {
    lab = new EtcdLab('three');
    await lab.startCluster(3);
  });
  after(async () => {
    await lab?.destroy();
  });

  test('etcd store: the raft leader is killed (SIGKILL) while CAS updates race and a watch runs; nothing is lost or doubled', async (t) => {
    const store = new EtcdStore({
      endpoints: lab!.endpoints,
      prefix: '/cove-ha/',
      dialTimeoutMs: 1000,
      requestTimeoutMs: 15_000,
    });
    const watcher = new EtcdStore({
      endpoints: lab!.endpoints,
      prefix: '/cove-ha/',
      dialTimeoutMs: 1000,
      requestTimeoutMs: 15_000,
    });
    const events: WatchEvent[] = [];
    try {
      await watcher.get('x');
      const stop = watcher.watch('counters/', (ev) => events.push(ev));
      const c = new Collection<{ n: number }>(store, 'counters');
      let running = true;
      let done = 0;
      let slowest = 0;
      const failures: unknown[] = [];
      const worker = async () => {
        while (running) {
          const t0 = performance.now();
          try {
            await c.update('a', (cur) => ({ n: (cur?.n ?? 0) + 1 }));
            done++;
          } catch (e) {
            failures.push(e);
          }
          slowest = Math.max(slowest, performance.now() - t0);
        }
      };
      const workers = Array.from({ length: 8 }, () => worker());
      await sleep(700);
      const leader = lab!.leader();
      assert.ok(leader, 'a leader before the kill');
      const beforeKill = done;
      await lab!.kill(leader, 'SIGKILL');
      const killedAt = performance.now();
      await sleep(5000);
      running = false;
      await Promise.all(workers);
      const afterKill = done - beforeKill;
      t.diagnostic(
        `killed ${leader.name} (pid ${leader.pid}); ${done} updates, ${afterKill} after the kill; slowest update ${slowest.toFixed(0)} ms`,
      );
      console.log(
        `leader ${leader.name} killed; updates ${done} (${afterKill} after the kill), slowest ${slowest.toFixed(0)} ms, ${((performance.now() - killedAt) / 1000).toFixed(1)} s observed`,
      );
      assert.deepEqual(failures.map(String), [], 'no update failed');
      assert.ok(afterKill > 20, `the store kept serving after the kill (${afterKill} updates)`);
      // Every acknowledged update is in the counter, and none twice.
      assert.equal((await c.get('a'))?.value.n, done);
      // The watch saw each of them exactly once, in order.
      await waitFor(() => events.length >= done, `${done} watch events (have ${events.length})`, 15_000);
      await sleep(200);
      assert.deepEqual(
        events.map((ev) => (JSON.parse(ev.kv.value) as { n: number }).n),
        Array.from({ length: done }, (_, i) => i + 1),
      );
      for (let i = 1; i < events.length; i++) assert.ok(events[i]!.kv.revision > events[i - 1]!.kv.revision);
      stop();
      // The killed member comes back on its data dir and catches up.
      await lab!.restart(leader);
      const only = new EtcdStore({ endpoints: [leader.endpoint], prefix: '/cove-ha/' });
      try {
        assert.equal((JSON.parse((await only.get('counters/a'))!.value) as { n: number }).n, done);
      } finally {
        await only.close();
      }
    } finally {
      await store.close();
      await watcher.close();
    }
  });

  test('etcd store: a frozen leader (SIGSTOP: connections open, no replies) stalls a write for a bounded time; the watch moves on', async (t) => {
    const opts = { endpoints: lab!.endpoints, prefix: '/cove-frozen/', dialTimeoutMs: 1000, requestTimeoutMs: 15_000 };
    const store = new EtcdStore(opts);
    const watcher = new EtcdStore(opts);
    const leader = lab!.leader();
    assert.ok(leader, 'a leader');
    const events: WatchEvent[] = [];
    let frozen = false;
    try {
      await watcher.get('x');
      const stop = watcher.watch('seq/', (ev) => events.push(ev));
      const revs: number[] = [];
      const lat: number[] = [];
      const writeFor = async (ms: number) => {
        const until = performance.now() + ms;
        while (performance.now() < until) {
          const t0 = performance.now();
          revs.push(await store.put('seq/k', String(revs.length)));
          lat.push(performance.now() - t0);
          await sleep(10);
        }
      };
      await writeFor(500);
      process.kill(leader.pid!, 'SIGSTOP');
      frozen = true;
      const before = lat.length;
      await writeFor(8000);
      const during = lat.slice(before);
      t.diagnostic(`froze ${leader.name}: ${during.length} puts in 8 s, slowest ${Math.max(...during).toFixed(0)} ms`);
      console.log(
        `leader ${leader.name} frozen: ${during.length} puts in 8 s, slowest ${Math.max(...during).toFixed(0)} ms; before: ${fmt(lat.slice(0, before))}`,
      );
      assert.ok(during.length > 50, 'the store kept serving');
      assert.ok(Math.max(...during) < 6000, `a write stalled ${Math.max(...during).toFixed(0)} ms`);
      // Every write reaches the watcher once, in order, even if its stream was on the frozen member.
      await waitFor(() => events.length >= revs.length, `${revs.length} watch events (have ${events.length})`, 15_000);
      await sleep(200);
      assert.deepEqual(
        events.map((ev) => ev.kv.revision),
        revs,
      );
      stop();
    } finally {
      if (frozen) process.kill(leader.pid!, 'SIGCONT');
      await store.close();
      await watcher.close();
    }
    await lab!.waitHealthy(leader);
  });

  test('etcd store: every member down gives a clear Unavailable (503) within the timeout, not a hang', async (t) => {
    const connected = new EtcdStore({
      endpoints: lab!.endpoints,
      prefix: '/cove-down/',
      dialTimeoutMs: 500,
      requestTimeoutMs: 2000,
    });
    try {
      await connected.put('k', 'v');
      const seen: WatchEvent[] = [];
      connected.watch('', (ev) => seen.push(ev));
      for (const m of lab!.members) await lab!.kill(m, 'SIGKILL');
      const fresh = new EtcdStore({
        endpoints: lab!.endpoints,
        prefix: '/cove-down/',
        dialTimeoutMs: 500,
        requestTimeoutMs: 2000,
      });
      try {
        for (const [name, op] of [
          ['get, connected client', () => connected.get('k')],
          ['put, connected client', () => connected.put('k', 'v2')],
          ['CAS txn, connected client', () => connected.txn([{ key: 'k', expectRevision: 1, value: 'x' }])],
          ['list, new client', () => fresh.list('')],
          ['delete, new client', () => fresh.delete('k')],
        ] as Array<[string, () => Promise<unknown>]>) {
          const t0 = performance.now();
          await assert.rejects(op(), (e: unknown) => {
            assert.ok(e instanceof Unavailable, `${name}: ${String(e)}`);
            assert.equal(e.status, 503);
            assert.match(e.message, /^cluster store unreachable: /);
            return true;
          });
          const took = performance.now() - t0;
          t.diagnostic(`${name}: Unavailable after ${took.toFixed(0)} ms`);
          assert.ok(took < 2000 + 1000, `${name} took ${took.toFixed(0)} ms`);
        }
        const err = await connected.get('k').catch((e: Error) => e);
        console.log(`all members down: ${(err as Error).message}`);
      } finally {
        const t0 = performance.now();
        await fresh.close();
        assert.ok(performance.now() - t0 < 3000, 'close() does not hang on a dead cluster');
      }
      assert.deepEqual(seen, [], 'no spurious watch events');
    } finally {
      const t0 = performance.now();
      await connected.close();
      assert.ok(performance.now() - t0 < 3000, 'close() does not hang on a dead cluster');
    }
  });
});
