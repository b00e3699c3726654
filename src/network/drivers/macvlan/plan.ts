/**
 * macvlan (and ipvlan) as data: the sub-interface is created on the parent in
 * the daemon netns with its end directly inside the sandbox netns (no move),
 * then addressed and brought up from inside.
 */
import { InvalidParameter } from '../../../common/errors.js';
import {
  cidr,
  ifName,
  mac as checkMac,
  mtu as checkMtu,
  netnsPath as checkNetnsPath,
  parentIfName,
  type Cidr,
} from '../../../kernel/validate.js';
import type { DriverEndpoint, DriverNetwork } from '../../driver.js';
import type { NetnsOp } from '../../../kernel/rtnl.js';
import type { KernelOp } from '../../../kernel/ops.js';
import { macFromIPv4 } from '../bridge/plan.js';

export const OPT_PARENT = 'parent';
export const OPT_MTU = 'com.docker.network.driver.mtu';

export const MACVLAN_MODES = ['bridge', 'private', 'vepa', 'passthru'] as const;
export const IPVLAN_MODES = ['l2', 'l3', 'l3s'] as const;
export const IPVLAN_FLAGS = ['bridge', 'private', 'vepa'] as const;

export interface SubIfConfig {
  kind: 'macvlan' | 'ipvlan';
  parent: string;
  /** macvlan: bridge/private/vepa/passthru; ipvlan: l2/l3/l3s. */
  mode: string;
  /** ipvlan only: bridge/private/vepa. */
  flag?: string;
  mtu?: number;
  gateways: Cidr[];
  internal: boolean;
}

export function subIfConfig(kind: 'macvlan' | 'ipvlan', net: DriverNetwork): SubIfConfig | { noParent: true } {
  const parentOpt = net.options[OPT_PARENT];
  let mode: string;
  let flag: string | undefined;
  if (kind === 'macvlan') {
    mode = net.options['macvlan_mode'] || 'bridge';
    if (!(MACVLAN_MODES as readonly string[]).includes(mode))
      throw new InvalidParameter(
        `requested macvlan mode '${mode}' is not valid, 'bridge' mode is the macvlan driver default`,
      );
  } else {
    mode = net.options['ipvlan_mode'] || 'l2';
    flag = net.options['ipvlan_flag'] || 'bridge';
    if (!(IPVLAN_MODES as readonly string[]).includes(mode))
      throw new InvalidParameter(
        `requested ipvlan mode '${mode}' is not valid, 'l2' mode is the ipvlan driver default`,
      );
    if (!(IPVLAN_FLAGS as readonly string[]).includes(flag))
      throw new InvalidParameter(`requested ipvlan flag '${flag}' is not valid, 'bridge' is the ipvlan driver default`);
  }
  if (!parentOpt) return { noParent: true };
  const gateways: Cidr[] = [];
  for (const d of [...net.ipv4, ...(net.enableIPv6 ? net.ipv6 : [])]) {
    const pool = cidr(d.pool, 'subnet');
    if (d.gateway) gateways.push(cidr(d.gateway.includes('/') ? d.gateway : `${d.gateway}/${pool.prefix}`, 'gateway'));
  }
  const cfg: SubIfConfig = { kind, parent: parentIfName(parentOpt), mode, gateways, internal: net.internal };
  if (flag !== undefined) cfg.flag = flag;
  const m = net.options[OPT_MTU];
  if (m !== undefined && m !== '' && m !== '0') cfg.mtu = checkMtu(m);
  return cfg;
}

export interface SubIfJoinPlan {
  /** In the daemon netns: the sub-interface, born in the sandbox. */
  host: KernelOp[];
  sandbox: NetnsOp[];
  mac?: string;
  ipv4Gateway?: string;
  ipv6Gateway?: string;
}

export function subIfJoinPlan(
  cfg: SubIfConfig,
  ep: DriverEndpoint,
  netns: string,
  ifname: string,
  defaultGateway: boolean,
  enableIPv6: boolean,
): SubIfJoinPlan {
  const path = checkNetnsPath(netns);
  const inner = ifName(ifname, 'sandbox interface name');
  const a4 = ep.ipv4 ? cidr(ep.ipv4, 'endpoint IPv4 address') : undefined;
  const a6 = ep.ipv6 && enableIPv6 ? cidr(ep.ipv6, 'endpoint IPv6 address') : undefined;
  // ipvlan shares the parent's MAC; macvlan gets Docker's IP-derived one.
  const macAddr =
    cfg.kind === 'macvlan' ? (ep.mac ? checkMac(ep.mac) : a4 ? macFromIPv4(a4.address) : undefined) : undefined;
  const host: KernelOp[] = [
    {
      kind: 'subif-add',
      type: cfg.kind,
      parent: cfg.parent,
      name: inner,
      netns: path,
      mode: cfg.mode,
      ...(cfg.flag ? { flag: cfg.flag } : {}),
      ...(macAddr ? { mac: macAddr } : {}),
      ...(cfg.mtu ? { mtu: cfg.mtu } : {}),
    },
  ];
  const sandbox: NetnsOp[] = [
    { op: 'sysctl', key: `net.ipv6.conf.${inner}.disable_ipv6`, value: a6 ? '0' : '1' },
    { op: 'up', dev: 'lo' },
  ];
  if (a4) sandbox.push({ op: 'addr', dev: inner, address: a4.address, prefix: a4.prefix });
  if (a6) sandbox.push({ op: 'addr', dev: inner, address: a6.address, prefix: a6.prefix });
  sandbox.push({ op: 'up', dev: inner });
  const gw4 = cfg.gateways.find((g) => g.family === 4);
  const gw6 = cfg.gateways.find((g) => g.family === 6);
  const plan: SubIfJoinPlan = { host, sandbox };
  if (defaultGateway && !cfg.internal) {
    if (gw4 && a4) sandbox.push({ op: 'route', dev: inner, via: gw4.address });
    if (gw6 && a6) sandbox.push({ op: 'route', dev: inner, via: gw6.address });
  }
  if (macAddr) plan.mac = macAddr;
  if (gw4 && a4 && !cfg.internal) plan.ipv4Gateway = gw4.address;
  if (gw6 && a6 && !cfg.internal) plan.ipv6Gateway = gw6.address;
  return plan;
}
