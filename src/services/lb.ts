/**
 * Service discovery and load balancing data, computed from the cluster store
 * (pure functions, unit-tested without root):
 *   - per swarm network, the DNS names services add: `<service>` (and its
 *     aliases) → the VIP (endpoint mode vip) or every running task's address
 *     (dnsrr); `tasks.<service>` → every running task's address;
 *   - per swarm network, the VIPs and their backends (running tasks);
 *   - the nftables script that balances a sandbox's connections to the VIPs
 *     of its networks, in the style of kube-proxy's nftables mode: a verdict
 *     map keyed by VIP, a chain per VIP with a DNAT to `numgen random mod N`
 *     over a map of the backends, in the sandbox's
 *     own output hook (as Docker does with IPVS in each sandbox), so
 *     conntrack keeps each flow on its task and replies need no SNAT. This
 *     kernel has no IPVS.
 */
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

/**
 * The whole `ip cove_lb` table of one sandbox: replaced in one transaction;
 * removed when it has no VIP. Shaped as kube-proxy's nftables mode: the nat
 * output chain looks the destination up once in a verdict map keyed by VIP
 * (a hash lookup, whatever the number of services on the sandbox's networks,
 * instead of one rule per VIP walked in turn) and jumps to that VIP's chain,
 * which picks a task with numgen. Being a nat chain, it runs for the first
 * packet of a connection only; conntrack carries the rest (and the replies)
 * without consulting it. Keyed by address alone: Docker's VIPs take every
 * port and protocol (its fwmark matches the destination address only).
 */
export function lbScript(vips: Vip[]): string {
  return renderLb(lbPlan(vips));
}

export function renderLb(plan: LbPlan): string {
  const lines = ['table ip cove_lb', 'delete table ip cove_lb'];
  if (!plan.vips.length && !plan.refused.length) return lines.join('\n') + '\n';
  lines.push('table ip cove_lb {');
  for (const v of plan.vips) {
    const pick =
      v.backends.length === 1
        ? v.backends[0]!
        : `numgen random mod ${v.backends.length} map { ${v.backends.map((b, i) => `${i} : ${b}`).join(', ')} }`;
    lines.push(`  chain ${v.chain} {`, `    dnat to ${pick}`, '  }');
  }
  if (plan.vips.length) {
    lines.push('  map vips {', '    type ipv4_addr : verdict');
    lines.push(`    elements = { ${plan.vips.map((v) => `${v.vip} : goto ${v.chain}`).join(', ')} }`, '  }');
    lines.push(
      '  chain lb_output {',
      '    type nat hook output priority -100; policy accept;',
      '    ip daddr vmap @vips',
      '  }',
    );
  }
  // A VIP without a running task refuses at once (Docker's IPVS answers nothing at all).
  if (plan.refused.length) {
    const set = `{ ${plan.refused.join(', ')} }`;
    lines.push('  chain lb_filter {', '    type filter hook output priority 0; policy accept;');
    lines.push(`    ip daddr ${set} meta l4proto tcp reject with tcp reset`);
    lines.push(`    ip daddr ${set} reject with icmp type host-unreachable`);
    lines.push('  }');
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}
