/**
 * Endpoints: one sandbox on one network, joined all-or-nothing (record, addresses, driver endpoint and join,
 * published ports when it carries the default route) and left step by step (each step on its own).
 */
import { randomBytes } from 'node:crypto';
import { newId, shortId } from '../../common/ids.js';
import { CoveError, Forbidden, InvalidParameter, NotFound, SystemError, Unavailable } from '../../common/errors.js';
import { NOT_IN_SWARM, notAttachable } from '../swarm-scope.js';
import type { EndpointRequest } from '../types.js';
import type { DriverEndpoint, NetworkDriver } from '../driver.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord } from '../records.js';
import { GuessTaken } from '../ipam/claims.js';
import type { AddressOps } from './addresses.js';
import { formatIp, macFromIpv4, tryParseIp } from '../ipam/ip.js';
import { parseLink } from '../endpoint.js';
import { driverBindings } from '../ports.js';
import { runUndos, type ControllerCore, type Undo } from './core.js';
import { phases } from '../../common/phases.js';

/** Docker's per-network default host address for published ports (a bridge option; -p 8080:80 on such a network binds only there). */
const OPT_HOST_BINDING_IPV4 = 'com.docker.network.bridge.host_binding_ipv4';
/** The network's own default host address, if it names one; 0.0.0.0 (what the default bridge shows) leaves the daemon's --ip in charge. */
function hostBinding(net: NetworkRecord): string | undefined {
  const v = net.options[OPT_HOST_BINDING_IPV4];
  return v && v !== '0.0.0.0' ? v : undefined;
}

function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfe) | 0x02; // locally administered, unicast
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

export class EndpointOps {
  constructor(private readonly core: ControllerCore) {}

  /** Next free ethN of a sandbox, also skipping names taken but not recorded yet. */
  async nextIfNameAfter(sb: SandboxRecord, taken: string[]): Promise<string> {
    const used = new Set([...(await this.core.sandboxNetworks(sb)).map((j) => j.ep.ifName), ...taken]);
    for (let i = 0; ; i++) if (!used.has(`eth${i}`)) return `eth${i}`;
  }

  /** Next free ethN of a sandbox. */
  async nextIfName(sb: SandboxRecord): Promise<string> {
    const used = new Set((await this.core.sandboxNetworks(sb)).map((j) => j.ep.ifName));
    for (let i = 0; ; i++) if (!used.has(`eth${i}`)) return `eth${i}`;
  }

  /**
   * One endpoint, all-or-nothing: record, addresses, driver endpoint, join,
   * published ports (when it carries the default route).
   */
  async joinEndpoint(
    sb: SandboxRecord,
    net: NetworkRecord,
    req: EndpointRequest,
    ifName: string,
    isGw: boolean,
    epName?: string,
  ): Promise<EndpointRecord> {
    // A swarm endpoint's guessed address that another node took first: all undone, again without it (rare:
    // only when the watch had not yet shown this node that node's endpoint).
    const skip = new Set<string>();
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.joinEndpointOnce(sb, net, req, ifName, isGw, epName, skip);
      } catch (e) {
        if (!(e instanceof GuessTaken) || attempt >= 20) throw e;
        skip.add(e.address);
      }
    }
  }

  private async joinEndpointOnce(
    sb: SandboxRecord,
    net: NetworkRecord,
    req: EndpointRequest,
    ifName: string,
    isGw: boolean,
    epName: string | undefined,
    skip: Set<string>,
  ): Promise<EndpointRecord> {
    if (net.scope === 'swarm') {
      if (!this.core.cluster) throw new Unavailable(NOT_IN_SWARM);
      if ((!net.attachable || net.ingress) && !sb.swarmTask) throw new Forbidden(notAttachable(net.name));
    }
    const special = net.driver === 'host' || net.driver === 'null';
    const wantsIp = !!(req.ipv4Address || req.ipv6Address);
    if (wantsIp) {
      if (net.defaultBridge || special)
        throw new InvalidParameter('user specified IP address is supported on user defined networks only');
      const fams = new Set(net.subnets.filter((s) => s.userSubnet).map((s) => s.family));
      if ((req.ipv4Address && !fams.has(4)) || (req.ipv6Address && !fams.has(6))) {
        throw new InvalidParameter(
          'user specified IP address is supported only when connecting to networks with user configured subnets',
        );
      }
      if (req.ipv4Address && tryParseIp(req.ipv4Address)?.family !== 4)
        throw new InvalidParameter(`invalid IPv4 address: ${req.ipv4Address}`);
      if (req.ipv6Address && tryParseIp(req.ipv6Address)?.family !== 6)
        throw new InvalidParameter(`invalid IPv6 address: ${req.ipv6Address}`);
    }
    const linkLocal = (req.linkLocalIPs ?? []).map((ip) => {
      const parsed = tryParseIp(ip);
      if (!parsed) throw new InvalidParameter(`invalid link-local IP address: ${ip}`);
      // Docker (libnetwork CreateOptionIpam): a /16 for IPv4, a /64 for IPv6.
      return {
        address: formatIp(parsed.family, parsed.value),
        prefix: parsed.family === 4 ? 16 : 64,
        family: parsed.family,
      };
    });
    for (const l of req.links ?? []) parseLink(l);
    const aliases = [...new Set(req.aliases ?? [])];
    if (aliases.length > 0 && (net.defaultBridge || special)) {
      throw new InvalidParameter('network-scoped alias is supported only for containers in user defined networks');
    }
    // lookup, not get: a plugin that came up after the daemon started is activated here.
    const driver = special
      ? undefined
      : await this.core.registry.lookup(net.driver, { config: this.core.config, log: this.core.log });
    if (driver && !sb.netnsPath)
      throw new InvalidParameter(
        'container sharing network namespace with another container or host cannot join any other network',
      );

    // Where a swarm endpoint's time goes (logged; read by bench/overlay.ts).
    const t = net.scope === 'swarm' ? phases() : undefined;
    const ep: EndpointRecord = {
      id: newId(),
      name: epName ?? sb.containerName,
      networkId: net.id,
      containerId: sb.containerId,
      sandboxId: sb.id,
      ifName,
      aliases,
      request: { ...req, network: net.name },
      options: { ...(req.driverOpts ?? {}) },
      defaultGateway: isGw && !special,
      ports: [],
      state: 'creating',
      created: Date.now() + Number(process.hrtime.bigint() % 1000n) / 1000,
    };
    // Name check and record creation under the network's lock, so two containers of one name cannot both get in.
    await this.core.mutex.run(`net:${net.id}`, async () => {
      if (!(await this.core.networks.get(net.id))) throw new NotFound(`network ${net.name} not found`);
      const eps = await this.core.endpointsOf(net.id);
      if (eps.some((e) => e.name === ep.name))
        throw new Forbidden(`endpoint with name ${ep.name} already exists in network ${net.name}`);
      await this.core.endpoints.put(ep.id, ep, 0);
    });
    t?.mark('record');
    const undos: Undo[] = [() => this.core.endpoints.delete(ep.id).then(() => undefined)];
    // A swarm endpoint's addresses: guessed here from what this node has seen, claimed cluster-wide together
    // with the endpoint's publication once its interface exists (one cluster write; ipam/claims.ts).
    const cluster = net.scope === 'swarm' && !special ? this.core.cluster : undefined;
    let held: ReturnType<AddressOps['holdSwarm']> | undefined;
    try {
      if (cluster) {
        held = this.core.addressOps.holdSwarm(net, this.swarmWants(net, req), skip);
        const v4 = held.addresses.get(4);
        const v6 = held.addresses.get(6);
        if (v4) {
          ep.ipv4 = v4.cidr;
          if (v4.gateway) ep.gatewayV4 = v4.gateway;
        }
        if (v6) {
          ep.ipv6 = v6.cidr;
          if (v6.gateway) ep.gatewayV6 = v6.gateway;
          if (sb.netnsPath) await (await this.core.getKernel()).enableIpv6(sb.netnsPath);
        }
        ep.mac = req.macAddress || (v4 ? macFromIpv4(v4.address) : randomMac());
      } else if (!special) {
        if (net.enableIPv4 && net.subnets.some((s) => s.family === 4)) {
          const a = await this.core.addressOps.allocate(net, 4, ep.id, req.ipv4Address);
          if (a) {
            ep.ipv4 = a.cidr;
            if (a.gateway) ep.gatewayV4 = a.gateway;
            undos.push(() => this.core.addressOps.releaseAddress(net.id, a.address, ep.id));
          }
        }
        if (net.enableIPv6 && net.subnets.some((s) => s.family === 6)) {
          const a = await this.core.addressOps.allocate(net, 6, ep.id, req.ipv6Address);
          if (a) {
            ep.ipv6 = a.cidr;
            if (a.gateway) ep.gatewayV6 = a.gateway;
            undos.push(() => this.core.addressOps.releaseAddress(net.id, a.address, ep.id));
          }
          if (sb.netnsPath) await (await this.core.getKernel()).enableIpv6(sb.netnsPath);
        }
        ep.mac = req.macAddress || (ep.ipv4 ? macFromIpv4(ep.ipv4.split('/')[0]!) : randomMac());
      }
      t?.mark('ipam');
      if (driver) {
        const dn = this.core.driverNetwork(net);
        const made = await driver.createEndpoint(dn, this.core.driverEndpoint(ep));
        undos.push(() => driver.deleteEndpoint(dn, made));
        if (made.mac) ep.mac = made.mac;
        const joinReq = {
          endpoint: made,
          network: dn,
          netnsPath: sb.netnsPath!,
          ifName,
          defaultGateway: ep.defaultGateway,
        };
        const info = await driver.join(joinReq);
        t?.mark('driverJoin');
        if (info.driverState) ep.joinState = info.driverState;
        undos.push(() => driver.leave({ ...joinReq, ...(info.driverState ? { joinState: info.driverState } : {}) }));
        if (info.ipv4Gateway) ep.gatewayV4 = info.ipv4Gateway.split('/')[0]!;
        if (info.ipv6Gateway) ep.gatewayV6 = info.ipv6Gateway.split('/')[0]!;
        if (info.disableGatewayService) ep.defaultGateway = false;
        if (linkLocal.length > 0) {
          const k = await this.core.getKernel();
          if (linkLocal.some((l) => l.family === 6)) await k.enableIpv6(sb.netnsPath!);
          await k.addAddresses(sb.netnsPath!, ifName, linkLocal);
        }
        if (ep.defaultGateway) {
          await this.programPorts(sb, ep, net, driver, made);
          undos.push(() => this.unprogramPorts(ep, net, driver));
        }
      }
      if (cluster && held) {
        t?.mark('other');
        // Claimed and published at once: every node learns of it from the watch, now that its interface exists.
        const rec = this.core.swarmOps.swarmEndpointOf(ep, net, cluster);
        const want = this.swarmWants(net, req).map((w) => ({
          ...w,
          preferred: held!.addresses.get(w.family)?.address,
        }));
        const { revision } = await this.core.addressOps.claimSwarm(
          net,
          want,
          ep.id,
          () => [cluster.keys.endpointWrite(rec)],
          held.guessed,
        );
        cluster.keys.applyOwn(rec, revision);
        const addrs = [...held.addresses.values()].map((a) => a.address);
        undos.push(async () => {
          await cluster.keys.deleteEndpoint(cluster.m.self.id, net.id, ep.id);
          for (const a of addrs) await this.core.addressOps.releaseAddress(net.id, a, ep.id).catch(() => undefined);
        });
        t?.mark('publish');
        // This node's own peers and names are programmed before the API answers.
        await this.core.swarmOps.syncSwarmNetwork(net.id);
        t?.mark('peersAndNames');
      }
      ep.state = 'ready';
      await this.core.endpoints.put(ep.id, ep);
      if (t) {
        t.mark('ready');
        this.core.log.info(
          { network: net.name, endpoint: shortId(ep.id), phasesMs: t.done() },
          'swarm endpoint joined',
        );
      }
      return ep;
    } catch (e) {
      await runUndos(undos, this.core.log);
      throw e;
    } finally {
      held?.drop();
    }
  }

  /** The address families a swarm endpoint gets, with the addresses the request names. */
  private swarmWants(
    net: NetworkRecord,
    req: EndpointRequest,
  ): Array<{ family: 4 | 6; preferred?: string | undefined }> {
    const want: Array<{ family: 4 | 6; preferred?: string | undefined }> = [];
    if (net.enableIPv4) want.push({ family: 4, preferred: req.ipv4Address || undefined });
    if (net.enableIPv6) want.push({ family: 6, preferred: req.ipv6Address || undefined });
    return want;
  }

  async programPorts(
    sb: SandboxRecord,
    ep: EndpointRecord,
    net: NetworkRecord,
    driver: NetworkDriver,
    dep: DriverEndpoint,
  ): Promise<void> {
    if (sb.portBindings.length === 0 && !(sb.publishAllPorts && sb.exposedPorts.length > 0)) return;
    if (!ep.ipv4) return;
    const containerIp = ep.ipv4.split('/')[0]!;
    try {
      const { bindings, picked } = await this.core.ports.reserve(ep.id, {
        bindings: sb.portBindings,
        exposed: sb.exposedPorts,
        publishAll: sb.publishAllPorts,
        containerIp,
        ...(sb.pickedPorts ? { picked: sb.pickedPorts } : {}),
        ...(hostBinding(net) ? { defaultHostIp: hostBinding(net)! } : {}),
      });
      try {
        await driver.programExternalConnectivity?.(this.core.driverNetwork(net), dep, driverBindings(bindings));
      } catch (e) {
        await this.core.ports.release(ep.id);
        throw e;
      }
      ep.ports = bindings;
      sb.pickedPorts = { ...(sb.pickedPorts ?? {}), ...picked };
    } catch (e) {
      const msg = `driver failed programming external connectivity on endpoint ${ep.name} (${ep.id}): ${(e as Error).message}`;
      throw e instanceof CoveError ? new CoveError(msg, e.status) : new SystemError(msg);
    }
  }

  async unprogramPorts(ep: EndpointRecord, net: NetworkRecord, driver: NetworkDriver | undefined): Promise<void> {
    if (ep.ports.length > 0 && driver?.revokeExternalConnectivity) {
      await driver.revokeExternalConnectivity(this.core.driverNetwork(net), this.core.driverEndpoint(ep));
    }
    await this.core.ports.release(ep.id);
    ep.ports = [];
  }

  /** Undoes joinEndpoint; every step is attempted even if one fails (best effort, logged). */
  async leaveEndpoint(sb: SandboxRecord, ep: EndpointRecord, net: NetworkRecord | undefined): Promise<void> {
    const special = !net || net.driver === 'host' || net.driver === 'null';
    const driver =
      net && !special && this.core.registry.has(net.driver) ? this.core.registry.get(net.driver) : undefined;
    const step = async (what: string, fn: () => Promise<unknown> | unknown) => {
      try {
        await fn();
      } catch (e) {
        this.core.log.warn(
          { endpoint: shortId(ep.id), step: what, err: (e as Error).message },
          'leaving network: step failed',
        );
      }
    };
    // Swarm networks: other nodes drop it as a peer and a name first.
    if (this.core.cluster && (!net || net.scope === 'swarm')) {
      const c = this.core.cluster;
      await step('cluster record', () => c.keys.deleteEndpoint(c.m.self.id, ep.networkId, ep.id));
    }
    if (net) await step('ports', () => this.unprogramPorts(ep, net, driver));
    else await step('ports', () => this.core.ports.release(ep.id));
    if (driver && net && sb.netnsPath) {
      const dn = this.core.driverNetwork(net);
      const dep = this.core.driverEndpoint(ep);
      await step('leave', () =>
        driver.leave({
          endpoint: dep,
          network: dn,
          netnsPath: sb.netnsPath!,
          ifName: ep.ifName,
          defaultGateway: ep.defaultGateway,
          ...(ep.joinState ? { joinState: ep.joinState } : {}),
        }),
      );
      await step('deleteEndpoint', () => driver.deleteEndpoint(dn, dep));
    }
    if (ep.ipv4) await step('release v4', () => this.core.addressOps.releaseAddress(ep.networkId, ep.ipv4!, ep.id));
    if (ep.ipv6) await step('release v6', () => this.core.addressOps.releaseAddress(ep.networkId, ep.ipv6!, ep.id));
    await step('record', () => this.core.endpoints.delete(ep.id));
  }

  /**
   * The network that gave the default route is gone: the next endpoint with a
   * gateway takes over the route and the published ports (as libnetwork does).
   * Best effort: the container keeps its other networks either way.
   */
  async promoteGateway(sb: SandboxRecord, remaining: Array<{ ep: EndpointRecord; net: NetworkRecord }>): Promise<void> {
    const next = remaining.find(
      (j) => !j.net.internal && (j.ep.gatewayV4 || j.ep.gatewayV6) && this.core.driverOf(j.net),
    );
    if (!next || !sb.netnsPath) return;
    const { ep, net } = next;
    try {
      const gws: { v4?: string; v6?: string } = {};
      if (ep.gatewayV4) gws.v4 = ep.gatewayV4;
      if (ep.gatewayV6) gws.v6 = ep.gatewayV6;
      await (await this.core.getKernel()).setDefaultRoute(sb.netnsPath, ep.ifName, gws);
      ep.defaultGateway = true;
      await this.programPorts(sb, ep, net, this.core.driverOf(net)!, this.core.driverEndpoint(ep));
      await this.core.endpoints.put(ep.id, ep);
      await this.core.sandboxes.update(sb.containerId, (cur) =>
        cur ? { ...cur, pickedPorts: sb.pickedPorts ?? cur.pickedPorts } : cur,
      );
    } catch (e) {
      this.core.log.warn(
        { container: shortId(sb.containerId), network: net.name, err: (e as Error).message },
        'moving the default route failed',
      );
    }
  }
}
