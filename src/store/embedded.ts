import { openSync, closeSync, writeSync, fdatasyncSync, fsyncSync, readFileSync, renameSync, existsSync, mkdirSync, ftruncateSync, fdatasync, chmodSync, fchmodSync } from 'node:fs';
import { join } from 'node:path';
import { CasError, type KV, type Store, type TxnOp, type WatchEvent } from './store.js';

interface Snapshot {
  revision: number;
  kvs: KV[];
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
 */
export class EmbeddedStore implements Store {
  private readonly kvs = new Map<string, KV>();
  private revision = 0;
  private logFd: number;
  private logLines = 0;
  private readonly watchers = new Set<{ prefix: string; onEvent: (ev: WatchEvent) => void }>();
  private readonly snapshotPath: string;
  private readonly logPath: string;

  private syncPending = false;

  constructor(dir: string, private readonly compactAfter = 2000, private readonly syncEachWrite = false) {
    // Records hold secrets (a container's -e DB_PASSWORD=...): only root may read them, like Docker's 0600 configs.
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    this.snapshotPath = join(dir, 'store.snapshot.json');
    this.logPath = join(dir, 'store.log');
    if (existsSync(this.snapshotPath)) chmodSync(this.snapshotPath, 0o600);
    this.load();
    this.logFd = openSync(this.logPath, 'a', 0o600);
    fchmodSync(this.logFd, 0o600);
  }

  private load(): void {
    if (existsSync(this.snapshotPath)) {
      const snap = JSON.parse(readFileSync(this.snapshotPath, 'utf8')) as Snapshot;
      this.revision = snap.revision;
      for (const kv of snap.kvs) this.kvs.set(kv.key, kv);
    }
    if (existsSync(this.logPath)) {
      const lines = readFileSync(this.logPath, 'utf8').split('\n');
      for (const line of lines) {
        if (!line) continue;
        let rec: { rev: number; ops: Array<{ key: string; value: string | null }> };
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

  private applyOps(rev: number, ops: Array<{ key: string; value: string | null }>, notify: boolean): void {
    this.revision = rev;
    for (const op of ops) {
      if (op.value === null) {
        const old = this.kvs.get(op.key);
        this.kvs.delete(op.key);
        if (notify && old) this.emit({ type: 'delete', kv: { ...old, revision: rev } });
      } else {
        const kv = { key: op.key, value: op.value, revision: rev };
        this.kvs.set(op.key, kv);
        if (notify) this.emit({ type: 'put', kv });
      }
    }
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

  private commit(ops: Array<{ key: string; value: string | null }>): number {
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
    const snap: Snapshot = { revision: this.revision, kvs: [...this.kvs.values()] };
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
    for (const kv of this.kvs.values()) if (kv.key.startsWith(prefix)) out.push(kv);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
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
    for (const op of ops) this.check(op.key, op.expectRevision);
    const writes = ops.filter((op) => op.value !== undefined).map((op) => ({ key: op.key, value: op.value as string | null }));
    if (writes.length === 0) return this.revision;
    return this.commit(writes);
  }

  watch(prefix: string, onEvent: (ev: WatchEvent) => void): () => void {
    const w = { prefix, onEvent };
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }

  async close(): Promise<void> {
    fdatasyncSync(this.logFd);
    closeSync(this.logFd);
  }
}
