/**
 * A container's streams and numbers: logs, attach, TTY resize, top and stats.
 */
import { Conflict, CoveError } from '../../../common/errors.js';
import type { AttachOptions, IoSession, LogEntry, LogOptions } from '../../types.js';
import { AttachSession, parseDetachKeys } from '../attach.js';
import { resizeTty } from '../conmon.js';
import { readLogs } from '../logs.js';
import { sample as statsSample, top as topOf } from '../stats.js';
import { assertReadable } from '../log-config.js';
import { ContainerCore, logConfigOf } from './core.js';

export class IoOps {
  constructor(private readonly core: ContainerCore) {}

  logs(idOrName: string, opts: LogOptions): AsyncIterable<LogEntry> {
    const self = this.core;
    return {
      async *[Symbol.asyncIterator]() {
        const r = await self.get(idOrName);
        assertReadable(logConfigOf(r));
        const id = r.Id;
        let live = r.State.Running;
        let wake: (() => void) | undefined;
        const onExit = (): void => {
          live = false;
          wake?.();
        };
        self.bus.on(`exit:${id}`, onExit);
        try {
          yield* readLogs(self.logPath(r), opts, {
            isLive: () => live && !self.closed,
            changed: (ms) =>
              new Promise<void>((resolve) => {
                const t = setTimeout(() => {
                  wake = undefined;
                  resolve();
                }, ms);
                wake = () => {
                  clearTimeout(t);
                  wake = undefined;
                  resolve();
                };
              }),
          });
        } finally {
          self.bus.off(`exit:${id}`, onExit);
        }
      },
    };
  }

  async attach(idOrName: string, opts: AttachOptions): Promise<IoSession> {
    const r = await this.core.get(idOrName);
    parseDetachKeys(opts.detachKeys);
    const session = new AttachSession({
      tty: !!r.Config.Tty,
      stdin: opts.stdin && !!r.Config.OpenStdin,
      stdout: opts.stdout,
      stderr: opts.stderr,
      detachKeys: opts.detachKeys,
      closeStdinOnEof: !!r.Config.StdinOnce && !r.Config.Tty,
      resize: (rows, cols) => this.resize(r.Id, rows, cols),
    });
    if (opts.logs) {
      for await (const e of readLogs(this.core.logPath(r), {
        follow: false,
        stdout: opts.stdout,
        stderr: opts.stderr,
        timestamps: false,
        tail: 'all',
      })) {
        session.replay(e.stream, e.data);
      }
    }
    this.core.publish(r, 'attach');
    if (!opts.stream) {
      session.endExited();
      return session;
    }
    await this.core.withLock(r.Id, async () => {
      const cur = await this.core.get(r.Id);
      if (cur.State.Running) {
        await session.connect(this.core.attachPath(ContainerCore.cuuid(r.Id)));
        this.core.liveSessions.add(session);
      } else {
        // Docker lets clients attach before start (docker run, start -a): connect at start.
        const set = this.core.pendingAttach.get(r.Id) ?? new Set();
        set.add(session);
        this.core.pendingAttach.set(r.Id, set);
        session.done.then(() => set.delete(session)).catch(() => undefined);
      }
    });
    session.done.then(() => this.core.liveSessions.delete(session)).catch(() => undefined);
    return session;
  }

  async resize(idOrName: string, rows: number, cols: number): Promise<void> {
    const r = await this.core.get(idOrName);
    if (!r.State.Running) throw new Conflict(`Container ${r.Id} is not running`);
    if (!r.Config.Tty) return;
    await resizeTty(this.core.bundleDir(r.Id), rows, cols).catch((e) => {
      throw new CoveError(`cannot resize container ${r.Id}: ${(e as Error).message}`, 500);
    });
  }

  async top(idOrName: string, psArgs: string): Promise<{ Titles: string[]; Processes: string[][] }> {
    const r = await this.core.get(idOrName);
    if (!r.State.Running) throw new Conflict(`Container ${r.Id} is not running`);
    if (r.State.Restarting) throw new Conflict(`Container ${r.Id} is restarting, wait until the container is running`);
    return topOf(r.Id, psArgs);
  }

  /**
   * Docker's stats samples: one a second while `stream`, else one (with
   * precpu_stats from a sample a second earlier unless `oneShot`).
   */
  async *stats(idOrName: string, opts: { stream: boolean; oneShot: boolean }): AsyncGenerator<Record<string, unknown>> {
    const r0 = await this.core.get(idOrName);
    let prev: Record<string, unknown> | undefined;
    const take = async (): Promise<Record<string, unknown> | undefined> => {
      const r = (await this.core.records.get(r0.Id))?.value;
      if (!r) return undefined;
      const s = await statsSample({
        id: r.Id,
        name: r.Name,
        pid: r.State.Pid,
        running: r.State.Running,
        hostNetwork: r.HostConfig.NetworkMode === 'host',
      });
      if (prev && r.State.Running) {
        s.precpu_stats = prev.cpu_stats;
        s.preread = prev.read;
      }
      prev = s;
      return s;
    };
    if (!opts.stream) {
      if (!opts.oneShot && r0.State.Running) {
        await take();
        await new Promise((res) => setTimeout(res, 1000));
      }
      const s = await take();
      if (s) yield s;
      return;
    }
    while (!this.core.closed) {
      const s = await take();
      if (!s) return;
      yield s;
      await new Promise((res) => setTimeout(res, 1000));
    }
  }
}
