/**
 * A recording KernelOps (src/kernel/ops.ts) for unit tests: every op is
 * rendered (so invalid values fail as they would for real) and kept, per
 * namespace, in order; namespaces are a set of paths. Tests assert on the
 * rendered command lines.
 */
import { render, type KernelOp, type KernelOps } from '../../../src/kernel/ops.js';
import { describeOp } from '../../../src/kernel/rtnl.js';

export class RecordingKernelOps implements KernelOps {
  readonly netns = new Set<string>();
  /** Each applied op as `<netns or -> <command>` (rtnl ops as the ip command they stand for). */
  readonly log: string[] = [];
  underlayMtu = 1500;
  /** An op kind that fails once (then is cleared). */
  failOnce: KernelOp['kind'] | undefined;

  async apply(netns: string | null, ops: KernelOp[]): Promise<void> {
    for (const op of ops) {
      if (netns !== null && netns.includes('/overlay/') && !this.netns.has(netns)) throw new Error(`no netns ${netns}`);
      if (this.failOnce === op.kind) {
        this.failOnce = undefined;
        throw new Error(`fake ${op.kind} failed`);
      }
      const r = render(op);
      const where = netns ?? '-';
      if (r.tool === 'rtnl') for (const o of r.ops) this.log.push(`${where} ${describeOp(o)}`);
      else this.log.push(`${where} ${r.tool} ${r.line}`);
    }
  }

  async createNetns(path: string): Promise<void> {
    if (this.netns.has(path)) throw new Error(`netns ${path} exists`);
    this.netns.add(path);
    this.log.push(`+netns ${path}`);
  }

  async deleteNetns(path: string): Promise<void> {
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
