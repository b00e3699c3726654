/**
 * Remote IPAM plugins (Docker's /IpamDriver.* protocol, libnetwork
 * ipams/remote): `network create --ipam-driver NAME` asks the plugin for each
 * pool (RequestPool) and its gateway (RequestAddress with
 * RequestAddressType=com.docker.network.gateway), and every endpoint address
 * comes from RequestAddress; ReleaseAddress/ReleasePool give them back. The
 * daemon's own allocator still books what the plugin handed out (so inspect,
 * restore and "address in use" work the same for every network).
 *
 * Plugins are found like network plugins (src/network/plugins.ts).
 */
import { InvalidParameter, NotFound, SystemError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { DaemonConfig } from '../../common/config.js';
import type { DockerIpamConfig } from '../types.js';
import {
  DEFAULT_PLUGIN_DIRS,
  DEFAULT_PLUGIN_TIMEOUT_MS,
  PluginClient,
  PluginMethodNotFound,
  activatePlugin,
  describeAddr,
  findPlugin,
} from '../plugins.js';
import { formatCidr, formatIp, tryParseCidr, tryParseIp, type Family } from './ip.js';
import type { SubnetPlan } from './plan.js';

export const IPAM_DRIVER_CAP = 'IpamDriver';
const GATEWAY_REQUEST = { RequestAddressType: 'com.docker.network.gateway' };
const MAC_OPTION = 'com.docker.network.endpoint.macaddress';

/** One pool a network holds from an IPAM plugin (kept in the network record). */
export interface RemotePool {
  family: Family;
  poolId: string;
  /** Canonical CIDR the plugin gave. */
  subnet: string;
  /** Gateway address (no prefix) the plugin gave, if any. */
  gateway?: string;
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');

export class RemoteIpam {
  constructor(
    readonly name: string,
    private readonly client: PluginClient,
    readonly requiresMac: boolean,
    readonly addressSpace: string,
  ) {}

  async requestPool(
    family: Family,
    pool: string,
    subPool: string,
    options: Record<string, string>,
  ): Promise<{ poolId: string; cidr: string; gateway?: string }> {
    const r = await this.client.call<{ PoolID?: unknown; Pool?: unknown; Data?: Record<string, unknown> | null }>(
      'IpamDriver.RequestPool',
      {
        AddressSpace: this.addressSpace,
        Pool: pool,
        SubPool: subPool,
        Options: options,
        V6: family === 6,
      },
    );
    const poolId = str(r.PoolID);
    const c = tryParseCidr(str(r.Pool));
    if (!poolId || !c)
      throw new SystemError(
        `IpamDriver.RequestPool: plugin ${this.name} answered no PoolID or an invalid Pool ${JSON.stringify(r.Pool ?? '')}`,
      );
    if (c.family !== family)
      throw new SystemError(
        `IpamDriver.RequestPool: plugin ${this.name} answered an IPv${c.family} pool for an IPv${family} request`,
      );
    const out: { poolId: string; cidr: string; gateway?: string } = { poolId, cidr: formatCidr(c) };
    // libnetwork: a pool may name its gateway in Data["com.docker.network.gateway"] (CIDR).
    const gw = tryParseIp(str(r.Data?.['com.docker.network.gateway']).split('/')[0]!);
    if (gw) out.gateway = formatIp(gw.family, gw.value);
    return out;
  }

  async releasePool(poolId: string): Promise<void> {
    await this.client.call('IpamDriver.ReleasePool', { PoolID: poolId });
  }

  /** An address of the pool (the preferred one when given), as the plugin's "ip/prefix". */
  async requestAddress(
    poolId: string,
    preferred: string,
    options: Record<string, string>,
  ): Promise<{ address: string; cidr: string }> {
    const r = await this.client.call<{ Address?: unknown }>('IpamDriver.RequestAddress', {
      PoolID: poolId,
      Address: preferred,
      Options: options,
    });
    const raw = str(r.Address);
    const [ipText = '', prefixText] = raw.split('/');
    const ip = tryParseIp(ipText);
    const c = tryParseCidr(raw);
    if (!ip || !c || prefixText === undefined)
      throw new SystemError(
        `IpamDriver.RequestAddress: plugin ${this.name} answered an invalid address ${JSON.stringify(raw)}`,
      );
    const address = formatIp(ip.family, ip.value);
    return { address, cidr: `${address}/${c.prefix}` };
  }

  async releaseAddress(poolId: string, address: string): Promise<void> {
    await this.client.call('IpamDriver.ReleaseAddress', { PoolID: poolId, Address: address.split('/')[0] });
  }

  /**
   * The subnets of a new network, from the plugin: one RequestPool per
   * --subnet (or one per enabled family without), then the gateway. Anything
   * requested is released again when a later step fails.
   */
  async planNetwork(req: {
    configs: DockerIpamConfig[];
    enableIPv4: boolean;
    enableIPv6: boolean;
    options: Record<string, string>;
  }): Promise<{ subnets: SubnetPlan[]; display: DockerIpamConfig[]; pools: RemotePool[] }> {
    const subnets: SubnetPlan[] = [];
    const display: DockerIpamConfig[] = [];
    const pools: RemotePool[] = [];
    try {
      for (const family of [4, 6] as Family[]) {
        if (!(family === 4 ? req.enableIPv4 : req.enableIPv6)) continue;
        const mine = req.configs.filter((c) => (c.Subnet ? tryParseCidr(c.Subnet)?.family === family : family === 4));
        for (const cfg of mine.length ? mine : [{} as DockerIpamConfig]) {
          const p = await this.requestPool(family, cfg.Subnet ?? '', cfg.IPRange ?? '', req.options);
          const pool: RemotePool = { family, poolId: p.poolId, subnet: p.cidr };
          pools.push(pool);
          let gateway = p.gateway;
          if (!gateway) {
            const g = await this.requestAddress(p.poolId, cfg.Gateway ?? '', GATEWAY_REQUEST);
            gateway = g.address;
          }
          pool.gateway = gateway;
          const plan: SubnetPlan = { family, subnet: p.cidr, gateway, aux: {}, userSubnet: !!cfg.Subnet };
          if (cfg.IPRange) plan.ipRange = cfg.IPRange;
          subnets.push(plan);
          const shown: DockerIpamConfig = { Subnet: p.cidr, Gateway: gateway };
          if (cfg.IPRange) shown.IPRange = cfg.IPRange;
          display.push(shown);
        }
      }
    } catch (e) {
      await this.releasePools(pools).catch(() => undefined);
      throw e;
    }
    return { subnets, display, pools };
  }

  /** Gives a network's pools back: the gateway address, then the pool. */
  async releasePools(pools: RemotePool[]): Promise<void> {
    for (const p of pools) {
      if (p.gateway) await this.releaseAddress(p.poolId, p.gateway);
      await this.releasePool(p.poolId);
    }
  }

  /** Options of an endpoint's RequestAddress (the MAC when the plugin asked for it at GetCapabilities). */
  addressOptions(mac?: string): Record<string, string> {
    return this.requiresMac && mac ? { [MAC_OPTION]: mac } : {};
  }
}

/** IPAM plugins by name, activated once (Plugin.Activate must list IpamDriver). */
export class IpamPlugins {
  private readonly active = new Map<string, Promise<RemoteIpam>>();

  lookup(name: string, config: DaemonConfig, log: Logger): Promise<RemoteIpam> {
    let p = this.active.get(name);
    if (!p) {
      p = activateIpam(name, config, log);
      this.active.set(name, p);
      p.catch(() => this.active.delete(name));
    }
    return p;
  }
}

async function activateIpam(name: string, config: DaemonConfig, log: Logger): Promise<RemoteIpam> {
  const found = findPlugin(name, config.pluginDirs ?? DEFAULT_PLUGIN_DIRS);
  if (!found) throw new NotFound(`plugin "${name}" not found`);
  const client = new PluginClient(name, found.addr, config.pluginTimeoutMs ?? DEFAULT_PLUGIN_TIMEOUT_MS);
  const impl = await activatePlugin(client);
  if (!impl.includes(IPAM_DRIVER_CAP)) {
    throw new InvalidParameter(
      `plugin "${name}" at ${describeAddr(found.addr)} does not implement ${IPAM_DRIVER_CAP} (it implements: ${impl.join(', ') || 'nothing'})`,
    );
  }
  let requiresMac = false;
  try {
    const caps = await client.call<{ RequiresMACAddress?: unknown }>('IpamDriver.GetCapabilities', {});
    requiresMac = caps.RequiresMACAddress === true;
  } catch (e) {
    // Older plugins have no GetCapabilities (libnetwork tolerates that).
    if (!(e instanceof PluginMethodNotFound)) throw e;
  }
  const spaces = await client.call<{ LocalDefaultAddressSpace?: unknown }>('IpamDriver.GetDefaultAddressSpaces', {});
  const space = str(spaces.LocalDefaultAddressSpace) || 'LocalDefault';
  log.info({ plugin: name, addr: describeAddr(found.addr) }, 'IPAM plugin activated');
  return new RemoteIpam(name, client, requiresMac, space);
}
