/**
 * The bridge driver's kernel changes as data: pure functions from a network /
 * endpoint to the typed kernel ops that make it (src/kernel/ops.ts renders
 * and validates them, so a plan that renders cannot kill the ip co-process
 * with a syntax error). Values are checked here too, with Docker's wording.
 */
import { createHash } from 'node:crypto';
import { InvalidParameter } from '../../../common/errors.js';
import {
  cidr,
  ifName,
  ipv4,
  mac as checkMac,
  mtu as checkMtu,
  netnsPath as checkNetnsPath,
  type Cidr,
} from '../../../kernel/validate.js';
import type { DriverEndpoint, DriverNetwork } from '../../driver.js';
import type { NetnsOp } from '../../../kernel/rtnl.js';
import type { KernelOp } from '../../../kernel/ops.js';

export const OPT_BRIDGE_NAME = 'com.docker.network.bridge.name';
export const OPT_MTU = 'com.docker.network.driver.mtu';
/** Links with a smaller MTU get no IPv6 from the kernel. */
/** Below this MTU the kernel gives a link no IPv6 (RFC 8200 minimum). */
export const IPV6_MIN_MTU = 1280;
export const OPT_MASQUERADE = 'com.docker.network.bridge.enable_ip_masquerade';
export const OPT_ICC = 'com.docker.network.bridge.enable_icc';
export const OPT_HOST_BINDING_IPV4 = 'com.docker.network.bridge.host_binding_ipv4';
export const OPT_GATEWAY_MODE_IPV4 = 'com.docker.network.bridge.gateway_mode_ipv4';
export const OPT_GATEWAY_MODE_IPV6 = 'com.docker.network.bridge.gateway_mode_ipv6';

/** Docker's gateway modes: nat (default: masquerade, only published ports reach in), routed (no NAT), nat-unprotected (NAT, nothing filtered). */
export type GatewayMode = 'nat' | 'routed' | 'nat-unprotected';

function gatewayMode(v: string | undefined, name: string): GatewayMode {
  if (v === undefined || v === '') return 'nat';
  if (v === 'nat' || v === 'routed' || v === 'nat-unprotected') return v;
  throw new InvalidParameter(`${name} must be one of: nat, nat-unprotected, routed (got ${JSON.stringify(v)})`);
}

function boolOpt(v: string | undefined, dflt: boolean, name: string): boolean {
  if (v === undefined || v === '') return dflt;
  const s = v.toLowerCase();
  if (['1', 't', 'true'].includes(s)) return true;
  if (['0', 'f', 'false'].includes(s)) return false;
  throw new InvalidParameter(`invalid value for ${name}: ${JSON.stringify(v)}`);
}

/** Everything the driver needs to know about a bridge network, validated. */
export interface BridgeConfig {
  id: string;
  bridge: string;
  mtu?: number;
  /** Gateway addresses on the bridge (CIDR with the subnet's prefix). */
  gateways: Cidr[];
  subnets4: string[];
  subnets6: string[];
  internal: boolean;
  icc: boolean;
  masquerade: boolean;
  enableIPv6: boolean;
  /** Default host IP for published ports without one ('' = all). */
  hostBindingIPv4: string;
  gatewayMode4: GatewayMode;
  gatewayMode6: GatewayMode;
}

export function bridgeName(net: Pick<DriverNetwork, 'id' | 'options'>): string {
  const named = net.options[OPT_BRIDGE_NAME];
  if (named) return ifName(named, 'bridge name');
  if (!/^[0-9a-f]{12}/.test(net.id)) throw new InvalidParameter(`invalid network id ${JSON.stringify(net.id)}`);
  return `br-${net.id.slice(0, 12)}`;
}

export function bridgeConfig(net: DriverNetwork): BridgeConfig {
  const gateways: Cidr[] = [];
  const subnets4: string[] = [];
  const subnets6: string[] = [];
  for (const d of net.ipv4) {
    const pool = cidr(d.pool, 'subnet');
    if (pool.family !== 4) throw new InvalidParameter(`invalid IPv4 subnet ${d.pool}`);
    subnets4.push(pool.network);
    if (d.gateway) {
      const gw = cidr(d.gateway.includes('/') ? d.gateway : `${d.gateway}/${pool.prefix}`, 'gateway');
      gateways.push(gw);
    }
  }
  if (net.enableIPv6) {
    for (const d of net.ipv6) {
      const pool = cidr(d.pool, 'subnet');
      if (pool.family !== 6) throw new InvalidParameter(`invalid IPv6 subnet ${d.pool}`);
      subnets6.push(pool.network);
      if (d.gateway)
        gateways.push(cidr(d.gateway.includes('/') ? d.gateway : `${d.gateway}/${pool.prefix}`, 'gateway'));
    }
  }
  const m = net.options[OPT_MTU];
  const hostBinding = net.options[OPT_HOST_BINDING_IPV4] ?? '';
  const cfg: BridgeConfig = {
    id: net.id,
    bridge: bridgeName(net),
    gateways,
    subnets4,
    subnets6,
    internal: net.internal,
    icc: boolOpt(net.options[OPT_ICC], true, OPT_ICC),
    masquerade: boolOpt(net.options[OPT_MASQUERADE], true, OPT_MASQUERADE),
    enableIPv6: net.enableIPv6,
    hostBindingIPv4: hostBinding === '' || hostBinding === '0.0.0.0' ? '' : ipv4(hostBinding, OPT_HOST_BINDING_IPV4),
    gatewayMode4: gatewayMode(net.options[OPT_GATEWAY_MODE_IPV4], OPT_GATEWAY_MODE_IPV4),
    gatewayMode6: gatewayMode(net.options[OPT_GATEWAY_MODE_IPV6], OPT_GATEWAY_MODE_IPV6),
  };
  if (m !== undefined && m !== '' && m !== '0') cfg.mtu = checkMtu(m);
  return cfg;
}

/** The one non-idempotent step of making a bridge (run alone: it fails with EEXIST when the name is taken). */
export function bridgeAddOp(cfg: BridgeConfig): KernelOp {
  return cfg.mtu ? { kind: 'bridge-add', name: cfg.bridge, mtu: cfg.mtu } : { kind: 'bridge-add', name: cfg.bridge };
}

/** Ops (daemon netns) that make the bridge; idempotent except for the `bridge-add`. */
export function createBridgeOps(cfg: BridgeConfig): KernelOp[] {
  return [bridgeAddOp(cfg), ...bridgeAddressOps(cfg)];
}

/** Addresses, MTU and up: safe to re-run on an existing bridge (restore). */
export function bridgeAddressOps(cfg: BridgeConfig): KernelOp[] {
  const ops: KernelOp[] = [];
  if (cfg.mtu) ops.push({ kind: 'link-set', name: cfg.bridge, mtu: cfg.mtu });
  for (const g of cfg.gateways) {
    const addr: KernelOp = { kind: 'addr', dev: cfg.bridge, cidr: `${g.address}/${g.prefix}` };
    ops.push(g.family === 6 ? { ...addr, nodad: true } : addr);
  }
  ops.push({ kind: 'link-set', name: cfg.bridge, up: true });
  return ops;
}

/** Sysctls of the daemon netns for a bridge: 127.0.0.1 may be DNATed out of it (published ports from the host). */
export function bridgeSysctls(cfg: BridgeConfig): Record<string, string> {
  const s: Record<string, string> = {
    'net.ipv4.ip_forward': '1',
    [`net.ipv4.conf.${cfg.bridge}.route_localnet`]: '1',
  };
  if (cfg.enableIPv6) {
    s['net.ipv6.conf.all.forwarding'] = '1';
    s[`net.ipv6.conf.${cfg.bridge}.disable_ipv6`] = '0';
  }
  return s;
}

/** veth<7 hex> from the endpoint id, so leave and restore find it again. */
export function hostVethName(endpointId: string): string {
  if (!/^[0-9a-f]{7,}/.test(endpointId)) {
    return 'veth' + createHash('sha256').update(endpointId).digest('hex').slice(0, 7);
  }
  return `veth${endpointId.slice(0, 7)}`;
}

/** Docker's MAC for an IPv4 address: 02:42 then the four octets (172.17.0.2 -> 02:42:ac:11:00:02). */
export function macFromIPv4(ip: string): string {
  return [
    '02',
    '42',
    ...ipv4(ip)
      .split('.')
      .map((o) => Number(o).toString(16).padStart(2, '0')),
  ].join(':');
}

export interface JoinPlan {
  hostVeth: string;
  mac: string;
  /** In the daemon netns: the veth, its peer made directly in the sandbox netns, host end not up yet. */
  host: KernelOp[];
  /** Daemon-netns sysctls between `host` and `hostUp`: the host end is a bridge port and needs no IPv6 (cost grows with N otherwise). */
  hostSysctls: Record<string, string>;
  /** Then: host end up, with hairpin (a container reaching its own published port). */
  hostUp: KernelOp[];
  /** Inside the sandbox netns, in order (IPv6 decided before the interface comes up). */
  sandbox: NetnsOp[];
  ipv4Gateway?: string;
  ipv6Gateway?: string;
}

export function joinPlan(
  cfg: BridgeConfig,
  ep: DriverEndpoint,
  netns: string,
  ifname: string,
  defaultGateway: boolean,
): JoinPlan {
  const path = checkNetnsPath(netns);
  const inner = ifName(ifname, 'sandbox interface name');
  const hostVeth = hostVethName(ep.id);
  const a4 = ep.ipv4 ? cidr(ep.ipv4, 'endpoint IPv4 address') : undefined;
  const a6 = ep.ipv6 && cfg.enableIPv6 ? cidr(ep.ipv6, 'endpoint IPv6 address') : undefined;
  if (a4 && a4.family !== 4) throw new InvalidParameter(`invalid endpoint IPv4 address ${ep.ipv4}`);
  if (a6 && a6.family !== 6) throw new InvalidParameter(`invalid endpoint IPv6 address ${ep.ipv6}`);
  const macAddr = ep.mac ? checkMac(ep.mac) : a4 ? macFromIPv4(a4.address) : undefined;
  if (!macAddr) throw new InvalidParameter('endpoint has neither a MAC nor an IPv4 address');
  const host: KernelOp[] = [
    {
      kind: 'veth-add',
      name: hostVeth,
      master: cfg.bridge,
      peer: inner,
      peerNetns: path,
      peerMac: macAddr,
      ...(cfg.mtu ? { mtu: cfg.mtu } : {}),
    },
  ];
  // Below IPv6's minimum MTU (1280) the kernel gives a link no IPv6 at all, so
  // its conf/<if>/disable_ipv6 file does not exist: nothing to switch off.
  const ipv6Capable = !cfg.mtu || cfg.mtu >= IPV6_MIN_MTU;
  const hostSysctls: Record<string, string> = ipv6Capable ? { [`net.ipv6.conf.${hostVeth}.disable_ipv6`]: '1' } : {};
  const hostUp: KernelOp[] = [{ kind: 'link-set', name: hostVeth, up: true, hairpin: true }];
  const sandbox: NetnsOp[] = [];
  if (ipv6Capable || a6)
    sandbox.push({ op: 'sysctl', key: `net.ipv6.conf.${inner}.disable_ipv6`, value: a6 ? '0' : '1' });
  sandbox.push({ op: 'up', dev: 'lo' });
  if (a4) sandbox.push({ op: 'addr', dev: inner, address: a4.address, prefix: a4.prefix });
  if (a6) sandbox.push({ op: 'addr', dev: inner, address: a6.address, prefix: a6.prefix });
  sandbox.push({ op: 'up', dev: inner });
  const gw4 = cfg.gateways.find((g) => g.family === 4 && a4 && sameNet(g, a4));
  const gw6 = cfg.gateways.find((g) => g.family === 6 && a6 && sameNet(g, a6));
  if (defaultGateway) {
    if (gw4) sandbox.push({ op: 'route', dev: inner, via: gw4.address });
    if (gw6) sandbox.push({ op: 'route', dev: inner, via: gw6.address });
  }
  const plan: JoinPlan = {
    hostVeth,
    mac: macAddr,
    host,
    hostSysctls,
    hostUp,
    sandbox,
  };
  if (gw4) plan.ipv4Gateway = gw4.address;
  if (gw6) plan.ipv6Gateway = gw6.address;
  return plan;
}

function sameNet(a: Cidr, b: Cidr): boolean {
  return cidr(`${a.address}/${b.prefix}`).network === b.network;
}

/** Interface group of veths waiting to be deleted (see BridgeDriver.leave). */
export const DOOMED_GROUP = 25455;

/**
 * Leaving, split in two: detaching is immediate and cheap (host end down, off
 * the bridge, into the doomed group; the sandbox end down and renamed so its
 * name is free again), deleting is batched later (`link del group`), because
 * every link deletion waits ~20 ms for the kernel (RCU) however many links it
 * removes.
 */
export function leavePlan(ep: Pick<DriverEndpoint, 'id'>, ifname: string): { host: KernelOp[]; sandbox: NetnsOp[] } {
  const inner = ifName(ifname, 'sandbox interface name');
  const veth = hostVethName(ep.id);
  return {
    host: [{ kind: 'link-set', name: veth, up: false, nomaster: true, group: DOOMED_GROUP }],
    sandbox: [
      { op: 'down', dev: inner },
      { op: 'rename', dev: inner, to: `gone${veth.slice(4)}` },
    ],
  };
}

export function reapOps(): KernelOp[] {
  return [{ kind: 'link-del-group', group: DOOMED_GROUP }];
}

/** Deletes one endpoint's veth right away (rollback of a failed join). */
export function deleteVethOps(ep: Pick<DriverEndpoint, 'id'>): KernelOp[] {
  return [{ kind: 'link-del', name: hostVethName(ep.id) }];
}
