/**
 * The network controller: Cove's entry point into the CNM (libnetwork's
 * NetworkController). It owns networks, endpoints and sandboxes, keeps them in
 * the Store, hands out addresses (ipam/), publishes ports (ports.ts), serves
 * the embedded DNS (dns/), and asks drivers to make the kernel objects.
 *
 * This class is the facade; the work is done by its parts in controller/:
 * core.ts (shared state and lookups), networks.ts, addresses.ts (the IPAM
 * facade), names.ts (DNS tables), sandboxes.ts, endpoints.ts, swarm.ts
 * (ClusterAware) and restore.ts (start and restore after a restart).
 */
import type { ClusterAware, Membership } from '../cluster/membership.js';
import type {
  DockerNetwork,
  DockerNetworkCreate,
  DockerNetworkSettings,
  EndpointRequest,
  Filters,
  NetworkService,
  SandboxHandle,
  SandboxOptions,
  SandboxSpec,
} from './types.js';
import type { DriverRegistry } from './drivers/registry.js';
import type { PortMapper } from './ports.js';
import type { Resolver, NameEntry } from './dns/resolver.js';
import type { DnsServer } from './dns/server.js';
import { ControllerCore, type NetworkControllerOptions } from './controller/core.js';
import { NetworkOps } from './controller/networks.js';
import { AddressOps } from './controller/addresses.js';
import { NameOps } from './controller/names.js';
import { SandboxOps } from './controller/sandboxes.js';
import { EndpointOps } from './controller/endpoints.js';
import { SwarmOps } from './controller/swarm.js';
import { RestoreOps } from './controller/restore.js';

export { INGRESS_SANDBOX, type NetworkControllerOptions, type SandboxKernel } from './controller/core.js';

export class NetworkController implements NetworkService, ClusterAware {
  private readonly core: ControllerCore;

  constructor(opts: NetworkControllerOptions) {
    const core = new ControllerCore(opts);
    core.networkOps = new NetworkOps(core);
    core.addressOps = new AddressOps(core);
    core.nameOps = new NameOps(core);
    core.sandboxOps = new SandboxOps(core);
    core.endpointOps = new EndpointOps(core);
    core.swarmOps = new SwarmOps(core);
    core.restoreOps = new RestoreOps(core);
    this.core = core;
  }

  get drivers(): DriverRegistry {
    return this.core.registry;
  }

  get ports(): PortMapper {
    return this.core.ports;
  }

  get resolver(): Resolver {
    return this.core.resolver;
  }

  /** The DNS server (for tests and stats); undefined until a sandbox needed it. */
  get dnsServer(): DnsServer | undefined {
    return this.core.dns;
  }

  /** Swarm networks known to this node (tests, diagnostics). */
  get inSwarm(): boolean {
    return this.core.cluster !== undefined;
  }

  /** Loads drivers, makes the predefined networks (first start) and their kernel objects. Idempotent. */
  init(): Promise<void> {
    return this.core.init();
  }

  // networks
  createNetwork(req: DockerNetworkCreate): Promise<{ Id: string; Warning: string }> {
    return this.core.networkOps.createNetwork(req);
  }

  resolveNetwork(idOrName: string): Promise<{ id: string; name: string; driver: string }> {
    return this.core.networkOps.resolveNetwork(idOrName);
  }

  inspectNetwork(idOrName: string, opts?: { verbose?: boolean; scope?: string }): Promise<DockerNetwork> {
    return this.core.networkOps.inspectNetwork(idOrName, opts);
  }

  listNetworks(filters: Filters = {}): Promise<DockerNetwork[]> {
    return this.core.networkOps.listNetworks(filters);
  }

  removeNetwork(idOrName: string): Promise<void> {
    return this.core.networkOps.removeNetwork(idOrName);
  }

  pruneNetworks(filters: Filters = {}): Promise<string[]> {
    return this.core.networkOps.pruneNetworks(filters);
  }

  /** The swarm's ingress network (the routing mesh's), if it has one. */
  ingressNetwork(): Promise<{ id: string; name: string } | undefined> {
    return this.core.networkOps.ingressNetwork();
  }

  // sandboxes
  createSandbox(spec: SandboxSpec, opts?: SandboxOptions): Promise<SandboxHandle> {
    return this.core.sandboxOps.createSandbox(spec, opts);
  }

  deleteSandbox(containerId: string): Promise<void> {
    return this.core.sandboxOps.deleteSandbox(containerId);
  }

  connect(containerId: string, req: EndpointRequest): Promise<void> {
    return this.core.sandboxOps.connect(containerId, req);
  }

  disconnect(containerId: string, network: string, force: boolean): Promise<void> {
    return this.core.sandboxOps.disconnect(containerId, network, force);
  }

  networkSettings(containerId: string): Promise<DockerNetworkSettings | undefined> {
    return this.core.sandboxOps.networkSettings(containerId);
  }

  renameContainer(containerId: string, newName: string): Promise<void> {
    return this.core.sandboxOps.renameContainer(containerId, newName);
  }

  restore(liveContainerIds: Set<string>): Promise<void> {
    return this.core.restoreOps.restore(liveContainerIds);
  }

  // hooks for swarm services (src/services)
  /** Replaces the service names of one network (empty map: none) and refreshes its DNS table. */
  setServiceNames(networkId: string, names: Map<string, NameEntry[]>): Promise<void> {
    return this.core.nameOps.setServiceNames(networkId, names);
  }

  /** Called once a sandbox has joined networks, before its container runs (services: the VIP balancing table). */
  setSandboxJoinHook(
    fn: ((containerId: string, netnsPath: string, networkIds: string[]) => Promise<void>) | undefined,
  ): void {
    this.core.sandboxOps.setSandboxJoinHook(fn);
  }

  /** Refuses the removal of a swarm network still needed (src/services sets it: services and tasks live there). */
  setNetworkRemovalGuard(
    guard: ((net: { id: string; name: string; ingress: boolean }) => Promise<void>) | undefined,
  ): void {
    this.core.swarmOps.setNetworkRemovalGuard(guard);
  }

  allocateVip(networkId: string, owner: string): Promise<string | undefined> {
    return this.core.addressOps.allocateVip(networkId, owner);
  }

  releaseVip(networkId: string, addr: string): Promise<void> {
    return this.core.addressOps.releaseVip(networkId, addr);
  }

  // swarm scope (ClusterAware)
  attachCluster(m: Membership, opts: { defaultAddrPool?: string[]; subnetSize?: number } = {}): Promise<void> {
    return this.core.swarmOps.attachCluster(m, opts);
  }

  detachCluster(): Promise<void> {
    return this.core.swarmOps.detachCluster();
  }

  async close(): Promise<void> {
    const core = this.core;
    if (core.closed) return;
    await core.swarmOps.stopCluster();
    core.closed = true;
    await Promise.allSettled(core.doomedWork);
    // Sandboxes stay (containers outlive the daemon); only this process's sockets close.
    await core.dns?.close();
    await core.ports.closeAll();
    // Drivers this controller loaded itself are its to close (injected ones belong to the caller).
    if (core.loadBuiltins) await core.registry.closeAll();
  }
}
