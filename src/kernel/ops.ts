/**
 * The kernel seam of every network driver: typed kernel operations (links,
 * addresses, routes, FDB and neighbour entries; rtnetlink inside a sandbox)
 * rendered to commands in ONE place (`render`), and `KernelOps`, the
 * interface drivers are given (DriverContext.kernel) to apply them, write
 * sysctls, read links and make namespaces: the real one here
 * (`HostKernelOps`; the daemon's shared instance is `hostKernel()` in
 * host.ts), a recording fake in unit tests (test/unit/fakes/kernel-ops.ts).
 *
 * Every value is validated while rendering, so a list of ops that renders
 * cannot kill an `ip`/`bridge` co-process with a syntax error. Failures are
 * KernelErrors with an errno `code` (errors.ts): drivers test the code.
 */
import { existsSync } from 'node:fs';
import { isKernelError, KernelError } from './errors.js';
import { IpBatch, ipBatchOnce, ipJson } from './ip.js';
import { createNetns, deleteNetns, DISABLE_IPV6, writeSysctls } from './netns.js';
import { configureInNetns, type NetnsOp } from './rtnl.js';
import { renderXfrm, type XfrmOp } from './xfrm.js';
import {
  ifName,
  ipv4,
  mac as checkMac,
  mtu as checkMtu,
  netnsPath as checkNetnsPath,
  cidr,
  port as checkPort,
  isIPv4,
  ipv6,
  parentIfName,
} from './validate.js';

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
  /**
   * A veth pair: `name` (in `netns`, else here; on bridge `master` when given)
   * and `peer`, born in `peerNetns` with `peerMac` (never moved: a move costs
   * 16-24 ms). Without `peerNetns` both ends stay here.
   */
  | {
      kind: 'veth-add';
      name: string;
      netns?: string;
      master?: string;
      peer: string;
      peerNetns?: string;
      peerMac?: string;
      mtu?: number;
    }
  /** A macvlan/ipvlan sub-interface of `parent`, born in `netns` (a sandbox) when given. */
  | {
      kind: 'subif-add';
      type: 'macvlan' | 'ipvlan';
      parent: string;
      name: string;
      netns?: string;
      mac?: string;
      mtu?: number;
      mode: string;
      flag?: string;
    }
  /**
   * Link attributes in one request. `up: false` = down; `nomaster` takes it off
   * its bridge; `group` moves it to an interface group (see link-del-group);
   * `hairpin` turns on hairpin mode of a bridge port; `netns` moves the link
   * there; `rename` gives it a new name.
   */
  | {
      kind: 'link-set';
      name: string;
      up?: boolean;
      mtu?: number;
      address?: string;
      master?: string;
      nomaster?: boolean;
      group?: number;
      netns?: string;
      rename?: string;
      hairpin?: boolean;
    }
  | { kind: 'link-del'; name: string }
  /** Every link of an interface group (one kernel wait for all of them). */
  | { kind: 'link-del-group'; group: number }
  /** Address replace; `nodad`: IPv6 without duplicate address detection (usable at once). */
  | { kind: 'addr'; dev: string; cidr: string; nodad?: boolean }
  | { kind: 'addr-del'; dev: string; cidr: string }
  /** Every address of the link (and the routes through them). */
  | { kind: 'addr-flush'; dev: string }
  /** A route replace: `via` a next hop, else on the link. */
  | { kind: 'route'; dst: string; via?: string; dev: string }
  /** Static FDB entry of a VXLAN device: frames for `mac` go to underlay `dst`. */
  | { kind: 'fdb-add'; dev: string; mac: string; dst: string }
  | { kind: 'fdb-del'; dev: string; mac: string; dst: string }
  /** Permanent neighbour entry (ARP answered locally by the vxlan's proxy). */
  | { kind: 'neigh-add'; dev: string; ip: string; mac: string }
  | { kind: 'neigh-del'; dev: string; ip: string }
  /** Inside a sandbox netns over rtnetlink (no process): addresses, up, sysctls, routes. */
  | { kind: 'rtnl'; ops: NetnsOp[] }
  /** IPsec SAs and policies (the overlay's ESP transport; src/kernel/xfrm.ts). */
  | XfrmOp;

export type Rendered = { tool: 'ip' | 'bridge'; line: string } | { tool: 'rtnl'; ops: NetnsOp[] };

function ip(s: string, what: string): string {
  return isIPv4(s) ? ipv4(s, what) : ipv6(s, what);
}

function group(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new KernelError('ip link', `invalid interface group ${n}`);
  return n;
}

/** The one place ops become command text. */
export function render(op: KernelOp): Rendered {
  switch (op.kind) {
    case 'bridge-add':
      return { tool: 'ip', line: `link add ${ifName(op.name)}${op.mtu ? ` mtu ${checkMtu(op.mtu)}` : ''} type bridge` };
    case 'vxlan-add': {
      if (!Number.isInteger(op.vni) || op.vni < 1 || op.vni > 0xffffff)
        throw new KernelError('vxlan', `invalid VNI ${op.vni}`);
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
      const master = op.master ? ` master ${ifName(op.master)}` : '';
      const peerNs = op.peerNetns ? ` netns ${checkNetnsPath(op.peerNetns)}` : '';
      const peerMac = op.peerMac ? ` address ${checkMac(op.peerMac)}` : '';
      const peerMtu = op.peerNetns || op.peerMac ? mtu : '';
      return {
        tool: 'ip',
        line: `link add ${ifName(op.name)}${ns}${mtu}${master} type veth peer name ${ifName(op.peer)}${peerNs}${peerMac}${peerMtu}`,
      };
    }
    case 'subif-add': {
      const word = /^[a-z0-9]{1,12}$/;
      if (!word.test(op.mode) || (op.flag !== undefined && !word.test(op.flag)))
        throw new KernelError(op.type, `invalid mode ${JSON.stringify(op.mode)} ${JSON.stringify(op.flag ?? '')}`);
      const ns = op.netns ? ` netns ${checkNetnsPath(op.netns)}` : '';
      const addr = op.mac ? ` address ${checkMac(op.mac)}` : '';
      const mtu = op.mtu ? ` mtu ${checkMtu(op.mtu)}` : '';
      return {
        tool: 'ip',
        line: `link add link ${parentIfName(op.parent)} name ${ifName(op.name)}${ns}${addr}${mtu} type ${op.type === 'ipvlan' ? 'ipvlan' : 'macvlan'} mode ${op.mode}${op.flag ? ` ${op.flag}` : ''}`,
      };
    }
    case 'link-set': {
      const parts = [`link set dev ${ifName(op.name)}`];
      if (op.up === false) parts.push('down');
      if (op.mtu) parts.push(`mtu ${checkMtu(op.mtu)}`);
      if (op.address) parts.push(`address ${checkMac(op.address)}`);
      if (op.master) parts.push(`master ${ifName(op.master)}`);
      if (op.nomaster) parts.push('nomaster');
      if (op.group !== undefined) parts.push(`group ${group(op.group)}`);
      if (op.rename) parts.push(`name ${ifName(op.rename)}`);
      if (op.netns) parts.push(`netns ${checkNetnsPath(op.netns)}`);
      if (op.up) parts.push('up');
      if (op.hairpin !== undefined) parts.push(`type bridge_slave hairpin ${op.hairpin ? 'on' : 'off'}`);
      return { tool: 'ip', line: parts.join(' ') };
    }
    case 'link-del':
      return { tool: 'ip', line: `link del ${ifName(op.name)}` };
    case 'link-del-group':
      return { tool: 'ip', line: `link del group ${group(op.group)}` };
    case 'addr': {
      const c = cidr(op.cidr, 'address');
      return {
        tool: 'ip',
        line: `addr replace ${c.address}/${c.prefix} dev ${ifName(op.dev)}${op.nodad ? ' nodad' : ''}`,
      };
    }
    case 'addr-del': {
      const c = cidr(op.cidr, 'address');
      return { tool: 'ip', line: `addr del ${c.address}/${c.prefix} dev ${ifName(op.dev)}` };
    }
    case 'addr-flush':
      return { tool: 'ip', line: `addr flush dev ${ifName(op.dev)}` };
    case 'route': {
      const d = cidr(op.dst, 'route destination');
      const via = op.via ? ` via ${ip(op.via, 'next hop')}` : '';
      return { tool: 'ip', line: `route replace ${d.address}/${d.prefix}${via} dev ${ifName(op.dev)}` };
    }
    case 'fdb-add':
      return {
        tool: 'bridge',
        line: `fdb replace ${checkMac(op.mac)} dev ${ifName(op.dev)} dst ${ip(op.dst, 'underlay address')} self permanent`,
      };
    case 'fdb-del':
      return {
        tool: 'bridge',
        line: `fdb del ${checkMac(op.mac)} dev ${ifName(op.dev)} dst ${ip(op.dst, 'underlay address')} self`,
      };
    case 'neigh-add':
      return {
        tool: 'ip',
        line: `neigh replace ${ip(op.ip, 'neighbour address')} lladdr ${checkMac(op.mac)} dev ${ifName(op.dev)} nud permanent`,
      };
    case 'neigh-del':
      return { tool: 'ip', line: `neigh del ${ip(op.ip, 'neighbour address')} dev ${ifName(op.dev)}` };
    case 'rtnl':
      return { tool: 'rtnl', ops: op.ops };
    case 'xfrm-state-add':
    case 'xfrm-state-del':
    case 'xfrm-policy-update':
    case 'xfrm-policy-del':
      return { tool: 'ip', line: renderXfrm(op) };
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

/** How `apply` reaches a namespace. */
export interface ApplyOptions {
  /**
   * A co-process of its own for this kind of work (the bridge's veth reaper,
   * its bridge deleter), so slow kernel work (a link deletion waits ~20 ms)
   * never queues a container's join behind it.
   */
  lane?: string;
  /** One process for this list (a sandbox's namespace: no co-process is kept for it). */
  once?: boolean;
}

/** A link as `ip -d addr show` reports it. */
export interface LinkInfo {
  name: string;
  /** bridge, veth, vxlan, macvlan, ... (undefined: a plain device such as eth0). */
  kind?: string;
  mtu: number;
  /** CIDRs on the link. */
  addresses: string[];
}

/** What drivers need from the kernel (injected through DriverContext.kernel). */
export interface KernelOps {
  /** Runs the ops in order inside `netns` (null = the daemon's own); stops at the first failing group. */
  apply(netns: string | null, ops: KernelOp[], opts?: ApplyOptions): Promise<void>;
  /** Writes net.* sysctls inside `netns` (null = the daemon's own). */
  sysctls(netns: string | null, values: Record<string, string>): Promise<void>;
  /** The link, or undefined when there is no such device (ENODEV). */
  linkInfo(netns: string | null, name: string): Promise<LinkInfo | undefined>;
  /** A new namespace bind-mounted at `path`, IPv6 off, lo up. */
  createNetns(path: string): Promise<void>;
  /** Removes the namespace (and every link in it); no error when absent. Ends co-processes kept for it. */
  deleteNetns(path: string): Promise<void>;
  netnsExists(path: string): boolean;
  /** MTU of the interface holding `address` in the daemon's netns (the underlay), if any. */
  mtuOfAddress(address: string): Promise<number | undefined>;
  /** Ends every co-process (they start again on next use). */
  close(): Promise<void>;
}

/** The real kernel: `ip`/`bridge` co-processes per namespace and lane, rtnetlink for sandbox insides. */
export class HostKernelOps implements KernelOps {
  private readonly batches = new Map<string, IpBatch>();

  /**
   * `home`: the netns that `apply(null, ...)` means (default: this process's
   * own; tests simulating hosts pass one). `mainIp`: the co-process to use for
   * `ip` ops of the home netns on the default lane (the daemon's shared one,
   * see host.ts); closed by its owner, not by close().
   */
  constructor(
    private readonly home: string | null = null,
    private readonly mainIp?: () => IpBatch,
  ) {}

  private batch(netns: string | null, tool: 'ip' | 'bridge', lane = ''): IpBatch {
    if (this.mainIp && netns === this.home && tool === 'ip' && lane === '') return this.mainIp();
    const key = `${tool}\0${netns ?? ''}\0${lane}`;
    let b = this.batches.get(key);
    if (!b) {
      b = new IpBatch(netns, tool);
      this.batches.set(key, b);
    }
    return b;
  }

  async apply(target: string | null, ops: KernelOp[], opts: ApplyOptions = {}): Promise<void> {
    const netns = target ?? this.home;
    for (const g of groupRendered(ops)) {
      if (g.tool === 'rtnl') {
        if (netns === null) throw new KernelError('rtnl', 'rtnetlink ops need a sandbox netns');
        await configureInNetns(netns, g.ops);
      } else if (opts.once) {
        if (g.tool !== 'ip') throw new KernelError(g.tool, 'one-shot batches run ip only');
        await ipBatchOnce(netns, g.line.split('\n'));
      } else {
        await this.batch(netns, g.tool, opts.lane).run(g.line.split('\n'));
      }
    }
  }

  async sysctls(netns: string | null, values: Record<string, string>): Promise<void> {
    await writeSysctls(netns ?? this.home, values);
  }

  async linkInfo(netns: string | null, name: string): Promise<LinkInfo | undefined> {
    type Row = {
      ifname: string;
      mtu: number;
      linkinfo?: { info_kind?: string };
      addr_info?: Array<{ local: string; prefixlen: number }>;
    };
    let rows: Row[];
    try {
      rows = await ipJson<Row[]>(netns ?? this.home, [
        '-d',
        'addr',
        'show',
        'dev',
        parentIfName(name, 'interface name'),
      ]);
    } catch (e) {
      if (isKernelError(e, 'ENODEV')) return undefined;
      throw e;
    }
    const r = rows[0];
    if (!r) return undefined;
    const info: LinkInfo = {
      name: r.ifname,
      mtu: r.mtu,
      addresses: (r.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`),
    };
    if (r.linkinfo?.info_kind) info.kind = r.linkinfo.info_kind;
    return info;
  }

  async createNetns(path: string): Promise<void> {
    await createNetns(path, { sysctls: DISABLE_IPV6 });
    await configureInNetns(path, [{ op: 'up', dev: 'lo' }]);
  }

  async deleteNetns(path: string): Promise<void> {
    for (const [key, b] of [...this.batches]) {
      if (key.split('\0')[1] !== path) continue;
      this.batches.delete(key);
      await b.close().catch(() => undefined);
    }
    await deleteNetns(path);
  }

  netnsExists(path: string): boolean {
    return existsSync(path);
  }

  async mtuOfAddress(address: string): Promise<number | undefined> {
    const links = await ipJson<Array<{ ifname: string; mtu: number; addr_info?: Array<{ local: string }> }>>(
      this.home,
      ['addr', 'show'],
    );
    return links.find((l) => l.addr_info?.some((a) => a.local === address))?.mtu;
  }

  async close(): Promise<void> {
    const all = [...this.batches.values()];
    this.batches.clear();
    await Promise.all(all.map((b) => b.close().catch(() => undefined)));
  }
}
