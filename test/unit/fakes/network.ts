/**
 * Test doubles for the controller's unit tests (no root): a driver that
 * records every call and can be told to fail at a step, and a "kernel" whose
 * netns are plain files and whose DNS sockets bind 127.0.0.1 in the test's
 * own namespace.
 */
import { writeFileSync, rmSync, existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type {
  DriverEndpoint,
  DriverNetwork,
  JoinInfo,
  JoinRequest,
  NetworkDriver,
  ResolvedPortBinding,
} from '../../../src/network/driver.js';
import type { SandboxKernel } from '../../../src/network/controller.js';

export class FakeDriver implements NetworkDriver {
  readonly scope = 'local' as const;
  readonly calls: string[] = [];
  readonly networks = new Map<string, DriverNetwork>();
  readonly endpoints = new Map<string, DriverEndpoint>();
  readonly joined = new Map<string, JoinRequest>();
  readonly published = new Map<string, ResolvedPortBinding[]>();
  /** Name of a method that throws once (then is cleared). */
  failOnce: string | undefined;
  /** Calls of `failOnce` to let pass before the one that throws. */
  failSkip = 0;

  constructor(readonly name = 'bridge') {}

  private step(what: string): void {
    this.calls.push(what);
    if (this.failOnce === what && this.failSkip-- <= 0) {
      this.failOnce = undefined;
      this.failSkip = 0;
      throw new Error(`fake ${what} failed`);
    }
  }

  async createNetwork(net: DriverNetwork): Promise<Record<string, unknown>> {
    this.step('createNetwork');
    this.networks.set(net.id, net);
    return { made: net.name };
  }
  async deleteNetwork(net: DriverNetwork): Promise<void> {
    this.step('deleteNetwork');
    this.networks.delete(net.id);
  }
  async createEndpoint(_net: DriverNetwork, ep: DriverEndpoint): Promise<DriverEndpoint> {
    this.step('createEndpoint');
    this.endpoints.set(ep.id, ep);
    return ep;
  }
  async deleteEndpoint(_net: DriverNetwork, ep: DriverEndpoint): Promise<void> {
    this.step('deleteEndpoint');
    this.endpoints.delete(ep.id);
  }
  async join(req: JoinRequest): Promise<JoinInfo> {
    this.step('join');
    this.joined.set(req.endpoint.id, req);
    const gw = req.network.ipv4[0]?.gateway;
    return gw ? { ipv4Gateway: gw.split('/')[0]!, driverState: { veth: `veth${req.endpoint.id.slice(0, 7)}` } } : {};
  }
  async leave(req: JoinRequest & { joinState?: Record<string, unknown> }): Promise<void> {
    this.step('leave');
    this.joined.delete(req.endpoint.id);
  }
  async programExternalConnectivity(
    _net: DriverNetwork,
    ep: DriverEndpoint,
    ports: ResolvedPortBinding[],
  ): Promise<void> {
    this.step('programExternalConnectivity');
    this.published.set(ep.id, ports);
  }
  async revokeExternalConnectivity(_net: DriverNetwork, ep: DriverEndpoint): Promise<void> {
    this.step('revokeExternalConnectivity');
    this.published.delete(ep.id);
  }
  async restoreNetwork(net: DriverNetwork): Promise<void> {
    this.calls.push('restoreNetwork');
    this.networks.set(net.id, net);
  }
}

export class FakeKernel implements SandboxKernel {
  readonly netns = new Set<string>();
  ipv6Enabled = new Set<string>();
  failCreate = false;

  async createNetns(path: string): Promise<void> {
    if (this.failCreate) throw new Error('fake createNetns failed');
    mkdirSync(dirname(path), { recursive: true });
    if (existsSync(path)) throw new Error(`netns ${path} exists`);
    writeFileSync(path, '');
    this.netns.add(path);
  }
  async deleteNetns(path: string): Promise<void> {
    rmSync(path, { force: true });
    this.netns.delete(path);
  }
  async loopbackUp(): Promise<void> {}
  async enableIpv6(path: string): Promise<void> {
    this.ipv6Enabled.add(path);
  }
  readonly routes: Array<{ path: string; ifName: string; gateways: { v4?: string; v6?: string } }> = [];
  async setDefaultRoute(path: string, ifName: string, gateways: { v4?: string; v6?: string }): Promise<void> {
    this.routes.push({ path, ifName, gateways });
  }
  readonly addresses: Array<{ path: string; ifName: string; address: string; prefix: number }> = [];
  async addAddresses(path: string, ifName: string, addrs: Array<{ address: string; prefix: number }>): Promise<void> {
    for (const a of addrs) this.addresses.push({ path, ifName, ...a });
  }
  udpSocket() {
    return { address: '127.0.0.1', port: 0 };
  }
  tcpSocket() {
    return { address: '127.0.0.1', port: 0 };
  }
}
