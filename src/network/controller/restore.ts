/**
 * Start and restore: predefined networks and drivers' kernel state at start; after a restart, sandboxes of
 * containers that are gone, half-made endpoints, leaked addresses and orphan namespaces go, live ones come back.
 */
import { join } from 'node:path';
import { existsSync, readdirSync } from 'node:fs';
import { shortId } from '../../common/ids.js';
import type { SandboxRecord } from '../records.js';
import { driverBindings } from '../ports.js';
import { INGRESS_SANDBOX, type ControllerCore } from './core.js';

export class RestoreOps {
  constructor(private readonly core: ControllerCore) {}

  /** Loads drivers, makes the predefined networks (first start) and re-makes kernel objects (ControllerCore.init runs it once). */
  async start(): Promise<void> {
    if (this.core.loadBuiltins) await this.core.registry.loadBuiltins(this.core.driverContext());
    const all = await this.core.networks.list();
    // Networks of third-party plugins: activate those plugins again (after a restart), in parallel.
    await Promise.all(
      [...new Set(all.map((n) => n.value.driver))]
        .filter((d) => !this.core.registry.has(d))
        .map((d) =>
          this.core.registry
            .lookup(d, { config: this.core.config, log: this.core.log })
            .catch((e: Error) =>
              this.core.log.warn({ driver: d, err: e.message }, 'network plugin of existing networks not available'),
            ),
        ),
    );
    const byName = new Map(all.map((n) => [n.value.name, n.value]));
    if (!byName.has('bridge')) await this.core.networkOps.createPredefined('bridge');
    if (!byName.has('host')) await this.core.networkOps.createPredefined('host');
    if (!byName.has('none')) await this.core.networkOps.createPredefined('none');
    // Kernel objects of existing networks may be gone (reboot): let each driver re-make them.
    const eps = await this.core.endpoints.list();
    for (const { value: n } of all) {
      const d = this.core.driverOf(n);
      if (!d?.restoreNetwork) continue;
      try {
        await d.restoreNetwork(
          this.core.driverNetwork(n),
          eps.filter((e) => e.value.networkId === n.id).map((e) => this.core.driverEndpoint(e.value)),
        );
      } catch (e) {
        this.core.log.error({ network: n.name, err: (e as Error).message }, 'restoring network failed');
      }
    }
    // Networks removed before a crash whose kernel objects may be left (after the live ones, so the
    // driver knows which bridge names are in use again).
    for (const { id, value } of await this.core.doomed.list()) await this.core.networkOps.finishDoomed(id, value);
    await this.core.nameOps.refreshAllNames();
  }

  async restore(liveContainerIds: Set<string>): Promise<void> {
    await this.core.init();
    const k = await this.core.getKernel();
    for (const { value: sb } of await this.core.sandboxes.list()) {
      // The swarm's ingress sandbox (src/services/ingress.ts) belongs to no container: it lives while its namespace does.
      const alive =
        (liveContainerIds.has(sb.containerId) || sb.containerId === INGRESS_SANDBOX) &&
        (sb.netnsPath === null || existsSync(sb.netnsPath));
      if (!alive) {
        this.core.log.info({ container: shortId(sb.containerId) }, 'removing sandbox of a container that is gone');
        await this.core.mutex.run(`sb:${sb.containerId}`, () => this.core.sandboxOps.teardownSandbox(sb, false));
      }
    }
    // Endpoints whose sandbox is gone (crash between records) and half-made ones.
    const sandboxIds = new Set((await this.core.sandboxes.list()).map((s) => s.value.id));
    const nets = new Map((await this.core.networks.list()).map((n) => [n.id, n.value]));
    for (const { value: ep } of await this.core.endpoints.list()) {
      if (!sandboxIds.has(ep.sandboxId)) {
        await this.core.endpointOps.leaveEndpoint({ netnsPath: null } as SandboxRecord, ep, nets.get(ep.networkId));
      }
    }
    const eps = (await this.core.endpoints.list()).map((e) => e.value);
    const epIds = new Set(eps.map((e) => e.id));
    // Addresses held by endpoints that no longer exist.
    // (Swarm networks: other nodes hold addresses there too; this node's are reconciled at attachCluster.)
    for (const n of nets.values())
      if (n.scope !== 'swarm') await this.core.ipam.releaseAllExcept(n.id, (owner) => epIds.has(owner));
    // Drivers: re-make kernel objects, drop leftovers.
    for (const n of nets.values()) {
      const d = this.core.driverOf(n);
      if (!d?.restoreNetwork) continue;
      try {
        await d.restoreNetwork(
          this.core.driverNetwork(n),
          eps.filter((e) => e.networkId === n.id).map((e) => this.core.driverEndpoint(e)),
        );
      } catch (e) {
        this.core.log.error({ network: n.name, err: (e as Error).message }, 'restoring network failed');
      }
    }
    // netns files nobody owns (a crash between createNetns and the record).
    const nsDir = join(this.core.config.execRoot, 'netns');
    const owned = new Set(
      (await this.core.sandboxes.list()).map((s) => s.value.netnsPath).filter((p): p is string => !!p),
    );
    if (existsSync(nsDir)) {
      for (const f of readdirSync(nsDir)) {
        const p = join(nsDir, f);
        if (!owned.has(p)) {
          try {
            await k.deleteNetns(p);
          } catch (e) {
            this.core.log.warn({ netns: p, err: (e as Error).message }, 'removing orphan netns failed');
          }
        }
      }
    }
    // Live sandboxes: DNS sockets, port reservations and files again (each step on its own: one failure does not skip the others).
    await this.core.nameOps.refreshAllNames();
    for (const { value: sb } of await this.core.sandboxes.list()) {
      const fail = (what: string) => (e: unknown) =>
        this.core.log.error(
          { container: shortId(sb.containerId), step: what, err: (e as Error).message },
          'restoring sandbox failed',
        );
      await (async () => {
        if (await this.core.nameOps.refreshSandboxResolver(sb))
          await (await this.core.getDns()).attach(sb.id, sb.netnsPath!);
      })().catch(fail('dns'));
      for (const { ep, net } of await this.core.sandboxNetworks(sb)) {
        if (ep.ports.length === 0 || !ep.ipv4) continue;
        await (async () => {
          const { bindings } = await this.core.ports.reserve(ep.id, {
            bindings: ep.ports.map((b) => ({
              containerPort: b.containerPort,
              containerPortEnd: b.containerPortEnd,
              protocol: b.proto,
              hostIp: b.hostIp,
              hostPort: b.hostPort,
              hostPortEnd: b.hostPortEnd,
            })),
            exposed: [],
            publishAll: false,
            containerIp: ep.ipv4!.split('/')[0]!,
          });
          await this.core
            .driverOf(net)
            ?.programExternalConnectivity?.(
              this.core.driverNetwork(net),
              this.core.driverEndpoint(ep),
              driverBindings(bindings),
            );
        })().catch(fail('ports'));
      }
      await this.core.sandboxOps.writeFiles(sb).catch(fail('files'));
    }
  }
}
