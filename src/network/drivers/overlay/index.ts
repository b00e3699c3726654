/**
 * The overlay driver: one VXLAN segment per swarm network. A network reaches
 * a host only when an endpoint there joins it (its namespace, br0 and vxlan0
 * are made on the first join) and leaves it with the last one (the namespace
 * goes, taking every link and entry with it). Remote endpoints come from the
 * controller (`syncPeers`, fed by a watch on the cluster store) and become
 * static FDB + neighbour entries on vxlan0: no learning, no flooding, no
 * multicast. Kernel work goes through the injected KernelOps (plan.ts says
 * what, src/kernel/ops.ts renders it); the underlay goes through an
 * UnderlayTransport (transport.ts) so encryption can replace it.
 */
import { Unavailable } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import { isKernelError } from '../../../kernel/errors.js';
import { HostKernelOps, type KernelOps } from '../../../kernel/ops.js';
import type {
  ClusterInfo,
  DriverEndpoint,
  DriverNetwork,
  JoinInfo,
  JoinRequest,
  NetworkDriver,
  PeerEndpoint,
} from '../../driver.js';
import { KeyedMutex } from '../../mutex.js';
import type { DriverContext } from '../registry.js';
import {
  OPT_MTU,
  VXLAN,
  endpointMac,
  joinOps,
  networkUpOps,
  overlayConfig,
  overlayMtu,
  overlayNetnsPath,
  peerDiffOps,
  peerEntry,
  type OverlayConfig,
  type ProgrammedPeer,
} from './plan.js';
import { PlainTransport, type PeerNode, type UnderlayTransport } from './transport.js';
import { WireguardTransport } from './wireguard.js';
import { EspTransport } from './esp.js';
import { EncryptedTransport } from './encrypted-transport.js';
import { probeEsp } from '../../../kernel/xfrm.js';

/** A network that is up on this host. */
interface ActiveNetwork {
  cfg: OverlayConfig;
  nsPath: string;
  mtu: number;
  transport: UnderlayTransport;
  /** Local endpoints joined (ids). */
  endpoints: Set<string>;
  /** What vxlan0 has for remote endpoints (endpoint id -> entry). */
  peers: Map<string, ProgrammedPeer>;
}

export class OverlayDriver implements NetworkDriver {
  readonly name = 'overlay';
  readonly scope = 'swarm' as const;
  private readonly kernel: KernelOps;
  /** The kernel seam, for transports that need it too. */
  get kernelOps(): KernelOps {
    return this.kernel;
  }
  private readonly ownsKernel: boolean;
  private readonly execRoot: string;
  private readonly log: Logger | undefined;
  private readonly active = new Map<string, ActiveNetwork>();
  /** The latest peer set the controller gave per network, also for networks not up here (yet). */
  private readonly wantedPeers = new Map<string, PeerEndpoint[]>();
  private readonly mutex = new KeyedMutex();
  private readonly transports = new Map<string, UnderlayTransport>();
  private cluster: ClusterInfo | undefined;

  constructor(ctx: Pick<DriverContext, 'config' | 'log' | 'kernel'>) {
    this.ownsKernel = !ctx.kernel;
    this.kernel = ctx.kernel ?? new HostKernelOps();
    this.execRoot = ctx.config.execRoot;
    this.log = ctx.log;
    this.transports.set('plain', new PlainTransport(this.kernel));
  }

  /** Registers an underlay transport ('encrypted': used by networks created with --opt encrypted). */
  setTransport(name: string, t: UnderlayTransport): void {
    this.transports.set(name, t);
    t.onRemotesChanged?.(() => {
      for (const [id, a] of this.active) {
        if (a.transport !== t) continue;
        void this.mutex
          .run(id, async () => {
            const cur = this.active.get(id);
            if (cur) await this.programPeers(cur, this.wantedPeers.get(id) ?? []);
          })
          .catch((e: Error) => this.log?.warn({ err: e.message, network: id }, 'overlay: re-programming peers failed'));
      }
    });
  }

  private transportFor(net: DriverNetwork): UnderlayTransport {
    if (net.options.encrypted !== undefined) {
      const t = this.transports.get('encrypted');
      if (!t)
        throw new Unavailable(
          `encrypted overlay network ${net.name} is not available on this node: no IPsec ESP and no wireguard-go here; refusing to carry it unencrypted`,
        );
      return t;
    }
    return this.transports.get('plain')!;
  }

  setCluster(c: ClusterInfo | undefined): void {
    this.cluster = c;
    for (const t of this.transports.values()) {
      t.setCluster?.(
        c?.store
          ? { nodeId: c.nodeId, dataPathAddr: c.dataPathAddr, store: c.store, isManager: c.isManager ?? (() => false) }
          : undefined,
      );
    }
  }

  /** Networks up on this host (ids), for tests and diagnostics. */
  activeNetworks(): string[] {
    return [...this.active.keys()];
  }

  async createNetwork(net: DriverNetwork): Promise<Record<string, unknown>> {
    // Nothing in the kernel yet: a network reaches a host with its first endpoint there.
    const cfg = overlayConfig(net);
    return { vni: cfg.vni };
  }

  async deleteNetwork(net: DriverNetwork): Promise<void> {
    await this.mutex.run(net.id, () => this.teardown(net));
    this.wantedPeers.delete(net.id);
  }

  async createEndpoint(_net: DriverNetwork, ep: DriverEndpoint): Promise<DriverEndpoint> {
    return { ...ep, mac: endpointMac(ep) };
  }

  async deleteEndpoint(): Promise<void> {
    /* the veth goes at leave */
  }

  async join(req: JoinRequest): Promise<JoinInfo> {
    return this.mutex.run(req.network.id, async () => {
      const a = await this.ensureUp(req.network);
      const plan = joinOps(req.endpoint, a.nsPath, req.netnsPath, req.ifName, a.mtu);
      try {
        await this.kernel.apply(null, plan.daemon);
        await this.kernel.apply(a.nsPath, plan.inside);
        await this.kernel.apply(req.netnsPath, plan.sandbox);
      } catch (e) {
        await this.kernel.apply(a.nsPath, [{ kind: 'link-del', name: plan.hostVeth }]).catch(() => undefined);
        if (a.endpoints.size === 0) await this.teardown(req.network).catch(() => undefined);
        throw e;
      }
      a.endpoints.add(req.endpoint.id);
      // The overlay gives no default route: docker_gwbridge does (or nothing, for --internal).
      return { disableGatewayService: true, driverState: { hostVeth: plan.hostVeth, vni: a.cfg.vni } };
    });
  }

  async leave(req: JoinRequest & { joinState?: Record<string, unknown> }): Promise<void> {
    await this.mutex.run(req.network.id, async () => {
      const a = this.active.get(req.network.id);
      if (!a) return;
      const plan = joinOps(req.endpoint, a.nsPath, req.netnsPath, req.ifName, a.mtu);
      try {
        await this.kernel.apply(a.nsPath, [{ kind: 'link-del', name: plan.hostVeth }]);
      } catch (e) {
        // Gone with the sandbox's namespace already.
        if (!isKernelError(e, 'ENODEV', 'ENOENT')) throw e;
      }
      a.endpoints.delete(req.endpoint.id);
      if (a.endpoints.size === 0) await this.teardown(req.network);
    });
  }

  async syncPeers(net: DriverNetwork, peers: PeerEndpoint[]): Promise<void> {
    this.wantedPeers.set(net.id, peers);
    await this.mutex.run(net.id, async () => {
      const a = this.active.get(net.id);
      if (a) await this.programPeers(a, this.wantedPeers.get(net.id) ?? []);
    });
  }

  localOptions(net: DriverNetwork): Record<string, string> {
    const a = this.active.get(net.id);
    return a ? { [OPT_MTU]: String(a.mtu), ...a.transport.describe?.() } : {};
  }

  /**
   * Daemon start: a network with endpoints here is adopted (its namespace
   * outlived the daemon, so containers kept talking) or rebuilt; one without
   * is taken down if anything of it is left.
   */
  async restoreNetwork(net: DriverNetwork, endpoints: DriverEndpoint[]): Promise<void> {
    await this.mutex.run(net.id, async () => {
      if (endpoints.length === 0) {
        await this.teardown(net);
        return;
      }
      const a = await this.ensureUp(net);
      for (const ep of endpoints) a.endpoints.add(ep.id);
    });
  }

  async close(): Promise<void> {
    if (this.ownsKernel) await this.kernel.close();
  }

  // ---------------------------------------------------------------- internals

  private async ensureUp(net: DriverNetwork): Promise<ActiveNetwork> {
    const have = this.active.get(net.id);
    if (have) return have;
    if (!this.cluster) throw new Unavailable('This node is not part of a swarm');
    const cfg = overlayConfig(net);
    const transport = this.transportFor(net);
    const local = await transport.local({ nodeId: this.cluster.nodeId, dataPathAddr: this.cluster.dataPathAddr });
    const mtu = overlayMtu(cfg, local.mtu);
    const nsPath = overlayNetnsPath(this.execRoot, cfg);
    const a: ActiveNetwork = { cfg, nsPath, mtu, transport, endpoints: new Set(), peers: new Map() };
    if (!this.kernel.netnsExists(nsPath)) {
      const ops = networkUpOps(cfg, nsPath, local.address, mtu);
      await this.kernel.createNetns(nsPath);
      try {
        await this.kernel.apply(null, ops.daemon);
        await this.kernel.apply(nsPath, ops.inside);
      } catch (e) {
        await this.kernel.deleteNetns(nsPath).catch(() => undefined);
        throw e;
      }
      this.log?.info(
        { network: net.name, vni: cfg.vni, mtu, underlay: local.address },
        'overlay network up on this host',
      );
    }
    this.active.set(net.id, a);
    await transport.setNetworkPeers?.(cfg, []);
    // Peers the controller told about before the network came up here.
    const wanted = this.wantedPeers.get(net.id);
    if (wanted) await this.programPeers(a, wanted);
    return a;
  }

  private async programPeers(a: ActiveNetwork, peers: PeerEndpoint[]): Promise<void> {
    const self = this.cluster?.nodeId;
    const want = new Map<string, ProgrammedPeer>();
    for (const p of peers) {
      if (p.nodeId === self || !p.mac) continue;
      // Not known yet (an encrypted peer that has not published its tunnel address): no entry until it has.
      const dst = a.transport.remote({ nodeId: p.nodeId, dataPathAddr: p.underlay });
      if (dst) want.set(p.id, peerEntry(p, dst));
    }
    // Encryption peers first, so the first VXLAN packet to a new node finds its WireGuard peer.
    const nodes = new Map<string, PeerNode>();
    for (const p of peers) if (p.nodeId !== self) nodes.set(p.nodeId, { nodeId: p.nodeId, dataPathAddr: p.underlay });
    await a.transport.setNetworkPeers?.(a.cfg, [...nodes.values()]);
    const ops = peerDiffOps(a.peers, want);
    if (ops.length === 0) return;
    try {
      await this.kernel.apply(a.nsPath, ops);
    } finally {
      // Replace-style ops: what is wanted is what we aim at; a failed op is retried by the next sync.
      a.peers = want;
    }
  }

  private async teardown(net: DriverNetwork): Promise<void> {
    const a = this.active.get(net.id);
    this.active.delete(net.id);
    if (net.options.encrypted !== undefined) this.transports.get('encrypted')?.releaseNetwork?.(net.id);
    let nsPath = a?.nsPath;
    if (!nsPath) {
      try {
        nsPath = overlayNetnsPath(this.execRoot, overlayConfig(net));
      } catch {
        return;
      }
    }
    if (this.kernel.netnsExists(nsPath)) {
      // The kernel tears a deleted namespace's links down later, in a work
      // queue; until then the old vxlan0 still holds its VNI on port 4789, and
      // a container joining this network again right away (a rolling update,
      // the ingress network of the next task) would get `File exists` from
      // `ip link add vxlan0`. Deleting the link first frees the VNI now.
      await this.kernel.apply(nsPath, [{ kind: 'link-del', name: VXLAN }]).catch(() => undefined);
      await this.kernel.deleteNetns(nsPath);
      this.log?.info({ network: net.name }, 'overlay network left this host');
    }
  }
}

/** The registry's factory (src/network/drivers/registry.ts). */
export function createDriver(ctx: DriverContext): OverlayDriver {
  const d = new OverlayDriver(ctx);
  // Encrypted networks. The environment overrides are for tests: a node without
  // wireguard-go, a short rotation.
  const rotate = Number(process.env.COVE_ENCRYPTION_ROTATE_MS);
  const wireguard = new WireguardTransport({
    kernel: d.kernelOps,
    dataRoot: ctx.config.dataRoot,
    execRoot: ctx.config.execRoot,
    log: ctx.log,
    ...(process.env.COVE_WIREGUARD_GO ? { binary: process.env.COVE_WIREGUARD_GO } : {}),
    ...(rotate > 0 ? { rotateMs: rotate } : {}),
  });
  // ESP where the kernel has it (Docker's way), wireguard-go otherwise: the kernel is asked (encrypted-transport.ts).
  const esp = new EspTransport({ kernel: d.kernelOps, log: ctx.log });
  d.setTransport(
    'encrypted',
    new EncryptedTransport(esp, wireguard, probeEsp, ctx.log, process.env.COVE_ENCRYPTION === 'wireguard-go'),
  );
  return d;
}
