import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bridgeConfig,
  bridgeName,
  createBridgeOps,
  joinPlan,
  leavePlan,
  reapOps,
  macFromIPv4,
  hostVethName,
  bridgeSysctls,
} from '../../src/network/drivers/bridge/plan.js';
import { render, type KernelOp } from '../../src/kernel/ops.js';
import { describeOp } from '../../src/kernel/rtnl.js';
import { subIfConfig, subIfJoinPlan } from '../../src/network/drivers/macvlan/plan.js';
import { InvalidParameter } from '../../src/common/errors.js';
import type { DriverNetwork } from '../../src/network/driver.js';

/** Plans as the ip lines src/kernel/ops.ts renders them (the one place). */
const lines = (ops: KernelOp[]): string[] =>
  ops.map((o) => {
    const r = render(o);
    return r.tool === 'rtnl' ? 'rtnl' : r.line;
  });

const ID = '3f9a0c1b2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8';
const EP = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9';

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

test('bridge name: br-<12 hex of the id>, or the name option', () => {
  assert.equal(bridgeName(net()), 'br-3f9a0c1b2d4e');
  assert.equal(bridgeName(net({ options: { 'com.docker.network.bridge.name': 'docker0' } })), 'docker0');
  assert.throws(() => bridgeName(net({ options: { 'com.docker.network.bridge.name': 'bad name' } })), InvalidParameter);
  assert.throws(
    () => bridgeName(net({ options: { 'com.docker.network.bridge.name': 'waytoolongname16' } })),
    InvalidParameter,
  );
});

test('Docker derives the MAC from the IPv4 address', () => {
  assert.equal(macFromIPv4('172.17.0.2'), '02:42:ac:11:00:02');
  assert.equal(macFromIPv4('10.0.255.1'), '02:42:0a:00:ff:01');
  assert.equal(hostVethName(EP), 'vetha1b2c3d');
});

test('create: a bridge with the gateway and MTU, up', () => {
  const cfg = bridgeConfig(net({ options: { 'com.docker.network.driver.mtu': '1450' } }));
  assert.deepEqual(lines(createBridgeOps(cfg)), [
    'link add br-3f9a0c1b2d4e mtu 1450 type bridge',
    'link set dev br-3f9a0c1b2d4e mtu 1450',
    'addr replace 172.18.0.1/16 dev br-3f9a0c1b2d4e',
    'link set dev br-3f9a0c1b2d4e up',
  ]);
  assert.equal(bridgeSysctls(cfg)['net.ipv4.conf.br-3f9a0c1b2d4e.route_localnet'], '1');
  assert.equal(bridgeSysctls(cfg)['net.ipv4.ip_forward'], '1');
});

test('create refuses bad options before touching anything', () => {
  assert.throws(() => bridgeConfig(net({ options: { 'com.docker.network.driver.mtu': 'abc' } })), /invalid MTU/);
  assert.throws(
    () => bridgeConfig(net({ options: { 'com.docker.network.bridge.enable_icc': 'maybe' } })),
    /enable_icc/,
  );
  assert.throws(() => bridgeConfig(net({ ipv4: [{ pool: '172.18.0.0/33', auxAddresses: {} }] })), /invalid subnet/);
  assert.throws(
    () => bridgeConfig(net({ ipv4: [{ pool: '172.18.0.0/16', gateway: '172.18.0.300/16', auxAddresses: {} }] })),
    /invalid gateway/,
  );
  const cfg = bridgeConfig(
    net({
      options: {
        'com.docker.network.bridge.enable_icc': 'false',
        'com.docker.network.bridge.enable_ip_masquerade': '0',
      },
    }),
  );
  assert.equal(cfg.icc, false);
  assert.equal(cfg.masquerade, false);
});

test('join: the veth peer is created directly in the sandbox netns, then configured from inside', () => {
  const cfg = bridgeConfig(net());
  const plan = joinPlan(
    cfg,
    { id: EP, networkId: ID, ipv4: '172.18.0.2/16', options: {} },
    '/run/cove/netns/abc',
    'eth0',
    true,
  );
  assert.deepEqual(lines(plan.host), [
    'link add vetha1b2c3d master br-3f9a0c1b2d4e type veth peer name eth0 netns /run/cove/netns/abc address 02:42:ac:12:00:02',
  ]);
  assert.deepEqual(plan.hostSysctls, { 'net.ipv6.conf.vetha1b2c3d.disable_ipv6': '1' });
  assert.deepEqual(lines(plan.hostUp), ['link set dev vetha1b2c3d up type bridge_slave hairpin on']);
  assert.deepEqual(plan.sandbox.map(describeOp), [
    'sysctl net.ipv6.conf.eth0.disable_ipv6=1',
    'link set lo up',
    'addr replace 172.18.0.2/16 dev eth0',
    'link set eth0 up',
    'route replace default via 172.18.0.1 dev eth0',
  ]);
  assert.equal(plan.ipv4Gateway, '172.18.0.1');
});

test('leave: detach now (host end down, off the bridge, doomed group; sandbox end down and renamed), delete in batches', () => {
  const l = leavePlan({ id: EP }, 'eth1');
  assert.deepEqual(lines(l.host), ['link set dev vetha1b2c3d down nomaster group 25455']);
  assert.deepEqual(l.sandbox.map(describeOp), ['link set eth1 down', 'link set eth1 name gonea1b2c3d']);
  assert.deepEqual(lines(reapOps()), ['link del group 25455']);
});

test('join: no default route for a second network; IPv6 when the network has it; a given MAC wins', () => {
  const cfg = bridgeConfig(
    net({ enableIPv6: true, ipv6: [{ pool: '2001:db8:1::/64', gateway: '2001:db8:1::1/64', auxAddresses: {} }] }),
  );
  const plan = joinPlan(
    cfg,
    { id: EP, networkId: ID, ipv4: '172.18.0.2/16', ipv6: '2001:db8:1::2/64', mac: '02:AA:bb:cc:dd:ee', options: {} },
    '/n',
    'eth1',
    false,
  );
  assert.match(lines(plan.host)[0]!, /address 02:aa:bb:cc:dd:ee$/);
  assert.deepEqual(plan.sandbox.map(describeOp), [
    'sysctl net.ipv6.conf.eth1.disable_ipv6=0',
    'link set lo up',
    'addr replace 172.18.0.2/16 dev eth1',
    'addr replace 2001:db8:1::2/64 dev eth1 nodad',
    'link set eth1 up',
  ]);
  const withGw = joinPlan(
    cfg,
    { id: EP, networkId: ID, ipv4: '172.18.0.2/16', ipv6: '2001:db8:1::2/64', options: {} },
    '/n',
    'eth0',
    true,
  );
  assert.deepEqual(withGw.sandbox.slice(-2).map(describeOp), [
    'route replace default via 172.18.0.1 dev eth0',
    'route replace default via 2001:db8:1::1 dev eth0',
  ]);
});

test('join refuses values that would break an ip -batch line', () => {
  const cfg = bridgeConfig(net());
  const ep = { id: EP, networkId: ID, ipv4: '172.18.0.2/16', options: {} };
  assert.throws(() => joinPlan(cfg, ep, 'relative/path', 'eth0', true), /netns path/);
  assert.throws(() => joinPlan(cfg, ep, '/run/x y', 'eth0', true), /netns path/);
  assert.throws(() => joinPlan(cfg, ep, '/n', 'eth0 up', true), /interface name/);
  assert.throws(() => joinPlan(cfg, { ...ep, ipv4: '172.18.0.2' }, '/n', 'eth0', true), /IPv4/);
  assert.throws(() => joinPlan(cfg, { ...ep, mac: 'zz:zz' }, '/n', 'eth0', true), /MAC/);
});

test('macvlan/ipvlan plans: sub-interface made in the sandbox netns on the parent', () => {
  const n = net({
    options: { parent: 'mvp0' },
    ipv4: [{ pool: '10.98.0.0/24', gateway: '10.98.0.254/24', auxAddresses: {} }],
  });
  const cfg = subIfConfig('macvlan', n);
  assert.ok(!('noParent' in cfg));
  const plan = subIfJoinPlan(
    cfg,
    { id: EP, networkId: ID, ipv4: '10.98.0.10/24', options: {} },
    '/n',
    'eth0',
    true,
    false,
  );
  assert.deepEqual(lines(plan.host), [
    'link add link mvp0 name eth0 netns /n address 02:42:0a:62:00:0a type macvlan mode bridge',
  ]);
  assert.deepEqual(plan.sandbox.map(describeOp).slice(1), [
    'link set lo up',
    'addr replace 10.98.0.10/24 dev eth0',
    'link set eth0 up',
    'route replace default via 10.98.0.254 dev eth0',
  ]);
  assert.deepEqual(subIfConfig('macvlan', net()), { noParent: true });
  const ip = subIfConfig('ipvlan', net({ options: { parent: 'mvp0', ipvlan_mode: 'l3' } }));
  assert.ok(!('noParent' in ip));
  const p2 = subIfJoinPlan(
    ip,
    { id: EP, networkId: ID, ipv4: '10.98.0.10/24', options: {} },
    '/n',
    'eth0',
    true,
    false,
  );
  assert.equal(lines(p2.host)[0], 'link add link mvp0 name eth0 netns /n type ipvlan mode l3 bridge');
  assert.throws(() => subIfConfig('macvlan', net({ options: { parent: 'mvp0', macvlan_mode: 'x' } })), /not valid/);
});
