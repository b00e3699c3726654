/**
 * The one store interface behind all persistent state (as libnetwork's
 * datastore): keys, values, revisions, compare-and-swap, watch, leases.
 * Two implementations: EmbeddedStore (one host, a file under the data root)
 * and EtcdStore (a cluster). Networks of local and swarm scope go through the
 * same code; only the store instance differs (see scopes.ts for which
 * records live in which).
 */
export interface KV {
  key: string;
  value: string;
  /** Revision of the last change to this key (etcd's mod_revision). */
  revision: number;
}

export interface WatchEvent {
  type: 'put' | 'delete';
  kv: KV;
}

/** One operation of an atomic transaction. */
export interface TxnOp {
  key: string;
  /** undefined: no check; 0: key must not exist; n: key's revision must be n. */
  expectRevision?: number;
  /** A value puts the key; null deletes it; undefined only checks. */
  value?: string | null;
  /**
   * A check on a whole prefix instead (`key` is the prefix, no value): no key
   * under it was created or changed after this revision. A CasError names the
   * prefix and the newest revision found under it. (A membership guard: "no
   * node joined since I listed them".)
   */
  prefixUnchangedAfter?: number;
}

export class CasError extends Error {
  constructor(
    readonly key: string,
    readonly expected: number | undefined,
    readonly actual: number,
  ) {
    super(`compare-and-swap failed on ${key}: expected revision ${expected}, found ${actual}`);
    this.name = 'CasError'; // callers across the store boundary (swarm update) recognise it by name
  }
}

/**
 * A time-to-live grant (etcd's lease): keys put with it live as long as its
 * holder keeps it. The holder renews it on its own while it runs; when the
 * holder stops (crash, partition, `release()`), the keys are deleted once
 * the TTL has passed without a renewal reaching the store, and watchers see
 * the deletes. Node liveness is such a key (src/swarm: alive/<node id>).
 */
export interface Lease {
  /** Puts a key bound to this lease (a later put without the lease unbinds it). Returns the new revision. */
  put(key: string, value: string): Promise<number>;
  /** Deletes the lease's keys now and stops renewing. */
  revoke(): Promise<void>;
  /** Stops renewing without deleting anything: the keys go when the TTL runs out. */
  release(): void;
  /** Called once if the lease expired while still held (renewals did not reach the store in time). */
  onLost(cb: () => void): void;
}

export interface Store {
  get(key: string): Promise<KV | undefined>;
  /** All keys under a prefix, sorted by key. */
  list(prefix: string): Promise<KV[]>;
  /** Puts a value; with expectRevision, fails with CasError unless it matches. Returns the new revision. */
  put(key: string, value: string, expectRevision?: number): Promise<number>;
  /** Deletes a key; returns false if it did not exist. */
  delete(key: string, expectRevision?: number): Promise<boolean>;
  /** All-or-nothing: either every check passes and every write applies, or CasError. */
  txn(ops: TxnOp[]): Promise<number>;
  /** Calls back on each change under the prefix; returns a function that stops watching. */
  watch(prefix: string, onEvent: (ev: WatchEvent) => void): () => void;
  /** A lease of `ttlSeconds` (whole seconds, at least 1; etcd may grant more), renewed while held. */
  lease(ttlSeconds: number): Lease;
  close(): Promise<void>;
}

/** Typed JSON objects over a Store, one key per object under a prefix. */
export class Collection<T> {
  constructor(
    readonly store: Store,
    readonly prefix: string,
  ) {}

  key(id: string): string {
    return `${this.prefix}/${id}`;
  }

  async get(id: string): Promise<{ value: T; revision: number } | undefined> {
    const kv = await this.store.get(this.key(id));
    return kv ? { value: JSON.parse(kv.value) as T, revision: kv.revision } : undefined;
  }

  async list(): Promise<Array<{ id: string; value: T; revision: number }>> {
    const kvs = await this.store.list(`${this.prefix}/`);
    return kvs.map((kv) => ({
      id: kv.key.slice(this.prefix.length + 1),
      value: JSON.parse(kv.value) as T,
      revision: kv.revision,
    }));
  }

  /**
   * Parsed values by the stored KV they came from. The embedded store hands out
   * the same KV object until the key changes, so a record is parsed once per
   * revision, not once per list; other stores' fresh KVs simply miss (weak keys).
   */
  private readonly parsed = new WeakMap<KV, T>();

  /**
   * Like list(), for read-only callers: the values are shared with later calls
   * (parsed once per revision) and must not be changed. The scans that run on
   * every container start or rm (name checks, DNS tables) use this, so that
   * their cost does not grow with a JSON.parse of every record.
   */
  async listShared(): Promise<Array<{ id: string; value: Readonly<T>; revision: number }>> {
    const kvs = await this.store.list(`${this.prefix}/`);
    const skip = this.prefix.length + 1;
    return kvs.map((kv) => {
      let value = this.parsed.get(kv);
      if (value === undefined) {
        value = JSON.parse(kv.value) as T;
        this.parsed.set(kv, value);
      }
      return { id: kv.key.slice(skip), value, revision: kv.revision };
    });
  }

  put(id: string, value: T, expectRevision?: number): Promise<number> {
    return this.store.put(this.key(id), JSON.stringify(value), expectRevision);
  }

  delete(id: string, expectRevision?: number): Promise<boolean> {
    return this.store.delete(this.key(id), expectRevision);
  }

  /** Read-modify-write with CAS, retried on conflict with jittered backoff. */
  async update(id: string, fn: (cur: T | undefined) => T | undefined, retries = 100): Promise<T | undefined> {
    for (let i = 0; ; i++) {
      const cur = await this.get(id);
      const next = fn(cur?.value);
      try {
        if (next === undefined) {
          if (cur) await this.delete(id, cur.revision);
        } else {
          await this.put(id, next, cur?.revision ?? 0);
        }
        return next;
      } catch (e) {
        if (!(e instanceof CasError) || i >= retries) throw e;
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(20, 2 ** i)));
      }
    }
  }
}
