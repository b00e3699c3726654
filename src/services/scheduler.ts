/**
 * The scheduler: which node runs a new task. Pure functions over the nodes
 * and the tasks already placed, so the orchestrator can call them inline and
 * tests need no cluster. Placement follows swarmkit: only ready, active nodes
 * take new tasks; constraints must all hold; among the rest the node with
 * the fewest tasks of this service wins, then the one with the fewest tasks
 * overall (spread).
 */
import { InvalidParameter } from '../common/errors.js';
import type { SchedNode } from './types.js';

export interface Constraint {
  key: string;
  op: '==' | '!=';
  value: string;
}

/** swarmkit's constraint.Parse, with its error words. */
export function parseConstraints(exprs: string[] | undefined): Constraint[] {
  return (exprs ?? []).map((expr) => {
    const m = /^\s*([^=!\s]+)\s*(==|!=)\s*(.*?)\s*$/.exec(expr);
    if (!m) throw new InvalidParameter(`invalid constraint: constraint expected one operator from ==, !=`);
    const key = m[1]!.toLowerCase();
    if (
      !/^(node\.(id|hostname|role|platform\.os|platform\.arch|labels\.[^\s]+)|engine\.labels\.[^\s]+|node\.labels)$/.test(
        key,
      )
    ) {
      throw new InvalidParameter(`invalid constraint: key '${m[1]}' is not supported`);
    }
    if (!m[3]) throw new InvalidParameter(`invalid constraint: value is empty in '${expr}'`);
    return { key, op: m[2] as '==' | '!=', value: m[3] };
  });
}

function nodeValue(node: SchedNode, key: string): string | undefined {
  if (key === 'node.id') return node.id;
  if (key === 'node.hostname') return node.hostname;
  if (key === 'node.role') return node.role;
  if (key === 'node.platform.os') return 'linux';
  if (key === 'node.platform.arch') return process.arch === 'x64' ? 'x86_64' : process.arch;
  if (key.startsWith('node.labels.')) return node.labels?.[key.slice('node.labels.'.length)];
  return undefined;
}

export function satisfies(node: SchedNode, constraints: Constraint[]): boolean {
  return constraints.every((c) => {
    const v = nodeValue(node, c.key);
    // Labels compare case-sensitively, the rest (ids, names, roles) do not.
    const eq =
      v !== undefined && (c.key.includes('.labels.') ? v === c.value : v.toLowerCase() === c.value.toLowerCase());
    return c.op === '==' ? eq : !eq;
  });
}

/** A node that may take new tasks. */
export function available(node: SchedNode): boolean {
  return node.state === 'ready' && node.availability === 'active';
}

/** Failures of a service's tasks on one node (in the last 5 minutes) after which the node is avoided. */
export const FAILURES_TO_AVOID = 2;
export const FAILURE_WINDOW_MS = 5 * 60_000;

export interface Placement {
  nodeId?: string;
  /** Why no node fits, in swarmkit's words, when nodeId is undefined. */
  reason?: string;
}

/**
 * Picks a node for one more task of a service. `load` counts, per node ID,
 * the live tasks of this service and of all services; the caller adds the
 * chosen node's counts before placing the next task, so a batch spreads.
 */
export function pickNode(
  nodes: SchedNode[],
  constraints: Constraint[],
  load: { service: Map<string, number>; all: Map<string, number>; failures?: Map<string, number> },
): Placement {
  const up = nodes.filter(available);
  const fit = up.filter((n) => satisfies(n, constraints));
  if (!fit.length) {
    const parts: string[] = [];
    const unavailable = nodes.length - up.length;
    if (unavailable) parts.push(`${unavailable} node${unavailable === 1 ? '' : 's'} not available for new tasks`);
    const unfit = up.length - fit.length;
    if (unfit) parts.push(`scheduling constraints not satisfied on ${unfit} node${unfit === 1 ? '' : 's'}`);
    return { reason: `no suitable node${parts.length ? ` (${parts.join('; ')})` : ''}` };
  }
  // As swarmkit: a node where this service's tasks keep failing goes last, so a broken node does not eat every retry.
  const failing = (n: SchedNode): number => ((load.failures?.get(n.id) ?? 0) >= FAILURES_TO_AVOID ? 1 : 0);
  fit.sort(
    (a, b) =>
      failing(a) - failing(b) ||
      (load.service.get(a.id) ?? 0) - (load.service.get(b.id) ?? 0) ||
      (load.all.get(a.id) ?? 0) - (load.all.get(b.id) ?? 0) ||
      a.hostname.localeCompare(b.hostname) ||
      a.id.localeCompare(b.id),
  );
  return { nodeId: fit[0]!.id };
}
