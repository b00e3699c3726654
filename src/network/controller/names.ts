/**
 * The embedded DNS's tables: per network, the names of its ready endpoints (every node's on a swarm network)
 * and the services' names; per sandbox, the networks it asks, its upstream servers and its legacy links.
 */
import type { EndpointRecord, SandboxRecord } from '../records.js';
import { hasEmbeddedDns } from '../network.js';
import { dnsNames, parseLink } from '../endpoint.js';
import type { NameEntry } from '../dns/resolver.js';
import { readHostResolv } from '../sandbox-files.js';
import type { ControllerCore } from './core.js';

export class NameOps {
  constructor(private readonly core: ControllerCore) {}

  /** Names that services add to a network's DNS: <service> → VIP or task addresses, tasks.<service> → tasks. */
  private readonly serviceNames = new Map<string, Map<string, NameEntry[]>>();

  /** Replaces the service names of one network (empty map: none) and refreshes its DNS table. */
  async setServiceNames(networkId: string, names: Map<string, NameEntry[]>): Promise<void> {
    if (names.size) this.serviceNames.set(networkId, names);
    else this.serviceNames.delete(networkId);
    await this.refreshNames([networkId]);
  }

  /** Rebuilds the DNS tables of the given networks (all when omitted) from the store. */
  async refreshNames(networkIds?: Iterable<string>): Promise<void> {
    const nets = new Map((await this.core.networks.list()).map((n) => [n.id, n.value]));
    // Read only: the shared, parsed-once endpoint records (a JSON.parse of every endpoint per join was O(N)).
    const eps = (await this.core.endpoints.listShared()).map((e) => e.value).filter((e) => e.state === 'ready');
    const ids = networkIds ? [...networkIds] : [...nets.keys()];
    for (const id of ids) {
      const n = nets.get(id);
      if (!n || !hasEmbeddedDns(n)) {
        this.core.resolver.deleteNetwork(id);
        continue;
      }
      const names = new Map<string, NameEntry[]>();
      const reverse = new Map<string, string>();
      // Swarm networks: the endpoints of every node, from the cluster store.
      const source: Array<Pick<EndpointRecord, 'networkId' | 'ipv4' | 'ipv6' | 'name' | 'aliases' | 'containerId'>> =
        n.scope === 'swarm' ? await this.core.swarmOps.watchedSwarmEndpointsOf(id) : eps;
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
      this.core.resolver.setNetwork(id, { networkName: n.name, names, reverse });
    }
  }

  async refreshAllNames(): Promise<void> {
    await this.refreshNames();
    for (const { value: sb } of await this.core.sandboxes.list()) await this.refreshSandboxResolver(sb);
  }

  /** Upstream servers for a sandbox: its --dns, else the daemon's --dns, else the host's resolv.conf. */
  upstreamFor(sb: SandboxRecord): string[] {
    if (sb.dns.length > 0) return sb.dns;
    if (this.core.config.dns && this.core.config.dns.length > 0) return this.core.config.dns;
    return readHostResolv(this.core.opts.hostResolvConf).nameservers.filter((s) => s !== '127.0.0.11');
  }

  async refreshSandboxResolver(sb: SandboxRecord): Promise<boolean> {
    const joined = await this.core.sandboxNetworks(sb);
    const dnsNets = joined.filter((j) => hasEmbeddedDns(j.net));
    if (dnsNets.length === 0 || sb.netnsPath === null) {
      this.core.resolver.deleteSandbox(sb.id);
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
    this.core.resolver.setSandbox(
      sb.id,
      dnsNets.map((j) => j.net.id),
      isolated ? [] : this.upstreamFor(sb),
      links,
    );
    return true;
  }
}
