/**
 * Swarm scope of the network controller on fakes: two "nodes" (controllers
 * with their own local stores) sharing one cluster store, the real overlay
 * driver over a recording kernel, fake bridge drivers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { EventBus } from '../../src/common/events.js';
import { defaultConfig } from '../../src/common/config.js';
import { silentLogger } from '../../src/common/log.js';
import { NetworkController } from '../../src/network/controller.js';
import { OverlayDriver } from '../../src/network/drivers/overlay/index.js';
import { EndpointView, NOT_IN_SWARM, WORKER_CREATE, type SwarmEndpoint } from '../../src/network/swarm-scope.js';
import type { Membership, ClusterNode } from '../../src/cluster/membership.js';
import type { SandboxSpec } from '../../src/network/types.js';
import { FakeDriver, FakeKernel } from './fakes/network.js';
import { RecordingKernelOps } from './fakes/kernel-ops.js';

const cid = (n: number): string => n.toString(16).padStart(2, '0').repeat(32);

function query(name: string): Buffer {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  return Buffer.concat([
    Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]),
    ...labels,
    Buffer.from([0, 0, 1, 0, 1]),
  ]);
}

async function setup(t: { after: (fn: () => unknown) => void }) {
  const dir = mkdtempSync(join(tmpdir(), 'cvn-swarm-'));
  const clusterStore = new EmbeddedStore(join(dir, 'cluster'));
  const nodes: Array<{
    ctl: NetworkController;
    kernel: RecordingKernelOps;
    m: Membership;
    store: EmbeddedStore;
    spec: (c: string, n: string, o?: Partial<SandboxSpec>) => SandboxSpec;
    /** A daemon restart: a new controller on the same local store and kernel. */
    restart: () => Promise<NetworkController>;
  }> = [];
  const all: NetworkController[] = [];
  for (const [i, role] of (['manager', 'worker'] as const).entries()) {
    const store = new EmbeddedStore(join(dir, `local${i}`));
    const config = defaultConfig({
      execRoot: join(dir, `run${i}`),
      dataRoot: join(dir, `data${i}`),
      dns: ['127.0.0.1:9'],
    });
    const kernel = new RecordingKernelOps();
    const self: ClusterNode = {
      id: `node${i}`,
      hostname: `host${i}`,
      role,
      addr: `192.0.2.1${i}`,
      dataPathAddr: `192.0.2.1${i}`,
      availability: 'active',
      state: 'ready',
    };
    const m: Membership = { self, store: clusterStore, isManager: () => role === 'manager', nodes: async () => [self] };
    // The node's record, as a swarm join writes it: address claims check every node in nodes/.
    await clusterStore.put(`nodes/${self.id}`, JSON.stringify({ ID: self.id }));
    const fk = new FakeKernel();
    const make = () =>
      new NetworkController({
        config,
        store,
        events: new EventBus(),
        log: silentLogger,
        kernel: fk,
        kernelOps: kernel,
        drivers: [
          new FakeDriver('bridge'),
          new FakeDriver('host'),
          new FakeDriver('null'),
          new OverlayDriver({ config, log: silentLogger, kernel }),
        ],
        hostResolvConf: join(dir, 'nonexistent'),
        hostHosts: join(dir, 'nonexistent'),
        portRange: [42200 + i * 10, 42209 + i * 10],
        portDefaultHostIp: '127.0.0.1',
      });
    const ctl = make();
    all.push(ctl);
    await ctl.init();
    const node: (typeof nodes)[number] = {
      ctl,
      kernel,
      m,
      store,
      restart: async () => {
        await node.ctl.close();
        node.ctl = make();
        all.push(node.ctl);
        return node.ctl;
      },
      spec: (c: string, name: string, o: Partial<SandboxSpec> = {}): SandboxSpec => {
        const d = join(dir, 'containers', c);
        mkdirSync(d, { recursive: true });
        return {
          containerId: c,
          containerName: name,
          hostname: c.slice(0, 12),
          domainname: '',
          networkMode: 'default',
          endpoints: [],
          portBindings: [],
          exposedPorts: [],
          publishAllPorts: false,
          dns: [],
          dnsSearch: [],
          dnsOptions: [],
          extraHosts: [],
          dir: d,
          ...o,
        };
      },
    };
    nodes.push(node);
  }
  t.after(async () => {
    for (const c of all) await c.close();
    for (const n of nodes) await n.store.close();
    await clusterStore.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return nodes;
}

const until = async (f: () => boolean | Promise<boolean>, ms = 2000) => {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};

test("overlay outside a swarm and on a worker: Docker's errors; attach makes docker_gwbridge and ingress", async (t) => {
  const [mgr, wkr] = await setup(t);
  await assert.rejects(
    mgr!.ctl.createNetwork({ Name: 'ov', Driver: 'overlay' }),
    (e: Error & { status?: number }) => e.message === NOT_IN_SWARM && e.status === 503,
  );
  await mgr!.ctl.attachCluster(mgr!.m);
  await wkr!.ctl.attachCluster(wkr!.m);
  await assert.rejects(
    wkr!.ctl.createNetwork({ Name: 'ov', Driver: 'overlay' }),
    (e: Error & { status?: number }) => e.message === WORKER_CREATE && e.status === 403,
  );
  for (const n of [mgr!, wkr!]) {
    const list = await n.ctl.listNetworks();
    const gw = list.find((x) => x.Name === 'docker_gwbridge')!;
    assert.equal(gw.Scope, 'local');
    assert.equal(gw.Options['com.docker.network.bridge.enable_icc'], 'false');
    const ing = list.find((x) => x.Name === 'ingress')!;
    assert.equal(ing.Scope, 'swarm');
    assert.equal(ing.Ingress, true);
    assert.equal(ing.Options['com.docker.network.driver.overlay.vxlanid_list'], '4096');
    assert.deepEqual(ing.IPAM.Config, [{ Subnet: '10.0.0.0/24', Gateway: '10.0.0.1' }]);
    assert.match(ing.Id, /^[a-z0-9]{25}$/);
  }
});

test('attachable overlay across two nodes: unique subnets and VNIs, peers programmed, names resolve across, rm refused while in use then clean', async (t) => {
  const [mgr, wkr] = await setup(t);
  await mgr!.ctl.attachCluster(mgr!.m);
  await wkr!.ctl.attachCluster(wkr!.m);
  const { Id: ov } = await mgr!.ctl.createNetwork({ Name: 'ov', Driver: 'overlay', Attachable: true });
  const { Id: ov2 } = await mgr!.ctl.createNetwork({ Name: 'ov2', Driver: 'overlay' });
  const a = await mgr!.ctl.inspectNetwork(ov);
  const b = await mgr!.ctl.inspectNetwork(ov2);
  assert.deepEqual([a.IPAM.Config[0]!.Subnet, b.IPAM.Config[0]!.Subnet], ['10.0.1.0/24', '10.0.2.0/24']);
  assert.deepEqual(
    [
      a.Options['com.docker.network.driver.overlay.vxlanid_list'],
      b.Options['com.docker.network.driver.overlay.vxlanid_list'],
    ],
    ['4097', '4098'],
  );
  // A worker lists only what it uses (and ingress); it still finds the attachable network by name.
  assert.ok(!(await wkr!.ctl.listNetworks()).some((n) => n.Name === 'ov'));
  await assert.rejects(
    wkr!.ctl.createSandbox(wkr!.spec(cid(2), 'c2', { networkMode: 'ov2', endpoints: [{ network: 'ov2' }] })),
    /Could not attach to network ov2: rpc error: code = PermissionDenied desc = network ov2 not manually attachable/,
  );

  const h1 = await mgr!.ctl.createSandbox(
    mgr!.spec(cid(1), 'c1', { networkMode: 'ov', endpoints: [{ network: 'ov', aliases: ['web'] }] }),
  );
  const h2 = await wkr!.ctl.createSandbox(
    wkr!.spec(cid(2), 'c2', { networkMode: 'ov', endpoints: [{ network: 'ov' }] }),
  );
  // The worker's own peers were programmed before createSandbox returned.
  assert.ok(
    wkr!.kernel.log.some((l) => /fdb replace 02:42:0a:00:01:02 dev vxlan0 dst 192\.0\.2\.10 self permanent/.test(l)),
    wkr!.kernel.log.join('\n'),
  );
  await until(() => mgr!.kernel.log.some((l) => /fdb replace 02:42:0a:00:01:03 dev vxlan0 dst 192\.0\.2\.11/.test(l)));
  // Egress: a second interface on docker_gwbridge with the default route; not shown as a network of the container.
  const s2 = (await wkr!.ctl.networkSettings(cid(2)))!;
  assert.deepEqual(Object.keys(s2.Networks), ['ov']);
  const gw = await wkr!.ctl.inspectNetwork('docker_gwbridge');
  assert.equal(Object.values(gw.Containers)[0]!.Name, `gateway_${h2.id.slice(0, 12)}`);
  // DNS across hosts: c1 (on the manager) resolves c2 (on the worker) and vice versa, aliases too.
  await until(() => {
    const r = mgr!.ctl.resolver.resolve(h1.id, query('c2'));
    return r.kind === 'answer' && r.response.subarray(-4).join('.') === '10.0.1.3';
  });
  const r = wkr!.ctl.resolver.resolve(h2.id, query('web'));
  assert.ok(r.kind === 'answer' && r.response.subarray(-4).join('.') === '10.0.1.2');
  // Inspect: this host's containers, Peers of both nodes, the MTU in use here.
  const wi = await wkr!.ctl.inspectNetwork('ov');
  assert.deepEqual(
    Object.values(wi.Containers).map((c) => c.Name),
    ['c2'],
  );
  assert.deepEqual(wi.Peers?.map((p) => `${p.Name} ${p.IP}`).sort(), ['host0 192.0.2.10', 'host1 192.0.2.11']);
  assert.equal(wi.Options['com.docker.network.driver.mtu'], '1450');
  assert.ok(
    (await wkr!.ctl.listNetworks()).some((n) => n.Name === 'ov'),
    'in use on the worker: listed',
  );

  await assert.rejects(mgr!.ctl.removeNetwork('ov'), /has active endpoints \(name:"c[12]".*name:"c[12]"/s);
  await wkr!.ctl.deleteSandbox(cid(2));
  await until(() => {
    const r2 = mgr!.ctl.resolver.resolve(h1.id, query('c2'));
    return r2.kind !== 'answer' || r2.response.readUInt16BE(6) === 0;
  });
  assert.deepEqual([...wkr!.kernel.netns], [], 'the network left the worker with its last container');
  await mgr!.ctl.deleteSandbox(cid(1));
  await mgr!.ctl.removeNetwork('ov');
  await assert.rejects(wkr!.ctl.inspectNetwork('ov'), /not found/);
  assert.deepEqual(
    (await mgr!.m.store.list('ipam/')).map((kv) => kv.key).filter((k) => k.includes(ov)),
    [],
    'no address claim of the network is left',
  );
  assert.equal((await mgr!.m.store.list('endpoints/')).length, 0);
});

test("a guessed address another node claimed first (not yet in this node's view): the join is undone and made again with the next one", async (t) => {
  const [mgr, wkr] = await setup(t);
  await mgr!.ctl.attachCluster(mgr!.m);
  await wkr!.ctl.attachCluster(wkr!.m);
  const { Id: ov } = await mgr!.ctl.createNetwork({ Name: 'ov', Driver: 'overlay', Attachable: true });
  // The manager's claim of .2 whose endpoint the worker has not seen (as if its watch event were still on the way).
  await mgr!.m.store.put(`ipam/node/node0/${ov}/10.0.1.2`, 'someone');
  await wkr!.ctl.createSandbox(wkr!.spec(cid(2), 'c2', { networkMode: 'ov', endpoints: [{ network: 'ov' }] }));
  const eps = await wkr!.m.store.list('endpoints/');
  assert.equal(eps.length, 1, 'one endpoint published, none left from the first try');
  assert.equal((JSON.parse(eps[0]!.value) as { ipv4: string }).ipv4, '10.0.1.3/24');
  assert.equal((await wkr!.ctl.inspectNetwork('ov')).Containers[cid(2)]?.IPv4Address, '10.0.1.3/24');
  // The first try's interface went (leave), the second one's stayed.
  const log = wkr!.kernel.log.join('\n');
  assert.match(
    log,
    /addr replace 10\.0\.1\.2\/24 dev eth0[^]*ip link del veth[^]*addr replace 10\.0\.1\.3\/24 dev eth0/,
    log,
  );
  await wkr!.ctl.deleteSandbox(cid(2));
  assert.deepEqual(
    (await mgr!.m.store.list('ipam/node/node1/')).map((kv) => kv.key),
    [],
    "the worker's claims are gone with its container",
  );
});

test('connect/disconnect: an overlay brings docker_gwbridge only when nothing else gives a way out, and takes it along', async (t) => {
  const [mgr] = await setup(t);
  await mgr!.ctl.attachCluster(mgr!.m);
  await mgr!.ctl.createNetwork({ Name: 'ov', Driver: 'overlay', Attachable: true });
  await mgr!.ctl.createNetwork({ Name: 'ov2', Driver: 'overlay', Attachable: true });
  await mgr!.ctl.createNetwork({ Name: 'br', Driver: 'bridge' });
  // On a bridge already: connecting an overlay adds no gateway endpoint.
  await mgr!.ctl.createSandbox(mgr!.spec(cid(5), 'c5', { networkMode: 'br', endpoints: [{ network: 'br' }] }));
  await mgr!.ctl.connect(cid(5), { network: 'ov' });
  assert.deepEqual(Object.keys((await mgr!.ctl.inspectNetwork('docker_gwbridge')).Containers), []);
  // Only on overlays: one gateway endpoint, kept while any overlay is left.
  await mgr!.ctl.createSandbox(mgr!.spec(cid(6), 'c6', { networkMode: 'ov', endpoints: [{ network: 'ov' }] }));
  await mgr!.ctl.connect(cid(6), { network: 'ov2' });
  assert.equal(Object.keys((await mgr!.ctl.inspectNetwork('docker_gwbridge')).Containers).length, 1);
  await mgr!.ctl.disconnect(cid(6), 'ov', false);
  assert.equal(Object.keys((await mgr!.ctl.inspectNetwork('docker_gwbridge')).Containers).length, 1);
  await mgr!.ctl.disconnect(cid(6), 'ov2', false);
  assert.deepEqual(Object.keys((await mgr!.ctl.inspectNetwork('docker_gwbridge')).Containers), []);
  await mgr!.ctl.deleteSandbox(cid(5));
  await mgr!.ctl.deleteSandbox(cid(6));
});

test("a daemon restart keeps the overlay (adopted, not rebuilt) and drops this node's endpoints of containers that died meanwhile", async (t) => {
  const [mgr, wkr] = await setup(t);
  await mgr!.ctl.attachCluster(mgr!.m);
  await wkr!.ctl.attachCluster(wkr!.m);
  await mgr!.ctl.createNetwork({ Name: 'ov', Driver: 'overlay', Attachable: true });
  await mgr!.ctl.createSandbox(mgr!.spec(cid(1), 'c1', { networkMode: 'ov', endpoints: [{ network: 'ov' }] }));
  await wkr!.ctl.createSandbox(wkr!.spec(cid(2), 'c2', { networkMode: 'ov', endpoints: [{ network: 'ov' }] }));
  await wkr!.ctl.createSandbox(wkr!.spec(cid(3), 'c3', { networkMode: 'ov', endpoints: [{ network: 'ov' }] }));
  // kill -9 of the worker's daemon; c3 dies while it is down.
  const ctl = await wkr!.restart();
  wkr!.kernel.take();
  await ctl.init();
  await ctl.restore(new Set([cid(2)]));
  await ctl.attachCluster(wkr!.m);
  const log = wkr!.kernel.take();
  assert.ok(!log.some((l) => /^\+netns|type vxlan/.test(l)), `adopted, not rebuilt:\n${log.join('\n')}`);
  assert.ok(
    log.some((l) => /fdb replace 02:42:0a:00:01:02 dev vxlan0 dst 192\.0\.2\.10/.test(l)),
    'peers re-synced',
  );
  const eps = (await wkr!.m.store.list('endpoints/'))
    .map((kv) => (JSON.parse(kv.value) as { name: string }).name)
    .sort();
  assert.deepEqual(eps, ['c1', 'c2']);
  await until(() => mgr!.kernel.log.some((l) => /fdb del 02:42:0a:00:01:04/.test(l)));
  // c3's address is free again: the next container gets it.
  await wkr!.ctl.createSandbox(wkr!.spec(cid(4), 'c4', { networkMode: 'ov', endpoints: [{ network: 'ov' }] }));
  assert.equal(
    Object.values((await wkr!.ctl.inspectNetwork('ov')).Containers).find((c) => c.Name === 'c4')!.IPv4Address,
    '10.0.1.4/24',
  );
});

test("service VIPs come from the swarm network's IPAM, unique with endpoints, released by address; tasks may join non-attachable networks", async (t) => {
  const [mgr, wkr] = await setup(t);
  await mgr!.ctl.attachCluster(mgr!.m);
  await wkr!.ctl.attachCluster(wkr!.m);
  const { Id } = await mgr!.ctl.createNetwork({ Name: 'svcnet', Driver: 'overlay' });
  const vip = await mgr!.ctl.allocateVip(Id, 'vip:svc1');
  assert.equal(vip, '10.0.1.2/24');
  await wkr!.ctl.createSandbox(
    wkr!.spec(cid(7), 'task1', { networkMode: 'svcnet', endpoints: [{ network: 'svcnet' }], swarmTask: true }),
  );
  assert.equal(Object.values((await wkr!.ctl.inspectNetwork('svcnet')).Containers)[0]!.IPv4Address, '10.0.1.3/24');
  await mgr!.ctl.releaseVip(Id, '10.0.1.2/24');
  assert.equal(await mgr!.ctl.allocateVip(Id, 'vip:svc2'), '10.0.1.2/24');
  await wkr!.ctl.deleteSandbox(cid(7));
});

test("swarm leave: the node's containers leave the swarm networks everywhere; swarm networks are no longer listed", async (t) => {
  const [mgr, wkr] = await setup(t);
  await mgr!.ctl.attachCluster(mgr!.m);
  await wkr!.ctl.attachCluster(wkr!.m);
  await mgr!.ctl.createNetwork({ Name: 'ov', Driver: 'overlay', Attachable: true });
  await wkr!.ctl.createSandbox(wkr!.spec(cid(8), 'c8', { networkMode: 'ov', endpoints: [{ network: 'ov' }] }));
  await wkr!.ctl.detachCluster();
  assert.equal((await mgr!.m.store.list('endpoints/')).length, 0);
  assert.deepEqual([...wkr!.kernel.netns], []);
  assert.ok(!(await wkr!.ctl.listNetworks()).some((n) => n.Scope === 'swarm'));
  assert.deepEqual(Object.keys((await wkr!.ctl.networkSettings(cid(8)))!.Networks), []);
  await wkr!.ctl.deleteSandbox(cid(8));
});

test('swarm init --default-addr-pool/--default-addr-pool-mask-length: overlays take their subnets from it; --subnet/--gateway/--ip-range honoured', async (t) => {
  const [mgr] = await setup(t);
  await mgr!.ctl.attachCluster(mgr!.m, { defaultAddrPool: ['10.20.0.0/16'], subnetSize: 26 });
  await mgr!.ctl.createNetwork({ Name: 'p1', Driver: 'overlay' });
  assert.deepEqual((await mgr!.ctl.inspectNetwork('p1')).IPAM.Config, [
    { Subnet: '10.20.0.0/26', Gateway: '10.20.0.1' },
  ]);
  await mgr!.ctl.createNetwork({
    Name: 'p2',
    Driver: 'overlay',
    Attachable: true,
    IPAM: { Config: [{ Subnet: '10.30.0.0/24', Gateway: '10.30.0.254', IPRange: '10.30.0.128/25' }] },
  });
  const h = await mgr!.ctl.createSandbox(
    mgr!.spec(cid(9), 'c9', { networkMode: 'p2', endpoints: [{ network: 'p2' }] }),
  );
  assert.ok(h.id);
  assert.equal(Object.values((await mgr!.ctl.inspectNetwork('p2')).Containers)[0]!.IPv4Address, '10.30.0.129/24');
  await assert.rejects(
    mgr!.ctl.createNetwork({ Name: 'p3', Driver: 'overlay', IPAM: { Config: [{ Subnet: '10.30.0.0/16' }] } }),
    /Pool overlaps/,
  );
  await mgr!.ctl.deleteSandbox(cid(9));
});

test('the watched endpoint view: newer revisions win whatever the order; a list taken before a delete does not bring it back; own deletes hold until the watch confirms', () => {
  const ep = (id: string, net = 'n1'): SwarmEndpoint => ({
    id,
    networkId: net,
    name: id,
    aliases: [],
    containerId: id,
    nodeId: 'a',
    nodeName: 'a',
    underlay: '192.0.2.11',
    mac: '02:42:00:00:00:01',
  });
  const v = new EndpointView();
  // Watch events before the initial list: a put, and a delete of a key the (older) list still has.
  v.apply('endpoints/a/n1/e1', ep('e1'), 10);
  v.apply('endpoints/a/n1/e2', undefined, 12);
  v.load([
    { key: 'endpoints/a/n1/e1', value: { ...ep('e1'), name: 'old' }, revision: 5 },
    { key: 'endpoints/a/n1/e2', value: ep('e2'), revision: 7 },
    { key: 'endpoints/a/n2/e3', value: ep('e3', 'n2'), revision: 8 },
  ]);
  assert.deepEqual(
    v.of('n1').map((e) => `${e.id}:${e.name}`),
    ['e1:e1'],
  );
  assert.deepEqual(
    v.of('n2').map((e) => e.id),
    ['e3'],
  );
  // An older event after a newer write (this node's put, then the watch's copy of an earlier one).
  v.apply('endpoints/a/n1/e4', ep('e4'), 20);
  v.apply('endpoints/a/n1/e4', { ...ep('e4'), name: 'stale' }, 15);
  assert.equal(v.of('n1').find((e) => e.id === 'e4')?.name, 'e4');
  // This node deletes e4: gone at once; the watch's late put of it cannot revive it; its delete clears the tombstone.
  v.apply('endpoints/a/n1/e4', undefined, Number.MAX_SAFE_INTEGER);
  v.apply('endpoints/a/n1/e4', ep('e4'), 20);
  assert.equal(
    v.of('n1').some((e) => e.id === 'e4'),
    false,
  );
  v.apply('endpoints/a/n1/e4', undefined, 21);
  assert.equal(
    v.of('n1').some((e) => e.id === 'e4'),
    false,
  );
  // A delete from the watch after the load removes the entry.
  v.apply('endpoints/a/n2/e3', undefined, 30);
  assert.deepEqual(v.of('n2'), []);
});
