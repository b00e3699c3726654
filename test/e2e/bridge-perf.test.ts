/**
 * What the bridge driver costs per container on this machine: the network's
 * share of a container start (netns + join) and a connect + disconnect, at
 * N containers on one bridge. Targets: start <= 5 ms, connect+disconnect
 * <= 15 ms, flat in N. Prints the numbers; asserts generous bounds only, so a
 * noisy shared VM does not fail it, while a per-command-spawn design would.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { KernelLab } from './kernel-lab.js';
import { createNetns, deleteNetns, DISABLE_IPV6 } from '../../src/kernel/netns.js';
import { closeHostKernel } from '../../src/kernel/host.js';
import { BridgeDriver } from '../../src/network/drivers/bridge/index.js';
import type { DriverEndpoint, DriverNetwork } from '../../src/network/driver.js';

const N = Number(process.env.CVK_PERF_N ?? 100);
const lab = new KernelLab('cvk-perf');
const driver = new BridgeDriver();
const hex = (n: number) => randomBytes(n).toString('hex');
const net: DriverNetwork = {
  id: hex(32),
  name: 'perf',
  options: {},
  internal: false,
  enableIPv6: false,
  ipv4: [{ pool: '10.200.0.0/16', gateway: '10.200.0.1/16', auxAddresses: {} }],
  ipv6: [],
};
const net2: DriverNetwork = {
  ...net,
  id: hex(32),
  name: 'perf2',
  ipv4: [{ pool: '10.201.0.0/16', gateway: '10.201.0.1/16', auxAddresses: {} }],
};
const made: Array<{ path: string; ep: DriverEndpoint }> = [];

function stats(xs: number[]): { min: number; med: number; p95: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => Number(s[Math.min(s.length - 1, Math.floor(q * s.length))]!.toFixed(2));
  return { min: at(0), med: at(0.5), p95: at(0.95), max: at(1) };
}

before(async () => {
  lab.enter();
  await driver.createNetwork(net);
  await driver.createNetwork(net2);
});

after(async () => {
  for (const m of made) await deleteNetns(m.path).catch(() => undefined);
  await driver.deleteNetwork(net).catch(() => undefined);
  await driver.deleteNetwork(net2).catch(() => undefined);
  await driver.close();
  await closeHostKernel();
  await lab.destroy();
});

test(`container start on a bridge (netns + endpoint + join), ${N} containers`, async () => {
  const times: number[] = [];
  const nsTimes: number[] = [];
  const joinTimes: number[] = [];
  for (let i = 0; i < N; i++) {
    const ip = `10.200.${(i + 2) >> 8}.${(i + 2) & 255}/16`;
    const t0 = performance.now();
    const path = lab.ns(`p${i}`);
    await createNetns(path, { sysctls: DISABLE_IPV6 });
    const t1 = performance.now();
    nsTimes.push(t1 - t0);
    const ep = await driver.createEndpoint(net, { id: hex(32), networkId: net.id, ipv4: ip, options: {} });
    await driver.join({ endpoint: ep, network: net, netnsPath: path, ifName: 'eth0', defaultGateway: true });
    const t2 = performance.now();
    joinTimes.push(t2 - t1);
    times.push(t2 - t0);
    made.push({ path, ep });
  }
  console.log(
    `  of which netns: ${JSON.stringify(stats(nsTimes))}, endpoint+join: ${JSON.stringify(stats(joinTimes))}`,
  );
  const first = stats(times.slice(0, Math.max(1, N / 10)));
  const last = stats(times.slice(-Math.max(1, N / 10)));
  console.log(
    `start: all ${JSON.stringify(stats(times))} first10% ${JSON.stringify(first)} last10% ${JSON.stringify(last)}`,
  );
  assert.ok(stats(times).med < 25, 'median start cost is far above the target');
});

test('connect + disconnect of a running container to a second network', async () => {
  const times: number[] = [];
  for (let i = 0; i < Math.min(N, 50); i++) {
    const { path } = made[i]!;
    const t0 = performance.now();
    const ep = await driver.createEndpoint(net2, {
      id: hex(32),
      networkId: net2.id,
      ipv4: `10.201.0.${i + 2}/16`,
      options: {},
    });
    const req = { endpoint: ep, network: net2, netnsPath: path, ifName: 'eth1', defaultGateway: false };
    await driver.join(req);
    await driver.leave(req);
    await driver.deleteEndpoint(net2, ep);
    times.push(performance.now() - t0);
  }
  console.log(`connect+disconnect: ${JSON.stringify(stats(times))}`);
  assert.ok(stats(times).med < 50);
});

test('container stop (leave + netns delete)', async () => {
  const times: number[] = [];
  for (const { path, ep } of made.splice(0)) {
    const t0 = performance.now();
    await driver.leave({ endpoint: ep, network: net, netnsPath: path, ifName: 'eth0', defaultGateway: true });
    await deleteNetns(path);
    times.push(performance.now() - t0);
  }
  console.log(`stop: ${JSON.stringify(stats(times))}`);
  const t0 = performance.now();
  await driver.settle();
  console.log(`batched veth deletion finished ${(performance.now() - t0).toFixed(1)} ms after the last stop`);
});
