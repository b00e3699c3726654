/**
 * Address allocation inside a network's subnets, kept in the Store: one key
 * per subnet holding the map address -> owner. Every change is a
 * compare-and-swap on that key (safe across processes sharing the store), run
 * under a per-key mutex (so concurrent requests in this process queue instead
 * of retrying). An address is never handed out twice.
 */
import { Collection, type Store } from '../../store/store.js';
import { Forbidden, InvalidParameter, Unavailable } from '../../common/errors.js';
import { KeyedMutex } from '../mutex.js';
import { cidrContains, cidrSize, formatIp, lastAddr, parseCidr, tryParseCidr, tryParseIp, type Family } from './ip.js';
import type { SubnetPlan } from './plan.js';

export interface SubnetState extends SubnetPlan {
  /** Canonical address -> owner ("gateway", "aux:<name>", or an endpoint ID). */
  allocated: Record<string, string>;
}

export const ADDRESS_IN_USE = 'Address already in use';
export const NO_AVAILABLE = 'No available addresses on this pool';

export class AddressAllocator {
  private readonly subnets: Collection<SubnetState>;
  private readonly mutex = new KeyedMutex();

  constructor(store: Store, prefix = 'network/ipam') {
    this.subnets = new Collection<SubnetState>(store, prefix);
  }

  private static key(networkId: string, index: number): string {
    return `${networkId}/${index}`;
  }

  /** Records a network's subnets, reserving gateways and aux addresses. */
  async addNetwork(networkId: string, plans: SubnetPlan[]): Promise<void> {
    for (let i = 0; i < plans.length; i++) {
      const p = plans[i]!;
      const allocated: Record<string, string> = {};
      if (p.gateway) allocated[p.gateway] = 'gateway';
      for (const [name, a] of Object.entries(p.aux)) allocated[a] = `aux:${name}`;
      await this.subnets.put(AddressAllocator.key(networkId, i), { ...p, allocated });
    }
  }

  async removeNetwork(networkId: string): Promise<void> {
    for (const s of await this.subnets.list()) {
      if (s.id.startsWith(`${networkId}/`)) await this.subnets.delete(s.id);
    }
  }

  async subnetsOf(networkId: string): Promise<Array<{ index: number; state: SubnetState }>> {
    const out: Array<{ index: number; state: SubnetState }> = [];
    for (const s of await this.subnets.list()) {
      if (s.id.startsWith(`${networkId}/`))
        out.push({ index: Number(s.id.slice(networkId.length + 1)), state: s.value });
    }
    return out.sort((a, b) => a.index - b.index);
  }

  /**
   * Allocates one address of the family for `owner`: `preferred` when given
   * (must be in a subnet, free), else the first free one. Returns "ip/prefix"
   * and the subnet's gateway, or undefined when the network has no subnet of
   * that family.
   */
  async allocate(
    networkId: string,
    family: Family,
    owner: string,
    preferred?: string,
  ): Promise<{ cidr: string; address: string; gateway?: string; subnet: string } | undefined> {
    const subs = (await this.subnetsOf(networkId)).filter((s) => s.state.family === family);
    if (subs.length === 0) return undefined;
    if (preferred !== undefined) {
      const ip = tryParseIp(preferred);
      if (!ip || ip.family !== family) throw new InvalidParameter(`invalid IPv${family} address: ${preferred}`);
      const hit = subs.find((s) => cidrContains(parseCidr(s.state.subnet), ip));
      if (!hit) throw new InvalidParameter(`no configured subnet or ip-range contain the IP address ${preferred}`);
      const address = formatIp(family, ip.value);
      const next = await this.update(networkId, hit.index, (st) => {
        if (st.allocated[address] !== undefined) throw new Forbidden(ADDRESS_IN_USE);
        st.allocated[address] = owner;
        return st;
      });
      return result(next, address);
    }
    for (const s of subs) {
      let picked: string | undefined;
      try {
        const next = await this.update(networkId, s.index, (st) => {
          picked = firstFree(st);
          if (picked === undefined) throw new Unavailable(NO_AVAILABLE);
          st.allocated[picked] = owner;
          return st;
        });
        return result(next, picked!);
      } catch (e) {
        if (e instanceof Unavailable && s !== subs[subs.length - 1]) continue;
        throw e;
      }
    }
    return undefined;
  }

  /** Frees an address if `owner` holds it (idempotent). */
  async release(networkId: string, address: string, owner: string): Promise<void> {
    const ip = tryParseIp(address.split('/')[0]!);
    if (!ip) return;
    const canon = formatIp(ip.family, ip.value);
    for (const s of await this.subnetsOf(networkId)) {
      if (s.state.family !== ip.family || !cidrContains(parseCidr(s.state.subnet), ip)) continue;
      await this.update(networkId, s.index, (st) => {
        if (st.allocated[canon] === owner) delete st.allocated[canon];
        return st;
      });
    }
  }

  /** Frees every address held by owners not in `keep` (restore after a crash). */
  async releaseAllExcept(networkId: string, keep: (owner: string) => boolean): Promise<void> {
    for (const s of await this.subnetsOf(networkId)) {
      await this.update(networkId, s.index, (st) => {
        for (const [a, o] of Object.entries(st.allocated)) {
          if (o === 'gateway' || o.startsWith('aux:')) continue;
          if (!keep(o)) delete st.allocated[a];
        }
        return st;
      });
    }
  }

  private update(networkId: string, index: number, fn: (st: SubnetState) => SubnetState): Promise<SubnetState> {
    const key = AddressAllocator.key(networkId, index);
    return this.mutex.run(key, async () => {
      const next = await this.subnets.update(key, (cur) => {
        if (!cur) throw new Unavailable(`network ${networkId} has no address pool`);
        // `cur` is this call's own copy (Collection.update parses the record for each try): no clone of the
        // whole address map (one entry per container) is needed.
        return fn(cur);
      });
      return next!;
    });
  }
}

function result(st: SubnetState, address: string) {
  const prefix = parseCidr(st.subnet).prefix;
  const out: { cidr: string; address: string; gateway?: string; subnet: string } = {
    cidr: `${address}/${prefix}`,
    address,
    subnet: st.subnet,
  };
  if (st.gateway) out.gateway = st.gateway;
  return out;
}

/**
 * Lowest free address of the ip-range (or subnet), skipping the subnet's
 * (or range's) network address and, for IPv4, its broadcast address. Steps over allocated
 * addresses only, so the cost grows with what is allocated, not the pool size.
 */
export function firstFree(st: SubnetState): string | undefined {
  const subnet = parseCidr(st.subnet);
  const range = st.ipRange ? (tryParseCidr(st.ipRange) ?? subnet) : subnet;
  let lo = range.base;
  let hi = lastAddr(range);
  const small = cidrSize(subnet) <= 2n; // /31, /32 (and v6 /127, /128): every address is a host
  if (!small) {
    // The subnet's network address, and (seen with Docker: --ip-range 10.12.5.0/24 starts at .1) the range's first address.
    if (lo === subnet.base || range !== subnet) lo += 1n;
    if (subnet.family === 4 && hi === lastAddr(subnet)) hi -= 1n;
  }
  for (let v = lo; v <= hi; v++) {
    const a = formatIp(subnet.family, v);
    if (st.allocated[a] === undefined) return a;
  }
  return undefined;
}
