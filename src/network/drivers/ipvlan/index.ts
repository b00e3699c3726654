/**
 * The ipvlan driver. This kernel has no ipvlan: checkSupported() probes once,
 * by creating an ipvlan link on a veth in a scratch netns of its own, and
 * refuses network creation with the kernel's own answer.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidParameter } from '../../../common/errors.js';
import { KernelError } from '../../../kernel/errors.js';
import type { KernelOps } from '../../../kernel/ops.js';
import type { DriverNetwork } from '../../driver.js';
import type { DriverContext } from '../registry.js';
import { SubInterfaceDriver } from '../macvlan/index.js';

/** One probe per kernel (the answer does not change while the daemon runs). */
const probes = new WeakMap<KernelOps, Promise<string | undefined>>();

/** undefined when the kernel makes ipvlan links, else the error it gave. */
export function probeIpvlan(kernel: KernelOps): Promise<string | undefined> {
  let probe = probes.get(kernel);
  if (probe) return probe;
  probe = (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cove-ipvlan-probe-'));
    const ns = join(dir, 'ns');
    try {
      await kernel.createNetns(ns);
      await kernel.apply(
        ns,
        [
          { kind: 'veth-add', name: 'cvprobe0', peer: 'cvprobe1' },
          { kind: 'subif-add', type: 'ipvlan', parent: 'cvprobe0', name: 'cvprobe2', mode: 'l2' },
        ],
        { once: true },
      );
      return undefined;
    } catch (e) {
      if (e instanceof KernelError) return `${e.command}: ${e.output.trim()}`;
      throw e;
    } finally {
      await kernel.deleteNetns(ns).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    }
  })();
  probes.set(kernel, probe);
  return probe;
}

export class IpvlanDriver extends SubInterfaceDriver {
  readonly name = 'ipvlan' as const;

  async checkSupported(): Promise<void> {
    const err = await probeIpvlan(this.kernel);
    if (err !== undefined) {
      const why = err.replace(
        /^ip link add link cvprobe0 name cvprobe2 type ipvlan mode l2/,
        'ip link add type ipvlan',
      );
      throw new InvalidParameter(`ipvlan is not supported by this kernel: ${why}`);
    }
  }

  override async createNetwork(net: DriverNetwork): Promise<Record<string, unknown>> {
    await this.checkSupported();
    return super.createNetwork(net);
  }

  protected override createPortError(e: KernelError): Error {
    // Docker's wording when the kernel refuses the link at container start.
    if (e.code === 'EOPNOTSUPP')
      return new InvalidParameter('failed to create the ipvlan port: operation not supported');
    return e;
  }
}

/** The registry's factory (src/network/drivers/registry.ts): one driver per daemon. */
export function createDriver(ctx: Pick<DriverContext, 'kernel'> = {}): IpvlanDriver {
  return new IpvlanDriver(ctx);
}
