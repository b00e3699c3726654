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
import { ipBatchOnce } from '../../../kernel/ip.js';
import { createNetns, deleteNetns } from '../../../kernel/netns.js';
import type { DriverNetwork } from '../../driver.js';
import { SubInterfaceDriver } from '../macvlan/index.js';

let probe: Promise<string | undefined> | undefined;

/** undefined when the kernel makes ipvlan links, else the error it gave. */
export function probeIpvlan(): Promise<string | undefined> {
  probe ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cove-ipvlan-probe-'));
    const ns = join(dir, 'ns');
    try {
      await createNetns(ns);
      await ipBatchOnce(ns, ['link add cvprobe0 type veth peer name cvprobe1', 'link add link cvprobe0 name cvprobe2 type ipvlan mode l2']);
      return undefined;
    } catch (e) {
      if (e instanceof KernelError) return `${e.command}: ${e.output.trim()}`;
      throw e;
    } finally {
      await deleteNetns(ns).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    }
  })();
  return probe;
}

export class IpvlanDriver extends SubInterfaceDriver {
  readonly name = 'ipvlan' as const;

  async checkSupported(): Promise<void> {
    const err = await probeIpvlan();
    if (err !== undefined) {
      const why = err.replace(/^ip link add link cvprobe0 name cvprobe2 type ipvlan mode l2/, 'ip link add type ipvlan');
      throw new InvalidParameter(`ipvlan is not supported by this kernel: ${why}`);
    }
  }

  override async createNetwork(net: DriverNetwork): Promise<Record<string, unknown>> {
    await this.checkSupported();
    return super.createNetwork(net);
  }

  protected override createPortError(e: KernelError): Error {
    // Docker's wording when the kernel refuses the link at container start.
    if (e.code === 'EOPNOTSUPP') return new InvalidParameter('failed to create the ipvlan port: operation not supported');
    return e;
  }
}

/** The registry's factory (src/network/drivers/registry.ts): one driver per daemon. */
export function createDriver(): IpvlanDriver {
  return new IpvlanDriver();
}
