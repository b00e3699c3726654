/**
 * Services in swarm mode, wired to the daemon: a ClusterAware component that,
 * once the node is in a swarm, runs the agent (every node) and campaigns for
 * the orchestrator's leadership (managers), and serves the services API on
 * managers. Outside a swarm every call answers Docker's 503.
 */
import type { Logger } from '../common/log.js';
import { Unavailable } from '../common/errors.js';
import type { ClusterAware, Membership } from '../cluster/membership.js';
import type { EventBus } from '../common/events.js';
import type { NetworkService } from '../network/types.js';
import type { ContainerService, ImageService } from '../runtime/types.js';
import type { AuthConfig } from '../runtime/distribution/auth.js';
import type { Agent } from './agent.js';
import type { LeaderElector } from './leader.js';
import type { ServiceManager, ServiceNetworks } from './manager.js';
import type { Orchestrator } from './orchestrator.js';
import type { LogServer } from './logs.js';
import type { ServiceDiscovery, SandboxJoinSource, ServiceNamesSink } from './discovery.js';
import type { SchedNode } from './types.js';
import type { IngressMesh, MeshStatus, PortHolder } from './ingress.js';
import { join } from 'node:path';
import type { ReportRelay } from './reports.js';

/** The working parts, loaded when the node joins a swarm (./parts.ts). */
const parts = () => import('./parts.js');

export const NOT_A_MANAGER =
  'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.';
export const WORKER_NOT_MANAGER =
  "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.";

export interface ServicesDeps {
  containers: ContainerService;
  images: ImageService;
  /** The registry client (a task's image is pulled on the node that runs it). */
  distribution?: { ensure(ref: string, opts: { auth?: AuthConfig }): Promise<string> };
  networks: NetworkService;
  events: EventBus;
  log: Logger;
  /** The daemon's exec root (the ingress sandbox's files live under it). */
  execRoot?: string;
}

/** The network layer as the services layer needs it; VIPs come from hooks the network layer may offer. */
export function serviceNetworksOf(networks: NetworkService): ServiceNetworks {
  const hooks = networks as unknown as Partial<Pick<ServiceNetworks, 'allocateVip' | 'releaseVip' | 'ingress'>> & {
    ingressNetwork?: () => Promise<{ id: string; name: string } | undefined>;
  };
  const out: ServiceNetworks = {
    async lookup(ref) {
      const n = await networks.inspectNetwork(ref);
      return { id: n.Id, name: n.Name, driver: n.Driver, scope: n.Scope, ingress: Boolean(n.Ingress) };
    },
  };
  if (typeof hooks.allocateVip === 'function') out.allocateVip = hooks.allocateVip.bind(networks);
  if (typeof hooks.releaseVip === 'function') out.releaseVip = hooks.releaseVip.bind(networks);
  if (typeof hooks.ingressNetwork === 'function') out.ingress = hooks.ingressNetwork.bind(networks);
  return out;
}

export class SwarmServices implements ClusterAware {
  private membership: Membership | undefined;
  private manager: ServiceManager | undefined;
  private agent: Agent | undefined;
  private elector: LeaderElector | undefined;
  private relay: ReportRelay | undefined;
  private orchestrator: Orchestrator | undefined;
  private roleTimer: NodeJS.Timeout | undefined;
  private logServer: LogServer | undefined;
  private discovery: ServiceDiscovery | undefined;
  private mesh: IngressMesh | undefined;

  constructor(private readonly deps: ServicesDeps) {}

  /** The services API of this node; 503 with Docker's words unless it is a manager of a swarm. */
  api(): ServiceManager {
    const m = this.membership;
    if (!m || !this.manager) throw new Unavailable(NOT_A_MANAGER);
    if (!m.isManager()) throw new Unavailable(WORKER_NOT_MANAGER);
    return this.manager;
  }

  /** This node's ingress mesh state for one service (any node of a swarm: the answer is about this node). */
  async ingressStatus(ref: string): Promise<MeshStatus> {
    if (!this.mesh) throw new Unavailable(NOT_A_MANAGER);
    return this.mesh.status(ref);
  }

  /** The node ID → hostname table of the cluster (for names in logs and CLI tables). */
  async nodes(): Promise<SchedNode[]> {
    const m = this.membership;
    if (!m) return [];
    return (await m.nodes()).map((n) => ({
      id: n.id,
      hostname: n.hostname,
      role: n.role,
      availability: n.availability,
      state: n.state,
    }));
  }

  async attachCluster(m: Membership): Promise<void> {
    const {
      Agent,
      LeaderElector,
      ServiceManager,
      Orchestrator,
      LogServer,
      ServiceDiscovery,
      IngressMesh,
      INGRESS_SBOX,
      ReportRelay,
    } = await parts();
    await this.close();
    this.membership = m;
    const log = this.deps.log;
    const networks = serviceNetworksOf(this.deps.networks);
    this.manager = new ServiceManager(m.store, networks);
    // `network rm` of a swarm network asks the services first (Docker's refusals name the service or task).
    const manager = this.manager;
    (
      this.deps.networks as unknown as {
        setNetworkRemovalGuard?: (
          g: ((n: { id: string; name: string; ingress: boolean }) => Promise<void>) | undefined,
        ) => void;
      }
    ).setNetworkRemovalGuard?.((n) => manager.checkNetworkRemoval(n));
    const dist = this.deps.distribution;
    this.agent = new Agent({
      store: m.store,
      nodeId: m.self.id,
      containers: this.deps.containers,
      images: this.deps.images,
      events: this.deps.events,
      log: log.child({ part: 'agent' }),
      reportOnly: () => !m.isManager(),
      ...(dist
        ? { pullImage: (ref: string, auth: AuthConfig | undefined) => dist.ensure(ref, auth ? { auth } : {}) }
        : {}),
    });
    this.agent.start();
    this.logServer = new LogServer(m.store, m.self.id, this.deps.containers, log.child({ part: 'logs' }));
    this.logServer.start();
    const sink = this.deps.networks as unknown as Partial<ServiceNamesSink>;
    this.discovery = new ServiceDiscovery({
      store: m.store,
      containers: this.deps.containers,
      events: this.deps.events,
      log: log.child({ part: 'discovery' }),
      ...(typeof sink.setServiceNames === 'function'
        ? { names: { setServiceNames: sink.setServiceNames.bind(this.deps.networks) } }
        : {}),
      ...(typeof (sink as Partial<SandboxJoinSource>).setSandboxJoinHook === 'function'
        ? { joins: this.deps.networks as unknown as SandboxJoinSource }
        : {}),
    });
    this.discovery.start();
    const holder = (this.deps.networks as unknown as { ports?: PortHolder }).ports;
    this.mesh = new IngressMesh({
      store: m.store,
      nodeId: m.self.id,
      networks: this.deps.networks,
      ...(holder ? { ports: holder } : {}),
      sandboxDir: join(this.deps.execRoot ?? '/run/cove', INGRESS_SBOX),
      log: log.child({ part: 'ingress' }),
      nodeNames: async () => new Map((await this.nodes()).map((n) => [n.id, n.hostname])),
    });
    this.mesh.start();
    this.orchestrator = new Orchestrator({
      store: m.store,
      // This node runs the orchestrator, so it is up, whatever its liveness key says: a keepalive that came late
      // (etcd slow to sync on a loaded host for longer than the 3 s lease) must not shut down every task here and
      // replace it (each stop costs the task's grace period, then SIGKILL: exit 137). Other nodes' liveness stands.
      nodes: async () =>
        (await this.nodes()).map((n): SchedNode => (n.id === m.self.id ? { ...n, state: 'ready' } : n)),
      fence: () => this.elector?.fence(),
      networkName: async (id) => (await networks.lookup(id).catch(() => undefined))?.name,
      ...(networks.ingress ? { ingressNetwork: networks.ingress } : {}),
      log: log.child({ part: 'orchestrator' }),
    });
    this.elector = new LeaderElector(
      m.store,
      m.self.id,
      (leading) => {
        if (leading) this.orchestrator?.start();
        else void this.orchestrator?.stop();
      },
      log.child({ part: 'leader' }),
    );
    // Promotion and demotion: only managers campaign.
    this.relay = new ReportRelay(m.store, log.child({ part: 'reports' }));
    const followRole = (): void => {
      if (m.isManager()) {
        this.elector?.start();
        this.relay?.start();
      } else {
        void this.elector?.stop();
        void this.relay?.stop();
      }
    };
    followRole();
    this.roleTimer = setInterval(followRole, 2000);
    this.roleTimer.unref?.();
  }

  /**
   * Leaving the swarm (`swarm leave`): everything stops, and this node's task
   * containers go, as Docker's do. A daemon shutdown calls close() instead,
   * which leaves them running.
   */
  async detachCluster(): Promise<void> {
    const wasIn = this.membership !== undefined;
    await this.mesh?.leave();
    await this.close();
    if (!wasIn) return;
    const { LABEL } = await parts();
    for (const c of await this.deps.containers
      .list({ all: true, filters: { label: [LABEL.taskId] } })
      .catch(() => [])) {
      await this.deps.containers
        .remove(c.Id, { force: true })
        .catch((err) => this.deps.log.warn({ err, container: c.Id }, 'task container not removed at swarm leave'));
    }
  }

  /** Daemon shutdown: stop watching and campaigning; task containers keep running (adopted at next start). */
  async close(): Promise<void> {
    if (this.roleTimer) clearInterval(this.roleTimer);
    this.roleTimer = undefined;
    await this.elector?.stop();
    await this.relay?.stop();
    this.relay = undefined;
    await this.orchestrator?.stop();
    await this.agent?.stop();
    this.logServer?.close();
    await this.discovery?.stop();
    await this.mesh?.stop();
    this.mesh = undefined;
    this.discovery = undefined;
    this.logServer = undefined;
    this.elector = undefined;
    this.orchestrator = undefined;
    this.agent = undefined;
    this.manager = undefined;
    this.membership = undefined;
  }
}
