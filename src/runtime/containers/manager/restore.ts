/**
 * Restore at daemon start: adopt containers whose conmon is alive, settle the others, then restart policies.
 */
import { mkdir, rm, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isConmonAlive } from '../conmon.js';
import { isMounted, rootfsPaths } from '../rootfs.js';
import { restartAtDaemonStart } from '../restart-policy.js';
import { ContainerCore, type ContainerRecord } from './core.js';

export class RestoreOps {
  constructor(private readonly core: ContainerCore) {}

  async restore(): Promise<void> {
    this.core.deferredRestarts ??= [];
    await mkdir(this.core.exitDir, { recursive: true });
    await mkdir(this.core.paths.socketDir, { recursive: true });
    await this.core.images.cleanupTemp().catch(() => undefined);
    const known = new Set<string>();
    for (const { value: r } of await this.core.records.list()) {
      known.add(r.Id);
      if (r.State.Status === 'removing') {
        await this.core.lifecycleOps
          .removeRecord({ ...r, State: { ...r.State, Running: false } })
          .catch(() => undefined);
        continue;
      }
      if (!r.State.Running) {
        // Nothing may be left mounted or registered for a stopped container.
        if (await isMounted(rootfsPaths(this.core.containerDir(r.Id)).merged))
          await this.core.monitorOps.teardown(r.Id);
        // The daemon stopped during a restart back-off: schedule it again.
        if (r.State.Status === 'restarting') await this.core.monitorOps.maybeRestart(r).catch(() => undefined);
        else if (
          r.hasBeenStarted &&
          restartAtDaemonStart(r.HostConfig.RestartPolicy, {
            exitCode: r.State.ExitCode,
            stoppedByUser: !!r.stoppedByUser,
            restartCount: r.RestartCount,
          })
        ) {
          // Docker starts these with a fresh restart manager: count reset, the user's stop forgotten.
          this.core.log.info(
            { id: r.Id, policy: r.HostConfig.RestartPolicy?.Name },
            'starting container by its restart policy',
          );
          const fresh = await this.core.update(r.Id, (x) => {
            x.stoppedByUser = false;
            x.RestartCount = 0;
          });
          await this.core.monitorOps
            .scheduleRestart(fresh, 0, false)
            .catch((e) =>
              this.core.log.warn({ id: r.Id, err: (e as Error).message }, 'restart at daemon start failed'),
            );
        }
        continue;
      }
      if (await isConmonAlive(r.conmonPid ?? 0, r.Id)) {
        this.core.log.info({ id: r.Id }, 'adopting running container');
        await this.core.lifecycleOps
          .keepLogging(r)
          .catch((e) => this.core.log.warn({ id: r.Id, err: (e as Error).message }, 'logging of an adopted container'));
        this.core.healthOps.startHealthMonitor(r);
        continue;
      }
      this.core.log.info({ id: r.Id }, 'container exited while the daemon was down');
      await this.core.monitorOps.handleExit(r.Id, { fromRestore: true });
    }
    // Exec sessions: inspectable again; those that ran across the restart settle from their exit files.
    await this.core.execs.restore((ex) => {
      const owner = { Id: ex.containerId, Name: '', ImageRef: '', Config: {} } as unknown as ContainerRecord;
      void this.core.records
        .get(ex.containerId)
        .then((c) => this.core.publish(c?.value ?? owner, 'exec_die', { execID: ex.id, exitCode: String(ex.exitCode) }))
        .catch(() => undefined);
    });
    // Runtime state of containers we no longer know (a crash between steps).
    try {
      const state = JSON.parse(await this.core.runc(['list', '--format', 'json'])) as Array<{ id: string }> | null;
      for (const s of state ?? [])
        if (!known.has(s.id)) await this.core.runc(['delete', '--force', s.id]).catch(() => undefined);
    } catch {
      // no runc state yet
    }
    try {
      for (const n of await readdir(join(this.core.cfg.execRoot, 'containers'))) {
        if (!known.has(n)) await rm(join(this.core.cfg.execRoot, 'containers', n), { recursive: true, force: true });
      }
    } catch {
      // none
    }
    this.core.monitorOps.ensureWatching();
  }
}
