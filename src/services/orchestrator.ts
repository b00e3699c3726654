/**
 * The orchestrator: runs on the leader manager only and turns services into
 * tasks. Everything it decides is derived from the store (services, tasks)
 * and the nodes' liveness, so a new leader simply continues where the old
 * one stopped. Each write carries the leader key's revision as a fence: a
 * manager that lost leadership cannot write, so nothing is scheduled twice.
 *
 * Per replicated slot (or, for a global service, per node) the newest task
 * decides:
 *   - none: create one (the scheduler picks a node);
 *   - live on a node that is down or drained: shut it down, create a
 *     replacement elsewhere at once;
 *   - ended while desired running: replace it after the restart delay if the
 *     restart condition allows (any / on-failure with a failure);
 *   - desired shutdown: once it has ended, a replacement with the current
 *     spec is created (this is how stop-first updates proceed).
 * A task whose desired state is remove (scaled away) belongs to no slot: a
 * scale back up creates the slot's new task at once, beside the old one that
 * is still stopping (swarmkit counts only the tasks meant to run, too).
 * Rolling updates pick batches of out-of-date slots (UpdateConfig.Parallelism,
 * Delay, Order) until every slot runs the current spec.
 */
import type { Logger } from '../common/log.js';
import { ReconcileLoop } from '../common/reconcile-loop.js';
import { CasError, type Store, type TxnOp } from '../store/store.js';
import {
  byAge,
  isReplicated,
  liveTask,
  replicas,
  serviceCollection,
  taskCollection,
  TASKS,
  SERVICES,
} from './records.js';
import { available, FAILURE_WINDOW_MS, parseConstraints, pickNode, satisfies, type Constraint } from './scheduler.js';
import {
  isTerminal,
  needsIngress,
  newSwarmId,
  nowIso,
  NS,
  type SchedNode,
  type Service,
  type Task,
  type UpdateStatus,
} from './types.js';

/** Docker's defaults: restart delay 5 s, history of 5 tasks per slot. */
export const DEFAULT_RESTART_DELAY_NS = 5 * NS;
export const TASK_HISTORY_LIMIT = 5;

export interface OrchestratorDeps {
  store: Store;
  /** Every node of the cluster with liveness and availability. */
  nodes: () => Promise<SchedNode[]>;
  /** A check that this manager still leads, added to each write; undefined: no fence (tests). */
  fence?: () => TxnOp | undefined;
  /** Network names for the task records (NetworksAttachments[].Network.Spec.Name). */
  networkName?: (id: string) => Promise<string | undefined>;
  /** The swarm's ingress network: tasks of services publishing through the routing mesh join it (as eth0). */
  ingressNetwork?: () => Promise<{ id: string; name: string } | undefined>;
  log: Logger;
  now?: () => number;
  /** Period of the safety-net pass that notices nodes going down and restart delays ending. */
  tickMs?: number;
}

interface UpdateProgress {
  /** When the last batch finished (all its slots running the new spec). */
  lastBatchDoneAt: number;
  batchOpen: boolean;
}

export class Orchestrator {
  private readonly services;
  private readonly tasks;
  private readonly now: () => number;
  /** Watches on services and tasks, and a pass every tickMs (src/common/reconcile-loop.ts). */
  private readonly loop: ReconcileLoop;
  private readonly updates = new Map<string, UpdateProgress>();
  /**
   * swarmkit's restart supervisor history: per service slot (global: node), the
   * spec version and when each restart replaced an ended task. Kept here and not
   * counted from the slot's task records, which keep only TASK_HISTORY_LIMIT
   * tasks (MaxAttempts of 5 or more would never be reached). A new leader seeds
   * it from the records it finds.
   */
  private readonly restarts = new Map<string, { spec: number; at: number[] }>();
  /** Task ID → whether its restart policy refused it (taken once, see restartPolicyRefuses). */
  private readonly verdicts = new Map<string, boolean>();

  constructor(private readonly deps: OrchestratorDeps) {
    this.services = serviceCollection(deps.store);
    this.tasks = taskCollection(deps.store);
    this.now = deps.now ?? Date.now;
    const store = deps.store;
    this.loop = new ReconcileLoop({
      pass: () => this.reconcile(),
      periodMs: deps.tickMs ?? 500,
      sources: [(kick) => store.watch(`${SERVICES}/`, kick), (kick) => store.watch(`${TASKS}/`, kick)],
      onError: (err) => {
        // A lost compare-and-swap (another write, or the leader key moved): read again at once.
        if (err instanceof CasError) return true;
        this.deps.log.warn({ err }, 'orchestrator pass failed');
        return false;
      },
    });
  }

  start(): void {
    this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop.stop();
  }

  /** Asks for a pass; passes never overlap, and a kick during one asks for another. */
  kick(): void {
    this.loop.kick();
  }

  /** One pass over every service; public for tests. */
  async reconcile(): Promise<void> {
    const nodes = await this.deps.nodes();
    const services = await this.services.list();
    const tasks = (await this.tasks.list()).map((e) => ({ ...e.value, Version: { Index: e.revision } }));
    const bySvc = new Map<string, Task[]>();
    for (const t of tasks) {
      const l = bySvc.get(t.ServiceID) ?? [];
      l.push(t);
      bySvc.set(t.ServiceID, l);
    }
    const load = { all: new Map<string, number>() };
    for (const t of tasks) {
      if (t.NodeID && liveTask(t) && t.DesiredState === 'running')
        load.all.set(t.NodeID, (load.all.get(t.NodeID) ?? 0) + 1);
    }
    const ctx: PassCtx = { nodes, nodeById: new Map(nodes.map((n) => [n.id, n])), loadAll: load.all };
    for (const s of services) {
      const svc = { ...s.value, Version: { Index: s.revision } };
      await this.reconcileService(svc, bySvc.get(svc.ID) ?? [], ctx);
    }
    // Tasks of removed services: the agents remove them; a down node's are dropped here.
    const known = new Set(services.map((s) => s.id));
    const taskIds = new Set(tasks.map((t) => t.ID));
    for (const id of this.verdicts.keys()) if (!taskIds.has(id)) this.verdicts.delete(id);
    for (const key of this.restarts.keys()) if (!known.has(key.slice(0, key.indexOf('/')))) this.restarts.delete(key);
    for (const t of tasks) {
      if (known.has(t.ServiceID)) continue;
      const node = ctx.nodeById.get(t.NodeID);
      if (!t.NodeID || !node || node.state !== 'ready' || isTerminal(t.Status.State)) await this.write(t, null);
      else if (t.DesiredState !== 'remove') await this.write(t, { ...t, DesiredState: 'remove', UpdatedAt: nowIso() });
    }
  }

  private async reconcileService(svc: Service, tasks: Task[], ctx: PassCtx): Promise<void> {
    const constraints = safeConstraints(svc);
    const loadSvc = new Map<string, number>();
    for (const t of tasks)
      if (t.NodeID && liveTask(t) && t.DesiredState === 'running')
        loadSvc.set(t.NodeID, (loadSvc.get(t.NodeID) ?? 0) + 1);
    const failures = new Map<string, number>();
    const since = this.now() - FAILURE_WINDOW_MS;
    for (const t of tasks) {
      if (
        t.NodeID &&
        (t.Status.State === 'failed' || t.Status.State === 'rejected') &&
        Date.parse(t.Status.Timestamp) >= since
      )
        failures.set(t.NodeID, (failures.get(t.NodeID) ?? 0) + 1);
    }
    const groups = new Map<string, Task[]>();
    const keyOf = (t: Task): string => (isReplicated(svc) ? `s${t.Slot}` : `n${t.NodeID}`);
    // A task being removed (scaled away, its service gone) holds no slot: it may take its stop grace period
    // (10 s for a process that ignores SIGTERM) to end, and a scale back up must not wait for it. Its agent stops
    // it and deletes its record; only one on a node that is down is dropped here (below).
    const removing: Task[] = [];
    for (const t of tasks) {
      if (t.DesiredState === 'remove') {
        removing.push(t);
        continue;
      }
      const l = groups.get(keyOf(t)) ?? [];
      l.push(t);
      groups.set(keyOf(t), l);
    }
    for (const l of groups.values()) l.sort(byAge);

    const wanted: Array<{ key: string; slot: number; node?: string }> = [];
    if (isReplicated(svc)) {
      for (let s = 1; s <= replicas(svc); s++) wanted.push({ key: `s${s}`, slot: s });
    } else {
      for (const n of ctx.nodes) {
        const has = (groups.get(`n${n.id}`) ?? []).some((t) => liveTask(t) && t.DesiredState === 'running');
        // A paused node keeps what it runs but takes nothing new; a down one keeps its task until it returns.
        const keep = has && (n.availability === 'pause' || n.state !== 'ready');
        if ((available(n) && satisfies(n, constraints)) || keep) wanted.push({ key: `n${n.id}`, slot: 0, node: n.id });
      }
    }
    const wantedKeys = new Set(wanted.map((w) => w.key));

    const place = (node?: string): { nodeId?: string; reason?: string } => {
      if (node) return { nodeId: node };
      return pickNode(ctx.nodes, constraints, { service: loadSvc, all: ctx.loadAll, failures });
    };
    const count = (node: string | undefined): void => {
      if (!node) return;
      loadSvc.set(node, (loadSvc.get(node) ?? 0) + 1);
      ctx.loadAll.set(node, (ctx.loadAll.get(node) ?? 0) + 1);
    };

    let failedDuringUpdate: Task | undefined;
    for (const w of wanted) {
      const ts = groups.get(w.key) ?? [];
      const cur = ts[ts.length - 1];
      if (!cur) {
        const p = place(w.node);
        await this.createTask(svc, w.slot, p, ctx);
        count(p.nodeId);
        continue;
      }
      const node = ctx.nodeById.get(cur.NodeID);
      const nodeOk = Boolean(node && node.state === 'ready' && node.availability !== 'drain');
      const ended = isTerminal(cur.Status.State);
      if (cur.DesiredState === 'running') {
        if (!ended && !cur.NodeID) {
          const p = place(w.node);
          if (p.nodeId) {
            await this.write(cur, {
              ...cur,
              NodeID: p.nodeId,
              UpdatedAt: nowIso(),
              Status: status('assigned', 'scheduler assigned task to node'),
            });
            count(p.nodeId);
          } else if (cur.Status.Err !== p.reason) {
            await this.write(cur, {
              ...cur,
              UpdatedAt: nowIso(),
              Status: { ...status('pending', 'pending task scheduling'), Err: p.reason! },
            });
          }
        } else if (!ended && !nodeOk && isReplicated(svc)) {
          await this.write(cur, { ...cur, DesiredState: 'shutdown', UpdatedAt: nowIso() });
          const p = place();
          await this.createTask(svc, w.slot, p, ctx);
          count(p.nodeId);
        } else if (ended) {
          if (cur.SpecVersion.Index === svc.SpecVersion.Index && cur.Status.State !== 'complete')
            failedDuringUpdate ??= cur;
          const wait = this.restartWait(svc, cur, ts, `${svc.ID}/${w.key}`);
          if (wait === -1) {
            // Not restarted (condition none, on-failure after a clean exit, attempts used up): shut down, as swarmkit's
            // restart supervisor does; the slot keeps it as its last task (service ls counts 0 running).
            await this.write(cur, { ...cur, DesiredState: 'shutdown', UpdatedAt: nowIso() });
          } else if (wait === 0) {
            await this.write(cur, { ...cur, DesiredState: 'shutdown', UpdatedAt: nowIso() });
            const p = place(w.node);
            await this.createTask(svc, w.slot, p, ctx);
            count(p.nodeId);
            if (cur.SpecVersion.Index === svc.SpecVersion.Index)
              this.restartHistory(svc, `${svc.ID}/${w.key}`, ts).at.push(this.now());
          }
        } else if (cur.Status.State === 'running') {
          // start-first: the new task runs, so the older ones of the slot go.
          for (const old of ts.slice(0, -1)) {
            if (old.DesiredState === 'running' && !isTerminal(old.Status.State))
              await this.write(old, { ...old, DesiredState: 'shutdown', UpdatedAt: nowIso() });
          }
        }
      } else if (
        ended &&
        cur.SpecVersion.Index === svc.SpecVersion.Index &&
        this.restartPolicyRefuses(svc, cur, ts, `${svc.ID}/${w.key}`)
      ) {
        // Shut down above because its restart policy said no: the slot stays without a running task.
      } else if (ended || !nodeOk) {
        const p = place(w.node);
        await this.createTask(svc, w.slot, p, ctx);
        count(p.nodeId);
      }
      await this.trimHistory(ts);
    }

    // Slots beyond the replica count, or nodes that no longer qualify: remove.
    const leaving = [...groups].filter(([key]) => !wantedKeys.has(key)).map(([, ts]) => ts);
    for (const ts of [...leaving, removing]) {
      for (const t of ts) {
        const node = ctx.nodeById.get(t.NodeID);
        if (isTerminal(t.Status.State) || !node || node.state !== 'ready') {
          if (isReplicated(svc) || isTerminal(t.Status.State) || !node) await this.write(t, null);
        } else if (t.DesiredState !== 'remove' && isReplicated(svc)) {
          await this.write(t, { ...t, DesiredState: 'remove', UpdatedAt: nowIso() });
        } else if (t.DesiredState === 'running') {
          await this.write(t, { ...t, DesiredState: 'shutdown', UpdatedAt: nowIso() });
        }
      }
    }

    await this.rollingUpdate(
      svc,
      wanted.map((w) => groups.get(w.key) ?? []),
      failedDuringUpdate,
      ctx,
    );
  }

  /**
   * The restart policy's verdict on an ended task of the current spec: true when it is not to be replaced.
   * MaxAttempts counts the slot's restarts of this spec; with a Window, only those within the window (swarmkit's
   * restart supervisor). The verdict is taken once, when this leader first sees the task ended, and kept: a
   * refused slot does not come back later when its old restarts leave the window (swarmkit decides at the
   * failure only; `service update --force` or a scale brings such a slot back).
   */
  private restartPolicyRefuses(svc: Service, cur: Task, slotTasks: Task[], key: string): boolean {
    const policy = svc.Spec.TaskTemplate?.RestartPolicy ?? {};
    const cond = policy.Condition ?? 'any';
    const failed = cur.Status.State !== 'complete' && cur.Status.State !== 'shutdown';
    if (cond === 'none') return true;
    if (cond === 'on-failure' && !failed) return true;
    if (!policy.MaxAttempts || policy.MaxAttempts <= 0) return false;
    const known = this.verdicts.get(cur.ID);
    if (known !== undefined) return known;
    const windowMs = (policy.Window ?? 0) / 1e6;
    const since = this.now() - windowMs;
    const counted = this.restartHistory(svc, key, slotTasks).at.filter((t) => windowMs <= 0 || t > since).length;
    const refuses = counted >= policy.MaxAttempts;
    this.verdicts.set(cur.ID, refuses);
    return refuses;
  }

  /** The slot's restart history for the service's current spec; seeded from the task records when this leader has none. */
  private restartHistory(svc: Service, key: string, slotTasks: Task[]): { spec: number; at: number[] } {
    const spec = svc.SpecVersion.Index;
    let h = this.restarts.get(key);
    if (!h || h.spec !== spec) {
      // A task of this spec that follows an ended one of this spec replaced it: a restart, made when it was created.
      const at: number[] = [];
      for (let i = 1; i < slotTasks.length; i++) {
        const prev = slotTasks[i - 1]!;
        const t = slotTasks[i]!;
        if (t.SpecVersion.Index === spec && prev.SpecVersion.Index === spec && isTerminal(prev.Status.State))
          at.push(Date.parse(t.CreatedAt) || this.now());
      }
      h = { spec, at };
      this.restarts.set(key, h);
    }
    return h;
  }

  /** 0 when the ended task `cur` should be replaced now; -1 never; else ms to wait (a timer kicks then). */
  private restartWait(svc: Service, cur: Task, slotTasks: Task[], key: string): number {
    const policy = svc.Spec.TaskTemplate?.RestartPolicy ?? {};
    const updating = cur.SpecVersion.Index !== svc.SpecVersion.Index;
    if (!updating && this.restartPolicyRefuses(svc, cur, slotTasks, key)) return -1;
    const delayMs = Math.round((policy.Delay ?? DEFAULT_RESTART_DELAY_NS) / 1e6);
    const since = this.now() - Date.parse(cur.Status.Timestamp);
    if (since >= delayMs || updating) return 0;
    const t = setTimeout(() => this.kick(), delayMs - since + 5);
    t.unref?.();
    return delayMs - since;
  }

  private async rollingUpdate(svc: Service, slots: Task[][], failed: Task | undefined, _ctx: PassCtx): Promise<void> {
    const st = svc.UpdateStatus?.State;
    const rollingBack = st === 'rollback_started';
    const cfg = (rollingBack ? svc.Spec.RollbackConfig : svc.Spec.UpdateConfig) ?? {};
    const current = (t: Task | undefined): boolean => Boolean(t && t.SpecVersion.Index === svc.SpecVersion.Index);
    const outOfDate: Task[] = [];
    let inFlight = 0;
    for (const ts of slots) {
      const cur = ts[ts.length - 1];
      if (!cur) continue;
      if (!current(cur)) {
        if (cur.DesiredState === 'running' && !isTerminal(cur.Status.State)) outOfDate.push(cur);
        else if (!isTerminal(cur.Status.State)) inFlight++;
      } else if (cur.Status.State !== 'running' && !isTerminal(cur.Status.State)) {
        inFlight++;
      } else if (ts.slice(0, -1).some((t) => t.DesiredState === 'running' && !isTerminal(t.Status.State))) {
        inFlight++;
      }
    }
    const updating = st === 'updating' || st === 'rollback_started';
    if (!updating) {
      this.updates.delete(svc.ID);
      return;
    }
    if (failed && (cfg.FailureAction ?? 'pause') !== 'continue') {
      if ((cfg.FailureAction ?? 'pause') === 'rollback' && !rollingBack && svc.PreviousSpec) {
        await this.writeService(
          svc,
          rollbackOf(
            svc,
            'rollback_started',
            `update rolled back due to failure or early termination of task ${failed.ID}`,
          ),
        );
        return;
      }
      await this.writeService(svc, {
        ...svc,
        UpdateStatus: {
          State: rollingBack ? 'rollback_paused' : 'paused',
          StartedAt: svc.UpdateStatus?.StartedAt ?? nowIso(),
          Message: `${rollingBack ? 'rollback' : 'update'} paused due to failure or early termination of task ${failed.ID}`,
        },
      });
      return;
    }
    const prog = this.updates.get(svc.ID) ?? { lastBatchDoneAt: 0, batchOpen: false };
    this.updates.set(svc.ID, prog);
    if (inFlight > 0) return;
    if (prog.batchOpen) {
      prog.batchOpen = false;
      prog.lastBatchDoneAt = this.now();
    }
    if (!outOfDate.length) {
      // As swarmkit: the update completes once the last tasks have run for the monitor period.
      const monitorMs = Math.round((cfg.Monitor ?? 5 * NS) / 1e6);
      const left = prog.lastBatchDoneAt + monitorMs - this.now();
      if (prog.lastBatchDoneAt && left > 0) {
        const t = setTimeout(() => this.kick(), left + 5);
        t.unref?.();
        return;
      }
      const done: UpdateStatus = {
        State: rollingBack ? 'rollback_completed' : 'completed',
        StartedAt: svc.UpdateStatus?.StartedAt ?? nowIso(),
        CompletedAt: nowIso(),
        Message: rollingBack ? 'rollback completed' : 'update completed',
      };
      this.updates.delete(svc.ID);
      await this.writeService(svc, { ...svc, UpdateStatus: done });
      return;
    }
    const delayMs = Math.round((cfg.Delay ?? 0) / 1e6);
    const wait = prog.lastBatchDoneAt + delayMs - this.now();
    if (prog.lastBatchDoneAt && wait > 0) {
      const t = setTimeout(() => this.kick(), wait + 5);
      t.unref?.();
      return;
    }
    const parallelism = cfg.Parallelism === undefined ? 1 : cfg.Parallelism;
    const batch = outOfDate.sort((a, b) => a.Slot - b.Slot).slice(0, parallelism > 0 ? parallelism : undefined);
    prog.batchOpen = true;
    for (const old of batch) {
      if ((cfg.Order ?? 'stop-first') === 'start-first') {
        await this.createTask(svc, old.Slot, { nodeId: old.Slot > 0 ? undefined : old.NodeID }, _ctx, old.Slot > 0);
      } else {
        await this.write(old, { ...old, DesiredState: 'shutdown', UpdatedAt: nowIso() });
      }
    }
  }

  private async createTask(
    svc: Service,
    slot: number,
    p: { nodeId?: string; reason?: string },
    ctx: PassCtx,
    schedule = false,
  ): Promise<void> {
    if (schedule && !p.nodeId) {
      p = pickNode(ctx.nodes, safeConstraints(svc), { service: new Map(), all: ctx.loadAll });
    }
    const now = nowIso();
    const nets = [...(svc.Spec.TaskTemplate?.Networks ?? [])];
    // swarmkit's allocator puts the ingress network first in the task's attachments when the service needs it.
    const ingress = needsIngress(svc.Spec) ? await this.deps.ingressNetwork?.() : undefined;
    if (ingress && !nets.some((n) => n.Target === ingress.id)) nets.unshift({ Target: ingress.id });
    const task: Task = {
      ID: newSwarmId(),
      Version: { Index: 0 },
      CreatedAt: now,
      UpdatedAt: now,
      Labels: {},
      Spec: svc.Spec.TaskTemplate ?? {},
      SpecVersion: { ...svc.SpecVersion },
      ServiceID: svc.ID,
      Slot: slot,
      NodeID: p.nodeId ?? '',
      Status: p.nodeId
        ? status('assigned', 'scheduler assigned task to node')
        : { ...status('pending', 'pending task scheduling'), Err: p.reason ?? 'no suitable node' },
      DesiredState: 'running',
      NetworksAttachments: await Promise.all(
        nets.map(async (n) => ({
          Network: { ID: n.Target, Spec: { Name: (await this.deps.networkName?.(n.Target)) ?? n.Target } },
          Addresses: [],
        })),
      ),
      ServiceAnnotations: { Name: svc.Spec.Name ?? svc.ID },
      Endpoint: svc.Endpoint,
    };
    await this.write({ ...task, Version: { Index: 0 } }, task);
    this.deps.log.debug({ service: svc.Spec.Name, slot, node: task.NodeID, task: task.ID }, 'task created');
  }

  private async trimHistory(ts: Task[]): Promise<void> {
    const extra = ts.length - TASK_HISTORY_LIMIT;
    for (const t of ts.slice(0, Math.max(0, extra))) {
      if (isTerminal(t.Status.State) && t.DesiredState !== 'running') await this.write(t, null);
    }
  }

  /** A fenced CAS write of one task (value null deletes it). */
  private async write(cur: Task, next: Task | null): Promise<void> {
    const { Version: _v, ...rest } = next ?? ({} as Task);
    const ops: TxnOp[] = [
      {
        key: `${TASKS}/${cur.ID}`,
        expectRevision: cur.Version.Index,
        value: next ? JSON.stringify({ ...rest, Version: { Index: 0 } }) : null,
      },
    ];
    const fence = this.deps.fence?.();
    if (fence) ops.push(fence);
    await this.deps.store.txn(ops);
  }

  private async writeService(cur: Service, next: Service): Promise<void> {
    const ops: TxnOp[] = [
      {
        key: `${SERVICES}/${cur.ID}`,
        expectRevision: cur.Version.Index,
        value: JSON.stringify({ ...next, UpdatedAt: nowIso() }),
      },
    ];
    const fence = this.deps.fence?.();
    if (fence) ops.push(fence);
    await this.deps.store.txn(ops);
  }
}

interface PassCtx {
  nodes: SchedNode[];
  nodeById: Map<string, SchedNode>;
  loadAll: Map<string, number>;
}

function status(state: Task['Status']['State'], message: string): Task['Status'] {
  return { Timestamp: nowIso(), State: state, Message: message };
}

function safeConstraints(svc: Service): Constraint[] {
  try {
    return parseConstraints(svc.Spec.TaskTemplate?.Placement?.Constraints);
  } catch {
    return [];
  }
}

/** The service with its previous spec back in place (a rollback), as a new spec version. */
export function rollbackOf(svc: Service, state: UpdateStatus['State'], message: string): Service {
  return {
    ...svc,
    Spec: svc.PreviousSpec ?? svc.Spec,
    PreviousSpec: svc.Spec,
    SpecVersion: { Index: svc.SpecVersion.Index + 1 },
    UpdateStatus: { State: state, StartedAt: nowIso(), Message: message },
  };
}
