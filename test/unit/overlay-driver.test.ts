import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OverlayDriver } from '../../src/network/drivers/overlay/index.js';
import { peerDiffOps, overlayConfig, type ProgrammedPeer } from '../../src/network/drivers/overlay/plan.js';
import { groupRendered, render } from '../../src/kernel/ops.js';
import { defaultConfig } from '../../src/common/config.js';
import type { DriverNetwork, JoinRequest, PeerEndpoint } from '../../src/network/driver.js';
import { RecordingKernelOps } from './fakes/kernel-ops.js';

const NID = 'k2y8tq4wzmx1c0rn5v7b3d9fa';
const NS = '/run/cove/overlay/4097-k2y8tq4wzmx1';

function net(extra: Partial<DriverNetwork> = {}): DriverNetwork {
  return {
    id: NID,
    name: 'ov',
    internal: false,
    enableIPv6: false,
    ipv6: [],
    options: { 'com.docker.network.driver.overlay.vxlanid_list': '4097' },
    ipv4: [{ pool: '10.0.1.0/24', gateway: '10.0.1.1/24', auxAddresses: {} }],
    ...extra,
  };
}

function setup() {
  const kernel = new RecordingKernelOps();
  const d = new OverlayDriver({ config: defaultConfig({ execRoot: '/run/cove' }), log: undefined as never, kernel });
  d.setCluster({ nodeId: 'self', dataPathAddr: '192.0.2.11' });
  return { kernel, d };
}

function joinReq(n: DriverNetwork, epId: string, ip: string, sb = '/run/cove/sandbox/a'): JoinRequest {
  return {
    network: n,
    endpoint: { id: epId, networkId: n.id, ipv4: ip, options: {} },
    netnsPath: sb,
    ifName: 'eth0',
    defaultGateway: true,
  };
}

const peer = (id: string, node: string, underlay: string, ip: string, mac: string): PeerEndpoint => ({
  id,
  networkId: NID,
  nodeId: node,
  underlay,
  ipv4: ip,
  mac,
});

test('typed ops render to one vocabulary of ip/bridge commands, validated', () => {
  assert.equal(
    (
      render({
        kind: 'vxlan-add',
        name: 'vxlan0',
        netns: NS,
        vni: 4097,
        local: '192.0.2.11',
        port: 4789,
        mtu: 1450,
      }) as { line: string }
    ).line,
    `link add vxlan0 netns ${NS} mtu 1450 type vxlan id 4097 local 192.0.2.11 dstport 4789 nolearning proxy`,
  );
  assert.deepEqual(render({ kind: 'fdb-add', dev: 'vxlan0', mac: '02:42:0A:00:01:03', dst: '192.0.2.12' }), {
    tool: 'bridge',
    line: 'fdb replace 02:42:0a:00:01:03 dev vxlan0 dst 192.0.2.12 self permanent',
  });
  assert.equal(
    (render({ kind: 'neigh-add', dev: 'vxlan0', ip: '10.0.1.3', mac: '02:42:0a:00:01:03' }) as { line: string }).line,
    'neigh replace 10.0.1.3 lladdr 02:42:0a:00:01:03 dev vxlan0 nud permanent',
  );
  assert.throws(() => render({ kind: 'vxlan-add', name: 'vxlan0', vni: 1 << 24, local: '192.0.2.11', port: 4789 }));
  assert.throws(() => render({ kind: 'fdb-add', dev: 'vxlan0', mac: 'zz', dst: '192.0.2.12' }));
  assert.throws(() => render({ kind: 'neigh-add', dev: 'vx 0', ip: '10.0.1.3', mac: '02:42:0a:00:01:03' }));
  // Consecutive ops of one tool are one batch.
  const g = groupRendered([
    { kind: 'fdb-add', dev: 'vxlan0', mac: '02:42:0a:00:01:03', dst: '192.0.2.12' },
    { kind: 'neigh-add', dev: 'vxlan0', ip: '10.0.1.3', mac: '02:42:0a:00:01:03' },
    { kind: 'neigh-add', dev: 'vxlan0', ip: '10.0.1.4', mac: '02:42:0a:00:01:04' },
  ]);
  assert.deepEqual(
    g.map((x) => x.tool),
    ['bridge', 'ip'],
  );
});

test('config: VNI from the vxlanid_list option, MTU option, gateways', () => {
  const c = overlayConfig(
    net({
      options: { 'com.docker.network.driver.overlay.vxlanid_list': '4100', 'com.docker.network.driver.mtu': '1400' },
    }),
  );
  assert.equal(c.vni, 4100);
  assert.equal(c.mtuOption, 1400);
  assert.deepEqual(c.gateways, ['10.0.1.1/24']);
  assert.throws(() => overlayConfig(net({ options: {} })), /no valid VXLAN ID/);
});

test('first join builds the namespace, br0 and vxlan0 (underlay MTU - 50), then the veth; last leave removes it all', async () => {
  const { kernel, d } = setup();
  const n = net();
  const info = await d.join(joinReq(n, 'aaaaaaa1', '10.0.1.2/24'));
  assert.equal(info.disableGatewayService, true);
  assert.deepEqual(kernel.take(), [
    `+netns ${NS}`,
    `- ip link add vxlan0 netns ${NS} mtu 1450 type vxlan id 4097 local 192.0.2.11 dstport 4789 nolearning proxy`,
    `${NS} ip link add br0 mtu 1450 type bridge`,
    `${NS} ip addr replace 10.0.1.1/24 dev br0`,
    `${NS} ip link set dev br0 up`,
    `${NS} ip link set dev vxlan0 master br0 up`,
    `- ip link add vethaaaaaaa netns ${NS} mtu 1450 type veth peer name eth0 netns /run/cove/sandbox/a address 02:42:0a:00:01:02 mtu 1450`,
    `${NS} ip link set dev vethaaaaaaa master br0 up`,
    '/run/cove/sandbox/a sysctl net.ipv6.conf.eth0.disable_ipv6=1',
    '/run/cove/sandbox/a link set lo up',
    '/run/cove/sandbox/a addr replace 10.0.1.2/24 dev eth0',
    '/run/cove/sandbox/a link set eth0 up',
  ]);
  assert.deepEqual(d.localOptions(n), { 'com.docker.network.driver.mtu': '1450' });
  await d.join(joinReq(n, 'bbbbbbb2', '10.0.1.5/24', '/run/cove/sandbox/b'));
  assert.equal(kernel.take(/^\+netns|type vxlan/).length, 0, 'second join reuses the namespace');
  await d.leave(joinReq(n, 'aaaaaaa1', '10.0.1.2/24'));
  assert.deepEqual(kernel.take(), [`${NS} ip link del vethaaaaaaa`]);
  await d.leave(joinReq(n, 'bbbbbbb2', '10.0.1.5/24', '/run/cove/sandbox/b'));
  assert.deepEqual(kernel.take(), [`${NS} ip link del vethbbbbbbb`, `${NS} ip link del vxlan0`, `-netns ${NS}`]);
  assert.deepEqual(d.activeNetworks(), []);
});

test('MTU option wins over the underlay; a failed first join leaves nothing', async () => {
  const { kernel, d } = setup();
  kernel.failOnce = 'veth-add';
  await assert.rejects(d.join(joinReq(net(), 'aaaaaaa1', '10.0.1.2/24')), /fake veth-add failed/);
  assert.equal(kernel.netns.size, 0);
  kernel.take();
  const n = net({
    options: { 'com.docker.network.driver.overlay.vxlanid_list': '4097', 'com.docker.network.driver.mtu': '1300' },
  });
  await d.join(joinReq(n, 'aaaaaaa1', '10.0.1.2/24'));
  assert.ok(kernel.take().some((l) => l.includes('link add br0 mtu 1300 type bridge')));
});

test('peers: static fdb + neighbour per remote endpoint, own node skipped, diffs only, kept until the network comes up', async () => {
  const { kernel, d } = setup();
  const n = net();
  // Told before the network is up here: nothing in the kernel.
  await d.syncPeers(n, [peer('p1', 'n2', '192.0.2.12', '10.0.1.3/24', '02:42:0a:00:01:03')]);
  assert.deepEqual(kernel.take(), []);
  await d.join(joinReq(n, 'aaaaaaa1', '10.0.1.2/24'));
  assert.deepEqual(kernel.take(/fdb|neigh/), [
    `${NS} bridge fdb replace 02:42:0a:00:01:03 dev vxlan0 dst 192.0.2.12 self permanent`,
    `${NS} ip neigh replace 10.0.1.3 lladdr 02:42:0a:00:01:03 dev vxlan0 nud permanent`,
  ]);
  const p2 = peer('p2', 'n3', '192.0.2.13', '10.0.1.4/24', '02:42:0a:00:01:04');
  const mine = peer('m1', 'self', '192.0.2.11', '10.0.1.2/24', '02:42:0a:00:01:02');
  await d.syncPeers(n, [peer('p1', 'n2', '192.0.2.12', '10.0.1.3/24', '02:42:0a:00:01:03'), p2, mine]);
  assert.deepEqual(kernel.take(), [
    `${NS} bridge fdb replace 02:42:0a:00:01:04 dev vxlan0 dst 192.0.2.13 self permanent`,
    `${NS} ip neigh replace 10.0.1.4 lladdr 02:42:0a:00:01:04 dev vxlan0 nud permanent`,
  ]);
  await d.syncPeers(n, [p2]);
  assert.deepEqual(kernel.take(), [
    `${NS} bridge fdb del 02:42:0a:00:01:03 dev vxlan0 dst 192.0.2.12 self`,
    `${NS} ip neigh del 10.0.1.3 dev vxlan0`,
  ]);
});

test('peer diff: an address reused by a new endpoint is replaced, not deleted after being added', () => {
  const e = (mac: string, dst: string, ip: string): ProgrammedPeer => ({ mac, dst, ips: [ip] });
  const ops = peerDiffOps(
    new Map([['old', e('02:42:0a:00:01:03', '192.0.2.12', '10.0.1.3')]]),
    new Map([['new', e('02:42:0a:00:01:03', '192.0.2.13', '10.0.1.3')]]),
  );
  assert.deepEqual(
    ops.map((o) => o.kind),
    ['fdb-add', 'neigh-add'],
  );
});

test('restore: endpoints here adopt the namespace that outlived the daemon; none here removes leftovers; no swarm refuses', async () => {
  const { kernel, d } = setup();
  kernel.netns.add(NS);
  await d.restoreNetwork(net(), [{ id: 'aaaaaaa1', networkId: NID, ipv4: '10.0.1.2/24', options: {} }]);
  assert.deepEqual(kernel.take(), [], 'adopted as it is');
  assert.deepEqual(d.activeNetworks(), [NID]);
  const other = setup();
  other.kernel.netns.add(NS);
  await other.d.restoreNetwork(net(), []);
  assert.deepEqual(other.kernel.take(), [`${NS} ip link del vxlan0`, `-netns ${NS}`]);
  other.d.setCluster(undefined);
  await assert.rejects(other.d.join(joinReq(net(), 'aaaaaaa1', '10.0.1.2/24')), /not part of a swarm/);
});

test('underlay transport is a seam: an encrypted network uses the registered transport', async () => {
  const { kernel, d } = setup();
  const n = net({ options: { 'com.docker.network.driver.overlay.vxlanid_list': '4097', encrypted: '' } });
  await assert.rejects(
    d.join(joinReq(n, 'aaaaaaa1', '10.0.1.2/24')),
    /encrypted overlay network .* is not available on this node: no IPsec ESP and no wireguard-go here; refusing to carry it unencrypted/,
  );
  d.setTransport('encrypted', {
    name: 'wg',
    local: async () => ({ address: '10.201.0.1', mtu: 1420 }),
    remote: (p) => `10.201.0.${p.nodeId === 'n2' ? 2 : 9}`,
  });
  await d.join(joinReq(n, 'aaaaaaa1', '10.0.1.2/24'));
  await d.syncPeers(n, [peer('p1', 'n2', '192.0.2.12', '10.0.1.3/24', '02:42:0a:00:01:03')]);
  const log = kernel.take();
  assert.ok(
    log.some((l) => l.includes('mtu 1370 type vxlan id 4097 local 10.201.0.1')),
    log.join('\n'),
  );
  assert.ok(log.some((l) => l.includes('dst 10.201.0.2 self permanent')));
});
