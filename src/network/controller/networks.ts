/**
 * Networks of this host: create (with their IPAM plan), inspect, list, remove (the slow kernel part in the
 * background, finished after a crash too), prune, and the predefined bridge/host/none.
 */
import { CasError } from '../../store/store.js';
import { newId, shortId } from '../../common/ids.js';
import { Conflict, Forbidden, InvalidParameter, NotFound, NotImplemented } from '../../common/errors.js';
import type { DockerNetwork, DockerNetworkCreate, Filters } from '../types.js';
import type { NetworkRecord } from '../records.js';
import { planIpam, pickDefaultPool, type SubnetPlan } from '../ipam/plan.js';
import { formatCidr, parseCidr, tryParseCidr } from '../ipam/ip.js';
import {
  DEFAULT_BRIDGE_OPTIONS,
  PREDEFINED,
  checkListFilters,
  checkPruneFilters,
  matchesListFilters,
  matchesPruneFilters,
  nowRfc3339Nano,
  toDockerNetwork,
} from '../network.js';
import { NETWORK_LOCK, type ControllerCore, type DoomedNetwork } from './core.js';

function formatIpPlus(subnet: string, n: bigint): string {
  const c = tryParseCidr(subnet)!;
  return formatCidr({ ...c, base: c.base + n, prefix: c.family === 4 ? 32 : 128 }).split('/')[0]!;
}

export class NetworkOps {
  constructor(private readonly core: ControllerCore) {}

  /** The rest of a removed network's deletion (driver.deleteNetwork), then its doomed record goes. Never throws. */
  async finishDoomed(id: string, rec: DoomedNetwork): Promise<void> {
    try {
      const d = this.core.registry.has(rec.driver) ? this.core.registry.get(rec.driver) : undefined;
      await d?.deleteNetwork(rec.net);
      await this.core.doomed.delete(id);
    } catch (e) {
      this.core.log.warn(
        { network: rec.net.name, err: (e as Error).message },
        "deleting a removed network's kernel objects failed (retried at the next start)",
      );
    }
  }

  async createPredefined(name: 'bridge' | 'host' | 'none'): Promise<void> {
    const base = {
      id: newId(),
      name,
      created: nowRfc3339Nano(),
      scope: 'local' as const,
      internal: false,
      attachable: false,
      ingress: false,
      configOnly: false,
      configFrom: '',
      enableIPv4: true,
      enableIPv6: false,
      ipamDriver: 'default',
      ipamOptions: null,
      labels: {},
      predefined: true,
      defaultBridge: false,
    };
    let rec: NetworkRecord;
    if (name === 'bridge') {
      const taken = (await this.core.networks.list()).flatMap((n) => n.value.subnets.map((s) => s.subnet));
      const pool = pickDefaultPool(
        4,
        taken.map((s) => parseCidr(s)),
        this.core.config.defaultAddressPools,
      );
      if (!pool)
        throw new Forbidden(
          'could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network',
        );
      const subnet = formatCidr(pool);
      const gateway = formatIpPlus(subnet, 1n);
      rec = {
        ...base,
        driver: 'bridge',
        defaultBridge: true,
        ipamConfig: [{ Subnet: subnet }],
        subnets: [{ family: 4, subnet, gateway, aux: {}, userSubnet: false }],
        options: DEFAULT_BRIDGE_OPTIONS(this.core.config.defaultBridgeName),
      };
    } else {
      rec = { ...base, driver: name === 'host' ? 'host' : 'null', ipamConfig: [], subnets: [], options: {} };
    }
    await this.persistNewNetwork(rec);
    const d = this.core.driverOf(rec);
    if (d) {
      try {
        const state = await d.createNetwork(this.core.driverNetwork(rec));
        if (state) await this.core.networks.update(rec.id, (cur) => (cur ? { ...cur, driverState: state } : cur));
      } catch (e) {
        await this.dropNetworkRecord(rec);
        throw e;
      }
    } else if (name === 'bridge') {
      this.core.log.warn('bridge driver not available: the default bridge network has no kernel objects');
    }
  }

  async persistNewNetwork(rec: NetworkRecord): Promise<void> {
    if (rec.scope === 'swarm') return this.core.swarmOps.persistSwarmNetwork(rec);
    try {
      await this.core.store.txn([
        { key: `network/names/${rec.name}`, expectRevision: 0, value: rec.id },
        { key: this.core.networks.key(rec.id), expectRevision: 0, value: JSON.stringify(rec) },
      ]);
    } catch (e) {
      if (e instanceof CasError) throw new Conflict(`network with name ${rec.name} already exists`);
      throw e;
    }
    await this.core.ipam.addNetwork(rec.id, rec.subnets);
  }

  /** `doomed`: the driver's work left to do, recorded in the same transaction that drops the network. */
  async dropNetworkRecord(rec: NetworkRecord, doomed?: DoomedNetwork): Promise<void> {
    if (rec.scope === 'swarm') return this.core.swarmOps.dropSwarmNetwork(rec);
    await this.core.addressOps.releaseRemotePools(rec);
    await this.core.ipam.removeNetwork(rec.id);
    await this.core.store
      .txn([
        { key: `network/names/${rec.name}`, value: null },
        { key: this.core.networks.key(rec.id), value: null },
        ...(doomed ? [{ key: this.core.doomed.key(rec.id), value: JSON.stringify(doomed) }] : []),
      ])
      .catch(() => undefined);
  }

  async createNetwork(req: DockerNetworkCreate): Promise<{ Id: string; Warning: string }> {
    await this.core.init();
    const name = typeof req.Name === 'string' ? req.Name : '';
    if (name === '') throw new InvalidParameter('network name must not be empty');
    if (PREDEFINED.has(name)) throw new Forbidden(`${name} is a pre-defined network and cannot be created`);
    // Docker takes any name that is not empty (spaces, colons, slashes too); only
    // container names have the [a-zA-Z0-9][a-zA-Z0-9_.-]+ rule.
    if (name.length > 255)
      throw new InvalidParameter(`invalid network name "${name.slice(0, 64)}...": longer than 255 characters`);
    // "." and ".." vanish from a request path (/networks/.. is /), a NUL cuts it: such a network could never be named again.
    if (name === '.' || name === '..' || name.includes('\0'))
      throw new InvalidParameter(
        `invalid network name "${name.replace(/\0/g, '\\x00')}": it cannot be used in a request path`,
      );
    const driverName = req.Driver || 'bridge';
    if (req.ConfigFrom?.Network || req.ConfigOnly) throw new InvalidParameter('config-only networks are not supported');
    const driver = await this.core.registry.lookup(driverName, { config: this.core.config, log: this.core.log });
    if (driver.scope === 'swarm') return this.core.swarmOps.createSwarmNetwork(req, name, driver);
    if (req.Ingress) {
      // In a swarm the request goes to the managers, whose validation refuses any driver but overlay.
      if (this.core.cluster?.m.isManager())
        throw new NotImplemented(
          'rpc error: code = Unimplemented desc = only overlay driver is currently supported for ingress network',
        );
      throw new Forbidden('ingress networks can only be created in a swarm');
    }
    await driver.checkSupported?.();
    for (const [k, v] of Object.entries(req.Options ?? {}))
      if (typeof v !== 'string') throw new InvalidParameter(`invalid option ${k}: value must be a string`);

    return this.core.mutex.run(NETWORK_LOCK, async () => {
      const all = (await this.core.networks.list()).map((n) => n.value);
      if (all.some((n) => n.name === name)) throw new Conflict(`network with name ${name} already exists`);
      if ((driverName === 'host' || driverName === 'null') && all.some((n) => n.driver === driverName)) {
        throw new Forbidden(`only one instance of "${driverName}" network is allowed`);
      }
      const enableIPv6 = req.EnableIPv6 === true;
      const enableIPv4 = req.EnableIPv4 !== false;
      const noIpam = driverName === 'host' || driverName === 'null';
      const remote = noIpam ? undefined : await this.core.addressOps.remoteIpamPlan(req, enableIPv4, enableIPv6);
      const plan = noIpam
        ? { subnets: [] as SubnetPlan[], display: [] }
        : (remote ??
          planIpam(
            { driver: req.IPAM?.Driver ?? 'default', configs: req.IPAM?.Config ?? [], enableIPv4, enableIPv6 },
            all.flatMap((n) => n.subnets.map((s) => s.subnet)),
            this.core.config.defaultAddressPools,
          ));
      const rec: NetworkRecord = {
        id: newId(),
        name,
        created: nowRfc3339Nano(),
        driver: driverName,
        scope: driver.scope === 'swarm' ? 'swarm' : driver.scope,
        internal: req.Internal === true,
        attachable: req.Attachable === true,
        ingress: false,
        configOnly: false,
        configFrom: '',
        enableIPv4,
        enableIPv6,
        ipamDriver: req.IPAM?.Driver || 'default',
        ipamOptions: req.IPAM?.Options ? { ...req.IPAM.Options } : null,
        ipamConfig: plan.display,
        subnets: plan.subnets,
        options: { ...(req.Options ?? {}) },
        labels: { ...(req.Labels ?? {}) },
        predefined: false,
        defaultBridge: false,
        ...(remote?.pools.length ? { ipamPools: remote.pools } : {}),
      };
      await this.persistNewNetwork(rec).catch(async (e: unknown) => {
        await this.core.addressOps.releaseRemotePools(rec);
        throw e;
      });
      try {
        const state = await driver.createNetwork(this.core.driverNetwork(rec));
        if (state) {
          rec.driverState = state;
          await this.core.networks
            .update(rec.id, (cur) => (cur ? { ...cur, driverState: state } : cur))
            .catch(async (e: unknown) => {
              // The driver made it but the store did not take it: undo the kernel side too, so a failed create changes nothing.
              await driver.deleteNetwork(this.core.driverNetwork(rec)).catch(() => undefined);
              throw e;
            });
        }
      } catch (e) {
        await this.dropNetworkRecord(rec);
        throw e;
      }
      this.core.events.publish('network', 'create', rec.id, { name: rec.name, type: rec.driver });
      this.core.log.info(
        { network: rec.name, id: shortId(rec.id), subnets: rec.subnets.map((s) => s.subnet) },
        'network created',
      );
      return { Id: rec.id, Warning: '' };
    });
  }

  async resolveNetwork(idOrName: string): Promise<{ id: string; name: string; driver: string }> {
    await this.core.init();
    const n = await this.core.findNetwork(idOrName);
    return { id: n.id, name: n.name, driver: n.driver };
  }

  async inspectNetwork(idOrName: string, _opts?: { verbose?: boolean; scope?: string }): Promise<DockerNetwork> {
    await this.core.init();
    const n = await this.core.findNetwork(idOrName);
    if (_opts?.scope && _opts.scope !== n.scope) throw new NotFound(`network ${idOrName} not found`);
    const out = toDockerNetwork(
      n,
      (await this.core.endpointsOf(n.id)).filter((e) => e.state === 'ready'),
    );
    if (n.scope === 'swarm') await this.core.swarmOps.addSwarmView(n, out);
    return out;
  }

  async listNetworks(filters: Filters = {}): Promise<DockerNetwork[]> {
    await this.core.init();
    checkListFilters(filters);
    const eps = (await this.core.endpoints.list()).map((e) => e.value).filter((e) => e.state === 'ready');
    const out: DockerNetwork[] = [];
    const worker = this.core.cluster !== undefined && !this.core.cluster.m.isManager();
    for (const { value: n } of await this.core.networks.list()) {
      const mine = eps.filter((e) => e.networkId === n.id);
      // A worker sees the swarm networks it uses, and ingress (a manager sees them all).
      if (n.scope === 'swarm' && worker && !n.ingress && mine.length === 0) continue;
      // Like moby's list handler: containers are only shown by inspect.
      if (matchesListFilters(n, mine.length, filters)) out.push(toDockerNetwork(n, []));
    }
    return out;
  }

  async removeNetwork(idOrName: string): Promise<void> {
    await this.core.init();
    const n = await this.core.findNetwork(idOrName);
    if (n.predefined) throw new Forbidden(`${n.name} is a pre-defined network and cannot be removed`);
    if (n.scope === 'swarm') return this.core.swarmOps.removeSwarmNetwork(n);
    await this.core.mutex.run(`net:${n.id}`, async () => {
      const eps = await this.core.endpointsOf(n.id);
      if (eps.length > 0) {
        const list = eps.map((e) => `name:"${e.name}" id:"${shortId(e.id)}"`).join(', ');
        throw new Forbidden(
          `error while removing network: network ${n.name} id ${n.id} has active endpoints (${list})`,
        );
      }
      // A plugin not active yet is looked up (it must clean up); one that is gone for good cannot, so the record just goes.
      const d =
        this.core.driverOf(n) ??
        (await this.core.registry
          .lookup(n.driver, { config: this.core.config, log: this.core.log })
          .catch((e: unknown) => {
            if (e instanceof NotFound) return undefined;
            throw e;
          }));
      if (d?.retireNetwork) {
        // The fast path: out of service now, the slow kernel work (a bridge's `link del`) in the background.
        const doomed: DoomedNetwork = { driver: n.driver, net: this.core.driverNetwork(n) };
        await d.retireNetwork(doomed.net);
        await this.dropNetworkRecord(n, doomed);
        const work = this.finishDoomed(n.id, doomed);
        this.core.doomedWork.add(work);
        void work.finally(() => this.core.doomedWork.delete(work));
      } else {
        if (d) await d.deleteNetwork(this.core.driverNetwork(n));
        await this.dropNetworkRecord(n);
      }
      this.core.resolver.deleteNetwork(n.id);
    });
    this.core.events.publish('network', 'destroy', n.id, { name: n.name, type: n.driver });
    this.core.log.info({ network: n.name, id: shortId(n.id) }, 'network removed');
  }

  async pruneNetworks(filters: Filters = {}): Promise<string[]> {
    await this.core.init();
    checkPruneFilters(filters);
    const eps = (await this.core.endpoints.list()).map((e) => e.value);
    const removed: string[] = [];
    for (const { value: n } of await this.core.networks.list()) {
      if (n.predefined || eps.some((e) => e.networkId === n.id)) continue;
      if (!matchesPruneFilters(n, filters)) continue;
      try {
        await this.removeNetwork(n.id);
        removed.push(n.name);
      } catch (e) {
        // In use by now, or the driver refused: prune skips it, like Docker.
        this.core.log.warn({ network: n.name, err: (e as Error).message }, 'prune skipped network');
      }
    }
    if (removed.length > 0) this.core.events.publish('network', 'prune', '', { reclaimed: '0' });
    return removed;
  }

  /** The swarm's ingress network (the routing mesh's), if it has one. */
  async ingressNetwork(): Promise<{ id: string; name: string } | undefined> {
    await this.core.init();
    const n = (await this.core.networks.list()).map((x) => x.value).find((x) => x.scope === 'swarm' && x.ingress);
    return n ? { id: n.id, name: n.name } : undefined;
  }
}
