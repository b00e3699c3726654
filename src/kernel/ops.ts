/**
 * Typed kernel operations for drivers that build their own network
 * namespaces (the overlay driver: a bridge, a vxlan device, veths, static
 * FDB and neighbour entries), rendered to commands in ONE place (`render`)
 * and applied through an injected `KernelOps` (the real one here, a
 * recording fake in unit tests).
 *
 * Every value is validated while rendering, so a list of ops that renders
 * cannot kill an `ip`/`bridge` co-process with a syntax error.
 */
import { existsSync } from 'node:fs';
import { KernelError } from './errors.js';
import { IpBatch, ipJson } from './ip.js';
import { createNetns, deleteNetns, DISABLE_IPV6 } from './netns.js';
import { configureInNetns, type NetnsOp } from './rtnl.js';
import { ifName, ipv4, mac as checkMac, mtu as checkMtu, netnsPath as checkNetnsPath, cidr, port as checkPort, isIPv4, ipv6 } from './validate.js';

export type KernelOp =
  /** A Linux bridge (down until `link-set up`). */
  | { kind: 'bridge-add'; name: string; mtu?: number }
  /**
   * A VXLAN device: UDP `port`, no learning, ARP answered from the neighbour
   * table (`proxy`), no multicast group. With `netns` it is born in that
   * namespace while its UDP socket stays in the namespace that runs the op
   * (the underlay's).
   */
  | { kind: 'vxlan-add'; name: string; vni: number; local: string; port: number; mtu?: number; netns?: string }
  /** A veth pair: `name` (in `netns`, else here) and `peer` born in `peerNetns` with `peerMac`. */
  | { kind: 'veth-add'; name: string; netns?: string; peer: string; peerNetns: string; peerMac: string; mtu?: number }
  | { kind: 'link-set'; name: string; master?: string; mtu?: number; up?: boolean }
  | { kind: 'link-del'; name: string }
  | { kind: 'addr'; dev: string; cidr: string }
  /** Static FDB entry of a VXLAN device: frames for `mac` go to underlay `dst`. */
  | { kind: 'fdb-add'; dev: string; mac: string; dst: string }
  | { kind: 'fdb-del'; dev: string; mac: string; dst: string }
  /** Permanent neighbour entry (ARP answered locally by the vxlan's proxy). */
  | { kind: 'neigh-add'; dev: string; ip: string; mac: string }
  | { kind: 'neigh-del'; dev: string; ip: string }
  /** Inside a sandbox netns over rtnetlink (no process): addresses, up, sysctls, routes. */
  | { kind: 'rtnl'; ops: NetnsOp[] };

export type Rendered = { tool: 'ip' | 'bridge'; line: string } | { tool: 'rtnl'; ops: NetnsOp[] };

function ip(s: string, what: string): string {
  return isIPv4(s) ? ipv4(s, what) : ipv6(s, what);
}

/** The one place ops become command text. */
export function render(op: KernelOp): Rendered {
  switch (op.kind) {
    case 'bridge-add':
      return { tool: 'ip', line: `link add ${ifName(op.name)}${op.mtu ? ` mtu ${checkMtu(op.mtu)}` : ''} type bridge` };
    case 'vxlan-add': {
      if (!Number.isInteger(op.vni) || op.vni < 1 || op.vni > 0xffffff) throw new KernelError('vxlan', `invalid VNI ${op.vni}`);
      const ns = op.netns ? ` netns ${checkNetnsPath(op.netns)}` : '';
      const mtu = op.mtu ? ` mtu ${checkMtu(op.mtu)}` : '';
      return {
        tool: 'ip',
        line: `link add ${ifName(op.name)}${ns}${mtu} type vxlan id ${op.vni} local ${ip(op.local, 'VXLAN source')} dstport ${checkPort(op.port)} nolearning proxy`,
      };
    }
    case 'veth-add': {
      const ns = op.netns ? ` netns ${checkNetnsPath(op.netns)}` : '';
      const mtu = op.mtu ? ` mtu ${checkMtu(op.mtu)}` : '';
      return {
        tool: 'ip',
        line: `link add ${ifName(op.name)}${ns}${mtu} type veth peer name ${ifName(op.peer)} netns ${checkNetnsPath(op.peerNetns)} address ${checkMac(op.peerMac)}${mtu}`,
      };
    }
    case 'link-set': {
      const parts = [`link set dev ${ifName(op.name)}`];
      if (op.mtu) parts.push(`mtu ${checkMtu(op.mtu)}`);
      if (op.master) parts.push(`master ${ifName(op.master)}`);
      if (op.up) parts.push('up');
      return { tool: 'ip', line: parts.join(' ') };
    }
    case 'link-del':
      return { tool: 'ip', line: `link del ${ifName(op.name)}` };
    case 'addr': {
      const c = cidr(op.cidr, 'address');
      return { tool: 'ip', line: `addr replace ${c.address}/${c.prefix} dev ${ifName(op.dev)}` };
    }
    case 'fdb-add':
      return { tool: 'bridge', line: `fdb replace ${checkMac(op.mac)} dev ${ifName(op.dev)} dst ${ip(op.dst, 'underlay address')} self permanent` };
    case 'fdb-del':
      return { tool: 'bridge', line: `fdb del ${checkMac(op.mac)} dev ${ifName(op.dev)} dst ${ip(op.dst, 'underlay address')} self` };
    case 'neigh-add':
      return { tool: 'ip', line: `neigh replace ${ip(op.ip, 'neighbour address')} lladdr ${checkMac(op.mac)} dev ${ifName(op.dev)} nud permanent` };
    case 'neigh-del':
      return { tool: 'ip', line: `neigh del ${ip(op.ip, 'neighbour address')} dev ${ifName(op.dev)}` };
    case 'rtnl':
      return { tool: 'rtnl', ops: op.ops };
  }
}

/** Consecutive ops of one tool, in order (one batch each). */
export function groupRendered(ops: KernelOp[]): Rendered[] {
  const out: Rendered[] = [];
  for (const op of ops) {
    const r = render(op);
    const last = out[out.length - 1];
    if (last && last.tool === r.tool) {
      if (r.tool === 'rtnl' && last.tool === 'rtnl') last.ops = [...last.ops, ...r.ops];
      else if (r.tool !== 'rtnl' && last.tool !== 'rtnl') last.line += `\n${r.line}`;
      continue;
    }
    out.push(r.tool === 'rtnl' ? { tool: 'rtnl', ops: [...r.ops] } : { ...r });
  }
  return out;
}

/** What a driver that makes its own namespaces needs from the kernel (injected; see DriverContext). */
export interface KernelOps {
  /** Runs the ops in order inside `netns` (null = the daemon's own); stops at the first failing group. */
  apply(netns: string | null, ops: KernelOp[]): Promise<void>;
  /** A new namespace bind-mounted at `path`, IPv6 off, lo up. */
  createNetns(path: string): Promise<void>;
  /** Removes the namespace (and every link in it); no error when absent. Ends co-processes kept for it. */
  deleteNetns(path: string): Promise<void>;
  netnsExists(path: string): boolean;
  /** MTU of the interface holding `address` in the daemon's netns (the underlay), if any. */
  mtuOfAddress(address: string): Promise<number | undefined>;
  /** Ends every co-process. */
  close(): Promise<void>;
}

/** The real kernel: `ip`/`bridge` co-processes per namespace, rtnetlink for sandbox insides. */
export class HostKernelOps implements KernelOps {
  private readonly batches = new Map<string, IpBatch>();

  /** `home`: the netns that `apply(null, ...)` means (default: this process's own; tests simulating hosts pass one). */
  constructor(private readonly home: string | null = null) {}

  private batch(netns: string | null, tool: 'ip' | 'bridge'): IpBatch {
    const key = `${tool}\0${netns ?? ''}`;
    let b = this.batches.get(key);
    if (!b) {
      b = new IpBatch(netns, tool);
      this.batches.set(key, b);
    }
    return b;
  }

  async apply(target: string | null, ops: KernelOp[]): Promise<void> {
    const netns = target ?? this.home;
    for (const g of groupRendered(ops)) {
      if (g.tool === 'rtnl') {
        if (netns === null) throw new KernelError('rtnl', 'rtnetlink ops need a sandbox netns');
        await configureInNetns(netns, g.ops);
      } else {
        await this.batch(netns, g.tool).run(g.line.split('\n'));
      }
    }
  }

  async createNetns(path: string): Promise<void> {
    await createNetns(path, { sysctls: DISABLE_IPV6 });
    await configureInNetns(path, [{ op: 'up', dev: 'lo' }]);
  }

  async deleteNetns(path: string): Promise<void> {
    for (const tool of ['ip', 'bridge'] as const) {
      const key = `${tool}\0${path}`;
      const b = this.batches.get(key);
      if (b) {
        this.batches.delete(key);
        await b.close().catch(() => undefined);
      }
    }
    await deleteNetns(path);
  }

  netnsExists(path: string): boolean {
    return existsSync(path);
  }

  async mtuOfAddress(address: string): Promise<number | undefined> {
    const links = await ipJson<Array<{ ifname: string; mtu: number; addr_info?: Array<{ local: string }> }>>(this.home, ['addr', 'show']);
    return links.find((l) => l.addr_info?.some((a) => a.local === address))?.mtu;
  }

  async close(): Promise<void> {
    const all = [...this.batches.values()];
    this.batches.clear();
    await Promise.all(all.map((b) => b.close().catch(() => undefined)));
  }
}
