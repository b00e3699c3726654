/**
 * The none driver: the container gets a network namespace of its own with
 * only the loopback interface, up.
 */
import { hostKernel } from '../../../kernel/host.js';
import type { KernelOps } from '../../../kernel/ops.js';
import { netnsPath } from '../../../kernel/validate.js';
import type { DriverEndpoint, DriverNetwork, JoinInfo, JoinRequest, NetworkDriver } from '../../driver.js';
import type { DriverContext } from '../registry.js';

export class NoneDriver implements NetworkDriver {
  readonly name = 'null';
  readonly scope = 'local' as const;
  private readonly kernel: KernelOps;
  constructor(ctx: Pick<DriverContext, 'kernel'> = {}) {
    this.kernel = ctx.kernel ?? hostKernel();
  }
  async createNetwork(_net: DriverNetwork): Promise<void> {}
  async deleteNetwork(_net: DriverNetwork): Promise<void> {}
  async createEndpoint(_net: DriverNetwork, ep: DriverEndpoint): Promise<DriverEndpoint> {
    return { ...ep };
  }
  async deleteEndpoint(_net: DriverNetwork, _ep: DriverEndpoint): Promise<void> {}
  async join(req: JoinRequest): Promise<JoinInfo> {
    await this.kernel.apply(netnsPath(req.netnsPath), [{ kind: 'rtnl', ops: [{ op: 'up', dev: 'lo' }] }]);
    return { disableGatewayService: true };
  }
  async leave(): Promise<void> {}
}

/** The registry's factory (src/network/drivers/registry.ts): one driver per daemon. */
export function createDriver(ctx: Pick<DriverContext, 'kernel'> = {}): NoneDriver {
  return new NoneDriver(ctx);
}
