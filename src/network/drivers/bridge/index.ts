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
 * map elements added through the shared firewall (in-process libnftables, one
 * transaction, ~0.4 ms). Leaving detaches at once and deletes the veths in
 * batches (a link deletion costs ~20 ms of kernel time, however many links).
 * A removed network's bridge is kept as a spare for the next create (see
 * SPARE_PREFIX), so a create + rm loop never waits on a bridge's deletion.
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
  OPT_BRIDGE_NAME,
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

/**
 * Emptied bridges kept for the next network create. A bridge's `link del` holds the kernel's RTNL lock for
 * 30-40 ms (the floor of every create + rm loop: the next create waits on that lock), while an address flush,
 * a `down` and a rename cost ~0.5 ms; so a removed network's bridge, once down, without addresses and renamed
 * `cove-spareN`, becomes the next network's bridge by a rename. Spares are deleted after SPARE_IDLE_MS without
 * use and at shutdown; after a crash the next start adopts them (their names are fixed), so none leaks.
 */
const SPARE_PREFIX = 'cove-spare';
const MAX_SPARES = 2;
const SPARE_IDLE_MS = 20_000;

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
  private readonly log: Logger | undefined;
  private reaping: Promise<void> | undefined;
  private reapAgain = false;
  /** Bridges being deleted, by name: a new network wanting the same (custom) name waits for the old one to go. */
  private readonly retiring = new Map<string, Promise<void>>();
  /** Spare bridges ready to be taken (names `cove-spareN`), and spare names whose `link del` is under way. */
  private readonly spares: string[] = [];
  private readonly sparesDeleting = new Map<string, Promise<void>>();
  private spareTimer: NodeJS.Timeout | undefined;
  /** Spares a crashed run left, adopted once per process (before the first create, retire or restore). */
  private adopting: Promise<void> | undefined;
  /** Networks whose bridge this process already recycled: their doomed record's deleteNetwork has nothing left to do. */
  private readonly recycled = new Set<string>();

  constructor(ctx: { firewall?: Firewall; log?: Logger; kernel?: KernelOps } = {}) {
    this.firewall = ctx.firewall ?? hostFirewall(ctx.log);
    this.log = ctx.log;
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

  /** Daemon shutdown: lets pending deletions finish, deletes the spare bridges, ends the reaper, the firewall's checks and the shared co-processes (they restart on next use). */
  async close(): Promise<void> {
    await this.settle();
    await Promise.allSettled(this.retiring.values());
    await this.adopting?.catch(() => undefined);
    this.deleteSpares();
    await Promise.allSettled(this.sparesDeleting.values());
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
  private async setUpBridge(cfg: BridgeConfig, useSpare: boolean): Promise<Undo> {
    let undo: Undo;
    try {
      if (!(useSpare && (await this.takeSpare(cfg.bridge)))) await this.kernel.apply(null, [bridgeAddOp(cfg)]);
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
    this.recycled.delete(cfg.id);
    await this.adoptSpares();
    await this.retiring.get(cfg.bridge)?.catch(() => undefined);
    this.networks.set(cfg.id, cfg);
    // The link and the firewall at once (two co-processes): the chains match the bridge by name, not by
    // index, so they need no bridge yet, and the network answers nothing before create returns anyway.
    // Only this network's chains and elements: no other owner's rules are touched.
    const owner = this.firewall.owner(networkOwner(cfg.id));
    const [link, chains] = await Promise.allSettled([this.setUpBridge(cfg, true), owner.set(networkObjects(cfg))]);
    if (link.status === 'rejected' || chains.status === 'rejected') {
      this.networks.delete(cfg.id);
      if (link.status === 'fulfilled') await link.value();
      if (chains.status === 'fulfilled') await owner.remove().catch(() => undefined);
      throw link.status === 'rejected' ? link.reason : (chains as PromiseRejectedResult).reason;
    }
    return { bridge: cfg.bridge };
  }

  /**
   * Everything of the network goes. After retireNetwork only the bridge's deletion is left (already under
   * way); after a restart (the controller's doomed record) the whole of it runs again. Idempotent. A bridge
   * name that a live network uses by now (a custom `bridge.name` reused) is left alone.
   */
  async deleteNetwork(net: DriverNetwork): Promise<void> {
    if (this.recycled.delete(net.id)) return;
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
    await this.adoptSpares();
    const cfg = this.networks.get(net.id) ?? bridgeConfig(net);
    this.networks.delete(net.id);
    // The chains and the bridge at once (two co-processes): no endpoint is left to see the order.
    const [chains, link] = await Promise.allSettled([this.removeChains(net.id), this.retireBridge(net, cfg)]);
    if (chains.status === 'rejected') throw chains.reason;
    if (link.status === 'rejected') throw link.reason;
  }

  /** The network's firewall owners: its chains and its published ports' elements. */
  private async removeChains(networkId: string): Promise<void> {
    for (const [epId, id] of [...this.published]) {
      if (id !== networkId) continue;
      await this.firewall.owner(portsOwner(epId)).remove();
      this.published.delete(epId);
    }
    await this.firewall.owner(networkOwner(networkId)).remove();
  }

  /** The bridge becomes a spare, or loses its addresses now and is deleted in the background. */
  private retireBridge(net: DriverNetwork, cfg: BridgeConfig): Promise<void> {
    if (this.bridgeUsedByOther(net.id, cfg.bridge) || this.retiring.has(cfg.bridge)) return Promise.resolve();
    // Decided and registered without an await, so no create of the same name slips in between.
    const spare = this.claimSpareName(net, cfg);
    if (spare) return this.recycle(net, cfg, spare);
    const flushed = this.kernel.apply(null, [{ kind: 'addr-flush', dev: cfg.bridge }]).catch((e: unknown) => {
      if (!isKernelError(e, 'ENODEV')) throw e;
    });
    const deleted = flushed.catch(() => undefined).then(() => this.deleteBridge(cfg.bridge));
    this.retiring.set(cfg.bridge, deleted);
    void deleted
      .catch(() => undefined)
      .finally(() => {
        if (this.retiring.get(cfg.bridge) === deleted) this.retiring.delete(cfg.bridge);
      });
    return flushed;
  }

  /**
   * A spare's name for the retired bridge, claimed at once, if it is to be kept: only a bridge Cove named and
   * made with the kernel's defaults (no MTU set, IPv6 left as the netns has it), so that a spare is what a
   * fresh `link add` would give; at most MAX_SPARES.
   */
  private claimSpareName(net: DriverNetwork, cfg: BridgeConfig): string | undefined {
    if (net.options[OPT_BRIDGE_NAME] || cfg.mtu || cfg.enableIPv6) return undefined;
    const name = this.freeSpareName();
    // Listed before its rename is even sent: a create taking it sends its own rename after it, on the same lane.
    if (name) this.spares.push(name);
    return name;
  }

  /** The retired bridge becomes spare `name`: flushed, down and renamed in one batch (a bridge already gone is fine). */
  private async recycle(net: DriverNetwork, cfg: BridgeConfig, name: string): Promise<void> {
    try {
      await this.kernel.apply(null, [
        { kind: 'addr-flush', dev: cfg.bridge },
        { kind: 'link-set', name: cfg.bridge, up: false, rename: name },
      ]);
    } catch (e) {
      const i = this.spares.indexOf(name);
      if (i >= 0) this.spares.splice(i, 1);
      // A link of that name that this process did not know (made from outside): the bridge is deleted instead.
      if (isKernelError(e, 'EEXIST')) await this.deleteBridge(cfg.bridge);
      else if (!isKernelError(e, 'ENODEV')) throw e;
    }
    this.recycled.add(net.id);
    this.armSpareTimer();
  }

  private freeSpareName(): string | undefined {
    for (let i = 0; i < MAX_SPARES; i++) {
      const name = `${SPARE_PREFIX}${i}`;
      if (!this.spares.includes(name) && !this.sparesDeleting.has(name)) return name;
    }
    return undefined;
  }

  /** Renames a spare to `bridge` (still down, no addresses: bridgeAddressOps finish it). False when none could be taken. */
  private async takeSpare(bridge: string): Promise<boolean> {
    for (let spare = this.spares.pop(); spare !== undefined; spare = this.spares.pop()) {
      try {
        await this.kernel.apply(null, [{ kind: 'link-set', name: spare, rename: bridge }]);
        this.armSpareTimer();
        return true;
      } catch (e) {
        if (isKernelError(e, 'EEXIST')) {
          // `bridge` is a link already (Docker reuses a named bridge): the spare stays one, the caller finishes that link.
          this.spares.push(spare);
          return false;
        }
        if (!isKernelError(e, 'ENODEV')) {
          this.spares.push(spare);
          throw e;
        }
        // deleted from outside: try the next one
      }
    }
    return false;
  }

  /** Spares a crashed run left (down, no addresses: they were flushed before the rename) are adopted. */
  private adoptSpares(): Promise<void> {
    this.adopting ??= (async () => {
      for (let i = 0; i < MAX_SPARES; i++) {
        const name = `${SPARE_PREFIX}${i}`;
        const link = await this.kernel.linkInfo(null, name).catch(() => undefined);
        if (link?.kind !== 'bridge' || this.spares.includes(name)) continue;
        if (link.addresses.length > 0) await this.kernel.apply(null, [{ kind: 'addr-flush', dev: name }]);
        this.spares.push(name);
      }
      if (this.spares.length) this.armSpareTimer();
    })();
    return this.adopting;
  }

  /** Spares unused for SPARE_IDLE_MS are deleted (the timer starts again at each use). */
  private armSpareTimer(): void {
    if (this.spareTimer) clearTimeout(this.spareTimer);
    this.spareTimer = undefined;
    if (this.spares.length === 0) return;
    this.spareTimer = setTimeout(() => this.deleteSpares(), SPARE_IDLE_MS);
    this.spareTimer.unref();
  }

  private deleteSpares(): void {
    if (this.spareTimer) clearTimeout(this.spareTimer);
    this.spareTimer = undefined;
    for (const name of this.spares.splice(0)) {
      const done = this.deleteBridge(name)
        .catch((e: unknown) =>
          this.log?.warn({ bridge: name, err: (e as Error).message }, 'deleting a spare bridge failed'),
        )
        .finally(() => this.sparesDeleting.delete(name));
      this.sparesDeleting.set(name, done);
    }
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
    // The endpoint's own owner: old elements go and new ones come in one transaction.
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
    this.recycled.delete(cfg.id);
    await this.adoptSpares();
    await this.retiring.get(cfg.bridge)?.catch(() => undefined);
    await this.setUpBridge(cfg, false);
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
