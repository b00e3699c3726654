/**
 * The macvlan driver (and, through SubInterfaceDriver, ipvlan): containers
 * get a sub-interface of a parent link of the daemon's netns (`-o parent=IF`),
 * created with its end directly inside the sandbox netns.
 *
 * This kernel has no 802.1q and no dummy links, so a VLAN parent (`eth0.10`)
 * that does not exist yet, and a network without a parent (Docker makes a
 * dummy parent then), are refused at network create with Docker's wording.
 */
import { InvalidParameter } from '../../../common/errors.js';
import { isKernelError, KernelError } from '../../../kernel/errors.js';
import { closeHostKernel, hostKernel } from '../../../kernel/host.js';
import type { KernelOps } from '../../../kernel/ops.js';
import type { DriverEndpoint, DriverNetwork, JoinInfo, JoinRequest, NetworkDriver } from '../../driver.js';
import type { DriverContext } from '../registry.js';
import { subIfConfig, subIfJoinPlan, type SubIfConfig } from './plan.js';

export abstract class SubInterfaceDriver implements NetworkDriver {
  abstract readonly name: 'macvlan' | 'ipvlan';
  readonly scope = 'local' as const;
  /** The kernel seam (DriverContext.kernel): the daemon's shared one unless injected. */
  protected readonly kernel: KernelOps;
  private readonly closeKernel: () => Promise<void>;

  constructor(ctx: Pick<DriverContext, 'kernel'> = {}) {
    this.kernel = ctx.kernel ?? hostKernel();
    // Closing the object this driver holds (not only whatever hostKernel() returns now) ends lanes it
    // reopened after another driver closed the shared kernel; else they keep a test process alive.
    this.closeKernel = ctx.kernel
      ? async () => undefined
      : async () => {
          await this.kernel.close();
          await closeHostKernel();
        };
  }

  protected config(net: DriverNetwork): SubIfConfig {
    const cfg = subIfConfig(this.name, net);
    if ('noParent' in cfg) {
      // Docker creates a dummy link as the parent; this kernel has no dummy links.
      throw new InvalidParameter(
        `failed to create the dummy parent link for ${this.name} network ${net.name}: operation not supported (this kernel has no dummy links; give -o parent=<interface>)`,
      );
    }
    return cfg;
  }

  async createNetwork(net: DriverNetwork): Promise<Record<string, unknown>> {
    const cfg = this.config(net);
    if (!(await this.kernel.linkInfo(null, cfg.parent))) {
      if (cfg.parent.includes('.'))
        throw new InvalidParameter(`failed to create ${cfg.parent} vlan link: operation not supported`);
      throw new InvalidParameter(`invalid subinterface vlan name ${cfg.parent}, example formatting is eth0.10`);
    }
    return { parent: cfg.parent };
  }

  async deleteNetwork(_net: DriverNetwork): Promise<void> {
    // The parent is the user's; sub-interfaces go with their sandboxes.
  }

  async createEndpoint(_net: DriverNetwork, ep: DriverEndpoint): Promise<DriverEndpoint> {
    return { ...ep };
  }

  async deleteEndpoint(_net: DriverNetwork, _ep: DriverEndpoint): Promise<void> {}

  protected createPortError(e: KernelError): Error {
    return e;
  }

  async join(req: JoinRequest): Promise<JoinInfo> {
    const cfg = this.config(req.network);
    const plan = subIfJoinPlan(
      cfg,
      req.endpoint,
      req.netnsPath,
      req.ifName,
      req.defaultGateway,
      req.network.enableIPv6,
    );
    try {
      await this.kernel.apply(null, plan.host);
    } catch (e) {
      throw e instanceof KernelError ? this.createPortError(e) : e;
    }
    try {
      await this.kernel.apply(req.netnsPath, [{ kind: 'rtnl', ops: plan.sandbox }]);
    } catch (e) {
      await this.kernel
        .apply(req.netnsPath, [{ kind: 'rtnl', ops: [{ op: 'del', dev: req.ifName }] }])
        .catch(() => undefined);
      throw e;
    }
    const info: JoinInfo = { driverState: { parent: cfg.parent } };
    if (plan.ipv4Gateway) info.ipv4Gateway = plan.ipv4Gateway;
    if (plan.ipv6Gateway) info.ipv6Gateway = plan.ipv6Gateway;
    if (!plan.ipv4Gateway && !plan.ipv6Gateway) info.disableGatewayService = true;
    return info;
  }

  /** Daemon shutdown: ends the shared co-processes of the daemon netns (they restart on next use). */
  async close(): Promise<void> {
    await this.closeKernel();
  }

  async leave(req: JoinRequest & { joinState?: Record<string, unknown> }): Promise<void> {
    try {
      await this.kernel.apply(req.netnsPath, [{ kind: 'rtnl', ops: [{ op: 'del', dev: req.ifName }] }]);
    } catch (e) {
      // Gone with its sandbox already.
      if (!isKernelError(e, 'ENODEV', 'ENOENT', 'EINVAL')) throw e;
    }
  }
}

export class MacvlanDriver extends SubInterfaceDriver {
  readonly name = 'macvlan' as const;
}

/** The registry's factory (src/network/drivers/registry.ts): one driver per daemon. */
export function createDriver(ctx: Pick<DriverContext, 'kernel'> = {}): MacvlanDriver {
  return new MacvlanDriver(ctx);
}
