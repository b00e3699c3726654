/**
 * Task status reports from workers. A worker's etcd role does not let it
 * write tasks/ (it could otherwise rewrite any node's tasks), so its agent
 * writes what it observed under its own key prefix,
 * node-local/<node>/tasks/<task id>, and every manager applies the report to
 * the task record: only to a task assigned to that node (the node ID comes
 * from the key, which etcd's RBAC ties to the writer's certificate), and only
 * forward (a late report never undoes a newer state). A report applied is
 * deleted, unless the worker wrote a newer one meanwhile.
 */
import type { Logger } from '../common/log.js';
import type { Store } from '../store/store.js';
import { taskCollection, updateRecord } from './records.js';
import { isTerminal, stateRank, type Task } from './types.js';

export const REPORTS = 'node-local/';

/** What a worker reports about one of its tasks. */
export interface TaskReport {
  Status: Task['Status'];
  UpdatedAt: string;
  NetworksAttachments?: Task['NetworksAttachments'];
  /** The task's container is gone and its desired state was remove: the record may go. */
  Removed?: boolean;
}

export function reportKey(nodeId: string, taskId: string): string {
  return `${REPORTS}${nodeId}/tasks/${taskId}`;
}

/** node-local/<node>/tasks/<task> -> [node, task]. */
export function parseReportKey(key: string): [string, string] | undefined {
  const m = /^node-local\/([a-z0-9]+)\/tasks\/([a-z0-9]+)$/.exec(key);
  return m ? [m[1]!, m[2]!] : undefined;
}

/** The task after a report from its node: state only forward, terminal states final. */
export function applyReport(cur: Task, node: string, r: TaskReport): Task | null {
  if (cur.NodeID !== node) return cur;
  if (r.Removed) return cur.DesiredState === 'remove' ? null : cur;
  const state = r.Status.State;
  if (stateRank(cur.Status.State) >= stateRank(state) && !(state === 'running' && cur.Status.State === 'running'))
    return cur;
  if (isTerminal(cur.Status.State)) return cur;
  return {
    ...cur,
    UpdatedAt: r.UpdatedAt,
    Status: r.Status,
    ...(r.NetworksAttachments ? { NetworksAttachments: r.NetworksAttachments } : {}),
  };
}

/** Runs on managers: applies the workers' reports. */
export class ReportRelay {
  private stopWatch: (() => void) | undefined;
  private readonly busy = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.stopWatch) return;
    this.stopWatch = this.store.watch(REPORTS, (ev) => {
      if (ev.type !== 'delete' && parseReportKey(ev.kv.key)) this.kick(ev.kv.key);
    });
    // Reports written while no manager was watching.
    void this.store.list(REPORTS).then(
      (kvs) => {
        for (const kv of kvs) if (parseReportKey(kv.key)) this.kick(kv.key);
      },
      (e: unknown) => this.log.debug({ err: e }, 'task reports not listed'),
    );
  }

  async stop(): Promise<void> {
    this.stopWatch?.();
    this.stopWatch = undefined;
    await Promise.allSettled([...this.busy.values()]);
  }

  private kick(key: string): void {
    if (this.busy.has(key)) {
      this.again.add(key);
      return;
    }
    const run = this.apply(key)
      .catch((e: unknown) => this.log.debug({ err: e, key }, 'task report not applied'))
      .finally(() => {
        this.busy.delete(key);
        if (this.again.delete(key) && this.stopWatch) this.kick(key);
      });
    this.busy.set(key, run);
  }

  private async apply(key: string): Promise<void> {
    const [node, taskId] = parseReportKey(key)!;
    const kv = await this.store.get(key);
    if (!kv) return;
    let r: TaskReport;
    try {
      r = JSON.parse(kv.value) as TaskReport;
      if (!r || typeof r !== 'object' || !r.Status || typeof r.Status.State !== 'string') throw new Error('shape');
    } catch {
      await this.store.delete(key, kv.revision).catch(() => undefined);
      return;
    }
    await updateRecord(taskCollection(this.store), taskId, (cur) => applyReport(cur, node, r));
    await this.store.delete(key, kv.revision).catch(() => undefined);
  }
}
