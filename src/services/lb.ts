/**
 * Service discovery and load balancing data, computed from the cluster store
 * (pure functions, unit-tested without root):
 *   - per swarm network, the DNS names services add: `<service>` (and its
 *     aliases) → the VIP (endpoint mode vip) or every running task's address
 *     (dnsrr); `tasks.<service>` → every running task's address;
 *   - per swarm network, the VIPs and their backends (running tasks);
 *   - the nftables script that balances a sandbox's connections to the VIPs
 *     of its networks, in the style of kube-proxy's nftables mode: a DNAT
 *     to `numgen random mod N` over a map of the backends, in the sandbox's
 *     own output hook (as Docker does with IPVS in each sandbox), so
 *     conntrack keeps each flow on its task and replies need no SNAT. This
 *     kernel has no IPVS.
 */
import { isTerminal, type Service, type Task } from './types.js';

export interface NameEntry { ipv4?: string }

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
      const backends = [...new Set((bySvc.get(s.ID) ?? [])
        .flatMap((t) => (t.NetworksAttachments ?? []).filter((a) => a.Network.ID === net).flatMap((a) => a.Addresses.map(addr))))].sort();
      const taskEntries = backends.map((ipv4) => ({ ipv4 }));
      const vip = s.Endpoint.VirtualIPs?.find((v) => v.NetworkID === net);
      const svcEntries = dnsrr ? taskEntries : vip ? [{ ipv4: addr(vip.Addr) }] : taskEntries;
      for (const n of [name, ...(att.Aliases ?? [])]) add(net, n, svcEntries);
      add(net, `tasks.${name}`, taskEntries);
      if (!dnsrr && vip) {
        vips.set(net, [...(vips.get(net) ?? []), { serviceId: s.ID, serviceName: name, networkId: net, vip: addr(vip.Addr), backends }]);
      }
    }
  }
  return { names, vips };
}

/** The whole `ip cove_lb` table of one sandbox: replaced in one transaction; removed when it has no VIP. */
export function lbScript(vips: Vip[]): string {
  const lines = ['table ip cove_lb', 'delete table ip cove_lb'];
  if (!vips.length) return lines.join('\n') + '\n';
  const sorted = [...vips].sort((a, b) => a.vip.localeCompare(b.vip));
  lines.push('table ip cove_lb {');
  lines.push('  chain lb_output {', '    type nat hook output priority -100; policy accept;');
  for (const v of sorted) {
    if (!v.backends.length) continue;
    if (v.backends.length === 1) lines.push(`    ip daddr ${v.vip} dnat to ${v.backends[0]}`);
    else lines.push(`    ip daddr ${v.vip} dnat to numgen random mod ${v.backends.length} map { ${v.backends.map((b, i) => `${i} : ${b}`).join(', ')} }`);
  }
  lines.push('  }');
  // A VIP without a running task refuses at once (Docker's IPVS answers nothing at all).
  const empty = sorted.filter((v) => !v.backends.length).map((v) => v.vip);
  if (empty.length) {
    lines.push('  chain lb_filter {', '    type filter hook output priority 0; policy accept;');
    lines.push(`    ip daddr { ${empty.join(', ')} } meta l4proto tcp reject with tcp reset`);
    lines.push(`    ip daddr { ${empty.join(', ')} } reject with icmp type host-unreachable`);
    lines.push('  }');
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}
