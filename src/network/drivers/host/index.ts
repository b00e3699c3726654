/**
 * The host driver: containers share the daemon's network namespace, so there
 * is nothing to create. The controller gives host-mode sandboxes no netns
 * (netnsPath null) and never asks this driver to make an interface.
 */
import type { DriverEndpoint, DriverNetwork, JoinInfo, NetworkDriver } from '../../driver.js';

export class HostDriver implements NetworkDriver {
  readonly name = 'host';
  readonly scope = 'local' as const;
  async createNetwork(_net: DriverNetwork): Promise<void> {}
  async deleteNetwork(_net: DriverNetwork): Promise<void> {}
  async createEndpoint(_net: DriverNetwork, ep: DriverEndpoint): Promise<DriverEndpoint> {
    return { ...ep };
  }
  async deleteEndpoint(_net: DriverNetwork, _ep: DriverEndpoint): Promise<void> {}
  async join(): Promise<JoinInfo> {
    return { disableGatewayService: true };
  }
  async leave(): Promise<void> {}
}

/** The registry's factory (src/network/drivers/registry.ts): one driver per daemon. */
export function createDriver(): HostDriver {
  return new HostDriver();
}
