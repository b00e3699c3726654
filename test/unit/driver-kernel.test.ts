/**
 * Driver logic on the kernel seam: the bridge, macvlan, ipvlan and none
 * drivers run against the recording fake (test/unit/fakes/kernel-ops.ts) and
 * the in-memory firewall, and each test compares the WHOLE plan a driver
 * call applied (every op, in order, in which namespace or lane), including
 * the paths only a refusing kernel reaches (EEXIST, ENODEV, EOPNOTSUPP).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BridgeDriver } from '../../src/network/drivers/bridge/index.js';
import { MacvlanDriver } from '../../src/network/drivers/macvlan/index.js';
import { IpvlanDriver } from '../../src/network/drivers/ipvlan/index.js';
import { NoneDriver } from '../../src/network/drivers/none/index.js';
import { Firewall } from '../../src/network/firewall/index.js';
import { FakeNft } from '../../src/network/firewall/fake.js';
import { Conflict, InvalidParameter } from '../../src/common/errors.js';
import type { DriverNetwork, JoinRequest } from '../../src/network/driver.js';
import { RecordingKernelOps } from './fakes/kernel-ops.js';

const ID = '3f9a0c1b2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8';
const EP = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9';
const BR = 'br-3f9a0c1b2d4e';
const SB = '/run/cove/netns/abc';

function net(extra: Partial<DriverNetwork> = {}): DriverNetwork {
  return {
    id: ID,
    name: 'my-net',
    options: {},
    internal: false,
    enableIPv6: false,
    ipv4: [{ pool: '172.18.0.0/16', gateway: '172.18.0.1/16', auxAddresses: {} }],
    ipv6: [],
    ...extra,
  };
}

function joinReq(n: DriverNetwork, extra: Partial<JoinRequest> = {}): JoinRequest {
  return {
    network: n,
    endpoint: { id: EP, networkId: n.id, ipv4: '172.18.0.2/16', options: {} },
    netnsPath: SB,
    ifName: 'eth0',
    defaultGateway: true,
    ...extra,
  };
}

function bridgeSetup() {
  const kernel = new RecordingKernelOps();
  kernel.strict = true;
  const nft = new FakeNft();
  const d = new BridgeDriver({ kernel, firewall: new Firewall({ backend: nft, checkEveryMs: 0 }) });
  return { kernel, nft, d };
}

test('bridge create: the bridge alone first, then addresses, up and the sysctls; its firewall chains', async () => {
  const { kernel, nft, d } = bridgeSetup();
  assert.deepEqual(await d.createNetwork(net()), { bridge: BR });
  assert.deepEqual(kernel.take(), [
    `- ip link add ${BR} type bridge`,
    `- ip addr replace 172.18.0.1/16 dev ${BR}`,
    `- ip link set dev ${BR} up`,
    '- sysctl net.ipv4.ip_forward=1',
    `- sysctl net.ipv4.conf.${BR}.route_localnet=1`,
    '- sysctl net.bridge.bridge-nf-call-iptables=1',
  ]);
  assert.match(nft.dump(), new RegExp(BR));
});

test('bridge create on an existing bridge (EEXIST) finishes it; a failing firewall undoes only the address it added', async () => {
  const { kernel, nft, d } = bridgeSetup();
  kernel.addLink(null, 'docker1', { kind: 'bridge', addresses: ['10.9.0.7/24'] });
  await d.createNetwork(
    net({ id: 'b'.repeat(64), ipv4: [{ pool: '172.19.0.0/16', gateway: '172.19.0.1/16', auxAddresses: {} }] }),
  );
  kernel.take();
  nft.failNext = new Error('nft refused');
  const n = net({ options: { 'com.docker.network.bridge.name': 'docker1' } });
  await assert.rejects(d.createNetwork(n), /nft refused/);
  assert.deepEqual(kernel.take(), [
    // no `link add`: the kernel said EEXIST, and a user's bridge is reused as Docker does
    '- ip addr replace 172.18.0.1/16 dev docker1',
    '- ip link set dev docker1 up',
    '- sysctl net.ipv4.ip_forward=1',
    '- sysctl net.ipv4.conf.docker1.route_localnet=1',
    '- sysctl net.bridge.bridge-nf-call-iptables=1',
    '- ip addr del 172.18.0.1/16 dev docker1',
  ]);
  assert.ok(kernel.hasLink(null, 'docker1'), "the user's bridge stays");
  assert.deepEqual((await kernel.linkInfo(null, 'docker1'))?.addresses, ['10.9.0.7/24']);
});

test('bridge create whose link the kernel refuses leaves no chains behind (link and firewall are set at once)', async () => {
  const { kernel, nft, d } = bridgeSetup();
  const before = nft.dump();
  kernel.failNext.push({ kind: 'bridge-add', code: 'EPERM' });
  await assert.rejects(d.createNetwork(net()), /fake EPERM/);
  assert.equal(nft.dump(), before);
  assert.deepEqual(kernel.take(), []);
  // and the name is free again
  await d.createNetwork(net());
  assert.ok(kernel.hasLink(null, BR));
  await d.close();
});

test('bridge create refuses a name held by a link that is not a bridge, and changes nothing', async () => {
  const { kernel, d } = bridgeSetup();
  kernel.addLink(null, 'eth9', { kind: 'veth' });
  await assert.rejects(
    d.createNetwork(net({ options: { 'com.docker.network.bridge.name': 'eth9' } })),
    (e: unknown) =>
      e instanceof Conflict && /cannot use eth9 as the network's bridge: it exists and is not a bridge/.test(e.message),
  );
  assert.deepEqual(kernel.take(), []);
});

test('bridge join: veth born in the sandbox, host end IPv6 off, up with hairpin, the inside over rtnetlink', async () => {
  const { kernel, d } = bridgeSetup();
  const n = net();
  await d.createNetwork(n);
  kernel.take();
  const info = await d.join(joinReq(n));
  assert.deepEqual(info, {
    ipv4Gateway: '172.18.0.1',
    driverState: { hostVeth: 'vetha1b2c3d', bridge: BR, mac: '02:42:ac:12:00:02' },
  });
  assert.deepEqual(kernel.take(), [
    `- ip link add vetha1b2c3d master ${BR} type veth peer name eth0 netns ${SB} address 02:42:ac:12:00:02`,
    '- sysctl net.ipv6.conf.vetha1b2c3d.disable_ipv6=1',
    '- ip link set dev vetha1b2c3d up type bridge_slave hairpin on',
    `${SB} sysctl net.ipv6.conf.eth0.disable_ipv6=1`,
    `${SB} link set lo up`,
    `${SB} addr replace 172.18.0.2/16 dev eth0`,
    `${SB} link set eth0 up`,
    `${SB} route replace default via 172.18.0.1 dev eth0`,
  ]);
});

test('bridge join that fails inside the sandbox deletes the veth it made', async () => {
  const { kernel, d } = bridgeSetup();
  const n = net();
  await d.createNetwork(n);
  kernel.take();
  kernel.failNext.push({ kind: 'rtnl', code: 'EINVAL' });
  await assert.rejects(d.join(joinReq(n)), (e: unknown) => (e as { code?: string }).code === 'EINVAL');
  assert.deepEqual(kernel.take(), [
    `- ip link add vetha1b2c3d master ${BR} type veth peer name eth0 netns ${SB} address 02:42:ac:12:00:02`,
    '- sysctl net.ipv6.conf.vetha1b2c3d.disable_ipv6=1',
    '- ip link set dev vetha1b2c3d up type bridge_slave hairpin on',
    '- ip link del vetha1b2c3d',
  ]);
  assert.ok(!kernel.hasLink(null, 'vetha1b2c3d'));
});

test('bridge leave: detach now, delete on the reaper lane; a veth already gone (ENODEV) is not an error', async () => {
  const { kernel, d } = bridgeSetup();
  const n = net();
  await d.createNetwork(n);
  await d.join(joinReq(n));
  kernel.take();
  await d.leave(joinReq(n));
  await d.settle();
  assert.deepEqual(kernel.take(), [
    '- ip link set dev vetha1b2c3d down nomaster group 25455',
    `${SB} link set eth0 down`,
    `${SB} link set eth0 name gonea1b2c3d`,
    '-@reap ip link del group 25455',
  ]);
  assert.ok(!kernel.hasLink(null, 'vetha1b2c3d'));
  // The sandbox's namespace went first and took the pair with it: nothing to do, nothing to reap.
  await d.leave(joinReq(n));
  await d.settle();
  assert.deepEqual(kernel.take(), []);
});

test('bridge rm: out of service at once (chains, addresses), the bridge kept as a spare under a name of its own', async () => {
  const { kernel, nft, d } = bridgeSetup();
  const n = net();
  await d.createNetwork(n);
  kernel.take();
  await d.deleteNetwork(n);
  assert.deepEqual(kernel.take(), [`- ip addr flush dev ${BR}`, `- ip link set dev ${BR} down name cove-spare0`]);
  assert.doesNotMatch(nft.dump(), new RegExp(BR));
  assert.ok(!kernel.hasLink(null, BR));
  // The doomed record's replay in this process: nothing left to do.
  await d.deleteNetwork(n);
  assert.deepEqual(kernel.take(), []);
  // After a restart (a new driver): the bridge is gone already (ENODEV), which is success.
  const again = new BridgeDriver({ kernel, firewall: new Firewall({ backend: new FakeNft(), checkEveryMs: 0 }) });
  await again.deleteNetwork(n);
  assert.deepEqual(kernel.take(), []);
  await again.close();
  assert.deepEqual(kernel.take(), ['-@delete ip link del cove-spare0'], 'the adopted spare goes at shutdown');
  await d.close();
});

test('bridge create takes a spare by a rename (no link add: no wait on a bridge delete), then sets it up as a new one', async () => {
  const { kernel, d } = bridgeSetup();
  const a = net();
  await d.createNetwork(a);
  await d.deleteNetwork(a);
  kernel.take();
  const b = net({ id: 'c'.repeat(64), ipv4: [{ pool: '172.19.0.0/16', gateway: '172.19.0.1/16', auxAddresses: {} }] });
  await d.createNetwork(b);
  assert.deepEqual(kernel.take(), [
    '- ip link set dev cove-spare0 name br-cccccccccccc',
    '- ip addr replace 172.19.0.1/16 dev br-cccccccccccc',
    '- ip link set dev br-cccccccccccc up',
    '- sysctl net.ipv4.ip_forward=1',
    '- sysctl net.ipv4.conf.br-cccccccccccc.route_localnet=1',
    '- sysctl net.bridge.bridge-nf-call-iptables=1',
  ]);
  await d.close();
  assert.deepEqual(kernel.take(), []);
});

test('bridge rm deletes what a fresh link add would not give back: a custom name, an MTU, IPv6; beyond two spares', async () => {
  const { kernel, d } = bridgeSetup();
  const nets = [
    net({ id: '1'.repeat(64), options: { 'com.docker.network.bridge.name': 'mybr0' } }),
    net({ id: '2'.repeat(64), options: { 'com.docker.network.driver.mtu': '1400' } }),
    net({
      id: '3'.repeat(64),
      enableIPv6: true,
      ipv6: [{ pool: 'fd00:1::/64', gateway: 'fd00:1::1/64', auxAddresses: {} }],
    }),
    net({ id: '4'.repeat(64) }),
    net({ id: '5'.repeat(64) }),
    net({ id: '6'.repeat(64) }),
  ];
  for (const [i, n] of nets.entries()) {
    if (i >= 3) n.ipv4 = [{ pool: `172.2${i}.0.0/16`, gateway: `172.2${i}.0.1/16`, auxAddresses: {} }];
    await d.createNetwork(n);
  }
  kernel.take();
  for (const n of nets) await d.deleteNetwork(n);
  assert.deepEqual(kernel.take(/link (del|set)/), [
    '-@delete ip link del mybr0',
    '-@delete ip link del br-222222222222',
    '-@delete ip link del br-333333333333',
    '- ip link set dev br-444444444444 down name cove-spare0',
    '- ip link set dev br-555555555555 down name cove-spare1',
    '-@delete ip link del br-666666666666',
  ]);
  await d.close();
  assert.deepEqual(kernel.take(), ['-@delete ip link del cove-spare0', '-@delete ip link del cove-spare1']);
});

test("bridge spares: a crashed run's spare is adopted; a spare deleted from outside is skipped; a taken name keeps it", async () => {
  const { kernel, d } = bridgeSetup();
  kernel.addLink(null, 'cove-spare0', { kind: 'bridge' });
  kernel.addLink(null, 'cove-spare1', { kind: 'bridge' });
  kernel.addLink(null, 'docker1', { kind: 'bridge' });
  // a user's bridge of that name exists: the spare is not renamed onto it (EEXIST), the bridge is finished
  await d.createNetwork(net({ options: { 'com.docker.network.bridge.name': 'docker1' } }));
  // (the refused rename is not in the log: the fake records what the kernel took)
  assert.deepEqual(kernel.take(/link/), ['- ip link set dev docker1 up']);
  assert.ok(kernel.hasLink(null, 'cove-spare1'));
  kernel.links.get('-')!.delete('cove-spare1');
  kernel.links.get('-')!.delete('cove-spare0');
  await d.createNetwork(
    net({ id: 'd'.repeat(64), ipv4: [{ pool: '172.20.0.0/16', gateway: '172.20.0.1/16', auxAddresses: {} }] }),
  );
  assert.deepEqual(kernel.take(/link/), [
    '- ip link add br-dddddddddddd type bridge',
    '- ip link set dev br-dddddddddddd up',
  ]);
  await d.close();
});

test("macvlan: the parent must exist (Docker's words for a missing one and for a VLAN parent)", async () => {
  const kernel = new RecordingKernelOps();
  kernel.strict = true;
  const d = new MacvlanDriver({ kernel });
  const mv = (parent?: string) =>
    net({
      options: parent ? { parent } : {},
      ipv4: [{ pool: '10.98.0.0/24', gateway: '10.98.0.254/24', auxAddresses: {} }],
    });
  await assert.rejects(
    d.createNetwork(mv('mvp0')),
    (e: unknown) =>
      e instanceof InvalidParameter &&
      e.message === 'invalid subinterface vlan name mvp0, example formatting is eth0.10',
  );
  await assert.rejects(
    d.createNetwork(mv('eth0.10')),
    (e: unknown) =>
      e instanceof InvalidParameter && e.message === 'failed to create eth0.10 vlan link: operation not supported',
  );
  await assert.rejects(
    d.createNetwork(mv()),
    /failed to create the dummy parent link for macvlan network my-net: operation not supported/,
  );
  kernel.addLink(null, 'mvp0', { kind: 'veth' });
  assert.deepEqual(await d.createNetwork(mv('mvp0')), { parent: 'mvp0' });
  assert.deepEqual(kernel.take(), [], 'create only reads');

  const n = mv('mvp0');
  const info = await d.join(joinReq(n, { endpoint: { id: EP, networkId: ID, ipv4: '10.98.0.10/24', options: {} } }));
  assert.deepEqual(info, { ipv4Gateway: '10.98.0.254', driverState: { parent: 'mvp0' } });
  assert.deepEqual(kernel.take(), [
    `- ip link add link mvp0 name eth0 netns ${SB} address 02:42:0a:62:00:0a type macvlan mode bridge`,
    `${SB} sysctl net.ipv6.conf.eth0.disable_ipv6=1`,
    `${SB} link set lo up`,
    `${SB} addr replace 10.98.0.10/24 dev eth0`,
    `${SB} link set eth0 up`,
    `${SB} route replace default via 10.98.0.254 dev eth0`,
  ]);

  // A failure inside the sandbox removes the sub-interface again.
  kernel.failNext.push({ kind: 'rtnl', code: 'EINVAL' });
  await assert.rejects(
    d.join(joinReq(n, { ifName: 'eth1', endpoint: { id: EP, networkId: ID, ipv4: '10.98.0.11/24', options: {} } })),
  );
  assert.deepEqual(kernel.take(), [
    `- ip link add link mvp0 name eth1 netns ${SB} address 02:42:0a:62:00:0b type macvlan mode bridge`,
    `${SB} link del eth1`,
  ]);

  await d.leave(joinReq(n));
  assert.deepEqual(kernel.take(), [`${SB} link del eth0`]);
  kernel.failNext.push({ kind: 'rtnl', code: 'ENODEV' });
  await d.leave(joinReq(n)); // gone with its sandbox: fine
  kernel.failNext.push({ kind: 'rtnl', code: 'EBUSY' });
  await assert.rejects(d.leave(joinReq(n)), (e: unknown) => (e as { code?: string }).code === 'EBUSY');
});

test("ipvlan: a kernel without it (EOPNOTSUPP) is refused at create (probe) and at join, in Docker's words", async () => {
  const kernel = new RecordingKernelOps();
  kernel.addLink(null, 'mvp0');
  kernel.failNext.push({ kind: 'subif-add', code: 'EOPNOTSUPP' });
  const d = new IpvlanDriver({ kernel });
  const n = net({ options: { parent: 'mvp0' } });
  await assert.rejects(
    d.createNetwork(n),
    (e: unknown) =>
      e instanceof InvalidParameter &&
      e.message === 'ipvlan is not supported by this kernel: ip link add type ipvlan: fake EOPNOTSUPP',
  );
  const probe = kernel.take();
  assert.match(probe[0]!, /^\+netns \/.*cove-ipvlan-probe-.*\/ns$/);
  assert.deepEqual(
    probe.slice(1, -1).map((l) => l.replace(/^\S+ /, '')),
    ['ip link add cvprobe0 type veth peer name cvprobe1'],
  );
  assert.match(probe.at(-1)!, /^-netns /);
  kernel.failNext.push({ kind: 'subif-add', code: 'EOPNOTSUPP' });
  await assert.rejects(
    d.join(joinReq(n)),
    (e: unknown) =>
      e instanceof InvalidParameter && e.message === 'failed to create the ipvlan port: operation not supported',
  );
});

test('none: only lo, up, inside the sandbox', async () => {
  const kernel = new RecordingKernelOps();
  const d = new NoneDriver({ kernel });
  assert.deepEqual(await d.join(joinReq(net())), { disableGatewayService: true });
  assert.deepEqual(kernel.take(), [`${SB} link set lo up`]);
});
