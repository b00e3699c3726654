/**
 * Swarm mode on etcd: init, join, leave, the swarm object, nodes, liveness.
 *
 * - Managers are etcd members (src/cluster/etcd-member.ts), workers are etcd
 *   clients. Everything is reached over mutual TLS with the node certificate
 *   from the cluster CA; etcd's RBAC (user = certificate CN = node ID) gives
 *   managers the root role and a worker read access plus write access to its
 *   own records only (see workerGrants).
 * - Local state (data root/swarm): state.json (node ID, cluster ID, role,
 *   addresses, etcd endpoints), certs/ (ca.crt, node.crt, node.key) and, on
 *   managers, etcd/ (the member's data, pidfile and log). A restarted daemon
 *   resumes from it and re-adopts its etcd member.
 * - Cluster keys (store prefix "cove/"): swarm/cluster (the swarm object),
 *   secret/tokens and secret/ca (managers only), nodes/<id> (the node
 *   record, written by managers), alive/<id> (leased by the node itself:
 *   Ready while present).
 */
import { requestKeyRotation } from '../cluster/key-rotation.js';
import { mkdirSync, readFileSync, writeFileSync, rmSync, existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { hostname, networkInterfaces, cpus, totalmem } from 'node:os';
import type https from 'node:https';
import type { Etcd3, Range } from 'etcd3';
import type { Logger } from '../common/log.js';
import { Conflict, CoveError, InvalidParameter, NotFound, SystemError, Unavailable } from '../common/errors.js';
import { CasError } from '../store/store.js';
import type { DaemonConfig } from '../common/config.js';
import type { EtcdStore } from '../store/etcd.js';
import { etcdLoaded, loadEtcd } from './etcd-client.js';
import type { Lease, WatchEvent } from '../store/store.js';
import type { ClusterNode, Membership, NodeRole } from '../cluster/membership.js';
import { EtcdMember, clientUrl, peerUrl } from '../cluster/etcd-member.js';
import { caDigest, createCA, createKeyAndCsr, signNodeCert, tlsInfo, type KeyPair } from '../cluster/pki.js';
import { formatToken, newId, newSecret, parseToken, sameSecret } from './tokens.js';
import {
  requestJoin,
  startJoinServer,
  splitHostPort,
  SWARM_PORT,
  type JoinReply,
  type JoinRequest,
} from './join-protocol.js';
import { phases, type Phases } from '../common/phases.js';

export const STORE_PREFIX = 'cove/';
/** Worker identities made ahead of joins (managers only: under secret/). */
const IDPOOL = 'secret/idpool/';
const IDPOOL_SIZE = 3;
/** Liveness lease TTL (s). etcd grants at least 2; a dead node is Down about TTL + 0.3 s after its last keepalive. */
export const ALIVE_TTL = 3;

export const ERR_NOT_IN_SWARM = 'This node is not part of a swarm';
export const ERR_NOT_MANAGER_OUTSIDE =
  'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.';
export const ERR_NOT_MANAGER_WORKER =
  "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.";
export const ERR_ALREADY =
  'This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and join another one.';
export const ERR_LAST_MANAGER =
  'You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.';

interface LocalState {
  nodeId: string;
  clusterId: string;
  role: NodeRole;
  addr: string;
  dataPathAddr: string;
  port: number;
  endpoints: string[];
  managers: Array<{ NodeID: string; Addr: string }>;
  /** Set while this node should run an etcd member. */
  member?: { initialCluster: string; state: 'new' | 'existing' };
}

export interface NodeRecord {
  ID: string;
  CreatedAt: string;
  UpdatedAt: string;
  Spec: { Name?: string; Labels: Record<string, string>; Role: NodeRole; Availability: 'active' | 'pause' | 'drain' };
  Description: {
    Hostname: string;
    Platform: { Architecture: string; OS: string };
    Resources: { NanoCPUs: number; MemoryBytes: number };
    Engine: { EngineVersion: string; Plugins: Array<{ Type: string; Name: string }> };
  };
  Addr: string;
  DataPathAddr: string;
  Port: number;
  /** For a node being promoted: etcd's --initial-cluster for its new member. */
  JoinMember?: string;
}

interface ClusterRecord {
  ID: string;
  CreatedAt: string;
  UpdatedAt: string;
  Spec: Record<string, unknown>;
  DataPathPort: number;
  DefaultAddrPool: string[] | null;
  SubnetSize: number;
}

type SwarmSpec = Record<string, unknown>;

const PLUGINS = [
  ...['awslogs', 'fluentd', 'gcplogs', 'gelf', 'journald', 'json-file', 'local', 'logentries', 'splunk', 'syslog'].map(
    (Name) => ({ Type: 'Log', Name }),
  ),
  ...['bridge', 'host', 'macvlan', 'null', 'overlay'].map((Name) => ({ Type: 'Network', Name })),
  { Type: 'Volume', Name: 'local' },
];

const DEFAULT_SPEC: SwarmSpec = {
  Name: 'default',
  Labels: {},
  Orchestration: { TaskHistoryRetentionLimit: 5 },
  Raft: {
    SnapshotInterval: 10000,
    KeepOldSnapshots: 0,
    LogEntriesForSlowFollowers: 500,
    ElectionTick: 10,
    HeartbeatTick: 1,
  },
  Dispatcher: { HeartbeatPeriod: 5_000_000_000 },
  CAConfig: { NodeCertExpiry: 7_776_000_000_000_000 },
  TaskDefaults: {},
  EncryptionConfig: { AutoLockManagers: false },
};

/**
 * The spec with Docker's defaults wherever the client sent a zero value (the
 * docker CLI sends every field, zeros included, as swarmkit fills them in).
 */
function defaultSpec(over: SwarmSpec = {}): SwarmSpec {
  const merge = (d: unknown, o: unknown): unknown => {
    if (o === undefined || o === null || o === 0 || o === '') return d;
    if (d && typeof d === 'object' && !Array.isArray(d) && typeof o === 'object' && !Array.isArray(o)) {
      const out: Record<string, unknown> = { ...(d as Record<string, unknown>) };
      for (const [k, v] of Object.entries(o as Record<string, unknown>))
        out[k] = merge((d as Record<string, unknown>)[k], v);
      return out;
    }
    return o;
  };
  return merge(DEFAULT_SPEC, over) as SwarmSpec;
}

/**
 * A worker's etcd role (keys relative to STORE_PREFIX): it reads everything
 * but secret/ (CA key, join tokens), and writes only records keyed by its
 * own node ID: its liveness key, its subtree, its containers' endpoints on
 * swarm networks, the log requests addressed to it and its answers, its
 * store client's write markers, and its task status reports
 * (node-local/<self>/tasks/, applied by managers: src/services/reports.ts),
 * and its address claims on swarm networks (ipam/node/<self>/: a claim is
 * a create of its own key that checks every other node's key for that
 * address in the same transaction, src/network/ipam/claims.ts; reading
 * another node's key is all it needs of it), and its WireGuard tunnel
 * address claim (tunnels/wireguard/<self>/<address>, made the same way when
 * an encrypted network comes up there:
 * src/network/drivers/overlay/tunnel-address.ts). It can never write nodes/,
 * swarm/, secret/, networks/, netnames/, services/, tasks/,
 * ipam/config|subnets|vni|addr, another node's liveness, endpoints,
 * address or tunnel claims, or logs.
 */
export function workerGrants(nodeId: string): { read: Array<[string, string]>; readwrite: string[] } {
  return {
    read: [
      ['', 'secret/'],
      ['secret0', ''],
    ],
    readwrite: [
      `alive/${nodeId}`,
      `node-local/${nodeId}/`,
      `endpoints/${nodeId}/`,
      `logs/req/${nodeId}/`,
      `logs/resp/${nodeId}/`,
      `\u0000txn/${nodeId}/`,
      `ipam/node/${nodeId}/`,
      `tunnels/wireguard/${nodeId}/`,
    ],
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface MemberView {
  byName: Map<string, { reachable: boolean }>;
  leaderName?: string;
}
/** node ls reuses the members' view this long, and serves an older one while it fetches a new one. */
const MEMBER_VIEW_FRESH_MS = 1000;
const MEMBER_VIEW_STALE_MS = 5000;

/** Serialises init/join/leave/role changes. */
class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

export interface SwarmDeps {
  config: DaemonConfig;
  log: Logger;
  /** The components that work across hosts (the network controller, services): attachCluster/detachCluster if they have them. */
  clusterAware: () => unknown[];
  engineVersion: string;
}

class EtcdMembership implements Membership {
  constructor(
    private readonly ctl: SwarmController,
    readonly store: EtcdStore,
  ) {}
  get self(): ClusterNode {
    const s = this.ctl.local!;
    return {
      id: s.nodeId,
      hostname: hostname(),
      role: s.role,
      addr: s.addr,
      dataPathAddr: s.dataPathAddr,
      availability: 'active',
      state: 'ready',
    };
  }
  isManager(): boolean {
    return this.ctl.local?.role === 'manager';
  }
  async nodes(): Promise<ClusterNode[]> {
    const [nodes, alive] = await Promise.all([this.store.list('nodes/'), this.store.list('alive/')]);
    const up = new Set(alive.map((kv) => kv.key.slice('alive/'.length)));
    return nodes.map((kv) => {
      const n = JSON.parse(kv.value) as NodeRecord;
      return {
        id: n.ID,
        hostname: n.Description.Hostname,
        role: n.Spec.Role,
        addr: n.Addr,
        dataPathAddr: n.DataPathAddr,
        availability: n.Spec.Availability,
        state: up.has(n.ID) ? 'ready' : 'down',
      };
    });
  }
}

export class SwarmController {
  local?: LocalState;
  store?: EtcdStore;
  membership?: EtcdMembership;
  private member?: EtcdMember;
  private joinServer?: https.Server;
  /** The liveness lease (Store.lease: etcd's lease here). */
  private lease?: Lease;
  private stopWatch?: () => void;
  private readonly mutex = new Mutex();
  private readonly statusClients = new Map<string, Etcd3>();
  private closed = false;
  private attached = false;
  private readonly log: Logger;

  constructor(private readonly deps: SwarmDeps) {
    this.log = deps.log;
  }

  private get dir(): string {
    return join(this.deps.config.dataRoot, 'swarm');
  }
  private get certDir(): string {
    return join(this.dir, 'certs');
  }

  // ---- lifecycle ---------------------------------------------------------

  /** Swarm mode needs a cluster scope; coved --cluster-store none has none (src/store/scopes.ts). */
  private requireClusterStore(): void {
    if (this.deps.config.clusterStore === 'none')
      throw new Unavailable('swarm mode is off on this node: coved was started with --cluster-store none');
  }

  /** At daemon start: resume the swarm this node belongs to (adopting its etcd member). Never throws. */
  async restore(): Promise<void> {
    const file = join(this.dir, 'state.json');
    if (!existsSync(file)) return;
    if (this.deps.config.clusterStore === 'none') {
      // Kept for a later start with the cluster store; this node stays out of the swarm meanwhile.
      this.log.warn({ state: file }, 'this node is in a swarm but coved runs with --cluster-store none: not resumed');
      return;
    }
    try {
      this.local = JSON.parse(readFileSync(file, 'utf8')) as LocalState;
      await this.activate();
      this.log.info({ nodeId: this.local.nodeId, role: this.local.role }, 'swarm resumed');
    } catch (e) {
      this.log.error({ err: e }, 'could not resume swarm state; retrying in the background');
      void this.retryActivate();
    }
  }

  private async retryActivate(): Promise<void> {
    while (!this.closed && this.local && !this.store) {
      await sleep(2000);
      try {
        await this.activate();
        return;
      } catch (e) {
        this.log.warn({ err: e }, 'swarm still not resumed');
      }
    }
  }

  /**
   * Daemon shutdown: stops talking to the cluster. The cluster-aware
   * components were closed by the daemon first (they keep their swarm
   * state: no detachCluster here); the etcd member keeps running and is
   * re-adopted at next start.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.member?.release();
    this.attached = false;
    await this.deactivate({ revokeLease: false });
  }

  private saveLocal(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const tmp = join(this.dir, 'state.json.tmp');
    writeFileSync(tmp, JSON.stringify(this.local, null, 2) + '\n', { mode: 0o600 });
    renameSync(tmp, join(this.dir, 'state.json'));
  }

  private certs(): { ca: string; cert: string; key: string } {
    return {
      ca: readFileSync(join(this.certDir, 'ca.crt'), 'utf8'),
      cert: readFileSync(join(this.certDir, 'node.crt'), 'utf8'),
      key: readFileSync(join(this.certDir, 'node.key'), 'utf8'),
    };
  }

  private writeCerts(c: { ca: string; cert: string; key: string }): void {
    mkdirSync(this.certDir, { recursive: true, mode: 0o700 });
    writeFileSync(join(this.certDir, 'ca.crt'), c.ca);
    writeFileSync(join(this.certDir, 'node.crt'), c.cert);
    writeFileSync(join(this.certDir, 'node.key'), c.key, { mode: 0o600 });
  }

  private memberFor(s: LocalState): EtcdMember {
    return new EtcdMember(
      {
        name: s.nodeId,
        addr: s.addr,
        certDir: this.certDir,
        dir: join(this.dir, 'etcd'),
        initialCluster: s.member?.initialCluster ?? `${s.nodeId}=${peerUrl(s.addr)}`,
        state: s.member?.state ?? 'existing',
        clusterToken: s.clusterId,
      },
      this.log.child({ module: 'etcd' }),
    );
  }

  /**
   * From local state to a working node: etcd member (managers), store client, lease, join server, networks.
   * A worker that just joined passes what its admission gave it: the lease its liveness key is on already,
   * and the cluster's address pools (no round trips for them).
   */
  private async activate(
    t?: Phases,
    joined?: Pick<JoinReply, 'lease' | 'defaultAddrPool' | 'subnetSize'>,
  ): Promise<void> {
    const s = this.local!;
    if (s.role === 'manager') {
      this.member = this.memberFor(s);
      this.member.start();
    }
    const c = this.certs();
    const endpoints =
      s.role === 'manager' ? [clientUrl(s.addr), ...s.endpoints.filter((e) => e !== clientUrl(s.addr))] : s.endpoints;
    const store = new (await loadEtcd()).store.EtcdStore({
      endpoints,
      prefix: STORE_PREFIX,
      tls: c,
      dialTimeoutMs: 1500,
      requestTimeoutMs: 8000,
      keepaliveMs: 5000,
      markerOwner: s.nodeId,
    });
    try {
      if (s.role === 'manager') await this.waitHealthy(store, 15_000);
      t?.mark('storeReady');
      this.store = store;
      this.membership = new EtcdMembership(this, store);
      if (s.role === 'manager') await this.startJoinServer();
      this.watchSelf();
      // Independent round trips, together: the liveness lease (the node is Ready
      // once it is there), the manager list, the cluster-aware components.
      const [lease] = await Promise.allSettled([
        this.startLease(joined?.lease).then(() => t?.mark('lease')),
        // A joiner's manager list came with its admission.
        joined ? undefined : this.refreshManagers().catch(() => undefined),
        this.attach(
          joined ? { defaultAddrPool: joined.defaultAddrPool, subnetSize: joined.subnetSize } : undefined,
        ).then(() => t?.mark('attach')),
      ]);
      if (lease.status === 'rejected') throw lease.reason;
      // Not on a manager that is joining: until its new member has caught up, etcd may not commit,
      // and a write timing out opens the store client's circuit breaker for its next calls.
      if (s.role === 'manager' && !t) void this.provisionIdentities();
    } catch (e) {
      await this.detach();
      this.store = undefined;
      this.membership = undefined;
      await this.stopLease(false);
      this.stopWatch?.();
      await this.stopJoinServer();
      await store.close().catch(() => undefined);
      throw e;
    }
  }

  private async deactivate(opts: { revokeLease: boolean }): Promise<void> {
    await this.detach();
    this.stopWatch?.();
    this.stopWatch = undefined;
    await this.stopLease(opts.revokeLease);
    await this.stopJoinServer();
    for (const c of this.statusClients.values()) c.close();
    this.statusClients.clear();
    this.memberView = undefined;
    this.memberFetch = undefined;
    const store = this.store;
    this.store = undefined;
    this.membership = undefined;
    await store?.close().catch(() => undefined);
  }

  /** `known`: the cluster's address pools when the caller has them (a joiner, from its admission). */
  private async attach(known?: {
    defaultAddrPool?: string[] | undefined;
    subnetSize?: number | undefined;
  }): Promise<void> {
    if (this.attached || !this.membership) return;
    this.attached = true;
    // swarm init's --default-addr-pool / --default-addr-pool-mask-length, for the network layer.
    const opts: { defaultAddrPool?: string[]; subnetSize?: number } = {};
    try {
      const c = known
        ? { DefaultAddrPool: known.defaultAddrPool, SubnetSize: known.subnetSize }
        : await this.membership.store
            .get('swarm/cluster')
            .then((kv) => (kv ? (JSON.parse(kv.value) as ClusterRecord) : undefined));
      if (c?.DefaultAddrPool?.length) opts.defaultAddrPool = c.DefaultAddrPool;
      if (c?.SubnetSize) opts.subnetSize = c.SubnetSize;
    } catch {
      /* defaults */
    }
    for (const c of this.deps.clusterAware()) {
      const ca = c as { attachCluster?: (m: Membership, o?: typeof opts) => Promise<void> };
      if (typeof ca.attachCluster === 'function') {
        try {
          await ca.attachCluster(this.membership, opts);
        } catch (e) {
          this.log.error({ err: e }, 'attachCluster failed');
        }
      }
    }
  }

  private async detach(): Promise<void> {
    if (!this.attached) return;
    this.attached = false;
    for (const c of this.deps.clusterAware()) {
      const ca = c as { detachCluster?: () => Promise<void> };
      if (typeof ca.detachCluster === 'function') {
        try {
          await ca.detachCluster();
        } catch (e) {
          this.log.error({ err: e }, 'detachCluster failed');
        }
      }
    }
  }

  private async waitHealthy(store: EtcdStore, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    let last: unknown;
    while (Date.now() < deadline) {
      try {
        await store.get('swarm/cluster');
        return;
      } catch (e) {
        last = e;
        await sleep(100);
      }
    }
    throw new Unavailable(
      `the cluster store did not become ready: ${(last as Error)?.message ?? 'timeout'}${this.member ? `\n${this.member.logTail(600)}` : ''}`,
    );
  }

  // ---- liveness ----------------------------------------------------------

  /** `adopt`: the lease a manager granted at this node's admission, with the liveness key on it already. */
  private async startLease(adopt?: { id: string; ttl: number }): Promise<void> {
    const grant = async (): Promise<void> => {
      const store = this.store!;
      const adopted = adopt && store.adoptLease(adopt.id, adopt.ttl);
      adopt = undefined; // once: a lost lease is replaced by one of this node's own
      const lease = adopted ?? store.lease(ALIVE_TTL);
      lease.onLost(() => {
        if (this.lease !== lease || this.closed) return;
        this.log.warn('liveness lease lost; granting a new one');
        this.lease = undefined;
        void (async () => {
          while (!this.closed && this.store === store && !this.lease) {
            try {
              await grant();
            } catch {
              await sleep(500);
            }
          }
        })();
      });
      if (!adopted) {
        try {
          await lease.put(`alive/${this.local!.nodeId}`, new Date().toISOString());
        } catch (e) {
          lease.release();
          throw e;
        }
      }
      this.lease = lease;
    };
    // A member that joined a moment ago may not serve yet (the lease goes to
    // the first endpoint, our own member): retried like reconfiguration.
    await retryUnhealthy('grant the liveness lease', grant, 20_000);
  }

  private async stopLease(revoke: boolean): Promise<void> {
    const lease = this.lease;
    this.lease = undefined;
    if (!lease) return;
    if (revoke) await withTimeout(lease.revoke(), 2000).catch(() => undefined);
    else lease.release();
  }

  // ---- role changes made by other managers --------------------------------

  private watchSelf(): void {
    const id = this.local!.nodeId;
    this.stopWatch = this.store!.watch(`nodes/${id}`, (ev: WatchEvent) => {
      if (ev.kv.key !== `nodes/${id}`) return;
      void this.mutex.run(() => this.onSelfRecord(ev)).catch((e) => this.log.error({ err: e }, 'role change failed'));
    });
  }

  private async onSelfRecord(ev: WatchEvent): Promise<void> {
    const s = this.local;
    if (!s || !this.store) return;
    if (ev.type === 'delete') {
      // Removed from the swarm by a manager (node rm --force): leave locally.
      this.log.warn('this node was removed from the swarm');
      await this.leaveLocally();
      return;
    }
    const rec = JSON.parse(ev.kv.value) as NodeRecord;
    if (rec.Spec.Role === s.role) return;
    if (rec.Spec.Role === 'manager') {
      // Promoted: a manager already added our etcd member; start it.
      s.role = 'manager';
      s.member = { initialCluster: rec.JoinMember ?? `${s.nodeId}=${peerUrl(s.addr)}`, state: 'existing' };
      this.saveLocal();
      this.member = this.memberFor(s);
      this.member.start();
      await this.startJoinServer().catch((e) => this.log.error({ err: e }, 'join server did not start'));
    } else {
      // Demoted: a manager removed our etcd member; stop it and drop its data.
      s.role = 'worker';
      delete s.member;
      this.saveLocal();
      await this.stopJoinServer();
      await this.member?.destroy();
      this.member = undefined;
    }
    this.log.info({ role: s.role }, 'role changed');
  }

  private async refreshManagers(): Promise<void> {
    if (!this.store || !this.local) return;
    const nodes = await this.store.list('nodes/');
    const managers = nodes.map((kv) => JSON.parse(kv.value) as NodeRecord).filter((n) => n.Spec.Role === 'manager');
    this.local.managers = managers.map((n) => ({ NodeID: n.ID, Addr: `${n.Addr}:${n.Port}` }));
    this.local.endpoints = managers.map((n) => clientUrl(n.Addr));
    this.saveLocal();
  }

  // ---- join server (managers) --------------------------------------------

  private async startJoinServer(): Promise<void> {
    if (this.joinServer) return;
    const s = this.local!;
    const c = this.certs();
    this.joinServer = await startJoinServer({
      host: '0.0.0.0',
      port: s.port,
      ca: c.ca,
      cert: c.cert,
      key: c.key,
      onJoin: (req) => this.admit(req),
      log: this.log,
    });
  }

  private async stopJoinServer(): Promise<void> {
    const srv = this.joinServer;
    this.joinServer = undefined;
    if (!srv) return;
    srv.closeAllConnections?.();
    await new Promise<void>((r) => srv.close(() => r()));
  }

  /**
   * A manager admits a joining node: checks the secret, signs its certificate,
   * makes its etcd user (and member) and writes its record. A worker's
   * admission is one round of reads (tokens, nodes, CA, cluster, the pool of
   * ready-made identities, and its liveness lease granted meanwhile) and one
   * transaction that claims an identity, writes the record and puts the
   * node's liveness key on that lease: the node is listed Ready when the
   * joiner gets its answer, and the joiner keeps the lease alive from then on.
   */
  private async admit(req: JoinRequest): Promise<JoinReply> {
    const store = this.store;
    if (!store || this.local?.role !== 'manager') throw new Unavailable('this node is not a swarm manager');
    if (
      typeof req.secret !== 'string' ||
      typeof req.csr !== 'string' ||
      typeof req.addr !== 'string' ||
      !/^\d+\.\d+\.\d+\.\d+$/.test(req.addr)
    ) {
      throw new InvalidParameter('malformed join request');
    }
    // Phase times of the admission, logged for `npm run bench -- --swarm` (where a join's time goes).
    const t = phases();
    // The liveness lease, granted alongside the reads (a manager join, or a refused one, lets it go).
    let leasing: Promise<string> | undefined = store.grantLease(ALIVE_TTL);
    leasing.catch(() => undefined);
    const dropLease = () => {
      const l = leasing;
      leasing = undefined;
      void l?.then((ID) => store.raw.leaseClient.leaseRevoke({ ID })).catch(() => undefined);
    };
    const undo: Array<() => Promise<unknown>> = [];
    try {
      const [tokensKv, nodesKv, caKv, clusterKv, poolKvs] = await Promise.all([
        store.get('secret/tokens'),
        store.list('nodes/'),
        store.get('secret/ca'),
        store.get('swarm/cluster'),
        store.list(IDPOOL),
      ]);
      const tokens = JSON.parse(tokensKv?.value ?? '{}') as { worker?: string; manager?: string };
      const role: NodeRole | undefined =
        tokens.manager && sameSecret(req.secret, tokens.manager)
          ? 'manager'
          : tokens.worker && sameSecret(req.secret, tokens.worker)
            ? 'worker'
            : undefined;
      if (!role)
        throw new InvalidParameter(
          'rpc error: code = InvalidArgument desc = A valid join token is necessary to join this cluster',
        );
      const existing = nodesKv.map((kv) => JSON.parse(kv.value) as NodeRecord);
      if (existing.some((n) => n.Addr === req.addr && n.Spec.Role === 'manager')) {
        throw new Conflict(`a manager with address ${req.addr} is already in the swarm`);
      }
      const ca = JSON.parse(caKv!.value) as KeyPair;
      const cluster = clusterKv ? (JSON.parse(clusterKv.value) as ClusterRecord) : undefined;
      const clusterId = this.local.clusterId;
      t.mark('read');
      const now = new Date().toISOString();
      const recordOf = (nodeId: string): NodeRecord => ({
        ID: nodeId,
        CreatedAt: now,
        UpdatedAt: now,
        Spec: {
          Labels: {},
          Role: role,
          Availability: ['active', 'pause', 'drain'].includes(req.availability) ? req.availability : 'active',
        },
        Description: {
          Hostname: String(req.hostname ?? ''),
          Platform: { Architecture: 'x86_64', OS: 'linux' },
          Resources: { NanoCPUs: Number(req.nanoCpus) || 0, MemoryBytes: Number(req.memoryBytes) || 0 },
          Engine: { EngineVersion: String(req.engineVersion ?? ''), Plugins: PLUGINS },
        },
        Addr: req.addr,
        DataPathAddr: typeof req.dataPathAddr === 'string' && req.dataPathAddr ? req.dataPathAddr : req.addr,
        Port: SWARM_PORT,
      });
      let nodeId: string | undefined;
      let cert = '';
      let rec: NodeRecord | undefined;
      let leaseId: string | undefined;
      let pooled = false;
      if (role === 'worker' && poolKvs.length > 0) {
        leaseId = await leasing!;
        // An identity made beforehand (etcd user and role ready, see provisionIdentities),
        // claimed in the same transaction that writes the record and the liveness key.
        for (const kv of poolKvs) {
          const id = kv.key.slice(IDPOOL.length);
          const r = recordOf(id);
          const c = await signNodeCert(ca, req.csr, { nodeId: id, role, clusterId, addr: req.addr });
          try {
            await store.txnWithLease(
              [
                { key: kv.key, expectRevision: kv.revision, value: null },
                { key: `nodes/${id}`, expectRevision: 0, value: JSON.stringify(r) },
              ],
              { id: leaseId, puts: [{ key: `alive/${id}`, value: now }] },
            );
          } catch (e) {
            if (e instanceof CasError) continue; // another manager took it
            undo.push(
              () => this.deleteEtcdUser(id),
              () => store.delete(`nodes/${id}`),
            );
            throw e;
          }
          undo.push(() => this.deleteEtcdUser(id));
          [nodeId, cert, rec, pooled] = [id, c, r, true];
          break;
        }
      }
      if (!nodeId) {
        // A manager, or a worker when no identity is left: one made now.
        const id = newId();
        undo.push(() => this.deleteEtcdUser(id));
        cert = await signNodeCert(ca, req.csr, { nodeId: id, role, clusterId, addr: req.addr });
        await this.createEtcdUser(id, role);
        rec = recordOf(id);
        // Making the user took a while: a worker's lease is granted now, so the joiner has its whole TTL.
        dropLease();
        if (role === 'worker') leaseId = await (leasing = store.grantLease(ALIVE_TTL));
        // The record goes first: once a member is added, quorum counts the new
        // member, and with two managers nothing commits until it has started.
        if (leaseId)
          await store.txnWithLease([{ key: `nodes/${id}`, expectRevision: 0, value: JSON.stringify(rec) }], {
            id: leaseId,
            puts: [{ key: `alive/${id}`, value: now }],
          });
        else await store.put(`nodes/${id}`, JSON.stringify(rec), 0);
        nodeId = id;
      }
      undo.push(() => store.delete(`nodes/${nodeId}`));
      t.mark(pooled ? 'claimSignRecord' : 'signUserRecord');
      if (pooled) void this.provisionIdentities();
      if (leaseId) {
        const granted = leaseId;
        leasing = undefined; // kept for the joiner, unless the admission fails after all
        undo.push(() => store.raw.leaseClient.leaseRevoke({ ID: granted }));
      } else dropLease();
      let initialCluster: string | undefined;
      if (role === 'manager') {
        const added = await this.addMember(nodeId, req.addr);
        undo.push(() => store.raw.cluster.memberRemove({ ID: added.id }));
        initialCluster = added.initialCluster;
        t.mark('memberAdd');
      }
      const managers = [...existing.filter((n) => n.Spec.Role === 'manager'), ...(role === 'manager' ? [rec!] : [])];
      this.log.info({ nodeId, role, addr: req.addr, pooled, phasesMs: t.done() }, 'node joined');
      return {
        nodeId,
        clusterId,
        role,
        cert,
        ca: ca.cert,
        endpoints: managers.map((n) => clientUrl(n.Addr)),
        ...(initialCluster ? { initialCluster } : {}),
        managers: managers.map((n) => ({ NodeID: n.ID, Addr: `${n.Addr}:${n.Port}` })),
        ...(leaseId ? { lease: { id: leaseId, ttl: ALIVE_TTL } } : {}),
        ...(cluster?.DefaultAddrPool?.length ? { defaultAddrPool: cluster.DefaultAddrPool } : {}),
        ...(cluster?.SubnetSize ? { subnetSize: cluster.SubnetSize } : {}),
      };
    } catch (e) {
      dropLease();
      for (const u of undo.reverse()) await u().catch(() => undefined);
      throw e;
    }
  }

  // ---- worker identities made ahead of joins (managers) ------------------

  private provisioning = false;

  /**
   * Tops the pool of worker identities up to IDPOOL_SIZE, in the background
   * (after init, at a manager daemon's start, after each join that took one). An
   * identity is a node ID whose etcd user and worker role exist: making them
   * takes a dozen etcd auth commits, the largest part of an admission, so a
   * join does not wait for them. An identity is usable only through a
   * certificate with its ID as CN, which a manager signs when it hands the
   * identity out: an unused one grants nothing.
   */
  private async provisionIdentities(): Promise<void> {
    if (this.provisioning) return;
    this.provisioning = true;
    try {
      while (this.store && this.local?.role === 'manager' && !this.closed) {
        const store = this.store;
        if ((await store.list(IDPOOL)).length >= IDPOOL_SIZE) return;
        const id = newId();
        try {
          await this.createEtcdUser(id, 'worker');
          await store.put(`${IDPOOL}${id}`, '{}');
        } catch (e) {
          await this.deleteEtcdUser(id).catch(() => undefined);
          throw e;
        }
      }
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'could not make worker identities ahead of joins');
    } finally {
      this.provisioning = false;
    }
  }

  /** `member add`, retried while etcd says the cluster is not healthy enough to reconfigure (about 5 s after start). */
  private async addMember(nodeId: string, addr: string): Promise<{ id: string; initialCluster: string }> {
    const store = this.store!;
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        const res = await store.raw.cluster.memberAdd({ peerURLs: [peerUrl(addr)] });
        const members = res.members.map((m) => `${m.ID === res.member.ID ? nodeId : m.name}=${m.peerURLs[0]}`);
        return { id: res.member.ID, initialCluster: members.join(',') };
      } catch (e) {
        const msg = (e as Error).message;
        if (
          Date.now() > deadline ||
          !/unhealthy cluster|not healthy|leader changed|no leader|deadline|UNAVAILABLE|circuit breaker|request timed out|too many requests|revision of auth store is old/i.test(
            msg,
          )
        ) {
          throw new Unavailable(`could not add the etcd member for ${addr}: ${msg}`);
        }
        await sleep(200);
      }
    }
  }

  /**
   * The node's etcd user: no password (nodes authenticate by their
   * certificate's CN only; a password made etcd spend a bcrypt hash on every
   * join, 100+ ms here), and its role, made alongside.
   */
  private createEtcdUser(nodeId: string, role: NodeRole): Promise<void> {
    // Idempotent steps, retried: on a loaded machine one call may miss its deadline, and the
    // client then skips that member for a second (its circuit breaker), failing the others too.
    return retryUnhealthy(`create the etcd user of ${nodeId}`, () => this.createEtcdUserOnce(nodeId, role));
  }

  private async createEtcdUserOnce(nodeId: string, role: NodeRole): Promise<void> {
    const etcd = this.store!.raw;
    const user = etcd.auth.userAdd({ name: nodeId, options: { no_password: true } }).catch((e: Error) => {
      if (!/already exists/.test(e.message)) throw e;
    });
    if (role === 'manager') {
      await user;
      await etcd.auth.userGrantRole({ user: nodeId, role: 'root' });
    } else {
      await this.grantWorkerRole(nodeId, user);
    }
  }

  /** The worker role of nodeId, granted to its user once `userMade` (running meanwhile) has resolved. */
  private async grantWorkerRole(nodeId: string, userMade: Promise<unknown> = Promise.resolve()): Promise<void> {
    const etcd = this.store!.raw;
    const roleName = `worker-${nodeId}`;
    const g = workerGrants(nodeId);
    const perms = [
      ...g.read.map(([from, to]) => ({
        permission: 'Read' as const,
        range: new (etcdLoaded().etcd3.Range)(STORE_PREFIX + from, to ? STORE_PREFIX + to : prefixEnd(STORE_PREFIX)),
      })),
      ...g.readwrite.map((p) => ({ permission: 'Readwrite' as const, range: rangeOf(STORE_PREFIX + p) })),
    ];
    const roleMade = etcd.auth
      .roleAdd({ name: roleName })
      .catch((e: Error) => {
        if (!/already exists/.test(e.message)) throw e;
      })
      .then(() => etcd.role(roleName).grant(perms));
    // Both settle before anything throws, so a failure leaves nothing running behind the caller's undo.
    const [u, r] = await Promise.allSettled([userMade, roleMade]);
    if (u.status === 'rejected') throw u.reason;
    if (r.status === 'rejected') throw r.reason;
    await etcd.auth.userGrantRole({ user: nodeId, role: roleName });
  }

  private async deleteEtcdUser(nodeId: string): Promise<void> {
    const etcd = this.store!.raw;
    await etcd.auth.userDelete({ name: nodeId }).catch(() => undefined);
    await etcd.auth.roleDelete({ role: `worker-${nodeId}` }).catch(() => undefined);
  }

  // ---- init / join / leave -----------------------------------------------

  init(body: {
    ListenAddr?: string;
    AdvertiseAddr?: string;
    DataPathAddr?: string;
    ForceNewCluster?: boolean;
    Spec?: SwarmSpec;
    DataPathPort?: number;
    DefaultAddrPool?: string[] | null;
    SubnetSize?: number;
    Availability?: string;
  }): Promise<string> {
    return this.mutex.run(async () => {
      if (this.local) throw new Unavailable(ERR_ALREADY);
      this.requireClusterStore();
      const port = Number(splitHostPort(body.ListenAddr || `0.0.0.0:${SWARM_PORT}`)[1]);
      const addr = resolveAdvertise(body.AdvertiseAddr, body.ListenAddr);
      const dataPathAddr = body.DataPathAddr ? resolveAdvertise(body.DataPathAddr) : addr;
      const nodeId = newId();
      const clusterId = newId();
      rmSync(this.dir, { recursive: true, force: true });
      try {
        const ca = await createCA();
        const { key, csr } = await createKeyAndCsr();
        const cert = await signNodeCert(ca, csr, { nodeId, role: 'manager', clusterId, addr });
        this.writeCerts({ ca: ca.cert, cert, key });
        this.local = {
          nodeId,
          clusterId,
          role: 'manager',
          addr,
          dataPathAddr,
          port,
          endpoints: [clientUrl(addr)],
          managers: [{ NodeID: nodeId, Addr: `${addr}:${port}` }],
          member: { initialCluster: `${nodeId}=${peerUrl(addr)}`, state: 'new' },
        };
        // First the member and the data, with auth still off; then users and roles; then auth on.
        this.member = this.memberFor(this.local);
        this.member.start();
        const c = this.certs();
        const boot = new (await loadEtcd()).store.EtcdStore({
          endpoints: [clientUrl(addr)],
          prefix: STORE_PREFIX,
          tls: c,
          dialTimeoutMs: 1500,
          requestTimeoutMs: 8000,
        });
        try {
          await this.waitHealthy(boot, 15_000);
          const now = new Date().toISOString();
          const cluster: ClusterRecord = {
            ID: clusterId,
            CreatedAt: now,
            UpdatedAt: now,
            Spec: defaultSpec(body.Spec && Object.keys(body.Spec).length ? cleanSpec(body.Spec) : {}),
            DataPathPort: body.DataPathPort || 4789,
            DefaultAddrPool: body.DefaultAddrPool?.length ? body.DefaultAddrPool : null,
            SubnetSize: body.SubnetSize || 24,
          };
          const rec: NodeRecord = {
            ID: nodeId,
            CreatedAt: now,
            UpdatedAt: now,
            Spec: { Labels: {}, Role: 'manager', Availability: availabilityOf(body.Availability) },
            Description: this.description(),
            Addr: addr,
            DataPathAddr: dataPathAddr,
            Port: port,
          };
          await boot.txn([
            { key: 'swarm/cluster', value: JSON.stringify(cluster) },
            { key: 'secret/tokens', value: JSON.stringify({ worker: newSecret(), manager: newSecret() }) },
            { key: 'secret/ca', value: JSON.stringify(ca) },
            { key: `nodes/${nodeId}`, value: JSON.stringify(rec) },
          ]);
          const etcd = boot.raw;
          await etcd.auth.roleAdd({ name: 'root' }).catch(() => undefined);
          await etcd.auth.userAdd({ name: 'root', password: newSecret() });
          await etcd.auth.userGrantRole({ user: 'root', role: 'root' });
          await etcd.auth.userAdd({ name: nodeId, password: newSecret() });
          await etcd.auth.userGrantRole({ user: nodeId, role: 'root' });
          await etcd.auth.authEnable();
        } finally {
          await boot.close();
        }
        this.local.member!.state = 'existing';
        this.saveLocal();
        await this.activate();
        this.log.info({ nodeId, clusterId, addr }, 'swarm initialized');
        return nodeId;
      } catch (e) {
        await this.abandon();
        throw e instanceof CoveError ? e : new SystemError(`swarm init failed: ${(e as Error).message}`);
      }
    });
  }

  /**
   * Joins a swarm. A manager token makes this node an etcd member: it answers
   * once that member and everything else runs. A worker answers once it is in
   * the swarm: admitted, its certificate and local state written, its node
   * record and liveness key in the cluster (the manager wrote both). Loading
   * the etcd client, connecting, renewing the lease and attaching the networks
   * and services then go on in the background (activateJoined); API requests
   * wait for that (settled()), so `network ls` or `info` right after the join
   * answer as after a finished one.
   */
  join(body: {
    ListenAddr?: string;
    AdvertiseAddr?: string;
    DataPathAddr?: string;
    RemoteAddrs?: string[];
    JoinToken?: string;
    Availability?: string;
  }): Promise<void> {
    return this.mutex.run(async () => {
      if (this.local) throw new Unavailable(ERR_ALREADY);
      this.requireClusterStore();
      const remote = body.RemoteAddrs?.[0];
      if (!remote) throw new InvalidParameter('at least 1 RemoteAddr is required to join');
      const { digest, secret } = parseToken(body.JoinToken ?? '');
      const [rhost, rport] = splitHostPort(remote);
      const port = Number(splitHostPort(body.ListenAddr || `0.0.0.0:${SWARM_PORT}`)[1]);
      const addr = body.AdvertiseAddr
        ? resolveAdvertise(body.AdvertiseAddr, body.ListenAddr)
        : await localAddrTowards(rhost, Number(rport));
      const dataPathAddr = body.DataPathAddr ? resolveAdvertise(body.DataPathAddr) : addr;
      const availability = availabilityOf(body.Availability);
      const t = phases();
      let key = '';
      // The key and CSR are made while the TLS handshake with the manager is on its way.
      const reply = await requestJoin(`${rhost}:${rport}`, digest, async () => {
        const k = await createKeyAndCsr();
        key = k.key;
        t.mark('keyAndCsr');
        const d = this.description();
        return {
          secret,
          csr: k.csr,
          hostname: d.Hostname,
          addr,
          dataPathAddr,
          availability,
          engineVersion: d.Engine.EngineVersion,
          nanoCpus: d.Resources.NanoCPUs,
          memoryBytes: d.Resources.MemoryBytes,
        };
      });
      t.mark('admission');
      rmSync(this.dir, { recursive: true, force: true });
      try {
        this.writeCerts({ ca: reply.ca, cert: reply.cert, key });
        this.local = {
          nodeId: reply.nodeId,
          clusterId: reply.clusterId,
          role: reply.role,
          addr,
          dataPathAddr,
          port,
          endpoints: reply.endpoints,
          managers: reply.managers,
          ...(reply.initialCluster
            ? { member: { initialCluster: reply.initialCluster, state: 'existing' as const } }
            : {}),
        };
        this.saveLocal();
        t.mark('localState');
        if (reply.role === 'manager') {
          await this.activate(t);
          this.log.info({ nodeId: reply.nodeId, role: reply.role, phasesMs: t.done() }, 'joined swarm');
          return;
        }
      } catch (e) {
        // Nothing half-made: undo the member, user and record the manager made.
        await this.undoJoin(reply, key).catch((e2) => this.log.error({ err: e2 }, 'could not undo a failed join'));
        await this.abandon();
        throw e instanceof CoveError ? e : new SystemError(`swarm join failed: ${(e as Error).message}`);
      }
      this.log.info({ nodeId: reply.nodeId, role: reply.role, phasesMs: t.done() }, 'joined swarm');
      // Queued behind this join on the mutex: a leave or role change waits for it.
      const activation = this.mutex.run(() => this.activateJoined(reply));
      this.activation = activation;
      void activation.finally(() => {
        if (this.activation === activation) this.activation = undefined;
      });
    });
  }

  /** A background activation after a worker's join, while it runs (settled() waits for it). */
  private activation?: Promise<void>;

  /**
   * Resolves once no activation after a join is running (at most `ms`): the API
   * waits here before serving anything that depends on the swarm.
   */
  async settled(ms = 10_000): Promise<void> {
    const a = this.activation;
    if (!a) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([a, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
  }

  /** The rest of a worker's join: etcd client, store, lease (adopted), networks and services. */
  private async activateJoined(reply: JoinReply): Promise<void> {
    // The join's answer goes out first: loading the etcd client holds this thread for a while.
    await new Promise<void>((r) => setImmediate(r));
    if (this.local?.nodeId !== reply.nodeId || this.store) return;
    const t = phases();
    try {
      await loadEtcd();
      t.mark('etcdClientLoaded');
      await this.activate(t, reply);
      this.log.info({ nodeId: reply.nodeId, phasesMs: t.done() }, 'swarm ready');
    } catch (e) {
      // As Docker: a node that has joined keeps trying in the background (`info` says pending meanwhile).
      this.log.error({ err: e }, 'joined, but could not reach the cluster store yet; retrying in the background');
      void this.retryActivate();
    }
  }

  /** A failed join after the manager admitted us: remove our member, user and record with our own (fresh) credentials. */
  private async undoJoin(reply: JoinReply, key: string): Promise<void> {
    const others = reply.endpoints.filter((e) => e !== clientUrl(this.local?.addr ?? ''));
    if (!others.length) return;
    const store = new (await loadEtcd()).store.EtcdStore({
      endpoints: others,
      prefix: STORE_PREFIX,
      tls: { ca: reply.ca, cert: reply.cert, key },
      dialTimeoutMs: 1500,
      requestTimeoutMs: 5000,
    });
    try {
      if (reply.role === 'manager') {
        const list = await store.raw.cluster.memberList({});
        const me = list.members.find((m) => m.name === reply.nodeId || m.peerURLs.includes(peerUrl(this.local!.addr)));
        if (me) await store.raw.cluster.memberRemove({ ID: me.ID });
        await store.delete(`nodes/${reply.nodeId}`);
        await store.raw.auth.userDelete({ name: reply.nodeId });
      }
      // A worker cannot delete its own record or user (RBAC); it stays Down until `node rm`.
    } finally {
      await store.close();
    }
  }

  /** Drops everything local: member, clients, state files. */
  private async abandon(): Promise<void> {
    await this.deactivate({ revokeLease: true });
    await this.member?.destroy().catch(() => undefined);
    this.member = undefined;
    if (!this.member)
      await new EtcdMember(
        {
          name: 'x',
          addr: '0.0.0.0',
          certDir: this.certDir,
          dir: join(this.dir, 'etcd'),
          initialCluster: '',
          state: 'new',
          clusterToken: '',
        },
        this.log,
      ).destroy();
    this.local = undefined;
    rmSync(this.dir, { recursive: true, force: true });
  }

  leave(force: boolean): Promise<void> {
    return this.mutex.run(async () => {
      const s = this.local;
      if (!s) throw new Unavailable(ERR_NOT_IN_SWARM);
      if (s.role === 'manager') {
        const managers = this.store ? await this.managerCount().catch(() => 1) : 1;
        if (!force) {
          if (managers <= 1) throw new Unavailable(ERR_LAST_MANAGER);
          const left = managers - 1;
          let msg = `You are attempting to leave the swarm on a node that is participating as a manager. Removing this node leaves ${left} managers out of ${managers}. `;
          if (left <= managers / 2) msg += 'Without a Raft quorum your swarm will be inaccessible. ';
          msg +=
            'The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message.';
          throw new Unavailable(msg);
        }
        if (managers > 1 && this.store) {
          // Leave etcd cleanly so the others keep their quorum arithmetic right.
          try {
            const list = await this.store.raw.cluster.memberList({});
            const me = list.members.find((m) => m.name === s.nodeId);
            const raw = this.store.raw;
            if (me) await retryUnhealthy('remove this etcd member', () => raw.cluster.memberRemove({ ID: me.ID }));
            const rec = await this.store.get(`nodes/${s.nodeId}`);
            if (rec) {
              const n = JSON.parse(rec.value) as NodeRecord;
              n.Spec.Role = 'worker';
              n.UpdatedAt = new Date().toISOString();
              await this.store.put(`nodes/${s.nodeId}`, JSON.stringify(n));
            }
          } catch (e) {
            this.log.warn({ err: e }, 'could not remove this etcd member cleanly');
          }
        }
      }
      await this.leaveLocally();
    });
  }

  private async leaveLocally(): Promise<void> {
    await this.deactivate({ revokeLease: true });
    await this.member?.destroy();
    this.member = undefined;
    this.local = undefined;
    rmSync(this.dir, { recursive: true, force: true });
    this.log.info('left the swarm');
  }

  private async managerCount(): Promise<number> {
    const list = await this.store!.raw.cluster.memberList({});
    return list.members.length;
  }

  // ---- reads -------------------------------------------------------------

  /** Throws Docker's 503 unless this node is an active manager. */
  requireManager(): EtcdStore {
    if (!this.local) throw new Unavailable(ERR_NOT_MANAGER_OUTSIDE);
    if (this.local.role !== 'manager') throw new Unavailable(ERR_NOT_MANAGER_WORKER);
    if (!this.store)
      throw new Unavailable(
        "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.",
      );
    return this.store;
  }

  async inspect(): Promise<Record<string, unknown>> {
    const store = this.requireManager();
    const [kv, tokens, ca] = await Promise.all([
      store.get('swarm/cluster'),
      store.get('secret/tokens'),
      store.get('secret/ca'),
    ]);
    if (!kv || !tokens || !ca) throw new Unavailable('swarm state is missing from the cluster store');
    const c = JSON.parse(kv.value) as ClusterRecord;
    const t = JSON.parse(tokens.value) as { worker: string; manager: string };
    const caCert = (JSON.parse(ca.value) as KeyPair).cert;
    const digest = caDigest(caCert);
    return {
      ...this.clusterObject(c, kv.revision, caCert),
      JoinTokens: { Worker: formatToken(digest, t.worker), Manager: formatToken(digest, t.manager) },
    };
  }

  private clusterObject(c: ClusterRecord, revision: number, caCert: string): Record<string, unknown> {
    return {
      ID: c.ID,
      Version: { Index: revision },
      CreatedAt: c.CreatedAt,
      UpdatedAt: c.UpdatedAt,
      Spec: c.Spec,
      TLSInfo: tlsInfo(caCert),
      RootRotationInProgress: false,
      DefaultAddrPool: c.DefaultAddrPool,
      SubnetSize: c.SubnetSize,
      DataPathPort: c.DataPathPort,
    };
  }

  async update(
    version: number | undefined,
    spec: SwarmSpec,
    rotate: { worker: boolean; manager: boolean },
  ): Promise<void> {
    const store = this.requireManager();
    const kv = await store.get('swarm/cluster');
    if (!kv) throw new Unavailable('swarm state is missing from the cluster store');
    if (version === undefined || !Number.isInteger(version)) throw new InvalidParameter('invalid swarm version');
    if (version !== kv.revision) throw new SystemError('update out of sequence');
    const c = JSON.parse(kv.value) as ClusterRecord;
    c.Spec = defaultSpec({ ...c.Spec, ...cleanSpec(spec) });
    c.UpdatedAt = new Date().toISOString();
    const ops: Array<{ key: string; value?: string; expectRevision?: number }> = [
      { key: 'swarm/cluster', value: JSON.stringify(c), expectRevision: kv.revision },
    ];
    if (rotate.worker || rotate.manager) {
      const tk = await store.get('secret/tokens');
      const t = JSON.parse(tk!.value) as { worker: string; manager: string };
      if (rotate.worker) t.worker = newSecret();
      if (rotate.manager) t.manager = newSecret();
      ops.push({ key: 'secret/tokens', value: JSON.stringify(t), expectRevision: tk!.revision });
    }
    try {
      await store.txn(ops);
    } catch (e) {
      if ((e as Error).name === 'CasError') throw new SystemError('update out of sequence');
      throw e;
    }
    // As in Docker, a swarm update rotates the data-path encryption keys.
    await requestKeyRotation(store, 'swarm update').catch((e: Error) =>
      this.log.warn({ err: e.message }, 'key rotation after swarm update failed'),
    );
  }

  unlockKey(): { UnlockKey: string } {
    this.requireManager();
    // Autolock is not supported: the key material lives in etcd, encrypted by TLS only.
    return { UnlockKey: '' };
  }

  /** GET /info's Swarm section. */
  async info(): Promise<Record<string, unknown>> {
    const s = this.local;
    if (!s)
      return {
        NodeID: '',
        NodeAddr: '',
        LocalNodeState: 'inactive',
        ControlAvailable: false,
        Error: '',
        RemoteManagers: null,
      };
    const base = {
      NodeID: s.nodeId,
      NodeAddr: s.addr,
      LocalNodeState: this.store ? 'active' : 'pending',
      ControlAvailable: s.role === 'manager',
      Error: '',
      RemoteManagers: s.managers,
    };
    if (s.role !== 'manager' || !this.store) {
      if (this.store) await this.refreshManagers().catch(() => undefined);
      return { ...base, RemoteManagers: s.managers };
    }
    try {
      const [nodes, kv, ca] = await Promise.all([
        this.store.list('nodes/'),
        this.store.get('swarm/cluster'),
        this.store.get('secret/ca'),
      ]);
      const recs = nodes.map((n) => JSON.parse(n.value) as NodeRecord);
      const managers = recs.filter((n) => n.Spec.Role === 'manager');
      s.managers = managers.map((n) => ({ NodeID: n.ID, Addr: `${n.Addr}:${n.Port}` }));
      return {
        ...base,
        RemoteManagers: s.managers,
        Nodes: recs.length,
        Managers: managers.length,
        Cluster:
          kv && ca
            ? this.clusterObject(
                JSON.parse(kv.value) as ClusterRecord,
                kv.revision,
                (JSON.parse(ca.value) as KeyPair).cert,
              )
            : null,
      };
    } catch (e) {
      return { ...base, Error: (e as Error).message };
    }
  }

  /** The /_ping "Swarm" header. */
  pingState(): string {
    if (!this.local) return 'inactive';
    if (!this.store) return 'pending';
    return `active/${this.local.role}`;
  }

  // ---- nodes -------------------------------------------------------------

  private description(): NodeRecord['Description'] {
    return {
      Hostname: hostname(),
      Platform: { Architecture: 'x86_64', OS: 'linux' },
      Resources: { NanoCPUs: cpus().length * 1e9, MemoryBytes: totalmem() },
      Engine: { EngineVersion: this.deps.engineVersion, Plugins: PLUGINS },
    };
  }

  /**
   * The members' view for node ls (Leader/Reachable/Unreachable): one
   * fetched less than MEMBER_VIEW_FRESH_MS ago is reused, and one less than
   * MEMBER_VIEW_STALE_MS old answers at once while a new one is fetched (a
   * status round trip to every member was most of node ls's time). A
   * manager killed shows Unreachable one refresh later.
   */
  private memberStatusCached(): Promise<MemberView> {
    const now = Date.now();
    const cur = this.memberView;
    if (cur && now - cur.at < MEMBER_VIEW_FRESH_MS) return Promise.resolve(cur.value);
    if (!this.memberFetch) {
      const fetch = this.memberStatus()
        .then((value) => {
          if (this.memberFetch === fetch) this.memberView = { at: Date.now(), value };
          return value;
        })
        .finally(() => {
          if (this.memberFetch === fetch) this.memberFetch = undefined;
        });
      this.memberFetch = fetch;
    }
    if (cur && now - cur.at < MEMBER_VIEW_STALE_MS) {
      this.memberFetch.catch(() => undefined);
      return Promise.resolve(cur.value);
    }
    return this.memberFetch;
  }

  private memberView?: { at: number; value: MemberView };
  private memberFetch?: Promise<MemberView>;

  /** Each etcd member's view: which member leads, which answer. */
  private async memberStatus(): Promise<MemberView> {
    const store = this.store!;
    const list = await store.raw.cluster.memberList({});
    const results = await Promise.all(
      list.members.map(async (m) => {
        const url = m.clientURLs[0];
        if (!url) return { m, ok: false, leader: undefined as string | undefined };
        let client = this.statusClients.get(url);
        if (!client) {
          const c = this.certs();
          const {
            etcd3: { Etcd3: Client },
            cockatiel: { noop },
          } = etcdLoaded();
          client = new Client({
            hosts: url,
            credentials: {
              rootCertificate: Buffer.from(c.ca),
              certChain: Buffer.from(c.cert),
              privateKey: Buffer.from(c.key),
            },
            defaultCallOptions: () => ({ deadline: Date.now() + 700 }),
            faultHandling: { global: noop, host: () => noop },
          });
          this.statusClients.set(url, client);
        }
        try {
          const st = await client.maintenance.status();
          return { m, ok: true, leader: st.leader };
        } catch {
          return { m, ok: false, leader: undefined };
        }
      }),
    );
    const byName = new Map<string, { reachable: boolean }>();
    let leaderId: string | undefined;
    for (const r of results) {
      byName.set(r.m.name, { reachable: r.ok });
      if (r.ok && r.leader && r.leader !== '0') leaderId = r.leader;
    }
    const leader = list.members.find((m) => m.ID === leaderId);
    return { byName, ...(leader ? { leaderName: leader.name } : {}) };
  }

  /** tlsInfo of the CA (parsed once per CA certificate). */
  private trustOf(caPem: string): ReturnType<typeof tlsInfo> {
    if (this.trust?.pem !== caPem) this.trust = { pem: caPem, info: tlsInfo(caPem) };
    return this.trust.info;
  }

  private trust?: { pem: string; info: ReturnType<typeof tlsInfo> };

  private async allNodes(): Promise<Array<Record<string, unknown>>> {
    const store = this.requireManager();
    const [nodes, alive, st, ca] = await Promise.all([
      store.list('nodes/'),
      store.list('alive/'),
      this.memberStatusCached().catch((): MemberView => ({ byName: new Map<string, { reachable: boolean }>() })),
      store.get('secret/ca'),
    ]);
    const up = new Set(alive.map((kv) => kv.key.slice('alive/'.length)));
    const trust = ca ? this.trustOf((JSON.parse(ca.value) as KeyPair).cert) : undefined;
    return nodes.map((kv) => {
      const n = JSON.parse(kv.value) as NodeRecord;
      const ready = up.has(n.ID);
      const out: Record<string, unknown> = {
        ID: n.ID,
        Version: { Index: kv.revision },
        CreatedAt: n.CreatedAt,
        UpdatedAt: n.UpdatedAt,
        Spec: n.Spec,
        Description: { ...n.Description, ...(trust ? { TLSInfo: trust } : {}) },
        Status: { State: ready ? 'ready' : 'down', ...(ready ? {} : { Message: 'heartbeat failure' }), Addr: n.Addr },
      };
      if (n.Spec.Role === 'manager') {
        const m = st.byName.get(n.ID);
        out.ManagerStatus = {
          ...(st.leaderName === n.ID ? { Leader: true } : {}),
          Reachability: m?.reachable ? 'reachable' : 'unreachable',
          Addr: `${n.Addr}:${n.Port}`,
        };
      }
      return out;
    });
  }

  async listNodes(filters: Record<string, string[]>): Promise<Array<Record<string, unknown>>> {
    for (const k of Object.keys(filters)) {
      if (!['id', 'label', 'membership', 'name', 'node.label', 'role'].includes(k))
        throw new InvalidParameter(`invalid filter '${k}'`);
    }
    for (const r of filters.role ?? [])
      if (r !== 'manager' && r !== 'worker')
        throw new InvalidParameter(`Invalid role '${r}', must be worker or manager`);
    const all = await this.allNodes();
    return all
      .filter((n) => {
        const spec = n.Spec as NodeRecord['Spec'];
        const desc = n.Description as NodeRecord['Description'];
        const any = (k: string, pred: (v: string) => boolean) => !filters[k]?.length || filters[k]!.some(pred);
        return (
          any('role', (v) => spec.Role === v) &&
          any('id', (v) => (n.ID as string).startsWith(v)) &&
          any('name', (v) => desc.Hostname.includes(v) || (spec.Name ?? '').includes(v)) &&
          any('membership', (v) => v === 'accepted') &&
          any('node.label', (v) => labelMatch(spec.Labels, v)) &&
          any('label', (v) => labelMatch(spec.Labels, v))
        );
      })
      .sort(
        (a, b) =>
          String((a.Description as NodeRecord['Description']).Hostname).localeCompare(
            String((b.Description as NodeRecord['Description']).Hostname),
          ) || String(a.ID).localeCompare(String(b.ID)),
      );
  }

  async inspectNode(ref: string): Promise<Record<string, unknown>> {
    const all = await this.allNodes();
    return findNode(all, ref);
  }

  updateNode(ref: string, version: number | undefined, spec: Partial<NodeRecord['Spec']>): Promise<void> {
    return this.mutex.run(async () => {
      const store = this.requireManager();
      const all = await this.allNodes();
      const n = findNode(all, ref);
      const id = n.ID as string;
      const kv = await store.get(`nodes/${id}`);
      if (!kv) throw new NotFound(`node ${ref} not found`);
      if (version === undefined || !Number.isInteger(version)) throw new InvalidParameter('invalid node version');
      if (version !== kv.revision) throw new SystemError('rpc error: code = Unknown desc = update out of sequence');
      const rec = JSON.parse(kv.value) as NodeRecord;
      const role = spec.Role ?? rec.Spec.Role;
      if (role !== 'manager' && role !== 'worker') throw new InvalidParameter(`invalid role ${String(role)}`);
      const avail = spec.Availability ?? rec.Spec.Availability;
      if (!['active', 'pause', 'drain'].includes(avail))
        throw new InvalidParameter(`invalid availability ${String(avail)}`);
      if (role !== rec.Spec.Role) {
        if (role === 'worker') await this.demote(rec, all);
        else await this.promote(rec);
        rec.Spec.Role = role;
      }
      // While a promoted member starts, writes may wait for quorum: retried by the store.
      rec.Spec.Availability = avail;
      rec.Spec.Labels = spec.Labels ?? {};
      if (spec.Name !== undefined) rec.Spec.Name = spec.Name;
      rec.UpdatedAt = new Date().toISOString();
      await store.put(`nodes/${id}`, JSON.stringify(rec));
    });
  }

  /**
   * Promotion: root role and the record (role manager, with the member list
   * the node's etcd must start with) first, then `member add`. The promoted
   * node starts its member when it sees the record, and keeps restarting it
   * until the add has landed (see EtcdMember's supervision).
   */
  private async promote(rec: NodeRecord): Promise<void> {
    const store = this.store!;
    const etcd = store.raw;
    const list = await etcd.cluster.memberList({});
    rec.JoinMember = [
      ...list.members.filter((m) => m.name).map((m) => `${m.name}=${m.peerURLs[0]}`),
      `${rec.ID}=${peerUrl(rec.Addr)}`,
    ].join(',');
    await etcd.auth.userGrantRole({ user: rec.ID, role: 'root' });
    rec.Spec.Role = 'manager';
    rec.UpdatedAt = new Date().toISOString();
    await store.put(`nodes/${rec.ID}`, JSON.stringify(rec));
    await this.addMember(rec.ID, rec.Addr);
    await etcd.auth.userRevokeRole({ name: rec.ID, role: `worker-${rec.ID}` }).catch(() => undefined);
    await etcd.auth.roleDelete({ role: `worker-${rec.ID}` }).catch(() => undefined);
  }

  private async demote(rec: NodeRecord, all: Array<Record<string, unknown>>): Promise<void> {
    const managers = all.filter((n) => (n.Spec as NodeRecord['Spec']).Role === 'manager');
    if (managers.length <= 1)
      throw new CoveError(
        'rpc error: code = FailedPrecondition desc = attempting to demote the last manager of the swarm',
        400,
      );
    const etcd = this.store!.raw;
    const list = await etcd.cluster.memberList({});
    const m = list.members.find((x) => x.name === rec.ID || x.peerURLs.includes(peerUrl(rec.Addr)));
    if (m) await retryUnhealthy(`remove the etcd member of ${rec.ID}`, () => etcd.cluster.memberRemove({ ID: m.ID }));
    delete rec.JoinMember;
    await this.grantWorkerRole(rec.ID);
    await etcd.auth.userRevokeRole({ name: rec.ID, role: 'root' }).catch(() => undefined);
  }

  removeNode(ref: string, force: boolean): Promise<void> {
    return this.mutex.run(async () => {
      const store = this.requireManager();
      const all = await this.allNodes();
      const n = findNode(all, ref);
      const id = n.ID as string;
      if (id === this.local!.nodeId)
        throw new CoveError(
          'rpc error: code = FailedPrecondition desc = node ' +
            id +
            ' is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal',
          400,
        );
      const spec = n.Spec as NodeRecord['Spec'];
      if (spec.Role === 'manager') {
        throw new CoveError(
          `rpc error: code = FailedPrecondition desc = node ${id} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal`,
          400,
        );
      }
      if ((n.Status as { State: string }).State !== 'down' && !force) {
        throw new CoveError(
          `rpc error: code = FailedPrecondition desc = node ${id} is not down and can't be removed`,
          400,
        );
      }
      await store.delete(`nodes/${id}`);
      await store.delete(`alive/${id}`).catch(() => undefined);
      await this.deleteEtcdUser(id);
      // Its endpoints leave every host's peers and names (the watches see the deletes), and the
      // addresses it claimed (network and tunnel) are free again: nothing it left under its own keys
      // stays in the cluster.
      for (const prefix of [`endpoints/${id}/`, `ipam/node/${id}/`, `tunnels/wireguard/${id}/`])
        for (const kv of await store.list(prefix).catch(() => []))
          await store
            .delete(kv.key)
            .catch((e: Error) =>
              this.log.warn({ err: e.message, key: kv.key }, 'removing a removed node record failed'),
            );
      // Its data-path key is revoked (peers drop it as its node record goes) and the others' keys rotate.
      await requestKeyRotation(store, `node ${id} removed`).catch((e: Error) =>
        this.log.warn({ err: e.message }, 'key rotation after node removal failed'),
      );
    });
  }
}

/** etcd refuses reconfiguration for a few seconds after a change ("unhealthy cluster"); retry for a while. */
async function retryUnhealthy<T>(what: string, fn: () => Promise<T>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      const msg = (e as Error).message;
      if (
        Date.now() > deadline ||
        !/unhealthy cluster|not healthy|leader changed|no leader|deadline|UNAVAILABLE|circuit breaker|request timed out|too many requests|revision of auth store is old/i.test(
          msg,
        )
      ) {
        throw new Unavailable(`could not ${what}: ${msg}`);
      }
      await sleep(250);
    }
  }
}

function findNode(all: Array<Record<string, unknown>>, ref: string): Record<string, unknown> {
  const byId = all.find((n) => n.ID === ref);
  if (byId) return byId;
  const byName = all.filter(
    (n) => (n.Description as NodeRecord['Description']).Hostname === ref || (n.Spec as NodeRecord['Spec']).Name === ref,
  );
  if (byName.length === 1) return byName[0]!;
  const byPrefix = all.filter((n) => (n.ID as string).startsWith(ref));
  if (byPrefix.length === 1) return byPrefix[0]!;
  if (byName.length > 1 || byPrefix.length > 1)
    throw new InvalidParameter(`node ${ref} is ambiguous (${byName.length || byPrefix.length} matches found)`);
  throw new NotFound(`node ${ref} not found`);
}

function labelMatch(labels: Record<string, string>, f: string): boolean {
  const [k, v] = f.split('=', 2) as [string, string | undefined];
  return v === undefined ? k in labels : labels[k] === v;
}

function availabilityOf(a: string | undefined): 'active' | 'pause' | 'drain' {
  if (!a) return 'active';
  if (a === 'active' || a === 'pause' || a === 'drain') return a;
  throw new InvalidParameter(`invalid availability ${a}`);
}

/** Only the spec fields we keep; docker's CLI sends the whole spec back on update. */
function cleanSpec(spec: SwarmSpec): SwarmSpec {
  const out: SwarmSpec = {};
  for (const k of [
    'Name',
    'Labels',
    'Orchestration',
    'Raft',
    'Dispatcher',
    'CAConfig',
    'TaskDefaults',
    'EncryptionConfig',
  ]) {
    if (spec[k] !== undefined && spec[k] !== null) out[k] = spec[k];
  }
  if ((out.EncryptionConfig as { AutoLockManagers?: boolean } | undefined)?.AutoLockManagers) {
    throw new InvalidParameter('autolock is not supported by this Cove daemon');
  }
  return out;
}

/** This host's IPv4 addresses, by interface. */
function hostAddrs(): Array<{ ifname: string; addr: string }> {
  const out: Array<{ ifname: string; addr: string }> = [];
  for (const [ifname, list] of Object.entries(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) out.push({ ifname, addr: a.address });
  }
  return out;
}

/** --advertise-addr: an IP of this host or an interface name, optionally with a port. */
export function resolveAdvertise(value: string | undefined, listen?: string): string {
  const addrs = hostAddrs();
  let v = (value ?? '').trim();
  if (!v && listen) {
    const [h] = splitHostPort(listen);
    if (h !== '0.0.0.0') v = h;
  }
  if (!v) {
    // Docker's choice: the one address not on a bridge Cove made.
    const cand = addrs.filter((a) => !/^(cove|docker|br-|veth)/.test(a.ifname));
    if (cand.length === 1) return cand[0]!.addr;
    if (cand.length === 0)
      throw new InvalidParameter("could not find the system's IP address - specify one with --advertise-addr");
    throw new InvalidParameter(
      `could not choose an IP address to advertise since this system has multiple addresses on different interfaces (${cand.map((a) => `${a.addr} on ${a.ifname}`).join(' and ')})`,
    );
  }
  const [host] = splitHostPort(v);
  const byIf = addrs.filter((a) => a.ifname === host);
  if (byIf.length === 1) return byIf[0]!.addr;
  if (byIf.length > 1) throw new InvalidParameter(`interface ${host} has more than one IPv4 address`);
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(host))
    throw new InvalidParameter(
      `advertise address must be a non-zero IP address or network interface (with optional port number)`,
    );
  if (host === '0.0.0.0')
    throw new InvalidParameter(
      'advertise address must be a non-zero IP address or network interface (with optional port number)',
    );
  if (!addrs.some((a) => a.addr === host))
    throw new InvalidParameter(`advertise address ${host} is not an address of this host`);
  return host;
}

/** The local address this host would use to reach host:port (a UDP "connect" sends nothing). */
async function localAddrTowards(host: string, port: number): Promise<string> {
  const dgram = await import('node:dgram');
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.connect(port, host, () => {
      const a = s.address().address;
      s.close();
      resolve(a);
    });
    s.on('error', (e) => {
      s.close();
      reject(new Unavailable(`could not find a route to the manager at ${host}:${port}: ${e.message}`));
    });
  });
}

function prefixEnd(p: string): Buffer {
  return etcdLoaded().etcd3.Range.prefix(p).end;
}

function rangeOf(p: string): Range {
  const { Range: R } = etcdLoaded().etcd3;
  return p.endsWith('/') ? R.prefix(p) : new R(p, Buffer.concat([Buffer.from(p), Buffer.from([0])]));
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => (clearTimeout(t), resolve(v)),
      (e) => (clearTimeout(t), reject(e)),
    );
  });
}
