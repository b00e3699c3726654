/**
 * A counting limiter: at most `limit` holders at a time, the others wait in
 * arrival order. A released slot goes straight to the oldest waiter, so a
 * newcomer never overtakes a task that has been waiting. The swarm agent
 * starts its tasks' containers through one (src/services/agent.ts): starting
 * every task of a scale-up at once overloads a small machine, one at a time
 * leaves it idle.
 */
export class Limiter {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`limiter: limit must be a positive integer`);
  }

  /** Holders now. */
  get running(): number {
    return this.active;
  }

  /** Callers waiting for a slot. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Takes a slot when one is free at once (and nobody waits); false leaves nothing to release. */
  tryAcquire(): boolean {
    if (this.active >= this.limit || this.waiting.length) return false;
    this.active++;
    return true;
  }

  /** Resolves once the caller holds a slot; each acquire needs one release. */
  acquire(): Promise<void> {
    if (this.tryAcquire()) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Gives a slot back: to the oldest waiter if any (it stays counted), else frees it. */
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else if (this.active > 0) this.active--;
  }

  /** `fn` while holding a slot. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }
}
