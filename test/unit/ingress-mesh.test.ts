import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assignPublishedPorts,
  hostMeshObjects,
  hostPortHolder,
  hostPortsKey,
  isHostPortsKey,
  meshPorts,
  sboxMeshObjects,
} from '../../src/services/mesh.js';
import { Firewall } from '../../src/network/firewall/index.js';
import { FakeNft } from '../../src/network/firewall/fake.js';
import type { Service, Task } from '../../src/services/types.js';

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
  await sb.owner('ingress-mesh').set(sboxMeshObjects(ports, '10.0.0.0/24'));
  const dump = sb.dump();
  assert.match(dump, /meta l4proto \. th dport vmap @ports/);
  assert.match(
    dump,
    /meta l4proto tcp dnat to numgen random mod 2 map \{ 0 : 10\.0\.0\.9 \. 80, 1 : 10\.0\.0\.12 \. 80 \}/,
  );
  assert.match(dump, /ct status dnat ip daddr 10\.0\.0\.0\/24 masquerade/);
  assert.match(host.dump(), /fib daddr type local meta l4proto \. th dport @ingress_ports dnat to 172\.18\.0\.2/);
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
  await sb.owner('ingress-mesh').set(sboxMeshObjects(ports, '10.0.0.0/24'));
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
