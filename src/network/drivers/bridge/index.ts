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
import { KernelError } from '../../../kernel/errors.js';
import { closeHostKernel, hostIp, hostNft } from '../../../kernel/host.js';
import { IpBatch, ipJson } from '../../../kernel/ip.js';
import { nftApply } from '../../../kernel/nft.js';
import { writeSysctls } from '../../../kernel/netns.js';
import { configureInNetns } from '../../../kernel/rtnl.js';
import type { DriverEndpoint, DriverNetwork, JoinInfo, JoinRequest, NetworkDriver, ResolvedPortBinding } from '../../driver.js';
import { addElementsLine, deleteElementsLine, deleteTableScript, portElements, replaceTableScript, type PortElement } from './firewall.js';
import { bridgeAddressCommands, bridgeConfig, bridgeSysctls, createBridgeCommands, deleteVethCommands, joinPlan, leavePlan, macFromIPv4, reapCommands, type BridgeConfig } from './plan.js';

const NO_DEVICE = /Cannot find device|No such device|does not exist/;

interface PublishedEndpoint {
  networkId: string;
  elements: PortElement[];
}

export class BridgeDriver implements NetworkDriver {
  readonly name = 'bridge';
  readonly scope = 'local' as const;
  /** Bridge networks this daemon knows, by network id (the firewall is computed from these). */
  private readonly networks = new Map<string, BridgeConfig>();
  /** Published ports, by endpoint id. */
  private readonly published = new Map<string, PublishedEndpoint>();
  /** Firewall changes run one at a time, in order. */
  private fwQueue: Promise<unknown> = Promise.resolve();
  /** Deletes detached veths (`link del group`) on its own co-process, so joins never queue behind it. */
  private reaper: IpBatch | undefined;
  private reaping: Promise<void> | undefined;
  private reapAgain = false;

  private scheduleReap(): void {
    if (this.reaping) {
      this.reapAgain = true;
      return;
    }
    this.reaper ??= new IpBatch(null);
    const reaper = this.reaper;
    this.reaping = (async () => {
      do {
        this.reapAgain = false;
        await reaper.run(reapCommands()).catch((e: unknown) => {
          if (!(e instanceof KernelError && NO_DEVICE.test(e.message))) throw e;
        }).catch(() => undefined); // nothing to reap, or the netns of the veths went first
      } while (this.reapAgain);
      this.reaping = undefined;
    })();
  }

  /** Resolves once every veth of a left endpoint is deleted (tests, network delete, shutdown). */
  async settle(): Promise<void> {
    while (this.reaping) await this.reaping;
  }

  /** Daemon shutdown: lets pending deletions finish, ends the reaper and the shared co-processes (they restart on next use). */
  async close(): Promise<void> {
    await this.settle();
    await this.reaper?.close();
    this.reaper = undefined;
    await this.fwQueue;
    await closeHostKernel();
  }

  private firewall<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.fwQueue.then(fn, fn);
    this.fwQueue = next.catch(() => undefined);
    return next;
  }

  /** Replaces Cove's table with the one computed from what this driver knows (one transaction). */
  private syncTable(): Promise<void> {
    return this.firewall(async () => {
      const nets = [...this.networks.values()];
      if (nets.length === 0) {
        await nftApply(deleteTableScript());
        return;
      }
      const elems = [...this.published.values()].filter((p) => this.networks.has(p.networkId)).flatMap((p) => p.elements);
      await nftApply(replaceTableScript(nets, elems));
    });
  }

  private checkBridgeNameFree(cfg: BridgeConfig): void {
    for (const other of this.networks.values()) {
      if (other.id !== cfg.id && other.bridge === cfg.bridge) throw new Conflict(`bridge name ${cfg.bridge} is already used by network ${other.id}`);
    }
  }

  /** True if `name` exists as a bridge; throws if it exists as something else. */
  private async bridgeExists(name: string): Promise<boolean> {
    try {
      const links = await ipJson<Array<{ linkinfo?: { info_kind?: string } }>>(null, ['-d', 'link', 'show', 'dev', name]);
      const kind = links[0]?.linkinfo?.info_kind;
      if (kind !== 'bridge') throw new Conflict(`cannot use ${name} as the network's bridge: it exists and is not a bridge`);
      return true;
    } catch (e) {
      if (e instanceof KernelError && NO_DEVICE.test(e.message)) return false;
      throw e;
    }
  }

  private async setUpBridge(cfg: BridgeConfig): Promise<boolean> {
    let created = false;
    try {
      await hostIp().run(createBridgeCommands(cfg));
      created = true;
    } catch (e) {
      if (!(e instanceof KernelError && /File exists/.test(e.message) && e.command.includes(`link add ${cfg.bridge} `))) throw e;
      // The bridge was there already (Docker reuses a named bridge): make sure it is one, then finish it.
      await this.bridgeExists(cfg.bridge);
      await hostIp().run(bridgeAddressCommands(cfg));
    }
    try {
      await writeSysctls(null, { ...bridgeSysctls(cfg), 'net.bridge.bridge-nf-call-iptables': '1' });
    } catch (e) {
      if (created) await hostIp().run([`link del ${cfg.bridge}`]).catch(() => undefined);
      throw e;
    }
    return created;
  }

  async createNetwork(net: DriverNetwork): Promise<Record<string, unknown>> {
    const cfg = bridgeConfig(net);
    this.checkBridgeNameFree(cfg);
    const created = await this.setUpBridge(cfg);
    this.networks.set(cfg.id, cfg);
    try {
      await this.syncTable();
    } catch (e) {
      this.networks.delete(cfg.id);
      if (created) await hostIp().run([`link del ${cfg.bridge}`]).catch(() => undefined);
      await this.syncTable().catch(() => undefined);
      throw e;
    }
    return { bridge: cfg.bridge };
  }

  async deleteNetwork(net: DriverNetwork): Promise<void> {
    await this.settle();
    const cfg = this.networks.get(net.id) ?? bridgeConfig(net);
    this.networks.delete(net.id);
    for (const [epId, p] of this.published) if (p.networkId === net.id) this.published.delete(epId);
    await this.syncTable();
    try {
      await hostIp().run([`link del ${cfg.bridge}`]);
    } catch (e) {
      if (!(e instanceof KernelError && NO_DEVICE.test(e.message))) throw e;
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
      await hostIp().run(plan.host);
    } catch (e) {
      // The same endpoint left a moment ago and its veth waits in the doomed group: let it go first.
      if (!(e instanceof KernelError && /File exists/.test(e.message) && this.reaping)) throw e;
      await this.settle();
      await hostIp().run(plan.host);
    }
    try {
      await writeSysctls(null, plan.hostSysctls);
      await hostIp().run(plan.hostUp);
      await configureInNetns(req.netnsPath, plan.sandbox);
    } catch (e) {
      await hostIp().run(deleteVethCommands(req.endpoint)).catch(() => undefined);
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
      await hostIp().run(plan.host);
    } catch (e) {
      // Already gone: the sandbox netns was deleted first, which removes both ends.
      if (!(e instanceof KernelError && NO_DEVICE.test(e.message))) throw e;
      return;
    }
    try {
      await configureInNetns(req.netnsPath, plan.sandbox);
    } catch (e) {
      if (!(e instanceof KernelError && /No such (file|device)|ENOENT|ENODEV/.test(e.message))) throw e;
    }
    this.scheduleReap();
  }

  async programExternalConnectivity(net: DriverNetwork, ep: DriverEndpoint, ports: ResolvedPortBinding[]): Promise<void> {
    if (net.internal) return; // Docker publishes nothing from an internal network
    const cfg = this.networks.get(net.id) ?? bridgeConfig(net);
    const elements = portElements(ports, cfg.hostBindingIPv4);
    await this.firewall(async () => {
      const old = this.published.get(ep.id);
      const lines: string[] = [];
      const del = old ? deleteElementsLine(old.elements) : undefined;
      const add = addElementsLine(elements);
      // One line = one transaction: the old elements go and the new ones come together.
      const line = [del, add].filter((x): x is string => !!x).join('; ');
      if (line) lines.push(line);
      if (lines.length) await hostNft().run(lines);
      if (elements.length) this.published.set(ep.id, { networkId: net.id, elements });
      else this.published.delete(ep.id);
    });
  }

  async revokeExternalConnectivity(_net: DriverNetwork, ep: DriverEndpoint): Promise<void> {
    await this.firewall(async () => {
      const old = this.published.get(ep.id);
      if (!old) return;
      const line = deleteElementsLine(old.elements);
      this.published.delete(ep.id);
      if (line) await hostNft().run([line]);
    });
  }

  /**
   * Daemon start: the bridge is made again if it is missing (or finished if
   * it is there), and the table is recomputed from the networks restored so
   * far and replaced atomically, dropping rules of networks that are gone.
   * Published ports come back when the controller programs them again.
   */
  async restoreNetwork(net: DriverNetwork, _endpoints: DriverEndpoint[]): Promise<void> {
    const cfg = bridgeConfig(net);
    this.checkBridgeNameFree(cfg);
    await this.setUpBridge(cfg);
    this.networks.set(cfg.id, cfg);
    await this.syncTable();
  }

  /** The table as this driver wants it now (for tests and diagnostics). */
  desiredTable(): string {
    const elems = [...this.published.values()].flatMap((p) => p.elements);
    return replaceTableScript([...this.networks.values()], elems);
  }
}

/** The registry's factory (src/network/drivers/registry.ts): one driver per daemon. */
export function createDriver(): BridgeDriver {
  return new BridgeDriver();
}
