/**
 * Rotation of the nodes' data-path encryption keys (encrypted overlays).
 * Managers write `swarm/encryption-rotation` (workers only read it): a
 * generation number and when it was bumped. Every node watches it and makes a
 * new key pair when the generation passes its own key's (see
 * src/network/drivers/overlay/wireguard.ts). Managers bump it on a schedule
 * (Docker rotates every 12 hours), on `swarm update` and when a node is removed.
 */
import { CasError, type Store } from '../store/store.js';

export const ROTATION_KEY = 'swarm/encryption-rotation';
/** Docker's data-path key rotation interval. */
export const DEFAULT_ROTATION_MS = 12 * 3600_000;

export interface RotationRecord {
  generation: number;
  /** ms since the epoch of the last bump. */
  at: number;
  reason: string;
}

export function parseRotation(value: string | undefined): RotationRecord {
  if (!value) return { generation: 0, at: 0, reason: 'none' };
  try {
    const r = JSON.parse(value) as Partial<RotationRecord>;
    return { generation: Number(r.generation) || 0, at: Number(r.at) || 0, reason: String(r.reason ?? '') };
  } catch {
    return { generation: 0, at: 0, reason: 'unreadable' };
  }
}

/**
 * Bumps the generation (compare-and-swap, retried on a race with another
 * manager). With `ifOlderThanMs`, only when the last bump is that old (the
 * schedule: several managers check, one bumps). Returns the generation now in force.
 */
export async function requestKeyRotation(store: Store, reason: string, opts: { ifOlderThanMs?: number; now?: number } = {}): Promise<number> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const kv = await store.get(ROTATION_KEY);
    const cur = parseRotation(kv?.value);
    const now = opts.now ?? Date.now();
    if (!kv && opts.ifOlderThanMs !== undefined) {
      // The first check starts the clock: no rotation right after swarm init.
      try {
        await store.put(ROTATION_KEY, JSON.stringify({ generation: 0, at: now, reason: 'start' }), 0);
      } catch {
        /* another manager did */
      }
      return 0;
    }
    if (opts.ifOlderThanMs !== undefined && now - cur.at < opts.ifOlderThanMs) return cur.generation;
    const next: RotationRecord = { generation: cur.generation + 1, at: now, reason };
    try {
      await store.put(ROTATION_KEY, JSON.stringify(next), kv ? kv.revision : 0);
      return next.generation;
    } catch (e) {
      if (!(e instanceof CasError)) throw e;
    }
  }
  throw new Error('key rotation: too many concurrent updates');
}
