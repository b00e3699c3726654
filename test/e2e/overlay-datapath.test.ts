/**
 * The overlay driver on the real kernel, without daemons: two simulated
 * hosts (network namespaces) joined by an underlay bridge in a namespace of
 * its own, one OverlayDriver per host (its "daemon netns" = the host's), a
 * sandbox per host on one overlay network. Checks what a user would: ping
 * and a large DF ping across hosts, VXLAN with the network's VNI on the
 * underlay, and that leaving removes the network from the host.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { labName, run } from '../lab/lab.js';
import { HostKernelOps } from '../../src/kernel/ops.js';
import { createNetns, deleteNetns } from '../../src/kernel/netns.js';
import { OverlayDriver } from '../../src/network/drivers/overlay/index.js';
import { defaultConfig } from '../../src/common/config.js';
import type { DriverNetwork, JoinRequest } from '../../src/network/driver.js';

const UL = labName('ovdu');
const HOSTS = [labName('ovda'), labName('ovdb')];
const ADDR = ['192.0.2.11', '192.0.2.12'];
const DIR = `/tmp/cove-lab/${labName('ovdp')}`;
const NET: DriverNetwork = {
  id: 'k2y8tq4wzmx1c0rn5v7b3d9fa',
  name: 'ov',
  internal: false,
  enableIPv6: false,
  ipv6: [],
  options: { 'com.docker.network.driver.overlay.vxlanid_list': '4242' },
  ipv4: [{ pool: '10.0.1.0/24', gateway: '10.0.1.1/24', auxAddresses: {} }],
};
const EP = [
  { id: 'a1b2c3d4e5f6', networkId: NET.id, ipv4: '10.0.1.2/24', mac: '02:42:0a:00:01:02', options: {} },
  { id: 'b1b2c3d4e5f6', networkId: NET.id, ipv4: '10.0.1.3/24', mac: '02:42:0a:00:01:03', options: {} },
];

const kernels: HostKernelOps[] = [];
const drivers: OverlayDriver[] = [];
const sandboxes = [join(DIR, 'sandbox', 'a'), join(DIR, 'sandbox', 'b')];

async function must(cmd: string, args: string[], input?: string): Promise<string> {
  const r = await run(cmd, args, input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}
const inNs = (path: string, script: string, timeoutMs = 15_000) =>
  run('nsenter', [`--net=${path}`, 'sh', '-c', script], { timeoutMs });

async function cleanup(): Promise<void> {
  for (const d of drivers) await d.deleteNetwork(NET).catch(() => undefined);
  for (const k of kernels) await k.close();
  for (const s of sandboxes) await deleteNetns(s).catch(() => undefined);
  for (const n of [...HOSTS, UL]) await run('ip', ['netns', 'del', n]);
  rmSync(DIR, { recursive: true, force: true });
}

function joinReq(i: number): JoinRequest {
  return { network: NET, endpoint: EP[i]!, netnsPath: sandboxes[i]!, ifName: 'eth0', defaultGateway: true };
}

before(async () => {
  await cleanup();
  mkdirSync(DIR, { recursive: true });
  await must('ip', ['netns', 'add', UL]);
  await must('ip', ['-n', UL, '-batch', '-'], 'link add ul0 type bridge\nlink set ul0 up\nlink set lo up\n');
  for (let i = 0; i < 2; i++) {
    await must('ip', ['netns', 'add', HOSTS[i]!]);
    await must('ip', ['link', 'add', `p${i}`, 'netns', UL, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', HOSTS[i]!]);
    await must('ip', ['-n', UL, 'link', 'set', `p${i}`, 'master', 'ul0', 'up']);
    await must(
      'ip',
      ['-n', HOSTS[i]!, '-batch', '-'],
      `link set lo up\naddr add ${ADDR[i]}/24 dev eth0\nlink set eth0 up\n`,
    );
    const k = new HostKernelOps(`/run/netns/${HOSTS[i]}`);
    kernels.push(k);
    const d = new OverlayDriver({
      config: defaultConfig({ execRoot: join(DIR, `h${i}`) }),
      log: undefined as never,
      kernel: k,
    });
    d.setCluster({ nodeId: `n${i}`, dataPathAddr: ADDR[i]! });
    drivers.push(d);
    await createNetns(sandboxes[i]!);
  }
});

after(cleanup);

test('two hosts, one overlay: static peers carry ping both ways, MTU 1450, VXLAN with the VNI on the underlay', async () => {
  for (let i = 0; i < 2; i++) {
    await drivers[i]!.join(joinReq(i));
    const other = 1 - i;
    await drivers[i]!.syncPeers(NET, [
      { ...EP[other]!, nodeId: `n${other}`, underlay: ADDR[other]!, mac: EP[other]!.mac },
    ]);
  }
  const cap = run(
    'nsenter',
    [`--net=/run/netns/${UL}`, 'timeout', '5', 'tcpdump', '-nn', '-c', '2', '-i', 'ul0', 'udp port 4789'],
    { timeoutMs: 10_000 },
  );
  await new Promise((r) => setTimeout(r, 500));
  const p = await inNs(sandboxes[0]!, 'ping -c 2 -W 2 10.0.1.3');
  assert.equal(p.code, 0, p.stdout + p.stderr);
  const back = await inNs(sandboxes[1]!, 'ping -c 1 -W 2 10.0.1.2');
  assert.equal(back.code, 0, back.stdout + back.stderr);
  const dump = await cap;
  assert.match(
    dump.stdout,
    /192\.0\.2\.1[12]\.\d+ > 192\.0\.2\.1[12]\.4789: VXLAN.*vni 4242/,
    dump.stdout + dump.stderr,
  );
  // MTU: 1500 underlay - 50; the largest unfragmented ping crosses, one byte more does not.
  const mtu = await inNs(sandboxes[0]!, 'ip -o link show eth0');
  assert.match(mtu.stdout, / mtu 1450 /);
  assert.equal((await inNs(sandboxes[0]!, 'ping -c 1 -W 2 -s 1422 -M do 10.0.1.3')).code, 0);
  assert.notEqual((await inNs(sandboxes[0]!, 'ping -c 1 -W 1 -s 1423 -M do 10.0.1.3')).code, 0);
  // No learning, no flooding: vxlan0 knows exactly the remote endpoint.
  const fdb = await must('nsenter', [
    `--net=${join(DIR, 'h0', 'overlay', `4242-${NET.id.slice(0, 12)}`)}`,
    'bridge',
    'fdb',
    'show',
    'dev',
    'vxlan0',
  ]);
  assert.match(fdb, /02:42:0a:00:01:03 dst 192\.0\.2\.12 (link-netnsid \d+ )?self permanent/);
  assert.doesNotMatch(fdb, /00:00:00:00:00:00/);
});

async function iperf(serverNs: string, clientNs: string, ip: string): Promise<number> {
  const srv = run('nsenter', [`--net=${serverNs}`, 'iperf3', '-s', '-1', '-B', ip], { timeoutMs: 30_000 });
  await new Promise((r) => setTimeout(r, 300));
  const c = await run('nsenter', [`--net=${clientNs}`, 'iperf3', '-c', ip, '-t', '3', '-J'], { timeoutMs: 30_000 });
  await srv;
  if (c.code !== 0) throw new Error(`iperf3: ${c.stdout}${c.stderr}`);
  return (
    (JSON.parse(c.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second /
    1e9
  );
}

test('throughput: the overlay between containers against raw VXLAN between the same hosts', async (t) => {
  // Raw VXLAN straight between the host namespaces: the floor.
  for (let i = 0; i < 2; i++) {
    await must(
      'ip',
      ['-n', HOSTS[i]!, '-batch', '-'],
      [
        `link add rawvx type vxlan id 99 local ${ADDR[i]} dstport 4790 nolearning`,
        `addr add 10.77.0.${i + 1}/24 dev rawvx`,
        'link set rawvx up',
      ].join('\n') + '\n',
    );
    // One flood entry to the only peer: the floor needs no per-MAC programming.
    await must('nsenter', [
      `--net=/run/netns/${HOSTS[i]}`,
      'bridge',
      'fdb',
      'append',
      '00:00:00:00:00:00',
      'dev',
      'rawvx',
      'dst',
      ADDR[1 - i]!,
    ]);
  }
  try {
    const raw = await iperf(`/run/netns/${HOSTS[1]}`, `/run/netns/${HOSTS[0]}`, '10.77.0.2');
    const ov = await iperf(sandboxes[1]!, sandboxes[0]!, '10.0.1.3');
    t.diagnostic(
      `raw VXLAN ${raw.toFixed(2)} Gbit/s, overlay ${ov.toFixed(2)} Gbit/s (${((ov / raw) * 100).toFixed(0)} %)`,
    );
    assert.ok(ov > 0.1, `overlay throughput ${ov} Gbit/s`);
  } finally {
    for (const h of HOSTS) await run('ip', ['-n', h, 'link', 'del', 'rawvx']);
  }
});

test('a removed peer is unreachable at once; the last leave removes the network from the host', async () => {
  await drivers[0]!.syncPeers(NET, []);
  assert.notEqual((await inNs(sandboxes[0]!, 'ping -c 1 -W 1 10.0.1.3')).code, 0);
  await drivers[0]!.leave(joinReq(0));
  assert.deepEqual(drivers[0]!.activeNetworks(), []);
  const links = await run('nsenter', [`--net=/run/netns/${HOSTS[0]}`, 'ip', '-o', 'link']);
  assert.doesNotMatch(links.stdout, /vxlan|veth/);
  const left = await run('ls', [join(DIR, 'h0', 'overlay')]);
  assert.equal(left.stdout.trim(), '');
});
