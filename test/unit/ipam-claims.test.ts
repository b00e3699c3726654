/**
 * Address claims of swarm networks (src/network/ipam/claims.ts): several
 * nodes claiming at once on one cluster store never share an address, a
 * node admitted after another listed the nodes cannot slip a duplicate in,
 * managers' VIPs and nodes' endpoints never collide, and releases only free
 * what their owner holds.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { SwarmAddressClaims } from '../../src/network/ipam/claims.js';
import { ADDRESS_IN_USE, NO_AVAILABLE } from '../../src/network/ipam/allocator.js';
import type { SubnetPlan } from '../../src/network/ipam/plan.js';

const NET = 'net1';
const plan = (subnet: string, gateway: string, extra: Partial<SubnetPlan> = {}): SubnetPlan => ({
  family: 4,
  subnet,
  gateway,
  aux: {},
  userSubnet: true,
  ...extra,
});

async function cluster(t: TestContext, nodes: string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'cvn-claims-'));
  const store = new EmbeddedStore(dir);
  t.after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  for (const n of nodes) await store.put(`nodes/${n}`, JSON.stringify({ ID: n }));
  // No endpoint view: every node starts from the same candidate, the worst case for contention.
  const claims = (id: string) => new SwarmAddressClaims(store, id, () => []);
  return { store, claims };
}

test('30 concurrent claims from 3 nodes with no view of each other: 30 distinct addresses, none the gateway', async (t) => {
  const { claims } = await cluster(t, ['a', 'b', 'c']);
  const net = { id: NET, subnets: [plan('10.0.9.0/24', '10.0.9.1')] };
  const byNode = ['a', 'b', 'c'].map((id) => ({ id, c: claims(id) }));
  const got = await Promise.all(
    byNode.flatMap(({ id, c }) =>
      Array.from({ length: 10 }, (_, i) =>
        c.claim(net, [{ family: 4 }], `${id}-ep${i}`, 'node').then((r) => r.addresses.get(4)!.address),
      ),
    ),
  );
  assert.equal(new Set(got).size, 30, `duplicates in ${got.join(' ')}`);
  assert.ok(!got.includes('10.0.9.1') && !got.includes('10.0.9.0'));
  const held = await byNode[0]!.c.claimsOf(NET);
  assert.deepEqual([...held.keys()].sort(), [...got].sort());
  for (const [addr, owner] of held)
    assert.equal(got[['a', 'b', 'c'].indexOf(owner[0]!) * 10 + Number(owner.slice(4))], addr);
});

test('a node admitted after another listed the nodes: the stale list is refused by the guard, no duplicate', async (t) => {
  const { store, claims } = await cluster(t, ['a', 'b']);
  const net = { id: NET, subnets: [plan('10.0.9.0/24', '10.0.9.1')] };
  const a = claims('a');
  assert.equal((await a.claim(net, [{ family: 4 }], 'a-1', 'node')).addresses.get(4)!.address, '10.0.9.2');
  // c joins; a's cached node list does not know it.
  await store.put('nodes/c', JSON.stringify({ ID: 'c' }));
  const c = claims('c');
  assert.equal(
    (await c.claim(net, [{ family: 4 }], 'c-1', 'node')).addresses.get(4)!.address,
    '10.0.9.3',
    'c checks a (its list is fresh) and the view-less pick retries past .2',
  );
  // a's cached list has no c, so without the guard it would check a and b only and could take c's address.
  const got = (await a.claim(net, [{ family: 4 }], 'a-2', 'node')).addresses.get(4)!.address;
  assert.notEqual(got, '10.0.9.3');
  assert.equal(got, '10.0.9.4');
});

test('preferred addresses: another node holds it -> in use; the gateway or an aux address -> in use; outside -> invalid', async (t) => {
  const { claims } = await cluster(t, ['a', 'b']);
  const net = { id: NET, subnets: [plan('10.0.9.0/24', '10.0.9.1', { aux: { router: '10.0.9.250' } })] };
  const a = claims('a');
  const b = claims('b');
  await a.claim(net, [{ family: 4, preferred: '10.0.9.50' }], 'a-1', 'node');
  await assert.rejects(b.claim(net, [{ family: 4, preferred: '10.0.9.50' }], 'b-1', 'node'), {
    message: ADDRESS_IN_USE,
  });
  await assert.rejects(b.claim(net, [{ family: 4, preferred: '10.0.9.1' }], 'b-1', 'node'), {
    message: ADDRESS_IN_USE,
  });
  await assert.rejects(b.claim(net, [{ family: 4, preferred: '10.0.9.250' }], 'b-1', 'node'), {
    message: ADDRESS_IN_USE,
  });
  await assert.rejects(
    b.claim(net, [{ family: 4, preferred: '10.1.0.5' }], 'b-1', 'node'),
    /no configured subnet or ip-range contain the IP address 10.1.0.5/,
  );
  await assert.rejects(b.claim(net, [{ family: 4, preferred: 'fe80::1' }], 'b-1', 'node'), /invalid IPv4 address/);
  // Released by its owner only; then b may take it.
  await a.release(NET, '10.0.9.50/24', 'someone-else', 'node');
  await assert.rejects(b.claim(net, [{ family: 4, preferred: '10.0.9.50' }], 'b-1', 'node'), {
    message: ADDRESS_IN_USE,
  });
  await a.release(NET, '10.0.9.50/24', 'a-1', 'node');
  await b.claim(net, [{ family: 4, preferred: '10.0.9.50' }], 'b-1', 'node');
});

test("managers' VIPs and nodes' endpoints never share an address; ranges, exhaustion, orphans and network rm", async (t) => {
  const { store, claims } = await cluster(t, ['m', 'w']);
  const net = { id: NET, subnets: [plan('10.0.9.0/29', '10.0.9.1')] }; // .2-.6 usable
  const m = claims('m');
  const w = claims('w');
  const picks = await Promise.all([
    m.claim(net, [{ family: 4 }], 'vip:s1', 'cluster'),
    w.claim(net, [{ family: 4 }], 'w-1', 'node'),
    m.claim(net, [{ family: 4 }], 'vip:s2', 'cluster'),
    w.claim(net, [{ family: 4 }], 'w-2', 'node'),
    m.claim(net, [{ family: 4 }], 'm-1', 'node'),
  ]);
  const addrs = picks.map((p) => p.addresses.get(4)!.address);
  assert.deepEqual([...addrs].sort(), ['10.0.9.2', '10.0.9.3', '10.0.9.4', '10.0.9.5', '10.0.9.6']);
  await assert.rejects(w.claim(net, [{ family: 4 }], 'w-3', 'node'), { message: NO_AVAILABLE });
  assert.equal(await m.clusterOwner(NET, addrs[0]!), 'vip:s1');
  // A claim whose endpoint is gone (a crash between claim and release) is freed by the reconcile.
  assert.equal(await w.releaseOrphans((owner) => owner === 'w-1'), 1);
  assert.equal((await w.claim(net, [{ family: 4 }], 'w-3', 'node')).addresses.get(4)!.address, addrs[3]);
  // An ip-range narrows the candidates.
  const ranged = { id: 'net2', subnets: [plan('10.0.8.0/24', '10.0.8.1', { ipRange: '10.0.8.128/25' })] };
  assert.equal((await w.claim(ranged, [{ family: 4 }], 'w-r', 'node')).addresses.get(4)!.address, '10.0.8.129');
  // The caller's own writes commit with the claim, or not at all.
  await assert.rejects(
    w.claim(ranged, [{ family: 4 }], 'w-x', 'node', () => [{ key: 'guard', expectRevision: 42, value: 'x' }]),
  );
  assert.deepEqual([...(await w.claimsOf('net2')).values()], ['w-r']);
  await m.removeNetwork(NET);
  assert.deepEqual(
    (await store.list('ipam/')).map((kv) => kv.key).filter((k) => k.includes(`/${NET}/`)),
    [],
  );
});
