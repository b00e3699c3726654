/**
 * The bridge driver: a Linux bridge per network in the daemon's netns, a
 * veth per endpoint whose peer is created directly inside the sandbox netns
 * (never moved: a move costs 16-24 ms), and Cove's nftables table for NAT,
 * isolation and published ports.
 *
 * Hot path of a container start (join): two command groups on the shared
 * `ip -batch` co-process (veth + master; IPv6 off on the host end, which is
 * only a bridge port; up + hairpin), then rtnetlink
 * requests from a throwaway thread inside the sandbox (IPv6 sysctl, lo,
 * address, up, default route): no process is spawned. Published ports are
 * map elements added through the shared `nft -i` co-process (one
 * transaction, ~0.2 ms). Leaving detaches at once and deletes the veths in
 * batches (a link deletion costs ~20 ms of kernel time, however many links).
 */
import { Conflict } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import { isKernelError, KernelError } from '../../../kernel/errors.js';
import { closeHostKernel, hostKernel } from '../../../kernel/host.js';
import type { KernelOps } from '../../../kernel/ops.js';
import type {
  DriverEndpoint,
  DriverNetwork,
  JoinInfo,
  JoinRequest,
  NetworkDriver,
  ResolvedPortBinding,
} from '../../driver.js';
import { hostFirewall, type Firewall } from '../../firewall/index.js';
import { networkObjects, networkOwner, portElements, portObjects, portsOwner } from './firewall.js';
import {
  bridgeAddOp,
  bridgeAddressOps,
  bridgeConfig,
  bridgeSysctls,
  deleteVethOps,
  joinPlan,
  leavePlan,
  macFromIPv4,
  reapOps,
  type BridgeConfig,
} from './plan.js';

/** Lanes of their own (KernelOps.apply): deleting veths and bridges never queues a join behind it. */
const REAP_LANE = 'reap';
const DELETE_LANE = 'delete';

/** Undoes what a step made (the create plan's own undo, applied on any later error). */
type Undo = () => Promise<void>;

export class BridgeDriver implements NetworkDriver {
  readonly name = 'bridge';
  readonly scope = 'local' as const;
  /** Bridge networks this daemon knows, by network id. */
  private readonly networks = new Map<string, BridgeConfig>();
  /** Endpoints with published ports -> their network id (each is a firewall owner of its own). */
  private readonly published = new Map<string, string>();
  private readonly firewall: Firewall;
  /** The kernel seam (DriverContext.kernel): the daemon's shared one unless injected. */
  private readonly kernel: KernelOps;
  private readonly closeKernel: () => Promise<void>;
  private reaping: Promise<void> | undefined;
  private reapAgain = false;
  /** Bridges being deleted, by name: a new network wanting the same (custom) name waits for the old one to go. */
  private readonly retiring = new Map<string, Promise<void>>();

  constructor(ctx: { firewall?: Firewall; log?: Logger; kernel?: KernelOps } = {}) {
    this.firewall = ctx.firewall ?? hostFirewall(ctx.log);
    this.kernel = ctx.kernel ?? hostKernel();
    // The shared co-processes are ended with the daemon's driver; an injected kernel belongs to whoever made it.
    // Closing the object this driver holds (not only whatever hostKernel() returns now) ends lanes it
    // reopened after another driver closed the shared kernel; else they keep a test process alive.
    this.closeKernel = ctx.kernel
      ? async () => undefined
      : async () => {
          await this.kernel.close();
          await closeHostKernel();
        };
  }

  private scheduleReap(): void {
    if (this.reaping) {
      this.reapAgain = true;
      return;
    }
    this.reaping = (async () => {
      do {
        this.reapAgain = false;
        await this.kernel
          .apply(null, reapOps(), { lane: REAP_LANE })
          .catch((e: unknown) => {
            if (!isKernelError(e, 'ENODEV')) throw e;
          })
          .catch(() => undefined); // nothing to reap, or the netns of the veths went first
      } while (this.reapAgain);
      this.reaping = undefined;
    })();
  }

  /** Resolves once every veth of a left endpoint is deleted (tests, network delete, shutdown). */
  async settle(): Promise<void> {
    while (this.reaping) await this.reaping;
  }

  /** Daemon shutdown: lets pending deletions finish, ends the reaper, the firewall's checks and the shared co-processes (they restart on next use). */
  async close(): Promise<void> {
    await this.settle();
    await Promise.allSettled(this.retiring.values());
    await this.firewall.close();
    await this.closeKernel();
  }

  private checkBridgeNameFree(cfg: BridgeConfig): void {
    for (const other of this.networks.values()) {
      if (other.id !== cfg.id && other.bridge === cfg.bridge)
        throw new Conflict(`bridge name ${cfg.bridge} is already used by network ${other.id}`);
    }
  }

  /** The addresses on an existing link; Conflict if it is not a bridge. */
  private async existingBridgeAddresses(name: string): Promise<Set<string>> {
    const link = await this.kernel.linkInfo(null, name);
    if (!link) throw new KernelError(`ip -d addr show dev ${name}`, `Device "${name}" does not exist.`, 'ENODEV');
    if (link.kind !== 'bridge')
      throw new Conflict(`cannot use ${name} as the network's bridge: it exists and is not a bridge`);
    return new Set(link.addresses);
  }

  /**
   * Makes the bridge (or finishes one that is there: Docker reuses a named
   * bridge) and returns the undo of exactly what it changed. `bridge-add` runs
   * alone first: with `ip -force` the addresses would otherwise land on
   * whatever link already has that name. Any failure undoes itself.
   */
  private async setUpBridge(cfg: BridgeConfig): Promise<Undo> {
    let undo: Undo;
    try {
      await this.kernel.apply(null, [bridgeAddOp(cfg)]);
      undo = async () => {
        await this.kernel.apply(null, [{ kind: 'link-del', name: cfg.bridge }]).catch(() => undefined);
      };
    } catch (e) {
      if (!isKernelError(e, 'EEXIST')) throw e;
      const had = await this.existingBridgeAddresses(cfg.bridge);
      const added = cfg.gateways.map((g) => `${g.address}/${g.prefix}`).filter((a) => !had.has(a));
      undo = async () => {
        if (added.length)
          await this.kernel
            .apply(
              null,
              added.map((a) => ({ kind: 'addr-del' as const, dev: cfg.bridge, cidr: a })),
            )
            .catch(() => undefined);
      };
    }
    try {
      await this.kernel.apply(null, bridgeAddressOps(cfg));
      await this.kernel.sysctls(null, { ...bridgeSysctls(cfg), 'net.bridge.bridge-nf-call-iptables': '1' });
    } catch (e) {
      await undo();
      throw e;
    }
    return undo;
  }

  async createNetwork(net: DriverNetwork): Promise<Record<string, unknown>> {
    const cfg = bridgeConfig(net);
    this.checkBridgeNameFree(cfg);
    await this.retiring.get(cfg.bridge)?.catch(() => undefined);
    const undo = await this.setUpBridge(cfg);
    this.networks.set(cfg.id, cfg);
    try {
      // Only this network's chains and elements: no other owner's rules are touched.
      await this.firewall.owner(networkOwner(cfg.id)).set(networkObjects(cfg));
    } catch (e) {
      this.networks.delete(cfg.id);
      await undo();
      throw e;
    }
    return { bridge: cfg.bridge };
  }

  /**
   * Everything of the network goes. After retireNetwork only the bridge's deletion is left (already under
   * way); after a restart (the controller's doomed record) the whole of it runs again. Idempotent. A bridge
   * name that a live network uses by now (a custom `bridge.name` reused) is left alone.
   */
  async deleteNetwork(net: DriverNetwork): Promise<void> {
    const cfg = this.networks.get(net.id) ?? bridgeConfig(net);
    const pending = this.retiring.get(cfg.bridge);
    if (pending) return pending;
    if (this.bridgeUsedByOther(net.id, cfg.bridge)) return;
    await this.retireNetwork(net);
    await this.retiring.get(cfg.bridge);
  }

  private bridgeUsedByOther(id: string, bridge: string): boolean {
    return [...this.networks.values()].some((n) => n.id !== id && n.bridge === bridge);
  }

  /**
   * Out of service at once: the network's firewall owners go (its chains, its ports' elements) and the
   * bridge loses its addresses and their routes (so a new network may take the same subnet at once).
   * The `link del` of the empty bridge (~35 ms of kernel time) starts in the background; a new network
   * wanting the same bridge name waits for it (createNetwork, restoreNetwork).
   */
  async retireNetwork(net: DriverNetwork): Promise<void> {
    await this.settle();
    const cfg = this.networks.get(net.id) ?? bridgeConfig(net);
    for (const [epId, networkId] of [...this.published]) {
      if (networkId !== net.id) continue;
      await this.firewall.owner(portsOwner(epId)).remove();
      this.published.delete(epId);
    }
    await this.firewall.owner(networkOwner(net.id)).remove();
    this.networks.delete(net.id);
    if (this.bridgeUsedByOther(net.id, cfg.bridge) || this.retiring.has(cfg.bridge)) return;
    const flushed = this.kernel.apply(null, [{ kind: 'addr-flush', dev: cfg.bridge }]).catch((e: unknown) => {
      if (!isKernelError(e, 'ENODEV')) throw e;
    });
    // Registered before any await, so no create of the same name slips in between.
    const deleted = flushed.catch(() => undefined).then(() => this.deleteBridge(cfg.bridge));
    this.retiring.set(cfg.bridge, deleted);
    void deleted
      .catch(() => undefined)
      .finally(() => {
        if (this.retiring.get(cfg.bridge) === deleted) this.retiring.delete(cfg.bridge);
      });
    await flushed;
  }

  /** `link del` on a lane of its own: the kernel time never queues a container's join behind it. */
  private async deleteBridge(bridge: string): Promise<void> {
    try {
      await this.kernel.apply(null, [{ kind: 'link-del', name: bridge }], { lane: DELETE_LANE });
    } catch (e) {
      if (!isKernelError(e, 'ENODEV')) throw e;
    }
  }

  async createEndpoint(_net: DriverNetwork, ep: DriverEndpoint): Promise<DriverEndpoint> {
    if (ep.mac || !ep.ipv4) return { ...ep };
    return { ...ep, mac: macFromIPv4(ep.ipv4.split('/')[0]!) };
  }

  async deleteEndpoint(net: DriverNetwork, ep: DriverEndpoint): Promise<void> {
    if (this.published.has(ep.id)) await this.revokeExternalConnectivity(net, ep);
  }

  async join(req: JoinRequest): Promise<JoinInfo> {
    const cfg = this.networks.get(req.network.id) ?? bridgeConfig(req.network);
    const plan = joinPlan(cfg, req.endpoint, req.netnsPath, req.ifName, req.defaultGateway);
    try {
      await this.kernel.apply(null, plan.host);
    } catch (e) {
      // The same endpoint left a moment ago and its veth waits in the doomed group: let it go first.
      if (!(isKernelError(e, 'EEXIST') && this.reaping)) throw e;
      await this.settle();
      await this.kernel.apply(null, plan.host);
    }
    try {
      await this.kernel.sysctls(null, plan.hostSysctls);
      await this.kernel.apply(null, plan.hostUp);
      await this.kernel.apply(req.netnsPath, [{ kind: 'rtnl', ops: plan.sandbox }]);
    } catch (e) {
      await this.kernel.apply(null, deleteVethOps(req.endpoint)).catch(() => undefined);
      throw e;
    }
    const info: JoinInfo = { driverState: { hostVeth: plan.hostVeth, bridge: cfg.bridge, mac: plan.mac } };
    if (plan.ipv4Gateway) info.ipv4Gateway = plan.ipv4Gateway;
    if (plan.ipv6Gateway) info.ipv6Gateway = plan.ipv6Gateway;
    return info;
  }

  /**
   * Detaches at once: the host end goes down and off the bridge (so the
   * container is cut off), the sandbox end goes down and is renamed (so its
   * name is free for the next connect); both are deleted moments later in a
   * batch. When the sandbox netns is being deleted anyway the kernel removes
   * the pair itself.
   */
  async leave(req: JoinRequest & { joinState?: Record<string, unknown> }): Promise<void> {
    const plan = leavePlan(req.endpoint, req.ifName);
    try {
      await this.kernel.apply(null, plan.host);
    } catch (e) {
      // Already gone: the sandbox netns was deleted first, which removes both ends.
      if (!isKernelError(e, 'ENODEV')) throw e;
      return;
    }
    try {
      await this.kernel.apply(req.netnsPath, [{ kind: 'rtnl', ops: plan.sandbox }]);
    } catch (e) {
      if (!isKernelError(e, 'ENOENT', 'ENODEV')) throw e;
    }
    this.scheduleReap();
  }

  async programExternalConnectivity(
    net: DriverNetwork,
    ep: DriverEndpoint,
    ports: ResolvedPortBinding[],
  ): Promise<void> {
    if (net.internal) return; // Docker publishes nothing from an internal network
    const cfg = this.networks.get(net.id) ?? bridgeConfig(net);
    const objects = portObjects(cfg, portElements(ports, cfg.hostBindingIPv4));
    // The endpoint's own owner: old elements go and new ones come in one nft -i line (one transaction).
    await this.firewall.owner(portsOwner(ep.id)).set(objects);
    if (objects.length) this.published.set(ep.id, net.id);
    else this.published.delete(ep.id);
  }

  async revokeExternalConnectivity(_net: DriverNetwork, ep: DriverEndpoint): Promise<void> {
    if (!this.published.has(ep.id)) return;
    await this.firewall.owner(portsOwner(ep.id)).remove();
    this.published.delete(ep.id);
  }

  /**
   * Daemon start: the bridge is made again if it is missing (or finished if
   * it is there), and the network's chains are set again. The first owner
   * set after a start replaces whatever table an earlier run left, so rules
   * of networks that are gone do not survive. Published ports come back when
   * the controller programs them again.
   */
  async restoreNetwork(net: DriverNetwork, _endpoints: DriverEndpoint[]): Promise<void> {
    const cfg = bridgeConfig(net);
    this.checkBridgeNameFree(cfg);
    await this.retiring.get(cfg.bridge)?.catch(() => undefined);
    await this.setUpBridge(cfg);
    this.networks.set(cfg.id, cfg);
    await this.firewall.owner(networkOwner(cfg.id)).set(networkObjects(cfg));
    // The firewall may already hold this state (same process) while the kernel lost it: check, and restore if so.
    await this.firewall.heal();
  }

  /** The firewall's desired state (all owners) as golden-file text (tests and diagnostics). */
  desiredTable(): string {
    return this.firewall.dump();
  }
}

/** The registry's factory (src/network/drivers/registry.ts): one driver per daemon. */
export function createDriver(ctx: { firewall?: Firewall; log?: Logger; kernel?: KernelOps } = {}): BridgeDriver {
  return new BridgeDriver(ctx);
}
