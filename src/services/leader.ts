/**
 * Leader election among managers for the orchestrator: a leased key in the
 * cluster store (`orchestrator/leader` = { nodeId, expiresAt }), taken and
 * renewed with compare-and-swap. The holder renews every `renewMs`; the others
 * take over once it has not renewed for `ttlMs`. Every orchestrator write is
 * fenced on the revision of the holder's last renewal (`fence()`), so a
 * manager that lost the key (paused, partitioned) cannot write afterwards.
 *
 * Liveness is judged on wall-clock time in the record: managers must keep
 * their clocks within a fraction of ttlMs (they do on one machine; across
 * machines, NTP keeps them within milliseconds).
 */
import type { Logger } from '../common/log.js';
import { CasError, type Store, type TxnOp } from '../store/store.js';
import { LEADER_KEY } from './records.js';

export interface LeaderRecord {
  nodeId: string;
  expiresAt: number;
}

export class LeaderElector {
  private timer: NodeJS.Timeout | undefined;
  private revision = 0;
  private leading = false;
  private stopped = true;
  private busy = false;

  constructor(
    private readonly store: Store,
    private readonly nodeId: string,
    private readonly onChange: (leading: boolean) => void,
    private readonly log: Logger,
    private readonly ttlMs = 3000,
    private readonly renewMs = 1000,
  ) {}

  isLeader(): boolean {
    return this.leading;
  }

  /** The check to add to a write: the leader key still holds our last renewal. */
  fence(): TxnOp | undefined {
    return { key: LEADER_KEY, expectRevision: this.leading ? this.revision : -1 };
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    const tick = (): void => void this.tick();
    this.timer = setInterval(tick, this.renewMs);
    this.timer.unref?.();
    tick();
  }

  /** Stops campaigning; a leader gives the key up so another manager takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.leading) {
      this.setLeading(false);
      await this.store.delete(LEADER_KEY, this.revision).catch(() => undefined);
    }
  }

  private async tick(): Promise<void> {
    if (this.busy || this.stopped) return;
    this.busy = true;
    try {
      const kv = await this.store.get(LEADER_KEY);
      const cur = kv ? (JSON.parse(kv.value) as LeaderRecord) : undefined;
      const now = Date.now();
      if (!cur || cur.nodeId === this.nodeId || cur.expiresAt < now) {
        const rec: LeaderRecord = { nodeId: this.nodeId, expiresAt: now + this.ttlMs };
        this.revision = await this.store.put(LEADER_KEY, JSON.stringify(rec), kv?.revision ?? 0);
        if (this.stopped) return;
        if (!this.leading) this.log.info({ node: this.nodeId }, 'this manager now leads the orchestrator');
        this.setLeading(true);
      } else {
        this.setLeading(false);
      }
    } catch (err) {
      // Lost a race for the key, or the store is unreachable: either way we cannot know we still lead.
      if (!(err instanceof CasError)) this.log.debug({ err }, 'leader renewal failed');
      this.setLeading(false);
    } finally {
      this.busy = false;
    }
  }

  private setLeading(v: boolean): void {
    if (v === this.leading) return;
    this.leading = v;
    try {
      this.onChange(v);
    } catch (err) {
      this.log.warn({ err }, 'leader change handler failed');
    }
  }
}
