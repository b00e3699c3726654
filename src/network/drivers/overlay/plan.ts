/**
 * The overlay driver's kernel changes as data (typed KernelOps, rendered in
 * src/kernel/ops.ts). Per network per host, a namespace of its own (as
 * Docker's overlay driver does) holding:
 *   br0      a bridge carrying the network's gateway address, MTU = overlay MTU
 *   vxlan0   VNI of the network, UDP 4789, nolearning, proxy (ARP answered
 *            from static neighbour entries), no multicast; born in the overlay
 *            namespace from the daemon's, so its UDP socket lives on the
 *            underlay
 *   veth*    one per local endpoint, the peer (eth0, eth1...) in the sandbox
 * and, on vxlan0, a static FDB entry (MAC -> underlay address) and a
 * permanent neighbour entry (IP -> MAC) for every endpoint on other hosts.
 */
import { join } from 'node:path';
import { InvalidParameter } from '../../../common/errors.js';
import type { KernelOp } from '../../../kernel/ops.js';
import { cidr, mtu as checkMtu, ifName } from '../../../kernel/validate.js';
import type { DriverEndpoint, DriverNetwork, PeerEndpoint } from '../../driver.js';
import { IPV6_MIN_MTU, hostVethName, macFromIPv4 } from '../bridge/plan.js';

export const OPT_VNI = 'com.docker.network.driver.overlay.vxlanid_list';
export const OPT_MTU = 'com.docker.network.driver.mtu';
export const VXLAN_PORT = 4789;
/** Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD = 50;
export const BRIDGE = 'br0';
export const VXLAN = 'vxlan0';

export interface OverlayConfig {
  id: string;
  vni: number;
  /** Gateway addresses for br0 (CIDR with the subnet's prefix). */
  gateways: string[];
  internal: boolean;
  /** --opt com.docker.network.driver.mtu, if given. */
  mtuOption?: number;
}

export function overlayConfig(net: DriverNetwork): OverlayConfig {
  const raw = net.options[OPT_VNI] ?? '';
  const vni = Number(raw.split(',')[0]);
  if (!Number.isInteger(vni) || vni < 1 || vni > 0xffffff)
    throw new InvalidParameter(`overlay network ${net.name} has no valid VXLAN ID (${OPT_VNI}=${JSON.stringify(raw)})`);
  const gateways: string[] = [];
  for (const d of [...net.ipv4, ...(net.enableIPv6 ? net.ipv6 : [])]) {
    if (!d.gateway) continue;
    const pool = cidr(d.pool, 'subnet');
    gateways.push(d.gateway.includes('/') ? d.gateway : `${d.gateway}/${pool.prefix}`);
  }
  const cfg: OverlayConfig = { id: net.id, vni, gateways, internal: net.internal };
  const m = net.options[OPT_MTU];
  if (m !== undefined && m !== '' && m !== '0') cfg.mtuOption = checkMtu(m);
  return cfg;
}

/** The MTU of the overlay on this host: the option, else the underlay's minus VXLAN's 50 bytes. */
export function overlayMtu(cfg: OverlayConfig, underlayMtu: number): number {
  return cfg.mtuOption ?? underlayMtu - VXLAN_OVERHEAD;
}

/** Where the network's namespace is bind-mounted on this host. */
export function overlayNetnsPath(execRoot: string, cfg: Pick<OverlayConfig, 'id' | 'vni'>): string {
  return join(execRoot, 'overlay', `${cfg.vni}-${cfg.id.slice(0, 12)}`);
}

/** Ops that build the network's datapath in its (new, empty) namespace. */
export function networkUpOps(
  cfg: OverlayConfig,
  nsPath: string,
  localUnderlay: string,
  mtu: number,
): { daemon: KernelOp[]; inside: KernelOp[] } {
  return {
    daemon: [
      { kind: 'vxlan-add', name: VXLAN, netns: nsPath, vni: cfg.vni, local: localUnderlay, port: VXLAN_PORT, mtu },
    ],
    inside: [
      { kind: 'bridge-add', name: BRIDGE, mtu },
      ...cfg.gateways.map((g): KernelOp => ({ kind: 'addr', dev: BRIDGE, cidr: g })),
      { kind: 'link-set', name: BRIDGE, up: true },
      { kind: 'link-set', name: VXLAN, master: BRIDGE, up: true },
    ],
  };
}

export interface OverlayJoinPlan {
  hostVeth: string;
  mac: string;
  /** In the daemon's netns: the veth, one end in the overlay namespace, the other in the sandbox. */
  daemon: KernelOp[];
  /** In the overlay namespace: the veth onto br0. */
  inside: KernelOp[];
  /** In the sandbox: address and up (no default route: docker_gwbridge gives it). */
  sandbox: KernelOp[];
}

export function endpointMac(ep: Pick<DriverEndpoint, 'mac' | 'ipv4'>): string {
  if (ep.mac) return ep.mac;
  if (ep.ipv4) return macFromIPv4(ep.ipv4.split('/')[0]!);
  throw new InvalidParameter('endpoint has neither a MAC nor an IPv4 address');
}

export function joinOps(
  ep: DriverEndpoint,
  nsPath: string,
  sandboxNetns: string,
  inner: string,
  mtu: number,
): OverlayJoinPlan {
  const hostVeth = hostVethName(ep.id);
  const mac = endpointMac(ep);
  ifName(inner, 'sandbox interface name');
  // Below IPv6's minimum MTU (1280, e.g. an ingress made with mtu=1200) the kernel gives the
  // link no IPv6 at all, so its conf/<if>/disable_ipv6 does not exist: nothing to switch off.
  const ipv6Capable = mtu >= IPV6_MIN_MTU;
  const sandbox: KernelOp[] = [
    {
      kind: 'rtnl',
      ops: [
        ...(ipv6Capable || ep.ipv6
          ? [{ op: 'sysctl' as const, key: `net.ipv6.conf.${inner}.disable_ipv6`, value: ep.ipv6 ? '0' : '1' }]
          : []),
        { op: 'up', dev: 'lo' },
        ...(ep.ipv4 ? [{ op: 'addr' as const, dev: inner, ...splitCidr(ep.ipv4) }] : []),
        ...(ep.ipv6 ? [{ op: 'addr' as const, dev: inner, ...splitCidr(ep.ipv6) }] : []),
        { op: 'up', dev: inner },
      ],
    },
  ];
  return {
    hostVeth,
    mac,
    daemon: [
      { kind: 'veth-add', name: hostVeth, netns: nsPath, peer: inner, peerNetns: sandboxNetns, peerMac: mac, mtu },
    ],
    inside: [{ kind: 'link-set', name: hostVeth, master: BRIDGE, up: true }],
    sandbox,
  };
}

function splitCidr(s: string): { address: string; prefix: number } {
  const c = cidr(s, 'endpoint address');
  return { address: c.address, prefix: c.prefix };
}

/** What is programmed on vxlan0 for one remote endpoint. */
export interface ProgrammedPeer {
  mac: string;
  dst: string;
  ips: string[];
}

export function peerEntry(p: PeerEndpoint, underlay: string): ProgrammedPeer {
  const ips = [p.ipv4, p.ipv6].filter((x): x is string => !!x).map((a) => a.split('/')[0]!);
  return { mac: p.mac.toLowerCase(), dst: underlay, ips };
}

function samePeer(a: ProgrammedPeer, b: ProgrammedPeer): boolean {
  return a.mac === b.mac && a.dst === b.dst && a.ips.join() === b.ips.join();
}

/**
 * Ops that take vxlan0 from `have` to `want` (endpoint id -> entry): removals
 * first, then additions (`replace`, so re-adding is harmless).
 */
export function peerDiffOps(have: Map<string, ProgrammedPeer>, want: Map<string, ProgrammedPeer>): KernelOp[] {
  const del: KernelOp[] = [];
  const add: KernelOp[] = [];
  for (const [id, p] of have) {
    const w = want.get(id);
    if (w && samePeer(w, p)) continue;
    // An entry another endpoint now wants (same MAC, e.g. an address reused) is replaced, not deleted.
    const stillWanted = [...want.values()].some((x) => x.mac === p.mac);
    if (!stillWanted) del.push({ kind: 'fdb-del', dev: VXLAN, mac: p.mac, dst: p.dst });
    for (const ip of p.ips)
      if (![...want.values()].some((x) => x.ips.includes(ip))) del.push({ kind: 'neigh-del', dev: VXLAN, ip });
  }
  for (const [id, w] of want) {
    const h = have.get(id);
    if (h && samePeer(h, w)) continue;
    add.push({ kind: 'fdb-add', dev: VXLAN, mac: w.mac, dst: w.dst });
    for (const ip of w.ips) add.push({ kind: 'neigh-add', dev: VXLAN, ip, mac: w.mac });
  }
  return [...del, ...add];
}
