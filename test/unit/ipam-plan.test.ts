/**
 * IPAM planning: Docker's default pools in order, user subnets checked with
 * moby's wording, overlaps refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planIpam, pickDefaultPool, NO_POOL, POOL_OVERLAP } from '../../src/network/ipam/plan.js';
import { DOCKER_DEFAULT_POOLS } from '../../src/common/config.js';
import {
  formatCidr,
  parseCidr,
  tryParseCidr,
  canonicalIp,
  reverseName,
  parseIp,
  macFromIpv4,
} from '../../src/network/ipam/ip.js';
import { CoveError } from '../../src/common/errors.js';

const plan = (configs: object[], taken: string[] = [], v6 = false) =>
  planIpam({ configs: configs as never, enableIPv4: true, enableIPv6: v6 }, taken, DOCKER_DEFAULT_POOLS);

function rejects(fn: () => unknown, status: number, message: string | RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CoveError, `not a CoveError: ${String(e)}`);
    assert.equal(e.status, status);
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  });
}

test('ip helpers: parse, format, reverse names, Docker MACs', () => {
  assert.equal(canonicalIp('2001:db8:0::0001'), '2001:db8::1');
  assert.equal(formatCidr(parseCidr('10.11.0.5/16')), '10.11.0.0/16');
  assert.equal(tryParseCidr('10.11.0.5/16', true), undefined);
  assert.equal(tryParseCidr('10.1/16'), undefined, 'short v4 forms are not addresses');
  assert.equal(tryParseCidr('10.0.0.0/33'), undefined);
  assert.equal(reverseName(parseIp('172.18.0.2')), '2.0.18.172.in-addr.arpa');
  assert.equal(macFromIpv4('172.17.0.2'), '02:42:ac:11:00:02');
});

test('user networks get the next free /16 after the default bridge, then 192.168.x.0/20', () => {
  const taken = ['172.17.0.0/16'];
  const first = plan([], taken);
  assert.deepEqual(first.display, [{ Subnet: '172.18.0.0/16', Gateway: '172.18.0.1' }]);
  assert.equal(first.subnets[0]!.gateway, '172.18.0.1');
  assert.equal(first.subnets[0]!.userSubnet, false);
  taken.push('172.18.0.0/16');
  assert.equal(plan([], taken).subnets[0]!.subnet, '172.19.0.0/16');
  // 172.20/14 .. 172.28/14 give 12 more /16s, then 192.168.0.0/20 in steps of /20.
  for (let i = 19; i <= 31; i++) taken.push(`172.${i}.0.0/16`);
  assert.equal(plan([], taken).subnets[0]!.subnet, '192.168.0.0/20');
  taken.push('192.168.0.0/20');
  assert.equal(plan([], taken).subnets[0]!.subnet, '192.168.16.0/20');
});

test('a pool is skipped when any taken subnet overlaps it (also smaller ones)', () => {
  const got = pickDefaultPool(4, [parseCidr('172.17.0.0/16'), parseCidr('172.18.5.0/24')], DOCKER_DEFAULT_POOLS);
  assert.equal(got && formatCidr(got), '172.19.0.0/16');
});

test('when every default pool is used: Docker\'s "could not find an available, non-overlapping" error', () => {
  const taken = ['172.16.0.0/12', '192.168.0.0/16'];
  rejects(() => plan([], taken), 403, NO_POOL(4));
});

test('--ipv6 without a subnet and no IPv6 default pool fails like Docker', () => {
  rejects(
    () => plan([], [], true),
    403,
    'could not find an available, non-overlapping IPv6 address pool among the defaults to assign to the network',
  );
});

test('--ipv6 --subnet 2001:db8:1::/64 keeps an automatic IPv4 subnet and the v6 one as given', () => {
  const p = plan(
    [{ Subnet: '2001:db8:1::/64' }],
    ['172.17.0.0/16', '172.18.0.0/16', '172.19.0.0/16', '172.20.0.0/16', '172.21.0.0/16'],
    true,
  );
  assert.deepEqual(p.display, [{ Subnet: '172.22.0.0/16', Gateway: '172.22.0.1' }, { Subnet: '2001:db8:1::/64' }]);
  const v6 = p.subnets.find((s) => s.family === 6)!;
  assert.equal(v6.gateway, '2001:db8:1::1');
  assert.equal(v6.userSubnet, true);
});

test('--subnet 10.11.0.0/16 --gateway 10.11.0.2 shows the gateway as given', () => {
  const p = plan([{ Subnet: '10.11.0.0/16', Gateway: '10.11.0.2' }]);
  assert.deepEqual(p.display, [{ Subnet: '10.11.0.0/16', Gateway: '10.11.0.2' }]);
  assert.equal(p.subnets[0]!.gateway, '10.11.0.2');
});

test('a user subnet without a gateway: the first address is reserved, inspect shows only the subnet', () => {
  const p = plan([{ Subnet: '10.12.0.0/16', IPRange: '10.12.5.0/24', AuxiliaryAddresses: { host1: '10.12.5.1' } }]);
  assert.deepEqual(p.display, [
    { Subnet: '10.12.0.0/16', IPRange: '10.12.5.0/24', AuxiliaryAddresses: { host1: '10.12.5.1' } },
  ]);
  assert.equal(p.subnets[0]!.gateway, '10.12.0.1');
});

test('gateway outside every subnet: "no matching subnet for gateway X"', () => {
  rejects(
    () => plan([{ Subnet: '10.12.0.0/16', Gateway: '10.13.0.1' }]),
    400,
    'no matching subnet for gateway 10.13.0.1',
  );
});

test('moby ValidateIPAM wording for bad subnets, ranges and aux addresses', () => {
  rejects(
    () => plan([{ Subnet: 'banana' }]),
    400,
    'invalid network config:\ninvalid subnet banana: invalid CIDR block notation',
  );
  rejects(
    () => plan([{ Subnet: '10.11.0.5/16' }]),
    400,
    'invalid network config:\ninvalid subnet 10.11.0.5/16: it should be 10.11.0.0/16',
  );
  rejects(
    () => plan([{ Subnet: '10.11.0.0/16', IPRange: '10.12.0.0/24' }]),
    400,
    "invalid network config:\ninvalid ip-range 10.12.0.0/24: parent subnet 10.11.0.0/16 doesn't contain ip-range",
  );
  rejects(
    () => plan([{ Subnet: '10.11.0.0/24', IPRange: '10.11.0.0/16' }]),
    400,
    /invalid ip-range 10.11.0.0\/16: CIDR block is bigger than its parent subnet 10.11.0.0\/24/,
  );
  rejects(
    () => plan([{ Subnet: '10.11.0.0/16', AuxiliaryAddresses: { a: '10.99.0.1' } }]),
    400,
    "invalid network config:\ninvalid auxiliary address a: parent subnet 10.11.0.0/16 doesn't contain this address",
  );
  rejects(
    () => plan([{ Subnet: 'x' }, { Subnet: 'y' }]),
    400,
    'invalid network config:\n* invalid subnet x: invalid CIDR block notation\n* invalid subnet y: invalid CIDR block notation',
  );
  rejects(() => plan([{ Gateway: '10.1.0.1' }]), 400, 'no matching subnet for gateway 10.1.0.1');
});

test('a subnet overlapping an existing network: "Pool overlaps with other one on this address space" (403)', () => {
  rejects(() => plan([{ Subnet: '172.18.0.0/24' }], ['172.17.0.0/16', '172.18.0.0/16']), 403, POOL_OVERLAP);
  rejects(() => plan([{ Subnet: '10.0.0.0/8' }], ['10.11.0.0/16']), 403, POOL_OVERLAP);
  rejects(() => plan([{ Subnet: '10.1.0.0/16' }, { Subnet: '10.1.2.0/24' }]), 403, POOL_OVERLAP);
});

test('several subnets per network, v4 and v6', () => {
  const p = plan(
    [{ Subnet: '10.1.0.0/24' }, { Subnet: '10.2.0.0/24', Gateway: '10.2.0.254' }, { Subnet: 'fd00:1::/64' }],
    [],
    true,
  );
  assert.deepEqual(
    p.subnets.map((s) => [s.subnet, s.gateway]),
    [
      ['10.1.0.0/24', '10.1.0.1'],
      ['10.2.0.0/24', '10.2.0.254'],
      ['fd00:1::/64', 'fd00:1::1'],
    ],
  );
});

test('an unknown IPAM driver is a missing plugin', () => {
  assert.throws(
    () => planIpam({ driver: 'foo', configs: [], enableIPv4: true, enableIPv6: false }, [], DOCKER_DEFAULT_POOLS),
    (e: unknown) => e instanceof CoveError && e.status === 404 && e.message === 'plugin "foo" not found',
  );
});
