/**
 * The per-node reconcile loop of service discovery and load balancing. On
 * every node of the swarm it watches services and tasks in the cluster store
 * and, on each change (and every few seconds, and when a container starts or
 * joins a network here):
 *   - hands each swarm network's service names to the embedded DNS
 *     (`NetworkController.setServiceNames`);
 *   - programs the `ip cove_lb` table in the sandbox of every running
 *     container here that is on a network with VIPs (a task of the service
 *     itself or any other container), so connections to a VIP spread over
 *     the running tasks. A task that stops is out of every map as soon as its
 *     agent reports it (the container's exit event).
 *
 * Each sandbox's table is a Firewall (src/network/firewall, no frame) with
 * one owner for the table's base and one per VIP (lb.ts): a change to one
 * service sends, to each sandbox, a transaction with that VIP's objects only
 * (per-VIP deltas), 16 sandboxes at a time. The whole table is written in one
 * transaction (replacing whatever is there) when a sandbox is programmed from
 * nothing: a new sandbox, every sandbox after a daemon restart (nothing is
 * known of what an earlier run left), and a sandbox whose delta failed, so
 * correctness never rests on the delta path.
 */
import type { Logger } from '../common/log.js';
import type { EventBus } from '../common/events.js';
import { ReconcileLoop } from '../common/reconcile-loop.js';
import { Firewall, NetnsNftBackend, Tx, type NftBackend } from '../network/firewall/index.js';
import type { ContainerService } from '../runtime/types.js';
import type { Store } from '../store/store.js';
import { discovery, LB_TABLE, lbDelta, lbOwners, lbPlan, type LbOwner, type NameEntry, type Vip } from './lb.js';
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
  /** Where a sandbox's transactions go (tests: a FakeNft per sandbox); default in-process libnftables in its netns. */
  backend?: (netnsPath: string) => NftBackend;
  resyncMs?: number;
}

export class ServiceDiscovery {
  /** Watches on services and tasks, container and network events, and a pass every resyncMs (src/common/reconcile-loop.ts). */
  private readonly loop: ReconcileLoop;
  /** Per container, its sandbox's table as programmed (see SandboxLb); none: not programmed by this process. */
  private readonly lbs = new Map<string, SandboxLb>();
  /** Per container, the tail of its sandbox's queue: one change at a time per sandbox. */
  private readonly queues = new Map<string, Promise<unknown>>();
  /** How each sandbox was programmed, since start (diagnostics, tests). */
  readonly counts = { rebuilds: 0, deltas: 0, failedDeltas: 0 };
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
            if (ev.Type === 'container' && ev.Action === 'destroy') this.lbs.delete(ev.Actor.ID);
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
    // A new sandbox: whatever this process knew of the container's earlier one does not hold.
    await this.onSandbox(containerId, async () => {
      this.lbs.delete(containerId);
      if (!vips.length) return;
      this.sandboxes.set(containerId, netnsPath);
      await this.rebuild(containerId, netnsPath, lbOwners(lbPlan(vips)));
    });
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
   * services changes the table of every sandbox on it: per sandbox, one transaction with the owners that changed
   * (lbDelta: usually one VIP's few objects), 16 sandboxes at a time, each an in-process libnftables call on a
   * pool thread beside the others (the kernel's commit lock is per netns). A sandbox not programmed yet (or whose
   * delta failed) gets its whole table instead.
   */
  private async programSandboxes(vipsByNet: Map<string, Vip[]>): Promise<void> {
    const seen = new Set<string>();
    const todo: Array<{ id: string; want: Map<string, LbOwner> }> = [];
    // Sandboxes on the same networks want the same table: computed once per set of networks.
    const byNets = new Map<string, Map<string, LbOwner>>();
    for (const c of await this.deps.containers.list({ all: false })) {
      const netIds = Object.values(c.NetworkSettings?.Networks ?? {})
        .map((e) => e.NetworkID)
        .filter((x): x is string => Boolean(x))
        .sort();
      const key = netIds.join(',');
      let want = byNets.get(key);
      if (!want) {
        want = lbOwners(lbPlan(netIds.flatMap((n) => vipsByNet.get(n) ?? [])));
        byNets.set(key, want);
      }
      const had = this.lbs.get(c.Id);
      if (!want.size && !had) continue;
      seen.add(c.Id);
      if (!had || lbDelta(had.sigs, want).owners.size) todo.push({ id: c.Id, want });
    }
    for (const id of [...this.lbs.keys()]) if (!seen.has(id)) this.lbs.delete(id);
    for (const id of [...this.sandboxes.keys()]) if (!seen.has(id)) this.sandboxes.delete(id);
    if (!todo.length) return;
    const t0 = Date.now();
    const before = { ...this.counts };
    await eachLimited(todo, SANDBOX_CONCURRENCY, async ({ id, want }) => {
      const netns = await this.sandboxOf(id);
      if (!netns) return;
      await this.onSandbox(id, () => this.program(id, netns, want));
    });
    this.deps.log.debug(
      {
        sandboxes: todo.length,
        deltas: this.counts.deltas - before.deltas,
        rebuilds: this.counts.rebuilds - before.rebuilds,
        ms: Date.now() - t0,
      },
      'load-balancer tables programmed',
    );
  }

  /** Runs fn after whatever this sandbox has queued (a join's rebuild and a pass's delta never interleave). */
  private onSandbox(id: string, fn: () => Promise<void>): Promise<void> {
    const prev = this.queues.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.queues.set(id, tail);
    void tail.then(() => {
      if (this.queues.get(id) === tail) this.queues.delete(id);
    });
    return next;
  }

  /** One sandbox to `want`: the delta when its table is known, else (or when the delta fails) the whole table. */
  private async program(id: string, netns: string, want: Map<string, LbOwner>): Promise<void> {
    const had = this.lbs.get(id);
    if (had && had.netns === netns) {
      const delta = lbDelta(had.sigs, want);
      if (!delta.owners.size) return;
      try {
        await had.fw.setOwners(delta.owners);
        had.sigs = delta.sigs;
        this.counts.deltas++;
        return;
      } catch (err) {
        this.counts.failedDeltas++;
        this.deps.log.warn({ err, container: id }, 'load-balancer delta failed: rewriting the whole table');
      }
    }
    this.lbs.delete(id);
    try {
      await this.rebuild(id, netns, want);
    } catch (err) {
      this.deps.log.warn({ err, container: id }, 'load-balancer rules not applied');
    }
  }

  /** The whole table in one transaction (replacing what is there; none when no VIP is wanted). Throws on failure. */
  private async rebuild(id: string, netns: string, want: Map<string, LbOwner>): Promise<void> {
    const backend = (this.deps.backend ?? ((p: string) => new NetnsNftBackend(p)))(netns);
    this.counts.rebuilds++;
    if (!want.size) {
      const table = { kind: 'table', ...LB_TABLE } as const;
      await backend.apply(new Tx().add(table).delete(table));
      return;
    }
    // A fresh Firewall knows no table: its first transaction replaces whatever an earlier table held.
    const fw = new Firewall({ backend, frame: false, checkEveryMs: 0, log: this.deps.log });
    await fw.setOwners(new Map([...want].map(([name, o]) => [name, o.objects])));
    this.lbs.set(id, { netns, fw, sigs: new Map([...want].map(([name, o]) => [name, o.sig])) });
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

/** What this process programmed in one sandbox: its Firewall (owners `lb`, `vip <addr>`) and each owner's signature. */
interface SandboxLb {
  netns: string;
  fw: Firewall;
  sigs: Map<string, string>;
}

/**
 * How many sandboxes are programmed at once: in-process calls run side by side on the libuv pool (its 4 threads
 * bound them further), so a pass over 50 sandboxes is a few rounds; spawned nft (no libnftables) runs as many
 * processes.
 */
const SANDBOX_CONCURRENCY = 16;

/** Runs f over items, at most `limit` at a time. */
async function eachLimited<T>(items: T[], limit: number, f: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await f(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
