/**
 * macvlan, ipvlan, none and host on the real kernel (the tutorial's macvlan
 * section, and the kernel gaps of this machine: no 802.1q, no dummy, no ipvlan).
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { KernelLab, sh, shTry, inNs } from './kernel-lab.js';
import { createNetns, deleteNetns, DISABLE_IPV6 } from '../../src/kernel/netns.js';
import { ipJson } from '../../src/kernel/ip.js';
import { closeHostKernel } from '../../src/kernel/host.js';
import { MacvlanDriver } from '../../src/network/drivers/macvlan/index.js';
import { IpvlanDriver } from '../../src/network/drivers/ipvlan/index.js';
import { NoneDriver } from '../../src/network/drivers/none/index.js';
import { HostDriver } from '../../src/network/drivers/host/index.js';
import { CoveError } from '../../src/common/errors.js';
import type { DriverNetwork } from '../../src/network/driver.js';

const lab = new KernelLab('cvk-mv');
const PEER = 'cvk-mv-peer';
const hex = (n: number) => randomBytes(n).toString('hex');

function net(driver: string, options: Record<string, string>): DriverNetwork {
  return {
    id: hex(32),
    name: `my-${driver}`,
    options,
    internal: false,
    enableIPv6: false,
    ipv4: [{ pool: '10.98.0.0/24', gateway: '10.98.0.254/24', auxAddresses: {} }],
    ipv6: [],
  };
}

const pings = (path: string, ip: string) =>
  shTry(...inNs(path, ['busybox', 'ping', '-c', '1', '-W', '1', ip])).code === 0;
/** Positive checks get three tries: a loaded machine can take over a second for a new neighbour's first reply. */
const reaches = (path: string, ip: string) => pings(path, ip) || pings(path, ip) || pings(path, ip);

before(() => {
  lab.enter();
  const peer = lab.addNamedNetns(PEER);
  // mvp0: the macvlan parent in the daemon netns; its peer is a "physical" host on the LAN
  sh('ip', ['link', 'add', 'mvp0', 'type', 'veth', 'peer', 'name', 'lan0', 'netns', peer]);
  sh('ip', ['link', 'set', 'mvp0', 'up']);
  sh(...inNs(peer, ['ip', '-batch', '-']), 'link set lo up\naddr add 10.98.0.254/24 dev lan0\nlink set lan0 up\n');
});

after(async () => {
  await closeHostKernel();
  await lab.destroy();
});

test('macvlan on a veth parent: containers reach each other and the LAN host, which reaches them', async () => {
  const d = new MacvlanDriver();
  const n = net('macvlan', { parent: 'mvp0' });
  assert.deepEqual(await d.createNetwork(n), { parent: 'mvp0' });
  const paths = [lab.ns('m1'), lab.ns('m2')];
  const ips = ['10.98.0.10', '10.98.0.11'];
  const joins = [];
  for (const [i, p] of paths.entries()) {
    await createNetns(p, { sysctls: DISABLE_IPV6 });
    const ep = await d.createEndpoint(n, { id: hex(32), networkId: n.id, ipv4: `${ips[i]}/24`, options: {} });
    const info = await d.join({ endpoint: ep, network: n, netnsPath: p, ifName: 'eth0', defaultGateway: true });
    assert.equal(info.ipv4Gateway, '10.98.0.254');
    joins.push({ ep, p });
  }
  const [eth0] = await ipJson<
    Array<{ address: string; linkinfo?: { info_kind: string; info_data?: { mode: string } } }>
  >(paths[0]!, ['-d', 'link', 'show', 'dev', 'eth0']);
  assert.equal(eth0!.linkinfo?.info_kind, 'macvlan');
  assert.equal(eth0!.linkinfo?.info_data?.mode, 'bridge');
  assert.equal(eth0!.address, '02:42:0a:62:00:0a');
  assert.ok(reaches(paths[0]!, '10.98.0.11'), 'm1 -> m2');
  assert.ok(reaches(paths[0]!, '10.98.0.254'), 'm1 -> LAN host');
  assert.ok(reaches(`/run/netns/${PEER}`, '10.98.0.11'), 'LAN host -> m2');
  for (const { ep, p } of joins) {
    await d.leave({ endpoint: ep, network: n, netnsPath: p, ifName: 'eth0', defaultGateway: true });
    const links = await ipJson<Array<{ ifname: string }>>(p, ['link', 'show']);
    assert.deepEqual(
      links.map((l) => l.ifname),
      ['lo'],
    );
    await deleteNetns(p);
  }
  await d.deleteNetwork(n);
});

test("macvlan refusals in Docker's words: 802.1q parent, missing parent, no parent, bad mode", async () => {
  const d = new MacvlanDriver();
  await assert.rejects(
    d.createNetwork(net('macvlan', { parent: 'mvp0.10' })),
    (e: CoveError) => e.status === 400 && e.message === 'failed to create mvp0.10 vlan link: operation not supported',
  );
  await assert.rejects(d.createNetwork(net('macvlan', { parent: 'nosuchif' })), {
    message: 'invalid subinterface vlan name nosuchif, example formatting is eth0.10',
  });
  await assert.rejects(d.createNetwork(net('macvlan', {})), /operation not supported/);
  await assert.rejects(
    d.createNetwork(net('macvlan', { parent: 'mvp0', macvlan_mode: 'weird' })),
    /macvlan mode 'weird' is not valid/,
  );
  const links = await ipJson<Array<{ ifname: string }>>(null, ['link', 'show']);
  assert.deepEqual(links.map((l) => l.ifname).sort(), ['lo', 'mvp0'], 'nothing was created');
});

test("ipvlan: this kernel has none, so network create is refused with the kernel's answer", async () => {
  const d = new IpvlanDriver();
  await assert.rejects(d.checkSupported(), (e: CoveError) => {
    assert.equal(e.status, 400);
    assert.equal(
      e.message,
      'ipvlan is not supported by this kernel: ip link add type ipvlan: Error: Unknown device type.',
    );
    return true;
  });
  await assert.rejects(d.createNetwork(net('ipvlan', { parent: 'mvp0' })), /ipvlan is not supported by this kernel/);
});

test('none: the container has only lo, up; host: nothing to do', async () => {
  const p = lab.ns('n1');
  await createNetns(p);
  try {
    const d = new NoneDriver();
    const n = { ...net('null', {}), ipv4: [] };
    await d.join({
      endpoint: { id: hex(32), networkId: n.id, options: {} },
      network: n,
      netnsPath: p,
      ifName: 'eth0',
      defaultGateway: true,
    });
    const links = await ipJson<Array<{ ifname: string; flags: string[] }>>(p, ['link', 'show']);
    assert.deepEqual(
      links.map((l) => l.ifname),
      ['lo'],
    );
    assert.ok(links[0]!.flags.includes('UP'));
    const h = new HostDriver();
    assert.deepEqual(await h.join(), { disableGatewayService: true });
  } finally {
    await deleteNetns(p);
  }
});
