/**
 * Exec sessions, kept in the store (`runtime/execs/<id>`) as well as in
 * memory, so that `GET /exec/{id}/json` answers after a daemon restart: an
 * exec's conmon outlives the daemon like a container's does, and writes the
 * exit code into the session's exit dir, where the restarted daemon finds it.
 */
import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Collection, type Store } from '../../store/store.js';
import type { Logger } from '../../common/log.js';
import type { DockerExecCreate } from '../types.js';
import { isConmonAlive } from './conmon.js';

export interface ExecRecord {
  id: string;
  containerId: string;
  config: DockerExecCreate;
  running: boolean;
  exitCode: number | null;
  pid: number;
  started: boolean;
  /** The session's bundle dir: process.json, pid files, attach socket link, conmon's exit file. */
  dir: string;
  /** The session's conmon, while it runs (from its pid file). */
  conmonPid?: number;
}

export class ExecRecords {
  private readonly cache = new Map<string, ExecRecord>();
  private readonly col: Collection<ExecRecord>;
  private watcher: NodeJS.Timeout | undefined;

  constructor(
    store: Store,
    private readonly log: Logger,
  ) {
    this.col = new Collection<ExecRecord>(store, 'runtime/execs');
  }

  get(id: string): ExecRecord | undefined {
    return this.cache.get(id);
  }

  values(): ExecRecord[] {
    return [...this.cache.values()];
  }

  /** Records (or re-records) a session; the write is awaited so a restart never loses an acknowledged exec. */
  async save(ex: ExecRecord): Promise<void> {
    this.cache.set(ex.id, ex);
    await this.col
      .put(ex.id, ex)
      .catch((e) => this.log.warn({ exec: ex.id, err: (e as Error).message }, 'saving the exec session failed'));
  }

  /**
   * Forgets all but the newest `keep` finished sessions of a container, so a
   * container exec'd into every few seconds (health probes, scripts) does not
   * grow the store without bound.
   */
  async trim(containerId: string, keep = 64): Promise<void> {
    const done = this.values().filter((e) => e.containerId === containerId && e.started && !e.running);
    for (const ex of done.slice(0, Math.max(0, done.length - keep))) {
      this.cache.delete(ex.id);
      await this.col.delete(ex.id).catch(() => undefined);
    }
  }

  async removeForContainer(containerId: string): Promise<void> {
    for (const ex of this.values()) {
      if (ex.containerId !== containerId) continue;
      this.cache.delete(ex.id);
      await this.col.delete(ex.id).catch(() => undefined);
    }
  }

  /** Whether the session's conmon has left its exit code (conmon names the file after the container id it was given). */
  static async exitCode(ex: ExecRecord): Promise<number | undefined> {
    let names: string[];
    try {
      names = await readdir(ex.dir);
    } catch {
      return undefined;
    }
    for (const n of names) {
      if (!/^[0-9a-f]{32,64}$/.test(n)) continue;
      const t = (await readFile(join(ex.dir, n), 'utf8').catch(() => '')).trim();
      if (/^-?\d+$/.test(t)) return Number(t);
    }
    return undefined;
  }

  /**
   * Daemon start: loads every session; those that were running when the
   * daemon went away are settled from their exit files, or watched until
   * their conmon ends. `onExit` publishes the exit as a live one would be.
   */
  async restore(onExit: (ex: ExecRecord) => void): Promise<void> {
    for (const { value } of await this.col.list()) this.cache.set(value.id, value);
    const orphans = this.values().filter((ex) => ex.running);
    if (!orphans.length) return;
    const settle = async (): Promise<void> => {
      // Only the orphans: sessions started after this restart are followed through conmon's sync pipe.
      for (const ex of orphans.filter((e) => e.running)) {
        const code = await ExecRecords.exitCode(ex);
        const alive = ex.conmonPid ? await isConmonAlive(ex.conmonPid, ex.containerId) : false;
        if (code === undefined && alive) continue;
        ex.running = false;
        // No exit file and no monitor: the session died with the machine; docker reports such an exit as unknown.
        ex.exitCode = code ?? 255;
        await this.save(ex);
        onExit(ex);
        await rm(ex.dir, { recursive: true, force: true }).catch(() => undefined);
      }
      if (!orphans.some((e) => e.running) && this.watcher) {
        clearInterval(this.watcher);
        this.watcher = undefined;
      }
    };
    await settle();
    if (orphans.some((e) => e.running)) {
      this.watcher = setInterval(() => void settle().catch(() => undefined), 500);
      this.watcher.unref();
    }
  }

  close(): void {
    if (this.watcher) clearInterval(this.watcher);
    this.watcher = undefined;
  }
}
