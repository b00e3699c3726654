/**
 * The monitor: conmon's exit files (watched, and polled as a fallback) end a running container: its record,
 * sandbox, mounts and runc state, then the restart policy decides whether it comes back.
 */
import { watch } from 'node:fs';
import { readFile, rm, rmdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isConmonAlive } from '../conmon.js';
import { stopLogWriter, waitLogWriter } from '../json-log-writer.js';
import { rootfsPaths, unmountRootfs } from '../rootfs.js';
import { release as releaseMounts } from '../mount-setup.js';
import { restartAfterExit, restartDelayMs } from '../restart-policy.js';
import { ContainerCore, type ContainerRecord } from './core.js';

/**
 * runc leaves a container's (empty) cgroup v1 dirs behind when the process
 * was gone before `runc delete`; remove them (rmdir only succeeds when empty).
 */
async function removeCgroups(id: string): Promise<void> {
  let controllers: string[];
  try {
    controllers = await readdir('/sys/fs/cgroup');
  } catch {
    return;
  }
  await Promise.all(controllers.map((c) => rmdir(join('/sys/fs/cgroup', c, 'cove', id)).catch(() => undefined)));
}

/** Running containers whose conmon poll() checks per tick (the rest in later ticks, in turn). */
const SWEEP_PER_TICK = 32;

export class MonitorOps {
  constructor(private readonly core: ContainerCore) {}

  ensureWatching(): void {
    if (this.core.closed) return;
    if (!this.core.watcher) {
      try {
        this.core.watcher = watch(this.core.exitDir, (_ev, file) => {
          if (file && /^[0-9a-f]{64}$/.test(String(file))) void this.handleExit(String(file)).catch(() => undefined);
        });
        this.core.watcher.on('error', () => {
          this.core.watcher?.close();
          this.core.watcher = undefined;
        });
      } catch {
        this.core.watcher = undefined;
      }
    }
    if (!this.core.poller) {
      this.core.poller = setInterval(() => void this.poll().catch(() => undefined), this.core.pollMs);
      this.core.poller.unref();
    }
  }

  /** Where the conmon liveness sweep of poll() goes on at its next tick. */
  private sweepAt = 0;

  /**
   * The safety net under the exit-dir watch. Exit files are found by one readdir of the exit dir (one file per
   * container that exited and was not torn down yet), not by reading a file of every running container; a conmon
   * that died without writing one is found by a sweep of at most SWEEP_PER_TICK running containers per tick, in
   * turn. Every running container cost 3 file reads per tick before: at 1000 containers, 1500 reads a second in
   * the background of every start and rm.
   */
  async poll(): Promise<void> {
    let files: string[] = [];
    try {
      files = await readdir(this.core.exitDir);
    } catch {
      /* not made yet: no container started */
    }
    for (const f of files) {
      if (!/^[0-9a-f]{64}$/.test(f) || this.core.exiting.has(f)) continue;
      const rec = (await this.core.records.get(f))?.value;
      if (rec?.State.Running && (await this.exitFileCode(f)) !== undefined) await this.handleExit(f);
    }
    const running = (await this.core.records.listShared()).filter((x) => x.value.State.Running);
    if (this.sweepAt >= running.length) this.sweepAt = 0;
    const batch = running.slice(this.sweepAt, this.sweepAt + SWEEP_PER_TICK);
    this.sweepAt += batch.length;
    for (const { value: r } of batch) {
      if (!(await isConmonAlive(r.conmonPid ?? 0, r.Id))) await this.handleExit(r.Id);
    }
  }

  /** Looks at one container: handles its exit if its exit file is there or its conmon is gone. */
  async checkOne(id: string): Promise<void> {
    const rec = (await this.core.records.get(id))?.value;
    if (!rec?.State.Running) return;
    if ((await this.exitFileCode(id)) !== undefined || !(await isConmonAlive(rec.conmonPid ?? 0, id)))
      await this.handleExit(id);
  }

  async exitFileCode(id: string): Promise<number | undefined> {
    try {
      const t = (await readFile(join(this.core.exitDir, id), 'utf8')).trim();
      if (t === '') return undefined;
      const n = Number.parseInt(t, 10);
      return Number.isNaN(n) ? undefined : n;
    } catch {
      return undefined;
    }
  }

  /** Tears a stopped container down to 'exited': runc state, rootfs mount, sandbox, bundle. Idempotent. */
  async handleExit(id: string, opts: { fromRestore?: boolean } = {}): Promise<void> {
    // A closed manager leaves exits to the next one (restore reads the exit files it finds).
    if (this.core.closed || this.core.exiting.has(id)) return;
    this.core.exiting.add(id);
    try {
      await this.core.withLock(id, async () => {
        const rec = (await this.core.records.get(id))?.value;
        if (!rec || !rec.State.Running) return;
        let code = await this.exitFileCode(id);
        if (code === undefined) {
          if (await isConmonAlive(rec.conmonPid ?? 0, id)) {
            // conmon still runs: the exit file is on its way; give it a moment.
            for (let i = 0; i < 50 && code === undefined; i++) {
              await new Promise((res) => setTimeout(res, 100));
              code = await this.exitFileCode(id);
              if (code === undefined && !(await isConmonAlive(rec.conmonPid ?? 0, id)))
                code = await this.exitFileCode(id);
            }
            if (code === undefined && (await isConmonAlive(rec.conmonPid ?? 0, id))) return;
          }
        }
        const exitCode = code ?? 255;
        // The json-file writer drains what conmon left in the FIFO: `logs` after `wait` sees every line.
        const jsonLog = this.core.jsonLogPath(id);
        if (rec.logWriterPid && !(await waitLogWriter(rec.logWriterPid, jsonLog, 10_000))) {
          this.core.log.warn({ id }, 'the json-file log writer did not finish within 10 s; stopping it');
          await stopLogWriter(rec.logWriterPid, jsonLog);
        }
        this.core.healthOps.stopHealthMonitor(id);
        await this.teardown(id);
        const now = new Date().toISOString();
        const next = await this.core.update(id, (x) => {
          x.State = {
            ...x.State,
            Status: 'exited',
            Running: false,
            Paused: false,
            Restarting: false,
            Pid: 0,
            ExitCode: exitCode,
            FinishedAt: now,
          };
          // A stopped container is not healthy (Docker shows its last results under unhealthy).
          if (x.State.Health) x.State.Health = { ...x.State.Health, Status: 'unhealthy' };
          delete x.conmonPid;
          delete x.logWriterPid;
        });
        this.core.log.info({ id, exitCode, fromRestore: !!opts.fromRestore }, 'container exited');
        this.core.publish(next, 'die', { exitCode: String(exitCode) });
        this.core.bus.emit(`exit:${id}`, exitCode);
        for (const s of [...this.core.liveSessions]) if (s.ended) this.core.liveSessions.delete(s);
      });
      const rec = (await this.core.records.get(id))?.value;
      if (!rec || rec.State.Running) return;
      if (rec.HostConfig.AutoRemove) {
        await this.core.lifecycleOps
          .removeRecord(rec, { volumes: true })
          .catch((e) => this.core.log.warn({ id, err: (e as Error).message }, 'auto-remove failed'));
        return;
      }
      await this.maybeRestart(rec);
    } finally {
      this.core.exiting.delete(id);
    }
  }

  async teardown(id: string): Promise<void> {
    this.core.rotator.unwatch(id);
    await this.core.runc(['delete', '--force', id]).catch(() => undefined);
    await removeCgroups(id);
    await unmountRootfs(rootfsPaths(this.core.containerDir(id))).catch((e) =>
      this.core.log.warn({ id, err: (e as Error).message }, 'unmount failed'),
    );
    const rec = (await this.core.records.get(id))?.value;
    if (rec) await releaseMounts(this.core.volumes, rec.MountPoints);
    await this.core.networks
      .deleteSandbox(id)
      .catch((e) => this.core.log.warn({ id, err: (e as Error).message }, 'deleting the sandbox failed'));
    await rm(this.core.bundleDir(id), { recursive: true, force: true });
    await rm(join(this.core.paths.socketDir, ContainerCore.cuuid(id)), { force: true });
    await rm(join(this.core.exitDir, id), { force: true });
    this.core.tornDown.add(id);
  }

  async maybeRestart(rec: ContainerRecord): Promise<void> {
    if (this.core.closed) return;
    if (
      !restartAfterExit(rec.HostConfig.RestartPolicy, {
        exitCode: rec.State.ExitCode,
        stoppedByUser: !!rec.stoppedByUser,
        restartCount: rec.RestartCount,
      })
    )
      return;
    await this.scheduleRestart(rec, restartDelayMs(rec.RestartCount));
  }

  /** Marks the container 'restarting' and starts it after `delay` ms (unless a user stops or removes it first). */
  async scheduleRestart(rec: ContainerRecord, delay: number, counted = true): Promise<void> {
    // Meanwhile the state is 'restarting', as Docker shows it.
    await this.core.update(rec.Id, (x) => {
      x.State.Status = 'restarting';
      x.State.Restarting = true;
    });
    const fire = (): void => this.fireRestart(rec.Id, delay, counted);
    // During the daemon's restore the network controller has not yet rebuilt its
    // sandboxes and DNS records: a start now would be undone by that restore.
    if (this.core.deferredRestarts) this.core.deferredRestarts.push(fire);
    else fire();
  }

  /**
   * Daemon start, after the network controller restored its state: starts the
   * containers restore() found due by their restart policies.
   */
  resumeRestarts(): void {
    const due = this.core.deferredRestarts ?? [];
    this.core.deferredRestarts = undefined;
    for (const fire of due) fire();
  }

  fireRestart(id: string, delay: number, counted: boolean): void {
    const rec = { Id: id };
    setTimeout(() => {
      void this.core
        .withLock(rec.Id, async () => {
          const cur = (await this.core.records.get(rec.Id))?.value;
          if (!cur || cur.State.Running || cur.State.Status !== 'restarting' || cur.stoppedByUser || this.core.closed)
            return;
          const next = await this.core.update(rec.Id, (x) => {
            if (counted) x.RestartCount += 1;
            x.State.Restarting = false;
          });
          await this.core.lifecycleOps.startLocked(next);
        })
        .catch((e) => this.core.log.warn({ id: rec.Id, err: (e as Error).message }, 'restart failed'));
    }, delay).unref();
  }

  /** A container waiting to be restarted by its policy stays down (stop, kill, rm). */
  async cancelRestart(r: ContainerRecord): Promise<boolean> {
    if (r.State.Status !== 'restarting') return false;
    await this.core.withLock(r.Id, () =>
      this.core.update(r.Id, (x) => {
        x.stoppedByUser = true;
        x.State.Status = 'exited';
        x.State.Restarting = false;
      }),
    );
    return true;
  }
}
