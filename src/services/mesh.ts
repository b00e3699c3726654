/**
 * The ingress routing mesh as data (pure functions, unit-tested without root).
 *
 * Docker's way, with nftables instead of IPVS (this kernel has none):
 *   - every node has an ingress sandbox (`ingress-sbox`): a netns on the
 *     `ingress` overlay and on docker_gwbridge, tied to no container;
 *   - tasks of a service with ingress-published ports get an endpoint on the
 *     ingress network;
 *   - the node's own namespace DNATs published port P (tcp, udp) to the
 *     ingress sandbox's docker_gwbridge address, port unchanged
 *     (`hostMeshObjects`: a table of its own, `ip cove_mesh`, outside the
 *     firewall frame: the frame is rebuilt when a daemon starts, and the
 *     mesh must keep answering through a daemon restart; the new daemon
 *     replaces this table in one transaction on its first pass);
 *   - the ingress sandbox picks a task with `numgen random` over the tasks'
 *     ingress addresses (any node: the overlay carries it) and masquerades to
 *     its own ingress address (SNAT), so the reply comes back through the node
 *     that took the connection (`sboxMeshBase`: table `ip cove_ingress`).
 * Both tables have a fixed set of chains (plus one per task count in use):
 * adding or removing a port changes set/map elements only, sent as an
 * explicit delta (portsDelta, FirewallOwner.patch) as one `nft -i` line, and
 * NAT is decided on a flow's first packet, so other ports' established
 * connections never notice.
 */
import type { FwObject } from '../network/firewall/model.js';
import { serving } from './lb.js';
import type { PortConfig, Service, Task } from './types.js';

export type MeshProto = 'tcp' | 'udp' | 'sctp';

export interface MeshBackend {
  addr: string;
  nodeId: string;
  taskId: string;
}

export interface MeshPort {
  proto: MeshProto;
  published: number;
  target: number;
  serviceId: string;
  serviceName: string;
  /** Running tasks' addresses on the ingress network, sorted by address. */
  backends: MeshBackend[];
}

/**
 * Where each node lists the host ports its own containers hold (`docker run
 * -p`, host-mode tasks): one record per node in its own subtree (a worker's
 * etcd role may write there), kept by the node's ingress loop. The manager
 * refuses an ingress port some node has taken, before anything is made
 * anywhere.
 */
export const NODE_LOCAL = 'node-local/';
export const hostPortsKey = (nodeId: string): string => `${NODE_LOCAL}${nodeId}/ingress-hostports`;
export const isHostPortsKey = (key: string): boolean =>
  key.startsWith(NODE_LOCAL) && key.endsWith('/ingress-hostports');

export interface NodeHostPorts {
  NodeID: string;
  Node: string;
  Ports: Array<{ Protocol: string; HostIp: string; Port: number }>;
}

/** The first node record holding proto/port on an IPv4 address (what the mesh's 0.0.0.0 reservation would collide with). */
export function hostPortHolder(
  records: NodeHostPorts[],
  proto: string,
  port: number,
): { node: NodeHostPorts; hostIp: string } | undefined {
  for (const node of records) {
    const p = node.Ports.find((x) => x.Protocol === proto && x.Port === port && !x.HostIp.includes(':'));
    if (p) return { node, hostIp: p.HostIp };
  }
  return undefined;
}

/** Docker's range for ingress ports the user did not choose (swarmkit's dynamic port range). */
export const DYNAMIC_PORTS: [number, number] = [30000, 32767];

const addrOf = (cidr: string): string => cidr.split('/')[0]!;

/** The ingress-published ports of a service's endpoint (published ports already assigned). */
export function ingressPorts(
  ports: PortConfig[] | undefined,
): Array<Required<Pick<PortConfig, 'Protocol' | 'TargetPort' | 'PublishedPort'>>> {
  return (ports ?? [])
    .filter((p) => (p.PublishMode ?? 'ingress') === 'ingress' && p.PublishedPort && p.TargetPort)
    .map((p) => ({ Protocol: p.Protocol ?? 'tcp', TargetPort: p.TargetPort!, PublishedPort: p.PublishedPort! }));
}

/**
 * Every port the mesh serves, from the cluster store's services and tasks. A
 * port claimed twice (the manager refuses that; a race could not) goes to the
 * older service.
 */
export function meshPorts(services: Service[], tasks: Task[], ingressNetworkId: string): MeshPort[] {
  const out = new Map<string, MeshPort>();
  const sorted = [...services].sort((a, b) => a.CreatedAt.localeCompare(b.CreatedAt) || a.ID.localeCompare(b.ID));
  for (const s of sorted) {
    const backends: MeshBackend[] = [];
    for (const t of tasks) {
      if (t.ServiceID !== s.ID || !serving(t)) continue;
      for (const a of t.NetworksAttachments ?? []) {
        if (a.Network.ID !== ingressNetworkId) continue;
        for (const c of a.Addresses) backends.push({ addr: addrOf(c), nodeId: t.NodeID, taskId: t.ID });
      }
    }
    backends.sort((a, b) => ipNum(a.addr) - ipNum(b.addr));
    for (const p of ingressPorts(s.Endpoint?.Ports)) {
      const key = `${p.Protocol}/${p.PublishedPort}`;
      if (out.has(key)) continue;
      out.set(key, {
        proto: p.Protocol,
        published: p.PublishedPort,
        target: p.TargetPort,
        serviceId: s.ID,
        serviceName: s.Spec.Name ?? s.ID,
        backends,
      });
    }
  }
  return [...out.values()].sort((a, b) => a.published - b.published || a.proto.localeCompare(b.proto));
}

function ipNum(a: string): number {
  return a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;
const CIDR4 = /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/;

function checkAddr(a: string, re = IPV4): string {
  if (!re.test(a)) throw new Error(`not an IPv4 address: ${JSON.stringify(a)}`);
  return a;
}

/** Names of the objects both sides use. */
export const MESH = {
  hostTable: 'cove_mesh',
  hostSet: 'ingress_ports',
  hostPre: 'ingress_pre',
  hostOut: 'ingress_out',
  sboxTable: 'cove_ingress',
  sboxMap: 'ports',
} as const;

/** The sandbox's chain and map that spread a port over `count` tasks (one per task count in use, not per port). */
export function lbName(count: number): string {
  return `lb${count}`;
}

const HOST = { family: 'ip', table: MESH.hostTable } as const;
const SBOX = { family: 'ip', table: MESH.sboxTable } as const;

/**
 * The host side's fixed objects (table `ip cove_mesh` in the daemon's
 * namespace, a frame-less firewall of its own): published ports of this node
 * (elements of one set, hostPortElements) go to the ingress sandbox.
 * Priority dstnat-1, ahead of the frame's published-port DNAT. Loopback is
 * left to the port's reservation socket, which relays TCP as docker-proxy
 * does.
 */
export function hostMeshBase(sboxAddr: string): FwObject[] {
  const to = checkAddr(sboxAddr);
  const match = `meta l4proto . th dport @${MESH.hostSet} dnat to ${to}`;
  return [
    { ...HOST, kind: 'table' },
    { ...HOST, kind: 'set', name: MESH.hostSet, type: 'inet_proto . inet_service' },
    {
      ...HOST,
      kind: 'chain',
      name: MESH.hostPre,
      base: { type: 'nat', hook: 'prerouting', priority: -101, policy: 'accept' },
    },
    { ...HOST, kind: 'rule', chain: MESH.hostPre, rule: `fib daddr type local ${match}` },
    {
      ...HOST,
      kind: 'chain',
      name: MESH.hostOut,
      base: { type: 'nat', hook: 'output', priority: -101, policy: 'accept' },
    },
    { ...HOST, kind: 'rule', chain: MESH.hostOut, rule: `fib daddr type local ip daddr != 127.0.0.0/8 ${match}` },
  ];
}

/** One published port on the host side: an element of the set. */
export function hostPortElements(p: Pick<MeshPort, 'proto' | 'published'>): FwObject[] {
  return [{ ...HOST, kind: 'element', set: MESH.hostSet, key: `${p.proto} . ${p.published}` }];
}

/** The whole host side (the first pass of a daemon, unit tests). */
export function hostMeshObjects(ports: Array<Pick<MeshPort, 'proto' | 'published'>>, sboxAddr: string): FwObject[] {
  return [...hostMeshBase(sboxAddr), ...ports.flatMap(hostPortElements)];
}

/** The task counts the sandbox needs an lbN chain for. */
export function backendCounts(ports: MeshPort[]): number[] {
  return [...new Set(ports.map((p) => p.backends.length).filter((n) => n > 0))].sort((a, b) => a - b);
}

/**
 * The ingress sandbox's fixed objects (table `ip cove_ingress`), the same
 * whatever the number of ports: a verdict map from protocol . port to the
 * chain for the port's number of tasks N (`lbN`), which DNATs through the
 * map `lbN` keyed by protocol . port . (numgen random mod N) to one task's
 * ingress address and target port (any node: the overlay carries it). A
 * port is elements only (sboxPortElements), so adding or removing one costs
 * the same at 1 port and at 1000. A port without a running task has no
 * element, so the sandbox itself refuses (TCP reset, ICMP port
 * unreachable). Postrouting translates the source of what was DNATed into
 * the ingress subnet to the sandbox's own ingress address, so replies come
 * back through the node that took the connection: SNAT to that fixed
 * address, not masquerade, which looks the address up again for every new
 * connection (the table is made again when the sandbox's address changes).
 */
export function sboxMeshBase(ingressSubnet: string, ingressAddr: string, counts: number[]): FwObject[] {
  const objs: FwObject[] = [
    { ...SBOX, kind: 'table' },
    { ...SBOX, kind: 'map', name: MESH.sboxMap, type: 'inet_proto . inet_service : verdict' },
    {
      ...SBOX,
      kind: 'chain',
      name: 'pre',
      base: { type: 'nat', hook: 'prerouting', priority: 'dstnat', policy: 'accept' },
    },
    { ...SBOX, kind: 'rule', chain: 'pre', rule: `meta l4proto . th dport vmap @${MESH.sboxMap}` },
    {
      ...SBOX,
      kind: 'chain',
      name: 'post',
      base: { type: 'nat', hook: 'postrouting', priority: 'srcnat', policy: 'accept' },
    },
    {
      ...SBOX,
      kind: 'rule',
      chain: 'post',
      rule: `ct status dnat ip daddr ${checkAddr(ingressSubnet, CIDR4)} snat to ${checkAddr(ingressAddr)}`,
    },
  ];
  for (const n of counts) objs.push(...lbObjects(n));
  return objs;
}

/** The map and chain that spread a port over n tasks (numgen's typeof: no type name covers its key). */
export function lbObjects(n: number): FwObject[] {
  if (!Number.isInteger(n) || n < 1) throw new Error(`invalid task count ${n}`);
  const name = lbName(n);
  const pick = `meta l4proto . th dport . numgen random mod ${n}`;
  return [
    { ...SBOX, kind: 'map', name, type: `typeof ${pick} : ip daddr . th dport` },
    { ...SBOX, kind: 'chain', name },
    {
      ...SBOX,
      kind: 'rule',
      chain: name,
      rule: `meta l4proto { tcp, udp, sctp } dnat ip to ${pick} map @${name}`,
    },
  ];
}

/** One published port in the sandbox: its verdict-map element and one lbN element per task (none without tasks). */
export function sboxPortElements(p: MeshPort): FwObject[] {
  const n = p.backends.length;
  if (n === 0) return [];
  const key = `${p.proto} . ${p.published}`;
  return [
    { ...SBOX, kind: 'element', set: MESH.sboxMap, key, value: `goto ${lbName(n)}` },
    ...p.backends.map((b, i): FwObject => ({
      ...SBOX,
      kind: 'element',
      set: lbName(n),
      key: `${key} . ${i}`,
      value: `${checkAddr(b.addr)} . ${p.target}`,
    })),
  ];
}

/** The whole sandbox side (the first pass in a sandbox, unit tests). */
export function sboxMeshObjects(ports: MeshPort[], ingressSubnet: string, ingressAddr: string): FwObject[] {
  return [...sboxMeshBase(ingressSubnet, ingressAddr, backendCounts(ports)), ...ports.flatMap(sboxPortElements)];
}

/** What a port contributes to the tables, as text: equal signatures, equal elements. */
export function portSignature(p: MeshPort): string {
  return `${p.target} ${p.backends.map((b) => b.addr).join(',')}`;
}

/** proto/published: a port's identity. */
export const portKey = (p: Pick<MeshPort, 'proto' | 'published'>): string => `${p.proto}/${p.published}`;

/**
 * The element changes between two lists of ports for one side (host or
 * sandbox): only ports whose signature changed are turned into objects, so
 * a pass costs a string comparison per port plus the objects of the ports
 * that changed.
 */
export function portsDelta(
  before: Map<string, MeshPort>,
  after: MeshPort[],
  elementsOf: (p: MeshPort) => FwObject[],
): { remove: FwObject[]; add: FwObject[] } {
  const remove: FwObject[] = [];
  const add: FwObject[] = [];
  const seen = new Set<string>();
  for (const p of after) {
    const k = portKey(p);
    seen.add(k);
    const old = before.get(k);
    if (old && portSignature(old) === portSignature(p)) continue;
    if (old) remove.push(...elementsOf(old));
    add.push(...elementsOf(p));
  }
  for (const [k, old] of before) if (!seen.has(k)) remove.push(...elementsOf(old));
  return { remove, add };
}

/**
 * Picks the published port of each ingress port the user left at 0, from
 * Docker's dynamic range, skipping every port in `taken` (proto/port) and
 * keeping the port an earlier version of the service had for the same target.
 */
export function assignPublishedPorts(
  ports: PortConfig[],
  previous: PortConfig[] | undefined,
  taken: Set<string>,
): PortConfig[] {
  const used = new Set(taken);
  for (const p of ports) if (p.PublishedPort) used.add(`${p.Protocol ?? 'tcp'}/${p.PublishedPort}`);
  return ports.map((p) => {
    if (p.PublishedPort || (p.PublishMode ?? 'ingress') !== 'ingress') return { ...p };
    const proto = p.Protocol ?? 'tcp';
    const keep = previous?.find(
      (o) =>
        (o.Protocol ?? 'tcp') === proto &&
        o.TargetPort === p.TargetPort &&
        o.PublishedPort &&
        (o.PublishMode ?? 'ingress') === 'ingress',
    );
    if (keep?.PublishedPort && !taken.has(`${proto}/${keep.PublishedPort}`)) {
      used.add(`${proto}/${keep.PublishedPort}`);
      return { ...p, PublishedPort: keep.PublishedPort };
    }
    for (let n = DYNAMIC_PORTS[0]; n <= DYNAMIC_PORTS[1]; n++) {
      if (used.has(`${proto}/${n}`)) continue;
      used.add(`${proto}/${n}`);
      return { ...p, PublishedPort: n };
    }
    throw new Error('no free port in the dynamic range 30000-32767');
  });
}
