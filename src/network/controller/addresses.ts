/**
 * The IPAM facade: addresses of endpoints and service VIPs from the built-in allocator (local networks in the
 * embedded store, swarm networks in the cluster store) or from an IPAM plugin (ipam/remote.ts).
 */
import { InvalidParameter, Unavailable } from '../../common/errors.js';
import { NOT_IN_SWARM } from '../swarm-scope.js';
import type { DockerNetworkCreate } from '../types.js';
import type { NetworkRecord } from '../records.js';
import { AddressAllocator } from '../ipam/allocator.js';
import type { ClaimedAddress, SwarmAddressClaims } from '../ipam/claims.js';
import type { TxnOp } from '../../store/store.js';
import { IPAM_DRIVERS, validateConfigs } from '../ipam/plan.js';
import type { RemotePool } from '../ipam/remote.js';
import type { ControllerCore } from './core.js';

export class AddressOps {
  constructor(private readonly core: ControllerCore) {}

  /** The plan of a network whose --ipam-driver is a plugin; undefined for the built-in IPAM drivers. */
  async remoteIpamPlan(req: DockerNetworkCreate, enableIPv4: boolean, enableIPv6: boolean) {
    const name = req.IPAM?.Driver || 'default';
    if (IPAM_DRIVERS.has(name)) return undefined;
    const configs = req.IPAM?.Config ?? [];
    validateConfigs(configs, enableIPv6);
    const ipam = await this.core.ipamPlugins.lookup(name, this.core.config, this.core.log);
    return ipam.planNetwork({ configs, enableIPv4, enableIPv6, options: { ...(req.IPAM?.Options ?? {}) } });
  }

  async releaseRemotePools(rec: NetworkRecord): Promise<void> {
    if (!rec.ipamPools?.length) return;
    try {
      await (
        await this.core.ipamPlugins.lookup(rec.ipamDriver, this.core.config, this.core.log)
      ).releasePools(rec.ipamPools);
    } catch (e) {
      this.core.log.warn(
        { network: rec.name, plugin: rec.ipamDriver, err: (e as Error).message },
        'releasing IPAM plugin pools failed',
      );
    }
  }

  /** An address from the network's IPAM plugin, booked in the daemon's allocator too. */
  async allocateRemote(net: NetworkRecord, pool: RemotePool, owner: string, preferred?: string) {
    const ipam = await this.core.ipamPlugins.lookup(net.ipamDriver, this.core.config, this.core.log);
    const got = await ipam.requestAddress(pool.poolId, preferred ?? '', ipam.addressOptions());
    try {
      return await this.ipamOf(net).allocate(net.id, pool.family, owner, got.address);
    } catch (e) {
      await ipam.releaseAddress(pool.poolId, got.address).catch(() => undefined);
      throw e;
    }
  }

  /** Frees an endpoint's address in the allocator and, for an IPAM plugin's network, at the plugin. */
  async releaseAddress(networkId: string, address: string, owner: string): Promise<void> {
    const net = (await this.core.networks.get(networkId))?.value;
    if (net?.scope === 'swarm') {
      await this.swarmClaims().release(networkId, address, owner, 'node');
      return;
    }
    await this.core.ipam.release(networkId, address, owner);
    const ip = address.split('/')[0]!;
    const pool = net?.ipamPools?.find((p) => p.family === (ip.includes(':') ? 6 : 4));
    if (net && pool)
      await (
        await this.core.ipamPlugins.lookup(net.ipamDriver, this.core.config, this.core.log)
      ).releaseAddress(pool.poolId, ip);
  }

  async allocate(net: NetworkRecord, fam: 4 | 6, owner: string, preferred?: string) {
    try {
      const pool = net.ipamPools?.find((p) => p.family === fam);
      if (pool) return await this.allocateRemote(net, pool, owner, preferred || undefined);
      return await this.ipamOf(net).allocate(net.id, fam, owner, preferred || undefined);
    } catch (e) {
      throw endpointSettingsError(net, e);
    }
  }

  /**
   * A swarm endpoint's addresses, claimed cluster-wide in one transaction
   * together with the writes `also` returns (its cluster record): one
   * cluster write per endpoint (ipam/claims.ts). A conflict on one of
   * `guessed` throws GuessTaken.
   */
  async claimSwarm(
    net: NetworkRecord,
    want: Array<{ family: 4 | 6; preferred?: string | undefined }>,
    owner: string,
    also: (got: Map<4 | 6, ClaimedAddress>) => TxnOp[],
    guessed?: ReadonlySet<string>,
  ): Promise<{ addresses: Map<4 | 6, ClaimedAddress>; revision: number }> {
    try {
      return await this.swarmClaims().claim(net, want, owner, 'node', also, guessed);
    } catch (e) {
      throw endpointSettingsError(net, e);
    }
  }

  /** Addresses for a swarm endpoint from what this node has seen, held until drop() (SwarmAddressClaims.hold). */
  holdSwarm(net: NetworkRecord, want: Array<{ family: 4 | 6; preferred?: string | undefined }>, skip: Set<string>) {
    try {
      return this.swarmClaims().hold(net, want, skip);
    } catch (e) {
      throw endpointSettingsError(net, e);
    }
  }

  ipamOf(net: Pick<NetworkRecord, 'scope'>): AddressAllocator {
    if (net.scope === 'swarm') throw new Unavailable('swarm networks claim addresses through claimSwarm');
    return this.core.ipam;
  }

  private swarmClaims(): SwarmAddressClaims {
    if (!this.core.cluster) throw new Unavailable(NOT_IN_SWARM);
    return this.core.cluster.ipam;
  }

  /**
   * A service VIP on a swarm network (src/services calls this through
   * serviceNetworksOf): an address from the network's cluster-wide IPAM,
   * owned by `vip:<owner>`, as "a.b.c.d/len"; undefined for a network with
   * no IPv4 subnet.
   */
  async allocateVip(networkId: string, owner: string): Promise<string | undefined> {
    await this.core.init();
    const net = await this.core.findNetwork(networkId);
    const vip = owner.startsWith('vip:') ? owner : `vip:${owner}`;
    if (net.scope !== 'swarm') return (await this.core.ipam.allocate(net.id, 4, vip))?.cidr;
    return (await this.swarmClaims().claim(net, [{ family: 4 }], vip, 'cluster')).addresses.get(4)?.cidr;
  }

  async releaseVip(networkId: string, addr: string): Promise<void> {
    await this.core.init();
    const net = (await this.core.networks.get(networkId))?.value;
    if (!net) return;
    const ip = addr.split('/')[0]!;
    if (net.scope === 'swarm') {
      const claims = this.swarmClaims();
      const owner = await claims.clusterOwner(net.id, ip);
      if (owner?.startsWith('vip:')) await claims.release(net.id, ip, owner, 'cluster');
      return;
    }
    for (const { state } of await this.core.ipam.subnetsOf(net.id)) {
      const owner = state.allocated[ip];
      if (owner?.startsWith('vip:')) await this.core.ipam.release(net.id, ip, owner);
    }
  }
}

/** Docker's wording for an address outside every subnet of the network. */
function endpointSettingsError(net: NetworkRecord, e: unknown): unknown {
  if (e instanceof InvalidParameter && /no configured subnet/.test(e.message))
    return new InvalidParameter(`invalid config for network ${net.name}: invalid endpoint settings:\n${e.message}`);
  return e;
}
