/**
 * Where services and tasks live in the cluster store, and small helpers over
 * the records that the manager, the orchestrator and the agent share.
 *
 *   services/<id>          Service (swarm.Service); Version.Index = the key's revision
 *   tasks/<id>             Task (swarm.Task); Version.Index = the key's revision
 *   orchestrator/leader    { nodeId, expiresAt } of the manager running the orchestrator
 */
import { CasError, Collection, type Store } from '../store/store.js';
import { isTerminal, type Service, type Task } from './types.js';

export const SERVICES = 'services';
export const TASKS = 'tasks';
export const LEADER_KEY = 'orchestrator/leader';

export function serviceCollection(store: Store): Collection<Service> {
  return new Collection<Service>(store, SERVICES);
}

export function taskCollection(store: Store): Collection<Task> {
  return new Collection<Task>(store, TASKS);
}

/** The record with Version.Index set from the store's revision, as the API serves it. */
export function withVersion<T extends { Version: { Index: number } }>(e: { value: T; revision: number }): T {
  return { ...e.value, Version: { Index: e.revision } };
}

export function isReplicated(s: Service): boolean {
  return !s.Spec.Mode?.Global;
}

export function replicas(s: Service): number {
  return s.Spec.Mode?.Replicated?.Replicas ?? 1;
}

/** Docker's task name: <service>.<slot> (replicated) or <service>.<node id> (global). */
export function taskName(t: Task, serviceName: string): string {
  return `${serviceName}.${t.Slot > 0 ? t.Slot : t.NodeID}`;
}

/** The container of a task: <service>.<slot>.<task id>, as Docker names it. */
export function containerName(t: Task): string {
  return `${taskName(t, t.ServiceAnnotations?.Name ?? t.ServiceID)}.${t.ID}`;
}

/** Tasks in creation order (oldest first); ties broken by ID so every manager agrees. */
export function byAge(a: Task, b: Task): number {
  return a.CreatedAt < b.CreatedAt ? -1 : a.CreatedAt > b.CreatedAt ? 1 : a.ID < b.ID ? -1 : a.ID > b.ID ? 1 : 0;
}

export function liveTask(t: Task): boolean {
  return !isTerminal(t.Status.State);
}

/**
 * Read-modify-CAS of one record that writes nothing when `fn` returns the
 * record unchanged (same object), so watchers see no change that is none.
 */
export async function updateRecord<T>(
  col: Collection<T>,
  id: string,
  fn: (cur: T) => T | null,
): Promise<T | undefined> {
  for (let i = 0; ; i++) {
    const cur = await col.get(id);
    if (!cur) return undefined;
    const next = fn(cur.value);
    if (next === cur.value) return cur.value;
    try {
      if (next === null) await col.delete(id, cur.revision);
      else await col.put(id, next, cur.revision);
      return next ?? undefined;
    } catch (e) {
      if (!(e instanceof CasError) || i >= 50) throw e;
      await new Promise((r) => setTimeout(r, Math.random() * Math.min(20, 2 ** i)));
    }
  }
}
