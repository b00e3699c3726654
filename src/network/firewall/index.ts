/**
 * The firewall: one component that several owners share (a bridge network,
 * the published ports of one endpoint; later a service VIP, the ingress mesh,
 * overlay). Each owner declares the objects it wants (its own chains, sets,
 * elements in the frame's verdict maps, or a table of its own) and
 * `owner.set(objects)` sends only the difference to what it had: one `nft -f`
 * transaction, or one `nft -i` line when only elements change (the published
 * port fast path, ~0.2 ms). No owner ever rewrites another's objects.
 *
 * The firewall keeps the desired state of every owner in memory (a Ruleset)
 * and heals: a cheap check every 250 ms sees when the table is gone (a
 * `nft flush ruleset` by firewalld/ufw reloads, an admin) and restores the
 * whole desired state in one transaction; a transaction that fails because
 * the table vanished heals first instead of failing.
 *
 * The frame (table `inet cove`, see frame.ts) exists while any owner does.
 */
import type { Logger } from '../../common/log.js';
import { KernelError } from '../../kernel/errors.js';
import { hostNft } from '../../kernel/host.js';
import { nftApply, nftInProcess, nftTables, NetnsNft, NftSession } from '../../kernel/nft.js';
import { frameObjects, FRAME } from './frame.js';
import {
  objectKey,
  Tx,
  type ChainObj,
  type ElementObj,
  type Family,
  type FwObject,
  type RuleObj,
  type SetObj,
  type TableObj,
} from './model.js';
import { Ruleset } from './ruleset.js';

export * from './model.js';
export { Ruleset } from './ruleset.js';
export { FRAME, FRAME_MAPS, NETIFS, PUB_MAPS } from './frame.js';

/** Where transactions go: the kernel (KernelNft) or memory (test/unit's FakeNft). */
export interface NftBackend {
  /** One atomic transaction (`nft -f`). */
  apply(tx: Tx): Promise<void>;
  /** One atomic transaction on the long-lived `nft -i` (elements only: the fast path). */
  applyLine(tx: Tx): Promise<void>;
  /** Which of these tables exist now. */
  existingTables(tables: Array<{ family: Family; table: string }>): Promise<Set<string>>;
  /** Releases what the backend holds (a co-process in another netns). */
  close?(): Promise<void>;
}

/** Transactions longer than this go through `nft -f` (lines of 67 KB were measured to work on nft 1.0.6's `-i`). */
const MAX_LINE = 48 * 1024;

/**
 * A netns through src/kernel: each transaction one in-process libnftables call (the addon's nftRun), or,
 * where the library cannot be loaded, one long-lived `nft -i` per netns (the daemon's own shares hostNft();
 * another netns, e.g. the ingress sandbox, gets a co-process of its own, ended by close()) with `nft -f` for
 * very large scripts. Measured in one netns (a bridge network's 3 chains, 8 rules and 4 elements): 0.50 ms
 * in-process against 2.05 ms through `nft -i`; one element 0.36 against 0.47 ms.
 */
export class KernelNft implements NftBackend {
  private session: NftSession | undefined;
  private readonly inProcess = nftInProcess();
  /** In-process calls of this backend one after another, as the co-process's lines are. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly netnsPath: string | null = null) {}

  private nft(): NftSession {
    if (this.netnsPath === null) return hostNft();
    this.session ??= new NftSession(this.netnsPath);
    return this.session;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  async apply(tx: Tx): Promise<void> {
    if (this.inProcess) {
      if (!tx.empty) await this.serial(() => nftApply(tx.render(), this.netnsPath));
      return;
    }
    const line = tx.renderLine();
    if (line.length <= MAX_LINE) {
      if (line !== '') await this.nft().run([line]);
      return;
    }
    return nftApply(tx.render(), this.netnsPath);
  }

  applyLine(tx: Tx): Promise<void> {
    return this.apply(tx);
  }

  /** `list tables` (names only: no rules, no elements). */
  async existingTables(): Promise<Set<string>> {
    if (this.inProcess) return this.serial(() => nftTables(this.netnsPath));
    const out = await this.nft().run(['list tables']);
    const have = new Set<string>();
    for (const l of out.split('\n')) {
      const m = /^table (\S+) (\S+)$/.exec(l.trim());
      if (m) have.add(`${m[1]} ${m[2]}`);
    }
    return have;
  }

  /** Ends this netns's co-process (it would keep the netns alive); a later transaction starts another. */
  async close(): Promise<void> {
    const s = this.session;
    this.session = undefined;
    await s?.close();
  }
}

/**
 * A sandbox's netns through NetnsNft: each transaction one in-process libnftables call of its own (run beside
 * those of other sandboxes), no `nft -i` co-process per netns (the service load balancer programs one netns per
 * container).
 */
export class NetnsNftBackend implements NftBackend {
  private readonly nft: NetnsNft;

  constructor(netnsPath: string) {
    this.nft = new NetnsNft(netnsPath);
  }

  apply(tx: Tx): Promise<void> {
    return tx.empty ? Promise.resolve() : this.nft.apply(tx.render());
  }

  applyLine(tx: Tx): Promise<void> {
    return this.apply(tx);
  }

  existingTables(): Promise<Set<string>> {
    return this.nft.tables();
  }
}

export interface FirewallOptions {
  backend?: NftBackend;
  log?: Logger;
  /** How often the kernel is checked for a lost table (ms); 0 = never (tests drive heal() themselves). */
  checkEveryMs?: number;
  /** Whether this firewall has the frame (table inet cove; default true). A sandbox's firewall whose owners bring their own tables has none. */
  frame?: boolean;
}

function sameObject(a: FwObject, b: FwObject): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** What one owner has: its non-rule objects by key, and the rules of each of its chains. */
interface OwnerState {
  objects: Map<string, FwObject>;
  rules: Map<string, string[]>;
}

function ownerState(objects: FwObject[]): OwnerState {
  const s: OwnerState = { objects: new Map(), rules: new Map() };
  for (const o of objects) {
    if (o.kind === 'rule') continue;
    s.objects.set(objectKey(o), o);
    if (o.kind === 'chain') s.rules.set(objectKey(o), []);
  }
  for (const o of objects) {
    if (o.kind !== 'rule') continue;
    const key = objectKey({ kind: 'chain', family: o.family, table: o.table, name: o.chain });
    const list = s.rules.get(key);
    if (!list) throw new KernelError('firewall', `rule for chain ${o.chain} that the owner does not declare`);
    list.push(o.rule);
  }
  return s;
}

const EMPTY: OwnerState = { objects: new Map(), rules: new Map() };

/** Non-rule objects that go and come (a changed object is in both), and the rules of chains that come or change. */
interface OwnerChange {
  gone: FwObject[];
  fresh: FwObject[];
  /** Chains of `from` whose rules go (because the chain goes or its rules change) and that have rules. */
  flush: ChainObj[];
  rules: Array<{ chain: ChainObj; rules: string[] }>;
}

/** The change as one transaction, in the order the kernel accepts it. */
function changeTx(c: OwnerChange): Tx {
  const tx = new Tx();
  const kinds = (list: FwObject[], ...k: Array<FwObject['kind']>) => list.filter((o) => k.includes(o.kind));
  // 1. elements that go (they may name chains that go), 2. chains emptied, then chains, sets, tables deleted
  for (const e of kinds(c.gone, 'element')) tx.delete(e);
  for (const ch of c.flush) tx.flush(ch);
  for (const o of kinds(c.gone, 'chain')) tx.delete(o);
  for (const o of kinds(c.gone, 'set', 'map')) tx.delete(o);
  for (const o of kinds(c.gone, 'table')) tx.delete(o);
  // 3. what comes: tables, sets, chains, then rules, then elements
  for (const o of kinds(c.fresh, 'table')) tx.add(o);
  for (const o of kinds(c.fresh, 'set', 'map')) tx.add(o);
  for (const o of kinds(c.fresh, 'chain')) tx.add(o);
  for (const { chain, rules } of c.rules)
    for (const rule of rules)
      tx.add({ kind: 'rule', family: chain.family, table: chain.table, chain: chain.name, rule } satisfies RuleObj);
  for (const e of kinds(c.fresh, 'element')) tx.add(e);
  return tx;
}

/** The transaction that turns an owner's `from` into `to`, touching nothing else. */
export function diffOwner(from: OwnerState, to: OwnerState): Tx {
  return changeTx(diffChange(from, to));
}

function diffChange(from: OwnerState, to: OwnerState): OwnerChange {
  const gone = (k: string) => !to.objects.has(k) || !sameObject(from.objects.get(k)!, to.objects.get(k)!);
  const fresh = (k: string) => !from.objects.has(k) || !sameObject(from.objects.get(k)!, to.objects.get(k)!);
  const rulesChanged = (k: string) => JSON.stringify(from.rules.get(k) ?? []) !== JSON.stringify(to.rules.get(k) ?? []);
  const change: OwnerChange = { gone: [], fresh: [], flush: [], rules: [] };
  for (const [k, o] of from.objects) {
    if (gone(k)) change.gone.push(o);
    if (o.kind === 'chain' && (gone(k) || rulesChanged(k)) && (from.rules.get(k)?.length ?? 0) > 0)
      change.flush.push(o);
  }
  for (const [k, o] of to.objects) {
    if (fresh(k)) change.fresh.push(o);
    if (o.kind === 'chain' && (fresh(k) || rulesChanged(k)))
      change.rules.push({ chain: o, rules: to.rules.get(k) ?? [] });
  }
  return change;
}

/**
 * An explicit change to one owner's objects, for owners that keep many
 * elements (the mesh's published ports): its cost follows the size of the
 * change, not of the owner, where `set` diffs everything the owner has.
 */
export interface OwnerDelta {
  /** The owner's objects that go (a chain takes its rules along). */
  remove?: FwObject[];
  /** Objects that come; an object already there unchanged is skipped, a changed one replaced. Rules only for chains that come here too. */
  add?: FwObject[];
}

/** The change for `delta` applied to `from` (throws on objects the owner does not have), and the keys it touches. */
function deltaChange(from: OwnerState, delta: OwnerDelta): OwnerChange {
  const change: OwnerChange = { gone: [], fresh: [], flush: [], rules: [] };
  const goneKeys = new Set<string>();
  const drop = (k: string, o: FwObject) => {
    if (goneKeys.has(k)) return;
    goneKeys.add(k);
    change.gone.push(o);
    if (o.kind === 'chain' && (from.rules.get(k)?.length ?? 0) > 0) change.flush.push(o);
  };
  for (const o of delta.remove ?? []) {
    if (o.kind === 'rule') throw new KernelError('firewall', 'a rule goes with its chain, not alone');
    const k = objectKey(o);
    const had = from.objects.get(k);
    if (!had) throw new KernelError('firewall', `${k}: not this owner's`);
    drop(k, had);
  }
  const newChains = new Map<string, { chain: ChainObj; rules: string[] }>();
  for (const o of delta.add ?? []) {
    if (o.kind === 'rule') continue;
    const k = objectKey(o);
    const had = from.objects.get(k);
    if (had && !goneKeys.has(k)) {
      if (sameObject(had, o)) continue;
      drop(k, had);
    }
    change.fresh.push(o);
    if (o.kind === 'chain') {
      const entry = { chain: o, rules: [] as string[] };
      newChains.set(k, entry);
      change.rules.push(entry);
    }
  }
  for (const o of delta.add ?? []) {
    if (o.kind !== 'rule') continue;
    const entry = newChains.get(objectKey({ kind: 'chain', family: o.family, table: o.table, name: o.chain }));
    if (!entry) throw new KernelError('firewall', `rule for chain ${o.chain} that this change does not add`);
    entry.rules.push(o.rule);
  }
  return change;
}

/** One owner's handle: its objects are replaced by diff, never anyone else's. */
export class FirewallOwner {
  constructor(
    private readonly fw: Firewall,
    readonly name: string,
  ) {}

  /** Makes this owner's objects exactly `objects` (in one transaction; elements-only changes take the nft -i fast path). */
  set(objects: FwObject[]): Promise<void> {
    return this.fw.setOwner(this.name, objects);
  }

  /** Applies an explicit change (see OwnerDelta) in one transaction; elements-only changes take the nft -i fast path. */
  patch(delta: OwnerDelta): Promise<void> {
    return this.fw.patchOwner(this.name, delta);
  }

  /** Removes everything this owner has. */
  remove(): Promise<void> {
    return this.fw.setOwner(this.name, []);
  }
}

export class Firewall {
  private readonly backend: NftBackend;
  private readonly log: Logger | undefined;
  /** Desired state of every owner together (the frame included): what healing restores. */
  readonly desired = new Ruleset();
  private readonly owners = new Map<string, OwnerState>();
  private queue: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private checking = false;
  private lastCheckError: string | undefined;
  private readonly checkEveryMs: number;
  private readonly withFrame: boolean;
  /** How many times the whole state was restored after it was lost (diagnostics, tests). */
  heals = 0;

  constructor(opts: FirewallOptions = {}) {
    this.backend = opts.backend ?? new KernelNft();
    this.log = opts.log;
    this.checkEveryMs = opts.checkEveryMs ?? 250;
    this.withFrame = opts.frame ?? true;
  }

  owner(name: string): FirewallOwner {
    return new FirewallOwner(this, name);
  }

  ownerNames(): string[] {
    return [...this.owners.keys()];
  }

  /** The desired state as golden-file text. */
  dump(): string {
    return this.desired.dump();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  setOwner(name: string, objects: FwObject[]): Promise<void> {
    return this.setOwners(new Map([[name, objects]]));
  }

  /**
   * Makes each named owner's objects exactly the given ones (an empty list removes the owner), all in ONE
   * transaction: owners whose objects depend on one another (a set of one, elements of another) change together,
   * in the order the kernel accepts (every owner's removals first, then every owner's additions). Owners not
   * named are left as they are, unless `othersGo` (then they are removed in the same transaction).
   */
  setOwners(owners: Map<string, FwObject[]>, opts: { othersGo?: boolean } = {}): Promise<void> {
    return this.serial(async () => {
      const wanted = new Map<string, OwnerState>();
      for (const [name, objects] of owners) wanted.set(name, ownerState(objects));
      if (opts.othersGo) for (const name of this.owners.keys()) if (!wanted.has(name)) wanted.set(name, EMPTY);
      const hadOwners = this.owners.size > 0;
      let count = this.owners.size;
      for (const [name, to] of wanted) count += (to.objects.size > 0 ? 1 : 0) - (this.owners.has(name) ? 1 : 0);
      const willHave = count > 0;
      const tx = new Tx();
      // The frame comes with the first owner (replacing whatever an earlier run of the daemon left) and goes with the last.
      if (this.withFrame && !hadOwners && willHave) {
        const table: TableObj = { kind: 'table', family: FRAME.family, table: FRAME.table };
        tx.add(table).delete(table);
        for (const o of frameObjects()) tx.add(o);
      }
      // Without a frame, owners bring their own tables: one this process has not
      // made yet is replaced (an earlier run of the daemon may have left it, with
      // rules that appending would duplicate).
      if (!this.withFrame) {
        const known = new Set(this.desired.tableNames().map((t) => `${t.family} ${t.table}`));
        for (const to of wanted.values())
          for (const o of to.objects.values()) {
            if (o.kind !== 'table' || known.has(`${o.family} ${o.table}`)) continue;
            known.add(`${o.family} ${o.table}`);
            tx.add(o).delete(o);
          }
      }
      const change: OwnerChange = { gone: [], fresh: [], flush: [], rules: [] };
      for (const [name, to] of wanted) {
        const c = diffChange(this.owners.get(name) ?? EMPTY, to);
        change.gone.push(...c.gone);
        change.fresh.push(...c.fresh);
        change.flush.push(...c.flush);
        change.rules.push(...c.rules);
      }
      const diff = changeTx(change);
      if (this.withFrame && hadOwners && !willHave) {
        tx.delete({ kind: 'table', family: FRAME.family, table: FRAME.table });
        // an owner's own tables go too (the frame's table took its objects with it)
        for (const op of diff.ops)
          if (op.verb === 'delete' && op.obj.kind === 'table' && op.obj.table !== FRAME.table) tx.ops.push(op);
      } else {
        tx.ops.push(...diff.ops);
      }
      if (!tx.empty) await this.commit(tx);
      for (const [name, to] of wanted) {
        if (to.objects.size > 0) this.owners.set(name, to);
        else this.owners.delete(name);
      }
      this.schedule();
    });
  }

  /** Changes one owner by an explicit delta: the transaction and the bookkeeping cost O(size of the delta). */
  patchOwner(name: string, delta: OwnerDelta): Promise<void> {
    return this.serial(async () => {
      const from = this.owners.get(name) ?? {
        objects: new Map<string, FwObject>(),
        rules: new Map<string, string[]>(),
      };
      if (!this.owners.has(name) && this.withFrame && this.owners.size === 0)
        throw new KernelError('firewall', 'patch before the first set: the frame is made by set()');
      const change = deltaChange(from, delta);
      const tx = changeTx(change);
      if (!tx.empty) await this.commit(tx);
      for (const o of change.gone) {
        const k = objectKey(o);
        from.objects.delete(k);
        from.rules.delete(k);
      }
      for (const o of change.fresh) from.objects.set(objectKey(o), o);
      for (const { chain, rules } of change.rules) from.rules.set(objectKey(chain), rules);
      if (from.objects.size > 0) this.owners.set(name, from);
      else this.owners.delete(name);
      this.schedule();
    });
  }

  /** Applies to the desired state, then to the kernel; a kernel that lost our table is healed (which includes tx). */
  private async commit(tx: Tx): Promise<void> {
    const revert = this.desired.apply(tx);
    try {
      if (tx.elementsOnly) await this.backend.applyLine(tx);
      else await this.backend.apply(tx);
    } catch (e) {
      const lost = await this.lostTables().catch(() => [] as string[]);
      if (lost.length) {
        try {
          await this.restore(lost);
          return;
        } catch (healErr) {
          revert();
          throw healErr;
        }
      }
      revert();
      throw e;
    }
  }

  private async lostTables(): Promise<string[]> {
    const want = this.desired.tableNames();
    if (want.length === 0) return [];
    const have = await this.backend.existingTables(want);
    return want.map((t) => `${t.family} ${t.table}`).filter((k) => !have.has(k));
  }

  /** The whole desired state as one transaction: each table made, emptied by deletion, and filled again. */
  restoreTx(): Tx {
    const tx = new Tx();
    for (const t of this.desired.tableNames()) {
      const table: TableObj = { kind: 'table', ...t };
      tx.add(table).delete(table);
    }
    for (const o of this.desired.objects()) tx.add(o);
    return tx;
  }

  private async restore(lost: string[]): Promise<void> {
    await this.backend.apply(this.restoreTx());
    this.heals++;
    this.log?.warn(
      { lost },
      'firewall: our nftables state was removed from outside (e.g. nft flush ruleset); restored it',
    );
  }

  /** Checks the kernel once and restores the whole desired state if a table of ours is gone. Resolves true when it healed. */
  heal(): Promise<boolean> {
    return this.serial(async () => {
      const lost = await this.lostTables();
      if (lost.length === 0) return false;
      await this.restore(lost);
      return true;
    });
  }

  /** Periodic check runs while there is desired state. */
  private schedule(): void {
    if (this.checkEveryMs <= 0) return;
    if (this.desired.isEmpty) {
      if (this.timer) clearInterval(this.timer);
      this.timer = undefined;
      return;
    }
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (this.checking) return;
      this.checking = true;
      this.heal()
        .then(() => (this.lastCheckError = undefined))
        .catch((e: unknown) => {
          // Once per distinct failure, not four times a second.
          const msg = e instanceof Error ? e.message : String(e);
          if (msg !== this.lastCheckError)
            this.log?.error({ err: e }, 'firewall: checking or restoring our nftables state failed');
          this.lastCheckError = msg;
        })
        .finally(() => (this.checking = false));
    }, this.checkEveryMs);
    this.timer.unref();
  }

  /** Stops the periodic check and waits for queued transactions. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.queue;
    await this.backend.close?.();
  }
}

let shared: Firewall | undefined;

/** The daemon netns's firewall, shared by every driver of this process (like hostIp()/hostNft()). */
export function hostFirewall(log?: Logger): Firewall {
  shared ??= new Firewall(log ? { log } : {});
  return shared;
}

export type { ChainObj, ElementObj, SetObj };
