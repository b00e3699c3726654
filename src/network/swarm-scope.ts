/**
 * Swarm scope of the network controller: what lives in the cluster store
 * (Membership.store, keys relative to the cluster) and the words Docker uses.
 *
 *   networks/<id>              NetworkRecord of a swarm network (scope "swarm")
 *   netnames/<name>            network id: names unique across the cluster (txn with the record)
 *   ipam/config                { pools: [{base,size}] }: swarm init --default-addr-pool / -mask-length
 *   ipam/subnets/<subnet>      network id: a subnet claimed by a swarm network (no overlap races)
 *   ipam/vni/<vni>             network id: a VXLAN ID claimed (unique in the cluster)
 *   ipam/node/<node>/<nid>/<ip>  an address a node claimed for its endpoint (ipam/claims.ts:
 *                              one key per address, each node writes only its own, one
 *                              transaction per claim checks every node's; no shared key)
 *   ipam/addr/<nid>/<ip>       an address the managers claimed (service VIPs)
 *   endpoints/<node>/<nid>/<eid>  SwarmEndpoint: an endpoint of a swarm network on a node
 *                              (overlay peers, DNS across hosts, network inspect Peers);
 *                              the node ID first, so etcd's RBAC lets a worker write
 *                              under endpoints/<its id>/ only
 */
import { randomBytes } from 'node:crypto';
import { Collection, type Store, type TxnOp } from '../store/store.js';
import type { NetworkRecord } from './records.js';
import type { PeerEndpoint } from './driver.js';

export const NOT_IN_SWARM =
  'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.';
export const WORKER_CREATE =
  'Cannot create a multi-host network from a worker node. Please create the network from a manager node.';
export const WORKER_MODIFY =
  "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.";
export const notAttachable = (name: string) =>
  `Could not attach to network ${name}: rpc error: code = PermissionDenied desc = network ${name} not manually attachable`;

export const GWBRIDGE = 'docker_gwbridge';
export const GWBRIDGE_OPTIONS: Record<string, string> = {
  'com.docker.network.bridge.enable_icc': 'false',
  'com.docker.network.bridge.enable_ip_masquerade': 'true',
  'com.docker.network.bridge.name': 'docker_gwbridge',
};
/** Docker's overlay default: 10.0.0.0/8 in /24s. */
export const SWARM_DEFAULT_POOLS = [{ base: '10.0.0.0/8', size: 24 }];
export const FIRST_VNI = 4096;

/** One endpoint of a swarm network, as every node sees it. */
export interface SwarmEndpoint {
  id: string;
  networkId: string;
  /** Container name (DNS), aliases, container id. */
  name: string;
  aliases: string[];
  containerId: string;
  nodeId: string;
  nodeName: string;
  /** The node's data-path address (VXLAN peers). */
  underlay: string;
  ipv4?: string;
  ipv6?: string;
  mac: string;
}

export function toPeer(e: SwarmEndpoint): PeerEndpoint {
  const p: PeerEndpoint = { id: e.id, networkId: e.networkId, nodeId: e.nodeId, underlay: e.underlay, mac: e.mac };
  if (e.ipv4) p.ipv4 = e.ipv4;
  if (e.ipv6) p.ipv6 = e.ipv6;
  return p;
}

/** Docker's swarm object IDs: 25 lowercase base-36 characters. */
export function newSwarmId(): string {
  const b = randomBytes(25);
  return [...b].map((x) => (x % 36).toString(36)).join('');
}

export function endpointKey(nodeId: string, networkId: string, id: string): string {
  return `endpoints/${nodeId}/${networkId}/${id}`;
}

/** The network ID in a key made by endpointKey. */
export function networkOfEndpointKey(key: string): string | undefined {
  return key.split('/')[2];
}

export function subnetKey(subnet: string): string {
  return `ipam/subnets/${subnet.replace('/', '_')}`;
}

/** The cluster store, typed. */
export class ClusterKeys {
  readonly networks: Collection<NetworkRecord>;
  /** Every node's endpoints as the watch on endpoints/ reports them (see EndpointView). */
  readonly view = new EndpointView();
  constructor(readonly store: Store) {
    this.networks = new Collection<NetworkRecord>(store, 'networks');
  }

  /**
   * The endpoints of a network for overlay peers and DNS names: from the
   * watch-fed view once it is loaded (no cluster round trip per change: each
   * node's share of a container starting anywhere stays the same as the
   * cluster grows), from the store before that.
   */
  async watchedEndpointsOf(networkId: string): Promise<SwarmEndpoint[]> {
    return this.view.loaded ? this.view.of(networkId) : this.endpointsOf(networkId);
  }

  /** Fills the view; call after the watch on endpoints/ started (it feeds `view.apply`), so nothing is missed. */
  async loadView(): Promise<void> {
    const kvs = await this.store.list('endpoints/');
    this.view.load(
      kvs.map((kv) => ({ key: kv.key, value: JSON.parse(kv.value) as SwarmEndpoint, revision: kv.revision })),
    );
  }

  async endpointsOf(networkId: string): Promise<SwarmEndpoint[]> {
    return (await this.allEndpoints()).filter((e) => e.networkId === networkId);
  }

  async allEndpoints(): Promise<SwarmEndpoint[]> {
    return (await this.store.list('endpoints/')).map((kv) => JSON.parse(kv.value) as SwarmEndpoint);
  }

  /** Writes the endpoint; this node's view has it at once (the watch confirms it later). */
  async putEndpoint(e: SwarmEndpoint): Promise<number> {
    const key = endpointKey(e.nodeId, e.networkId, e.id);
    const rev = await this.store.put(key, JSON.stringify(e));
    this.view.apply(key, e, rev);
    return rev;
  }

  /** The endpoint's write, for a transaction of the caller's (then `applyOwn` with its revision). */
  endpointWrite(e: SwarmEndpoint): TxnOp {
    return { key: endpointKey(e.nodeId, e.networkId, e.id), value: JSON.stringify(e) };
  }

  applyOwn(e: SwarmEndpoint, revision: number): void {
    this.view.apply(endpointKey(e.nodeId, e.networkId, e.id), e, revision);
  }

  /** Addresses of a network's endpoints on every node, as last seen (IPAM candidates skip them). */
  addressesInView(networkId: string): string[] {
    const out: string[] = [];
    for (const e of this.view.of(networkId)) {
      if (e.ipv4) out.push(e.ipv4);
      if (e.ipv6) out.push(e.ipv6);
    }
    return out;
  }

  async deleteEndpoint(nodeId: string, networkId: string, id: string): Promise<boolean> {
    const key = endpointKey(nodeId, networkId, id);
    const gone = await this.store.delete(key);
    // Endpoint IDs are never reused: no later put of this key can be newer than this delete
    // (the tombstone goes when the watch reports the delete; with nothing deleted, none comes).
    if (gone) this.view.apply(key, undefined, Number.MAX_SAFE_INTEGER);
    else this.view.forget(key);
    return gone;
  }

  async pools(): Promise<Array<{ base: string; size: number }>> {
    const kv = await this.store.get('ipam/config');
    if (!kv) return SWARM_DEFAULT_POOLS;
    const c = JSON.parse(kv.value) as { pools?: Array<{ base: string; size: number }> };
    return c.pools?.length ? c.pools : SWARM_DEFAULT_POOLS;
  }
}

/**
 * The cluster's endpoints (endpoints/<node>/<nid>/<eid>) kept current from
 * the watch and this node's own writes, per key with the revision it was
 * last changed at, so events and the initial list may arrive in any order:
 * the newer revision wins, and a delete is remembered (a tombstone) until
 * the list is in, so a list taken before a delete cannot bring it back.
 */
export class EndpointView {
  private readonly entries = new Map<string, { value?: SwarmEndpoint; revision: number }>();
  loaded = false;

  apply(key: string, value: SwarmEndpoint | undefined, revision: number): void {
    const cur = this.entries.get(key);
    if (cur && cur.revision >= revision) {
      // The watch reporting this node's own delete: its tombstone has done its work.
      if (!value && !cur.value && this.loaded) this.entries.delete(key);
      return;
    }
    if (value || !this.loaded || revision === Number.MAX_SAFE_INTEGER)
      this.entries.set(key, value ? { value, revision } : { revision });
    else this.entries.delete(key);
  }

  load(kvs: Array<{ key: string; value: SwarmEndpoint; revision: number }>): void {
    for (const kv of kvs) this.apply(kv.key, kv.value, kv.revision);
    // Watch deletes are newer than any list from now on; only this node's own tombstones stay (see deleteEndpoint).
    for (const [k, e] of this.entries) if (!e.value && e.revision !== Number.MAX_SAFE_INTEGER) this.entries.delete(k);
    this.loaded = true;
  }

  forget(key: string): void {
    this.entries.delete(key);
  }

  of(networkId: string): SwarmEndpoint[] {
    const out: SwarmEndpoint[] = [];
    for (const e of this.entries.values()) if (e.value?.networkId === networkId) out.push(e.value);
    return out;
  }
}

/**
 * Local and swarm network records behind one face (get/list/update), so the
 * controller's code paths are the same for both scopes. Swarm records are
 * served from a copy kept current by a watch on the cluster store's
 * networks/ prefix (fed through `apply`), so container starts do no cluster
 * round trip for them and a cluster store that does not answer for a while
 * leaves every network usable. Absent outside a swarm.
 */
export class ScopedNetworks {
  private cluster:
    { coll: Collection<NetworkRecord>; cache: Map<string, { value: NetworkRecord; revision: number }> } | undefined;
  constructor(private readonly local: Collection<NetworkRecord>) {}

  key(id: string): string {
    return this.local.key(id);
  }

  /** Starts serving swarm records (the caller starts the watch first, then lists, so nothing is missed). */
  attach(
    coll: Collection<NetworkRecord>,
    initial: Array<{ id: string; value: NetworkRecord; revision: number }>,
  ): void {
    const cache = new Map(initial.map((n) => [n.id, { value: n.value, revision: n.revision }]));
    this.cluster = { coll, cache };
  }

  detach(): void {
    this.cluster = undefined;
  }

  /** A watch event under networks/ (or this node's own write). */
  apply(id: string, value: NetworkRecord | undefined, revision: number): void {
    const c = this.cluster;
    if (!c) return;
    const cur = c.cache.get(id);
    if (cur && cur.revision > revision) return; // an older event after a newer write
    if (value) c.cache.set(id, { value, revision });
    else c.cache.delete(id);
  }

  async get(id: string): Promise<{ value: NetworkRecord; revision: number } | undefined> {
    return (await this.local.get(id)) ?? this.cluster?.cache.get(id);
  }

  async list(): Promise<Array<{ id: string; value: NetworkRecord; revision: number }>> {
    const l = await this.local.list();
    if (!this.cluster) return l;
    return [...l, ...[...this.cluster.cache].map(([id, v]) => ({ id, ...v }))];
  }

  async update(
    id: string,
    fn: (cur: NetworkRecord | undefined) => NetworkRecord | undefined,
  ): Promise<NetworkRecord | undefined> {
    if (await this.local.get(id)) return this.local.update(id, fn);
    const c = this.cluster;
    if (!c) return undefined;
    const next = await c.coll.update(id, fn);
    const got = await c.coll.get(id);
    this.apply(id, got?.value, got?.revision ?? Number.MAX_SAFE_INTEGER);
    return next;
  }
}
