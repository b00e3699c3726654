/**
 * Addresses of swarm networks: unique across the cluster, claimed in one
 * cluster write, and each node's claims writable by that node only.
 *
 *   ipam/node/<node>/<nid>/<ip>   claimed by a node for one of its endpoints (value: the endpoint ID);
 *                                 etcd's RBAC lets a worker write under ipam/node/<its id>/ only
 *   ipam/addr/<nid>/<ip>          claimed by the managers (service VIPs; value: vip:<service>)
 *
 * A claim is one transaction: the claimant's key is created, on condition
 * that every other claimant's key for that address is absent (one compare
 * per node in nodes/, and the managers' key) and that no node record is
 * newer than the node list those compares came from (a node admitted
 * meanwhile fails the transaction; the list is read again). So two nodes
 * can never both hold an address, whatever the timing, and a worker never
 * needs write access to a key another node owns. The caller adds its own
 * writes to the same transaction (the endpoint's cluster record): a `run`
 * onto an overlay makes one cluster write for its address and its
 * publication, with no read before it (the candidate comes from the
 * watch-fed endpoint view; a stale view only costs a retry).
 *
 * Gateways and --aux-address are in the network record (its subnet plans),
 * never claimed: every claimant skips them.
 */
import { CasError, type Store, type TxnOp } from '../../store/store.js';
import { createIfNoneOf, NODES, readRoster, rosterGuard, type Roster } from '../../cluster/node-claims.js';
import { Forbidden, InvalidParameter, Unavailable } from '../../common/errors.js';
import { cidrContains, formatIp, parseCidr, tryParseIp, type Family } from './ip.js';
import { ADDRESS_IN_USE, firstFree, NO_AVAILABLE, type SubnetState } from './allocator.js';
import type { SubnetPlan } from './plan.js';

const MAX_ATTEMPTS = 100;

export interface ClaimedAddress {
  /** "ip/prefix" */
  cidr: string;
  address: string;
  gateway?: string;
  subnet: string;
}

export type Claimant = 'node' | 'cluster';

/**
 * A guessed address (see `hold`) turned out to be another node's: the
 * caller undoes what it did with it and starts again, skipping it.
 */
export class GuessTaken extends Forbidden {
  constructor(readonly address: string) {
    super(ADDRESS_IN_USE);
  }
}

export const nodeClaimPrefix = (node: string, networkId?: string): string =>
  `ipam/node/${node}/${networkId === undefined ? '' : `${networkId}/`}`;
export const clusterClaimPrefix = (networkId?: string): string =>
  `ipam/addr/${networkId === undefined ? '' : `${networkId}/`}`;

export class SwarmAddressClaims {
  private roster?: Roster;
  /** Addresses being claimed or held by this process right now (<nid>/<ip> -> holders): joins here pick others. */
  private readonly pending = new Map<string, number>();
  /** The managers' claims (service VIPs) per network, from the watch on ipam/addr/. */
  private readonly clusterClaims = new Map<string, Set<string>>();

  /**
   * @param inUse the addresses of a network's endpoints on every node as this node last saw them
   * (the watch-fed endpoint view): candidates skip them.
   */
  constructor(
    private readonly store: Store,
    private readonly selfId: string,
    private readonly inUse: (networkId: string) => string[],
  ) {}

  /** Follows the managers' claims (so candidates skip VIPs); returns the stop function. */
  follow(): () => void {
    const apply = (key: string, present: boolean) => {
      const [nid, ip] = key.slice(clusterClaimPrefix().length).split('/');
      if (!nid || !ip) return;
      let s = this.clusterClaims.get(nid);
      if (present) {
        if (!s) this.clusterClaims.set(nid, (s = new Set()));
        s.add(ip);
      } else s?.delete(ip);
    };
    const stop = this.store.watch(clusterClaimPrefix(), (ev) => apply(ev.kv.key, ev.type === 'put'));
    // A list that races the watch can only re-add a claim just released: one more retry at worst.
    void this.store.list(clusterClaimPrefix()).then(
      (kvs) => kvs.forEach((kv) => apply(kv.key, true)),
      () => undefined,
    );
    return stop;
  }

  /**
   * Claims one address per wanted family (the preferred one, else the lowest
   * free one) for `owner`, as this node or as the managers, together with the
   * writes `also` returns for the addresses picked, in one transaction.
   * A family the network has no subnet of is left out of the result. Returns
   * the transaction's revision too.
   */
  async claim(
    net: { id: string; subnets: SubnetPlan[] },
    want: Array<{ family: Family; preferred?: string | undefined }>,
    owner: string,
    by: Claimant,
    also: (got: Map<Family, ClaimedAddress>) => TxnOp[] = () => [],
    guessed: ReadonlySet<string> = new Set(),
  ): Promise<{ addresses: Map<Family, ClaimedAddress>; revision: number }> {
    const wants = want
      .map((w) => ({ ...w, subnets: net.subnets.filter((s) => s.family === w.family) }))
      .filter((w) => w.subnets.length > 0);
    for (const w of wants) {
      if (w.preferred === undefined) continue;
      const address = checkPreferred(w.subnets, w.family, w.preferred);
      if (reserved(w.subnets, address)) throw new Forbidden(ADDRESS_IN_USE);
      w.preferred = address;
    }
    const taken = new Set<string>();
    for (let attempt = 0; ; attempt++) {
      const roster = await this.nodes();
      const got = new Map<Family, ClaimedAddress>();
      for (const w of wants) got.set(w.family, this.pick(net.id, w.subnets, w.preferred, taken));
      const mine = [...got.values()].map((a) => `${net.id}/${a.address}`);
      this.addPending(mine);
      try {
        const ops: TxnOp[] = [rosterGuard(roster)];
        for (const a of got.values()) ops.push(...this.claimOps(roster.ids, net.id, a.address, owner, by));
        ops.push(...also(got));
        const revision = await this.store.txn(ops);
        return { addresses: got, revision };
      } catch (e) {
        if (!(e instanceof CasError) || attempt >= MAX_ATTEMPTS) throw e;
        if (e.key === NODES) {
          this.roster = undefined; // a node joined (or changed): read the list again
          continue;
        }
        const ip = claimedAddressOf(e.key);
        if (ip === undefined) throw e; // a check of the caller's own writes
        if (guessed.has(ip)) throw new GuessTaken(ip);
        if (wants.some((w) => w.preferred === ip)) throw new Forbidden(ADDRESS_IN_USE);
        taken.add(ip); // held by another node (or a claim the view has not shown yet)
      } finally {
        this.dropPending(mine);
      }
    }
  }

  /**
   * Candidates for an endpoint from what this node has seen (no cluster
   * round trip), held so that no other join here picks them, until `drop()`.
   * The caller configures the endpoint with them, then claims them (as
   * `preferred`, with them as `guessed`) in the transaction that publishes
   * it: the address is claimed and the endpoint seen by every node at once,
   * once its interface exists. A guess another node took meanwhile fails
   * that claim with GuessTaken.
   */
  hold(
    net: { id: string; subnets: SubnetPlan[] },
    want: Array<{ family: Family; preferred?: string | undefined }>,
    skip: ReadonlySet<string> = new Set(),
  ): { addresses: Map<Family, ClaimedAddress>; guessed: Set<string>; drop: () => void } {
    const addresses = new Map<Family, ClaimedAddress>();
    const guessed = new Set<string>();
    for (const w of want) {
      const subnets = net.subnets.filter((s) => s.family === w.family);
      if (subnets.length === 0) continue;
      if (w.preferred !== undefined) {
        const address = checkPreferred(subnets, w.family, w.preferred);
        if (reserved(subnets, address)) throw new Forbidden(ADDRESS_IN_USE);
        addresses.set(
          w.family,
          result(
            subnets.find((s) => inSubnet(s, address))!,
            address,
          ),
        );
        continue;
      }
      const a = this.pick(net.id, subnets, undefined, new Set(skip));
      addresses.set(w.family, a);
      guessed.add(a.address);
    }
    const keys = [...addresses.values()].map((a) => `${net.id}/${a.address}`);
    this.addPending(keys);
    let dropped = false;
    return {
      addresses,
      guessed,
      drop: () => {
        if (!dropped) this.dropPending(keys);
        dropped = true;
      },
    };
  }

  private addPending(keys: string[]): void {
    for (const k of keys) this.pending.set(k, (this.pending.get(k) ?? 0) + 1);
  }

  private dropPending(keys: string[]): void {
    for (const k of keys) {
      const n = (this.pending.get(k) ?? 1) - 1;
      if (n > 0) this.pending.set(k, n);
      else this.pending.delete(k);
    }
  }

  /** Frees an address if `owner` holds it (idempotent). */
  async release(networkId: string, address: string, owner: string, by: Claimant): Promise<void> {
    const ip = canonical(address);
    if (!ip) return;
    const key = `${by === 'node' ? nodeClaimPrefix(this.selfId, networkId) : clusterClaimPrefix(networkId)}${ip}`;
    const kv = await this.store.get(key);
    if (kv && kv.value === owner) await this.store.delete(key, kv.revision).catch(ignoreCas);
  }

  /** The managers' claim of an address (its owner), if any. */
  async clusterOwner(networkId: string, address: string): Promise<string | undefined> {
    const ip = canonical(address);
    return ip ? (await this.store.get(`${clusterClaimPrefix(networkId)}${ip}`))?.value : undefined;
  }

  /** Frees this node's claims whose owner is gone (after a crash between a claim and its release). */
  async releaseOrphans(keep: (owner: string) => boolean): Promise<number> {
    let n = 0;
    for (const kv of await this.store.list(nodeClaimPrefix(this.selfId))) {
      if (keep(kv.value)) continue;
      await this.store.delete(kv.key, kv.revision).catch(ignoreCas);
      n++;
    }
    return n;
  }

  /** A removed network's claims, every node's (a manager, at network rm). */
  async removeNetwork(networkId: string): Promise<void> {
    const roster = await this.nodes();
    const prefixes = [clusterClaimPrefix(networkId), ...roster.ids.map((id) => nodeClaimPrefix(id, networkId))];
    for (const p of prefixes)
      for (const kv of await this.store.list(p)) await this.store.delete(kv.key).catch(ignoreCas);
    this.clusterClaims.delete(networkId);
  }

  /** Every claim of a network (tests, diagnostics): address -> owner. */
  async claimsOf(networkId: string): Promise<Map<string, string>> {
    const roster = await this.nodes();
    const out = new Map<string, string>();
    for (const p of [clusterClaimPrefix(networkId), ...roster.ids.map((id) => nodeClaimPrefix(id, networkId))])
      for (const kv of await this.store.list(p)) out.set(kv.key.slice(p.length), kv.value);
    return out;
  }

  private claimOps(nodes: string[], networkId: string, ip: string, owner: string, by: Claimant): TxnOp[] {
    const own =
      by === 'node' ? `${nodeClaimPrefix(this.selfId, networkId)}${ip}` : `${clusterClaimPrefix(networkId)}${ip}`;
    const others = nodes.map((id) => `${nodeClaimPrefix(id, networkId)}${ip}`);
    others.push(`${clusterClaimPrefix(networkId)}${ip}`);
    return createIfNoneOf(own, owner, others);
  }

  private pick(networkId: string, subnets: SubnetPlan[], preferred: string | undefined, taken: Set<string>) {
    if (preferred !== undefined)
      return result(
        subnets.find((s) => inSubnet(s, preferred))!,
        preferred,
      );
    const used = new Set<string>(taken);
    for (const a of this.inUse(networkId)) used.add(a.split('/')[0]!);
    for (const a of this.clusterClaims.get(networkId) ?? []) used.add(a);
    for (const p of this.pending.keys()) if (p.startsWith(`${networkId}/`)) used.add(p.slice(networkId.length + 1));
    for (const s of subnets) {
      const allocated: Record<string, string> = {};
      for (const a of used) allocated[a] = '';
      if (s.gateway) allocated[s.gateway] = 'gateway';
      for (const a of Object.values(s.aux)) allocated[a] = 'aux';
      const free = firstFree({ ...s, allocated } satisfies SubnetState);
      if (free !== undefined) return result(s, free);
    }
    throw new Unavailable(NO_AVAILABLE);
  }

  /** The nodes that may hold claims, and the newest revision among their records (the guard), cached until it fails. */
  private async nodes(): Promise<Roster> {
    this.roster ??= await readRoster(this.store, this.selfId);
    return this.roster;
  }
}

function ignoreCas(e: unknown): void {
  if (!(e instanceof CasError)) throw e;
}

function canonical(address: string): string | undefined {
  const ip = tryParseIp(address.split('/')[0]!);
  return ip ? formatIp(ip.family, ip.value) : undefined;
}

/** The address in a claim key (either layout), or undefined for another key. */
function claimedAddressOf(key: string): string | undefined {
  const m = /^ipam\/(?:node\/[^/]+|addr)\/[^/]+\/([^/]+)$/.exec(key);
  return m?.[1];
}

/** A gateway or --aux-address: never an endpoint's. */
function reserved(subnets: SubnetPlan[], address: string): boolean {
  return subnets.some((s) => s.gateway === address || Object.values(s.aux).includes(address));
}

function inSubnet(s: SubnetPlan, address: string): boolean {
  const ip = tryParseIp(address);
  return !!ip && cidrContains(parseCidr(s.subnet), ip);
}

/** A requested address, canonical, with the allocator's errors for one of the wrong family or outside every subnet. */
function checkPreferred(subnets: SubnetPlan[], family: Family, preferred: string): string {
  const ip = tryParseIp(preferred);
  if (!ip || ip.family !== family) throw new InvalidParameter(`invalid IPv${family} address: ${preferred}`);
  const address = formatIp(family, ip.value);
  if (!subnets.some((s) => inSubnet(s, address)))
    throw new InvalidParameter(`no configured subnet or ip-range contain the IP address ${preferred}`);
  return address;
}

function result(s: SubnetPlan, address: string): ClaimedAddress {
  const out: ClaimedAddress = { cidr: `${address}/${parseCidr(s.subnet).prefix}`, address, subnet: s.subnet };
  if (s.gateway) out.gateway = s.gateway;
  return out;
}
