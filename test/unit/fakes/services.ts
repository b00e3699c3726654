/**
 * Test doubles for the services layer (no root): a container service that
 * keeps containers in memory and publishes Docker's events, an image service
 * that knows a fixed set of images, a node table, and a small swarm of
 * agents + one orchestrator sharing one EmbeddedStore.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventBus } from '../../../src/common/events.js';
import { EmbeddedStore } from '../../../src/store/embedded.js';
import { silentLogger } from '../../../src/common/log.js';
import { NotFound } from '../../../src/common/errors.js';
import { newId } from '../../../src/common/ids.js';
import type {
  ContainerService,
  DockerContainerCreate,
  DockerContainerInspect,
  DockerContainerSummary,
  ImageService,
} from '../../../src/runtime/types.js';
import type { Filters } from '../../../src/network/types.js';
import { Agent } from '../../../src/services/agent.js';
import { Orchestrator } from '../../../src/services/orchestrator.js';
import { ServiceManager, type ServiceNetworks } from '../../../src/services/manager.js';
import type { SchedNode, Task } from '../../../src/services/types.js';
import { taskCollection, withVersion } from '../../../src/services/records.js';

interface FakeContainer {
  id: string;
  name: string;
  body: DockerContainerCreate;
  running: boolean;
  exitCode: number;
  ip: string;
}

let ipSeq = 2;

export class FakeContainers implements Partial<ContainerService> {
  readonly byId = new Map<string, FakeContainer>();
  /** Image names create refuses, as a missing image would be refused. */
  failStart = false;
  /** How long stop takes (a process that ignores SIGTERM keeps its container for the grace period). */
  stopDelayMs = 0;
  /** How long start takes. */
  startDelayMs = 0;
  /** Starts under way now, and the most seen at once. */
  starting = 0;
  maxStarting = 0;

  constructor(readonly events: EventBus) {}

  private find(ref: string): FakeContainer {
    const c = this.byId.get(ref) ?? [...this.byId.values()].find((x) => x.name === ref);
    if (!c) throw new NotFound(`No such container: ${ref}`);
    return c;
  }

  private publish(c: FakeContainer, action: string, extra: Record<string, string> = {}): void {
    this.events.publish('container', action, c.id, { ...(c.body.Labels ?? {}), name: c.name, ...extra });
  }

  async create(name: string | undefined, body: DockerContainerCreate): Promise<{ Id: string; Warnings: string[] }> {
    const id = newId();
    if ([...this.byId.values()].some((c) => c.name === name))
      throw new Error(`Conflict. The container name "/${name}" is already in use`);
    this.byId.set(id, {
      id,
      name: name ?? id.slice(0, 12),
      body,
      running: false,
      exitCode: 0,
      ip: `10.0.1.${ipSeq++}`,
    });
    return { Id: id, Warnings: [] };
  }

  async start(ref: string): Promise<void> {
    const c = this.find(ref);
    if (this.failStart) throw new Error('fake start failure');
    this.starting++;
    this.maxStarting = Math.max(this.maxStarting, this.starting);
    try {
      if (this.startDelayMs) await new Promise((r) => setTimeout(r, this.startDelayMs));
    } finally {
      this.starting--;
    }
    c.running = true;
    this.publish(c, 'start');
  }

  async stop(ref: string): Promise<void> {
    const c = this.find(ref);
    if (!c.running) return;
    if (this.stopDelayMs) await new Promise((r) => setTimeout(r, this.stopDelayMs));
    if (!c.running) return;
    c.running = false;
    c.exitCode = 0;
    this.publish(c, 'die', { exitCode: '0' });
  }

  /** The process in the container exits by itself. */
  exit(ref: string, code: number): void {
    const c = this.find(ref);
    c.running = false;
    c.exitCode = code;
    this.publish(c, 'die', { exitCode: String(code) });
  }

  async remove(ref: string): Promise<void> {
    const c = this.find(ref);
    this.byId.delete(c.id);
    this.publish(c, 'destroy');
  }

  async inspect(ref: string): Promise<DockerContainerInspect> {
    const c = this.find(ref);
    const net = c.body.HostConfig?.NetworkMode ?? 'bridge';
    return {
      Id: c.id,
      Name: '/' + c.name,
      State: {
        Status: c.running ? 'running' : 'exited',
        Running: c.running,
        ExitCode: c.exitCode,
        Pid: c.running ? 1234 : 0,
      },
      Config: { Labels: c.body.Labels ?? {} },
      NetworkSettings: { Networks: { [net]: { NetworkID: net, IPAddress: c.ip, IPPrefixLen: 24 } } },
    } as unknown as DockerContainerInspect;
  }

  async list(opts: { all?: boolean; filters?: Filters } = {}): Promise<DockerContainerSummary[]> {
    const label = opts.filters?.label ?? [];
    return [...this.byId.values()]
      .filter((c) => opts.all || c.running)
      .filter((c) =>
        label.every((l) => {
          const [k, v] = l.split('=', 2) as [string, string | undefined];
          const labels = c.body.Labels ?? {};
          return k in labels && (v === undefined || labels[k] === v);
        }),
      )
      .map(
        (c) =>
          ({
            Id: c.id,
            Names: ['/' + c.name],
            Labels: c.body.Labels ?? {},
            State: c.running ? 'running' : 'exited',
          }) as unknown as DockerContainerSummary,
      );
  }

  running(): FakeContainer[] {
    return [...this.byId.values()].filter((c) => c.running);
  }
}

export const fakeImages = (known: string[]): ImageService =>
  ({
    async resolve(ref: string): Promise<string> {
      const r = ref.includes(':') ? ref : `${ref}:latest`;
      if (!known.includes(r)) throw new NotFound(`No such image: ${ref}`);
      return 'sha256:' + '0'.repeat(64);
    },
  }) as unknown as ImageService;

export const fakeNetworks: ServiceNetworks = {
  async lookup(ref: string) {
    const nets: Record<string, { id: string; name: string; driver: string; scope: string; ingress: boolean }> = {
      'nginx-net': { id: 'n1overlay', name: 'nginx-net', driver: 'overlay', scope: 'swarm', ingress: false },
      'nginx-net-2': { id: 'n2overlay', name: 'nginx-net-2', driver: 'overlay', scope: 'swarm', ingress: false },
      ingress: { id: 'ningress', name: 'ingress', driver: 'overlay', scope: 'swarm', ingress: true },
      mybridge: { id: 'nbridge', name: 'mybridge', driver: 'bridge', scope: 'local', ingress: false },
    };
    const hit = nets[ref] ?? Object.values(nets).find((n) => n.id === ref);
    if (!hit) throw new NotFound(`network ${ref} not found`);
    return hit;
  },
  async allocateVip(networkId: string) {
    return networkId === 'n1overlay' ? '10.0.1.200/24' : '10.0.2.200/24';
  },
};

/** A swarm of `n` nodes on one store: one agent per node, one orchestrator. */
export class FakeSwarm {
  readonly dir = mkdtempSync(join(tmpdir(), 'cove-svc-'));
  readonly store = new EmbeddedStore(this.dir);
  readonly nodes: SchedNode[];
  readonly containers = new Map<string, FakeContainers>();
  readonly agents = new Map<string, Agent>();
  readonly orchestrator: Orchestrator;
  readonly manager: ServiceManager;

  /** `now`: the orchestrator's clock (a test moves it to cross restart windows). */
  constructor(
    n = 3,
    images = ['nginx:latest', 'busybox:latest'],
    opts: { now?: () => number; startConcurrency?: number } = {},
  ) {
    this.nodes = Array.from(
      { length: n },
      (_, i) =>
        ({
          id: `node${i + 1}id`,
          hostname: `node${i + 1}`,
          role: i === 0 ? 'manager' : 'worker',
          availability: 'active',
          state: 'ready',
        }) as SchedNode,
    );
    for (const node of this.nodes) {
      const events = new EventBus();
      const cs = new FakeContainers(events);
      this.containers.set(node.id, cs);
      this.agents.set(
        node.id,
        new Agent({
          store: this.store,
          nodeId: node.id,
          containers: cs as unknown as ContainerService,
          images: fakeImages(images),
          events,
          log: silentLogger,
          resyncMs: 200,
          ...(opts.startConcurrency ? { startConcurrency: opts.startConcurrency } : {}),
        }),
      );
    }
    this.orchestrator = new Orchestrator({
      store: this.store,
      nodes: async () => this.nodes.map((x) => ({ ...x })),
      log: silentLogger,
      tickMs: 100,
      ...(opts.now ? { now: opts.now } : {}),
    });
    this.manager = new ServiceManager(this.store, fakeNetworks);
  }

  start(): void {
    for (const a of this.agents.values()) a.start();
    this.orchestrator.start();
  }

  node(hostname: string): SchedNode {
    return this.nodes.find((n) => n.hostname === hostname)!;
  }

  async tasks(): Promise<Task[]> {
    return (await taskCollection(this.store).list()).map(withVersion);
  }

  /** Polls `cond` every 50 ms until it holds or `ms` pass (then fails with `what`). */
  async until(what: string, cond: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await cond()) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`timed out waiting for: ${what}`);
  }

  async close(): Promise<void> {
    await this.orchestrator.stop();
    for (const a of this.agents.values()) await a.stop();
    await this.store.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
