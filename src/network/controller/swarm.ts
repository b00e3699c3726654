/**
 * Swarm scope (ClusterAware): swarm networks live in the cluster store; store watches keep overlay peers and
 * DNS names in step with every node; docker_gwbridge and the default ingress are made here.
 */
import { CasError } from '../../store/store.js';
import { shortId } from '../../common/ids.js';
import { Conflict, Forbidden, InvalidParameter, NotImplemented, Unavailable } from '../../common/errors.js';
import type { Membership } from '../../cluster/membership.js';
import {
  ClusterKeys,
  FIRST_VNI,
  GWBRIDGE,
  GWBRIDGE_OPTIONS,
  NOT_IN_SWARM,
  WORKER_CREATE,
  WORKER_MODIFY,
  newSwarmId,
  networkOfEndpointKey,
  subnetKey,
  toPeer,
  type SwarmEndpoint,
} from '../swarm-scope.js';
import { OPT_VNI } from '../drivers/overlay/plan.js';
import type { DockerNetwork, DockerNetworkCreate } from '../types.js';
import type { NetworkDriver } from '../driver.js';
import type { EndpointRecord, NetworkRecord } from '../records.js';
import { SwarmAddressClaims } from '../ipam/claims.js';
import { planIpam } from '../ipam/plan.js';
import { nowRfc3339Nano } from '../network.js';
import { NETWORK_LOCK, type ControllerCore, type ClusterState } from './core.js';

/** Cluster store key: the default ingress was made (its ID), so it is made once in a swarm's life. */
const DEFAULT_INGRESS_KEY = 'netconfig/default-ingress';

export class SwarmOps {
  constructor(private readonly core: ControllerCore) {}

  /**
   * The node joined (or started in) a swarm: swarm networks become visible,
   * docker_gwbridge exists here, a manager makes `ingress` if the cluster has
   * none, and store watches keep overlay peers and DNS in step with every
   * node. `opts` carries swarm init's --default-addr-pool /
   * --default-addr-pool-mask-length (recorded once, by the first manager).
   */
  async attachCluster(m: Membership, opts: { defaultAddrPool?: string[]; subnetSize?: number } = {}): Promise<void> {
    await this.core.init();
    if (this.core.cluster) await this.stopCluster();
    const keys = new ClusterKeys(m.store);
    const c: ClusterState = {
      m,
      keys,
      ipam: new SwarmAddressClaims(m.store, m.self.id, (nid) => keys.addressesInView(nid)),
      stops: [],
      syncing: new Map(),
      again: new Set(),
    };
    this.core.cluster = c;
    for (const d of this.core.registry.names())
      this.core.registry.get(d).setCluster?.({
        nodeId: m.self.id,
        dataPathAddr: m.self.dataPathAddr,
        store: m.store,
        isManager: () => m.isManager(),
      });
    if (m.isManager() && opts.defaultAddrPool?.length) {
      const pools = opts.defaultAddrPool.map((base) => ({ base, size: opts.subnetSize ?? 24 }));
      await m.store.put('ipam/config', JSON.stringify({ pools }), 0).catch(() => undefined); // first init wins
    }
    c.stops.push(c.ipam.follow());
    c.stops.push(
      m.store.watch('endpoints/', (ev) => {
        keys.view.apply(
          ev.kv.key,
          ev.type === 'put' ? (JSON.parse(ev.kv.value) as SwarmEndpoint) : undefined,
          ev.kv.revision,
        );
        const nid = networkOfEndpointKey(ev.kv.key);
        if (nid) this.scheduleSwarmSync(nid);
      }),
    );
    // After the watch started: with both, peers and names need no cluster round trip per change.
    await keys.loadView();
    c.stops.push(
      m.store.watch('networks/', (ev) => {
        const rec = JSON.parse(ev.kv.value) as NetworkRecord;
        this.core.networks.apply(rec.id, ev.type === 'put' ? rec : undefined, ev.kv.revision);
        if (ev.type === 'delete') void this.forgetSwarmNetwork(rec);
      }),
    );
    this.core.networks.attach(keys.networks, await keys.networks.list());
    if (!(await this.core.networks.list()).some((n) => n.value.name === GWBRIDGE)) {
      await this.core.networkOps
        .createNetwork({ Name: GWBRIDGE, Driver: 'bridge', Options: { ...GWBRIDGE_OPTIONS } })
        .catch((e: Error) => {
          if (!(e instanceof Conflict)) throw e;
        });
    }
    if (m.isManager()) await this.ensureDefaultIngress(c);
    await this.reconcileSwarm(c);
  }

  /**
   * The default `ingress` (10.0.0.0/24, as Docker's) is made once in the
   * life of a swarm, like swarmkit makes it only for a fresh cluster: a
   * marker in the cluster store says it was made, so after `network rm
   * ingress` no manager restart or join brings it back (the user may make
   * their own with `network create --ingress`, or run without one).
   */
  async ensureDefaultIngress(c: ClusterState): Promise<void> {
    const store = c.m.store;
    if (await store.get(DEFAULT_INGRESS_KEY)) return;
    const existing = (await c.keys.networks.list()).find((n) => n.value.ingress);
    if (existing) {
      // A swarm made before the marker existed: its ingress counts as the default one.
      await store.put(DEFAULT_INGRESS_KEY, existing.value.id, 0).catch(() => undefined);
      return;
    }
    try {
      await store.put(DEFAULT_INGRESS_KEY, '', 0);
    } catch (e) {
      if (e instanceof CasError) return; // another manager is making it
      throw e;
    }
    try {
      const { Id } = await this.createSwarmNetwork(
        {
          Name: 'ingress',
          Driver: 'overlay',
          Ingress: true,
          IPAM: { Driver: 'default', Config: [{ Subnet: '10.0.0.0/24', Gateway: '10.0.0.1' }] },
        },
        'ingress',
        await this.core.registry.lookup('overlay', { config: this.core.config, log: this.core.log }),
      );
      await store.put(DEFAULT_INGRESS_KEY, Id);
    } catch (e) {
      if (e instanceof Conflict) return; // an ingress exists after all
      await store.delete(DEFAULT_INGRESS_KEY).catch(() => undefined); // the next attach tries again
      throw e;
    }
  }

  /**
   * The node left the swarm: its containers leave the swarm networks (as in
   * Docker; their endpoints go from the cluster store, so no node keeps them
   * as peers), then the watches stop and swarm networks are no longer seen.
   */
  async detachCluster(): Promise<void> {
    const c = this.core.cluster;
    if (!c) return;
    for (const { value: sb } of await this.core.sandboxes.list()) {
      for (const { net } of await this.core.sandboxNetworks(sb)) {
        if (net.scope !== 'swarm') continue;
        await this.core.sandboxOps
          .disconnect(sb.containerId, net.id, true)
          .catch((e: Error) =>
            this.core.log.warn(
              { container: shortId(sb.containerId), network: net.name, err: e.message },
              'leaving swarm network failed',
            ),
          );
      }
    }
    await this.stopCluster();
  }

  /** Stops following the cluster (daemon shutdown: containers keep their swarm networks). */
  async stopCluster(): Promise<void> {
    const c = this.core.cluster;
    if (!c) return;
    for (const stop of c.stops) stop();
    await Promise.all([...c.syncing.values()]).catch(() => undefined);
    this.core.cluster = undefined;
    this.core.networks.detach();
    for (const d of this.core.registry.names()) this.core.registry.get(d).setCluster?.(undefined);
  }

  /**
   * After a restart (or a rejoin): this node's cluster endpoints that have no
   * local endpoint any more go (with their addresses); swarm networks in use
   * here are adopted or rebuilt by their driver, the others cleaned up.
   */
  async reconcileSwarm(c: ClusterState): Promise<void> {
    const local = new Map((await this.core.endpoints.list()).map((e) => [e.id, e.value]));
    for (const e of await c.keys.allEndpoints()) {
      if (e.nodeId !== c.m.self.id || local.has(e.id)) continue;
      await c.keys.deleteEndpoint(e.nodeId, e.networkId, e.id).catch(() => undefined);
    }
    // Addresses of those, and any claim whose endpoint never got here (a crash right after the claim).
    const freed = await c.ipam.releaseOrphans((owner) => local.has(owner)).catch(() => 0);
    if (freed > 0) this.core.log.info({ addresses: freed }, 'released swarm addresses of endpoints gone');
    for (const { value: n } of await c.keys.networks.list()) {
      const d = this.core.driverOf(n);
      const mine = [...local.values()].filter((e) => e.networkId === n.id);
      try {
        await d?.restoreNetwork?.(
          this.core.driverNetwork(n),
          mine.map((e) => this.core.driverEndpoint(e)),
        );
        if (mine.length > 0) {
          for (const e of mine) if (e.state === 'ready') await this.publishSwarmEndpoint(e, n, c);
          await this.syncSwarmNetwork(n.id);
        }
      } catch (e) {
        this.core.log.error({ network: n.name, err: (e as Error).message }, 'restoring swarm network failed');
      }
    }
    for (const { value: sb } of await this.core.sandboxes.list())
      await this.core.nameOps.refreshSandboxResolver(sb).catch(() => undefined);
  }

  needsGatewayBridge(nets: NetworkRecord[]): boolean {
    if (!this.core.cluster) return false;
    return (
      nets.some((n) => n.scope === 'swarm' && !n.internal) &&
      !nets.some((n) => n.scope !== 'swarm' && !n.internal && n.driver !== 'null')
    );
  }

  async publishSwarmEndpoint(ep: EndpointRecord, net: NetworkRecord, c: ClusterState): Promise<void> {
    await c.keys.putEndpoint(this.swarmEndpointOf(ep, net, c));
  }

  /** The endpoint as every node sees it (endpoints/<node>/<nid>/<eid>). */
  swarmEndpointOf(ep: EndpointRecord, net: NetworkRecord, c: ClusterState): SwarmEndpoint {
    return {
      id: ep.id,
      networkId: net.id,
      name: ep.name,
      aliases: ep.aliases,
      containerId: ep.containerId,
      nodeId: c.m.self.id,
      nodeName: c.m.self.hostname,
      underlay: c.m.self.dataPathAddr,
      mac: ep.mac ?? '',
      ...(ep.ipv4 ? { ipv4: ep.ipv4 } : {}),
      ...(ep.ipv6 ? { ipv6: ep.ipv6 } : {}),
    };
  }

  async swarmEndpointsOf(networkId: string): Promise<SwarmEndpoint[]> {
    if (!this.core.cluster) return [];
    return this.core.cluster.keys.endpointsOf(networkId);
  }

  /** The same from the watch-fed view (DNS names: no cluster round trip per change). */
  async watchedSwarmEndpointsOf(networkId: string): Promise<SwarmEndpoint[]> {
    if (!this.core.cluster) return [];
    return this.core.cluster.keys.watchedEndpointsOf(networkId);
  }

  /** A watch said endpoints of the network changed: one sync at a time per network, the last change always seen. */
  scheduleSwarmSync(networkId: string): void {
    const c = this.core.cluster;
    if (!c) return;
    if (c.syncing.has(networkId)) {
      c.again.add(networkId);
      return;
    }
    const p = (async () => {
      do {
        c.again.delete(networkId);
        // Only hosts with an endpoint on it care (the others sync when a container of theirs joins).
        if (!(await this.core.endpoints.list()).some((e) => e.value.networkId === networkId)) continue;
        await this.syncSwarmNetwork(networkId).catch((e: Error) =>
          this.core.log.warn({ network: networkId, err: e.message }, 'syncing swarm network failed'),
        );
      } while (c.again.has(networkId) && this.core.cluster === c);
      c.syncing.delete(networkId);
    })();
    c.syncing.set(networkId, p);
  }

  /** Overlay peers and DNS names of a swarm network from the watched cluster store (the reconcile step of the watch). */
  async syncSwarmNetwork(networkId: string): Promise<void> {
    const c = this.core.cluster;
    if (!c) return;
    const net = (await this.core.networks.get(networkId))?.value;
    if (!net || net.scope !== 'swarm') return;
    const eps = await c.keys.watchedEndpointsOf(networkId);
    const d = this.core.driverOf(net);
    await d?.syncPeers?.(this.core.driverNetwork(net), eps.filter((e) => e.nodeId !== c.m.self.id).map(toPeer));
    await this.core.nameOps.refreshNames([networkId]);
  }

  /** A swarm network was removed (on some manager): whatever is left of it here goes. */
  async forgetSwarmNetwork(rec: NetworkRecord): Promise<void> {
    // Endpoints still here (the ingress sandbox of this node; tasks the agent has not stopped yet) leave first.
    for (const { value: listed } of await this.core.sandboxes.list()) {
      await this.core.mutex
        .run(`sb:${listed.containerId}`, async () => {
          const sb = await this.core.getSandbox(listed.containerId);
          if (!sb) return;
          const gone: string[] = [];
          for (const epId of sb.endpoints) {
            const ep = (await this.core.endpoints.get(epId))?.value;
            if (ep?.networkId !== rec.id) continue;
            await this.core.endpointOps.leaveEndpoint(sb, ep, rec);
            gone.push(epId);
          }
          if (gone.length)
            await this.core.sandboxes.update(sb.containerId, (cur) =>
              cur ? { ...cur, endpoints: cur.endpoints.filter((id) => !gone.includes(id)) } : cur,
            );
        })
        .catch((e: Error) =>
          this.core.log.warn(
            { network: rec.name, container: shortId(listed.containerId), err: e.message },
            'leaving a removed swarm network failed',
          ),
        );
    }
    try {
      await this.core.driverOf(rec)?.deleteNetwork(this.core.driverNetwork(rec));
    } catch (e) {
      this.core.log.warn(
        { network: rec.name, err: (e as Error).message },
        'removing swarm network from this host failed',
      );
    }
    this.core.resolver.deleteNetwork(rec.id);
  }

  async createSwarmNetwork(
    req: DockerNetworkCreate,
    name: string,
    driver: NetworkDriver,
  ): Promise<{ Id: string; Warning: string }> {
    const c = this.core.cluster;
    if (!c) throw new Unavailable(NOT_IN_SWARM);
    if (!c.m.isManager()) throw new Forbidden(WORKER_CREATE);
    // swarmkit's validateNetworkSpec, in its order.
    if (req.Ingress && driver.name !== 'overlay')
      throw new NotImplemented(
        'rpc error: code = Unimplemented desc = only overlay driver is currently supported for ingress network',
      );
    if (req.Ingress && req.Attachable)
      throw new InvalidParameter('rpc error: code = InvalidArgument desc = ingress network cannot be attachable');
    for (const [k, v] of Object.entries(req.Options ?? {}))
      if (typeof v !== 'string') throw new InvalidParameter(`invalid option ${k}: value must be a string`);
    const enableIPv6 = req.EnableIPv6 === true;
    return this.core.mutex.run(NETWORK_LOCK, async () => {
      for (let attempt = 0; ; attempt++) {
        const all = (await this.core.networks.list()).map((n) => n.value);
        if (all.some((n) => n.name === name)) throw new Conflict(`network with name ${name} already exists`);
        const swarmNets = all.filter((n) => n.scope === 'swarm');
        if (req.Ingress) {
          const ing = swarmNets.find((n) => n.ingress);
          if (ing)
            throw new Conflict(`rpc error: code = AlreadyExists desc = ingress network (${ing.id}) is already present`);
        }
        const plan = planIpam(
          { driver: req.IPAM?.Driver ?? 'default', configs: req.IPAM?.Config ?? [], enableIPv4: true, enableIPv6 },
          swarmNets.flatMap((n) => n.subnets.map((s) => s.subnet)),
          await c.keys.pools(),
        );
        const used = new Set(swarmNets.map((n) => Number((n.options[OPT_VNI] ?? '').split(',')[0])));
        let vni = FIRST_VNI;
        while (used.has(vni)) vni++;
        const rec: NetworkRecord = {
          id: newSwarmId(),
          name,
          created: nowRfc3339Nano(),
          driver: driver.name,
          scope: 'swarm',
          internal: req.Internal === true,
          attachable: req.Attachable === true,
          ingress: req.Ingress === true,
          configOnly: false,
          configFrom: '',
          enableIPv4: true,
          enableIPv6,
          ipamDriver: req.IPAM?.Driver || 'default',
          ipamOptions: null,
          ipamConfig: plan.display.map((d, i) => ({
            ...d,
            ...(plan.subnets[i]?.gateway && !d.Gateway ? { Gateway: plan.subnets[i]!.gateway } : {}),
          })),
          subnets: plan.subnets,
          options: { ...(req.Options ?? {}), [OPT_VNI]: String(vni) },
          labels: { ...(req.Labels ?? {}) },
          predefined: false,
          defaultBridge: false,
        };
        await driver.createNetwork(this.core.driverNetwork(rec)); // checks the options; nothing in the kernel until a container joins
        try {
          await this.core.networkOps.persistNewNetwork(rec);
        } catch (e) {
          // Another manager took the name, the VNI or the subnet in the meantime: look again.
          if (e instanceof CasError && attempt < 20) continue;
          throw e;
        }
        this.core.events.publish('network', 'create', rec.id, { name: rec.name, type: rec.driver });
        this.core.log.info(
          { network: rec.name, id: rec.id, vni, subnets: rec.subnets.map((s) => s.subnet) },
          'swarm network created',
        );
        return { Id: rec.id, Warning: '' };
      }
    });
  }

  async persistSwarmNetwork(rec: NetworkRecord): Promise<void> {
    const c = this.core.cluster;
    if (!c) throw new Unavailable(NOT_IN_SWARM);
    // Its subnets are in the record; addresses are claimed per address (ipam/claims.ts), nothing to set up.
    const rev = await c.m.store.txn([
      { key: `netnames/${rec.name}`, expectRevision: 0, value: rec.id },
      { key: `networks/${rec.id}`, expectRevision: 0, value: JSON.stringify(rec) },
      { key: `ipam/vni/${rec.options[OPT_VNI]}`, expectRevision: 0, value: rec.id },
      ...rec.subnets.map((s) => ({ key: subnetKey(s.subnet), expectRevision: 0, value: rec.id })),
    ]);
    this.core.networks.apply(rec.id, rec, rev);
  }

  async dropSwarmNetwork(rec: NetworkRecord): Promise<void> {
    const c = this.core.cluster;
    if (!c) return;
    await c.m.store.txn([
      { key: `netnames/${rec.name}`, value: null },
      { key: `networks/${rec.id}`, value: null },
      { key: `ipam/vni/${rec.options[OPT_VNI]}`, value: null },
      ...rec.subnets.map((s) => ({ key: subnetKey(s.subnet), value: null })),
    ]);
    this.core.networks.apply(rec.id, undefined, Number.MAX_SAFE_INTEGER);
    await c.ipam.removeNetwork(rec.id);
  }

  async removeSwarmNetwork(n: NetworkRecord): Promise<void> {
    const c = this.core.cluster;
    if (!c) throw new Unavailable(NOT_IN_SWARM);
    if (!c.m.isManager()) throw new Unavailable(WORKER_MODIFY);
    // Services that name the network, or need the routing mesh, keep it (swarmkit's answers, from src/services).
    await this.removalGuard?.({ id: n.id, name: n.name, ingress: n.ingress });
    // The ingress network's endpoints are the nodes' ingress sandboxes (no
    // container can join it, and the guard kept every service that needs
    // it): like swarmkit, the record goes and each node removes its own part.
    if (!n.ingress) await this.drainTaskEndpoints(n.id);
    await this.core.mutex.run(`net:${n.id}`, async () => {
      const eps = n.ingress ? [] : await c.keys.endpointsOf(n.id);
      if (eps.length > 0) {
        const list = eps.map((e) => `name:"${e.name}" id:"${shortId(e.id)}"`).join(', ');
        throw new Forbidden(
          `error while removing network: network ${n.name} id ${n.id} has active endpoints (${list})`,
        );
      }
      await this.dropSwarmNetwork(n);
    });
    await this.forgetSwarmNetwork(n); // outside net: (it takes sb: locks, which are taken before net: elsewhere)
    this.core.events.publish('network', 'destroy', n.id, { name: n.name, type: n.driver });
    this.core.log.info({ network: n.name, id: n.id }, 'swarm network removed');
  }

  /**
   * `service rm` returns before the nodes' agents have removed the tasks
   * (as Docker's does), and Docker's `network rm` right after it succeeds:
   * task endpoints do not hold a swarm network. So while every endpoint left
   * belongs to a swarm task (named <service>.<slot|node>.<task id>), wait for
   * the agents to take them away, a bounded time; a standalone container's
   * endpoint is refused at once below.
   */
  async drainTaskEndpoints(networkId: string, timeoutMs = 20_000): Promise<void> {
    const c = this.core.cluster;
    if (!c) return;
    const isTask = (e: SwarmEndpoint): boolean => /\.[a-z0-9]{25}$/.test(e.name);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const eps = await c.keys.endpointsOf(networkId);
      if (eps.length === 0 || !eps.every(isTask) || Date.now() > deadline) return;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Inspect of a swarm network: this host's MTU, and Peers (every node with an endpoint on it). */
  async addSwarmView(n: NetworkRecord, out: DockerNetwork): Promise<void> {
    const local = this.core.driverOf(n)?.localOptions?.(this.core.driverNetwork(n)) ?? {};
    out.Options = { ...out.Options, ...local };
    const eps = await this.swarmEndpointsOf(n.id).catch(() => [] as SwarmEndpoint[]);
    const peers = new Map<string, { Name: string; IP: string }>();
    for (const e of eps) peers.set(e.nodeId, { Name: e.nodeName, IP: e.underlay });
    if (peers.size > 0)
      out.Peers = [...peers.values()].sort((a, b) => a.IP.localeCompare(b.IP, 'en', { numeric: true }));
  }

  /** Refuses the removal of a swarm network still needed (src/services sets it: services and tasks live there). */
  private removalGuard: ((net: { id: string; name: string; ingress: boolean }) => Promise<void>) | undefined;

  setNetworkRemovalGuard(
    guard: ((net: { id: string; name: string; ingress: boolean }) => Promise<void>) | undefined,
  ): void {
    this.removalGuard = guard;
  }

  /** Swarm networks known to this node (tests, diagnostics). */
  get inSwarm(): boolean {
    return this.core.cluster !== undefined;
  }
}
