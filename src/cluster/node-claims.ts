/**
 * Records that one swarm node at a time may hold (an address), kept so that
 * each node writes only keys under its own node ID: etcd's RBAC then stops a
 * worker from overwriting or deleting another node's claim.
 *
 * A claim is one transaction that creates the claimant's own key for the
 * thing claimed, on condition that every other claimant's key for it is
 * absent (one compare per node in nodes/) and that no node record is newer
 * than the node list those compares came from (a node admitted meanwhile
 * fails the transaction; the caller reads the list again). Keys of a node
 * that is no longer in nodes/ are in no compare: its claims are free.
 *
 * Users: swarm network addresses (src/network/ipam/claims.ts) and WireGuard
 * tunnel addresses (src/network/drivers/overlay/tunnel-address.ts).
 */
import type { Store, TxnOp } from '../store/store.js';

/** Where node records live (src/swarm): the claimants. */
export const NODES = 'nodes/';

/** The nodes that may hold claims and the newest revision among their records (the guard). */
export interface Roster {
  ids: string[];
  newest: number;
}

/** The node list now, with `self` in it even before its record is seen. */
export async function readRoster(store: Store, self: string): Promise<Roster> {
  const kvs = await store.list(NODES);
  const ids = new Set(kvs.map((kv) => kv.key.slice(NODES.length)));
  ids.add(self);
  return { ids: [...ids], newest: Math.max(0, ...kvs.map((kv) => kv.revision)) };
}

/** Fails the transaction (a CasError naming NODES) if a node record was created or changed since `roster` was read. */
export function rosterGuard(roster: Roster): TxnOp {
  return { key: NODES, prefixUnchangedAfter: roster.newest };
}

/** Creates `own` with `value` on condition that it and every key of `others` are absent. */
export function createIfNoneOf(own: string, value: string, others: Iterable<string>): TxnOp[] {
  const ops: TxnOp[] = [{ key: own, expectRevision: 0, value }];
  for (const k of others) if (k !== own) ops.push({ key: k, expectRevision: 0 });
  return ops;
}
