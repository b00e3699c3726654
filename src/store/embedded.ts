import {
  openSync,
  closeSync,
  writeSync,
  fdatasyncSync,
  fsyncSync,
  readFileSync,
  renameSync,
  existsSync,
  mkdirSync,
  ftruncateSync,
  fdatasync,
  chmodSync,
  fchmodSync,
} from 'node:fs';
import { join } from 'node:path';
import { CasError, type KV, type Lease, type Store, type TxnOp, type WatchEvent } from './store.js';

interface Snapshot {
  revision: number;
  kvs: KV[];
  /** Keys bound to a lease (key -> lease id), so a restart knows which keys died with their holder. */
  leased?: Record<string, string>;
}

/** One change as the log has it; `lease` binds the key to a lease of this process. */
interface LogOp {
  key: string;
  value: string | null;
  lease?: string;
}

/**
 * The single-host store: every key in memory, made durable by an append-only
 * log (one JSON line per transaction, fdatasync'd) and a snapshot that the log
 * is folded into when it grows. A crash loses nothing acknowledged: a torn last
 * line is ignored at open, since its caller was never answered.
 *
 * Writes are synchronous on purpose: the whole daemon is one process with one
 * writer, so a synchronous append keeps transactions strictly ordered without
 * locks.
 *
 * Durability: a change is acknowledged once write(2) has put it in the
 * kernel, which is enough to survive any crash or kill -9 of the daemon (the
 * failure that matters: containers outlive it). The fdatasync that also
 * covers a machine crash runs in the background, one for all the changes of a
 * burst, because one per change cost ~10 ms of a container start here. A
 * machine crash takes every container with it anyway, and the daemon
 * reconciles at start. `syncEachWrite` restores the strict mode.
 *
 * Leases: the holder is this process, so a lease is renewed simply by being
 * held; `release()` lets its keys expire after the TTL, `revoke()` deletes
 * them now. A lease does not outlive the process that granted it (etcd's
 * would outlive its holder by at most the TTL): keys still bound to one when
 * the store opens are deleted then, as their holder is gone.
 */
export class EmbeddedStore implements Store {
  private readonly kvs = new Map<string, KV>();
  /**
   * Every key of `kvs`, sorted: `list(prefix)` is a binary search and a range
   * instead of a scan of every key (the store holds every container, endpoint,
   * sandbox and address claim: a scan per list made each container's start and
   * rm grow with the number of containers). Built lazily after a change that
   * added or removed keys (`sortedDirty`), then kept by binary insert/delete.
   */
  private sorted: string[] = [];
  private sortedDirty = true;
  private revision = 0;
  private logFd: number;
  private logLines = 0;
  private readonly watchers = new Set<{ prefix: string; onEvent: (ev: WatchEvent) => void }>();
  private readonly snapshotPath: string;
  private readonly logPath: string;

  private syncPending = false;
  /** key -> id of the lease it is bound to (only keys put through a Lease). */
  private readonly leased = new Map<string, string>();
  private readonly leases = new Map<string, EmbeddedLease>();
  private leaseSeq = 0;

  constructor(
    dir: string,
    private readonly compactAfter = 2000,
    private readonly syncEachWrite = false,
  ) {
    // Records hold secrets (a container's -e DB_PASSWORD=...): only root may read them, like Docker's 0600 configs.
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    this.snapshotPath = join(dir, 'store.snapshot.json');
    this.logPath = join(dir, 'store.log');
    if (existsSync(this.snapshotPath)) chmodSync(this.snapshotPath, 0o600);
    this.load();
    this.logFd = openSync(this.logPath, 'a', 0o600);
    fchmodSync(this.logFd, 0o600);
    // Leases died with the process that held them.
    const orphans = [...this.leased.keys()].filter((k) => this.kvs.has(k));
    this.leased.clear();
    if (orphans.length) this.commit(orphans.map((key) => ({ key, value: null })));
  }

  private load(): void {
    if (existsSync(this.snapshotPath)) {
      const snap = JSON.parse(readFileSync(this.snapshotPath, 'utf8')) as Snapshot;
      this.revision = snap.revision;
      for (const kv of snap.kvs) this.kvs.set(kv.key, kv);
      for (const [k, id] of Object.entries(snap.leased ?? {})) this.leased.set(k, id);
    }
    if (existsSync(this.logPath)) {
      const lines = readFileSync(this.logPath, 'utf8').split('\n');
      for (const line of lines) {
        if (!line) continue;
        let rec: { rev: number; ops: LogOp[] };
        try {
          rec = JSON.parse(line);
        } catch {
          break; // torn write at crash: never acknowledged
        }
        if (rec.rev <= this.revision) continue; // already in the snapshot
        this.applyOps(rec.rev, rec.ops, false);
        this.logLines++;
      }
    }
  }

  private applyOps(rev: number, ops: LogOp[], notify: boolean): void {
    this.revision = rev;
    for (const op of ops) {
      // etcd's rule: every put sets the key's lease (none unless given); a delete ends it.
      const was = this.leased.get(op.key);
      if (was !== undefined && was !== op.lease) this.leased.delete(op.key);
      if (op.lease !== undefined && op.value !== null) this.leased.set(op.key, op.lease);
      if (op.value === null) {
        const old = this.kvs.get(op.key);
        this.kvs.delete(op.key);
        if (old) this.unindex(op.key);
        if (notify && old) this.emit({ type: 'delete', kv: { ...old, revision: rev } });
      } else {
        const kv = { key: op.key, value: op.value, revision: rev };
        if (!this.kvs.has(op.key)) this.index(op.key);
        this.kvs.set(op.key, kv);
        if (notify) this.emit({ type: 'put', kv });
      }
    }
  }

  /** First position in `sorted` whose key is >= `key`. */
  private lowerBound(key: string): number {
    const a = this.sortedKeys();
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (a[mid]! < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private sortedKeys(): string[] {
    if (this.sortedDirty) {
      this.sorted = [...this.kvs.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      this.sortedDirty = false;
    }
    return this.sorted;
  }

  private index(key: string): void {
    if (this.sortedDirty) return;
    this.sorted.splice(this.lowerBound(key), 0, key);
  }

  private unindex(key: string): void {
    if (this.sortedDirty) return;
    const i = this.lowerBound(key);
    if (this.sorted[i] === key) this.sorted.splice(i, 1);
    else this.sortedDirty = true; // cannot happen; rebuild rather than trust it
  }

  /** The keys under `prefix`, in order (a range of the sorted index). */
  private *keysUnder(prefix: string): Generator<string> {
    const a = this.sortedKeys();
    for (let i = this.lowerBound(prefix); i < a.length && a[i]!.startsWith(prefix); i++) yield a[i]!;
  }

  private emit(ev: WatchEvent): void {
    for (const w of this.watchers) {
      if (ev.kv.key.startsWith(w.prefix)) {
        try {
          w.onEvent(ev);
        } catch {
          /* a watcher's failure is its own */
        }
      }
    }
  }

  private commit(ops: LogOp[]): number {
    const rev = this.revision + 1;
    const line = JSON.stringify({ rev, ops }) + '\n';
    writeSync(this.logFd, line);
    if (this.syncEachWrite) fdatasyncSync(this.logFd);
    else this.scheduleSync();
    this.logLines++;
    this.applyOps(rev, ops, true);
    if (this.logLines >= this.compactAfter) this.compact();
    return rev;
  }

  /** One background fdatasync for every change made before it starts. */
  private scheduleSync(): void {
    if (this.syncPending) return;
    this.syncPending = true;
    setImmediate(() => {
      const fd = this.logFd;
      fdatasync(fd, () => {
        this.syncPending = false;
      });
    });
  }

  /** Folds the log into a new snapshot (write temp, fsync, rename), then empties the log. */
  compact(): void {
    const tmp = `${this.snapshotPath}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    const snap: Snapshot = {
      revision: this.revision,
      kvs: [...this.kvs.values()],
      leased: Object.fromEntries(this.leased),
    };
    writeSync(fd, JSON.stringify(snap));
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, this.snapshotPath);
    ftruncateSync(this.logFd, 0);
    fsyncSync(this.logFd);
    this.logLines = 0;
  }

  private check(key: string, expectRevision: number | undefined): void {
    if (expectRevision === undefined) return;
    const actual = this.kvs.get(key)?.revision ?? 0;
    if (actual !== expectRevision) throw new CasError(key, expectRevision, actual);
  }

  async get(key: string): Promise<KV | undefined> {
    return this.kvs.get(key);
  }

  async list(prefix: string): Promise<KV[]> {
    const out: KV[] = [];
    for (const k of this.keysUnder(prefix)) out.push(this.kvs.get(k)!);
    return out;
  }

  async put(key: string, value: string, expectRevision?: number): Promise<number> {
    this.check(key, expectRevision);
    return this.commit([{ key, value }]);
  }

  async delete(key: string, expectRevision?: number): Promise<boolean> {
    this.check(key, expectRevision);
    if (!this.kvs.has(key)) return false;
    this.commit([{ key, value: null }]);
    return true;
  }

  async txn(ops: TxnOp[]): Promise<number> {
    for (const op of ops) {
      if (op.prefixUnchangedAfter === undefined) {
        this.check(op.key, op.expectRevision);
        continue;
      }
      let newest = 0;
      for (const k of this.keysUnder(op.key)) newest = Math.max(newest, this.kvs.get(k)!.revision);
      if (newest > op.prefixUnchangedAfter) throw new CasError(op.key, op.prefixUnchangedAfter, newest);
    }
    const writes = ops
      .filter((op) => op.value !== undefined && op.prefixUnchangedAfter === undefined)
      .map((op) => ({ key: op.key, value: op.value as string | null }));
    if (writes.length === 0) return this.revision;
    return this.commit(writes);
  }

  watch(prefix: string, onEvent: (ev: WatchEvent) => void): () => void {
    const w = { prefix, onEvent };
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }

  lease(ttlSeconds: number): Lease {
    const id = `${process.pid}-${++this.leaseSeq}`;
    const l = new EmbeddedLease(this, id, Math.max(1, Math.round(ttlSeconds)) * 1000);
    this.leases.set(id, l);
    return l;
  }

  /** A put bound to a lease (EmbeddedLease.put). */
  putLeased(key: string, value: string, leaseId: string): number {
    return this.commit([{ key, value, lease: leaseId }]);
  }

  /** Deletes every key still bound to the lease, in one revision (expiry, revoke). */
  dropLease(leaseId: string): void {
    this.leases.delete(leaseId);
    const keys = [...this.leased].filter(([k, id]) => id === leaseId && this.kvs.has(k)).map(([k]) => k);
    if (this.closed) return;
    if (keys.length) this.commit(keys.map((key) => ({ key, value: null })));
  }

  private closed = false;

  async close(): Promise<void> {
    this.closed = true;
    for (const l of [...this.leases.values()]) l.stopTimers();
    fdatasyncSync(this.logFd);
    closeSync(this.logFd);
  }
}

/** A lease of the embedded store: held means alive (the holder is this process). */
class EmbeddedLease implements Lease {
  private expiry: NodeJS.Timeout | undefined;
  private done = false;

  constructor(
    private readonly store: EmbeddedStore,
    private readonly id: string,
    private readonly ttlMs: number,
  ) {}

  async put(key: string, value: string): Promise<number> {
    if (this.done) throw new Error(`lease ${this.id} has ended`);
    return this.store.putLeased(key, value, this.id);
  }

  async revoke(): Promise<void> {
    if (this.done) return;
    this.stopTimers();
    this.done = true;
    this.store.dropLease(this.id);
  }

  release(): void {
    if (this.done || this.expiry) return;
    // Nobody renews it any more: the keys go after the TTL, as etcd would do.
    this.expiry = setTimeout(() => {
      this.expiry = undefined;
      this.done = true;
      this.store.dropLease(this.id);
    }, this.ttlMs);
    this.expiry.unref?.();
  }

  onLost(_cb: () => void): void {
    // Held in this process, renewed by being held: it cannot expire while held.
  }

  stopTimers(): void {
    if (this.expiry) clearTimeout(this.expiry);
    this.expiry = undefined;
  }
}
