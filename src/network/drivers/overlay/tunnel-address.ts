/**
 * WireGuard tunnel addresses (100.64.0.0/10), unique per swarm by
 * construction: a node CLAIMS its address in the cluster store with a
 * create-only compare-and-swap on `tunnels/wireguard/<address>` (a shared
 * record workers may write: src/swarm/controller.ts workerGrants), so two
 * nodes can never hold the same one, whatever their IDs hash to. The first
 * candidate is derived from the node ID (22 bits of SHA-256, so addresses are
 * stable and usually the first try wins); on a clash the next addresses are
 * tried in order. A claim held by a node that is no longer a swarm member
 * (`nodes/<id>` gone) is taken over, again by compare-and-swap on its revision.
 * A node keeps its claim for as long as it is a member (its peers know it by
 * its record at `node-local/<id>/wireguard`).
 */
import { createHash } from 'node:crypto';
import { CasError, type Store } from '../../../store/store.js';

export const TUNNEL_CLAIMS = 'tunnels/wireguard/';
const TUNNEL_BASE = (100 << 24) | (64 << 16); // 100.64.0.0/10
const HOST_BITS = 0x3fffff;
/** How many addresses a node tries before giving up (a swarm of millions would be needed to run out). */
const MAX_TRIES = 256;

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
 * record has) if that claim is still its own, else the first candidate that
 * is its own, free or orphaned. `isMember(id)` says whether a claim's holder
 * is still in the swarm.
 */
export async function claimTunnelAddress(
  store: Store,
  nodeId: string,
  isMember: (id: string) => Promise<boolean>,
  opts: { hint?: string | undefined; candidates?: string[] } = {},
): Promise<string> {
  // Already ours (a restart, a second network)? Keep it: peers know it.
  if (opts.hint && (await store.get(TUNNEL_CLAIMS + opts.hint))?.value === nodeId) return opts.hint;
  const candidates = opts.candidates ?? tunnelCandidates(nodeId);
  for (const addr of candidates) {
    const key = TUNNEL_CLAIMS + addr;
    const kv = await store.get(key);
    if (kv?.value === nodeId) return addr;
    if (kv && (await isMember(kv.value))) continue;
    try {
      await store.put(key, nodeId, kv ? kv.revision : 0);
      return addr;
    } catch (e) {
      if (!(e instanceof CasError)) throw e;
      // Another node won this address in the meantime: re-read it (it may be us, from a concurrent call) or go on.
      const now = await store.get(key);
      if (now?.value === nodeId) return addr;
    }
  }
  throw new Error(`no free WireGuard tunnel address among ${candidates.length} candidates in 100.64.0.0/10`);
}
