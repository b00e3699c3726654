/**
 * The ingress routing mesh's per-node reconcile loop (see mesh.ts for the
 * rules it programs). On every node of the swarm, driven by store watches on
 * services, tasks and networks (and a pass every few seconds):
 *   - keeps the ingress sandbox (`ingress-sbox`, endpoint `ingress-endpoint`,
 *     Docker's names) on the current ingress network and docker_gwbridge,
 *     with forwarding on; it moves when the ingress network is replaced and
 *     goes when there is none;
 *   - holds every ingress-published port of the cluster on this node (the
 *     controller's port reservations: nothing else may publish or bind it; a
 *     port some local container already has is left out on this node and
 *     shown as a conflict);
 *   - programs the host's DNAT to the sandbox (table `ip cove_mesh`, a
 *     frame-less firewall of its own) and the sandbox's load balancing to
 *     the tasks' ingress addresses (its own firewall, table `ip cove_ingress`).
 * Neither table is in the frame (which a starting daemon rebuilds), so the
 * published ports keep answering while a daemon is down or restarting; the
 * first pass of the new daemon replaces both tables in one transaction each
 * (same contents: no gap). The sandbox itself survives too (the controller
 * keeps it like a live container's).
 */
import { mkdirSync } from 'node:fs';
import type { Logger } from '../common/log.js';
import { NotFound } from '../common/errors.js';
import { Firewall, KernelNft, type FirewallOwner } from '../network/firewall/index.js';
import type { PortRequest } from '../network/ports.js';
import type { DockerNetwork, NetworkService } from '../network/types.js';
import { GWBRIDGE } from '../network/swarm-scope.js';
import { ReconcileLoop } from '../common/reconcile-loop.js';
import { writeSysctls } from '../kernel/netns.js';
import { nftListText } from '../kernel/nft.js';
import { pingOnce } from '../kernel/probe.js';
import type { Store } from '../store/store.js';
import {
  backendCounts,
  hostMeshBase,
  hostPortElements,
  hostPortsKey,
  lbObjects,
  meshPorts,
  MESH,
  portKey,
  portsDelta,
  sboxMeshBase,
  sboxPortElements,
  type MeshPort,
  type NodeHostPorts,
} from './mesh.js';
import type { FwObject } from '../network/firewall/model.js';
import { serviceCollection, taskCollection, SERVICES, TASKS, withVersion } from './records.js';
import type { Service } from './types.js';

export const INGRESS_SBOX = 'ingress-sbox';
export const INGRESS_ENDPOINT = 'ingress-endpoint';
const HOST_OWNER = 'ingress-mesh';

/** The controller's port reservations (src/network/ports.ts PortMapper). */
export interface PortHolder {
  reserve(owner: string, req: PortRequest): Promise<unknown>;
  release(owner: string): Promise<void>;
  list?(): Array<{ proto: string; hostIp: string; port: number; owner: string }>;
  onChange?(cb: () => void): () => void;
}

export interface IngressMeshDeps {
  store: Store;
  nodeId: string;
  networks: NetworkService;
  ports?: PortHolder;
  /** The firewall for the host's table `ip cove_mesh` (frame-less, in the daemon's namespace); made here when not given. */
  firewall?: Firewall;
  /** Directory for the ingress sandbox's hosts/resolv.conf files. */
  sandboxDir: string;
  /** Node ID → hostname, for diagnostics. */
  nodeNames?: () => Promise<Map<string, string>>;
  log: Logger;
  resyncMs?: number;
}

/** One published port as this node sees it (`cove service ports`, GET /services/{id}/ingress). */
export interface MeshPortStatus {
  Protocol: string;
  PublishedPort: number;
  TargetPort: number;
  /** This node holds the port (its reservation socket); else why not. */
  Held: boolean;
  Conflict?: string;
  /** The kernel has the host's DNAT for the port (element in ip cove_mesh ingress_ports, chain ingress_pre to the sandbox). */
  HostRule: boolean;
  /** The kernel has the sandbox's map element and the port's chain. */
  SandboxRule: boolean;
  Backends: Array<{
    Address: string;
    NodeID: string;
    Node: string;
    TaskID: string;
    InKernel: boolean;
    Reachable: boolean;
  }>;
}

export interface MeshStatus {
  NodeID: string;
  Node: string;
  ServiceID: string;
  ServiceName: string;
  Sandbox: { Key: string; IngressAddress: string; GatewayAddress: string } | null;
  Ports: MeshPortStatus[];
}

interface Sbox {
  key: string;
  ingressAddr: string;
  gwAddr: string;
  subnet: string;
  networkId: string;
  fw: Firewall;
  owner: FirewallOwner;
  table: MeshTable;
}

/**
 * One side's table (host or sandbox), kept by explicit deltas: the first
 * pass (and any pass after a failure, or when the fixed part changes: the
 * sandbox moved, another subnet) sets the whole table; later passes send
 * only the elements of the ports that changed, plus an lbN map and chain
 * when a task count first or last appears. So a --publish-add costs the
 * same with 1 port published and with 100.
 */
class MeshTable {
  /** The ports the kernel has, by portKey; undefined: the next pass sets everything. */
  private ports: Map<string, MeshPort> | undefined;
  private fixed = '';
  private counts: number[] = [];

  constructor(
    private readonly owner: FirewallOwner,
    /** The table's fixed objects (without lbN ones) as text: when it changes, everything is set again. */
    private readonly fixedOf: () => string,
    private readonly all: (ports: MeshPort[]) => FwObject[],
    private readonly elementsOf: (p: MeshPort) => FwObject[],
    /** Task counts that need an lbN chain (sandbox only). */
    private readonly countsOf: (ports: MeshPort[]) => number[] = () => [],
  ) {}

  async program(ports: MeshPort[]): Promise<void> {
    const fixed = this.fixedOf();
    const counts = this.countsOf(ports);
    try {
      if (!this.ports || fixed !== this.fixed) {
        this.ports = undefined;
        await this.owner.set(this.all(ports));
      } else {
        const d = portsDelta(this.ports, ports, this.elementsOf);
        const addLb = counts.filter((n) => !this.counts.includes(n)).flatMap(lbObjects);
        const dropLb = this.counts
          .filter((n) => !counts.includes(n))
          .flatMap(lbObjects)
          .filter((o) => o.kind !== 'rule');
        await this.owner.patch({ remove: [...d.remove, ...dropLb], add: [...addLb, ...d.add] });
      }
      this.ports = new Map(ports.map((p) => [portKey(p), p]));
      this.fixed = fixed;
      this.counts = counts;
    } catch (e) {
      this.ports = undefined;
      throw e;
    }
  }
}

export class IngressMesh {
  /** Watches on services, tasks and networks, and a pass every resyncMs (src/common/reconcile-loop.ts). */
  private readonly loop: ReconcileLoop;
  private sbox: Sbox | undefined;
  private readonly hostFw: Firewall;
  private readonly host: FirewallOwner;
  private hostTable: MeshTable | undefined;
  private hostTableFor = '';
  /** proto/port → the sandbox address its reservation relays to. */
  private readonly held = new Map<string, string>();
  /** proto/port → why this node could not hold it. */
  readonly conflicts = new Map<string, string>();
  /** What the last pass programmed (JSON of ports, sandbox address, subnet). */
  private programmed: string | undefined;
  /** The host-port list last written to the store (JSON), see publishHostPorts. */
  private publishedHostPorts: string | undefined;
  /** The ports of the last pass. */
  ports: MeshPort[] = [];

  constructor(private readonly deps: IngressMeshDeps) {
    this.hostFw =
      deps.firewall ?? new Firewall({ backend: new KernelNft(null), frame: false, checkEveryMs: 1000, log: deps.log });
    this.host = this.hostFw.owner(HOST_OWNER);
    const store = deps.store;
    const ports = deps.ports;
    this.loop = new ReconcileLoop({
      pass: () => this.reconcile(),
      periodMs: deps.resyncMs ?? 5000,
      sources: [
        (kick) => store.watch(`${SERVICES}/`, kick),
        (kick) => store.watch(`${TASKS}/`, kick),
        (kick) => store.watch('networks/', kick),
        // This node's containers taking or freeing host ports: the swarm learns of it (publishHostPorts).
        (kick) => ports?.onChange?.(kick) ?? (() => undefined),
      ],
      onError: (err) => this.deps.log.warn({ err }, 'ingress mesh pass failed'),
    });
  }

  start(): void {
    this.loop.start();
  }

  /** Daemon shutdown: the loop stops; the kernel keeps serving (the sandbox and rules stay until the next start reprograms them). */
  async stop(): Promise<void> {
    await this.loop.stop();
    await this.sbox?.fw.close();
    this.sbox = undefined;
    await this.hostFw.close();
    for (const k of this.held.keys()) await this.deps.ports?.release(owner(k)).catch(() => undefined);
    this.held.clear();
  }

  /** Swarm leave: everything of the mesh goes from this node. */
  async leave(): Promise<void> {
    await this.stop();
    await this.host.remove().catch((err) => this.deps.log.warn({ err }, 'ingress host rules not removed'));
    await this.hostFw.close();
    await this.deps.store.delete(hostPortsKey(this.deps.nodeId)).catch(() => undefined);
    await this.deps.networks
      .deleteSandbox(INGRESS_SBOX)
      .catch((err) => this.deps.log.warn({ err }, 'ingress sandbox not removed'));
  }

  kick(): void {
    this.loop.kick();
  }

  async idle(): Promise<void> {
    await this.loop.idle();
  }

  private async reconcile(): Promise<void> {
    // (Telling the swarm is not programming this node: a failure there must not stop the pass.)
    await this.publishHostPorts().catch((err) =>
      this.deps.log.warn({ err }, 'host ports not written to the cluster store'),
    );
    const ingress = (await this.deps.networks.listNetworks()).find((n) => n.Ingress && n.Driver === 'overlay');
    const sb = await this.ensureSandbox(ingress);
    if (!sb || !ingress) {
      this.hostTable = undefined;
      await this.host.remove();
      await this.holdPorts([], '');
      this.ports = [];
      return;
    }
    const services = (await serviceCollection(this.deps.store).list()).map(withVersion);
    const tasks = (await taskCollection(this.deps.store).list()).map(withVersion);
    const ports = meshPorts(services, tasks, ingress.Id);
    const ok = await this.holdPorts(ports, sb.gwAddr);
    if (!this.hostTable || this.hostTableFor !== sb.gwAddr) {
      const base = hostMeshBase(sb.gwAddr);
      this.hostTable = new MeshTable(
        this.host,
        () => sb.gwAddr,
        (p) => [...base, ...p.flatMap(hostPortElements)],
        hostPortElements,
      );
      this.hostTableFor = sb.gwAddr;
    }
    const t0 = performance.now();
    await this.hostTable.program(ok);
    const t1 = performance.now();
    await sb.table.program(ok);
    const t2 = performance.now();
    this.ports = ports;
    // What changed, and what the kernel updates cost (read by `npm run bench`'s mesh workload).
    const sig = JSON.stringify([ok, sb.gwAddr, sb.subnet]);
    if (sig !== this.programmed) {
      this.programmed = sig;
      this.deps.log.info(
        { ports: ok.length, hostMs: round(t1 - t0), sandboxMs: round(t2 - t1) },
        'ingress mesh programmed',
      );
    }
  }

  /**
   * Tells the swarm which host ports this node's containers hold (not the
   * mesh's own reservations), so a manager refuses an ingress port taken on
   * any node before anything is made. Written only when it changed.
   */
  private async publishHostPorts(): Promise<void> {
    const list = this.deps.ports?.list?.();
    if (!list) return;
    const seen = new Set<string>();
    const ports: NodeHostPorts['Ports'] = [];
    for (const r of list) {
      const k = `${r.proto}/${r.hostIp}/${r.port}`;
      if (r.owner.startsWith('ingress:') || seen.has(k)) continue;
      seen.add(k);
      ports.push({ Protocol: r.proto, HostIp: r.hostIp, Port: r.port });
    }
    ports.sort((a, b) => a.Port - b.Port || a.Protocol.localeCompare(b.Protocol) || a.HostIp.localeCompare(b.HostIp));
    const key = JSON.stringify(ports);
    if (key === this.publishedHostPorts) return;
    const node = (await this.deps.nodeNames?.().catch(() => undefined))?.get(this.deps.nodeId) ?? this.deps.nodeId;
    const rec: NodeHostPorts = { NodeID: this.deps.nodeId, Node: node, Ports: ports };
    await this.deps.store.put(hostPortsKey(this.deps.nodeId), JSON.stringify(rec));
    this.publishedHostPorts = key;
  }

  /** The ingress sandbox on the current ingress network (made, moved or removed as needed). */
  private async ensureSandbox(ingress: DockerNetwork | undefined): Promise<Sbox | undefined> {
    let settings = await this.deps.networks.networkSettings(INGRESS_SBOX);
    if (settings && (!ingress || !Object.values(settings.Networks).some((e) => e.NetworkID === ingress.Id))) {
      this.deps.log.info({ network: ingress?.Name }, 'ingress sandbox leaves the old ingress network');
      await this.sbox?.owner.remove().catch(() => undefined);
      // Its nft -i co-process keeps the sandbox's netns alive: it ends first.
      await this.sbox?.fw.close();
      this.sbox = undefined;
      await this.deps.networks.deleteSandbox(INGRESS_SBOX);
      settings = undefined;
    }
    if (!ingress) {
      await this.sbox?.fw.close();
      this.sbox = undefined;
      return undefined;
    }
    if (!settings) {
      mkdirSync(this.deps.sandboxDir, { recursive: true, mode: 0o711 });
      await this.deps.networks.createSandbox({
        containerId: INGRESS_SBOX,
        containerName: INGRESS_ENDPOINT,
        hostname: INGRESS_SBOX,
        domainname: '',
        networkMode: ingress.Id,
        endpoints: [{ network: ingress.Id }],
        portBindings: [],
        exposedPorts: [],
        publishAllPorts: false,
        dns: [],
        dnsSearch: [],
        dnsOptions: [],
        extraHosts: [],
        dir: this.deps.sandboxDir,
        swarmTask: true,
      });
      settings = await this.deps.networks.networkSettings(INGRESS_SBOX);
      this.deps.log.info({ network: ingress.Name }, 'ingress sandbox made');
    }
    const key = settings?.SandboxKey;
    const ing = Object.values(settings?.Networks ?? {}).find((e) => e.NetworkID === ingress.Id);
    // Container inspect hides docker_gwbridge (as Docker does); the network's own inspect lists the sandbox.
    const gwCidr = (await this.deps.networks.inspectNetwork(GWBRIDGE).catch(() => undefined))?.Containers[INGRESS_SBOX]
      ?.IPv4Address;
    const gw = gwCidr ? { IPAddress: gwCidr.split('/')[0]! } : undefined;
    const subnet = ingress.IPAM.Config.find((c) => c.Subnet && !c.Subnet.includes(':'))?.Subnet;
    if (!key || !ing?.IPAddress || !gw?.IPAddress || !subnet)
      throw new Error('ingress sandbox has no ingress or docker_gwbridge address');
    if (this.sbox?.key !== key || this.sbox.networkId !== ingress.Id || this.sbox.ingressAddr !== ing.IPAddress) {
      await this.sbox?.fw.close();
      await writeSysctls(key, { 'net.ipv4.ip_forward': '1' });
      const fw = new Firewall({ backend: new KernelNft(key), frame: false, checkEveryMs: 0, log: this.deps.log });
      const owner = fw.owner(HOST_OWNER);
      const table = new MeshTable(
        owner,
        () => `${subnet} ${ing.IPAddress}`,
        (p) => [...sboxMeshBase(subnet, ing.IPAddress!, backendCounts(p)), ...p.flatMap(sboxPortElements)],
        sboxPortElements,
        backendCounts,
      );
      this.sbox = {
        key,
        ingressAddr: ing.IPAddress,
        gwAddr: gw.IPAddress,
        subnet,
        networkId: ingress.Id,
        fw,
        owner,
        table,
      };
    }
    return this.sbox;
  }

  /** Holds every wanted port on this node; answers the ones it holds. */
  private async holdPorts(ports: MeshPort[], target: string): Promise<MeshPort[]> {
    const want = new Map(ports.map((p) => [`${p.proto}/${p.published}`, p]));
    for (const [k, to] of [...this.held]) {
      if (want.has(k) && to === target) continue;
      await this.deps.ports?.release(owner(k)).catch(() => undefined);
      this.held.delete(k);
    }
    const ok: MeshPort[] = [];
    for (const [k, p] of want) {
      if (!this.held.has(k)) {
        try {
          await this.deps.ports?.reserve(owner(k), {
            bindings: [
              {
                containerPort: p.published,
                containerPortEnd: p.published,
                protocol: p.proto,
                hostIp: '',
                hostPort: p.published,
                hostPortEnd: p.published,
              },
            ],
            exposed: [],
            publishAll: false,
            containerIp: target,
          });
          this.held.set(k, target);
          if (this.conflicts.delete(k)) this.deps.log.info({ port: k }, 'ingress port held again');
        } catch (err) {
          const msg = (err as Error).message;
          if (this.conflicts.get(k) !== msg)
            this.deps.log.warn(
              { port: k, service: p.serviceName, err: msg },
              'ingress port not published on this node',
            );
          this.conflicts.set(k, msg);
          continue;
        }
      }
      ok.push(p);
    }
    for (const k of [...this.conflicts.keys()]) if (!want.has(k)) this.conflicts.delete(k);
    return ok;
  }

  /** This node's truth about one service's ingress ports, read back from the kernel. */
  async status(ref: string): Promise<MeshStatus> {
    const all = (await serviceCollection(this.deps.store).list()).map(withVersion);
    const svc = findService(all, ref);
    await this.idle();
    const names = (await this.deps.nodeNames?.().catch(() => undefined)) ?? new Map<string, string>();
    const sb = this.sbox;
    const hostSet = await nftListText(['set', 'ip', MESH.hostTable, MESH.hostSet]).catch(() => '');
    const hostPre = await nftListText(['chain', 'ip', MESH.hostTable, MESH.hostPre]).catch(() => '');
    const sboxTable = sb ? await nftListText(['table', 'ip', MESH.sboxTable], sb.key).catch(() => '') : '';
    const preOk = Boolean(sb) && hostPre.includes(`dnat to ${sb?.gwAddr}`);
    const out: MeshPortStatus[] = [];
    for (const p of this.ports.filter((x) => x.serviceId === svc.ID)) {
      const k = `${p.proto}/${p.published}`;
      // Which lbN the port's verdict-map element names, and that chain's DNAT.
      const lb = new RegExp(`\\b${p.proto} \\. ${p.published} : goto (lb\\d+)\\b`).exec(sboxTable)?.[1];
      const lbChain = lb ? chainText(sboxTable, lb) : '';
      const backends = await Promise.all(
        p.backends.map(async (b) => ({
          Address: b.addr,
          NodeID: b.nodeId,
          Node: names.get(b.nodeId) ?? b.nodeId,
          TaskID: b.taskId,
          InKernel: new RegExp(
            `\\b${p.proto} \\. ${p.published} \\. \\d+ : ${b.addr.replace(/\./g, '\\.')} \\. ${p.target}\\b`,
          ).test(sboxTable),
          Reachable: sb ? await pingOnce(sb.key, b.addr).catch(() => false) : false,
        })),
      );
      out.push({
        Protocol: p.proto,
        PublishedPort: p.published,
        TargetPort: p.target,
        Held: this.held.has(k),
        ...(this.conflicts.has(k) ? { Conflict: this.conflicts.get(k)! } : {}),
        HostRule: preOk && new RegExp(`\\b${p.proto} \\. ${p.published}\\b`).test(hostSet),
        SandboxRule: lbChain.includes('dnat'),
        Backends: backends,
      });
    }
    return {
      NodeID: this.deps.nodeId,
      Node: names.get(this.deps.nodeId) ?? this.deps.nodeId,
      ServiceID: svc.ID,
      ServiceName: svc.Spec.Name ?? svc.ID,
      Sandbox: sb ? { Key: sb.key, IngressAddress: sb.ingressAddr, GatewayAddress: sb.gwAddr } : null,
      Ports: out,
    };
  }
}

const round = (ms: number): number => Math.round(ms * 100) / 100;

function owner(k: string): string {
  return `ingress:${k}`;
}

/** The text of one chain in `nft list table` output ('' when absent; its rules may hold braces: it ends at a tab-indented brace). */
function chainText(table: string, name: string): string {
  const m = new RegExp(`chain ${name} \\{([\\s\\S]*?)\\n\\t\\}`).exec(table);
  return m?.[1] ?? '';
}

function findService(all: Service[], ref: string): Service {
  const hit = all.find((s) => s.ID === ref) ?? all.find((s) => s.Spec.Name === ref);
  if (hit) return hit;
  const pre = all.filter((s) => s.ID.startsWith(ref));
  if (pre.length === 1) return pre[0]!;
  throw new NotFound(`service ${ref} not found`);
}
