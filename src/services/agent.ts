/**
 * The agent: runs on every node of the swarm. It watches the tasks assigned
 * to this node in the cluster store, runs each as a container through the
 * node's ContainerService (named and labelled as Docker does), reports the
 * state changes a user sees back into the task record (assigned → starting →
 * running, with `preparing` while it pulls the image and `ready` while it
 * waits for one of the node's start slots; failed/rejected with the error;
 * complete; shutdown), stops tasks whose desired state is shutdown and
 * removes those whose desired state is remove (deleting their record, the
 * last step of `service rm`). At most DEFAULT_START_CONCURRENCY containers
 * start at a time (src/common/limiter.ts).
 *
 * One handler runs per task at a time; a full pass every few seconds and at
 * start catches whatever a watch could not (a daemon restart, a container
 * that died while the daemon was down).
 */
import type { Logger } from '../common/log.js';
import { Limiter } from '../common/limiter.js';
import type { EventBus, DockerEvent } from '../common/events.js';
import type { ContainerService, DockerContainerCreate, ImageService } from '../runtime/types.js';
import { decodeAuthHeader, type AuthConfig } from '../runtime/distribution/auth.js';
import type { Store } from '../store/store.js';
import { containerName, taskCollection, taskName, TASKS, updateRecord } from './records.js';
import { applyReport, reportKey, type TaskReport } from './reports.js';
import { isTerminal, nowIso, NS, stateRank, type PortConfig, type Task, type TaskState } from './types.js';

export const LABEL = {
  nodeId: 'com.docker.swarm.node.id',
  serviceId: 'com.docker.swarm.service.id',
  serviceName: 'com.docker.swarm.service.name',
  task: 'com.docker.swarm.task',
  taskId: 'com.docker.swarm.task.id',
  taskName: 'com.docker.swarm.task.name',
} as const;

export interface AgentDeps {
  store: Store;
  nodeId: string;
  containers: ContainerService;
  images: ImageService;
  /**
   * Fetches a task's image when this node lacks it (the registry client:
   * `Distribution.ensure`); without it, only images already here run.
   */
  pullImage?: (ref: string, auth: AuthConfig | undefined) => Promise<string>;
  events: EventBus;
  log: Logger;
  /** Period of the full pass. */
  resyncMs?: number;
  /**
   * True while this node may not write task records (a worker: etcd's RBAC);
   * it then reports states under its own keys, and managers apply them (./reports.ts).
   */
  reportOnly?: () => boolean;
  /** Containers this node starts at a time (DEFAULT_START_CONCURRENCY); the other tasks wait `ready`. */
  startConcurrency?: number;
}

/**
 * Task containers one node starts at a time. Starting every task of a scale-up at once overloads a 2-core
 * machine (each start is a sandbox, veths, a runc create); one at a time leaves it idle between the steps.
 */
export const DEFAULT_START_CONCURRENCY = 8;

export class Agent {
  private readonly tasks;
  private readonly queue = new Map<string, Promise<void>>();
  private readonly dirty = new Set<string>();
  private stops: Array<() => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  private readonly starts: Limiter;

  constructor(private readonly deps: AgentDeps) {
    this.tasks = taskCollection(deps.store);
    this.starts = new Limiter(deps.startConcurrency ?? DEFAULT_START_CONCURRENCY);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.stops.push(
      this.deps.store.watch(`${TASKS}/`, (ev) => {
        let t: Task | undefined;
        try {
          t = JSON.parse(ev.kv.value) as Task;
        } catch {
          return;
        }
        if (t.NodeID === this.deps.nodeId) this.enqueue(t.ID);
      }),
    );
    this.stops.push(this.deps.events.subscribe((ev) => this.onContainerEvent(ev)));
    this.timer = setInterval(() => void this.resync(), this.deps.resyncMs ?? 3000);
    this.timer.unref?.();
    void this.resync();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const s of this.stops) s();
    this.stops = [];
    if (this.timer) clearInterval(this.timer);
    await Promise.allSettled([...this.queue.values()]);
  }

  /** Every task of this node, and every task container without a task. */
  async resync(): Promise<void> {
    if (this.stopped) return;
    try {
      const mine = (await this.tasks.list()).filter((e) => e.value.NodeID === this.deps.nodeId);
      const known = new Set(mine.map((e) => e.id));
      const containers = await this.deps.containers.list({ all: true, filters: { label: [LABEL.taskId] } });
      const running = new Map<string, boolean>();
      for (const c of containers) {
        const id = c.Labels[LABEL.taskId];
        if (id) running.set(id, c.State === 'running');
        if (id && !known.has(id)) this.enqueue(id);
      }
      // Only tasks whose record and container disagree: a settled task (running with its container running, or
      // ended with its container gone) costs nothing here, so a pass stays cheap beside many services. Health
      // changes come as events; a task with a HEALTHCHECK is looked at anyway, in case one was missed.
      for (const { id, value: t } of mine) {
        const up = running.get(id);
        const settled =
          t.DesiredState === 'running'
            ? t.Status.State === 'running' && up === true && !t.Spec.ContainerSpec?.Healthcheck
            : isTerminal(t.Status.State) && up === undefined && t.DesiredState !== 'remove';
        if (!settled) this.enqueue(id);
      }
    } catch (err) {
      this.deps.log.debug({ err }, 'agent resync failed');
    }
  }

  private onContainerEvent(ev: DockerEvent): void {
    if (ev.Type !== 'container') return;
    const id = ev.Actor.Attributes[LABEL.taskId];
    if (id && (['die', 'start', 'destroy'].includes(ev.Action) || ev.Action.startsWith('health_status')))
      this.enqueue(id);
  }

  /** Handlers for one task never overlap; a change during one runs it again. */
  private enqueue(taskId: string): void {
    if (this.stopped) return;
    if (this.queue.has(taskId)) {
      this.dirty.add(taskId);
      return;
    }
    const run = (async () => {
      do {
        this.dirty.delete(taskId);
        try {
          await this.handle(taskId);
        } catch (err) {
          this.deps.log.warn({ err, task: taskId }, 'agent task handler failed');
        }
      } while (this.dirty.has(taskId) && !this.stopped);
    })().finally(() => this.queue.delete(taskId));
    this.queue.set(taskId, run);
  }

  private async containerOf(taskId: string): Promise<{ id: string; running: boolean } | undefined> {
    const list = await this.deps.containers.list({ all: true, filters: { label: [`${LABEL.taskId}=${taskId}`] } });
    const c = list[0];
    return c ? { id: c.Id, running: c.State === 'running' } : undefined;
  }

  /** The container's health: undefined without a HEALTHCHECK. */
  private async healthOf(containerId: string): Promise<'starting' | 'healthy' | 'unhealthy' | undefined> {
    const info = await this.deps.containers.inspect(containerId).catch(() => undefined);
    return info?.State.Health?.Status;
  }

  /**
   * A running container: with a HEALTHCHECK the task is `running` only once
   * healthy (until then `starting`, out of the VIP and tasks.S), and an
   * unhealthy one is stopped and the task fails, as Docker's executor does;
   * the orchestrator replaces it per the restart policy.
   */
  private async checkRunning(t: Task, containerId: string): Promise<void> {
    const health = await this.healthOf(containerId);
    if (health === 'unhealthy') {
      const grace = Math.round((t.Spec.ContainerSpec?.StopGracePeriod ?? 10 * NS) / NS);
      await this.report(t, 'failed', 'unhealthy', 'dockerexec: unhealthy container', { ContainerID: containerId });
      await this.deps.containers
        .stop(containerId, { timeout: grace })
        .catch((err) => this.deps.log.warn({ err, task: t.ID }, 'unhealthy task stop failed'));
      return;
    }
    if (health === 'starting') return;
    if (t.Status.State !== 'running') await this.markRunning(t, containerId);
  }

  private async handle(taskId: string): Promise<void> {
    const rec = await this.tasks.get(taskId);
    let t = rec?.value;
    // A worker's own report that no manager has applied yet is newer than the record.
    if (t && this.deps.reportOnly?.()) {
      const kv = await this.deps.store.get(reportKey(this.deps.nodeId, taskId)).catch(() => undefined);
      if (kv) {
        try {
          t = applyReport(t, this.deps.nodeId, JSON.parse(kv.value) as TaskReport) ?? t;
        } catch {
          /* a malformed report of our own: the record stands */
        }
      }
    }
    const c = await this.containerOf(taskId);
    if (!t || t.NodeID !== this.deps.nodeId) {
      if (c) await this.deps.containers.remove(c.id, { force: true }).catch(() => undefined);
      return;
    }
    if (t.DesiredState !== 'running') {
      if (c?.running) {
        const grace = Math.round((t.Spec.ContainerSpec?.StopGracePeriod ?? 10 * NS) / NS);
        await this.deps.containers
          .stop(c.id, { timeout: grace })
          .catch((err) => this.deps.log.warn({ err, task: taskId }, 'task stop failed'));
      }
      if (!isTerminal(t.Status.State)) await this.report(t, 'shutdown', 'shutdown');
      if (c) await this.deps.containers.remove(c.id, { force: true }).catch(() => undefined);
      if (t.DesiredState === 'remove') {
        if (this.deps.reportOnly?.())
          await this.sendReport(t.ID, { Status: t.Status, UpdatedAt: nowIso(), Removed: true }).catch(() => undefined);
        else await this.tasks.delete(t.ID).catch(() => undefined);
      }
      return;
    }
    if (isTerminal(t.Status.State)) {
      // An ended task's container goes; its record stays as history.
      if (c && !c.running) await this.deps.containers.remove(c.id, { force: true }).catch(() => undefined);
      return;
    }
    if (stateRank(t.Status.State) < stateRank('starting')) {
      await this.run(t, c);
      return;
    }
    // starting/running: the container must be running, else the task ended.
    if (!c) {
      await this.report(t, 'failed', 'task: container is gone', 'container is gone');
    } else if (!c.running) {
      const info = await this.deps.containers.inspect(c.id).catch(() => undefined);
      const code = info?.State.ExitCode ?? 255;
      if (code === 0) await this.report(t, 'complete', 'finished', undefined, { ContainerID: c.id, ExitCode: 0 });
      else
        await this.report(t, 'failed', 'started', `task: non-zero exit (${code})`, {
          ContainerID: c.id,
          ExitCode: code,
        });
    } else {
      await this.checkRunning(t, c.id);
    }
  }

  private async run(t: Task, existing: { id: string; running: boolean } | undefined): Promise<void> {
    const image = t.Spec.ContainerSpec?.Image ?? '';
    // Only the states a user sees last for a while are written (each one is a store write, and on a worker a
    // report that a manager applies and deletes): `preparing` only while the image is pulled, `ready` only while
    // the task waits for a start slot; then `starting` and `running`/`failed`. A task whose image is here and
    // that starts at once costs two writes instead of five (accepted, preparing, ready, starting, running).
    if (!(await this.imageHeld(image))) {
      t = (await this.report(t, 'preparing', 'preparing')) ?? t;
      if (t.DesiredState !== 'running') return;
      if (!(await this.pullImage(t, image))) {
        await this.report(t, 'rejected', 'preparing', `No such image: ${image}`);
        return;
      }
    }
    if (!this.starts.tryAcquire()) {
      t = (await this.report(t, 'ready', 'prepared')) ?? t;
      await this.starts.acquire();
      // Told to shut down while it waited: the handler runs again for that (its watch marked it dirty).
      const now = (await this.tasks.get(t.ID).catch(() => undefined))?.value;
      if (!now || now.DesiredState !== 'running' || now.NodeID !== this.deps.nodeId) {
        this.starts.release();
        return;
      }
    }
    let id = existing?.id;
    try {
      try {
        t = (await this.report(t, 'starting', 'starting')) ?? t;
        if (t.DesiredState !== 'running') return;
        if (!id) id = (await this.deps.containers.create(containerName(t), this.createBody(t))).Id;
        if (!existing?.running) await this.deps.containers.start(id);
      } finally {
        this.starts.release();
      }
      await this.checkRunning(t, id);
    } catch (err) {
      const msg = (err as Error).message;
      this.deps.log.info({ task: t.ID, err: msg }, 'task failed to start');
      await this.report(t, 'failed', 'starting', msg, id ? { ContainerID: id } : undefined);
    }
  }

  /**
   * Whether the task's image is on this node: a reference pinned by digest
   * (`nginx:latest@sha256:...`, as the manager resolved it) by that digest;
   * without a registry client (tests), one pulled under its tag only also
   * counts (the tag's image runs the task).
   */
  private async imageHeld(image: string): Promise<boolean> {
    try {
      await this.deps.images.resolve(image);
      return true;
    } catch {
      if (!this.deps.pullImage && image.includes('@')) {
        return this.deps.images.resolve(image.replace(/@sha256:[0-9a-f]+$/, '')).then(
          () => true,
          () => false,
        );
      }
      return false;
    }
  }

  /**
   * Pulls a missing image, as dockerd's executor does: with the service's
   * credentials (`--with-registry-auth`). A failed pull is logged and the
   * task still runs when the image is here meanwhile; else it is rejected
   * with docker's "No such image". The task stays `preparing` meanwhile.
   */
  private async pullImage(t: Task, image: string): Promise<boolean> {
    if (!this.deps.pullImage) return false;
    const auth = decodeAuthHeader(t.Spec.ContainerSpec?.PullOptions?.RegistryAuth);
    try {
      await this.deps.pullImage(image, auth);
      return true;
    } catch (err) {
      this.deps.log.warn({ task: t.ID, image, err: (err as Error).message }, "pulling the task's image failed");
      return this.imageHeld(image);
    }
  }

  private createBody(t: Task): DockerContainerCreate {
    const spec = t.Spec.ContainerSpec ?? {};
    const name = t.ServiceAnnotations?.Name ?? t.ServiceID;
    const labels: Record<string, string> = {
      ...(spec.Labels ?? {}),
      [LABEL.nodeId]: t.NodeID,
      [LABEL.serviceId]: t.ServiceID,
      [LABEL.serviceName]: name,
      [LABEL.task]: '',
      [LABEL.taskId]: t.ID,
      [LABEL.taskName]: `${taskName(t, name)}.${t.ID}`,
    };
    const nets = t.NetworksAttachments ?? [];
    const endpoints: Record<string, { Aliases: string[] }> = {};
    const specNets = t.Spec.Networks ?? [];
    for (const n of nets)
      endpoints[n.Network.ID] = { Aliases: specNets.find((s) => s.Target === n.Network.ID)?.Aliases ?? [] };
    // mode=host published ports: straight to this task, on its node only (the ingress mesh handles the rest).
    const portBindings: Record<string, Array<{ HostIp: string; HostPort: string }>> = {};
    for (const p of hostPorts(t)) {
      portBindings[`${p.TargetPort}/${p.Protocol ?? 'tcp'}`] = [
        { HostIp: '', HostPort: p.PublishedPort ? String(p.PublishedPort) : '' },
      ];
    }
    const body: DockerContainerCreate = {
      Image: spec.Image ?? '',
      Env: spec.Env ?? [],
      Labels: labels,
      HostConfig: {
        NetworkMode: nets[0]?.Network.ID ?? 'bridge',
        Init: spec.Init ?? undefined,
        ...(Object.keys(portBindings).length ? { PortBindings: portBindings } : {}),
      },
      NetworkingConfig: { EndpointsConfig: endpoints },
    };
    if (spec.Command?.length) body.Entrypoint = spec.Command;
    if (spec.Args?.length) body.Cmd = spec.Args;
    if (spec.Hostname) body.Hostname = spec.Hostname;
    if (spec.Dir) body.WorkingDir = spec.Dir;
    if (spec.User) body.User = spec.User;
    if (spec.Healthcheck) body.Healthcheck = spec.Healthcheck;
    return body;
  }

  private async markRunning(t: Task, containerId: string): Promise<void> {
    const info = await this.deps.containers.inspect(containerId);
    const nets = info.NetworkSettings.Networks ?? {};
    const attachments = (t.NetworksAttachments ?? []).map((a) => {
      const ep = Object.values(nets).find((e) => e.NetworkID === a.Network.ID);
      const addrs = ep?.IPAddress ? [`${ep.IPAddress}/${ep.IPPrefixLen ?? 32}`] : [];
      return { ...a, Addresses: addrs };
    });
    const ports = hostPorts(t).map((p) => {
      const bound = info.NetworkSettings.Ports?.[`${p.TargetPort}/${p.Protocol ?? 'tcp'}`]?.[0]?.HostPort;
      return { ...p, PublishedPort: bound ? Number(bound) : p.PublishedPort };
    });
    await this.report(
      t,
      'running',
      'started',
      undefined,
      { ContainerID: containerId, PID: info.State.Pid, ExitCode: 0 },
      attachments,
      ports,
    );
  }

  /**
   * Moves the task's observed state forward (never back: a late report must
   * not undo a newer one) and returns the stored task.
   */
  private async report(
    t: Task,
    state: TaskState,
    message: string,
    err?: string,
    cs?: Task['Status']['ContainerStatus'],
    attachments?: Task['NetworksAttachments'],
    ports?: PortConfig[],
  ): Promise<Task | undefined> {
    const reportOf = (cur: Task): TaskReport => ({
      UpdatedAt: nowIso(),
      Status: {
        Timestamp: nowIso(),
        State: state,
        Message: message,
        ...(err ? { Err: err } : {}),
        ...((cs ?? cur.Status.ContainerStatus) ? { ContainerStatus: cs ?? cur.Status.ContainerStatus } : {}),
        PortStatus: ports?.length ? { Ports: ports } : {},
      },
      ...(attachments ? { NetworksAttachments: attachments } : {}),
    });
    if (this.deps.reportOnly?.()) {
      // A worker: the managers apply it to the record (the same rule, applyReport).
      return (async () => {
        const cur = (await this.tasks.get(t.ID))?.value ?? t;
        const r = reportOf(cur);
        const next = applyReport(cur, this.deps.nodeId, r);
        if (!next || next === cur) return cur;
        await this.sendReport(t.ID, r);
        return next;
      })().catch((e) => {
        this.deps.log.debug({ err: e, task: t.ID }, 'task state report failed');
        return undefined;
      });
    }
    return updateRecord(this.tasks, t.ID, (cur) => applyReport(cur, this.deps.nodeId, reportOf(cur)) ?? cur).catch(
      (e) => {
        this.deps.log.debug({ err: e, task: t.ID }, 'task state report failed');
        return undefined;
      },
    );
  }

  private async sendReport(taskId: string, r: TaskReport): Promise<void> {
    await this.deps.store.put(reportKey(this.deps.nodeId, taskId), JSON.stringify(r));
  }
}

/** The task's ports published in host mode (Task.Spec has no endpoint: the service's is copied in its annotations). */
function hostPorts(t: Task): PortConfig[] {
  return (t.Endpoint?.Spec?.Ports ?? []).filter((p) => p.PublishMode === 'host');
}
