/**
 * The bridge driver on the real kernel, following the tutorial: containers on
 * a bridge network reach each other and (through NAT) the outside; separate
 * networks are isolated; --internal and icc=false hold; a published port is
 * reached from outside, from the host's 127.0.0.1 and from a neighbour
 * container (hairpin); deleting leaves nothing.
 *
 * "Containers" are bare network namespaces; the daemon's netns is the lab
 * (this test's main thread lives in it), the outside world is one more netns
 * on a veth from the lab.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { KernelLab, sh, shTry, inNs } from './kernel-lab.js';
import { createNetns, deleteNetns, DISABLE_IPV6, udpSocketInNetns } from '../../src/kernel/netns.js';
import { createSocket } from 'node:dgram';
import { ipJson } from '../../src/kernel/ip.js';
import { nftTableExists } from '../../src/kernel/nft.js';
import { closeHostKernel, hostIp } from '../../src/kernel/host.js';
import { BridgeDriver } from '../../src/network/drivers/bridge/index.js';
import type { DriverEndpoint, DriverNetwork } from '../../src/network/driver.js';

const lab = new KernelLab('cvk-br');
const OUTSIDE = 'cvk-br-out';
const OUT_IP = '10.99.0.254';
const LAB_IP = '10.99.0.1';
const driver = new BridgeDriver();
const WWW = '/tmp/cvk-br-www';

function hex(n: number): string {
  return randomBytes(n).toString('hex');
}

function network(name: string, subnet: string, gw: string, extra: Partial<DriverNetwork> = {}): DriverNetwork {
  return {
    id: hex(32),
    name,
    options: {},
    internal: false,
    enableIPv6: false,
    ipv4: [{ pool: subnet, gateway: gw, auxAddresses: {} }],
    ipv6: [],
    ...extra,
  };
}

interface FakeContainer {
  path: string;
  eps: Array<{ net: DriverNetwork; ep: DriverEndpoint; ifName: string }>;
}

const containers: FakeContainer[] = [];

async function container(name: string, joins: Array<[DriverNetwork, string]>): Promise<FakeContainer> {
  const path = lab.ns(name);
  await createNetns(path, { sysctls: DISABLE_IPV6 });
  const c: FakeContainer = { path, eps: [] };
  containers.push(c);
  for (const [i, [net, ip]] of joins.entries()) {
    const ep = await driver.createEndpoint(net, { id: hex(32), networkId: net.id, ipv4: ip, options: {} });
    const ifName = `eth${i}`;
    await driver.join({ endpoint: ep, network: net, netnsPath: path, ifName, defaultGateway: i === 0 });
    c.eps.push({ net, ep, ifName });
  }
  return c;
}

async function remove(c: FakeContainer): Promise<void> {
  for (const { net, ep, ifName } of c.eps) {
    await driver.revokeExternalConnectivity(net, ep);
    await driver.leave({ endpoint: ep, network: net, netnsPath: c.path, ifName, defaultGateway: false });
    await driver.deleteEndpoint(net, ep);
  }
  c.eps = [];
  await deleteNetns(c.path);
}

function pings(from: FakeContainer | null, ip: string): boolean {
  const argv = ['busybox', 'ping', '-c', '1', '-W', '1', ip];
  const [cmd, args] = from ? inNs(from.path, argv) : (['busybox', argv.slice(1)] as [string, string[]]);
  return shTry(cmd, args).code === 0;
}

/** A positive check gets three tries: on a loaded machine the first packet to a new neighbour can take over a second. */
function reaches(from: FakeContainer | null, ip: string): boolean {
  return pings(from, ip) || pings(from, ip) || pings(from, ip);
}

function fetch(from: FakeContainer | string | null, url: string): string {
  const argv = ['timeout', '5', 'busybox', 'wget', '-q', '-O', '-', url];
  const [cmd, args] =
    from === null ? [argv[0]!, argv.slice(1)] : inNs(typeof from === 'string' ? from : from.path, argv);
  const r = shTry(cmd, args, 8000);
  return r.code === 0 ? r.out : `FAILED(${r.code}): ${r.out}`;
}

const netA = network('net-a', '172.30.1.0/24', '172.30.1.1/24');
const netB = network('net-b', '172.30.2.0/24', '172.30.2.1/24');
let c1: FakeContainer;
let c2: FakeContainer;
let c3: FakeContainer;

before(async () => {
  lab.enter();
  const out = lab.addNamedNetns(OUTSIDE);
  sh('ip', ['link', 'add', 'cvkup0', 'type', 'veth', 'peer', 'name', 'out0', 'netns', out]);
  sh('ip', ['-batch', '-'], `addr add ${LAB_IP}/24 dev cvkup0\nlink set cvkup0 up\nroute add default via ${OUT_IP}\n`);
  sh(...inNs(out, ['ip', '-batch', '-']), `link set lo up\naddr add ${OUT_IP}/24 dev out0\nlink set out0 up\n`);
});

after(async () => {
  for (const c of containers) await remove(c).catch(() => undefined);
  for (const n of [netA, netB]) await driver.deleteNetwork(n).catch(() => undefined);
  await driver.close();
  await closeHostKernel();
  rmSync(WWW, { recursive: true, force: true });
  await lab.destroy();
});

test('docker network create: a bridge with the gateway address, up', async () => {
  const state = await driver.createNetwork(netA);
  assert.equal(state.bridge, `br-${netA.id.slice(0, 12)}`);
  await driver.createNetwork(netB);
  const [br] = await ipJson<Array<{ operstate: string; addr_info: Array<{ local: string; prefixlen: number }> }>>(
    null,
    ['-4', 'addr', 'show', 'dev', state.bridge as string],
  );
  assert.deepEqual(
    br!.addr_info.map((a) => `${a.local}/${a.prefixlen}`),
    ['172.30.1.1/24'],
  );
  assert.ok(await nftTableExists('inet', 'cove'));
});

test('two containers on one network: eth0 with a MAC derived from the IP, default route, they ping each other', async () => {
  c1 = await container('c1', [[netA, '172.30.1.2/24']]);
  c2 = await container('c2', [[netA, '172.30.1.3/24']]);
  const links = await ipJson<Array<{ ifname: string; address: string; operstate: string }>>(c1.path, ['link', 'show']);
  const eth0 = links.find((l) => l.ifname === 'eth0');
  assert.equal(eth0?.address, '02:42:ac:1e:01:02');
  const routes = await ipJson<Array<{ dst: string; gateway?: string }>>(c1.path, ['route', 'show']);
  assert.equal(routes.find((r) => r.dst === 'default')?.gateway, '172.30.1.1');
  const v6 = sh(...inNs(c1.path, ['cat', '/proc/sys/net/ipv6/conf/eth0/disable_ipv6'])).trim();
  assert.equal(v6, '1', 'IPv6 off in the container when the network has none');
  assert.ok(reaches(c1, '172.30.1.3'), 'c1 -> c2');
  assert.ok(reaches(c2, '172.30.1.2'), 'c2 -> c1');
  assert.ok(reaches(c1, '172.30.1.1'), 'c1 -> gateway');
});

test('masquerade: a container reaches the outside, which has no route back to the subnet', () => {
  assert.ok(reaches(c1, OUT_IP));
});

test('isolation: containers on different networks cannot reach each other; one on both reaches both', async () => {
  c3 = await container('c3', [[netB, '172.30.2.2/24']]);
  assert.ok(reaches(c3, '172.30.2.1'));
  assert.equal(pings(c3, '172.30.1.2'), false, 'net-b -> net-a dropped');
  assert.equal(pings(c1, '172.30.2.2'), false, 'net-a -> net-b dropped');
  const both = await container('c4', [
    [netA, '172.30.1.4/24'],
    [netB, '172.30.2.4/24'],
  ]);
  assert.ok(reaches(both, '172.30.1.2'));
  assert.ok(reaches(both, '172.30.2.2'));
  // docker network disconnect: cut off at once, the interface gone once the batch delete ran
  const { net, ep, ifName } = both.eps.pop()!;
  await driver.leave({ endpoint: ep, network: net, netnsPath: both.path, ifName, defaultGateway: false });
  assert.equal(pings(both, '172.30.2.2'), false, 'disconnected');
  await driver.settle();
  const links = await ipJson<Array<{ ifname: string }>>(both.path, ['link', 'show']);
  assert.deepEqual(links.map((l) => l.ifname).sort(), ['eth0', 'lo']);
  // and connect again under the same name
  const again = await driver.createEndpoint(net, {
    id: hex(32),
    networkId: net.id,
    ipv4: '172.30.2.4/24',
    options: {},
  });
  await driver.join({ endpoint: again, network: net, netnsPath: both.path, ifName: 'eth1', defaultGateway: false });
  both.eps.push({ net, ep: again, ifName: 'eth1' });
  assert.ok(reaches(both, '172.30.2.2'));
  await remove(both);
});

test('published port: reached from outside, from the host 127.0.0.1 and from a neighbour (hairpin); revoked: gone', async () => {
  mkdirSync(WWW, { recursive: true });
  writeFileSync(`${WWW}/index.html`, 'hello from c1\n');
  const httpd = lab.start(['nsenter', `--net=${c1.path}`, '--', 'busybox', 'httpd', '-f', '-p', '80', '-h', WWW]);
  assert.ok(httpd.pid);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(fetch(c2, 'http://172.30.1.2/'), 'hello from c1\n', 'httpd serves on the bridge');
  const ep = c1.eps[0]!.ep;
  await driver.programExternalConnectivity(netA, ep, [
    {
      proto: 'tcp',
      containerIp: '172.30.1.2',
      containerPort: 80,
      containerPortEnd: 80,
      hostIp: '',
      hostPort: 8080,
      hostPortEnd: 8080,
    },
  ]);
  const out = `/run/netns/${OUTSIDE}`;
  assert.equal(fetch(out, `http://${LAB_IP}:8080/`), 'hello from c1\n', 'from outside');
  assert.equal(fetch(null, 'http://127.0.0.1:8080/'), 'hello from c1\n', 'from the host 127.0.0.1');
  assert.equal(fetch(null, `http://${LAB_IP}:8080/`), 'hello from c1\n', 'from the host address');
  assert.equal(fetch(c2, `http://${LAB_IP}:8080/`), 'hello from c1\n', 'hairpin from c2');
  assert.equal(fetch(c3, `http://${LAB_IP}:8080/`), 'hello from c1\n', 'from another network via the host');
  assert.equal(fetch(c1, `http://${LAB_IP}:8080/`), 'hello from c1\n', 'hairpin to itself');
  // A range of host ports onto one container port is one element
  await driver.programExternalConnectivity(netA, ep, [
    {
      proto: 'tcp',
      containerIp: '172.30.1.2',
      containerPort: 80,
      containerPortEnd: 80,
      hostIp: LAB_IP,
      hostPort: 9000,
      hostPortEnd: 9002,
    },
  ]);
  assert.match(fetch(out, `http://${LAB_IP}:8080/`), /FAILED/, 'replaced binding is gone');
  assert.equal(fetch(out, `http://${LAB_IP}:9002/`), 'hello from c1\n');
  await driver.revokeExternalConnectivity(netA, ep);
  assert.match(fetch(out, `http://${LAB_IP}:9000/`), /FAILED/);
  const map = sh('nft', ['list', 'map', 'inet', 'cove', 'pub4']);
  assert.doesNotMatch(map, /elements/);
  process.kill(httpd.pid!, 'SIGKILL');
});

test('published UDP port: a datagram from outside reaches the container, and its answer comes back', async () => {
  const ep = c1.eps[0]!.ep;
  await driver.programExternalConnectivity(netA, ep, [
    {
      proto: 'udp',
      containerIp: '172.30.1.2',
      containerPort: 7000,
      containerPortEnd: 7000,
      hostIp: '',
      hostPort: 7001,
      hostPortEnd: 7001,
    },
  ]);
  const server = createSocket('udp4');
  const client = createSocket('udp4');
  try {
    await new Promise<void>((r) => server.bind({ fd: udpSocketInNetns(c1.path, '0.0.0.0', 7000) }, () => r()));
    server.on('message', (m, rinfo) =>
      server.send(Buffer.concat([Buffer.from('echo '), m]), rinfo.port, rinfo.address),
    );
    await new Promise<void>((r) =>
      client.bind({ fd: udpSocketInNetns(`/run/netns/${OUTSIDE}`, '0.0.0.0', 0) }, () => r()),
    );
    const answer = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no UDP answer')), 3000);
      client.once('message', (m) => {
        clearTimeout(timer);
        resolve(m.toString());
      });
      client.send('ping', 7001, LAB_IP);
    });
    assert.equal(answer, 'echo ping');
  } finally {
    server.close();
    client.close();
    await driver.revokeExternalConnectivity(netA, ep);
  }
});

test('IPv6 network: containers get their IPv6 address and reach each other over it', async () => {
  const net6 = network('net-6', '172.30.6.0/24', '172.30.6.1/24', {
    enableIPv6: true,
    ipv6: [{ pool: 'fd00:c0e:6::/64', gateway: 'fd00:c0e:6::1/64', auxAddresses: {} }],
  });
  await driver.createNetwork(net6);
  try {
    const v: FakeContainer[] = [];
    for (const [i, name] of ['v1', 'v2'].entries()) {
      const path = lab.ns(name);
      await createNetns(path);
      const ep = await driver.createEndpoint(net6, {
        id: hex(32),
        networkId: net6.id,
        ipv4: `172.30.6.${i + 2}/24`,
        ipv6: `fd00:c0e:6::${i + 2}/64`,
        options: {},
      });
      const info = await driver.join({
        endpoint: ep,
        network: net6,
        netnsPath: path,
        ifName: 'eth0',
        defaultGateway: true,
      });
      assert.equal(info.ipv6Gateway, 'fd00:c0e:6::1');
      const c = { path, eps: [{ net: net6, ep, ifName: 'eth0' }] };
      containers.push(c);
      v.push(c);
    }
    assert.equal(
      shTry(...inNs(v[0]!.path, ['busybox', 'ping6', '-c', '1', '-W', '2', 'fd00:c0e:6::3'])).code,
      0,
      'v1 -> v2 over IPv6',
    );
    assert.equal(
      shTry(...inNs(v[0]!.path, ['busybox', 'ping6', '-c', '1', '-W', '2', 'fd00:c0e:6::1'])).code,
      0,
      'v1 -> IPv6 gateway',
    );
    for (const c of v) await remove(c);
  } finally {
    await driver.deleteNetwork(net6);
  }
});

test('--internal: containers reach each other and the gateway, nothing goes in or out', async () => {
  const netI = network('net-i', '172.30.3.0/24', '172.30.3.1/24', { internal: true });
  await driver.createNetwork(netI);
  try {
    const i1 = await container('i1', [[netI, '172.30.3.2/24']]);
    const i2 = await container('i2', [[netI, '172.30.3.3/24']]);
    assert.ok(reaches(i1, '172.30.3.3'));
    assert.ok(reaches(i1, '172.30.3.1'));
    assert.equal(pings(i1, OUT_IP), false, 'no way out');
    assert.equal(pings(i1, '172.30.1.2'), false, 'no way to another network');
    assert.equal(pings(c1, '172.30.3.2'), false, 'no way in');
    await remove(i1);
    await remove(i2);
  } finally {
    await driver.deleteNetwork(netI);
  }
});

test('enable_icc=false: containers of the network cannot reach each other, but reach the gateway and the outside', async () => {
  const netN = network('net-n', '172.30.4.0/24', '172.30.4.1/24', {
    options: { 'com.docker.network.bridge.enable_icc': 'false', 'com.docker.network.bridge.name': 'cvkicc0' },
  });
  assert.equal((await driver.createNetwork(netN)).bridge, 'cvkicc0');
  try {
    const n1 = await container('n1', [[netN, '172.30.4.2/24']]);
    const n2 = await container('n2', [[netN, '172.30.4.3/24']]);
    assert.equal(pings(n1, '172.30.4.3'), false);
    assert.ok(reaches(n1, '172.30.4.1'));
    assert.ok(reaches(n1, OUT_IP));
    await remove(n1);
    await remove(n2);
  } finally {
    await driver.deleteNetwork(netN);
  }
});

test('enable_ip_masquerade=false: no NAT, so the outside (with no route back) never answers', async () => {
  const netM = network('net-m', '172.30.5.0/24', '172.30.5.1/24', {
    options: { 'com.docker.network.bridge.enable_ip_masquerade': 'false', 'com.docker.network.driver.mtu': '1400' },
  });
  await driver.createNetwork(netM);
  try {
    const m1 = await container('m1', [[netM, '172.30.5.2/24']]);
    assert.ok(reaches(m1, '172.30.5.1'));
    assert.equal(pings(m1, OUT_IP), false);
    const [eth0] = await ipJson<Array<{ mtu: number }>>(m1.path, ['link', 'show', 'dev', 'eth0']);
    assert.equal(eth0!.mtu, 1400);
    await remove(m1);
  } finally {
    await driver.deleteNetwork(netM);
  }
});

test('restore after a daemon restart: a lost bridge and table come back', async () => {
  const bridge = `br-${netB.id.slice(0, 12)}`;
  await remove(c3);
  await hostIp().run([`link del ${bridge}`]);
  sh('nft', ['delete', 'table', 'inet', 'cove']);
  const fresh = new BridgeDriver();
  await fresh.restoreNetwork(netA, []);
  await fresh.restoreNetwork(netB, []);
  await fresh.close();
  const [br] = await ipJson<Array<{ addr_info: Array<{ local: string }> }>>(null, [
    '-4',
    'addr',
    'show',
    'dev',
    bridge,
  ]);
  assert.equal(br!.addr_info[0]!.local, '172.30.2.1');
  assert.ok(reaches(c1, OUT_IP), 'masquerade back');
  const again = await container('c5', [[netB, '172.30.2.5/24']]);
  assert.equal(pings(again, '172.30.1.2'), false, 'isolation back');
  await remove(again);
});

test('delete: containers leave, networks go, no link and no rule is left', async () => {
  for (const c of containers) await remove(c);
  await driver.deleteNetwork(netA);
  await driver.deleteNetwork(netB);
  const links = await ipJson<Array<{ ifname: string; flags: string[] }>>(null, ['link', 'show']);
  // Both bridges are spares for the next create now: renamed, down, without addresses.
  assert.deepEqual(links.map((l) => l.ifname).sort(), ['cove-spare0', 'cove-spare1', 'cvkup0', 'lo']);
  for (const spare of links.filter((l) => l.ifname.startsWith('cove-spare'))) {
    assert.ok(!spare.flags.includes('UP'), `${spare.ifname} is down`);
    const [a] = await ipJson<Array<{ addr_info: unknown[] }>>(null, ['addr', 'show', 'dev', spare.ifname]);
    assert.deepEqual(a!.addr_info, [], `${spare.ifname} has no address`);
  }
  assert.equal(await nftTableExists('inet', 'cove'), false);
  // A new network takes a spare by a rename; the driver's shutdown deletes what is left.
  await driver.createNetwork(netA);
  assert.deepEqual(
    (await ipJson<Array<{ ifname: string }>>(null, ['link', 'show', 'type', 'bridge'])).map((l) => l.ifname).sort(),
    [`br-${netA.id.slice(0, 12)}`, 'cove-spare0'],
  );
  assert.ok(reaches(await container('c9', [[netA, '172.30.1.9/24']]), OUT_IP), 'a spare works as a new bridge');
  for (const c of containers) await remove(c);
  await driver.deleteNetwork(netA);
  await driver.close();
  const after = await ipJson<Array<{ ifname: string }>>(null, ['link', 'show']);
  assert.deepEqual(after.map((l) => l.ifname).sort(), ['cvkup0', 'lo']);
});
