/**
 * WireGuard tunnel addresses (100.64.0.0/10), unique per swarm by
 * construction: a node CLAIMS its address in the cluster store under its own
 * node ID, `tunnels/wireguard/<node id>/<address>`, in one transaction that
 * creates that key only if no other node in nodes/ has a key for the address
 * and no node joined since that list was read (src/cluster/node-claims.ts,
 * as swarm network addresses: src/network/ipam/claims.ts). So two nodes can
 * never hold the same one, whatever their IDs hash to, and a worker writes
 * only under its own ID (src/swarm/controller.ts workerGrants): it can
 * neither overwrite nor delete another node's claim. The first candidate is
 * derived from the node ID (22 bits of SHA-256, so addresses are stable and
 * usually the first try wins); on a clash the next addresses are tried in
 * order. A claim whose holder is no longer a swarm member (`nodes/<id>`
 * gone) counts for nothing (node rm also deletes it). A node keeps its claim
 * for as long as it is a member (its peers know it by its record at
 * `node-local/<id>/wireguard`).
 */
import { createHash } from 'node:crypto';
import { CasError, type Store } from '../../../store/store.js';
import { createIfNoneOf, readRoster, rosterGuard } from '../../../cluster/node-claims.js';

export const TUNNEL_CLAIMS = 'tunnels/wireguard/';
const TUNNEL_BASE = (100 << 24) | (64 << 16); // 100.64.0.0/10
const HOST_BITS = 0x3fffff;
/** How many addresses a node tries before giving up (a swarm of millions would be needed to run out). */
const MAX_TRIES = 256;
/** Transactions a claim may lose (to other nodes, or to node records changing) before it gives up. */
const MAX_ATTEMPTS = 100;

/** Where a node's tunnel address claims are: the only part of tunnels/wireguard/ it may write. */
export const tunnelClaimPrefix = (nodeId: string): string => `${TUNNEL_CLAIMS}${nodeId}/`;

function toAddress(n: number): string {
  const v = (TUNNEL_BASE | n) >>> 0;
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
}

/** The addresses a node tries, in order: its hashed one first, then the next ones (never .0.0 or the broadcast). */
export function tunnelCandidates(nodeId: string, count = MAX_TRIES): string[] {
  const h = createHash('sha256').update(nodeId).digest();
  let n = h.readUInt32BE(0) & HOST_BITS;
  const out: string[] = [];
  while (out.length < count) {
    if (n !== 0 && n !== HOST_BITS) out.push(toAddress(n));
    n = (n + 1) & HOST_BITS;
  }
  return out;
}

/**
 * Claims a tunnel address for `nodeId`: `hint` (the address its published
 * record has) if that claim is still its own, else its own claim among the
 * candidates, else the first candidate no other member holds. Its other
 * claims (left by an earlier run) are released.
 */
export async function claimTunnelAddress(
  store: Store,
  nodeId: string,
  opts: { hint?: string | undefined; candidates?: string[] } = {},
): Promise<string> {
  const candidates = opts.candidates ?? tunnelCandidates(nodeId);
  for (let attempt = 0; ; attempt++) {
    const roster = await readRoster(store, nodeId);
    const members = new Set(roster.ids);
    /** This node's claims: address -> revision. */
    const mine = new Map<string, number>();
    /** Addresses other members hold (a non-member's claim is free). */
    const held = new Set<string>();
    for (const kv of await store.list(TUNNEL_CLAIMS)) {
      const [holder, addr] = kv.key.slice(TUNNEL_CLAIMS.length).split('/');
      if (!holder || !addr) continue;
      if (holder === nodeId) mine.set(addr, kv.revision);
      else if (members.has(holder)) held.add(addr);
    }
    // Already ours (a restart, a second network)? Keep it: peers know it. (Held by another member too only if
    // this node's claim was made while that one was not a member: not ours to keep then.)
    const kept = [opts.hint, ...candidates, ...mine.keys()].find((a) => a !== undefined && mine.has(a) && !held.has(a));
    if (kept !== undefined) {
      await releaseOthers(store, nodeId, mine, kept);
      return kept;
    }
    const addr = candidates.find((a) => !held.has(a));
    if (addr === undefined)
      throw new Error(`no free WireGuard tunnel address among ${candidates.length} candidates in 100.64.0.0/10`);
    const others = roster.ids.map((id) => tunnelClaimPrefix(id) + addr);
    try {
      await store.txn([rosterGuard(roster), ...createIfNoneOf(tunnelClaimPrefix(nodeId) + addr, nodeId, others)]);
    } catch (e) {
      // Another node won this address, a node joined, or a concurrent call here claimed it: read again.
      if (!(e instanceof CasError) || attempt >= MAX_ATTEMPTS) throw e;
      continue;
    }
    await releaseOthers(store, nodeId, mine, addr);
    return addr;
  }
}

/** Deletes this node's claims (as last read) other than `keep`: an earlier run's, or one another member holds too. */
async function releaseOthers(store: Store, nodeId: string, mine: Map<string, number>, keep: string): Promise<void> {
  for (const [addr, revision] of mine)
    if (addr !== keep)
      await store.delete(tunnelClaimPrefix(nodeId) + addr, revision).catch((e: unknown) => {
        if (!(e instanceof CasError)) throw e;
      });
}
