/**
 * The remote driver: a third-party network plugin spoken to over Docker's
 * remote network-driver protocol (libnetwork drivers/remote). Each
 * NetworkDriver call becomes a `POST /NetworkDriver.<Method>`; the plugin
 * makes its links in the daemon's netns, and on Join names one (SrcName)
 * that the daemon moves into the sandbox, renames DstPrefix+N and configures
 * (address, MAC, up, gateway and static routes), as dockerd does.
 *
 * Plugins are found by name (src/network/plugins.ts) when no built-in driver
 * matches: see activateRemoteDriver(), used by the driver registry.
 */
import { InvalidParameter, SystemError } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import { KernelError } from '../../../kernel/errors.js';
import { hostKernel } from '../../../kernel/host.js';
import type { KernelOp, KernelOps } from '../../../kernel/ops.js';
import type { NetnsOp } from '../../../kernel/rtnl.js';
import {
  cidr,
  ifName as checkIfName,
  ipv4,
  ipv6,
  isIPv4,
  mac as checkMac,
  netnsPath as checkNetnsPath,
} from '../../../kernel/validate.js';
import type {
  DriverEndpoint,
  DriverNetwork,
  DriverScope,
  IpamData,
  JoinInfo,
  JoinRequest,
  NetworkDriver,
  ResolvedPortBinding,
} from '../../driver.js';
import { PluginClient, PluginMethodNotFound, activatePlugin, describeAddr, type FoundPlugin } from '../../plugins.js';

export const NETWORK_DRIVER_CAP = 'NetworkDriver';
const GENERIC = 'com.docker.network.generic';

/** libnetwork driverapi.IPAMData as JSON. */
function ipamData(d: IpamData): Record<string, unknown> {
  return { AddressSpace: 'LocalDefault', Pool: d.pool, Gateway: d.gateway ?? '', AuxAddresses: d.auxAddresses };
}

interface JoinResponse {
  InterfaceName?: { SrcName?: unknown; DstPrefix?: unknown; DstName?: unknown } | null;
  Gateway?: unknown;
  GatewayIPv6?: unknown;
  StaticRoutes?: Array<{ Destination?: unknown; RouteType?: unknown; NextHop?: unknown }> | null;
  DisableGatewayService?: unknown;
}

/** What the daemon does inside the sandbox after a Join, as data (unit-testable). */
export interface RemoteJoinPlan {
  srcName: string;
  dstName: string;
  /** In the daemon's netns, before the move: MAC, then the move itself. */
  host: KernelOp[];
  sandbox: NetnsOp[];
  /** Static routes (run inside the sandbox). */
  routes: KernelOp[];
  info: JoinInfo;
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');

/**
 * Turns a Join answer into the daemon's work. `ifName` is the controller's
 * name for this endpoint (eth0, eth1, ...): its index goes after DstPrefix.
 */
export function remoteJoinPlan(res: JoinResponse, req: JoinRequest): RemoteJoinPlan {
  const iface = res.InterfaceName;
  const src = str(iface?.SrcName);
  if (!src) throw new SystemError('remote: Join returned no InterfaceName.SrcName');
  const srcName = checkIfName(src, 'plugin interface SrcName');
  const prefix = str(iface?.DstPrefix) || 'eth';
  const index = /(\d+)$/.exec(req.ifName)?.[1] ?? '0';
  const dstName = checkIfName(`${prefix}${index}`, 'sandbox interface name');
  const netns = checkNetnsPath(req.netnsPath);

  const a4 = req.endpoint.ipv4 ? cidr(req.endpoint.ipv4, 'endpoint IPv4 address') : undefined;
  const a6 = req.endpoint.ipv6 && req.network.enableIPv6 ? cidr(req.endpoint.ipv6, 'endpoint IPv6 address') : undefined;
  const host: KernelOp[] = [];
  if (req.endpoint.mac) host.push({ kind: 'link-set', name: srcName, address: checkMac(req.endpoint.mac) });
  host.push({ kind: 'link-set', name: srcName, netns });

  const sandbox: NetnsOp[] = [
    { op: 'rename', dev: srcName, to: dstName },
    { op: 'sysctl', key: `net.ipv6.conf.${dstName}.disable_ipv6`, value: a6 ? '0' : '1' },
    { op: 'up', dev: 'lo' },
  ];
  if (a4) sandbox.push({ op: 'addr', dev: dstName, address: a4.address, prefix: a4.prefix });
  if (a6) sandbox.push({ op: 'addr', dev: dstName, address: a6.address, prefix: a6.prefix });
  sandbox.push({ op: 'up', dev: dstName });

  const info: JoinInfo = {};
  const gw4 = str(res.Gateway);
  const gw6 = str(res.GatewayIPv6);
  if (gw4) info.ipv4Gateway = ipv4(gw4, 'Gateway');
  if (gw6) info.ipv6Gateway = ipv6(gw6, 'GatewayIPv6');
  const noGw = res.DisableGatewayService === true;
  if (noGw) info.disableGatewayService = true;
  if (req.defaultGateway && !noGw) {
    if (info.ipv4Gateway && a4) sandbox.push({ op: 'route', dev: dstName, via: info.ipv4Gateway });
    if (info.ipv6Gateway && a6) sandbox.push({ op: 'route', dev: dstName, via: info.ipv6Gateway });
  }

  const routes: KernelOp[] = [];
  const infoRoutes: NonNullable<JoinInfo['routes']> = [];
  for (const r of res.StaticRoutes ?? []) {
    const dest = cidr(str(r.Destination), 'static route destination');
    const dst = `${dest.address}/${dest.prefix}`;
    // libnetwork types: RouteType 0 = via NextHop, 1 = connected (on the link).
    if (r.RouteType === 1) {
      routes.push({ kind: 'route', dst, dev: dstName });
      infoRoutes.push({ destination: dst });
    } else {
      const nh = str(r.NextHop);
      const hop = isIPv4(nh) ? ipv4(nh, 'static route next hop') : ipv6(nh, 'static route next hop');
      routes.push({ kind: 'route', dst, via: hop, dev: dstName });
      infoRoutes.push({ destination: dst, nextHop: hop });
    }
  }
  if (infoRoutes.length) info.routes = infoRoutes;
  info.driverState = { srcName, ifName: dstName };
  return { srcName, dstName, host, sandbox, routes, info };
}

export class RemoteDriver implements NetworkDriver {
  constructor(
    readonly name: string,
    readonly client: PluginClient,
    readonly scope: DriverScope,
    readonly connectivityScope: DriverScope,
    private readonly log: Logger,
    /** The kernel seam (DriverContext.kernel): the daemon's shared one unless injected. */
    private readonly kernel: KernelOps = hostKernel(),
  ) {}

  private call<T = Record<string, unknown>>(method: string, body: unknown): Promise<T> {
    return this.client.call<T>(`NetworkDriver.${method}`, body);
  }

  async createNetwork(net: DriverNetwork): Promise<void> {
    const options: Record<string, unknown> = {
      [GENERIC]: { ...net.options },
      'com.docker.network.enable_ipv6': net.enableIPv6,
    };
    if (net.internal) options['com.docker.network.internal'] = true;
    await this.call('CreateNetwork', {
      NetworkID: net.id,
      Options: options,
      IPv4Data: net.ipv4.map(ipamData),
      IPv6Data: net.ipv6.map(ipamData),
    });
  }

  async deleteNetwork(net: DriverNetwork): Promise<void> {
    await this.call('DeleteNetwork', { NetworkID: net.id });
  }

  async createEndpoint(net: DriverNetwork, ep: DriverEndpoint): Promise<DriverEndpoint> {
    const res = await this.call<{
      Interface?: { Address?: unknown; AddressIPv6?: unknown; MacAddress?: unknown } | null;
    }>('CreateEndpoint', {
      NetworkID: net.id,
      EndpointID: ep.id,
      Interface: { Address: ep.ipv4 ?? '', AddressIPv6: ep.ipv6 ?? '', MacAddress: ep.mac ?? '' },
      Options: { ...ep.options },
    });
    const out: DriverEndpoint = { ...ep };
    try {
      const iface = res.Interface;
      if (iface) {
        // The daemon's IPAM owns addresses: a plugin may echo them, not change them (libnetwork: SetIPAddress fails).
        const a = str(iface.Address);
        if (a && a !== ep.ipv4)
          throw new InvalidParameter(
            `driver modified interface address: ${a} (the daemon assigned ${ep.ipv4 ?? 'none'})`,
          );
        const a6 = str(iface.AddressIPv6);
        if (a6 && a6 !== ep.ipv6)
          throw new InvalidParameter(
            `driver modified interface address: ${a6} (the daemon assigned ${ep.ipv6 ?? 'none'})`,
          );
        const m = str(iface.MacAddress);
        if (m) out.mac = checkMac(m.toLowerCase());
      }
    } catch (e) {
      await this.deleteEndpoint(net, ep).catch(() => undefined);
      throw e;
    }
    return out;
  }

  async deleteEndpoint(net: DriverNetwork, ep: DriverEndpoint): Promise<void> {
    await this.call('DeleteEndpoint', { NetworkID: net.id, EndpointID: ep.id });
  }

  /** The plugin's operational data for an endpoint (Docker shows it nowhere by default). */
  async endpointOperInfo(net: DriverNetwork, ep: DriverEndpoint): Promise<Record<string, unknown>> {
    const r = await this.call<{ Value?: unknown }>('EndpointOperInfo', { NetworkID: net.id, EndpointID: ep.id });
    return r.Value && typeof r.Value === 'object' ? (r.Value as Record<string, unknown>) : {};
  }

  async join(req: JoinRequest): Promise<JoinInfo> {
    const res = await this.call<JoinResponse>('Join', {
      NetworkID: req.network.id,
      EndpointID: req.endpoint.id,
      SandboxKey: req.netnsPath,
      Options: { ...req.endpoint.options },
    });
    let plan: RemoteJoinPlan | undefined;
    let moved = false;
    try {
      plan = remoteJoinPlan(res, req);
      try {
        await this.kernel.apply(null, plan.host);
      } catch (e) {
        throw new SystemError(
          `failed to move plugin interface ${plan.srcName} into the sandbox: ${(e as Error).message}`,
        );
      }
      moved = true;
      await this.kernel.apply(req.netnsPath, [{ kind: 'rtnl', ops: plan.sandbox }]);
      // A sandbox keeps no co-process: one `ip -batch` for its routes.
      if (plan.routes.length) await this.kernel.apply(req.netnsPath, plan.routes, { once: true });
      return plan.info;
    } catch (e) {
      if (plan && moved) await this.moveBack(req.netnsPath, plan.srcName, plan.dstName);
      await this.call('Leave', { NetworkID: req.network.id, EndpointID: req.endpoint.id }).catch(() => undefined);
      throw e;
    }
  }

  /**
   * Gives the plugin its link back: dockerd moves the interface out of the
   * sandbox into its own netns under SrcName, so DeleteEndpoint can remove it.
   * The sandbox or the link may be gone already (container died): nothing to do then.
   */
  private async moveBack(netnsPath: string, srcName: string, dstName: string): Promise<void> {
    for (const name of [dstName, srcName]) {
      const ops: KernelOp[] = [{ kind: 'link-set', name, up: false }];
      if (name !== srcName) ops.push({ kind: 'link-set', name, rename: srcName });
      ops.push({ kind: 'link-set', name: srcName, netns: `/proc/${process.pid}/ns/net` });
      try {
        await this.kernel.apply(netnsPath, ops, { once: true });
        return;
      } catch (e) {
        if (!(e instanceof KernelError)) throw e;
      }
    }
    this.log.debug({ plugin: this.name, link: dstName }, 'plugin interface not found in the sandbox (gone with it)');
  }

  async leave(req: JoinRequest & { joinState?: Record<string, unknown> }): Promise<void> {
    const srcName = str(req.joinState?.srcName);
    const dstName = str(req.joinState?.ifName) || req.ifName;
    if (srcName) await this.moveBack(req.netnsPath, srcName, dstName);
    await this.call('Leave', { NetworkID: req.network.id, EndpointID: req.endpoint.id });
  }

  async programExternalConnectivity(
    net: DriverNetwork,
    ep: DriverEndpoint,
    ports: ResolvedPortBinding[],
  ): Promise<void> {
    const portmap = ports.map((p) => ({
      Proto: p.proto === 'tcp' ? 6 : p.proto === 'udp' ? 17 : 132,
      IP: p.containerIp,
      Port: p.containerPort,
      HostIP: p.hostIp,
      HostPort: p.hostPort,
      HostPortEnd: p.hostPortEnd,
    }));
    try {
      await this.call('ProgramExternalConnectivity', {
        NetworkID: net.id,
        EndpointID: ep.id,
        Options: { 'com.docker.network.portmap': portmap },
      });
    } catch (e) {
      // Not mandatory for plugins (libnetwork ignores 404).
      if (!(e instanceof PluginMethodNotFound)) throw e;
    }
  }

  async revokeExternalConnectivity(net: DriverNetwork, ep: DriverEndpoint): Promise<void> {
    try {
      await this.call('RevokeExternalConnectivity', { NetworkID: net.id, EndpointID: ep.id });
    } catch (e) {
      if (!(e instanceof PluginMethodNotFound)) throw e;
    }
  }

  /** Node discovery notifications (swarm); plugins may answer {}. */
  async discoverNew(data: Record<string, unknown>): Promise<void> {
    await this.call('DiscoverNew', { DiscoveryType: 1, DiscoveryData: data });
  }

  async discoverDelete(data: Record<string, unknown>): Promise<void> {
    await this.call('DiscoverDelete', { DiscoveryType: 1, DiscoveryData: data });
  }
}

/**
 * Handshake with a found plugin: Plugin.Activate must list NetworkDriver,
 * then GetCapabilities gives the scope. Errors name the plugin and address.
 */
export async function activateRemoteDriver(
  found: FoundPlugin,
  timeoutMs: number,
  log: Logger,
  kernel?: KernelOps,
): Promise<RemoteDriver> {
  const client = new PluginClient(found.name, found.addr, timeoutMs);
  const impl = await activatePlugin(client);
  if (!impl.includes(NETWORK_DRIVER_CAP)) {
    throw new InvalidParameter(
      `plugin "${found.name}" at ${describeAddr(found.addr)} does not implement ${NETWORK_DRIVER_CAP} (it implements: ${impl.join(', ') || 'nothing'})`,
    );
  }
  const caps = await client.call<{ Scope?: unknown; ConnectivityScope?: unknown }>('NetworkDriver.GetCapabilities', {});
  const scope = caps.Scope;
  if (scope !== 'local' && scope !== 'global')
    throw new SystemError(`invalid capability: expecting 'local' or 'global', got ${String(scope)}`);
  const cs = caps.ConnectivityScope ?? '';
  if (cs !== '' && cs !== 'local' && cs !== 'global')
    throw new SystemError(`invalid capability: expecting 'local' or 'global', got ${String(cs)}`);
  log.info({ plugin: found.name, addr: describeAddr(found.addr), scope }, 'network plugin activated');
  return new RemoteDriver(found.name, client, scope, (cs || scope) as DriverScope, log, kernel);
}
