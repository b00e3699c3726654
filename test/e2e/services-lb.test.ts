/**
 * The load-balancing datapath of service VIPs on one real host, without a
 * swarm: ServiceDiscovery (src/services/discovery.ts) reads a service and its
 * tasks from a store and programs `ip cove_lb` in the sandboxes of the
 * daemon's running containers, whose tasks are real nginx containers on a
 * user-defined network. Checked from inside a client container: the VIP
 * answers from every task, a long connection stays on its task, a task that
 * stops is out of the map within a second and never answers again, a VIP
 * without tasks refuses at once. (The cross-host version runs in
 * services-swarm.test.ts.)
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, REPO } from '../lab/lab.js';
import { api } from './clients-helpers.js';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { EventBus } from '../../src/common/events.js';
import { silentLogger } from '../../src/common/log.js';
import { ServiceDiscovery } from '../../src/services/discovery.js';
import { taskCollection, serviceCollection } from '../../src/services/records.js';
import type { ContainerService } from '../../src/runtime/types.js';
import type { Service, Task } from '../../src/services/types.js';

const VIP = '10.77.0.250';
let lab: Lab;
let dir: string;
let store: EmbeddedStore;
let disc: ServiceDiscovery;
let netId: string;
const ips = new Map<string, string>();

function task(name: string, ip: string, state: Task['Status']['State'] = 'running'): Task {
  return {
    ID: name,
    Version: { Index: 0 },
    CreatedAt: '',
    UpdatedAt: '',
    Labels: {},
    Spec: {},
    SpecVersion: { Index: 1 },
    ServiceID: 'web',
    Slot: 1,
    NodeID: 'n1',
    Status: { Timestamp: new Date().toISOString(), State: state, Message: '' },
    DesiredState: 'running',
    NetworksAttachments: [{ Network: { ID: netId }, Addresses: [`${ip}/24`] }],
  };
}

before(async () => {
  lab = await Lab.create('svlb');
  await lab.startDaemon();
  for (const img of ['alpine', 'nginx'])
    await lab.coveOk(['load', '-q', '-i', join(REPO, 'build/images', `${img}.tar`)]);
  netId = await lab.coveOk(['network', 'create', '--subnet', '10.77.0.0/24', 'lbnet']);
  for (const b of ['b1', 'b2', 'b3']) {
    await lab.coveOk(['run', '-d', '--name', b, '--network', 'lbnet', 'nginx']);
    await lab.coveOk(['exec', b, 'sh', '-c', 'hostname > /www/who.txt']);
    ips.set(b, await lab.coveOk(['inspect', '-f', '{{(index .NetworkSettings.Networks "lbnet").IPAddress}}', b]));
  }
  await lab.coveOk(['run', '-d', '--name', 'client', '--network', 'lbnet', 'alpine', 'sleep', '1000']);

  dir = mkdtempSync(join(tmpdir(), 'cove-svlb-'));
  store = new EmbeddedStore(dir);
  const svc: Service = {
    ID: 'web',
    Version: { Index: 0 },
    CreatedAt: '',
    UpdatedAt: '',
    SpecVersion: { Index: 1 },
    Spec: { Name: 'web', TaskTemplate: { Networks: [{ Target: netId }] } },
    Endpoint: { Spec: { Mode: 'vip' }, VirtualIPs: [{ NetworkID: netId, Addr: `${VIP}/24` }] },
  };
  await serviceCollection(store).put('web', svc);
  for (const [b, ip] of ips) await taskCollection(store).put(b, task(b, ip));
  // The daemon's containers through its API, as the discovery loop sees them in coved.
  const containers = {
    list: async () => (await api(lab, 'GET', '/containers/json')).json(),
    inspect: async (id: string) => (await api(lab, 'GET', `/containers/${id}/json`)).json(),
  } as unknown as ContainerService;
  disc = new ServiceDiscovery({ store, containers, events: new EventBus(), log: silentLogger, resyncMs: 60_000 });
  disc.start();
  await disc.idle();
});

after(async () => {
  await disc?.stop();
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  for (const c of ['client', 'b1', 'b2', 'b3']) await lab?.cove(['rm', '-f', c]);
  await lab?.cove(['network', 'rm', 'lbnet']);
  await lab?.destroy();
});

async function sandboxOf(name: string): Promise<string> {
  return lab.coveOk(['inspect', '-f', '{{.NetworkSettings.SandboxKey}}', name]);
}

test("connections to the VIP spread over every task (numgen DNAT in the client's sandbox)", async () => {
  const out = await lab.coveOk([
    'exec',
    'client',
    'sh',
    '-c',
    `for i in $(seq 1 30); do wget -q -O - http://${VIP}/who.txt; done`,
  ]);
  const seen = new Set(out.split('\n').filter(Boolean));
  assert.equal(seen.size, 3, `answers from all three tasks: ${[...seen].join(', ')}`);
  const table = await lab.sh(`nsenter --net=${await sandboxOf('client')} nft list table ip cove_lb`);
  // kube-proxy's shape: one verdict-map lookup by VIP, then that VIP's chain picks a task.
  const vipRe = VIP.replace(/\./g, '\\.');
  assert.match(table.stdout, new RegExp(`elements = \\{[^}]*${vipRe} : goto vip_${VIP.replace(/\./g, '_')}`));
  assert.match(table.stdout, /ip daddr vmap @vips/);
  assert.match(table.stdout, new RegExp(`chain vip_${VIP.replace(/\./g, '_')} \\{\\s*dnat to numgen random mod 3 map`));
});

test('established connections stay on their task when the map changes (conntrack), new ones follow the new map', async () => {
  // Five TCP connections open now, their requests sent 6 s later; meanwhile (once all five are established) the map shrinks to b1 only.
  const longs = lab.coveOk([
    'exec',
    'client',
    'sh',
    '-c',
    `for i in 1 2 3 4 5; do (sleep 6; printf 'GET /who.txt HTTP/1.0\\r\\n\\r\\n') | nc ${VIP} 80 > /tmp/long$i.out & done; wait; for i in 1 2 3 4 5; do tail -1 /tmp/long$i.out; done`,
  ]);
  const sb = await sandboxOf('client');
  for (let i = 0; i < 50; i++) {
    const ss = await lab.sh(`nsenter --net=${sb} ss -Htn state established dst ${VIP}`);
    if (ss.stdout.trim().split('\n').filter(Boolean).length >= 5) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const b of ['b2', 'b3']) await taskCollection(store).put(b, task(b, ips.get(b)!, 'failed'));
  await new Promise((r) => setTimeout(r, 100));
  await disc.idle();
  const fresh = await lab.coveOk([
    'exec',
    'client',
    'sh',
    '-c',
    `for i in 1 2 3 4 5; do wget -q -O - http://${VIP}/who.txt; done`,
  ]);
  const b1 = await lab.coveOk(['exec', 'b1', 'hostname']);
  assert.deepEqual([...new Set(fresh.split('\n'))], [b1], 'new connections go to b1 only');
  const answers = (await longs).split('\n');
  assert.equal(answers.length, 5);
  assert.ok(
    answers.every((a) => /^[0-9a-f]{12}$/.test(a)),
    `every long connection answered: ${answers}`,
  );
  // 1 in 243 that all five had picked b1 anyway; otherwise some flow kept b2 or b3 after they left the map.
  assert.ok(
    answers.some((a) => a !== b1),
    `some flow stayed on a backend no longer in the map: ${answers}`,
  );
  for (const b of ['b2', 'b3']) await taskCollection(store).put(b, task(b, ips.get(b)!));
  await new Promise((r) => setTimeout(r, 100));
  await disc.idle();
});

test('a task that stops leaves the map within a second and gets no more connections', async () => {
  const sb = await sandboxOf('client');
  const t0 = Date.now();
  await taskCollection(store).put('b2', task('b2', ips.get('b2')!, 'failed'));
  let ms = -1;
  for (let i = 0; i < 100; i++) {
    await disc.idle();
    const t = await lab.sh(`nsenter --net=${sb} nft list table ip cove_lb`);
    if (!t.stdout.includes(ips.get('b2')!)) {
      ms = Date.now() - t0;
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  console.log(`# stopped task out of the sandbox's map after ${ms} ms`);
  assert.ok(ms >= 0 && ms < 1000, `out of the map in ${ms} ms`);
  const b2host = await lab.coveOk(['exec', 'b2', 'hostname']);
  const out = await lab.coveOk([
    'exec',
    'client',
    'sh',
    '-c',
    `for i in $(seq 1 20); do wget -q -O - http://${VIP}/who.txt; done`,
  ]);
  const seen = new Set(out.split('\n').filter(Boolean));
  assert.equal(seen.size, 2, [...seen].join(', '));
  assert.ok(!seen.has(b2host));
});

test('a VIP without running tasks refuses at once; the table goes with the last VIP', async () => {
  for (const b of ['b1', 'b3']) await taskCollection(store).put(b, task(b, ips.get(b)!, 'shutdown'));
  await new Promise((r) => setTimeout(r, 100));
  await disc.idle();
  const t0 = Date.now();
  const r = await lab.cove(['exec', 'client', 'wget', '-q', '-O', '-', `http://${VIP}/`]);
  assert.notEqual(r.code, 0);
  assert.ok(Date.now() - t0 < 2500, `refused at once, not a timeout (${Date.now() - t0} ms)`);
  await serviceCollection(store).delete('web');
  await new Promise((r) => setTimeout(r, 100));
  await disc.idle();
  const t = await lab.sh(`nsenter --net=${await sandboxOf('client')} nft list tables`);
  assert.doesNotMatch(t.stdout, /cove_lb/);
});
