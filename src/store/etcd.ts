import { randomBytes } from 'node:crypto';
import {
  Etcd3,
  isRecoverableError,
  GRPCCancelledError,
  type IOptions,
  type IKeyValue,
  type ITxnRequest,
  type ITxnResponse,
  type IRequestOp,
  type ICompare,
  type Watcher,
  type IWatchResponse,
} from 'etcd3';
import {
  noop,
  circuitBreaker,
  handleWhen,
  ConsecutiveBreaker,
  ExponentialBackoff,
  isBrokenCircuitError,
  type IBackoff,
} from 'cockatiel';
import { Unavailable, InvalidParameter } from '../common/errors.js';
import { CasError, type KV, type Lease, type Store, type TxnOp, type WatchEvent } from './store.js';

export interface EtcdStoreOptions {
  /** Client URLs of the members: `http://10.0.0.1:2379`, `10.0.0.1:2379` or `unix:///run/etcd.sock:0`. */
  endpoints: string[];
  /** Namespaces every key (for example "/cove/"): the Store's keys are relative to it. */
  prefix?: string;
  /**
   * Deadline of one gRPC call to one member, connecting included. etcd3's own
   * `dialTimeout` option is declared but never read, so this is what bounds a
   * dial to a dead or silent member.
   */
  dialTimeoutMs?: number;
  /** Total time one Store operation may take, retries on other members included, before Unavailable. */
  requestTimeoutMs?: number;
  /** gRPC keepalive ping interval; etcd refuses pings more often than its --grpc-keepalive-min-time (5 s by default). */
  keepaliveMs?: number;
  /** Mutual TLS: the cluster CA and this node's certificate and key (PEM). etcd maps the cert's CN to its user. */
  tls?: { ca: Buffer | string; cert: Buffer | string; key: Buffer | string };
  /**
   * Puts this client's write marker (see EtcdStore) under `\0txn/<owner>/`,
   * so etcd's RBAC can give a node write access to its own markers only.
   */
  markerOwner?: string;
}

/** Keys under this relative prefix are the store's own bookkeeping; list and watch never show them. */
const RESERVED = '\u0000';

/** One key-level write after merging TxnOps: a value puts, null deletes. */
/** A compare of one write: a key's revision (0: absent), that it exists, or that nothing under a prefix is newer. */
interface Check {
  key: string;
  expectRevision?: number;
  mustExist?: boolean;
  prefixMax?: number;
}

interface Write {
  key: string;
  value: string | null;
  /** A put bound to this lease (etcd's lease ID). */
  lease?: string;
}

/** What one write attempt learnt: committed (at revision) or its compares failed (with what etcd read instead). */
type Outcome = { ok: true; revision: number } | { ok: false; actual: Map<string, number> };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The cluster store: the Store interface over etcd v3, so that networks of
 * swarm scope use the same code as local ones (EmbeddedStore).
 *
 * Revisions are etcd's mod_revision (cluster-wide, monotonic). Every write is
 * one etcd transaction: compares on mod_revision (0 = create_revision 0, the
 * key must not exist), the writes on success, and a read of the compared keys
 * on failure so CasError carries the revision actually found.
 *
 * Fault handling is ours, not etcd3's: its default retries any "recoverable"
 * error up to 3 times (txns included) and opens a per-member circuit breaker
 * that then fails even healthy reads instantly. Here every call has a gRPC
 * deadline, an operation retries over the members until requestTimeoutMs, and
 * then fails with Unavailable (503). A write whose reply was lost (a deadline
 * or a dropped connection: it may or may not have committed) is never blindly
 * redone: each write also stamps a per-client marker key with its own sequence
 * number in the same transaction, so after an ambiguous failure the marker's
 * history says whether it committed; compare-and-swap stays exactly-once
 * across a member or leader failure.
 */
export class EtcdStore implements Store {
  private readonly client: Etcd3;
  private readonly prefix: string;
  private readonly dialTimeoutMs: number;
  private readonly requestTimeoutMs: number;
  /** This client's marker key (absolute), and the sequence number of its writes. */
  private readonly markerKey: string;
  private seq = 0;
  /** Highest cluster revision seen in any reply: a lower bound for "now". */
  private revisionSeen = 0;
  private readonly watchers = new Set<WatchState>();
  /** Start points of watches being fixed; writes wait for them (see watch()). */
  private readonly watchStarts = new Set<Promise<void>>();
  private anchor?: Watcher;
  private closed = false;

  constructor(opts: EtcdStoreOptions) {
    if (!opts.endpoints?.length) throw new InvalidParameter('cluster store: no etcd endpoints given');
    this.prefix = opts.prefix ?? '';
    this.dialTimeoutMs = opts.dialTimeoutMs ?? 2000;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? Math.max(5000, this.dialTimeoutMs * 2);
    const keepalive = opts.keepaliveMs ?? 5000;
    this.markerKey = `${this.prefix}${RESERVED}txn/${opts.markerOwner ? `${opts.markerOwner}/` : ''}${randomBytes(8).toString('hex')}`;
    const dial = this.dialTimeoutMs;
    const options: IOptions = {
      hosts: opts.endpoints,
      // Unary calls get a deadline; streams (watch) rely on keepalive instead.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + dial }),
      grpcOptions: {
        'grpc.keepalive_time_ms': keepalive,
        'grpc.keepalive_timeout_ms': Math.min(keepalive, dial),
        // Reconnect to a restarted member quickly instead of backing off for up to 2 min.
        'grpc.max_reconnect_backoff_ms': 1000,
        'grpc.initial_reconnect_backoff_ms': 100,
      },
      // No retry inside etcd3 (ours knows which writes are safe to redo). A
      // member that just failed is skipped for a second, so a call goes to
      // another member instead of redialling a dead one (etcd3's default
      // skipped it for 5 s after 3 failures, and then refused reads on the
      // last healthy member after a quorum loss). Watches re-dial quickly.
      faultHandling: {
        // A cancelled call is the echo of a reset etcd3 made after another failure, not a new one.
        host: () =>
          circuitBreaker(
            handleWhen((e) => isRecoverableError(e) && !(e instanceof GRPCCancelledError)),
            { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(1) },
          ),
        global: noop,
        // etcd3 declares an IBackoff here but itself passes a factory (its default is `new ExponentialBackoff()`).
        watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2000 }) as unknown as IBackoff<unknown>,
      },
    };
    if (opts.tls) {
      options.credentials = {
        rootCertificate: Buffer.from(opts.tls.ca),
        certChain: Buffer.from(opts.tls.cert),
        privateKey: Buffer.from(opts.tls.key),
      };
    }
    this.client = new Etcd3(options);
  }

  /**
   * The underlying etcd3 client, for what the Store interface does not cover
   * (leases, cluster membership, maintenance, auth). Keys written through it
   * must carry `keyPrefix` themselves.
   */
  get raw(): Etcd3 {
    return this.client;
  }

  get keyPrefix(): string {
    return this.prefix;
  }

  // ---- reads -------------------------------------------------------------

  async get(key: string): Promise<KV | undefined> {
    const res = await this.call(`get ${key}`, () => this.client.kv.range({ key: Buffer.from(this.abs(key)) }));
    this.see(res.header.revision);
    const kv = res.kvs[0];
    return kv ? this.toKV(kv) : undefined;
  }

  async list(prefix: string): Promise<KV[]> {
    const res = await this.call(`list ${prefix}`, () =>
      this.client.kv.range({ ...this.range(prefix), sort_order: 'Ascend', sort_target: 'Key' }),
    );
    this.see(res.header.revision);
    return res.kvs.map((kv) => this.toKV(kv)).filter((kv) => !kv.key.startsWith(RESERVED));
  }

  // ---- writes ------------------------------------------------------------

  async put(key: string, value: string, expectRevision?: number): Promise<number> {
    const out = await this.write(`put ${key}`, [{ key, expectRevision }], [{ key, value }]);
    return out.revision;
  }

  async delete(key: string, expectRevision?: number): Promise<boolean> {
    if (expectRevision === 0) {
      // "Must not exist": nothing to delete if that holds.
      await this.write(`delete ${key}`, [{ key, expectRevision: 0 }], []);
      return false;
    }
    // Without a revision, still compare "exists" so that a retried delete
    // knows whether it was this call that removed the key.
    try {
      await this.write(
        `delete ${key}`,
        [{ key, expectRevision, mustExist: expectRevision === undefined }],
        [{ key, value: null }],
      );
      return true;
    } catch (e) {
      if (e instanceof CasError && expectRevision === undefined) return false;
      throw e;
    }
  }

  /**
   * txn(ops), plus puts bound to a lease (grantLease) in the same transaction:
   * a swarm admission writes the node record and its liveness key at once.
   */
  async txnWithLease(
    ops: TxnOp[],
    lease: { id: string; puts: Array<{ key: string; value: string }> },
  ): Promise<number> {
    const checks: Check[] = ops
      .filter((op) => op.expectRevision !== undefined)
      .map((op) => ({ key: op.key, expectRevision: op.expectRevision }));
    const writes: Write[] = ops
      .filter((op) => op.value !== undefined)
      .map((op) => ({ key: op.key, value: op.value ?? null }));
    for (const p of lease.puts) writes.push({ key: p.key, value: p.value, lease: lease.id });
    return (await this.write('txn', checks, writes)).revision;
  }

  /** A new lease of etcd's for keys another client will keep (see adoptLease); its ID. */
  async grantLease(ttlSeconds: number): Promise<string> {
    const res = await this.call('lease grant', () =>
      this.client.leaseClient.leaseGrant({ TTL: Math.max(1, Math.round(ttlSeconds)) }),
    );
    return res.ID;
  }

  async txn(ops: TxnOp[]): Promise<number> {
    const checks: Check[] = [];
    for (const op of ops) {
      if (op.prefixUnchangedAfter !== undefined) checks.push({ key: op.key, prefixMax: op.prefixUnchangedAfter });
      else if (op.expectRevision !== undefined) checks.push({ key: op.key, expectRevision: op.expectRevision });
    }
    // etcd refuses a txn that writes one key twice; the last write wins, as in EmbeddedStore.
    const writes = new Map<string, Write>();
    for (const op of ops)
      if (op.value !== undefined && op.prefixUnchangedAfter === undefined)
        writes.set(op.key, { key: op.key, value: op.value });
    if (writes.size === 0) {
      // Checks only: one read of all keys, no write, no new revision.
      const out = await this.write('txn', checks, []);
      return out.revision;
    }
    return (await this.write('txn', checks, [...writes.values()])).revision;
  }

  /**
   * One atomic write with its compares, retried over the members until
   * requestTimeoutMs. Returns the revision it committed at; throws CasError
   * when a compare fails, Unavailable when the cluster cannot be reached.
   */
  private async write(what: string, checks: Check[], writes: Write[]): Promise<{ revision: number }> {
    for (const w of writes)
      if (w.key.startsWith(RESERVED)) throw new InvalidParameter(`cluster store: keys starting with NUL are reserved`);
    const seq = ++this.seq;
    const compare: ICompare[] = [];
    for (const c of checks) {
      const key = Buffer.from(this.abs(c.key));
      if (c.prefixMax !== undefined)
        compare.push({
          ...this.range(c.key),
          target: 'Mod',
          result: 'Less',
          mod_revision: c.prefixMax + 1,
        });
      else if (c.mustExist) compare.push({ key, target: 'Create', result: 'Greater', create_revision: 0 });
      else if (c.expectRevision === 0) compare.push({ key, target: 'Create', result: 'Equal', create_revision: 0 });
      else if (c.expectRevision !== undefined)
        compare.push({ key, target: 'Mod', result: 'Equal', mod_revision: c.expectRevision });
    }
    const success: IRequestOp[] = writes.map((w) =>
      w.value === null
        ? { request_delete_range: { key: Buffer.from(this.abs(w.key)) } }
        : {
            request_put: {
              key: Buffer.from(this.abs(w.key)),
              value: Buffer.from(w.value),
              ...(w.lease ? { lease: w.lease } : {}),
            },
          },
    );
    const stamps = writes.length > 0;
    if (stamps) success.push({ request_put: { key: Buffer.from(this.markerKey), value: Buffer.from(String(seq)) } });
    const failure: IRequestOp[] = checks.map((c) => ({
      request_range:
        c.prefixMax !== undefined
          ? { ...this.range(c.key), sort_order: 'Descend', sort_target: 'Mod', limit: 1 } // the newest key under it
          : { key: Buffer.from(this.abs(c.key)) },
    }));
    const req: ITxnRequest = { compare, success, failure };

    // A watch created before this write must see it: let its start revision be fixed first.
    if (this.watchStarts.size > 0) await Promise.all(this.watchStarts);
    const lowerBound = this.revisionSeen;
    const deadline = Date.now() + this.requestTimeoutMs;
    let ambiguous = false;
    let lastError: unknown;
    for (let attempt = 0; ; attempt++) {
      this.assertOpen();
      try {
        const res = await this.client.kv.txn(req);
        const out = this.outcome(res, checks);
        if (out.ok) return { revision: out.revision };
        // A compare failed. If an earlier attempt's reply was lost, that attempt
        // may be what changed the key: ask the marker before calling it a conflict.
        if (ambiguous && stamps) {
          const at = await this.findStamp(seq, lowerBound);
          if (at !== undefined) return { revision: at };
        }
        const [key, actual] =
          [...out.actual].find(([k]) => {
            const c = checks.find((x) => x.key === k)!;
            const a = out.actual.get(k)!;
            if (c.prefixMax !== undefined) return a > c.prefixMax;
            return c.mustExist ? a === 0 : a !== c.expectRevision;
          }) ?? [...out.actual][0]!;
        const failed = checks.find((c) => c.key === key);
        throw new CasError(key, failed?.prefixMax ?? failed?.expectRevision, actual);
      } catch (e) {
        if (e instanceof CasError || !retriable(e)) throw this.mapError(what, e);
        lastError = e;
        if (stamps) ambiguous = true;
        if (ambiguous) {
          try {
            const at = await this.findStamp(seq, lowerBound);
            if (at !== undefined) return { revision: at };
          } catch (e2) {
            if (!retriable(e2)) throw this.mapError(what, e2);
            lastError = e2;
          }
        }
      }
      if (Date.now() + 50 >= deadline) break;
      await sleep(Math.min(50 * 2 ** attempt, 500, Math.max(0, deadline - Date.now())));
    }
    throw this.unavailable(what, lastError);
  }

  /** Reads a txn reply: the commit revision, or the revisions actually found for the compared keys. */
  private outcome(res: ITxnResponse, checks: Array<{ key: string }>): Outcome {
    this.see(res.header.revision);
    if (res.succeeded) return { ok: true, revision: Number(res.header.revision) };
    const actual = new Map<string, number>();
    checks.forEach((c, i) => {
      const kv = res.responses[i]?.response_range?.kvs?.[0];
      actual.set(c.key, kv ? Number(kv.mod_revision) : 0);
    });
    return { ok: false, actual };
  }

  /**
   * Did the write stamped `seq` commit? Walks this client's marker key back
   * through its versions (one per write of this client) down to `lowerBound`,
   * the last revision seen before the write was first sent.
   * Returns the revision it committed at, or undefined if it did not.
   */
  private async findStamp(seq: number, lowerBound: number): Promise<number | undefined> {
    const key = Buffer.from(this.markerKey);
    let at: number | undefined; // undefined: the current state (linearizable read)
    for (;;) {
      const res = await this.client.kv.range(at === undefined ? { key } : { key, revision: at });
      this.see(res.header.revision);
      const kv = res.kvs[0];
      if (!kv) return undefined;
      const rev = Number(kv.mod_revision);
      if (kv.value.toString() === String(seq)) return rev;
      // Concurrent writes of this client commit in any order, so a smaller
      // number on top proves nothing: walk down to the lower bound.
      if (rev <= lowerBound) return undefined;
      at = rev - 1;
    }
  }

  // ---- leases ------------------------------------------------------------

  /**
   * etcd's own lease: granted on the first put, kept alive by etcd3 (a
   * keepalive every TTL/3) until revoke() or release(); 'lost' when a
   * keepalive finds it expired (this node was cut off for longer than the
   * TTL). A lost lease's keys are gone; the holder grants a new one.
   */
  lease(ttlSeconds: number): Lease {
    this.assertOpen();
    const l = this.client.lease(Math.max(1, Math.round(ttlSeconds)), { autoKeepAlive: true });
    return {
      put: async (key, value) => {
        if (key.startsWith(RESERVED)) throw new InvalidParameter('cluster store: keys starting with NUL are reserved');
        // Not retried here: a lease whose grant failed stays failed; the holder grants a new one.
        let res;
        try {
          res = await l.put(this.abs(key)).value(value).exec();
        } catch (e) {
          throw this.mapError(`lease put ${key}`, e);
        }
        this.see(res.header.revision);
        return Number(res.header.revision);
      },
      revoke: async () => {
        await l.revoke().catch(() => undefined);
      },
      release: () => l.release(),
      onLost: (cb) => {
        l.on('lost', () => cb());
      },
    };
  }

  /**
   * Takes over a lease another client granted (a manager grants a joining
   * node's liveness lease and puts its key in the admission's own
   * transaction): from now on this client renews it, as lease() does its own
   * (a keepalive every TTL/3 on one stream, the stream re-opened after an
   * error). 'lost' when etcd says it expired or no renewal got through for
   * twice the TTL; its keys are gone then and the holder grants a new one.
   */
  adoptLease(id: string, ttlSeconds: number): Lease {
    this.assertOpen();
    const ttlMs = Math.max(1, Math.round(ttlSeconds)) * 1000;
    const leases = this.client.leaseClient;
    let state: 'alive' | 'stopped' | 'lost' = 'alive';
    let lastRenewal = Date.now();
    let lostCb: (() => void) | undefined;
    let teardown = (): void => undefined;
    const lose = () => {
      if (state !== 'alive') return;
      state = 'lost';
      teardown();
      lostCb?.();
    };
    const run = (): void => {
      if (state !== 'alive' || this.closed) return;
      if (Date.now() - lastRenewal > 2 * ttlMs) return lose();
      let done = false;
      const again = () => {
        if (done) return;
        done = true;
        teardown();
        if (state === 'alive') setTimeout(run, 100).unref?.();
      };
      leases.leaseKeepAlive().then((stream) => {
        if (state !== 'alive') return void stream.end();
        const fire = () => stream.write({ ID: id });
        const timer = setInterval(fire, ttlMs / 3);
        // No answer for a TTL: the stream is stuck; open another.
        let silent = setTimeout(again, ttlMs);
        teardown = () => {
          teardown = () => undefined;
          clearInterval(timer);
          clearTimeout(silent);
          stream.end();
        };
        stream.on('error', again);
        stream.on('data', (res: { TTL: string }) => {
          if (Number(res.TTL) <= 0) return lose();
          lastRenewal = Date.now();
          clearTimeout(silent);
          silent = setTimeout(again, ttlMs);
        });
        fire();
      }, again);
    };
    run();
    return {
      put: async (key, value) => {
        if (key.startsWith(RESERVED)) throw new InvalidParameter('cluster store: keys starting with NUL are reserved');
        let res;
        try {
          res = await this.client.put(this.abs(key)).value(value).lease(id).exec();
        } catch (e) {
          throw this.mapError(`lease put ${key}`, e);
        }
        this.see(res.header.revision);
        return Number(res.header.revision);
      },
      revoke: async () => {
        if (state === 'alive') state = 'stopped';
        teardown();
        await leases.leaseRevoke({ ID: id }).catch(() => undefined);
      },
      release: () => {
        if (state === 'alive') state = 'stopped';
        teardown();
      },
      onLost: (cb) => {
        lostCb = cb;
      },
    };
  }

  // ---- watch -------------------------------------------------------------

  /**
   * Streams puts and deletes under the prefix, in revision order. Starts just
   * after the newest revision this store has seen, so a change this store made
   * before calling watch() is never reported and one made after always is.
   * Across reconnects the watch resumes at the last delivered revision + 1,
   * and events at or below it are dropped, so none is lost or delivered twice.
   * If the resume point was compacted away, the watch re-lists the prefix and
   * reports what changed (see resync).
   */
  watch(prefix: string, onEvent: (ev: WatchEvent) => void): () => void {
    this.assertOpen();
    this.holdWatchStream();
    const state: WatchState = {
      prefix,
      onEvent,
      lastRev: this.revisionSeen,
      lastKeysAtRev: new Set(),
      known: new Map(),
      stopped: false,
    };
    this.watchers.add(state);
    if (state.lastRev === 0) {
      // This client has seen no revision yet: learn the current one before any
      // later write of ours is sent, so that write lands after the start point.
      const start: Promise<void> = this.call(`watch ${prefix}`, () =>
        this.client.kv.range({ ...this.range(prefix), count_only: true }),
      )
        .then((res) => {
          this.see(res.header.revision);
          state.lastRev = Number(res.header.revision);
        })
        .catch(() => undefined) // runWatch retries
        .finally(() => this.watchStarts.delete(start));
      this.watchStarts.add(start);
      void start.then(() => this.runWatch(state));
    } else {
      void this.runWatch(state);
    }
    return () => {
      state.stopped = true;
      this.watchers.delete(state);
      void this.cancelWatcher(state);
    };
  }

  private async runWatch(state: WatchState): Promise<void> {
    const { key: start, range_end: end } = this.range(state.prefix);
    while (!state.stopped && !this.closed) {
      try {
        if (state.lastRev === 0) {
          // Nothing seen yet: learn the current revision so the watch has a fixed start.
          const res = await this.call(`watch ${state.prefix}`, () =>
            this.client.kv.range({ ...this.range(state.prefix), count_only: true }),
          );
          this.see(res.header.revision);
          state.lastRev = Number(res.header.revision);
        }
        if (state.stopped || this.closed) return;
        // watcher() attaches at once; create() would resolve one tick after
        // "created", and an event arriving in the same chunk would be lost.
        const watcher = this.client
          .watch()
          .inRange({ start, end })
          .withPreviousKV()
          .startRevision(String(state.lastRev + 1))
          .watcher();
        state.watcher = watcher;
        await new Promise<void>((resolve) => {
          // etcd3 resumes a reconnect at "created" header revision + 1, which can
          // skip history that was still on its way; pin it to what we delivered.
          const pin = () => {
            watcher.request.start_revision = state.lastRev + 1;
          };
          watcher.on('connected', pin);
          watcher.on('data', (res: IWatchResponse) => {
            this.deliver(state, res);
            pin();
          });
          // etcd3 emits 'error' only when the server cancelled the watch (it has
          // already dropped the watcher then: cancel() would never resolve).
          watcher.on('error', () => resolve());
        });
        state.watcher = undefined;
        if (state.stopped || this.closed) return;
        // The resume revision was compacted (etcd3 reports it as "Watcher
        // canceled: " with no reason), or access was revoked. Re-list and
        // carry on from the list's revision.
        await this.resync(state);
      } catch {
        // Cluster unreachable while (re)creating the watch: keep trying, the
        // resume revision keeps nothing from being missed.
        await sleep(500);
      }
    }
  }

  private deliver(state: WatchState, res: IWatchResponse): void {
    for (const ev of res.events) {
      if (state.stopped) return;
      const rel = ev.kv.key.toString().slice(this.prefix.length);
      if (rel.startsWith(RESERVED)) continue;
      const rev = Number(ev.kv.mod_revision);
      // Drop what was already delivered (a replay after a reconnect).
      if (rev < state.lastRev || (rev === state.lastRev && state.lastKeysAtRev.has(rel))) continue;
      if (rev > state.lastRev) {
        state.lastRev = rev;
        state.lastKeysAtRev.clear();
      }
      state.lastKeysAtRev.add(rel);
      this.see(String(rev));
      let out: WatchEvent;
      if (ev.type === 'Delete') {
        state.known.delete(rel);
        out = { type: 'delete', kv: { key: rel, value: ev.prev_kv ? ev.prev_kv.value.toString() : '', revision: rev } };
      } else {
        state.known.set(rel, rev);
        out = { type: 'put', kv: { key: rel, value: ev.kv.value.toString(), revision: rev } };
      }
      try {
        state.onEvent(out);
      } catch {
        /* a watcher's failure is its own */
      }
    }
  }

  /**
   * The history between the last delivered revision and now was compacted:
   * list the prefix, report a put for every key changed since, and a delete
   * for every key this watch had seen that is gone. (A key that existed before
   * the watch started and was deleted inside the compacted gap cannot be
   * reported: its deletion is no longer recorded anywhere.)
   */
  private async resync(state: WatchState): Promise<void> {
    const res = await this.call(`watch ${state.prefix}`, () =>
      this.client.kv.range({ ...this.range(state.prefix), sort_order: 'Ascend', sort_target: 'Key' }),
    );
    const now = Number(res.header.revision);
    const present = new Set<string>();
    const emit = (ev: WatchEvent) => {
      try {
        state.onEvent(ev);
      } catch {
        /* its own */
      }
    };
    for (const kv of res.kvs) {
      const item = this.toKV(kv);
      if (item.key.startsWith(RESERVED)) continue;
      present.add(item.key);
      if (item.revision > state.lastRev) {
        state.known.set(item.key, item.revision);
        emit({ type: 'put', kv: item });
      }
    }
    for (const key of [...state.known.keys()]) {
      if (!present.has(key)) {
        state.known.delete(key);
        emit({ type: 'delete', kv: { key, value: '', revision: now } });
      }
    }
    state.lastRev = now;
    state.lastKeysAtRev.clear();
  }

  /**
   * When its last watcher goes, etcd3 cancels the watch stream, and a
   * cancelled stream counts as a failure of that member: etcd3 then closes
   * every channel to it (failing the calls in flight) and our breaker skips
   * it for a second. So the first watch() parks a watcher on a key nobody
   * writes, which keeps the stream up until close().
   */
  private holdWatchStream(): void {
    if (this.anchor) return;
    this.anchor = this.client
      .watch()
      .key(Buffer.from(`${this.prefix}${RESERVED}anchor`))
      .watcher();
    this.anchor.on('error', () => undefined);
  }

  private async cancelWatcher(state: WatchState): Promise<void> {
    const w = state.watcher;
    state.watcher = undefined;
    // etcd3's cancel() can hang after a server-side cancel; never wait on it for long.
    if (w) await withTimeout(w.cancel(), 1000).catch(() => undefined);
  }

  // ---- lifecycle ---------------------------------------------------------

  async close(): Promise<void> {
    if (this.closed) return;
    // Remove this client's marker while the client still works; bounded, best effort.
    if (this.seq > 0)
      await withTimeout(this.client.kv.deleteRange({ key: Buffer.from(this.markerKey) }), this.dialTimeoutMs).catch(
        () => undefined,
      );
    this.closed = true;
    const states = [...this.watchers];
    this.watchers.clear();
    for (const s of states) s.stopped = true;
    await Promise.all(states.map((s) => this.cancelWatcher(s)));
    if (this.anchor) await withTimeout(this.anchor.cancel(), 1000).catch(() => undefined);
    this.anchor = undefined;
    this.client.close();
    // A watcher whose cancel did not complete (dead member) would make etcd3
    // redial a closed client forever, on timers that keep the process alive.
    const manager = (this.client as unknown as { watchManager?: { watchers?: unknown[] } }).watchManager;
    if (manager?.watchers?.length) manager.watchers = [];
  }

  // ---- helpers -----------------------------------------------------------

  private abs(key: string): string {
    return this.prefix + key;
  }

  /** etcd's range for "every key under prefix" (an empty key is not allowed: "\0" to "\0" means all keys). */
  private range(prefix: string): { key: Buffer; range_end: Buffer } {
    const start = this.abs(prefix);
    return { key: start === '' ? Buffer.from([0]) : Buffer.from(start), range_end: rangeEnd(start) };
  }

  private toKV(kv: IKeyValue): KV {
    return {
      key: kv.key.toString().slice(this.prefix.length),
      value: kv.value.toString(),
      revision: Number(kv.mod_revision),
    };
  }

  private see(revision: string | undefined): void {
    const r = Number(revision ?? 0);
    if (r > this.revisionSeen) this.revisionSeen = r;
  }

  private assertOpen(): void {
    if (this.closed) throw new Unavailable('cluster store: client is closed');
  }

  /** A read, retried over the members until requestTimeoutMs. */
  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.requestTimeoutMs;
    let lastError: unknown;
    for (let attempt = 0; ; attempt++) {
      this.assertOpen();
      try {
        return await fn();
      } catch (e) {
        if (!retriable(e)) throw this.mapError(what, e);
        lastError = e;
      }
      if (Date.now() + 50 >= deadline) break;
      await sleep(Math.min(50 * 2 ** attempt, 500, Math.max(0, deadline - Date.now())));
    }
    throw this.unavailable(what, lastError);
  }

  private unavailable(what: string, err: unknown): Unavailable {
    const msg = err instanceof Error ? err.message : String(err);
    return new Unavailable(`cluster store unreachable: ${what}: ${msg} (gave up after ${this.requestTimeoutMs} ms)`);
  }

  private mapError(what: string, err: unknown): Error {
    if (err instanceof CasError || err instanceof Unavailable || err instanceof InvalidParameter) return err;
    const msg = err instanceof Error ? err.message : String(err);
    return new Unavailable(`cluster store error: ${what}: ${msg}`);
  }
}

interface WatchState {
  prefix: string;
  onEvent: (ev: WatchEvent) => void;
  /** Highest revision delivered (or the start point), and the keys delivered at it. */
  lastRev: number;
  lastKeysAtRev: Set<string>;
  /** Keys this watch has seen put and not deleted, with their revision: for resync after compaction. */
  known: Map<string, number>;
  watcher?: Watcher;
  stopped: boolean;
}

/** Errors after which another attempt (maybe on another member) may succeed. */
function retriable(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  if (isRecoverableError(e) || isBrokenCircuitError(e)) return true;
  // Server-side transient conditions, reported with other gRPC codes. "revision of auth store is old":
  // a role or user changed (a node joined) between etcd's permission check and the apply; the request
  // was refused whole, so it may be sent again (etcd's Go client retries it too).
  return /etcdserver: (leader changed|no leader|request timed out|too many requests|not capable|timed out waiting for read index|revision of auth store is old)/i.test(
    e.message,
  );
}

/** The smallest key after every key starting with `prefix` (etcd's range_end for a prefix). */
function rangeEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const end = Buffer.from(b.subarray(0, i + 1));
      end[i] = b[i]! + 1;
      return end;
    }
  }
  return Buffer.from([0]); // empty prefix: every key
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => (clearTimeout(t), resolve(v)),
      (e) => (clearTimeout(t), reject(e)),
    );
  });
}
