import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assignPublishedPorts,
  hostMeshBase,
  hostMeshObjects,
  hostPortElements,
  hostPortHolder,
  hostPortsKey,
  isHostPortsKey,
  meshPorts,
  portsDelta,
  sboxMeshBase,
  sboxMeshObjects,
  sboxPortElements,
  lbObjects,
  type MeshPort,
} from '../../src/services/mesh.js';
import { Firewall } from '../../src/network/firewall/index.js';
import { FakeNft } from '../../src/network/firewall/fake.js';
import type { Service, Task } from '../../src/services/types.js';
import { assertGolden } from '../support/golden.js';

const ING = 'ingressnet';
const svc = (id: string, created: string, ports: Service['Endpoint']['Ports']): Service => ({
  ID: id,
  Version: { Index: 1 },
  CreatedAt: created,
  UpdatedAt: created,
  Spec: { Name: id },
  SpecVersion: { Index: 1 },
  Endpoint: { Spec: {}, ...(ports ? { Ports: ports } : {}) },
});
const task = (
  id: string,
  service: string,
  node: string,
  addr: string,
  state: Task['Status']['State'] = 'running',
): Task => ({
  ID: id,
  Version: { Index: 1 },
  CreatedAt: '',
  UpdatedAt: '',
  Labels: {},
  Spec: {},
  SpecVersion: { Index: 1 },
  ServiceID: service,
  Slot: 1,
  NodeID: node,
  Status: { Timestamp: '', State: state, Message: '' },
  DesiredState: 'running',
  NetworksAttachments: [
    { Network: { ID: 'other' }, Addresses: ['10.9.0.3/24'] },
    { Network: { ID: ING }, Addresses: [`${addr}/24`] },
  ],
});

test("ingress mesh: ports from services, backends = running tasks' ingress addresses; host-mode ports and a port claimed twice are left out", () => {
  const services = [
    svc('web', '2026-01-01', [
      { Protocol: 'tcp', TargetPort: 80, PublishedPort: 80, PublishMode: 'ingress' },
      { Protocol: 'tcp', TargetPort: 81, PublishedPort: 8081, PublishMode: 'host' },
    ]),
    svc('late', '2026-02-01', [
      { Protocol: 'tcp', TargetPort: 80, PublishedPort: 80, PublishMode: 'ingress' },
      { Protocol: 'udp', TargetPort: 53, PublishedPort: 5353 },
    ]),
  ];
  const tasks = [
    task('t2', 'web', 'n2', '10.0.0.12'),
    task('t1', 'web', 'n1', '10.0.0.9'),
    task('t3', 'web', 'n1', '10.0.0.20', 'failed'),
  ];
  const ports = meshPorts(services, tasks, ING);
  assert.deepEqual(
    ports.map((p) => [p.proto, p.published, p.target, p.serviceId, p.backends.map((b) => `${b.addr}@${b.nodeId}`)]),
    [
      ['tcp', 80, 80, 'web', ['10.0.0.9@n1', '10.0.0.12@n2']],
      ['udp', 5353, 53, 'late', []],
    ],
  );
});

test('ingress mesh: host DNAT (its own table, outside the frame) and the sandbox table apply to the kernel model; a port change is elements only on the host', async () => {
  const hostNft = new FakeNft();
  const host = new Firewall({ backend: hostNft, checkEveryMs: 0, frame: false });
  const sbNft = new FakeNft();
  const sb = new Firewall({ backend: sbNft, checkEveryMs: 0, frame: false });
  const ports = meshPorts(
    [
      svc('web', '1', [
        { Protocol: 'tcp', TargetPort: 80, PublishedPort: 80 },
        { Protocol: 'udp', TargetPort: 53, PublishedPort: 53 },
      ]),
    ],
    [task('t1', 'web', 'n1', '10.0.0.9'), task('t2', 'web', 'n2', '10.0.0.12')],
    ING,
  );
  await host.owner('ingress-mesh').set(hostMeshObjects(ports, '172.18.0.2'));
  await sb.owner('ingress-mesh').set(sboxMeshObjects(ports, '10.0.0.0/24', '10.0.0.2'));
  // Both tables whole (the sandbox: one lbN chain and map per task count, the ports as elements).
  assertGolden('firewall/ingress-mesh.nft', host.dump() + sb.dump());
  // Both tables are replaced the first time, in one transaction each: what a killed daemon left keeps serving until then.
  assert.match(hostNft.log[0]!.text, /^add table ip cove_mesh\ndelete table ip cove_mesh\nadd table ip cove_mesh\n/);
  // The sandbox's table is replaced the first time (a table an earlier daemon left would get duplicate rules).
  assert.match(
    sbNft.log[0]!.text,
    /^add table ip cove_ingress\ndelete table ip cove_ingress\nadd table ip cove_ingress\n/,
  );
  // --publish-add: one more element, sent as one nft -i line on the host.
  const before = hostNft.log.length;
  const more = [...ports, { ...ports.find((p) => p.proto === 'tcp')!, published: 8080 }];
  await host.owner('ingress-mesh').set(hostMeshObjects(more, '172.18.0.2'));
  assert.deepEqual(hostNft.log.slice(before), [
    { via: 'line', text: 'add element ip cove_mesh ingress_ports { tcp . 8080 }' },
  ]);
  // A second pass with the same state sends nothing.
  const n = sbNft.log.length;
  await sb.owner('ingress-mesh').set(sboxMeshObjects(ports, '10.0.0.0/24', '10.0.0.2'));
  assert.equal(sbNft.log.length, n);
});

test('ingress mesh: ports left at 0 get one from 30000-32767, kept across updates, never one in use', () => {
  const taken = new Set(['tcp/30000']);
  const a = assignPublishedPorts(
    [
      { Protocol: 'tcp', TargetPort: 80 },
      { Protocol: 'tcp', TargetPort: 81, PublishedPort: 30001 },
      { Protocol: 'tcp', TargetPort: 82, PublishMode: 'host' },
    ],
    undefined,
    taken,
  );
  assert.deepEqual(
    a.map((p) => p.PublishedPort),
    [30002, 30001, undefined],
  );
  const b = assignPublishedPorts([{ Protocol: 'tcp', TargetPort: 80 }], a, taken);
  assert.equal(b[0]!.PublishedPort, 30002);
});

test("ingress mesh: a port some node's container holds on an IPv4 address is found (not an IPv6-only hold, not another protocol); the record lives in the node's own subtree", () => {
  const recs = [
    {
      NodeID: 'n1',
      Node: 'h1',
      Ports: [
        { Protocol: 'tcp', HostIp: '::', Port: 8080 },
        { Protocol: 'udp', HostIp: '0.0.0.0', Port: 8080 },
      ],
    },
    { NodeID: 'n2', Node: 'h2', Ports: [{ Protocol: 'tcp', HostIp: '127.0.0.1', Port: 8080 }] },
  ];
  assert.deepEqual(hostPortHolder(recs, 'tcp', 8080), { node: recs[1], hostIp: '127.0.0.1' });
  assert.equal(hostPortHolder(recs, 'udp', 8080)?.node.NodeID, 'n1');
  assert.equal(hostPortHolder(recs, 'tcp', 8081), undefined);
  assert.equal(hostPortsKey('n1'), 'node-local/n1/ingress-hostports');
  assert.ok(isHostPortsKey(hostPortsKey('n1')));
  assert.ok(!isHostPortsKey('node-local/n1/wireguard'));
});

/** n published tcp ports from 10000, each on `tasks` tasks. */
function manyPorts(n: number, tasks = 2, from = 10000): MeshPort[] {
  return Array.from({ length: n }, (_, i) => ({
    proto: 'tcp' as const,
    published: from + i,
    target: 80,
    serviceId: 's',
    serviceName: 's',
    backends: Array.from({ length: tasks }, (_, j) => ({ addr: `10.0.0.${10 + j}`, nodeId: 'n', taskId: `t${j}` })),
  }));
}

test('ingress mesh: adding or removing a port is the same small element transaction at 1 port and at 100 (flat), on both sides', async () => {
  const lines: string[][] = [];
  for (const n of [1, 100]) {
    const hostNft = new FakeNft();
    const sbNft = new FakeNft();
    const host = new Firewall({ backend: hostNft, checkEveryMs: 0, frame: false }).owner('m');
    const sb = new Firewall({ backend: sbNft, checkEveryMs: 0, frame: false }).owner('m');
    const ports = manyPorts(n);
    await host.set(hostMeshObjects(ports, '172.18.0.2'));
    await sb.set(sboxMeshObjects(ports, '10.0.0.0/24', '10.0.0.2'));
    const before = new Map(ports.map((p) => [`${p.proto}/${p.published}`, p]));
    const more = [...ports, ...manyPorts(1, 2, 20000)];
    const h0 = hostNft.log.length;
    const s0 = sbNft.log.length;
    await host.patch(portsDelta(before, more, hostPortElements));
    await sb.patch(portsDelta(before, more, sboxPortElements));
    const after = new Map(more.map((p) => [`${p.proto}/${p.published}`, p]));
    await host.patch(portsDelta(after, ports, hostPortElements));
    await sb.patch(portsDelta(after, ports, sboxPortElements));
    lines.push([...hostNft.log.slice(h0), ...sbNft.log.slice(s0)].map((l) => `${l.via}: ${l.text}`));
    // The delta path leaves what a whole set would have made.
    const whole = new Firewall({ backend: new FakeNft(), checkEveryMs: 0, frame: false });
    await whole.owner('m').set(sboxMeshObjects(ports, '10.0.0.0/24', '10.0.0.2'));
    assert.equal(sbNft.ruleset.dump(), whole.dump());
  }
  assert.deepEqual(lines[0], lines[1]);
  assert.deepEqual(lines[0], [
    'line: add element ip cove_mesh ingress_ports { tcp . 20000 }',
    'line: delete element ip cove_mesh ingress_ports { tcp . 20000 }',
    'line: add element ip cove_ingress ports { tcp . 20000 : goto lb2 }; add element ip cove_ingress lb2 { tcp . 20000 . 0 : 10.0.0.10 . 80, tcp . 20000 . 1 : 10.0.0.11 . 80 }',
    'line: delete element ip cove_ingress ports { tcp . 20000 }; delete element ip cove_ingress lb2 { tcp . 20000 . 0, tcp . 20000 . 1 }',
  ]);
});

test('ingress mesh: a port going from 2 tasks to 3 moves to lb3 in one transaction; lb2 goes with its last port', async () => {
  const nft = new FakeNft();
  const sb = new Firewall({ backend: nft, checkEveryMs: 0, frame: false }).owner('m');
  const two = manyPorts(1, 2);
  await sb.set(sboxMeshObjects(two, '10.0.0.0/24', '10.0.0.2'));
  const three = manyPorts(1, 3);
  const d = portsDelta(new Map([['tcp/10000', two[0]!]]), three, sboxPortElements);
  const n = nft.log.length;
  await sb.patch({
    remove: [...d.remove, ...lbObjects(2).filter((o) => o.kind !== 'rule')],
    add: [...lbObjects(3), ...d.add],
  });
  assert.equal(nft.log.length, n + 1, 'one transaction');
  const whole = new Firewall({ backend: new FakeNft(), checkEveryMs: 0, frame: false });
  await whole.owner('m').set(sboxMeshObjects(three, '10.0.0.0/24', '10.0.0.2'));
  assert.equal(nft.ruleset.dump(), whole.dump());
  assert.doesNotMatch(nft.ruleset.dump(), /lb2/);
  // The fixed part does not depend on the number of ports.
  assert.deepEqual(sboxMeshBase('10.0.0.0/24', '10.0.0.2', [3]).length, 9);
  assert.equal(hostMeshBase('172.18.0.2').length, 6);
});

test("firewall patch: only the owner's own objects go; a changed element is replaced; a refused patch changes nothing", async () => {
  const nft = new FakeNft();
  const fw = new Firewall({ backend: nft, checkEveryMs: 0, frame: false });
  const a = fw.owner('a');
  await a.set(hostMeshObjects(manyPorts(2), '172.18.0.2'));
  const other = hostPortElements({ proto: 'udp', published: 53 });
  await assert.rejects(a.patch({ remove: other }), /not this owner's/);
  await assert.rejects(
    a.patch({ add: [{ family: 'ip', table: 'cove_mesh', kind: 'rule', chain: 'ingress_pre', rule: 'accept' }] }),
    /does not add/,
  );
  const before = fw.dump();
  nft.failNext = new Error('kernel says no');
  await assert.rejects(a.patch({ add: other }), /kernel says no/);
  assert.equal(fw.dump(), before);
  assert.equal(nft.ruleset.dump(), before);
  // Adding what is there already sends nothing.
  const n = nft.log.length;
  await a.patch({ add: hostPortElements({ proto: 'tcp', published: 10000 }) });
  assert.equal(nft.log.length, n);
});
