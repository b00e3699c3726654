/**
 * The lifecycle: start (rootfs, sandbox, OCI bundle, conmon + runc, all-or-nothing), stop, kill, restart,
 * pause/unpause, wait, remove and prune.
 */
import { access, rm } from 'node:fs/promises';
import { constants as fsConstants, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Conflict, CoveError, NotModified } from '../../../common/errors.js';
import type { Filters, SandboxHandle } from '../../../network/types.js';
import { conmonCreate, isConmonAlive } from '../conmon.js';
import { execFifoOf, startThroughFifo, untilExecuted } from '../runc-start.js';
import { initialHealth, probeOf, type HealthConfig } from '../health.js';
import { bundleSpec, capabilities, processSpec, resolveUser } from '../oci.js';
import { mountRootfs, rootfsPaths, unmountRootfs } from '../rootfs.js';
import { sandboxSpec } from '../spec.js';
import { ociMounts } from '../mounts.js';
import { prepare as prepareMounts, release as releaseMounts, removeAnonymous } from '../mount-setup.js';
import { dirSize } from '../../volumes/store.js';
import { prunePredicate } from '../prune.js';
import { rotationOf } from '../log-config.js';
import {
  isLogWriterAlive,
  logFifoPath,
  spawnLogWriter,
  startLogWriter,
  stopLogWriter,
  unblockFifo,
} from '../json-log-writer.js';
import { ociResources, parseDeviceRule, type ResourceConfig } from '../resources.js';
import { ContainerCore, ZERO_TIME, signalNumber, logConfigOf, type ContainerRecord } from './core.js';

/**
 * The exit code Docker records for a start that failed (what `docker inspect`
 * shows and `wait` returns): 127 when the command is not there, 126 when it
 * cannot be run, else 128 ("exit unknown").
 */
export function startFailureExitCode(message: string): number {
  if (/executable file not found|no such file or directory/i.test(message)) return 127;
  if (/permission denied|is a directory/i.test(message)) return 126;
  return 128;
}

export class LifecycleOps {
  constructor(private readonly core: ContainerCore) {}

  async start(idOrName: string): Promise<void> {
    const t0 = performance.now();
    const r0 = await this.core.get(idOrName);
    let attempted = false;
    try {
      await this.core.withLock(r0.Id, async () => {
        const r = await this.core.get(r0.Id);
        if (r.State.Running) throw new NotModified();
        if (r.State.Status === 'removing') throw new Conflict(`container is marked for removal and cannot be started`);
        // A user's start resets the policy's count, as Docker's ResetRestartManager does.
        await this.core.update(r.Id, (x) => {
          x.stoppedByUser = false;
          x.RestartCount = 0;
        });
        attempted = true;
        await this.startLocked(r, t0);
      });
    } catch (e) {
      // Docker removes an AutoRemove (--rm) container whose start failed before it
      // answers: the CLI waits for condition=removed and would otherwise hang.
      if (attempted) await this.autoRemoveAfterFailedStart(r0.Id);
      throw e;
    }
  }

  /** At restore: a running container's log keeps being written and rotated (its json-file writer started again if it died). */
  async keepLogging(r: ContainerRecord): Promise<void> {
    const lc = logConfigOf(r);
    if (lc.Type === 'json-file' && r.logWriterPid !== undefined) {
      const jsonLog = this.core.jsonLogPath(r.Id);
      if (await isLogWriterAlive(r.logWriterPid, jsonLog)) return;
      this.core.log.warn({ id: r.Id }, 'the json-file log writer is gone; starting it again on the same FIFO');
      const pid = await startLogWriter(logFifoPath(this.core.bundleDir(r.Id)), jsonLog, rotationOf(lc)!);
      await this.core.update(r.Id, (x) => {
        x.logWriterPid = pid;
      });
      return;
    }
    this.core.rotator.watch(r.Id, this.core.logPath(r), this.core.bundleDir(r.Id), rotationOf(lc));
  }

  async autoRemoveAfterFailedStart(id: string): Promise<void> {
    const rec = (await this.core.records.get(id))?.value;
    if (!rec || rec.State.Running || !rec.HostConfig.AutoRemove) return;
    await this.removeRecord(rec).catch((e) =>
      this.core.log.warn({ id, err: (e as Error).message }, 'auto-remove after a failed start failed'),
    );
  }

  async startLocked(r: ContainerRecord, since?: number): Promise<void> {
    const id = r.Id;
    this.core.tornDown.delete(id); // a start makes new state to tear down
    const cdir = this.core.containerDir(id);
    const bundle = this.core.bundleDir(id);
    const rootfs = rootfsPaths(cdir);
    const undo: Array<() => Promise<unknown>> = [];
    let conmonPid = 0;
    // Where a start spends its time, logged at debug level (ms per phase).
    const phases: Record<string, number> = {};
    let mark = performance.now();
    if (since !== undefined) phases.prelude = Math.round((mark - since) * 10) / 10;
    const lap = (name: string): void => {
      const t = performance.now();
      phases[name] = Math.round((t - mark) * 10) / 10;
      mark = t;
    };
    let letEndpointsGo = (): void => undefined;
    // How long one of the steps run side by side took (from the start of the group).
    const took = async <T>(name: string, step: Promise<T>): Promise<T> => {
      const t0 = performance.now();
      try {
        return await step;
      } finally {
        phases[name] = Math.round((performance.now() - t0) * 10) / 10;
      }
    };
    try {
      const mode = r.HostConfig.NetworkMode ?? 'bridge';
      const spec = sandboxSpec({
        id,
        name: r.Name,
        config: r.Config,
        hostConfig: r.HostConfig,
        endpoints: r.EndpointsConfig,
        dir: cdir,
        networkMode: mode,
      });
      // json-file: conmon writes into the writer's FIFO (json-log-writer.ts); local: conmon's k8s-file; none: nothing.
      const logType = logConfigOf(r).Type;
      const jsonLog = this.core.jsonLogPath(id);
      const conmonLog = logType === 'json-file' ? logFifoPath(bundle) : logType === 'none' ? '' : this.core.logPath(r);
      // The sandbox: runc's create needs only its namespace and name files, so the endpoints (veth,
      // addresses, firewall, DNS) are made while runc creates the container; the process starts after both.
      // The endpoints wait until conmon is started: until then the event loop has the start's own path to run.
      let namespaceReady!: (h: SandboxHandle) => void;
      const namespace = new Promise<SandboxHandle>((res) => (namespaceReady = res));
      const endpointsMayGo = new Promise<void>((res) => (letEndpointsGo = res));
      const sandboxMade = took(
        'network',
        this.core.networks.createSandbox(spec, {
          onNamespace: (h) => {
            namespaceReady(h);
            return endpointsMayGo;
          },
        }),
      );
      // Three preparations that need nothing of each other run side by side (each mostly waits: on
      // netlink and nft, on a process start): the root filesystem, the sandbox's namespace, and the
      // bundle dir with the json-file writer. Their undos keep this order whatever ends first.
      const [mounted, sandboxed, bundled] = await Promise.allSettled([
        took('rootfs', (async () => mountRootfs(rootfs, await this.core.images.lowerDirs(r.ImageID)))()),
        Promise.race([namespace, sandboxMade]),
        took(
          'bundle',
          (async () => {
            // Synchronous: a few metadata calls of microseconds each, where every thread-pool round trip is
            // a wait on the start's path under load.
            rmSync(bundle, { recursive: true, force: true });
            mkdirSync(bundle, { recursive: true, mode: 0o700 });
            await this.core.runDirs();
            rmSync(join(this.core.exitDir, id), { force: true });
            if (logType !== 'json-file') return undefined;
            // Not waited for here: its start overlaps conmon's (checked after conmon, below).
            return spawnLogWriter(conmonLog, jsonLog, rotationOf(logConfigOf(r))!);
          })(),
        ),
      ]);
      if (mounted.status === 'fulfilled') undo.push(() => unmountRootfs(rootfs));
      // (waits for a sandbox still being made: it holds the sandbox's lock)
      if (sandboxed.status === 'fulfilled') undo.push(() => this.core.networks.deleteSandbox(id));
      undo.push(() => rm(bundle, { recursive: true, force: true }));
      const writer = bundled.status === 'fulfilled' ? bundled.value : undefined;
      const logWriterPid = writer?.pid;
      if (writer) undo.push(() => stopLogWriter(writer.pid, jsonLog));
      // A writer that dies before opening its FIFO would leave conmon waiting in its open: let conmon through.
      const unblocked = writer?.ready.then(
        () => undefined,
        () => unblockFifo(conmonLog),
      );
      lap('prepare');
      if (mounted.status === 'rejected') throw mounted.reason;
      if (sandboxed.status === 'rejected') throw sandboxed.reason;
      if (bundled.status === 'rejected') throw bundled.reason;
      const paths = sandboxed.value;

      await prepareMounts(this.core.volumes, r.MountPoints ?? [], rootfs.merged);
      undo.push(() => releaseMounts(this.core.volumes, r.MountPoints));
      lap('mounts');

      const user = resolveUser(
        rootfs.merged,
        r.Config.User,
        (r.HostConfig.GroupAdd as string[] | null | undefined) ?? [],
      );
      const tty = !!r.Config.Tty;
      // --init: Docker's docker-init (tini) as PID 1, bind-mounted read-only, reaping and forwarding signals.
      const init = r.HostConfig.Init ? await initBinary() : undefined;
      const initMounts = init
        ? [{ destination: INIT_PATH, type: 'bind', source: init, options: ['rbind', 'ro', 'rprivate'] }]
        : [];
      const args = init ? [INIT_PATH, '--', r.Path, ...r.Args] : [r.Path, ...r.Args];
      const env = [...(r.Config.Env ?? [])];
      if (!env.some((e) => e.startsWith('HOSTNAME='))) env.push(`HOSTNAME=${spec.hostname}`);
      if (tty && !env.some((e) => e.startsWith('TERM='))) env.push('TERM=xterm');
      if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${user.home}`);
      const caps = capabilities(
        !!r.HostConfig.Privileged,
        r.HostConfig.CapAdd ?? [],
        (r.HostConfig.CapDrop as string[] | undefined) ?? [],
      );
      const oci = bundleSpec({
        id,
        rootfs: rootfs.merged,
        process: processSpec({ args, env, cwd: r.Config.WorkingDir || '/', tty, user, caps }),
        hostname: spec.hostname,
        domainname: spec.domainname,
        netnsPath: paths.netnsPath,
        hostsPath: paths.hostsPath,
        hostnamePath: paths.hostnamePath,
        resolvConfPath: paths.resolvConfPath,
        privileged: !!r.HostConfig.Privileged,
        sysctls: { ...(r.HostConfig.Sysctls ?? {}) },
        readonlyRootfs: !!r.HostConfig.ReadonlyRootfs,
        shmSize: typeof r.HostConfig.ShmSize === 'number' ? r.HostConfig.ShmSize : undefined,
        userMounts: [...ociMounts(r.MountPoints ?? []), ...initMounts],
        limits: ociResources(r.HostConfig as ResourceConfig),
        deviceRules: ((r.HostConfig.DeviceCgroupRules as string[] | null | undefined) ?? []).map(parseDeviceRule),
      });
      writeFileSync(join(bundle, 'config.json'), JSON.stringify(oci));
      undo.push(() => this.core.runc(['delete', '--force', id]).catch(() => undefined));
      lap('spec');
      const stdin = !!r.Config.OpenStdin;
      const created = await conmonCreate(this.core.paths, {
        id,
        cuuid: ContainerCore.cuuid(id),
        name: r.Name.replace(/^\//, ''),
        bundle,
        logPath: conmonLog,
        logIsFifo: logType === 'json-file',
        exitDir: this.core.exitDir,
        tty,
        stdin,
        leaveStdinOpen: tty || !r.Config.StdinOnce,
        conmonPidFile: join(bundle, 'conmon.pid'),
        pidFile: join(bundle, 'pidfile'),
        phases,
        // The sandbox's endpoints are made while conmon runs runc create.
        onRuncCreate: letEndpointsGo,
      })
        .catch(async (e: unknown) => {
          letEndpointsGo(); // (conmon may have failed before it ran runc: the sandbox must not wait for ever)
          // A sandbox that failed meanwhile (a port already allocated) took its namespace with it, and runc's
          // create failed for that: the sandbox's error is the cause to report.
          throw await sandboxMade.then(
            () => e,
            (sandboxError: unknown) => sandboxError,
          );
        })
        .finally(async () => (await unblocked)?.close());
      mark = performance.now();
      conmonPid = created.conmonPid;
      undo.push(async () => {
        if (conmonPid) {
          try {
            process.kill(created.pid, 'SIGKILL');
          } catch {
            // gone
          }
        }
      });
      // The json-file writer started beside conmon: it must be writing before the process runs.
      await writer?.ready;
      lap('logger');
      // Attach whoever waits, before the process runs: no output is lost.
      for (const s of this.core.pendingAttach.get(id) ?? []) {
        await s
          .connect(this.core.attachPath(ContainerCore.cuuid(id)))
          .catch((e) => this.core.log.warn({ id, err: (e as Error).message }, 'attach failed'));
        this.core.liveSessions.add(s);
      }
      this.core.pendingAttach.delete(id);
      lap('attach');
      // The sandbox's endpoints, made while runc created the container, must be there before the process runs.
      const sandbox = await sandboxMade;
      lap('sandbox');
      // runc's start is a read of its exec fifo: done here, without a second runc process (runc-start.ts).
      const fifo = execFifoOf(this.core.paths.runcRoot, id);
      if (fifo) await startThroughFifo(fifo, created.pid);
      else await this.core.runc(['start', id]);
      lap('start');
      const now = new Date().toISOString();
      const next = await this.core.update(id, (x) => {
        x.State = {
          ...x.State,
          Status: 'running',
          Running: true,
          Paused: false,
          Restarting: false,
          OOMKilled: false,
          Dead: false,
          Pid: created.pid,
          ExitCode: 0,
          Error: '',
          StartedAt: now,
          FinishedAt: ZERO_TIME,
        };
        if (probeOf(x.Config.Healthcheck as HealthConfig | undefined)) x.State.Health = initialHealth();
        else delete x.State.Health;
        x.conmonPid = created.conmonPid;
        if (logWriterPid) x.logWriterPid = logWriterPid;
        else delete x.logWriterPid;
        x.hasBeenStarted = true;
        x.HostsPath = sandbox.hostsPath;
        x.HostnamePath = sandbox.hostnamePath;
        x.ResolvConfPath = sandbox.resolvConfPath;
      });
      this.core.publish(next, 'start');
      if (logType !== 'json-file') this.core.rotator.watch(id, conmonLog, bundle, rotationOf(logConfigOf(r)));
      this.core.healthOps.startHealthMonitor(next);
      lap('record');
      this.core.monitorOps.ensureWatching();
      // It may have exited already (a quick command): look now rather than at the next poll. Not awaited:
      // the answer does not depend on it (an exit is handled under the container's lock, after this start).
      void (async () => {
        if (
          !(await isConmonAlive(created.conmonPid, id)) ||
          (await this.core.monitorOps.exitFileCode(id)) !== undefined
        )
          await this.core.monitorOps.handleExit(id);
      })().catch((e) => this.core.log.error({ id, err: (e as Error).message }, 'handling the exit failed'));
      if (since !== undefined) phases.total = Math.round((performance.now() - since) * 10) / 10;
      this.core.log.debug({ id, phases }, 'container started');
    } catch (e) {
      // A sandbox still waiting to make its endpoints must finish (or fail) before its undo can run.
      letEndpointsGo();
      const msg = e instanceof CoveError ? e.message : `failed to create task for container: ${(e as Error).message}`;
      this.core.log.warn({ id, err: msg }, 'start failed; undoing');
      for (const u of undo.reverse()) {
        try {
          await u();
        } catch (ue) {
          this.core.log.warn({ id, err: (ue as Error).message }, 'undo step failed');
        }
      }
      await rm(join(this.core.exitDir, id), { force: true });
      await this.core
        .update(id, (x) => {
          x.State = {
            ...x.State,
            Status: x.hasBeenStarted ? 'exited' : 'created',
            Running: false,
            Pid: 0,
            Error: msg,
            ExitCode: startFailureExitCode(msg),
          };
          delete x.conmonPid;
        })
        .catch(() => undefined);
      // Sessions that waited for this start end with it.
      for (const s of this.core.pendingAttach.get(id) ?? []) s.endExited();
      this.core.pendingAttach.delete(id);
      if (e instanceof CoveError) throw e;
      // Docker: a command that is missing or cannot run is the caller's mistake (400), anything else 500.
      throw new CoveError(msg, startFailureExitCode(msg) === 128 ? 500 : 400);
    }
  }

  waitExit(id: string, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t =
        timeoutMs >= 0
          ? setTimeout(() => {
              this.core.bus.off(`exit:${id}`, on);
              resolve(false);
            }, timeoutMs)
          : undefined;
      const on = (): void => {
        if (t) clearTimeout(t);
        resolve(true);
      };
      this.core.bus.once(`exit:${id}`, on);
    });
  }

  /** Sends a signal to the container's init process and waits up to `ms` for it to exit (it may already have). */
  async signalAndWait(r: ContainerRecord, sig: number, ms: number): Promise<boolean> {
    const waiting = this.waitExit(r.Id, ms);
    if (sig !== 9 && sig !== 0) await untilExecuted(r.State.Pid);
    try {
      process.kill(r.State.Pid, sig);
    } catch {
      // Already gone: the exit is being handled.
    }
    // This container only: a poll of all of them made each stop/kill/rm cost grow with their number.
    void this.core.monitorOps.checkOne(r.Id).catch(() => undefined);
    const t0 = Date.now();
    const exitedNow = await Promise.race([
      waiting,
      (async () => {
        // Exits can be missed by both watch and poll timing; check directly too.
        while (Date.now() - t0 < ms || ms < 0) {
          await new Promise((res) => setTimeout(res, 200));
          const cur = (await this.core.records.get(r.Id))?.value;
          if (!cur || !cur.State.Running) return true;
          if (
            (await this.core.monitorOps.exitFileCode(r.Id)) !== undefined ||
            !(await isConmonAlive(cur.conmonPid ?? 0, r.Id))
          )
            void this.core.monitorOps
              .handleExit(r.Id)
              .catch((e) => this.core.log.error({ id: r.Id, err: (e as Error).message }, 'handling the exit failed'));
        }
        return false;
      })(),
    ]);
    return exitedNow;
  }

  async stop(idOrName: string, opts: { timeout?: number; signal?: string } = {}): Promise<void> {
    const r = await this.core.get(idOrName);
    if (await this.core.monitorOps.cancelRestart(r)) {
      this.core.publish(r, 'stop');
      return;
    }
    if (!r.State.Running) throw new NotModified();
    const sig = signalNumber(opts.signal, r.Config.StopSignal || 'SIGTERM');
    const timeout = opts.timeout ?? (typeof r.Config.StopTimeout === 'number' ? r.Config.StopTimeout : 10);
    await this.thaw(r);
    await this.core.update(r.Id, (x) => {
      x.stoppedByUser = true;
    });
    this.core.publish(r, 'kill', { signal: String(sig) });
    let done = await this.signalAndWait(r, sig, timeout < 0 ? -1 : timeout * 1000);
    if (!done) {
      this.core.log.info({ id: r.Id, timeout }, 'container did not stop in time; sending SIGKILL');
      this.core.publish(r, 'kill', { signal: '9' });
      done = await this.signalAndWait(r, 9, 30_000);
    }
    // Let the exit handling finish before answering.
    await this.core.withLock(r.Id, async () => undefined);
    const cur = (await this.core.records.get(r.Id))?.value;
    this.core.publish(cur ?? r, 'stop');
  }

  async kill(idOrName: string, signal?: string): Promise<void> {
    const r = await this.core.get(idOrName);
    const sig = signalNumber(signal, 'SIGKILL');
    if (!r.State.Running) throw new Conflict(`Container ${r.Id} is not running`);
    await this.core.update(r.Id, (x) => {
      x.stoppedByUser = true;
    });
    if (sig === 9 || sig === 15) await this.thaw(r);
    if (sig !== 9) await untilExecuted(r.State.Pid);
    try {
      process.kill(r.State.Pid, sig);
    } catch (e) {
      throw new Conflict(`Cannot kill container: ${r.Id}: ${(e as Error).message}`);
    }
    this.core.publish(r, 'kill', { signal: String(sig) });
    if (sig === 9) {
      await this.signalAndWait(r, 0, 10_000).catch(() => undefined);
      await this.core.withLock(r.Id, async () => undefined);
    }
  }

  async restart(idOrName: string, opts: { timeout?: number } = {}): Promise<void> {
    const r = await this.core.get(idOrName);
    if (r.State.Running) {
      try {
        await this.stop(r.Id, { timeout: opts.timeout });
      } catch (e) {
        if (!(e instanceof NotModified)) throw e;
      }
    }
    await this.start(r.Id);
    const cur = await this.core.get(r.Id);
    this.core.publish(cur, 'restart');
  }

  async remove(idOrName: string, opts: { force?: boolean; volumes?: boolean } = {}): Promise<void> {
    const r = await this.core.get(idOrName);
    if (r.State.Status === 'restarting') {
      if (!opts.force) {
        throw new Conflict(
          `You cannot remove a restarting container ${r.Id}. Stop the container before attempting removal or force remove`,
        );
      }
      await this.core.monitorOps.cancelRestart(r);
    }
    if (r.State.Running) {
      if (!opts.force) {
        throw new Conflict(
          `You cannot remove a running container ${r.Id}. Stop the container before attempting removal or force remove`,
        );
      }
      await this.core.update(r.Id, (x) => {
        x.stoppedByUser = true;
        x.HostConfig.AutoRemove = false;
      });
      this.core.publish(r, 'kill', { signal: '9' });
      await this.thaw(r).catch(() => undefined);
      const done = await this.signalAndWait(r, 9, 15_000);
      if (!done) throw new Conflict(`Could not kill running container ${r.Id}, cannot remove`);
      await this.core.withLock(r.Id, async () => undefined);
    }
    const cur = await this.core.get(r.Id);
    await this.removeRecord(cur, { volumes: !!opts.volumes });
  }

  async removeRecord(r: ContainerRecord, opts: { volumes?: boolean } = {}): Promise<void> {
    await this.core.withLock(r.Id, async () => {
      const cur = (await this.core.records.get(r.Id))?.value;
      if (!cur) return;
      if (cur.State.Running)
        throw new Conflict(
          `You cannot remove a running container ${r.Id}. Stop the container before attempting removal or force remove`,
        );
      await this.core.update(r.Id, (x) => {
        x.State.Status = 'removing';
      });
      // Defensive: whatever a crash may have left (not again right after the exit's own teardown: a second
      // `runc delete` process per rm).
      if (!this.core.tornDown.delete(r.Id)) await this.core.monitorOps.teardown(r.Id).catch(() => undefined);
      this.core.tornDown.delete(r.Id);
      this.core.healthOps.stopHealthMonitor(r.Id);
      await this.core.execs.removeForContainer(r.Id);
      for (const s of this.core.pendingAttach.get(r.Id) ?? []) s.endExited();
      this.core.pendingAttach.delete(r.Id);
      await rm(this.core.containerDir(r.Id), { recursive: true, force: true });
      await this.core.records.delete(r.Id);
      if (opts.volumes) await removeAnonymous(this.core.volumes, cur.MountPoints);
      this.core.publish(cur, 'destroy');
      this.core.bus.emit(`removed:${r.Id}`, cur.State.ExitCode);
      this.core.bus.emit(`exit:${r.Id}`, cur.State.ExitCode);
    });
  }

  /** docker container prune: every stopped container the filters keep (prune.ts), with the space of its writable layer. */
  async prune(filters: Filters = {}): Promise<{ ContainersDeleted: string[] | null; SpaceReclaimed: number }> {
    const wanted = prunePredicate(filters);
    const deleted: string[] = [];
    let space = 0;
    for (const { value: r } of await this.core.records.list()) {
      if (!wanted({ Id: r.Id, Created: r.Created, Labels: r.Config.Labels ?? {}, Status: r.State.Status })) continue;
      const size = await dirSize(rootfsPaths(this.core.containerDir(r.Id)).upper);
      try {
        await this.removeRecord(r);
        deleted.push(r.Id);
        space += size;
      } catch (e) {
        // Started meanwhile: not prunable any more.
        this.core.log.info({ id: r.Id, err: (e as Error).message }, 'prune skipped a container');
      }
    }
    this.core.events.publish('container', 'prune', '', { reclaimed: String(space) });
    return { ContainersDeleted: deleted.length ? deleted : null, SpaceReclaimed: space };
  }

  async wait(
    idOrName: string,
    condition: 'not-running' | 'next-exit' | 'removed' = 'not-running',
  ): Promise<{ StatusCode: number; Error?: { Message: string } | null }> {
    const r = await this.core.get(idOrName);
    const result = async (): Promise<{ StatusCode: number; Error: { Message: string } | null }> => {
      const cur = (await this.core.records.get(r.Id))?.value;
      const st = cur?.State ?? r.State;
      return { StatusCode: st.ExitCode, Error: st.Error ? { Message: st.Error } : null };
    };
    if (condition === 'not-running' && !r.State.Running) return result();
    if (condition === 'removed') {
      const code = await new Promise<number>((resolve) => {
        this.core.bus.once(`removed:${r.Id}`, (c: number) => resolve(c));
      });
      return { StatusCode: code, Error: null };
    }
    const code = await new Promise<number>((resolve) => {
      this.core.bus.once(`exit:${r.Id}`, (c: number) => resolve(c));
    });
    const res = await result();
    return { ...res, StatusCode: res.StatusCode ?? code };
  }

  async pause(idOrName: string): Promise<void> {
    const r0 = await this.core.get(idOrName);
    await this.core.withLock(r0.Id, async () => {
      const r = await this.core.get(r0.Id);
      if (!r.State.Running) throw new Conflict(`Container ${r.Id} is not running`);
      if (r.State.Paused) throw new Conflict(`Container ${r.Id} is already paused`);
      if (r.State.Restarting)
        throw new Conflict(`Container ${r.Id} is restarting, wait until the container is running`);
      await this.core.runc(['pause', r.Id]).catch((e) => {
        throw new CoveError(`Cannot pause container ${r.Id}: ${(e as Error).message}`, 500);
      });
      const next = await this.core.update(r.Id, (x) => {
        x.State.Paused = true;
        x.State.Status = 'paused';
      });
      this.core.publish(next, 'pause');
    });
  }

  async unpause(idOrName: string): Promise<void> {
    const r0 = await this.core.get(idOrName);
    await this.core.withLock(r0.Id, async () => {
      const r = await this.core.get(r0.Id);
      if (!r.State.Paused) throw new Conflict(`Container ${r.Id} is not paused`);
      await this.thaw(r);
      this.core.publish(await this.core.get(r.Id), 'unpause');
    });
  }

  /** Resumes a frozen container (signals to a frozen cgroup wait until it thaws: stop/kill/rm thaw first, as Docker does). */
  async thaw(r: ContainerRecord): Promise<void> {
    if (!r.State.Paused) return;
    await this.core.runc(['resume', r.Id]).catch((e) => {
      throw new CoveError(`Cannot unpause container ${r.Id}: ${(e as Error).message}`, 500);
    });
    await this.core.update(r.Id, (x) => {
      x.State.Paused = false;
      if (x.State.Running) x.State.Status = 'running';
    });
  }
}

/** Where --init's binary appears inside the container (Docker's path). */
const INIT_PATH = '/sbin/docker-init';

/** The init binary: Docker's docker-init when installed, else Debian's static tini (which it is). */
async function initBinary(): Promise<string> {
  for (const p of ['/usr/local/bin/docker-init', '/usr/bin/docker-init', '/usr/bin/tini-static']) {
    try {
      await access(p, fsConstants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  throw new CoveError('exec: "docker-init": executable file not found in $PATH (install tini)', 500);
}
