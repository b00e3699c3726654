/**
 * A per-key async mutex: callers with the same key run one after another, in
 * arrival order; different keys run freely. Used around read-modify-write of
 * one store key so concurrent requests in this process never spin on CAS
 * conflicts (CAS still guards against other processes sharing the store).
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
