/**
 * The managers' data-path key manager (encrypted overlays), as swarmkit's:
 * managers write `swarm/encryption-rotation` (workers only read it): a
 * generation number, when it was bumped, and a key ring of at most three
 * random 128-bit keys, each with a tag (the generation that made it). Every
 * node watches it. Managers bump it on a schedule (Docker rotates every
 * 12 hours), on `swarm update` and when a node is removed.
 *
 * Make-before-break, as libnetwork: the PRIMARY key (the one nodes send
 * with) is the second newest, so a new key reaches every node (and is
 * installed there for receiving) one whole rotation before anyone sends with
 * it; the oldest is dropped when a fourth comes. A ring with one key uses it.
 * The ESP transport installs every key of the ring for receiving and the
 * primary for sending (esp-plan.ts); the wireguard-go transport derives each
 * peer pair's PresharedKey from the primary (wireguard.ts).
 */
import { randomBytes } from 'node:crypto';
import { CasError, type Store } from '../store/store.js';

export const ROTATION_KEY = 'swarm/encryption-rotation';
/** Docker's data-path key rotation interval. */
export const DEFAULT_ROTATION_MS = 12 * 3600_000;

/** Keys kept in the ring (swarmkit's keyringSize). */
export const KEYRING_SIZE = 3;

export interface DataPathKey {
  /** The generation that made it (Docker's Lamport time tag). */
  tag: number;
  /** 16 random bytes, base64 (AES-128-GCM for ESP; HKDF input for WireGuard). */
  key: string;
}

export interface RotationRecord {
  generation: number;
  /** ms since the epoch of the last bump. */
  at: number;
  reason: string;
  /** Oldest first. */
  keys: DataPathKey[];
}

function parseKeys(v: unknown): DataPathKey[] {
  if (!Array.isArray(v)) return [];
  const out: DataPathKey[] = [];
  for (const k of v as Array<Partial<DataPathKey>>) {
    if (
      k &&
      Number.isInteger(k.tag) &&
      (k.tag as number) >= 0 &&
      typeof k.key === 'string' &&
      Buffer.from(k.key, 'base64').length === 16
    ) {
      out.push({ tag: k.tag as number, key: k.key });
    }
  }
  return out.sort((a, b) => a.tag - b.tag);
}

export function parseRotation(value: string | undefined): RotationRecord {
  if (!value) return { generation: 0, at: 0, reason: 'none', keys: [] };
  try {
    const r = JSON.parse(value) as Partial<RotationRecord>;
    return {
      generation: Number(r.generation) || 0,
      at: Number(r.at) || 0,
      reason: String(r.reason ?? ''),
      keys: parseKeys(r.keys),
    };
  } catch {
    return { generation: 0, at: 0, reason: 'unreadable', keys: [] };
  }
}

/** The key nodes send with: the second newest (the newest is only received with until the next rotation). */
export function primaryKey(keys: DataPathKey[]): DataPathKey | undefined {
  return keys.length >= 2 ? keys[keys.length - 2] : keys[0];
}

/** The ring after one rotation: a new key appended, the oldest dropped beyond KEYRING_SIZE. */
export function rotateKeyring(keys: DataPathKey[], tag: number, fresh: Buffer = randomBytes(16)): DataPathKey[] {
  return [...keys, { tag, key: fresh.toString('base64') }].slice(-KEYRING_SIZE);
}

/**
 * Bumps the generation (compare-and-swap, retried on a race with another
 * manager). With `ifOlderThanMs`, only when the last bump is that old (the
 * schedule: several managers check, one bumps). Returns the generation now in force.
 */
export async function requestKeyRotation(
  store: Store,
  reason: string,
  opts: { ifOlderThanMs?: number; now?: number } = {},
): Promise<number> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const kv = await store.get(ROTATION_KEY);
    const cur = parseRotation(kv?.value);
    const now = opts.now ?? Date.now();
    if (!kv && opts.ifOlderThanMs !== undefined) {
      // The first check starts the clock: no rotation right after swarm init.
      try {
        const first: RotationRecord = { generation: 0, at: now, reason: 'start', keys: rotateKeyring([], 0) };
        await store.put(ROTATION_KEY, JSON.stringify(first), 0);
      } catch {
        /* another manager did */
      }
      return 0;
    }
    // A record from before the key ring (no keys) gets one at the next check.
    if (opts.ifOlderThanMs !== undefined && now - cur.at < opts.ifOlderThanMs && cur.keys.length > 0)
      return cur.generation;
    const generation = cur.generation + 1;
    const next: RotationRecord = { generation, at: now, reason, keys: rotateKeyring(cur.keys, generation) };
    try {
      await store.put(ROTATION_KEY, JSON.stringify(next), kv ? kv.revision : 0);
      return next.generation;
    } catch (e) {
      if (!(e instanceof CasError)) throw e;
    }
  }
  throw new Error('key rotation: too many concurrent updates');
}
