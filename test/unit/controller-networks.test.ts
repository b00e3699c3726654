/**
 * docker network create/ls/inspect/rm/prune against the controller with fake
 * drivers: Docker's JSON (compared with what real Docker printed on this
 * machine) and Docker's errors, word for word, with their HTTP statuses.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CoveError } from '../../src/common/errors.js';
import { harness, cid } from './fakes/controller-setup.js';

const REF = '/work/shared/reference/peers/docker/inspect';
const ref = (f: string) => {
  try {
    return JSON.parse(readFileSync(`${REF}/${f}`, 'utf8'))[0];
  } catch {
    return undefined;
  }
};

async function rejects(p: Promise<unknown>, status: number, message: string | RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof CoveError, `not a CoveError: ${String(e)}`);
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    assert.equal(e.status, status, `status for "${e.message}"`);
    return true;
  });
}

/** Same keys, recursively, except the maps whose keys are IDs. */
function sameShape(ours: unknown, theirs: unknown, path = ''): void {
  if (theirs === null || typeof theirs !== 'object' || Array.isArray(theirs)) return;
  assert.ok(ours && typeof ours === 'object', `${path} should be an object`);
  for (const k of Object.keys(theirs)) {
    if (path.endsWith('Containers')) continue;
    assert.ok(k in (ours as object), `${path}.${k} missing`);
    sameShape((ours as Record<string, unknown>)[k], (theirs as Record<string, unknown>)[k], `${path}.${k}`);
  }
}

test("first start: bridge, host and none exist; the default bridge looks like Docker's", async (t) => {
  const h = await harness(t);
  const names = (await h.ctl.listNetworks()).map((n) => n.Name).sort();
  assert.deepEqual(names, ['bridge', 'host', 'none']);
  const b = await h.ctl.inspectNetwork('bridge');
  assert.equal(b.Driver, 'bridge');
  assert.equal(b.Scope, 'local');
  assert.deepEqual(b.IPAM, { Driver: 'default', Options: null, Config: [{ Subnet: '172.17.0.0/16' }] });
  assert.deepEqual(b.Options, {
    'com.docker.network.bridge.default_bridge': 'true',
    'com.docker.network.bridge.enable_icc': 'true',
    'com.docker.network.bridge.enable_ip_masquerade': 'true',
    'com.docker.network.bridge.host_binding_ipv4': '0.0.0.0',
    'com.docker.network.bridge.name': 'cove0',
    'com.docker.network.driver.mtu': '1500',
  });
  assert.match(b.Created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
  const docker = ref('t1-inspect-bridge.json');
  if (docker) sameShape(b, docker);
  assert.equal((await h.ctl.inspectNetwork('host')).Driver, 'host');
  assert.equal((await h.ctl.inspectNetwork('none')).Driver, 'null');
  assert.deepEqual(h.bridge.calls, ['createNetwork'], 'the bridge driver made the default bridge');
  assert.equal([...h.bridge.networks.values()][0]!.options['com.docker.network.bridge.name'], 'cove0');
});

test('a restart keeps the predefined networks (same IDs) and re-programs drivers', async (t) => {
  const h = await harness(t);
  const before = (await h.ctl.inspectNetwork('bridge')).Id;
  const ctl2 = await h.restart();
  assert.equal((await ctl2.inspectNetwork('bridge')).Id, before);
  assert.ok(h.bridge.calls.includes('restoreNetwork'));
  assert.equal((await ctl2.listNetworks()).length, 3);
});

test("docker network create alpine-net: 172.18.0.0/16, gateway 172.18.0.1, Docker's JSON, a create event", async (t) => {
  const h = await harness(t);
  // What the docker CLI sends: IPAM with an empty (not absent) Options map, which Docker shows as {}.
  const { Id, Warning } = await h.ctl.createNetwork({
    Name: 'alpine-net',
    Driver: 'bridge',
    IPAM: { Driver: 'default', Options: {}, Config: [] },
  });
  assert.match(Id, /^[0-9a-f]{64}$/);
  assert.equal(Warning, '');
  const n = await h.ctl.inspectNetwork('alpine-net');
  assert.deepEqual(n.IPAM, {
    Driver: 'default',
    Options: {},
    Config: [{ Subnet: '172.18.0.0/16', Gateway: '172.18.0.1' }],
  });
  assert.deepEqual([n.Options, n.Labels, n.Containers, n.ConfigFrom], [{}, {}, {}, { Network: '' }]);
  assert.deepEqual(
    [n.Internal, n.Attachable, n.Ingress, n.ConfigOnly, n.EnableIPv6, n.EnableIPv4],
    [false, false, false, false, false, true],
  );
  const docker = ref('t2-inspect-alpine-net.json');
  if (docker) sameShape(n, docker);
  const ev = h.seen.find((e) => e.Type === 'network' && e.Action === 'create');
  assert.deepEqual(ev?.Actor, { ID: Id, Attributes: { name: 'alpine-net', type: 'bridge' } });
  const dn = h.bridge.networks.get(Id)!;
  assert.deepEqual(dn.ipv4, [{ pool: '172.18.0.0/16', gateway: '172.18.0.1/16', auxAddresses: {} }]);
  assert.equal((await h.ctl.createNetwork({ Name: 'second' })).Id.length, 64);
  // Created through the API without IPAM options: null, as Docker's Go struct marshals an unset map.
  assert.deepEqual((await h.ctl.inspectNetwork('second')).IPAM, {
    Driver: 'default',
    Options: null,
    Config: [{ Subnet: '172.19.0.0/16', Gateway: '172.19.0.1' }],
  });
});

test('network options from the tutorial: --subnet/--gateway/mtu, --internal, labels, --ipv6', async (t) => {
  const h = await harness(t);
  await h.ctl.createNetwork({
    Name: 'x',
    IPAM: { Config: [{ Subnet: '10.11.0.0/16', Gateway: '10.11.0.2' }] },
    Options: { 'com.docker.network.driver.mtu': '1200' },
  });
  const x = await h.ctl.inspectNetwork('x');
  assert.deepEqual(x.IPAM.Config, [{ Subnet: '10.11.0.0/16', Gateway: '10.11.0.2' }]);
  assert.deepEqual(x.Options, { 'com.docker.network.driver.mtu': '1200' });
  await h.ctl.createNetwork({ Name: 'int-net', Internal: true, Labels: { team: 'a' } });
  const i = await h.ctl.inspectNetwork('int-net');
  assert.equal(i.Internal, true);
  assert.deepEqual(i.Labels, { team: 'a' });
  await h.ctl.createNetwork({ Name: 'v6net', EnableIPv6: true, IPAM: { Config: [{ Subnet: '2001:db8:1::/64' }] } });
  const v6 = await h.ctl.inspectNetwork('v6net');
  assert.equal(v6.EnableIPv6, true);
  assert.deepEqual(
    v6.IPAM.Config.map((c) => c.Subnet),
    ['172.19.0.0/16', '2001:db8:1::/64'],
  );
});

test("Docker's create errors: duplicate 409, predefined 403, unknown driver 404, overlap 403, bad gateway 400, no IPv6 pool", async (t) => {
  const h = await harness(t);
  await h.ctl.createNetwork({ Name: 'my-net' });
  await rejects(h.ctl.createNetwork({ Name: 'my-net' }), 409, 'network with name my-net already exists');
  await rejects(h.ctl.createNetwork({ Name: 'bridge' }), 403, 'bridge is a pre-defined network and cannot be created');
  await rejects(h.ctl.createNetwork({ Name: 'n1', Driver: 'nosuchdriver' }), 404, 'plugin "nosuchdriver" not found');
  await rejects(
    h.ctl.createNetwork({ Name: 'n2', IPAM: { Config: [{ Subnet: '172.18.0.0/24' }] } }),
    403,
    'Pool overlaps with other one on this address space',
  );
  await rejects(
    h.ctl.createNetwork({ Name: 'n3', IPAM: { Config: [{ Subnet: '10.12.0.0/16', Gateway: '10.13.0.1' }] } }),
    400,
    'no matching subnet for gateway 10.13.0.1',
  );
  await rejects(
    h.ctl.createNetwork({ Name: 'n4', EnableIPv6: true }),
    403,
    'could not find an available, non-overlapping IPv6 address pool among the defaults to assign to the network',
  );
  await rejects(
    h.ctl.createNetwork({ Name: 'n5', Driver: 'host' }),
    403,
    'only one instance of "host" network is allowed',
  );
  // Nothing half-made: only my-net was added, and its pool is the only one taken.
  assert.deepEqual((await h.ctl.listNetworks()).map((n) => n.Name).sort(), ['bridge', 'host', 'my-net', 'none']);
  await h.ctl.createNetwork({ Name: 'n6' });
  assert.equal((await h.ctl.inspectNetwork('n6')).IPAM.Config[0]!.Subnet, '172.19.0.0/16');
});

test('a driver that fails to create the network leaves nothing behind', async (t) => {
  const h = await harness(t);
  h.bridge.failOnce = 'createNetwork';
  await assert.rejects(h.ctl.createNetwork({ Name: 'broken' }), /fake createNetwork failed/);
  await rejects(h.ctl.inspectNetwork('broken'), 404, 'network broken not found');
  await h.ctl.createNetwork({ Name: 'broken' });
  assert.equal(
    (await h.ctl.inspectNetwork('broken')).IPAM.Config[0]!.Subnet,
    '172.18.0.0/16',
    'its pool was given back',
  );
});

test('rm: pre-defined 403, missing 404, in use 403 naming the endpoints, then OK with a destroy event', async (t) => {
  const h = await harness(t);
  await rejects(h.ctl.removeNetwork('bridge'), 403, 'bridge is a pre-defined network and cannot be removed');
  await rejects(h.ctl.removeNetwork('none'), 403, 'none is a pre-defined network and cannot be removed');
  await rejects(h.ctl.removeNetwork('my-net'), 404, 'network my-net not found');
  const { Id } = await h.ctl.createNetwork({ Name: 'my-net' });
  await h.ctl.createSandbox(h.spec(cid(1), 'my-nginx', { networkMode: 'my-net' }));
  await rejects(
    h.ctl.removeNetwork('my-net'),
    403,
    new RegExp(
      `^error while removing network: network my-net id ${Id} has active endpoints \\(name:"my-nginx" id:"[0-9a-f]{12}"\\)$`,
    ),
  );
  await h.ctl.deleteSandbox(cid(1));
  await h.ctl.removeNetwork(Id.slice(0, 5));
  await rejects(h.ctl.inspectNetwork(Id), 404, `network ${Id} not found`);
  assert.ok(h.seen.some((e) => e.Action === 'destroy' && e.Actor.ID === Id && e.Actor.Attributes.name === 'my-net'));
  assert.ok(h.bridge.calls.includes('deleteNetwork'));
});

test('IDs resolve by full ID, name, unique prefix; an ambiguous prefix is 400', async (t) => {
  const h = await harness(t);
  const ids: string[] = [];
  for (let i = 0; i < 17; i++)
    ids.push((await h.ctl.createNetwork({ Name: `n${i}`, IPAM: { Config: [{ Subnet: `10.${i}.0.0/16` }] } })).Id);
  assert.equal((await h.ctl.resolveNetwork(ids[3]!)).name, 'n3');
  assert.equal((await h.ctl.resolveNetwork('n4')).id, ids[4]);
  assert.equal((await h.ctl.resolveNetwork(ids[5]!.slice(0, 20))).name, 'n5');
  // 17 networks + 3 predefined over 16 hex digits: some first digit is shared.
  const all = (await h.ctl.listNetworks()).map((n) => n.Id);
  const c = '0123456789abcdef'.split('').find((d) => all.filter((id) => id.startsWith(d)).length > 1)!;
  const n = all.filter((id) => id.startsWith(c)).length;
  await rejects(h.ctl.resolveNetwork(c), 400, `network ${c} is ambiguous (${n} matches found based on ID prefix)`);
});

test('ls filters: type, name, id, driver, label, dangling, scope; bad filters are 400', async (t) => {
  const h = await harness(t);
  const a = await h.ctl.createNetwork({ Name: 'alpha', Labels: { env: 'prod', team: 'x' } });
  await h.ctl.createNetwork({ Name: 'beta', Driver: 'macvlan', Labels: { env: 'dev' } });
  await h.ctl.createSandbox(h.spec(cid(1), 'c1', { networkMode: 'alpha' }));
  const names = async (f: Record<string, string[]>) => (await h.ctl.listNetworks(f)).map((n) => n.Name).sort();
  assert.deepEqual(await names({ type: ['custom'] }), ['alpha', 'beta']);
  assert.deepEqual(await names({ type: ['builtin'] }), ['bridge', 'host', 'none']);
  assert.deepEqual(await names({ name: ['lph'] }), ['alpha']);
  assert.deepEqual(await names({ id: [a.Id.slice(0, 8)] }), ['alpha']);
  assert.deepEqual(await names({ driver: ['macvlan'] }), ['beta']);
  assert.deepEqual(await names({ label: ['env'] }), ['alpha', 'beta']);
  assert.deepEqual(await names({ label: ['env=prod', 'team'] }), ['alpha']);
  assert.deepEqual(await names({ dangling: ['true'] }), ['beta']);
  assert.deepEqual(await names({ dangling: ['false'] }), ['alpha', 'bridge', 'host', 'none']);
  assert.deepEqual(await names({ scope: ['swarm'] }), []);
  assert.deepEqual(await names({ name: ['alpha', 'beta'], driver: ['bridge'] }), ['alpha']);
  await rejects(h.ctl.listNetworks({ colour: ['red'] }), 400, "invalid filter 'colour'");
  await rejects(h.ctl.listNetworks({ type: ['weird'] }), 400, "invalid filter: 'type'='weird'");
  const listed = (await h.ctl.listNetworks({ name: ['alpha'] }))[0]!;
  assert.deepEqual(listed.Containers, {}, 'like Docker, the list leaves containers to inspect');
  assert.equal(Object.values((await h.ctl.inspectNetwork('alpha')).Containers)[0]!.Name, 'c1');
});

test('prune removes unused custom networks only, honouring label, label! and until', async (t) => {
  const h = await harness(t);
  await h.ctl.createNetwork({ Name: 'used' });
  await h.ctl.createNetwork({ Name: 'keep', Labels: { keep: '1' } });
  await h.ctl.createNetwork({ Name: 'old1' });
  await h.ctl.createNetwork({ Name: 'old2', Labels: { tier: 'web' } });
  await h.ctl.createSandbox(h.spec(cid(1), 'c1', { networkMode: 'used' }));
  assert.deepEqual(await h.ctl.pruneNetworks({ until: ['2000-01-01T00:00:00Z'] }), []);
  assert.deepEqual(await h.ctl.pruneNetworks({ label: ['tier=web'] }), ['old2']);
  assert.deepEqual((await h.ctl.pruneNetworks({ 'label!': ['keep'], until: ['0s'] })).sort(), ['old1']);
  assert.deepEqual((await h.ctl.listNetworks()).map((n) => n.Name).sort(), ['bridge', 'host', 'keep', 'none', 'used']);
  await assert.rejects(h.ctl.pruneNetworks({ dangling: ['true'] }), /invalid filter 'dangling'/);
  await assert.rejects(h.ctl.pruneNetworks({ until: ['yesterday-ish'] }), /failed to parse value as time or duration/);
});

test('concurrent creates get distinct subnets and unique names', async (t) => {
  const h = await harness(t);
  const res = await Promise.allSettled([
    ...Array.from({ length: 8 }, (_, i) => h.ctl.createNetwork({ Name: `p${i}` })),
    h.ctl.createNetwork({ Name: 'p0' }),
  ]);
  assert.equal(res.filter((r) => r.status === 'rejected').length, 1);
  const subnets = (await h.ctl.listNetworks({ type: ['custom'] })).map((n) => n.IPAM.Config[0]!.Subnet);
  assert.equal(new Set(subnets).size, 8);
});
