/**
 * Service discovery and load balancing data, computed from the cluster store
 * (pure functions, unit-tested without root):
 *   - per swarm network, the DNS names services add: `<service>` (and its
 *     aliases) → the VIP (endpoint mode vip) or every running task's address
 *     (dnsrr); `tasks.<service>` → every running task's address;
 *   - per swarm network, the VIPs and their backends (running tasks);
 *   - the nftables objects that balance a sandbox's connections to the VIPs
 *     of its networks, in the style of kube-proxy's nftables mode: a verdict
 *     map keyed by VIP, a chain per VIP with a DNAT to `numgen random mod N`
 *     over a map of the backends, in the sandbox's
 *     own output hook, as Firewall owners (the base, one per VIP) so a change
 *     to one service is a small transaction per sandbox (as Docker does with IPVS in each sandbox), so
 *     conntrack keeps each flow on its task and replies need no SNAT. This
 *     kernel has no IPVS.
 */
import { Tx, type ChainObj, type FwObject } from '../network/firewall/model.js';
import { isTerminal, type Service, type Task } from './types.js';

export interface NameEntry {
  ipv4?: string;
}

export interface Vip {
  serviceId: string;
  serviceName: string;
  networkId: string;
  vip: string;
  /** Addresses of the running tasks on that network, sorted. */
  backends: string[];
}

export interface Discovery {
  /** networkId → lower-case name → entries. */
  names: Map<string, Map<string, NameEntry[]>>;
  /** networkId → VIPs on it. */
  vips: Map<string, Vip[]>;
}

const addr = (cidr: string): string => cidr.split('/')[0]!;

/** A task that takes traffic: observed running and meant to run. */
export function serving(t: Task): boolean {
  return t.Status.State === 'running' && t.DesiredState === 'running' && !isTerminal(t.Status.State);
}

export function discovery(services: Service[], tasks: Task[]): Discovery {
  const names = new Map<string, Map<string, NameEntry[]>>();
  const vips = new Map<string, Vip[]>();
  const add = (net: string, name: string, entries: NameEntry[]): void => {
    const m = names.get(net) ?? new Map<string, NameEntry[]>();
    names.set(net, m);
    const key = name.toLowerCase();
    m.set(key, [...(m.get(key) ?? []), ...entries]);
  };
  const bySvc = new Map<string, Task[]>();
  for (const t of tasks) {
    if (!serving(t)) continue;
    bySvc.set(t.ServiceID, [...(bySvc.get(t.ServiceID) ?? []), t]);
  }
  for (const s of services) {
    const name = s.Spec.Name ?? s.ID;
    const dnsrr = (s.Spec.EndpointSpec?.Mode ?? 'vip') === 'dnsrr';
    for (const att of s.Spec.TaskTemplate?.Networks ?? []) {
      const net = att.Target;
      const backends = [
        ...new Set(
          (bySvc.get(s.ID) ?? []).flatMap((t) =>
            (t.NetworksAttachments ?? []).filter((a) => a.Network.ID === net).flatMap((a) => a.Addresses.map(addr)),
          ),
        ),
      ].sort();
      const taskEntries = backends.map((ipv4) => ({ ipv4 }));
      const vip = s.Endpoint.VirtualIPs?.find((v) => v.NetworkID === net);
      const svcEntries = dnsrr ? taskEntries : vip ? [{ ipv4: addr(vip.Addr) }] : taskEntries;
      for (const n of [name, ...(att.Aliases ?? [])]) add(net, n, svcEntries);
      add(net, `tasks.${name}`, taskEntries);
      if (!dnsrr && vip) {
        vips.set(net, [
          ...(vips.get(net) ?? []),
          { serviceId: s.ID, serviceName: name, networkId: net, vip: addr(vip.Addr), backends },
        ]);
      }
    }
  }
  return { names, vips };
}

/**
 * The balancing plan of one sandbox, as data: per VIP with tasks, its chain and
 * backends; the VIPs without a running task, refused.
 */
export interface LbPlan {
  vips: Array<{ vip: string; chain: string; backends: string[] }>;
  refused: string[];
}

export function lbPlan(vips: Vip[]): LbPlan {
  const sorted = [...new Map(vips.map((v) => [v.vip, v])).values()].sort((a, b) =>
    a.vip.localeCompare(b.vip, 'en', { numeric: true }),
  );
  return {
    vips: sorted
      .filter((v) => v.backends.length)
      .map((v) => ({ vip: v.vip, chain: `vip_${v.vip.replace(/\./g, '_')}`, backends: [...v.backends] })),
    refused: sorted.filter((v) => !v.backends.length).map((v) => v.vip),
  };
}

/** The sandbox table the load balancer owns. */
export const LB_TABLE = { family: 'ip', table: 'cove_lb' } as const;
/** The Firewall owner of the table's base: the table, the hook chains, the shared map and set. */
export const LB_BASE_OWNER = 'lb';
/** The Firewall owner of one VIP's objects (its chain and rule, its element in `vips` or `refused`). */
export const vipOwner = (vip: string): string => `vip ${vip}`;

/** One owner's objects and their signature (equal signatures: nothing to send). */
export interface LbOwner {
  objects: FwObject[];
  sig: string;
}

const t = LB_TABLE;
const NAT_OUTPUT: ChainObj = {
  ...t,
  kind: 'chain',
  name: 'lb_output',
  base: { type: 'nat', hook: 'output', priority: -100, policy: 'accept' },
};
const FILTER_OUTPUT: ChainObj = {
  ...t,
  kind: 'chain',
  name: 'lb_filter',
  base: { type: 'filter', hook: 'output', priority: 0, policy: 'accept' },
};

/**
 * The sandbox's `ip cove_lb` table as Firewall owners (src/network/firewall), shaped as kube-proxy's nftables
 * mode: the nat output chain looks the destination up once in a verdict map keyed by VIP (a hash lookup, whatever
 * the number of services on the sandbox's networks, instead of one rule per VIP walked in turn) and jumps to that
 * VIP's chain, which picks a task with numgen. Being a nat chain, it runs for the first packet of a connection
 * only; conntrack carries the rest (and the replies) without consulting it. Keyed by address alone: Docker's VIPs
 * take every port and protocol (its fwmark matches the destination address only).
 *
 * - `lb` (the base): the table; while a VIP has tasks, the map `vips` and the nat output chain; while a VIP has
 *   none, the set `refused` and a filter output chain that refuses it at once (Docker's IPVS answers nothing).
 * - `vip <addr>` per VIP: its chain `vip_<a_b_c_d>` (the DNAT) and its element in `vips`, or its element in
 *   `refused`.
 *
 * A change to one service (created, removed, a task joining or leaving) changes its own owner only (and the base
 * when the first/last VIP with or without tasks comes or goes): a transaction of a few objects per sandbox, not the
 * whole table. No VIP at all: no owner, no table.
 */
export function lbOwners(plan: LbPlan): Map<string, LbOwner> {
  const owners = new Map<string, FwObject[]>();
  if (!plan.vips.length && !plan.refused.length) return new Map();
  const base: FwObject[] = [{ ...t, kind: 'table' }];
  if (plan.vips.length)
    base.push({ ...t, kind: 'map', name: 'vips', type: 'ipv4_addr : verdict' }, NAT_OUTPUT, {
      ...t,
      kind: 'rule',
      chain: NAT_OUTPUT.name,
      rule: 'ip daddr vmap @vips',
    });
  if (plan.refused.length)
    base.push(
      { ...t, kind: 'set', name: 'refused', type: 'ipv4_addr' },
      FILTER_OUTPUT,
      {
        ...t,
        kind: 'rule',
        chain: FILTER_OUTPUT.name,
        rule: 'ip daddr @refused meta l4proto tcp reject with tcp reset',
      },
      {
        ...t,
        kind: 'rule',
        chain: FILTER_OUTPUT.name,
        rule: 'ip daddr @refused reject with icmp type host-unreachable',
      },
    );
  owners.set(LB_BASE_OWNER, base);
  for (const v of plan.vips) {
    const pick =
      v.backends.length === 1
        ? v.backends[0]!
        : `numgen random mod ${v.backends.length} map { ${v.backends.map((b, i) => `${i} : ${b}`).join(', ')} }`;
    owners.set(vipOwner(v.vip), [
      { ...t, kind: 'chain', name: v.chain },
      { ...t, kind: 'rule', chain: v.chain, rule: `dnat to ${pick}` },
      { ...t, kind: 'element', set: 'vips', key: v.vip, value: `goto ${v.chain}` },
    ]);
  }
  for (const vip of plan.refused) owners.set(vipOwner(vip), [{ ...t, kind: 'element', set: 'refused', key: vip }]);
  return new Map([...owners].map(([name, objects]) => [name, { objects, sig: JSON.stringify(objects) }]));
}

/** What one sandbox's table needs to go from what it has (owner → signature) to `want`. */
export interface LbDelta {
  /** The owners that change, with their new objects (an empty list: the owner goes). */
  owners: Map<string, FwObject[]>;
  /** Owner → signature once applied. */
  sigs: Map<string, string>;
}

/** The delta plan: only owners whose signature differs (or that come or go); nothing when the table is as wanted. */
export function lbDelta(applied: Map<string, string>, want: Map<string, LbOwner>): LbDelta {
  const owners = new Map<string, FwObject[]>();
  const sigs = new Map<string, string>();
  for (const [name, o] of want) {
    sigs.set(name, o.sig);
    if (applied.get(name) !== o.sig) owners.set(name, o.objects);
  }
  for (const name of applied.keys()) if (!want.has(name)) owners.set(name, []);
  return { owners, sigs };
}

/**
 * The whole table as one `nft -f` script (replacing whatever is there; removing it when there is no VIP): the
 * transaction a sandbox gets when it is programmed from nothing (diagnostics and tests; the daemon goes through a
 * Firewall, see discovery.ts).
 */
export function lbScript(vips: Vip[]): string {
  const tx = new Tx();
  const table: FwObject = { ...t, kind: 'table' };
  tx.add(table).delete(table);
  const owners = lbOwners(lbPlan(vips));
  const all = [...owners.values()].flatMap((o) => o.objects);
  const order: Array<Array<FwObject['kind']>> = [['table'], ['set', 'map'], ['chain'], ['rule'], ['element']];
  for (const kinds of order) for (const o of all) if (kinds.includes(o.kind)) tx.add(o);
  return tx.render();
}
