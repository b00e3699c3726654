/**
 * A kernel stand-in for unit tests (like knftables' Fake): transactions are
 * applied to in-memory tables with the kernel's all-or-nothing semantics,
 * so a test asserts on the whole rule set (`dump()`, golden files under
 * test/golden/) instead of matching rendered text. It records what went
 * down each path (script vs the nft -i line) and can lose everything like a
 * `nft flush ruleset` from outside.
 */
import type { Family } from './model.js';
import type { Tx } from './model.js';
import type { NftBackend } from './index.js';
import { Ruleset } from './ruleset.js';

export class FakeNft implements NftBackend {
  readonly ruleset = new Ruleset();
  /** Every transaction as rendered: `-f` scripts and `-i` lines, in order. */
  readonly log: Array<{ via: 'script' | 'line'; text: string }> = [];
  /** When set, the next transaction fails with this error (a kernel that refuses). */
  failNext: Error | undefined;

  async apply(tx: Tx): Promise<void> {
    this.take('script', tx.render());
    this.ruleset.apply(tx);
  }

  async applyLine(tx: Tx): Promise<void> {
    this.take('line', tx.renderLine());
    this.ruleset.apply(tx);
  }

  private take(via: 'script' | 'line', text: string): void {
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = undefined;
      throw e;
    }
    this.log.push({ via, text });
  }

  async existingTables(): Promise<Set<string>> {
    return new Set(this.ruleset.tableNames().map((t) => `${t.family} ${t.table}`));
  }

  hasTable(family: Family, table: string): boolean {
    return this.ruleset.hasTable(family, table);
  }

  /** What `nft flush ruleset` does: every table is gone. */
  flushRuleset(): void {
    this.ruleset.clear();
  }

  dump(): string {
    return this.ruleset.dump();
  }
}
