/**
 * A recording KernelOps (src/kernel/ops.ts) for unit tests: every op is
 * rendered (so invalid values fail as they would for real) and kept, per
 * namespace, in order; namespaces are a set of paths. Tests compare whole
 * recorded plans (`take()`).
 *
 * Links are simulated (name, kind, addresses, group, per namespace) so reads
 * (`linkInfo`) answer as the kernel would; with `strict` the fake also
 * refuses like the kernel: EEXIST for a link name taken in that namespace,
 * ENODEV for a link that is not there. `failNext` makes an op kind fail with
 * a KernelError of a given code (a kernel that refuses).
 */
import { KernelError, type KernelErrorCode } from '../../../src/kernel/errors.js';
import { render, type ApplyOptions, type KernelOp, type KernelOps, type LinkInfo } from '../../../src/kernel/ops.js';
import { describeOp } from '../../../src/kernel/rtnl.js';

interface FakeLink {
  kind?: string;
  addresses: string[];
  group?: number;
  master?: string;
  up?: boolean;
}

const HERE = '-';

export class RecordingKernelOps implements KernelOps {
  readonly netns = new Set<string>();
  /**
   * Each applied op as `<netns or -> <command>` (rtnl ops as the ip command
   * they stand for, sysctls as `sysctl key=value`); `<netns>@<lane>` when the
   * op ran on a lane of its own.
   */
  readonly log: string[] = [];
  underlayMtu = 1500;
  /** An op kind that fails once with a plain Error (then is cleared). */
  failOnce: KernelOp['kind'] | undefined;
  /** Op kinds that fail (once each, in order) with a KernelError of that code. */
  readonly failNext: Array<{ kind: KernelOp['kind'] | 'sysctl'; code: KernelErrorCode }> = [];
  /** Refuse like the kernel: EEXIST / ENODEV from the simulated links. */
  strict = false;
  /** Simulated links: netns ('-' = the daemon's) -> name -> link. */
  readonly links = new Map<string, Map<string, FakeLink>>();

  /** A link that exists before the test (a user's bridge, a parent interface). */
  addLink(netns: string | null, name: string, link: Partial<FakeLink> = {}): void {
    this.ns(netns ?? HERE).set(name, { addresses: [], ...link });
  }

  hasLink(netns: string | null, name: string): boolean {
    return this.links.get(netns ?? HERE)?.has(name) ?? false;
  }

  private ns(where: string): Map<string, FakeLink> {
    let m = this.links.get(where);
    if (!m) {
      m = new Map();
      this.links.set(where, m);
    }
    return m;
  }

  private maybeFail(kind: KernelOp['kind'] | 'sysctl', command: string): void {
    const i = this.failNext.findIndex((f) => f.kind === kind);
    if (i < 0) return;
    const [f] = this.failNext.splice(i, 1);
    throw new KernelError(command, `fake ${f!.code}`, f!.code);
  }

  async apply(netns: string | null, ops: KernelOp[], opts: ApplyOptions = {}): Promise<void> {
    for (const op of ops) {
      if (netns !== null && netns.includes('/overlay/') && !this.netns.has(netns)) throw new Error(`no netns ${netns}`);
      if (this.failOnce === op.kind) {
        this.failOnce = undefined;
        throw new Error(`fake ${op.kind} failed`);
      }
      const r = render(op);
      const where = netns ?? HERE;
      const command = r.tool === 'rtnl' ? `rtnl in ${where}` : `${r.tool} ${r.line}`;
      this.maybeFail(op.kind, command);
      this.simulate(where, op, command);
      const tag = opts.lane ? `${where}@${opts.lane}` : where;
      if (r.tool === 'rtnl') for (const o of r.ops) this.log.push(`${tag} ${describeOp(o)}`);
      else this.log.push(`${tag} ${r.tool} ${r.line}`);
    }
  }

  /** The link changes an op makes; with `strict`, the kernel's refusals. */
  private simulate(where: string, op: KernelOp, command: string): void {
    const links = this.ns(where);
    const need = (name: string, ns = links): FakeLink => {
      const l = ns.get(name);
      if (!l && this.strict) throw new KernelError(command, `Cannot find device "${name}"`, 'ENODEV');
      return l ?? { addresses: [] };
    };
    const add = (ns: Map<string, FakeLink>, name: string, link: FakeLink): void => {
      if (ns.has(name) && this.strict) throw new KernelError(command, 'RTNETLINK answers: File exists', 'EEXIST');
      ns.set(name, link);
    };
    switch (op.kind) {
      case 'bridge-add':
        add(links, op.name, { kind: 'bridge', addresses: [] });
        break;
      case 'vxlan-add':
        add(op.netns ? this.ns(op.netns) : links, op.name, { kind: 'vxlan', addresses: [] });
        break;
      case 'veth-add': {
        const home = op.netns ? this.ns(op.netns) : links;
        const peerHome = op.peerNetns ? this.ns(op.peerNetns) : home;
        if (peerHome.has(op.peer) && this.strict)
          throw new KernelError(command, 'RTNETLINK answers: File exists', 'EEXIST');
        add(home, op.name, { kind: 'veth', addresses: [], ...(op.master ? { master: op.master } : {}) });
        peerHome.set(op.peer, { kind: 'veth', addresses: [] });
        break;
      }
      case 'subif-add':
        need(op.parent);
        add(op.netns ? this.ns(op.netns) : links, op.name, { kind: op.type, addresses: [] });
        break;
      case 'link-set': {
        const l = need(op.name);
        if (op.up !== undefined) l.up = op.up;
        if (op.master) l.master = op.master;
        if (op.nomaster) delete l.master;
        if (op.group !== undefined) l.group = op.group;
        let name = op.name;
        if (op.rename) {
          if (links.has(op.rename) && this.strict)
            throw new KernelError(command, 'RTNETLINK answers: File exists', 'EEXIST');
          links.delete(name);
          name = op.rename;
          links.set(name, l);
        }
        if (op.netns) {
          links.delete(name);
          this.ns(op.netns).set(name, l);
        }
        break;
      }
      case 'link-del':
        need(op.name);
        links.delete(op.name);
        break;
      case 'link-del-group':
        for (const [n, l] of [...links]) if (l.group === op.group) links.delete(n);
        break;
      case 'addr': {
        const l = need(op.dev);
        if (!l.addresses.includes(op.cidr)) l.addresses.push(op.cidr);
        break;
      }
      case 'addr-del': {
        const l = need(op.dev);
        l.addresses = l.addresses.filter((a) => a !== op.cidr);
        break;
      }
      case 'addr-flush':
        need(op.dev).addresses = [];
        break;
      default:
        break;
    }
  }

  async sysctls(netns: string | null, values: Record<string, string>): Promise<void> {
    for (const [k, v] of Object.entries(values)) {
      this.maybeFail('sysctl', `sysctl ${k}`);
      this.log.push(`${netns ?? HERE} sysctl ${k}=${v}`);
    }
  }

  async linkInfo(netns: string | null, name: string): Promise<LinkInfo | undefined> {
    const l = this.links.get(netns ?? HERE)?.get(name);
    if (!l) return undefined;
    return { name, mtu: 1500, addresses: [...l.addresses], ...(l.kind ? { kind: l.kind } : {}) };
  }

  async createNetns(path: string): Promise<void> {
    if (this.netns.has(path)) throw new Error(`netns ${path} exists`);
    this.netns.add(path);
    this.log.push(`+netns ${path}`);
  }

  async deleteNetns(path: string): Promise<void> {
    this.links.delete(path);
    if (this.netns.delete(path)) this.log.push(`-netns ${path}`);
  }

  netnsExists(path: string): boolean {
    return this.netns.has(path);
  }

  async mtuOfAddress(): Promise<number | undefined> {
    return this.underlayMtu;
  }

  async close(): Promise<void> {}

  /** Log lines matching a pattern, and clears the log (so a test reads what one step did). */
  take(re?: RegExp): string[] {
    const out = re ? this.log.filter((l) => re.test(l)) : [...this.log];
    this.log.length = 0;
    return out;
  }
}
