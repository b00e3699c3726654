/**
 * Address allocation: first free after the gateway, ranges, aux addresses,
 * requested addresses, release, and no address handed out twice under
 * concurrency (200 parallel requests -> 200 distinct addresses).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { AddressAllocator, ADDRESS_IN_USE } from '../../src/network/ipam/allocator.js';
import { planIpam } from '../../src/network/ipam/plan.js';
import { DOCKER_DEFAULT_POOLS } from '../../src/common/config.js';
import { CoveError } from '../../src/common/errors.js';

function setup(t: { after: (fn: () => void | Promise<void>) => void }) {
  const dir = mkdtempSync(join(tmpdir(), 'cvn-ipam-'));
  const store = new EmbeddedStore(dir);
  t.after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { store, alloc: new AddressAllocator(store) };
}

const subnets = (configs: object[], v6 = false) =>
  planIpam({ configs: configs as never, enableIPv4: true, enableIPv6: v6 }, ['172.17.0.0/16'], DOCKER_DEFAULT_POOLS)
    .subnets;

test('first container gets the first address after the gateway, the next one the next', async (t) => {
  const { alloc } = setup(t);
  await alloc.addNetwork('n1', subnets([]));
  const a = await alloc.allocate('n1', 4, 'ep1');
  const b = await alloc.allocate('n1', 4, 'ep2');
  assert.deepEqual(a, { cidr: '172.18.0.2/16', address: '172.18.0.2', gateway: '172.18.0.1', subnet: '172.18.0.0/16' });
  assert.equal(b?.cidr, '172.18.0.3/16');
});

test('--gateway 10.11.0.2: the first container gets 10.11.0.1, like Docker', async (t) => {
  const { alloc } = setup(t);
  await alloc.addNetwork('x', subnets([{ Subnet: '10.11.0.0/16', Gateway: '10.11.0.2' }]));
  assert.equal((await alloc.allocate('x', 4, 'c1'))?.cidr, '10.11.0.1/16');
  assert.equal((await alloc.allocate('x', 4, 'c2'))?.cidr, '10.11.0.3/16');
});

test('--ip-range 10.12.5.0/24 --aux-address host1=10.12.5.1: the container gets 10.12.5.2/16', async (t) => {
  const { alloc } = setup(t);
  await alloc.addNetwork(
    'r',
    subnets([{ Subnet: '10.12.0.0/16', IPRange: '10.12.5.0/24', AuxiliaryAddresses: { host1: '10.12.5.1' } }]),
  );
  assert.equal((await alloc.allocate('r', 4, 'c1'))?.cidr, '10.12.5.2/16');
});

test('--ip picks that address; asking again is "Address already in use"; outside the subnet is refused', async (t) => {
  const { alloc } = setup(t);
  await alloc.addNetwork('x', subnets([{ Subnet: '10.11.0.0/16', Gateway: '10.11.0.2' }]));
  assert.equal((await alloc.allocate('x', 4, 'c1', '10.11.0.50'))?.cidr, '10.11.0.50/16');
  await assert.rejects(
    alloc.allocate('x', 4, 'c2', '10.11.0.50'),
    (e: unknown) => e instanceof CoveError && e.message === ADDRESS_IN_USE && e.status === 403,
  );
  await assert.rejects(alloc.allocate('x', 4, 'c2', '10.11.0.2'), /Address already in use/, 'the gateway is taken');
  await assert.rejects(
    alloc.allocate('x', 4, 'c2', '10.99.0.1'),
    /no configured subnet or ip-range contain the IP address 10.99.0.1/,
  );
});

test('released addresses are handed out again; release by another owner does nothing', async (t) => {
  const { alloc } = setup(t);
  await alloc.addNetwork('n', subnets([]));
  const a = await alloc.allocate('n', 4, 'ep1');
  await alloc.release('n', a!.cidr, 'someone-else');
  assert.equal((await alloc.allocate('n', 4, 'ep2'))?.address, '172.18.0.3');
  await alloc.release('n', a!.cidr, 'ep1');
  assert.equal((await alloc.allocate('n', 4, 'ep3'))?.address, '172.18.0.2');
});

test('a full subnet says "No available addresses on this pool" (/30: two hosts, one is the gateway)', async (t) => {
  const { alloc } = setup(t);
  await alloc.addNetwork('s', subnets([{ Subnet: '10.20.0.0/30' }]));
  assert.equal((await alloc.allocate('s', 4, 'a'))?.address, '10.20.0.2');
  await assert.rejects(
    alloc.allocate('s', 4, 'b'),
    (e: unknown) => e instanceof CoveError && e.status === 503 && /No available addresses/.test(e.message),
  );
});

test('IPv6: --ipv6 --subnet 2001:db8:1::/64 gives 2001:db8:1::2/64', async (t) => {
  const { alloc } = setup(t);
  await alloc.addNetwork('v6', subnets([{ Subnet: '2001:db8:1::/64' }], true));
  const a = await alloc.allocate('v6', 6, 'c1');
  assert.deepEqual(a, {
    cidr: '2001:db8:1::2/64',
    address: '2001:db8:1::2',
    gateway: '2001:db8:1::1',
    subnet: '2001:db8:1::/64',
  });
  assert.equal((await alloc.allocate('v6', 6, 'c2', '2001:db8:1::0050'))?.address, '2001:db8:1::50');
  await assert.rejects(alloc.allocate('v6', 6, 'c3', '2001:db8:1::50'), /Address already in use/);
});

test('200 concurrent allocations get 200 distinct addresses, all recorded in the store', async (t) => {
  const { alloc, store } = setup(t);
  await alloc.addNetwork('n', subnets([]));
  const got = await Promise.all(Array.from({ length: 200 }, (_, i) => alloc.allocate('n', 4, `ep${i}`)));
  const addrs = got.map((g) => g!.address);
  assert.equal(new Set(addrs).size, 200);
  // Lowest addresses, no gaps: .0.2 ... .0.201
  assert.ok(addrs.includes('172.18.0.2') && addrs.includes('172.18.0.201'));
  // A second allocator on the same store (another process) sees them all.
  const other = new AddressAllocator(store);
  const [{ state }] = await other.subnetsOf('n');
  assert.equal(Object.values(state!.allocated).filter((o) => o.startsWith('ep')).length, 200);
  const more = await other.allocate('n', 4, 'late');
  assert.equal(more?.address, '172.18.0.202');
});

test('two allocators sharing one store (two processes) never hand out the same address', async (t) => {
  const { alloc, store } = setup(t);
  const other = new AddressAllocator(store);
  await alloc.addNetwork('n', subnets([]));
  const got = await Promise.all(
    Array.from({ length: 100 }, (_, i) => (i % 2 ? alloc : other).allocate('n', 4, `ep${i}`)),
  );
  assert.equal(new Set(got.map((g) => g!.address)).size, 100);
});

test('releaseAllExcept frees addresses of owners that are gone, keeps gateway and aux', async (t) => {
  const { alloc } = setup(t);
  await alloc.addNetwork('r', subnets([{ Subnet: '10.12.0.0/16', AuxiliaryAddresses: { h: '10.12.0.9' } }]));
  await alloc.allocate('r', 4, 'live');
  await alloc.allocate('r', 4, 'dead');
  await alloc.releaseAllExcept('r', (o) => o === 'live');
  const [{ state }] = await alloc.subnetsOf('r');
  assert.deepEqual(state!.allocated, { '10.12.0.1': 'gateway', '10.12.0.9': 'aux:h', '10.12.0.2': 'live' });
});
