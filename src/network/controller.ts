/**
 * The network controller: Cove's entry point into the CNM (libnetwork's
 * NetworkController). It owns networks, endpoints and sandboxes, keeps them in
 * the Store, hands out addresses (ipam/), publishes ports (ports.ts), serves
 * the embedded DNS (dns/), and asks drivers to make the kernel objects.
 *
 * Every multi-step operation is all-or-nothing: each step that made something
 * pushes its undo, and a failure runs the undos in reverse. Records are
 * written before kernel objects are made ("creating"), so a daemon that dies
 * half-way finds and removes the leftovers at restore().
 */
import { join } from 'node:path';
import { readFileSync, existsSync, readdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Collection, CasError, type Store } from '../store/store.js';
import type { DaemonConfig } from '../daemon/config.js';
import type { EventBus } from '../daemon/events.js';
import type { Logger } from '../common/log.js';
import { newId, shortId } from '../common/ids.js';
import { Conflict, CoveError, Forbidden, InvalidParameter, NotFound, NotImplemented, SystemError, Unavailable } from '../common/errors.js';
import type { ClusterAware, Membership } from '../cluster/membership.js';
import type { KernelOps } from '../kernel/ops.js';
import {
  ClusterKeys, FIRST_VNI, GWBRIDGE, GWBRIDGE_OPTIONS, NOT_IN_SWARM, ScopedNetworks, WORKER_CREATE, WORKER_MODIFY, newSwarmId, notAttachable,
  networkOfEndpointKey, subnetKey, toPeer, type SwarmEndpoint,
} from './swarm-scope.js';
import { OPT_VNI } from './drivers/overlay/plan.js';
import type {
  DockerNetwork, DockerNetworkCreate, DockerNetworkSettings, EndpointRequest, Filters, NetworkService, SandboxHandle, SandboxSpec,
} from './types.js';
import type { DriverEndpoint, DriverNetwork, NetworkDriver } from './driver.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord } from './records.js';
import { DriverRegistry, type DriverContext } from './drivers/registry.js';
import { AddressAllocator } from './ipam/allocator.js';
import { IPAM_DRIVERS, planIpam, pickDefaultPool, validateConfigs, type SubnetPlan } from './ipam/plan.js';
import { IpamPlugins, type RemotePool } from './ipam/remote.js';
import { formatCidr, formatIp, macFromIpv4, parseCidr, tryParseCidr, tryParseIp } from './ipam/ip.js';
import { KeyedMutex } from './mutex.js';
import {
  DEFAULT_BRIDGE_OPTIONS, PREDEFINED, checkListFilters, checkPruneFilters, hasEmbeddedDns, matchesListFilters, matchesPruneFilters,
  nowRfc3339Nano, toDockerNetwork,
} from './network.js';
import { dnsNames, networkSettings, parseLink } from './endpoint.js';
import { PortMapper, driverBindings } from './ports.js';
import { Resolver, type NameEntry } from './dns/resolver.js';
import { DnsServer, type SocketSource } from './dns/server.js';
import {
  isLoopback, readHostResolv, renderHosts, renderResolvConf, sandboxFilePaths, writeInPlace,
} from './sandbox-files.js';

/** The ingress routing mesh's sandbox (Docker's `ingress-sbox`), made by src/services/ingress.ts on every swarm node. */
export const INGRESS_SANDBOX = 'ingress-sbox';

/** Docker's per-network default host address for published ports (a bridge option; -p 8080:80 on such a network binds only there). */
const OPT_HOST_BINDING_IPV4 = 'com.docker.network.bridge.host_binding_ipv4';
/** The network's own default host address, if it names one; 0.0.0.0 (what the default bridge shows) leaves the daemon's --ip in charge. */
function hostBinding(net: NetworkRecord): string | undefined {
  const v = net.options[OPT_HOST_BINDING_IPV4];
  return v && v !== '0.0.0.0' ? v : undefined;
}

/** What the controller needs from the kernel for sandboxes (src/kernel by default; fakes in unit tests). */
export interface SandboxKernel {
  createNetns(path: string, disableIpv6: boolean): Promise<void>;
  deleteNetns(path: string): Promise<void>;
  /** Brings lo up inside the netns (127.0.0.11 needs it). */
  loopbackUp(path: string): Promise<void>;
  enableIpv6(path: string): Promise<void>;
  /** Points the netns's default route(s) at a gateway through an interface (gateway failover on disconnect). */
  setDefaultRoute(path: string, ifName: string, gateways: { v4?: string; v6?: string }): Promise<void>;
  /** Adds addresses to an interface inside the netns (EndpointIPAMConfig.LinkLocalIPs). */
  addAddresses(path: string, ifName: string, addrs: Array<{ address: string; prefix: number }>): Promise<void>;
  /** Sockets of the embedded DNS inside the netns: an fd, or (tests) an address to bind here. */
  udpSocket(path: string, ip: string, port: number): SocketSource;
  tcpSocket(path: string, ip: string, port: number): SocketSource;
}

export interface NetworkControllerOptions {
  config: DaemonConfig;
  store: Store;
  events: EventBus;
  log: Logger;
  /** Drivers to use; when absent the built-in drivers are loaded at init(). */
  drivers?: NetworkDriver[] | DriverRegistry;
  kernel?: SandboxKernel;
  /** Host files read for resolv.conf/hosts (tests point them elsewhere). */
  hostResolvConf?: string;
  hostHosts?: string;
  /** Ephemeral host port range (Docker: 32768-60999). */
  portRange?: [number, number];
  /** Host address for bindings that name none (dockerd's --ip; default 0.0.0.0). */
  portDefaultHostIp?: string;
  /**
   * Also hold [::]:port (relayed to the container, like docker-proxy) when a
   * binding names no address, so `docker port` shows `[::]:8080` as Docker
   * 20.10+ does. Off by default: the seed's tests expect only 0.0.0.0.
   */
  portDualStack?: boolean;
  /** Where the embedded DNS listens inside sandboxes (127.0.0.11:53). */
  dnsListen?: { ip: string; port: number };
  /** Typed kernel operations handed to drivers that build their own namespaces (overlay); default: the real kernel. */
  kernelOps?: KernelOps;
}

/** The src/kernel implementation, loaded on first use (it loads a native addon). */
async function defaultKernel(): Promise<SandboxKernel> {
  const netns = await import('../kernel/netns.js');
  const rtnl = await import('../kernel/rtnl.js');
  return {
    createNetns: (path, disableIpv6) => netns.createNetns(path, disableIpv6 ? { sysctls: netns.DISABLE_IPV6 } : {}),
    deleteNetns: (path) => netns.deleteNetns(path),
    // rtnetlink from a throwaway thread inside the netns: no process spawned (~0.1 ms against ~10 ms for nsenter+ip).
    loopbackUp: (path) => rtnl.configureInNetns(path, [{ op: 'up', dev: 'lo' }]),
    enableIpv6: (path) => netns.writeSysctls(path, { 'net.ipv6.conf.all.disable_ipv6': '0', 'net.ipv6.conf.default.disable_ipv6': '0' }),
    setDefaultRoute: (path, ifName, gws) => {
      const ops: Array<{ op: 'route'; dev: string; via: string }> = [];
      if (gws.v4) ops.push({ op: 'route', dev: ifName, via: gws.v4 });
      if (gws.v6) ops.push({ op: 'route', dev: ifName, via: gws.v6 });
      return rtnl.configureInNetns(path, ops);
    },
    addAddresses: (path, ifName, addrs) => rtnl.configureInNetns(path, addrs.map((a) => ({ op: 'addr' as const, dev: ifName, address: a.address, prefix: a.prefix }))),
    udpSocket: (path, addr, port) => netns.udpSocketInNetns(path, addr, port),
    tcpSocket: (path, addr, port) => netns.tcpListenSocketInNetns(path, addr, port),
  };
}

type Undo = () => Promise<void> | void;

async function runUndos(undos: Undo[], log: Logger): Promise<void> {
  for (const u of undos.reverse()) {
    try {
      await u();
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'undo step failed');
    }
  }
}

const NETWORK_LOCK = 'networks';
/** Cluster store key: the default ingress was made (its ID), so it is made once in a swarm's life. */
const DEFAULT_INGRESS_KEY = 'netconfig/default-ingress';

/** This node's swarm, while it is in one (attachCluster .. detachCluster). */
interface ClusterState {
  m: Membership;
  keys: ClusterKeys;
  /** Addresses of swarm networks, in the cluster store (ipam/addr/<nid>/<i>). */
  ipam: AddressAllocator;
  stops: Array<() => void>;
  /** Per swarm network: a sync (peers + names) is running / another is due. */
  syncing: Map<string, Promise<void>>;
  again: Set<string>;
}

export class NetworkController implements NetworkService, ClusterAware {
  private readonly config: DaemonConfig;
  private readonly store: Store;
  private readonly events: EventBus;
  private readonly log: Logger;
  private readonly registry: DriverRegistry;
  private readonly loadBuiltins: boolean;
  private readonly networks: ScopedNetworks;
  private cluster: ClusterState | undefined;
  private readonly endpoints: Collection<EndpointRecord>;
  private readonly sandboxes: Collection<SandboxRecord>;
  /** Removed networks whose driver still has kernel work to finish (a bridge's deletion): done in the background, again after a crash. */
  private readonly doomed: Collection<DoomedNetwork>;
  private readonly doomedWork = new Set<Promise<void>>();
  private readonly ipam: AddressAllocator;
  /** Third-party IPAM plugins (--ipam-driver NAME), activated on first use. */
  private readonly ipamPlugins = new IpamPlugins();
  private readonly mutex = new KeyedMutex();
  readonly ports: PortMapper;
  readonly resolver = new Resolver();
  private dns: DnsServer | undefined;
  private kernel: SandboxKernel | undefined;
  private ready: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly opts: NetworkControllerOptions) {
    this.config = opts.config;
    this.store = opts.store;
    this.events = opts.events;
    this.log = opts.log;
    this.loadBuiltins = opts.drivers === undefined;
    this.registry = opts.drivers instanceof DriverRegistry ? opts.drivers : new DriverRegistry(opts.drivers ?? []);
    this.networks = new ScopedNetworks(new Collection<NetworkRecord>(opts.store, 'network/networks'));
    this.endpoints = new Collection<EndpointRecord>(opts.store, 'network/endpoints');
    this.sandboxes = new Collection<SandboxRecord>(opts.store, 'network/sandboxes');
    this.doomed = new Collection<DoomedNetwork>(opts.store, 'network/doomed');
    this.ipam = new AddressAllocator(opts.store, 'network/ipam');
    this.ports = new PortMapper(opts.log, opts.portRange, opts.portDualStack ?? false, opts.portDefaultHostIp ?? '0.0.0.0');
    this.kernel = opts.kernel;
  }

  get drivers(): DriverRegistry {
    return this.registry;
  }

  // ------------------------------------------------------------------ start

  /** Loads drivers, makes the predefined networks (first start) and their kernel objects. Idempotent. */
  init(): Promise<void> {
    this.ready ??= this.doInit().catch((e) => {
      this.ready = undefined;
      throw e;
    });
    return this.ready;
  }

  private async doInit(): Promise<void> {
    if (this.loadBuiltins) await this.registry.loadBuiltins(this.driverContext());
    const all = await this.networks.list();
    // Networks of third-party plugins: activate those plugins again (after a restart), in parallel.
    await Promise.all([...new Set(all.map((n) => n.value.driver))].filter((d) => !this.registry.has(d)).map((d) =>
      this.registry.lookup(d, { config: this.config, log: this.log })
        .catch((e: Error) => this.log.warn({ driver: d, err: e.message }, 'network plugin of existing networks not available'))));
    const byName = new Map(all.map((n) => [n.value.name, n.value]));
    if (!byName.has('bridge')) await this.createPredefined('bridge');
    if (!byName.has('host')) await this.createPredefined('host');
    if (!byName.has('none')) await this.createPredefined('none');
    // Kernel objects of existing networks may be gone (reboot): let each driver re-make them.
    const eps = await this.endpoints.list();
    for (const { value: n } of all) {
      const d = this.driverOf(n);
      if (!d?.restoreNetwork) continue;
      try {
        await d.restoreNetwork(this.driverNetwork(n), eps.filter((e) => e.value.networkId === n.id).map((e) => this.driverEndpoint(e.value)));
      } catch (e) {
        this.log.error({ network: n.name, err: (e as Error).message }, 'restoring network failed');
      }
    }
    // Networks removed before a crash whose kernel objects may be left (after the live ones, so the
    // driver knows which bridge names are in use again).
    for (const { id, value } of await this.doomed.list()) await this.finishDoomed(id, value);
    await this.refreshAllNames();
  }

  /** The rest of a removed network's deletion (driver.deleteNetwork), then its doomed record goes. Never throws. */
  private async finishDoomed(id: string, rec: DoomedNetwork): Promise<void> {
    try {
      const d = this.registry.has(rec.driver) ? this.registry.get(rec.driver) : undefined;
      await d?.deleteNetwork(rec.net);
      await this.doomed.delete(id);
    } catch (e) {
      this.log.warn({ network: rec.net.name, err: (e as Error).message }, 'deleting a removed network\'s kernel objects failed (retried at the next start)');
    }
  }

  private async createPredefined(name: 'bridge' | 'host' | 'none'): Promise<void> {
    const base = {
      id: newId(), name, created: nowRfc3339Nano(), scope: 'local' as const, internal: false, attachable: false, ingress: false,
      configOnly: false, configFrom: '', enableIPv4: true, enableIPv6: false, ipamDriver: 'default', ipamOptions: null,
      labels: {}, predefined: true, defaultBridge: false,
    };
    let rec: NetworkRecord;
    if (name === 'bridge') {
      const taken = (await this.networks.list()).flatMap((n) => n.value.subnets.map((s) => s.subnet));
      const pool = pickDefaultPool(4, taken.map((s) => parseCidr(s)), this.config.defaultAddressPools);
      if (!pool) throw new Forbidden('could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network');
      const subnet = formatCidr(pool);
      const gateway = formatIpPlus(subnet, 1n);
      rec = {
        ...base, driver: 'bridge', defaultBridge: true,
        ipamConfig: [{ Subnet: subnet }],
        subnets: [{ family: 4, subnet, gateway, aux: {}, userSubnet: false }],
        options: DEFAULT_BRIDGE_OPTIONS(this.config.defaultBridgeName),
      };
    } else {
      rec = { ...base, driver: name === 'host' ? 'host' : 'null', ipamConfig: [], subnets: [], options: {} };
    }
    await this.persistNewNetwork(rec);
    const d = this.driverOf(rec);
    if (d) {
      try {
        const state = await d.createNetwork(this.driverNetwork(rec));
        if (state) await this.networks.update(rec.id, (cur) => (cur ? { ...cur, driverState: state } : cur));
      } catch (e) {
        await this.dropNetworkRecord(rec);
        throw e;
      }
    } else if (name === 'bridge') {
      this.log.warn('bridge driver not available: the default bridge network has no kernel objects');
    }
  }

  private async getKernel(): Promise<SandboxKernel> {
    this.kernel ??= await defaultKernel();
    return this.kernel;
  }

  private async getDns(): Promise<DnsServer> {
    if (!this.dns) {
      const k = await this.getKernel();
      this.dns = new DnsServer({
        resolver: this.resolver,
        sockets: { udp: (p, ip, port) => k.udpSocket(p, ip, port), tcp: (p, ip, port) => k.tcpSocket(p, ip, port) },
        log: this.log,
        ...(this.opts.dnsListen ? { listenIp: this.opts.dnsListen.ip, listenPort: this.opts.dnsListen.port } : {}),
      });
    }
    return this.dns;
  }

  /** The DNS server (for tests and stats); undefined until a sandbox needed it. */
  get dnsServer(): DnsServer | undefined {
    return this.dns;
  }

  // ------------------------------------------------------------------ networks

  private driverContext(): DriverContext {
    return { config: this.config, log: this.log, ...(this.opts.kernelOps ? { kernel: this.opts.kernelOps } : {}) };
  }

  private driverOf(n: NetworkRecord): NetworkDriver | undefined {
    return this.registry.has(n.driver) ? this.registry.get(n.driver) : undefined;
  }

  private driverNetwork(n: NetworkRecord): DriverNetwork {
    const ipam = (fam: 4 | 6) => n.subnets.filter((s) => s.family === fam).map((s) => {
      const prefix = parseCidr(s.subnet).prefix;
      const d: DriverNetwork['ipv4'][number] = { pool: s.subnet, auxAddresses: { ...s.aux } };
      if (s.gateway) d.gateway = `${s.gateway}/${prefix}`;
      return d;
    });
    const out: DriverNetwork = {
      id: n.id, name: n.name, options: { ...n.options }, internal: n.internal, enableIPv6: n.enableIPv6, ipv4: ipam(4), ipv6: ipam(6),
    };
    if (n.driverState) out.driverState = n.driverState;
    return out;
  }

  private driverEndpoint(ep: EndpointRecord): DriverEndpoint {
    const d: DriverEndpoint = { id: ep.id, networkId: ep.networkId, options: { ...ep.options } };
    if (ep.ipv4) d.ipv4 = ep.ipv4;
    if (ep.ipv6) d.ipv6 = ep.ipv6;
    if (ep.mac) d.mac = ep.mac;
    return d;
  }

  private async persistNewNetwork(rec: NetworkRecord): Promise<void> {
    if (rec.scope === 'swarm') return this.persistSwarmNetwork(rec);
    try {
      await this.store.txn([
        { key: `network/names/${rec.name}`, expectRevision: 0, value: rec.id },
        { key: this.networks.key(rec.id), expectRevision: 0, value: JSON.stringify(rec) },
      ]);
    } catch (e) {
      if (e instanceof CasError) throw new Conflict(`network with name ${rec.name} already exists`);
      throw e;
    }
    await this.ipam.addNetwork(rec.id, rec.subnets);
  }

  /** `doomed`: the driver's work left to do, recorded in the same transaction that drops the network. */
  private async dropNetworkRecord(rec: NetworkRecord, doomed?: DoomedNetwork): Promise<void> {
    if (rec.scope === 'swarm') return this.dropSwarmNetwork(rec);
    await this.releaseRemotePools(rec);
    await this.ipam.removeNetwork(rec.id);
    await this.store.txn([
      { key: `network/names/${rec.name}`, value: null },
      { key: this.networks.key(rec.id), value: null },
      ...(doomed ? [{ key: this.doomed.key(rec.id), value: JSON.stringify(doomed) }] : []),
    ]).catch(() => undefined);
  }

  async createNetwork(req: DockerNetworkCreate): Promise<{ Id: string; Warning: string }> {
    await this.init();
    const name = typeof req.Name === 'string' ? req.Name : '';
    if (name === '') throw new InvalidParameter('network name must not be empty');
    if (PREDEFINED.has(name)) throw new Forbidden(`${name} is a pre-defined network and cannot be created`);
    // Docker takes any name that is not empty (spaces, colons, slashes too); only
    // container names have the [a-zA-Z0-9][a-zA-Z0-9_.-]+ rule.
    if (name.length > 255) throw new InvalidParameter(`invalid network name "${name.slice(0, 64)}...": longer than 255 characters`);
    // "." and ".." vanish from a request path (/networks/.. is /), a NUL cuts it: such a network could never be named again.
    if (name === '.' || name === '..' || name.includes('\0')) throw new InvalidParameter(`invalid network name "${name.replace(/\0/g, '\\x00')}": it cannot be used in a request path`);
    const driverName = req.Driver || 'bridge';
    if (req.ConfigFrom?.Network || req.ConfigOnly) throw new InvalidParameter('config-only networks are not supported');
    const driver = await this.registry.lookup(driverName, { config: this.config, log: this.log });
    if (driver.scope === 'swarm') return this.createSwarmNetwork(req, name, driver);
    if (req.Ingress) {
      // In a swarm the request goes to the managers, whose validation refuses any driver but overlay.
      if (this.cluster?.m.isManager()) throw new NotImplemented('rpc error: code = Unimplemented desc = only overlay driver is currently supported for ingress network');
      throw new Forbidden('ingress networks can only be created in a swarm');
    }
    await driver.checkSupported?.();
    for (const [k, v] of Object.entries(req.Options ?? {})) if (typeof v !== 'string') throw new InvalidParameter(`invalid option ${k}: value must be a string`);

    return this.mutex.run(NETWORK_LOCK, async () => {
      const all = (await this.networks.list()).map((n) => n.value);
      if (all.some((n) => n.name === name)) throw new Conflict(`network with name ${name} already exists`);
      if ((driverName === 'host' || driverName === 'null') && all.some((n) => n.driver === driverName)) {
        throw new Forbidden(`only one instance of "${driverName}" network is allowed`);
      }
      const enableIPv6 = req.EnableIPv6 === true;
      const enableIPv4 = req.EnableIPv4 !== false;
      const noIpam = driverName === 'host' || driverName === 'null';
      const remote = noIpam ? undefined : await this.remoteIpamPlan(req, enableIPv4, enableIPv6);
      const plan = noIpam
        ? { subnets: [] as SubnetPlan[], display: [] }
        : remote ?? planIpam({ driver: req.IPAM?.Driver ?? 'default', configs: req.IPAM?.Config ?? [], enableIPv4, enableIPv6 },
          all.flatMap((n) => n.subnets.map((s) => s.subnet)), this.config.defaultAddressPools);
      const rec: NetworkRecord = {
        id: newId(), name, created: nowRfc3339Nano(), driver: driverName, scope: driver.scope === 'swarm' ? 'swarm' : driver.scope,
        internal: req.Internal === true, attachable: req.Attachable === true, ingress: false, configOnly: false, configFrom: '',
        enableIPv4, enableIPv6, ipamDriver: req.IPAM?.Driver || 'default', ipamOptions: req.IPAM?.Options ? { ...req.IPAM.Options } : null,
        ipamConfig: plan.display, subnets: plan.subnets, options: { ...(req.Options ?? {}) }, labels: { ...(req.Labels ?? {}) },
        predefined: false, defaultBridge: false,
        ...(remote?.pools.length ? { ipamPools: remote.pools } : {}),
      };
      await this.persistNewNetwork(rec).catch(async (e: unknown) => {
        await this.releaseRemotePools(rec);
        throw e;
      });
      try {
        const state = await driver.createNetwork(this.driverNetwork(rec));
        if (state) {
          rec.driverState = state;
          await this.networks.update(rec.id, (cur) => (cur ? { ...cur, driverState: state } : cur)).catch(async (e: unknown) => {
            // The driver made it but the store did not take it: undo the kernel side too, so a failed create changes nothing.
            await driver.deleteNetwork(this.driverNetwork(rec)).catch(() => undefined);
            throw e;
          });
        }
      } catch (e) {
        await this.dropNetworkRecord(rec);
        throw e;
      }
      this.events.publish('network', 'create', rec.id, { name: rec.name, type: rec.driver });
      this.log.info({ network: rec.name, id: shortId(rec.id), subnets: rec.subnets.map((s) => s.subnet) }, 'network created');
      return { Id: rec.id, Warning: '' };
    });
  }

  /** Exact ID, exact name, then unique ID prefix (moby findUniqueNetwork). */
  private async findNetwork(term: string): Promise<NetworkRecord> {
    const all = (await this.networks.list()).map((n) => n.value);
    const byId = all.find((n) => n.id === term);
    if (byId) return byId;
    const byName = all.filter((n) => n.name === term);
    if (byName.length === 1) return byName[0]!;
    if (byName.length > 1) throw new InvalidParameter(`network ${term} is ambiguous (${byName.length} matches found based on name)`);
    const byPrefix = term.length > 0 ? all.filter((n) => n.id.startsWith(term.toLowerCase())) : [];
    if (byPrefix.length === 1) return byPrefix[0]!;
    if (byPrefix.length > 1) throw new InvalidParameter(`network ${term} is ambiguous (${byPrefix.length} matches found based on ID prefix)`);
    throw new NotFound(`network ${term} not found`);
  }

  // ------------------------------------------------------------------ hooks for swarm services (src/services)

  /** Names that services add to a network's DNS: <service> → VIP or task addresses, tasks.<service> → tasks. */
  private readonly serviceNames = new Map<string, Map<string, NameEntry[]>>();

  /** Replaces the service names of one network (empty map: none) and refreshes its DNS table. */
  async setServiceNames(networkId: string, names: Map<string, NameEntry[]>): Promise<void> {
    if (names.size) this.serviceNames.set(networkId, names);
    else this.serviceNames.delete(networkId);
    await this.refreshNames([networkId]);
  }

  /** Called once a sandbox has joined networks, before its container runs (services: the VIP balancing table). */
  private sandboxJoinHook: ((containerId: string, netnsPath: string, networkIds: string[]) => Promise<void>) | undefined;

  setSandboxJoinHook(fn: ((containerId: string, netnsPath: string, networkIds: string[]) => Promise<void>) | undefined): void {
    this.sandboxJoinHook = fn;
  }

  /** The hook never fails a join: what it sets up, the services' own reconcile loop sets up too, moments later. */
  private async runSandboxJoinHook(sb: SandboxRecord, networkIds: string[]): Promise<void> {
    if (!this.sandboxJoinHook || !sb.netnsPath) return;
    await this.sandboxJoinHook(sb.containerId, sb.netnsPath, networkIds).catch((e) => this.log.warn({ container: shortId(sb.containerId), err: (e as Error).message }, 'sandbox join hook failed'));
  }

  async resolveNetwork(idOrName: string): Promise<{ id: string; name: string; driver: string }> {
    await this.init();
    const n = await this.findNetwork(idOrName);
    return { id: n.id, name: n.name, driver: n.driver };
  }

  private async endpointsOf(networkId: string): Promise<EndpointRecord[]> {
    return (await this.endpoints.list()).map((e) => e.value).filter((e) => e.networkId === networkId).sort((a, b) => a.created - b.created);
  }

  async inspectNetwork(idOrName: string, _opts?: { verbose?: boolean; scope?: string }): Promise<DockerNetwork> {
    await this.init();
    const n = await this.findNetwork(idOrName);
    if (_opts?.scope && _opts.scope !== n.scope) throw new NotFound(`network ${idOrName} not found`);
    const out = toDockerNetwork(n, (await this.endpointsOf(n.id)).filter((e) => e.state === 'ready'));
    if (n.scope === 'swarm') await this.addSwarmView(n, out);
    return out;
  }

  async listNetworks(filters: Filters = {}): Promise<DockerNetwork[]> {
    await this.init();
    checkListFilters(filters);
    const eps = (await this.endpoints.list()).map((e) => e.value).filter((e) => e.state === 'ready');
    const out: DockerNetwork[] = [];
    const worker = this.cluster !== undefined && !this.cluster.m.isManager();
    for (const { value: n } of await this.networks.list()) {
      const mine = eps.filter((e) => e.networkId === n.id);
      // A worker sees the swarm networks it uses, and ingress (a manager sees them all).
      if (n.scope === 'swarm' && worker && !n.ingress && mine.length === 0) continue;
      // Like moby's list handler: containers are only shown by inspect.
      if (matchesListFilters(n, mine.length, filters)) out.push(toDockerNetwork(n, []));
    }
    return out;
  }

  async removeNetwork(idOrName: string): Promise<void> {
    await this.init();
    const n = await this.findNetwork(idOrName);
    if (n.predefined) throw new Forbidden(`${n.name} is a pre-defined network and cannot be removed`);
    if (n.scope === 'swarm') return this.removeSwarmNetwork(n);
    await this.mutex.run(`net:${n.id}`, async () => {
      const eps = await this.endpointsOf(n.id);
      if (eps.length > 0) {
        const list = eps.map((e) => `name:"${e.name}" id:"${shortId(e.id)}"`).join(', ');
        throw new Forbidden(`error while removing network: network ${n.name} id ${n.id} has active endpoints (${list})`);
      }
      // A plugin not active yet is looked up (it must clean up); one that is gone for good cannot, so the record just goes.
      const d = this.driverOf(n) ?? await this.registry.lookup(n.driver, { config: this.config, log: this.log })
        .catch((e: unknown) => { if (e instanceof NotFound) return undefined; throw e; });
      if (d?.retireNetwork) {
        // The fast path: out of service now, the slow kernel work (a bridge's `link del`) in the background.
        const doomed: DoomedNetwork = { driver: n.driver, net: this.driverNetwork(n) };
        await d.retireNetwork(doomed.net);
        await this.dropNetworkRecord(n, doomed);
        const work = this.finishDoomed(n.id, doomed);
        this.doomedWork.add(work);
        void work.finally(() => this.doomedWork.delete(work));
      } else {
        if (d) await d.deleteNetwork(this.driverNetwork(n));
        await this.dropNetworkRecord(n);
      }
      this.resolver.deleteNetwork(n.id);
    });
    this.events.publish('network', 'destroy', n.id, { name: n.name, type: n.driver });
    this.log.info({ network: n.name, id: shortId(n.id) }, 'network removed');
  }

  async pruneNetworks(filters: Filters = {}): Promise<string[]> {
    await this.init();
    checkPruneFilters(filters);
    const eps = (await this.endpoints.list()).map((e) => e.value);
    const removed: string[] = [];
    for (const { value: n } of await this.networks.list()) {
      if (n.predefined || eps.some((e) => e.networkId === n.id)) continue;
      if (!matchesPruneFilters(n, filters)) continue;
      try {
        await this.removeNetwork(n.id);
        removed.push(n.name);
      } catch (e) {
        // In use by now, or the driver refused: prune skips it, like Docker.
        this.log.warn({ network: n.name, err: (e as Error).message }, 'prune skipped network');
      }
    }
    if (removed.length > 0) this.events.publish('network', 'prune', '', { reclaimed: '0' });
    return removed;
  }

  // ------------------------------------------------------------------ names (DNS)

  /** Rebuilds the DNS tables of the given networks (all when omitted) from the store. */
  private async refreshNames(networkIds?: Iterable<string>): Promise<void> {
    const nets = new Map((await this.networks.list()).map((n) => [n.id, n.value]));
    const eps = (await this.endpoints.list()).map((e) => e.value).filter((e) => e.state === 'ready');
    const ids = networkIds ? [...networkIds] : [...nets.keys()];
    for (const id of ids) {
      const n = nets.get(id);
      if (!n || !hasEmbeddedDns(n)) {
        this.resolver.deleteNetwork(id);
        continue;
      }
      const names = new Map<string, NameEntry[]>();
      const reverse = new Map<string, string>();
      // Swarm networks: the endpoints of every node, from the cluster store.
      const source: Array<Pick<EndpointRecord, 'networkId' | 'ipv4' | 'ipv6' | 'name' | 'aliases' | 'containerId'>> = n.scope === 'swarm'
        ? await this.swarmEndpointsOf(id)
        : eps;
      for (const ep of source) {
        if (ep.networkId !== id) continue;
        const entry: NameEntry = {};
        if (ep.ipv4) entry.ipv4 = ep.ipv4.split('/')[0]!;
        if (ep.ipv6) entry.ipv6 = ep.ipv6.split('/')[0]!;
        for (const nm of dnsNames(ep)) {
          const key = nm.toLowerCase();
          const list = names.get(key) ?? [];
          list.push(entry);
          names.set(key, list);
        }
        if (entry.ipv4) reverse.set(entry.ipv4, `${ep.name}.${n.name}`);
        if (entry.ipv6) reverse.set(entry.ipv6, `${ep.name}.${n.name}`);
      }
      // Service names (VIPs, tasks.<service>) after the containers' own: a container name wins, as in Docker.
      for (const [nm, entries] of this.serviceNames.get(id) ?? []) {
        const key = nm.toLowerCase();
        if (!names.has(key)) names.set(key, entries);
      }
      this.resolver.setNetwork(id, { networkName: n.name, names, reverse });
    }
  }

  private async refreshAllNames(): Promise<void> {
    await this.refreshNames();
    for (const { value: sb } of await this.sandboxes.list()) await this.refreshSandboxResolver(sb);
  }

  /** Upstream servers for a sandbox: its --dns, else the daemon's --dns, else the host's resolv.conf. */
  private upstreamFor(sb: SandboxRecord): string[] {
    if (sb.dns.length > 0) return sb.dns;
    if (this.config.dns && this.config.dns.length > 0) return this.config.dns;
    return readHostResolv(this.opts.hostResolvConf).nameservers.filter((s) => s !== '127.0.0.11');
  }

  private async sandboxNetworks(sb: SandboxRecord): Promise<Array<{ ep: EndpointRecord; net: NetworkRecord }>> {
    const out: Array<{ ep: EndpointRecord; net: NetworkRecord }> = [];
    for (const id of sb.endpoints) {
      const ep = (await this.endpoints.get(id))?.value;
      const net = ep ? (await this.networks.get(ep.networkId))?.value : undefined;
      if (ep && net) out.push({ ep, net });
    }
    return out;
  }

  private async refreshSandboxResolver(sb: SandboxRecord): Promise<boolean> {
    const joined = await this.sandboxNetworks(sb);
    const dnsNets = joined.filter((j) => hasEmbeddedDns(j.net));
    if (dnsNets.length === 0 || sb.netnsPath === null) {
      this.resolver.deleteSandbox(sb.id);
      return false;
    }
    // A container only on --internal networks gets no answers from outside (its names still resolve).
    const isolated = joined.every((j) => j.net.internal || j.net.driver === 'null');
    // Legacy links (--link other:alias): alias -> other, per network, seen by this sandbox only.
    const links = new Map<string, Map<string, string>>();
    for (const j of dnsNets) {
      const m = new Map<string, string>();
      for (const l of j.ep.request.links ?? []) {
        const { name, alias } = parseLink(l);
        m.set(alias.toLowerCase(), name.toLowerCase());
      }
      if (m.size) links.set(j.net.id, m);
    }
    this.resolver.setSandbox(sb.id, dnsNets.map((j) => j.net.id), isolated ? [] : this.upstreamFor(sb), links);
    return true;
  }

  // ------------------------------------------------------------------ sandboxes

  private async getSandbox(containerId: string): Promise<SandboxRecord | undefined> {
    return (await this.sandboxes.get(containerId))?.value;
  }

  /** Writes hosts, hostname and resolv.conf of the sandbox (in place). */
  private async writeFiles(sb: SandboxRecord): Promise<void> {
    const paths = sandboxFilePaths(sb.dir);
    const joined = await this.sandboxNetworks(sb);
    const hostResolv = readHostResolv(this.opts.hostResolvConf);
    const embedded = sb.netnsPath !== null && joined.some((j) => hasEmbeddedDns(j.net));
    const addresses: string[] = [];
    for (const { ep } of joined) {
      if (ep.ipv4) addresses.push(ep.ipv4.split('/')[0]!);
      if (ep.ipv6) addresses.push(ep.ipv6.split('/')[0]!);
    }
    const host = sb.netnsPath === null;
    let hostFile: string | undefined;
    if (host) {
      try {
        hostFile = readFileSync(this.opts.hostHosts ?? '/etc/hosts', 'utf8');
      } catch {
        hostFile = '127.0.0.1\tlocalhost\n';
      }
    }
    // --add-host NAME:host-gateway means the default bridge's gateway, like Docker.
    const bridgeGw = (await this.networks.list()).find((n) => n.value.defaultBridge)?.value.subnets.find((s) => s.family === 4)?.gateway;
    const extraHosts = sb.extraHosts.map((e) => (bridgeGw ? e.replace(/([:=])host-gateway$/, `$1${bridgeGw}`) : e));
    writeInPlace(paths.hostsPath, renderHosts({
      hostname: sb.hostname, domainname: sb.domainname, addresses, extraHosts, ipv6: joined.some((j) => j.net.enableIPv6),
      ...(hostFile !== undefined ? { hostFile } : {}),
    }));
    writeInPlace(paths.hostnamePath, `${sb.hostname}\n`);
    let resolv: string;
    if (host && sb.dns.length === 0 && sb.dnsSearch.length === 0 && sb.dnsOptions.length === 0 && !(this.config.dns?.length)) {
      resolv = renderResolvConf({ nameservers: [], search: [], options: [], embedded: false, verbatim: hostResolv.raw });
    } else {
      let servers = sb.dns.length ? sb.dns : this.config.dns?.length ? this.config.dns : hostResolv.nameservers;
      // A loopback resolver of the host is unreachable from a container's own netns (Docker drops it too).
      if (!host && !embedded) servers = servers.filter((s) => !isLoopback(s));
      resolv = renderResolvConf({
        nameservers: servers,
        search: sb.dnsSearch.length ? sb.dnsSearch : hostResolv.search,
        options: sb.dnsOptions.length ? sb.dnsOptions : embedded ? [] : hostResolv.options,
        embedded,
      });
    }
    writeInPlace(paths.resolvConfPath, resolv);
  }

  private handle(sb: SandboxRecord): SandboxHandle {
    const p = sandboxFilePaths(sb.dir);
    return { id: sb.id, containerId: sb.containerId, netnsPath: sb.netnsPath, ...p };
  }

  /** Normalizes the networks a sandbox joins, checking the host/none rules. */
  private async resolveEndpointRequests(spec: SandboxSpec): Promise<Array<{ req: EndpointRequest; net: NetworkRecord }>> {
    const mode = spec.networkMode || 'default';
    const reqs: EndpointRequest[] = spec.endpoints.length > 0 ? spec.endpoints : [{ network: mode === 'default' ? 'bridge' : mode }];
    const out: Array<{ req: EndpointRequest; net: NetworkRecord }> = [];
    for (const r of reqs) {
      const net = await this.findNetwork(r.network === 'default' ? 'bridge' : r.network);
      if (out.some((o) => o.net.id === net.id)) continue;
      out.push({ req: r, net });
    }
    const special = out.find((o) => o.net.driver === 'host' || o.net.driver === 'null');
    if (special && out.length > 1) {
      if (special.net.driver === 'host') throw new InvalidParameter('container sharing network namespace with another container or host cannot join any other network');
      throw new InvalidParameter('container cannot be connected to multiple networks with one of the networks in private (none) mode');
    }
    return out;
  }

  async createSandbox(spec: SandboxSpec): Promise<SandboxHandle> {
    await this.init();
    if (spec.networkMode.startsWith('container:')) return this.joinContainerSandbox(spec);
    return this.mutex.run(`sb:${spec.containerId}`, async () => {
      if (await this.getSandbox(spec.containerId)) throw new Conflict(`sandbox for container ${spec.containerId} already exists`);
      const joins = await this.resolveEndpointRequests(spec);
      const isHost = joins.length === 1 && joins[0]!.net.driver === 'host';
      const id = newId();
      const sb: SandboxRecord = {
        id, containerId: spec.containerId, containerName: spec.containerName.replace(/^\//, ''), hostname: spec.hostname,
        domainname: spec.domainname, networkMode: spec.networkMode || 'default',
        netnsPath: isHost ? null : join(this.config.execRoot, 'netns', shortId(id)), dir: spec.dir,
        dns: [...spec.dns], dnsSearch: [...spec.dnsSearch], dnsOptions: [...spec.dnsOptions], extraHosts: [...spec.extraHosts],
        portBindings: isHost ? [] : [...spec.portBindings], exposedPorts: [...spec.exposedPorts], publishAllPorts: isHost ? false : spec.publishAllPorts,
        endpoints: [],
        ...(spec.swarmTask ? { swarmTask: true } : {}),
      };
      if (isHost && (spec.portBindings.length > 0 || spec.publishAllPorts)) {
        this.log.warn({ container: shortId(spec.containerId) }, 'Published ports are discarded when using host network mode');
      }
      const undos: Undo[] = [];
      // The sandbox record is written last, in one put: a crash before it leaves endpoints whose
      // sandbox is unknown and a netns nobody owns, and restore() removes exactly those.
      try {
        if (sb.netnsPath) {
          const k = await this.getKernel();
          const path = sb.netnsPath;
          await k.createNetns(path, !joins.some((j) => j.net.enableIPv6));
          undos.push(() => k.deleteNetns(path));
          await k.loopbackUp(path);
        }
        for (let i = 0; i < joins.length; i++) {
          const { req, net } = joins[i]!;
          const ep = await this.joinEndpoint(sb, net, req, `eth${i}`, i === 0);
          undos.push(() => this.leaveEndpoint(sb, ep, net));
          sb.endpoints.push(ep.id);
        }
        // Only on overlays: a way out through docker_gwbridge (a second interface with the default route), as Docker does.
        if (this.needsGatewayBridge(joins.map((j) => j.net))) {
          const gw = await this.findNetwork(GWBRIDGE);
          const ep = await this.joinEndpoint(sb, gw, { network: gw.id }, `eth${joins.length}`, true, `gateway_${shortId(sb.id)}`);
          undos.push(() => this.leaveEndpoint(sb, ep, gw));
          sb.endpoints.push(ep.id);
        }
        await this.refreshNames(joins.map((j) => j.net.id));
        undos.push(() => this.refreshNames(joins.map((j) => j.net.id)));
        if (await this.refreshSandboxResolver(sb)) {
          const dns = await this.getDns();
          await dns.attach(sb.id, sb.netnsPath!);
          undos.push(() => dns.detach(sb.id));
        }
        undos.push(() => this.resolver.deleteSandbox(sb.id));
        await this.runSandboxJoinHook(sb, joins.map((j) => j.net.id));
        await this.writeFiles(sb);
        await this.sandboxes.put(sb.containerId, sb, 0);
      } catch (e) {
        await runUndos(undos, this.log);
        throw e;
      }
      for (const { net } of joins) {
        this.events.publish('network', 'connect', net.id, { container: sb.containerId, name: net.name, type: net.driver });
      }
      return this.handle(sb);
    });
  }

  /** --network container:<id>: share that container's sandbox (its netns and name files). */
  private async joinContainerSandbox(spec: SandboxSpec): Promise<SandboxHandle> {
    const target = spec.networkMode.slice('container:'.length);
    const all = (await this.sandboxes.list()).map((s) => s.value);
    const other = all.find((s) => s.containerId === target) ?? all.find((s) => s.containerName === target.replace(/^\//, ''))
      ?? (() => { const m = all.filter((s) => s.containerId.startsWith(target)); return m.length === 1 ? m[0] : undefined; })();
    if (!other) throw new Conflict(`cannot join network of a non running container: ${target}`);
    return this.handle(other);
  }

  /** Next free ethN of a sandbox, also skipping names taken but not recorded yet. */
  private async nextIfNameAfter(sb: SandboxRecord, taken: string[]): Promise<string> {
    const used = new Set([...(await this.sandboxNetworks(sb)).map((j) => j.ep.ifName), ...taken]);
    for (let i = 0; ; i++) if (!used.has(`eth${i}`)) return `eth${i}`;
  }

  /** Next free ethN of a sandbox. */
  private async nextIfName(sb: SandboxRecord): Promise<string> {
    const used = new Set((await this.sandboxNetworks(sb)).map((j) => j.ep.ifName));
    for (let i = 0; ; i++) if (!used.has(`eth${i}`)) return `eth${i}`;
  }

  /**
   * One endpoint, all-or-nothing: record, addresses, driver endpoint, join,
   * published ports (when it carries the default route).
   */
  private async joinEndpoint(sb: SandboxRecord, net: NetworkRecord, req: EndpointRequest, ifName: string, isGw: boolean, epName?: string): Promise<EndpointRecord> {
    if (net.scope === 'swarm') {
      if (!this.cluster) throw new Unavailable(NOT_IN_SWARM);
      if ((!net.attachable || net.ingress) && !sb.swarmTask) throw new Forbidden(notAttachable(net.name));
    }
    const special = net.driver === 'host' || net.driver === 'null';
    const wantsIp = !!(req.ipv4Address || req.ipv6Address);
    if (wantsIp) {
      if (net.defaultBridge || special) throw new InvalidParameter('user specified IP address is supported on user defined networks only');
      const fams = new Set(net.subnets.filter((s) => s.userSubnet).map((s) => s.family));
      if ((req.ipv4Address && !fams.has(4)) || (req.ipv6Address && !fams.has(6))) {
        throw new InvalidParameter('user specified IP address is supported only when connecting to networks with user configured subnets');
      }
      if (req.ipv4Address && tryParseIp(req.ipv4Address)?.family !== 4) throw new InvalidParameter(`invalid IPv4 address: ${req.ipv4Address}`);
      if (req.ipv6Address && tryParseIp(req.ipv6Address)?.family !== 6) throw new InvalidParameter(`invalid IPv6 address: ${req.ipv6Address}`);
    }
    const linkLocal = (req.linkLocalIPs ?? []).map((ip) => {
      const parsed = tryParseIp(ip);
      if (!parsed) throw new InvalidParameter(`invalid link-local IP address: ${ip}`);
      // Docker (libnetwork CreateOptionIpam): a /16 for IPv4, a /64 for IPv6.
      return { address: formatIp(parsed.family, parsed.value), prefix: parsed.family === 4 ? 16 : 64, family: parsed.family };
    });
    for (const l of req.links ?? []) parseLink(l);
    const aliases = [...new Set(req.aliases ?? [])];
    if (aliases.length > 0 && (net.defaultBridge || special)) {
      throw new InvalidParameter('network-scoped alias is supported only for containers in user defined networks');
    }
    // lookup, not get: a plugin that came up after the daemon started is activated here.
    const driver = special ? undefined : await this.registry.lookup(net.driver, { config: this.config, log: this.log });
    if (driver && !sb.netnsPath) throw new InvalidParameter('container sharing network namespace with another container or host cannot join any other network');

    const ep: EndpointRecord = {
      id: newId(), name: epName ?? sb.containerName, networkId: net.id, containerId: sb.containerId, sandboxId: sb.id, ifName, aliases,
      request: { ...req, network: net.name }, options: { ...(req.driverOpts ?? {}) }, defaultGateway: isGw && !special, ports: [],
      state: 'creating', created: Date.now() + Number(process.hrtime.bigint() % 1000n) / 1000,
    };
    // Name check and record creation under the network's lock, so two containers of one name cannot both get in.
    await this.mutex.run(`net:${net.id}`, async () => {
      if (!(await this.networks.get(net.id))) throw new NotFound(`network ${net.name} not found`);
      const eps = await this.endpointsOf(net.id);
      if (eps.some((e) => e.name === ep.name)) throw new Forbidden(`endpoint with name ${ep.name} already exists in network ${net.name}`);
      await this.endpoints.put(ep.id, ep, 0);
    });
    const undos: Undo[] = [() => this.endpoints.delete(ep.id).then(() => undefined)];
    try {
      if (!special) {
        if (net.enableIPv4 && net.subnets.some((s) => s.family === 4)) {
          const a = await this.allocate(net, 4, ep.id, req.ipv4Address);
          if (a) {
            ep.ipv4 = a.cidr;
            if (a.gateway) ep.gatewayV4 = a.gateway;
            undos.push(() => this.releaseAddress(net.id, a.address, ep.id));
          }
        }
        if (net.enableIPv6 && net.subnets.some((s) => s.family === 6)) {
          const a = await this.allocate(net, 6, ep.id, req.ipv6Address);
          if (a) {
            ep.ipv6 = a.cidr;
            if (a.gateway) ep.gatewayV6 = a.gateway;
            undos.push(() => this.releaseAddress(net.id, a.address, ep.id));
          }
          if (sb.netnsPath) await (await this.getKernel()).enableIpv6(sb.netnsPath);
        }
        ep.mac = req.macAddress || (ep.ipv4 ? macFromIpv4(ep.ipv4.split('/')[0]!) : randomMac());
      }
      if (driver) {
        const dn = this.driverNetwork(net);
        const made = await driver.createEndpoint(dn, this.driverEndpoint(ep));
        undos.push(() => driver.deleteEndpoint(dn, made));
        if (made.mac) ep.mac = made.mac;
        const joinReq = { endpoint: made, network: dn, netnsPath: sb.netnsPath!, ifName, defaultGateway: ep.defaultGateway };
        const info = await driver.join(joinReq);
        if (info.driverState) ep.joinState = info.driverState;
        undos.push(() => driver.leave({ ...joinReq, ...(info.driverState ? { joinState: info.driverState } : {}) }));
        if (info.ipv4Gateway) ep.gatewayV4 = info.ipv4Gateway.split('/')[0]!;
        if (info.ipv6Gateway) ep.gatewayV6 = info.ipv6Gateway.split('/')[0]!;
        if (info.disableGatewayService) ep.defaultGateway = false;
        if (linkLocal.length > 0) {
          const k = await this.getKernel();
          if (linkLocal.some((l) => l.family === 6)) await k.enableIpv6(sb.netnsPath!);
          await k.addAddresses(sb.netnsPath!, ifName, linkLocal);
        }
        if (ep.defaultGateway) {
          await this.programPorts(sb, ep, net, driver, made);
          undos.push(() => this.unprogramPorts(ep, net, driver));
        }
      }
      if (net.scope === 'swarm' && this.cluster) {
        // Every node learns of it from the cluster store; this node's own peers are programmed before the API answers.
        await this.publishSwarmEndpoint(ep, net, this.cluster);
        const c = this.cluster;
        undos.push(() => c.keys.deleteEndpoint(c.m.self.id, net.id, ep.id).then(() => undefined));
        await this.syncSwarmNetwork(net.id);
      }
      ep.state = 'ready';
      await this.endpoints.put(ep.id, ep);
      return ep;
    } catch (e) {
      await runUndos(undos, this.log);
      throw e;
    }
  }

  // ------------------------------------------------------------------ remote IPAM (ipam/remote.ts)

  /** The plan of a network whose --ipam-driver is a plugin; undefined for the built-in IPAM drivers. */
  private async remoteIpamPlan(req: DockerNetworkCreate, enableIPv4: boolean, enableIPv6: boolean) {
    const name = req.IPAM?.Driver || 'default';
    if (IPAM_DRIVERS.has(name)) return undefined;
    const configs = req.IPAM?.Config ?? [];
    validateConfigs(configs, enableIPv6);
    const ipam = await this.ipamPlugins.lookup(name, this.config, this.log);
    return ipam.planNetwork({ configs, enableIPv4, enableIPv6, options: { ...(req.IPAM?.Options ?? {}) } });
  }

  private async releaseRemotePools(rec: NetworkRecord): Promise<void> {
    if (!rec.ipamPools?.length) return;
    try {
      await (await this.ipamPlugins.lookup(rec.ipamDriver, this.config, this.log)).releasePools(rec.ipamPools);
    } catch (e) {
      this.log.warn({ network: rec.name, plugin: rec.ipamDriver, err: (e as Error).message }, 'releasing IPAM plugin pools failed');
    }
  }

  /** An address from the network's IPAM plugin, booked in the daemon's allocator too. */
  private async allocateRemote(net: NetworkRecord, pool: RemotePool, owner: string, preferred?: string) {
    const ipam = await this.ipamPlugins.lookup(net.ipamDriver, this.config, this.log);
    const got = await ipam.requestAddress(pool.poolId, preferred ?? '', ipam.addressOptions());
    try {
      return await this.ipamOf(net).allocate(net.id, pool.family, owner, got.address);
    } catch (e) {
      await ipam.releaseAddress(pool.poolId, got.address).catch(() => undefined);
      throw e;
    }
  }

  /** Frees an endpoint's address in the allocator and, for an IPAM plugin's network, at the plugin. */
  private async releaseAddress(networkId: string, address: string, owner: string): Promise<void> {
    const net = (await this.networks.get(networkId))?.value;
    await (net ? this.ipamOf(net) : this.ipam).release(networkId, address, owner);
    const ip = address.split('/')[0]!;
    const pool = net?.ipamPools?.find((p) => p.family === (ip.includes(':') ? 6 : 4));
    if (net && pool) await (await this.ipamPlugins.lookup(net.ipamDriver, this.config, this.log)).releaseAddress(pool.poolId, ip);
  }

  private async allocate(net: NetworkRecord, fam: 4 | 6, owner: string, preferred?: string) {
    try {
      const pool = net.ipamPools?.find((p) => p.family === fam);
      if (pool) return await this.allocateRemote(net, pool, owner, preferred || undefined);
      return await this.ipamOf(net).allocate(net.id, fam, owner, preferred || undefined);
    } catch (e) {
      if (e instanceof InvalidParameter && /no configured subnet/.test(e.message)) {
        throw new InvalidParameter(`invalid config for network ${net.name}: invalid endpoint settings:\n${e.message}`);
      }
      throw e;
    }
  }

  private async programPorts(sb: SandboxRecord, ep: EndpointRecord, net: NetworkRecord, driver: NetworkDriver, dep: DriverEndpoint): Promise<void> {
    if (sb.portBindings.length === 0 && !(sb.publishAllPorts && sb.exposedPorts.length > 0)) return;
    if (!ep.ipv4) return;
    const containerIp = ep.ipv4.split('/')[0]!;
    try {
      const { bindings, picked } = await this.ports.reserve(ep.id, {
        bindings: sb.portBindings, exposed: sb.exposedPorts, publishAll: sb.publishAllPorts, containerIp,
        ...(sb.pickedPorts ? { picked: sb.pickedPorts } : {}),
        ...(hostBinding(net) ? { defaultHostIp: hostBinding(net)! } : {}),
      });
      try {
        await driver.programExternalConnectivity?.(this.driverNetwork(net), dep, driverBindings(bindings));
      } catch (e) {
        await this.ports.release(ep.id);
        throw e;
      }
      ep.ports = bindings;
      sb.pickedPorts = { ...(sb.pickedPorts ?? {}), ...picked };
    } catch (e) {
      const msg = `driver failed programming external connectivity on endpoint ${ep.name} (${ep.id}): ${(e as Error).message}`;
      throw e instanceof CoveError ? new CoveError(msg, e.status) : new SystemError(msg);
    }
  }

  private async unprogramPorts(ep: EndpointRecord, net: NetworkRecord, driver: NetworkDriver | undefined): Promise<void> {
    if (ep.ports.length > 0 && driver?.revokeExternalConnectivity) {
      await driver.revokeExternalConnectivity(this.driverNetwork(net), this.driverEndpoint(ep));
    }
    await this.ports.release(ep.id);
    ep.ports = [];
  }

  /** Undoes joinEndpoint; every step is attempted even if one fails (best effort, logged). */
  private async leaveEndpoint(sb: SandboxRecord, ep: EndpointRecord, net: NetworkRecord | undefined): Promise<void> {
    const special = !net || net.driver === 'host' || net.driver === 'null';
    const driver = net && !special && this.registry.has(net.driver) ? this.registry.get(net.driver) : undefined;
    const step = async (what: string, fn: () => Promise<unknown> | unknown) => {
      try {
        await fn();
      } catch (e) {
        this.log.warn({ endpoint: shortId(ep.id), step: what, err: (e as Error).message }, 'leaving network: step failed');
      }
    };
    // Swarm networks: other nodes drop it as a peer and a name first.
    if (this.cluster && (!net || net.scope === 'swarm')) {
      const c = this.cluster;
      await step('cluster record', () => c.keys.deleteEndpoint(c.m.self.id, ep.networkId, ep.id));
    }
    if (net) await step('ports', () => this.unprogramPorts(ep, net, driver));
    else await step('ports', () => this.ports.release(ep.id));
    if (driver && net && sb.netnsPath) {
      const dn = this.driverNetwork(net);
      const dep = this.driverEndpoint(ep);
      await step('leave', () => driver.leave({
        endpoint: dep, network: dn, netnsPath: sb.netnsPath!, ifName: ep.ifName, defaultGateway: ep.defaultGateway,
        ...(ep.joinState ? { joinState: ep.joinState } : {}),
      }));
      await step('deleteEndpoint', () => driver.deleteEndpoint(dn, dep));
    }
    if (ep.ipv4) await step('release v4', () => this.releaseAddress(ep.networkId, ep.ipv4!, ep.id));
    if (ep.ipv6) await step('release v6', () => this.releaseAddress(ep.networkId, ep.ipv6!, ep.id));
    await step('record', () => this.endpoints.delete(ep.id));
  }

  async deleteSandbox(containerId: string): Promise<void> {
    await this.init();
    await this.mutex.run(`sb:${containerId}`, async () => {
      const sb = await this.getSandbox(containerId);
      if (!sb) return;
      await this.teardownSandbox(sb, true);
    });
  }

  private async teardownSandbox(sb: SandboxRecord, emit: boolean): Promise<void> {
    if (this.dns) await this.dns.detach(sb.id);
    this.resolver.deleteSandbox(sb.id);
    const joined = await this.sandboxNetworks(sb);
    // Also endpoints of this sandbox that never made it into its list (crash while joining).
    const stray = (await this.endpoints.list()).map((e) => e.value).filter((e) => e.sandboxId === sb.id && !sb.endpoints.includes(e.id));
    const nets = new Map((await this.networks.list()).map((n) => [n.id, n.value]));
    for (const { ep, net } of [...joined].reverse()) {
      await this.leaveEndpoint(sb, ep, net);
      if (emit) this.events.publish('network', 'disconnect', net.id, { container: sb.containerId, name: net.name, type: net.driver });
    }
    for (const ep of stray) await this.leaveEndpoint(sb, ep, nets.get(ep.networkId));
    if (sb.netnsPath) {
      try {
        await (await this.getKernel()).deleteNetns(sb.netnsPath);
      } catch (e) {
        this.log.warn({ netns: sb.netnsPath, err: (e as Error).message }, 'deleting netns failed');
      }
    }
    await this.sandboxes.delete(sb.containerId);
    await this.refreshNames(new Set([...joined.map((j) => j.net.id), ...stray.map((e) => e.networkId)]));
  }

  async connect(containerId: string, req: EndpointRequest): Promise<void> {
    await this.init();
    await this.mutex.run(`sb:${containerId}`, async () => {
      const sb = await this.getSandbox(containerId);
      if (!sb) throw new Conflict(`container ${containerId} is not running`);
      const net = await this.findNetwork(req.network);
      const joined = await this.sandboxNetworks(sb);
      if (sb.netnsPath === null || joined.some((j) => j.net.driver === 'host')) {
        throw new InvalidParameter('container sharing network namespace with another container or host cannot join any other network');
      }
      if (net.driver === 'host') throw new InvalidParameter('container cannot be disconnected from host network or connected to host network');
      if (joined.some((j) => j.net.driver === 'null') || net.driver === 'null') {
        throw new InvalidParameter('container cannot be connected to multiple networks with one of the networks in private (none) mode');
      }
      if (joined.some((j) => j.net.id === net.id)) throw new Forbidden(`endpoint with name ${sb.containerName} already exists in network ${net.name}`);
      const ifName = await this.nextIfName(sb);
      const isGw = !joined.some((j) => j.ep.defaultGateway);
      const ep = await this.joinEndpoint(sb, net, req, ifName, isGw);
      if (isGw && net.scope === 'swarm' && !joined.some((j) => j.net.name === GWBRIDGE) && this.needsGatewayBridge([...joined.map((j) => j.net), net])) {
        // An overlay gives no default route: a container with none yet gets docker_gwbridge, as at start.
        try {
          const gw = await this.findNetwork(GWBRIDGE);
          const gep = await this.joinEndpoint(sb, gw, { network: gw.id }, await this.nextIfNameAfter(sb, [ifName]), true, `gateway_${shortId(sb.id)}`);
          sb.endpoints.push(gep.id);
        } catch (e) {
          await this.leaveEndpoint(sb, ep, net);
          throw e;
        }
      }
      try {
        sb.endpoints.push(ep.id);
        await this.sandboxes.update(sb.containerId, (cur) => (cur ? { ...cur, endpoints: [...sb.endpoints], pickedPorts: sb.pickedPorts ?? cur.pickedPorts } : cur));
        await this.refreshNames([net.id]);
        if (await this.refreshSandboxResolver(sb)) await (await this.getDns()).attach(sb.id, sb.netnsPath);
        await this.runSandboxJoinHook(sb, [...joined.map((j) => j.net.id), net.id]);
        await this.writeFiles(sb);
      } catch (e) {
        await this.leaveEndpoint(sb, ep, net);
        sb.endpoints = sb.endpoints.filter((id) => id !== ep.id);
        await this.sandboxes.update(sb.containerId, (cur) => (cur ? { ...cur, endpoints: [...sb.endpoints] } : cur));
        await this.refreshNames([net.id]);
        await this.refreshSandboxResolver(sb);
        throw e;
      }
      this.events.publish('network', 'connect', net.id, { container: sb.containerId, name: net.name, type: net.driver });
    });
  }

  async disconnect(containerId: string, network: string, force: boolean): Promise<void> {
    await this.init();
    await this.mutex.run(`sb:${containerId}`, async () => {
      const sb = await this.getSandbox(containerId);
      let net: NetworkRecord;
      try {
        net = await this.findNetwork(network);
      } catch (e) {
        if (!(force && e instanceof NotFound && sb)) throw e;
        // Forced disconnect from a network that is gone: drop endpoints whose network no longer exists.
        const joined = await this.sandboxNetworks(sb);
        const dangling = sb.endpoints.filter((id) => !joined.some((j) => j.ep.id === id));
        for (const id of dangling) {
          const ep = (await this.endpoints.get(id))?.value;
          if (ep) await this.leaveEndpoint(sb, ep, undefined);
        }
        sb.endpoints = sb.endpoints.filter((id) => !dangling.includes(id));
        await this.sandboxes.update(sb.containerId, (cur) => (cur ? { ...cur, endpoints: [...sb.endpoints] } : cur));
        return;
      }
      if (!sb) throw new Forbidden(`container ${containerId} is not connected to network ${net.name}`);
      const joined = await this.sandboxNetworks(sb);
      const hit = joined.find((j) => j.net.id === net.id);
      if (!hit) throw new Forbidden(`container ${containerId} is not connected to network ${net.name}`);
      if (net.driver === 'host') throw new InvalidParameter('container cannot be disconnected from host network or connected to host network');
      await this.leaveEndpoint(sb, hit.ep, net);
      sb.endpoints = sb.endpoints.filter((id) => id !== hit.ep.id);
      // The last overlay gone: so is the way out through docker_gwbridge that came with it.
      const rest = joined.filter((j) => j.ep.id !== hit.ep.id);
      const gwb = rest.find((j) => j.net.name === GWBRIDGE && j.ep.name.startsWith('gateway_'));
      if (gwb && !this.needsGatewayBridge(rest.filter((j) => j !== gwb).map((j) => j.net))) {
        await this.leaveEndpoint(sb, gwb.ep, gwb.net);
        sb.endpoints = sb.endpoints.filter((id) => id !== gwb.ep.id);
        if (gwb.ep.defaultGateway) await this.promoteGateway(sb, rest.filter((j) => j !== gwb));
      }
      await this.sandboxes.update(sb.containerId, (cur) => (cur ? { ...cur, endpoints: [...sb.endpoints] } : cur));
      if (hit.ep.defaultGateway) await this.promoteGateway(sb, joined.filter((j) => j.ep.id !== hit.ep.id));
      await this.refreshNames([net.id]);
      if (!(await this.refreshSandboxResolver(sb)) && this.dns) await this.dns.detach(sb.id);
      await this.writeFiles(sb);
      this.events.publish('network', 'disconnect', net.id, { container: sb.containerId, name: net.name, type: net.driver });
    });
  }

  /**
   * The network that gave the default route is gone: the next endpoint with a
   * gateway takes over the route and the published ports (as libnetwork does).
   * Best effort: the container keeps its other networks either way.
   */
  private async promoteGateway(sb: SandboxRecord, remaining: Array<{ ep: EndpointRecord; net: NetworkRecord }>): Promise<void> {
    const next = remaining.find((j) => !j.net.internal && (j.ep.gatewayV4 || j.ep.gatewayV6) && this.driverOf(j.net));
    if (!next || !sb.netnsPath) return;
    const { ep, net } = next;
    try {
      const gws: { v4?: string; v6?: string } = {};
      if (ep.gatewayV4) gws.v4 = ep.gatewayV4;
      if (ep.gatewayV6) gws.v6 = ep.gatewayV6;
      await (await this.getKernel()).setDefaultRoute(sb.netnsPath, ep.ifName, gws);
      ep.defaultGateway = true;
      await this.programPorts(sb, ep, net, this.driverOf(net)!, this.driverEndpoint(ep));
      await this.endpoints.put(ep.id, ep);
      await this.sandboxes.update(sb.containerId, (cur) => (cur ? { ...cur, pickedPorts: sb.pickedPorts ?? cur.pickedPorts } : cur));
    } catch (e) {
      this.log.warn({ container: shortId(sb.containerId), network: net.name, err: (e as Error).message }, 'moving the default route failed');
    }
  }

  async networkSettings(containerId: string): Promise<DockerNetworkSettings | undefined> {
    await this.init();
    let sb = await this.getSandbox(containerId);
    if (!sb) return undefined;
    const joined = await this.sandboxNetworks(sb);
    sb = { ...sb };
    const out = networkSettings(sb, joined.map((j) => j.ep), new Map(joined.map((j) => [j.net.id, j.net])));
    // The docker_gwbridge endpoint of an overlay container is not one of its networks to Docker (its published ports are shown).
    if (joined.some((j) => j.net.name === GWBRIDGE && j.ep.name.startsWith('gateway_'))) delete out.Networks[GWBRIDGE];
    return out;
  }

  async renameContainer(containerId: string, newName: string): Promise<void> {
    await this.init();
    const name = newName.replace(/^\//, '');
    await this.mutex.run(`sb:${containerId}`, async () => {
      const sb = await this.getSandbox(containerId);
      if (!sb) return;
      const joined = await this.sandboxNetworks(sb);
      for (const { ep, net } of joined) {
        await this.mutex.run(`net:${net.id}`, async () => {
          const others = await this.endpointsOf(net.id);
          if (others.some((e) => e.name === name && e.id !== ep.id)) throw new Conflict(`endpoint with name ${name} already exists in network ${net.name}`);
        });
      }
      for (const { ep } of joined) await this.endpoints.update(ep.id, (cur) => (cur ? { ...cur, name } : cur));
      await this.sandboxes.update(containerId, (cur) => (cur ? { ...cur, containerName: name } : cur));
      await this.refreshNames(joined.map((j) => j.net.id));
    });
  }

  // ------------------------------------------------------------------ restore

  async restore(liveContainerIds: Set<string>): Promise<void> {
    await this.init();
    const k = await this.getKernel();
    for (const { value: sb } of await this.sandboxes.list()) {
      // The swarm's ingress sandbox (src/services/ingress.ts) belongs to no container: it lives while its namespace does.
      const alive = (liveContainerIds.has(sb.containerId) || sb.containerId === INGRESS_SANDBOX) && (sb.netnsPath === null || existsSync(sb.netnsPath));
      if (!alive) {
        this.log.info({ container: shortId(sb.containerId) }, 'removing sandbox of a container that is gone');
        await this.mutex.run(`sb:${sb.containerId}`, () => this.teardownSandbox(sb, false));
      }
    }
    // Endpoints whose sandbox is gone (crash between records) and half-made ones.
    const sandboxIds = new Set((await this.sandboxes.list()).map((s) => s.value.id));
    const nets = new Map((await this.networks.list()).map((n) => [n.id, n.value]));
    for (const { value: ep } of await this.endpoints.list()) {
      if (!sandboxIds.has(ep.sandboxId)) {
        await this.leaveEndpoint({ netnsPath: null } as SandboxRecord, ep, nets.get(ep.networkId));
      }
    }
    const eps = (await this.endpoints.list()).map((e) => e.value);
    const epIds = new Set(eps.map((e) => e.id));
    // Addresses held by endpoints that no longer exist.
    // (Swarm networks: other nodes hold addresses there too; this node's are reconciled at attachCluster.)
    for (const n of nets.values()) if (n.scope !== 'swarm') await this.ipam.releaseAllExcept(n.id, (owner) => epIds.has(owner));
    // Drivers: re-make kernel objects, drop leftovers.
    for (const n of nets.values()) {
      const d = this.driverOf(n);
      if (!d?.restoreNetwork) continue;
      try {
        await d.restoreNetwork(this.driverNetwork(n), eps.filter((e) => e.networkId === n.id).map((e) => this.driverEndpoint(e)));
      } catch (e) {
        this.log.error({ network: n.name, err: (e as Error).message }, 'restoring network failed');
      }
    }
    // netns files nobody owns (a crash between createNetns and the record).
    const nsDir = join(this.config.execRoot, 'netns');
    const owned = new Set((await this.sandboxes.list()).map((s) => s.value.netnsPath).filter((p): p is string => !!p));
    if (existsSync(nsDir)) {
      for (const f of readdirSync(nsDir)) {
        const p = join(nsDir, f);
        if (!owned.has(p)) {
          try {
            await k.deleteNetns(p);
          } catch (e) {
            this.log.warn({ netns: p, err: (e as Error).message }, 'removing orphan netns failed');
          }
        }
      }
    }
    // Live sandboxes: DNS sockets, port reservations and files again (each step on its own: one failure does not skip the others).
    await this.refreshAllNames();
    for (const { value: sb } of await this.sandboxes.list()) {
      const fail = (what: string) => (e: unknown) =>
        this.log.error({ container: shortId(sb.containerId), step: what, err: (e as Error).message }, 'restoring sandbox failed');
      await (async () => {
        if (await this.refreshSandboxResolver(sb)) await (await this.getDns()).attach(sb.id, sb.netnsPath!);
      })().catch(fail('dns'));
      for (const { ep, net } of await this.sandboxNetworks(sb)) {
        if (ep.ports.length === 0 || !ep.ipv4) continue;
        await (async () => {
          const { bindings } = await this.ports.reserve(ep.id, {
            bindings: ep.ports.map((b) => ({ containerPort: b.containerPort, containerPortEnd: b.containerPortEnd, protocol: b.proto, hostIp: b.hostIp, hostPort: b.hostPort, hostPortEnd: b.hostPortEnd })),
            exposed: [], publishAll: false, containerIp: ep.ipv4!.split('/')[0]!,
          });
          await this.driverOf(net)?.programExternalConnectivity?.(this.driverNetwork(net), this.driverEndpoint(ep), driverBindings(bindings));
        })().catch(fail('ports'));
      }
      await this.writeFiles(sb).catch(fail('files'));
    }
  }


  // ------------------------------------------------------------------ swarm scope (ClusterAware)

  /**
   * The node joined (or started in) a swarm: swarm networks become visible,
   * docker_gwbridge exists here, a manager makes `ingress` if the cluster has
   * none, and store watches keep overlay peers and DNS in step with every
   * node. `opts` carries swarm init's --default-addr-pool /
   * --default-addr-pool-mask-length (recorded once, by the first manager).
   */
  async attachCluster(m: Membership, opts: { defaultAddrPool?: string[]; subnetSize?: number } = {}): Promise<void> {
    await this.init();
    if (this.cluster) await this.stopCluster();
    const keys = new ClusterKeys(m.store);
    const c: ClusterState = { m, keys, ipam: new AddressAllocator(m.store, 'ipam/addr'), stops: [], syncing: new Map(), again: new Set() };
    this.cluster = c;
    for (const d of this.registry.names()) this.registry.get(d).setCluster?.({ nodeId: m.self.id, dataPathAddr: m.self.dataPathAddr, store: m.store, isManager: () => m.isManager() });
    if (m.isManager() && opts.defaultAddrPool?.length) {
      const pools = opts.defaultAddrPool.map((base) => ({ base, size: opts.subnetSize ?? 24 }));
      await m.store.put('ipam/config', JSON.stringify({ pools }), 0).catch(() => undefined); // first init wins
    }
    c.stops.push(m.store.watch('endpoints/', (ev) => {
      const nid = networkOfEndpointKey(ev.kv.key);
      if (nid) this.scheduleSwarmSync(nid);
    }));
    c.stops.push(m.store.watch('networks/', (ev) => {
      const rec = JSON.parse(ev.kv.value) as NetworkRecord;
      this.networks.apply(rec.id, ev.type === 'put' ? rec : undefined, ev.kv.revision);
      if (ev.type === 'delete') void this.forgetSwarmNetwork(rec);
    }));
    this.networks.attach(keys.networks, await keys.networks.list());
    if (!(await this.networks.list()).some((n) => n.value.name === GWBRIDGE)) {
      await this.createNetwork({ Name: GWBRIDGE, Driver: 'bridge', Options: { ...GWBRIDGE_OPTIONS } }).catch((e: Error) => {
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
  private async ensureDefaultIngress(c: ClusterState): Promise<void> {
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
      const { Id } = await this.createSwarmNetwork({
        Name: 'ingress', Driver: 'overlay', Ingress: true, IPAM: { Driver: 'default', Config: [{ Subnet: '10.0.0.0/24', Gateway: '10.0.0.1' }] },
      }, 'ingress', await this.registry.lookup('overlay', { config: this.config, log: this.log }));
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
    const c = this.cluster;
    if (!c) return;
    for (const { value: sb } of await this.sandboxes.list()) {
      for (const { net } of await this.sandboxNetworks(sb)) {
        if (net.scope !== 'swarm') continue;
        await this.disconnect(sb.containerId, net.id, true).catch((e: Error) =>
          this.log.warn({ container: shortId(sb.containerId), network: net.name, err: e.message }, 'leaving swarm network failed'));
      }
    }
    await this.stopCluster();
  }

  /** Stops following the cluster (daemon shutdown: containers keep their swarm networks). */
  private async stopCluster(): Promise<void> {
    const c = this.cluster;
    if (!c) return;
    for (const stop of c.stops) stop();
    await Promise.all([...c.syncing.values()]).catch(() => undefined);
    this.cluster = undefined;
    this.networks.detach();
    for (const d of this.registry.names()) this.registry.get(d).setCluster?.(undefined);
  }

  /**
   * After a restart (or a rejoin): this node's cluster endpoints that have no
   * local endpoint any more go (with their addresses); swarm networks in use
   * here are adopted or rebuilt by their driver, the others cleaned up.
   */
  private async reconcileSwarm(c: ClusterState): Promise<void> {
    const local = new Map((await this.endpoints.list()).map((e) => [e.id, e.value]));
    for (const e of await c.keys.allEndpoints()) {
      if (e.nodeId !== c.m.self.id || local.has(e.id)) continue;
      await c.keys.deleteEndpoint(e.nodeId, e.networkId, e.id).catch(() => undefined);
      for (const a of [e.ipv4, e.ipv6]) if (a) await c.ipam.release(e.networkId, a, e.id).catch(() => undefined);
    }
    for (const { value: n } of await c.keys.networks.list()) {
      const d = this.driverOf(n);
      const mine = [...local.values()].filter((e) => e.networkId === n.id);
      try {
        await d?.restoreNetwork?.(this.driverNetwork(n), mine.map((e) => this.driverEndpoint(e)));
        if (mine.length > 0) {
          for (const e of mine) if (e.state === 'ready') await this.publishSwarmEndpoint(e, n, c);
          await this.syncSwarmNetwork(n.id);
        }
      } catch (e) {
        this.log.error({ network: n.name, err: (e as Error).message }, 'restoring swarm network failed');
      }
    }
    for (const { value: sb } of await this.sandboxes.list()) await this.refreshSandboxResolver(sb).catch(() => undefined);
  }

  private needsGatewayBridge(nets: NetworkRecord[]): boolean {
    if (!this.cluster) return false;
    return nets.some((n) => n.scope === 'swarm' && !n.internal) && !nets.some((n) => n.scope !== 'swarm' && !n.internal && n.driver !== 'null');
  }

  private async publishSwarmEndpoint(ep: EndpointRecord, net: NetworkRecord, c: ClusterState): Promise<void> {
    const rec: SwarmEndpoint = {
      id: ep.id, networkId: net.id, name: ep.name, aliases: ep.aliases, containerId: ep.containerId,
      nodeId: c.m.self.id, nodeName: c.m.self.hostname, underlay: c.m.self.dataPathAddr, mac: ep.mac ?? '',
      ...(ep.ipv4 ? { ipv4: ep.ipv4 } : {}), ...(ep.ipv6 ? { ipv6: ep.ipv6 } : {}),
    };
    await c.keys.putEndpoint(rec);
  }

  private async swarmEndpointsOf(networkId: string): Promise<SwarmEndpoint[]> {
    if (!this.cluster) return [];
    return this.cluster.keys.endpointsOf(networkId);
  }

  /** A watch said endpoints of the network changed: one sync at a time per network, the last change always seen. */
  private scheduleSwarmSync(networkId: string): void {
    const c = this.cluster;
    if (!c) return;
    if (c.syncing.has(networkId)) {
      c.again.add(networkId);
      return;
    }
    const p = (async () => {
      do {
        c.again.delete(networkId);
        // Only hosts with an endpoint on it care (the others sync when a container of theirs joins).
        if (!(await this.endpoints.list()).some((e) => e.value.networkId === networkId)) continue;
        await this.syncSwarmNetwork(networkId).catch((e: Error) => this.log.warn({ network: networkId, err: e.message }, 'syncing swarm network failed'));
      } while (c.again.has(networkId) && this.cluster === c);
      c.syncing.delete(networkId);
    })();
    c.syncing.set(networkId, p);
  }

  /** Overlay peers and DNS names of a swarm network from the cluster store (the reconcile step of the watch). */
  private async syncSwarmNetwork(networkId: string): Promise<void> {
    const c = this.cluster;
    if (!c) return;
    const net = (await this.networks.get(networkId))?.value;
    if (!net || net.scope !== 'swarm') return;
    const eps = await c.keys.endpointsOf(networkId);
    const d = this.driverOf(net);
    await d?.syncPeers?.(this.driverNetwork(net), eps.filter((e) => e.nodeId !== c.m.self.id).map(toPeer));
    await this.refreshNames([networkId]);
  }

  /** A swarm network was removed (on some manager): whatever is left of it here goes. */
  private async forgetSwarmNetwork(rec: NetworkRecord): Promise<void> {
    // Endpoints still here (the ingress sandbox of this node; tasks the agent has not stopped yet) leave first.
    for (const { value: listed } of await this.sandboxes.list()) {
      await this.mutex.run(`sb:${listed.containerId}`, async () => {
        const sb = await this.getSandbox(listed.containerId);
        if (!sb) return;
        const gone: string[] = [];
        for (const epId of sb.endpoints) {
          const ep = (await this.endpoints.get(epId))?.value;
          if (ep?.networkId !== rec.id) continue;
          await this.leaveEndpoint(sb, ep, rec);
          gone.push(epId);
        }
        if (gone.length) await this.sandboxes.update(sb.containerId, (cur) => (cur ? { ...cur, endpoints: cur.endpoints.filter((id) => !gone.includes(id)) } : cur));
      }).catch((e: Error) => this.log.warn({ network: rec.name, container: shortId(listed.containerId), err: e.message }, 'leaving a removed swarm network failed'));
    }
    try {
      await this.driverOf(rec)?.deleteNetwork(this.driverNetwork(rec));
    } catch (e) {
      this.log.warn({ network: rec.name, err: (e as Error).message }, 'removing swarm network from this host failed');
    }
    this.resolver.deleteNetwork(rec.id);
  }

  private ipamOf(net: Pick<NetworkRecord, 'scope'>): AddressAllocator {
    if (net.scope !== 'swarm') return this.ipam;
    if (!this.cluster) throw new Unavailable(NOT_IN_SWARM);
    return this.cluster.ipam;
  }

  private async createSwarmNetwork(req: DockerNetworkCreate, name: string, driver: NetworkDriver): Promise<{ Id: string; Warning: string }> {
    const c = this.cluster;
    if (!c) throw new Unavailable(NOT_IN_SWARM);
    if (!c.m.isManager()) throw new Forbidden(WORKER_CREATE);
    // swarmkit's validateNetworkSpec, in its order.
    if (req.Ingress && driver.name !== 'overlay') throw new NotImplemented('rpc error: code = Unimplemented desc = only overlay driver is currently supported for ingress network');
    if (req.Ingress && req.Attachable) throw new InvalidParameter('rpc error: code = InvalidArgument desc = ingress network cannot be attachable');
    for (const [k, v] of Object.entries(req.Options ?? {})) if (typeof v !== 'string') throw new InvalidParameter(`invalid option ${k}: value must be a string`);
    const enableIPv6 = req.EnableIPv6 === true;
    return this.mutex.run(NETWORK_LOCK, async () => {
      for (let attempt = 0; ; attempt++) {
        const all = (await this.networks.list()).map((n) => n.value);
        if (all.some((n) => n.name === name)) throw new Conflict(`network with name ${name} already exists`);
        const swarmNets = all.filter((n) => n.scope === 'swarm');
        if (req.Ingress) {
          const ing = swarmNets.find((n) => n.ingress);
          if (ing) throw new Conflict(`rpc error: code = AlreadyExists desc = ingress network (${ing.id}) is already present`);
        }
        const plan = planIpam({ driver: req.IPAM?.Driver ?? 'default', configs: req.IPAM?.Config ?? [], enableIPv4: true, enableIPv6 },
          swarmNets.flatMap((n) => n.subnets.map((s) => s.subnet)), await c.keys.pools());
        const used = new Set(swarmNets.map((n) => Number((n.options[OPT_VNI] ?? '').split(',')[0])));
        let vni = FIRST_VNI;
        while (used.has(vni)) vni++;
        const rec: NetworkRecord = {
          id: newSwarmId(), name, created: nowRfc3339Nano(), driver: driver.name, scope: 'swarm',
          internal: req.Internal === true, attachable: req.Attachable === true, ingress: req.Ingress === true, configOnly: false, configFrom: '',
          enableIPv4: true, enableIPv6, ipamDriver: req.IPAM?.Driver || 'default', ipamOptions: null,
          ipamConfig: plan.display.map((d, i) => ({ ...d, ...(plan.subnets[i]?.gateway && !d.Gateway ? { Gateway: plan.subnets[i]!.gateway } : {}) })),
          subnets: plan.subnets, options: { ...(req.Options ?? {}), [OPT_VNI]: String(vni) }, labels: { ...(req.Labels ?? {}) },
          predefined: false, defaultBridge: false,
        };
        await driver.createNetwork(this.driverNetwork(rec)); // checks the options; nothing in the kernel until a container joins
        try {
          await this.persistNewNetwork(rec);
        } catch (e) {
          // Another manager took the name, the VNI or the subnet in the meantime: look again.
          if (e instanceof CasError && attempt < 20) continue;
          throw e;
        }
        this.events.publish('network', 'create', rec.id, { name: rec.name, type: rec.driver });
        this.log.info({ network: rec.name, id: rec.id, vni, subnets: rec.subnets.map((s) => s.subnet) }, 'swarm network created');
        return { Id: rec.id, Warning: '' };
      }
    });
  }

  private async persistSwarmNetwork(rec: NetworkRecord): Promise<void> {
    const c = this.cluster;
    if (!c) throw new Unavailable(NOT_IN_SWARM);
    await c.ipam.addNetwork(rec.id, rec.subnets); // before the record: a network is never seen without its addresses
    let rev: number;
    try {
      rev = await c.m.store.txn([
        { key: `netnames/${rec.name}`, expectRevision: 0, value: rec.id },
        { key: `networks/${rec.id}`, expectRevision: 0, value: JSON.stringify(rec) },
        { key: `ipam/vni/${rec.options[OPT_VNI]}`, expectRevision: 0, value: rec.id },
        ...rec.subnets.map((s) => ({ key: subnetKey(s.subnet), expectRevision: 0, value: rec.id })),
      ]);
    } catch (e) {
      await c.ipam.removeNetwork(rec.id).catch(() => undefined);
      throw e;
    }
    this.networks.apply(rec.id, rec, rev);
  }

  private async dropSwarmNetwork(rec: NetworkRecord): Promise<void> {
    const c = this.cluster;
    if (!c) return;
    await c.m.store.txn([
      { key: `netnames/${rec.name}`, value: null },
      { key: `networks/${rec.id}`, value: null },
      { key: `ipam/vni/${rec.options[OPT_VNI]}`, value: null },
      ...rec.subnets.map((s) => ({ key: subnetKey(s.subnet), value: null })),
    ]);
    this.networks.apply(rec.id, undefined, Number.MAX_SAFE_INTEGER);
    await c.ipam.removeNetwork(rec.id);
  }

  private async removeSwarmNetwork(n: NetworkRecord): Promise<void> {
    const c = this.cluster;
    if (!c) throw new Unavailable(NOT_IN_SWARM);
    if (!c.m.isManager()) throw new Unavailable(WORKER_MODIFY);
    // Services that name the network, or need the routing mesh, keep it (swarmkit's answers, from src/services).
    await this.removalGuard?.({ id: n.id, name: n.name, ingress: n.ingress });
    // The ingress network's endpoints are the nodes' ingress sandboxes (no
    // container can join it, and the guard kept every service that needs
    // it): like swarmkit, the record goes and each node removes its own part.
    if (!n.ingress) await this.drainTaskEndpoints(n.id);
    await this.mutex.run(`net:${n.id}`, async () => {
      const eps = n.ingress ? [] : await c.keys.endpointsOf(n.id);
      if (eps.length > 0) {
        const list = eps.map((e) => `name:"${e.name}" id:"${shortId(e.id)}"`).join(', ');
        throw new Forbidden(`error while removing network: network ${n.name} id ${n.id} has active endpoints (${list})`);
      }
      await this.dropSwarmNetwork(n);
    });
    await this.forgetSwarmNetwork(n); // outside net: (it takes sb: locks, which are taken before net: elsewhere)
    this.events.publish('network', 'destroy', n.id, { name: n.name, type: n.driver });
    this.log.info({ network: n.name, id: n.id }, 'swarm network removed');
  }

  /**
   * `service rm` returns before the nodes' agents have removed the tasks
   * (as Docker's does), and Docker's `network rm` right after it succeeds:
   * task endpoints do not hold a swarm network. So while every endpoint left
   * belongs to a swarm task (named <service>.<slot|node>.<task id>), wait for
   * the agents to take them away, a bounded time; a standalone container's
   * endpoint is refused at once below.
   */
  private async drainTaskEndpoints(networkId: string, timeoutMs = 20_000): Promise<void> {
    const c = this.cluster;
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
  private async addSwarmView(n: NetworkRecord, out: DockerNetwork): Promise<void> {
    const local = this.driverOf(n)?.localOptions?.(this.driverNetwork(n)) ?? {};
    out.Options = { ...out.Options, ...local };
    const eps = await this.swarmEndpointsOf(n.id).catch(() => [] as SwarmEndpoint[]);
    const peers = new Map<string, { Name: string; IP: string }>();
    for (const e of eps) peers.set(e.nodeId, { Name: e.nodeName, IP: e.underlay });
    if (peers.size > 0) out.Peers = [...peers.values()].sort((a, b) => a.IP.localeCompare(b.IP, 'en', { numeric: true }));
  }

  /**
   * A service VIP on a swarm network (src/services calls this through
   * serviceNetworksOf): an address from the network's cluster-wide IPAM,
   * owned by `vip:<owner>`, as "a.b.c.d/len"; undefined for a network with
   * no IPv4 subnet.
   */
  async allocateVip(networkId: string, owner: string): Promise<string | undefined> {
    await this.init();
    const net = await this.findNetwork(networkId);
    return (await this.ipamOf(net).allocate(net.id, 4, owner.startsWith('vip:') ? owner : `vip:${owner}`))?.cidr;
  }

  async releaseVip(networkId: string, addr: string): Promise<void> {
    await this.init();
    const net = (await this.networks.get(networkId))?.value;
    if (!net) return;
    const ipam = this.ipamOf(net);
    const ip = addr.split('/')[0]!;
    for (const { state } of await ipam.subnetsOf(net.id)) {
      const owner = state.allocated[ip];
      if (owner?.startsWith('vip:')) await ipam.release(net.id, ip, owner);
    }
  }

  /** Refuses the removal of a swarm network still needed (src/services sets it: services and tasks live there). */
  private removalGuard: ((net: { id: string; name: string; ingress: boolean }) => Promise<void>) | undefined;

  setNetworkRemovalGuard(guard: ((net: { id: string; name: string; ingress: boolean }) => Promise<void>) | undefined): void {
    this.removalGuard = guard;
  }

  /** The swarm's ingress network (the routing mesh's), if it has one. */
  async ingressNetwork(): Promise<{ id: string; name: string } | undefined> {
    await this.init();
    const n = (await this.networks.list()).map((x) => x.value).find((x) => x.scope === 'swarm' && x.ingress);
    return n ? { id: n.id, name: n.name } : undefined;
  }

  /** Swarm networks known to this node (tests, diagnostics). */
  get inSwarm(): boolean {
    return this.cluster !== undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.stopCluster();
    this.closed = true;
    await Promise.allSettled(this.doomedWork);
    // Sandboxes stay (containers outlive the daemon); only this process's sockets close.
    await this.dns?.close();
    await this.ports.closeAll();
    // Drivers this controller loaded itself are its to close (injected ones belong to the caller).
    if (this.loadBuiltins) await this.registry.closeAll();
  }
}

/** A removed network whose driver has kernel work left (store key network/doomed/<id>). */
interface DoomedNetwork {
  driver: string;
  net: DriverNetwork;
}

function formatIpPlus(subnet: string, n: bigint): string {
  const c = tryParseCidr(subnet)!;
  return formatCidr({ ...c, base: c.base + n, prefix: c.family === 4 ? 32 : 128 }).split('/')[0]!;
}

function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfe) | 0x02; // locally administered, unicast
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}
