/**
 * The per-node reconcile loop of service discovery and load balancing. On
 * every node of the swarm it watches services and tasks in the cluster store
 * and, on each change (and every few seconds, and when a container starts or
 * joins a network here):
 *   - hands each swarm network's service names to the embedded DNS
 *     (`NetworkController.setServiceNames`);
 *   - replaces the `ip cove_lb` table in the sandbox of every running
 *     container here that is on a network with VIPs (a task of the service
 *     itself or any other container), so connections to a VIP spread over
 *     the running tasks. A task that stops is out of every map as soon as its
 *     agent reports it (the container's exit event).
 */
import type { Logger } from '../common/log.js';
import type { EventBus } from '../common/events.js';
import { ReconcileLoop } from '../common/reconcile-loop.js';
import { nftApply } from '../kernel/nft.js';
import type { ContainerService } from '../runtime/types.js';
import type { Store } from '../store/store.js';
import { discovery, lbScript, type NameEntry, type Vip } from './lb.js';
import { serviceCollection, taskCollection, SERVICES, TASKS, withVersion } from './records.js';

/** The network controller's hook for service names (src/network/controller.ts). */
export interface ServiceNamesSink {
  setServiceNames(networkId: string, names: Map<string, NameEntry[]>): Promise<void>;
}

/** The network controller's hook called when a sandbox joins networks, before its container runs. */
export interface SandboxJoinSource {
  setSandboxJoinHook(
    fn: ((containerId: string, netnsPath: string, networkIds: string[]) => Promise<void>) | undefined,
  ): void;
}

export interface DiscoveryDeps {
  store: Store;
  containers: ContainerService;
  events: EventBus;
  names?: ServiceNamesSink;
  /** So a new container's first connection to a VIP is balanced: its table goes in before it runs. */
  joins?: SandboxJoinSource;
  log: Logger;
  /** Applies an nft script inside a sandbox (tests record instead). */
  apply?: (script: string, netnsPath: string) => Promise<void>;
  resyncMs?: number;
}

export class ServiceDiscovery {
  /** Watches on services and tasks, container and network events, and a pass every resyncMs (src/common/reconcile-loop.ts). */
  private readonly loop: ReconcileLoop;
  /** Last script applied per container, so an unchanged sandbox is left alone. */
  private readonly applied = new Map<string, string>();
  private readonly namesSet = new Map<string, string>();
  /** Sandbox path per running container (see sandboxOf). */
  private readonly sandboxes = new Map<string, string>();
  /** The last computed VIPs per network (for `cove service` diagnostics and tests). */
  vips = new Map<string, Vip[]>();

  constructor(private readonly deps: DiscoveryDeps) {
    const { store, events } = deps;
    this.loop = new ReconcileLoop({
      pass: () => this.reconcile(),
      periodMs: deps.resyncMs ?? 5000,
      sources: [
        (kick) => store.watch(`${SERVICES}/`, kick),
        (kick) => store.watch(`${TASKS}/`, kick),
        (kick) =>
          events.subscribe((ev) => {
            // A container that (re)starts may have a new sandbox: look its path up again.
            if (ev.Type === 'container' && (ev.Action === 'start' || ev.Action === 'destroy'))
              this.sandboxes.delete(ev.Actor.ID);
            if (
              (ev.Type === 'container' && (ev.Action === 'start' || ev.Action === 'destroy')) ||
              (ev.Type === 'network' && (ev.Action === 'connect' || ev.Action === 'disconnect'))
            )
              kick();
          }),
      ],
      onError: (err) => this.deps.log.warn({ err }, 'service discovery pass failed'),
    });
  }

  start(): void {
    if (this.loop.started) return;
    this.deps.joins?.setSandboxJoinHook((id, netns, nets) => this.prepareSandbox(id, netns, nets));
    this.loop.start();
  }

  /**
   * A sandbox that just joined networks, before its container runs: the
   * balancing table of the VIPs known now (the next pass corrects it if they
   * changed meanwhile). Without it a container's first connections to a VIP
   * would race the container's start event.
   */
  async prepareSandbox(containerId: string, netnsPath: string, networkIds: string[]): Promise<void> {
    const vips = networkIds.flatMap((n) => this.vips.get(n) ?? []);
    if (!vips.length) return;
    const script = lbScript(vips);
    await (this.deps.apply ?? nftApply)(script, netnsPath);
    this.applied.set(containerId, script);
  }

  async stop(): Promise<void> {
    this.deps.joins?.setSandboxJoinHook(undefined);
    await this.loop.stop();
    // Names go with the swarm; the sandboxes' tables stay with their containers (they go when the tasks go).
    for (const net of this.namesSet.keys())
      await this.deps.names?.setServiceNames(net, new Map()).catch(() => undefined);
    this.namesSet.clear();
  }

  kick(): void {
    this.loop.kick();
  }

  /** Settles once the passes asked for so far are done (tests). */
  async idle(): Promise<void> {
    await this.loop.idle();
  }

  private async reconcile(): Promise<void> {
    const services = (await serviceCollection(this.deps.store).list()).map(withVersion);
    const tasks = (await taskCollection(this.deps.store).list()).map(withVersion);
    const d = discovery(services, tasks);
    this.vips = d.vips;
    // Sandboxes first, names second: a client that resolves a new service's name then finds its VIP in its own
    // table (balanced, or refused at once while it has no task) instead of ARPing for an address nobody holds.
    await this.programSandboxes(d.vips);
    await this.publishNames(d.names);
  }

  /** DNS: every swarm network that has (or had) service names. */
  private async publishNames(names: Map<string, Map<string, NameEntry[]>>): Promise<void> {
    const nets = new Set([...names.keys(), ...this.namesSet.keys()]);
    for (const net of nets) {
      const forNet = names.get(net) ?? new Map<string, NameEntry[]>();
      const sig = JSON.stringify([...forNet]);
      if (this.namesSet.get(net) === sig) continue;
      try {
        await this.deps.names?.setServiceNames(net, forNet);
        if (forNet.size) this.namesSet.set(net, sig);
        else this.namesSet.delete(net);
      } catch (err) {
        this.deps.log.debug({ err, network: net }, 'service names not set');
      }
    }
  }

  /**
   * Load balancing: the sandbox of each running container here on a network with VIPs. A change to one network's
   * services changes the table of every sandbox on it (one transaction each: ~1 ms with libnftables in-process,
   * 10-30 ms where nft has to be spawned): they are started a few at a time, so a new service on a network with 50
   * others reaches every sandbox in a fraction of a second (measured with spawned nft one sandbox after the other:
   * 5 s with 40 services, bench workload 9).
   */
  private async programSandboxes(vipsByNet: Map<string, Vip[]>): Promise<void> {
    const seen = new Set<string>();
    const todo: Array<{ id: string; script: string }> = [];
    for (const c of await this.deps.containers.list({ all: false })) {
      const netIds = Object.values(c.NetworkSettings?.Networks ?? {})
        .map((e) => e.NetworkID)
        .filter((x): x is string => Boolean(x));
      const vips = netIds.flatMap((n) => vipsByNet.get(n) ?? []);
      if (!vips.length && !this.applied.has(c.Id)) continue;
      seen.add(c.Id);
      const script = lbScript(vips);
      if (this.applied.get(c.Id) !== script) todo.push({ id: c.Id, script });
    }
    for (const id of [...this.applied.keys()]) if (!seen.has(id)) this.applied.delete(id);
    for (const id of [...this.sandboxes.keys()]) if (!seen.has(id)) this.sandboxes.delete(id);
    if (!todo.length) return;
    const t0 = Date.now();
    await eachLimited(todo, SANDBOX_CONCURRENCY, async ({ id, script }) => {
      const netns = await this.sandboxOf(id);
      if (!netns) return;
      try {
        await (this.deps.apply ?? nftApply)(script, netns);
        this.applied.set(id, script);
      } catch (err) {
        this.deps.log.warn({ err, container: id }, 'load-balancer rules not applied');
      }
    });
    this.deps.log.debug({ sandboxes: todo.length, ms: Date.now() - t0 }, 'load-balancer tables replaced');
  }

  /** A running container's sandbox path (fixed while it runs: kept until the container leaves the list). */
  private async sandboxOf(id: string): Promise<string | undefined> {
    const known = this.sandboxes.get(id);
    if (known) return known;
    try {
      const netns = (await this.deps.containers.inspect(id)).NetworkSettings.SandboxKey || undefined;
      if (netns) this.sandboxes.set(id, netns);
      return netns;
    } catch {
      return undefined;
    }
  }
}

/** How many sandboxes get their table at once (in-process they queue on libnftables' lock; spawned, on the CPUs). */
const SANDBOX_CONCURRENCY = 6;

/** Runs f over items, at most `limit` at a time. */
async function eachLimited<T>(items: T[], limit: number, f: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await f(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
