/**
 * ContainerManager: Docker's container lifecycle on runc under conmon.
 *
 * Layout of one container:
 *  - `<dataRoot>/containers/<id>/`: the overlay upper/work dirs and mountpoint
 *    (`diff`, `work`, `merged`), the log (`<id>-json.log`, or `ctr.log` for the local driver), and the sandbox
 *    files the network layer writes (hosts, hostname, resolv.conf).
 *  - `<execRoot>/containers/<id>/`: the OCI bundle (config.json), pid files,
 *    conmon's ctl FIFO and attach socket; exec sessions under `exec/<execId>/`.
 *  - `<execRoot>/exits/<id>`: conmon's exit file; `<execRoot>/runc`: runc's state.
 * Records live in the Store under `runtime/containers/<id>`.
 *
 * This class is the facade; the work is done by its parts in manager/: core.ts
 * (shared state, paths, lock, lookups), create.ts, lifecycle.ts (start, stop,
 * kill, remove, wait), monitor.ts (exits and restart policies), health-monitor.ts,
 * exec.ts, io.ts (logs, attach, stats, top), files.ts (cp, diff, export, commit),
 * network.ts, views.ts (inspect, list) and restore.ts.
 */
import type { DockerEndpointSettings, Filters } from '../../network/types.js';
import type {
  AttachOptions,
  ContainerService,
  DockerContainerConfig,
  DockerContainerCreate,
  DockerContainerInspect,
  DockerContainerSummary,
  DockerExecCreate,
  IoSession,
  LogEntry,
  LogOptions,
} from '../types.js';
import type { VolumeStore } from '../volumes/store.js';
import type { FsChange } from './fs-changes.js';
import type { PathStat } from './archive.js';
import type { Readable } from 'node:stream';
import type { ResourceConfig } from './resources.js';
import { ContainerCore, type ContainerManagerOptions } from './manager/core.js';
import { CreateOps } from './manager/create.js';
import { LifecycleOps } from './manager/lifecycle.js';
import { MonitorOps } from './manager/monitor.js';
import { HealthOps } from './manager/health-monitor.js';
import { ExecOps } from './manager/exec.js';
import { IoOps } from './manager/io.js';
import { FileOps } from './manager/files.js';
import { NetworkOps } from './manager/network.js';
import { ViewOps } from './manager/views.js';
import { RestoreOps } from './manager/restore.js';

export { signalName, signalNumber, type ContainerManagerOptions, type ContainerRecord } from './manager/core.js';
export { startFailureExitCode } from './manager/lifecycle.js';

export class ContainerManager implements ContainerService {
  private readonly core: ContainerCore;

  constructor(opts: ContainerManagerOptions) {
    const core = new ContainerCore(opts);
    core.createOps = new CreateOps(core);
    core.lifecycleOps = new LifecycleOps(core);
    core.monitorOps = new MonitorOps(core);
    core.healthOps = new HealthOps(core);
    core.execOps = new ExecOps(core);
    core.ioOps = new IoOps(core);
    core.fileOps = new FileOps(core);
    core.networkOps = new NetworkOps(core);
    core.viewOps = new ViewOps(core);
    core.restoreOps = new RestoreOps(core);
    this.core = core;
  }

  get volumes(): VolumeStore {
    return this.core.volumes;
  }

  resolve(idOrName: string): Promise<{ id: string; name: string }> {
    return this.core.resolve(idOrName);
  }

  create(name: string | undefined, body: DockerContainerCreate): Promise<{ Id: string; Warnings: string[] }> {
    return this.core.createOps.create(name, body);
  }

  start(idOrName: string): Promise<void> {
    return this.core.lifecycleOps.start(idOrName);
  }

  /**
   * Daemon start, after the network controller restored its state: starts the
   * containers restore() found due by their restart policies.
   */
  resumeRestarts(): void {
    return this.core.monitorOps.resumeRestarts();
  }

  stop(idOrName: string, opts: { timeout?: number; signal?: string } = {}): Promise<void> {
    return this.core.lifecycleOps.stop(idOrName, opts);
  }

  kill(idOrName: string, signal?: string): Promise<void> {
    return this.core.lifecycleOps.kill(idOrName, signal);
  }

  restart(idOrName: string, opts: { timeout?: number } = {}): Promise<void> {
    return this.core.lifecycleOps.restart(idOrName, opts);
  }

  remove(idOrName: string, opts: { force?: boolean; volumes?: boolean } = {}): Promise<void> {
    return this.core.lifecycleOps.remove(idOrName, opts);
  }

  /**
   * docker update: restart policy and resource limits; a running container's
   * cgroups change at once (runc update), the record for its next starts.
   */
  updateContainer(
    idOrName: string,
    body: ResourceConfig & { RestartPolicy?: { Name?: string; MaximumRetryCount?: number } },
  ): Promise<{ Warnings: string[] }> {
    return this.core.createOps.updateContainer(idOrName, body);
  }

  /** docker container prune: every stopped container the filters keep (prune.ts), with the space of its writable layer. */
  prune(filters: Filters = {}): Promise<{ ContainersDeleted: string[] | null; SpaceReclaimed: number }> {
    return this.core.lifecycleOps.prune(filters);
  }

  rename(idOrName: string, newName: string): Promise<void> {
    return this.core.createOps.rename(idOrName, newName);
  }

  wait(
    idOrName: string,
    condition: 'not-running' | 'next-exit' | 'removed' = 'not-running',
  ): Promise<{ StatusCode: number; Error?: { Message: string } | null }> {
    return this.core.lifecycleOps.wait(idOrName, condition);
  }

  logs(idOrName: string, opts: LogOptions): AsyncIterable<LogEntry> {
    return this.core.ioOps.logs(idOrName, opts);
  }

  pause(idOrName: string): Promise<void> {
    return this.core.lifecycleOps.pause(idOrName);
  }

  unpause(idOrName: string): Promise<void> {
    return this.core.lifecycleOps.unpause(idOrName);
  }

  top(idOrName: string, psArgs: string): Promise<{ Titles: string[]; Processes: string[][] }> {
    return this.core.ioOps.top(idOrName, psArgs);
  }

  /**
   * Docker's stats samples: one a second while `stream`, else one (with
   * precpu_stats from a sample a second earlier unless `oneShot`).
   */
  stats(idOrName: string, opts: { stream: boolean; oneShot: boolean }): AsyncGenerator<Record<string, unknown>> {
    return this.core.ioOps.stats(idOrName, opts);
  }

  archiveStat(idOrName: string, path: string): Promise<PathStat> {
    return this.core.fileOps.archiveStat(idOrName, path);
  }

  /** GET archive: the stat header value and a tar; the rootfs stays mounted until the tar has been read. */
  archiveGet(
    idOrName: string,
    path: string,
    consume: (statHeader: string, tar: Readable) => Promise<void>,
  ): Promise<void> {
    return this.core.fileOps.archiveGet(idOrName, path, consume);
  }

  archivePut(idOrName: string, path: string, input: Readable, opts: { copyUIDGID?: boolean }): Promise<void> {
    return this.core.fileOps.archivePut(idOrName, path, input, opts);
  }

  /** docker diff: the writable layer's changes against the image (fs-changes.ts). */
  changes(idOrName: string): Promise<FsChange[] | null> {
    return this.core.fileOps.changes(idOrName);
  }

  /** docker export: a tar of the container's root filesystem (its volumes not included). */
  exportRootfs(idOrName: string, consume: (tar: Readable) => Promise<void>): Promise<void> {
    return this.core.fileOps.exportRootfs(idOrName, consume);
  }

  attach(idOrName: string, opts: AttachOptions): Promise<IoSession> {
    return this.core.ioOps.attach(idOrName, opts);
  }

  resize(idOrName: string, rows: number, cols: number): Promise<void> {
    return this.core.ioOps.resize(idOrName, rows, cols);
  }

  execCreate(idOrName: string, body: DockerExecCreate): Promise<{ Id: string }> {
    return this.core.execOps.execCreate(idOrName, body);
  }

  execStart(execId: string, opts: { Detach?: boolean; Tty?: boolean }): Promise<IoSession | undefined> {
    return this.core.execOps.execStart(execId, opts);
  }

  execInspect(execId: string): Promise<Record<string, unknown>> {
    return this.core.execOps.execInspect(execId);
  }

  execResize(execId: string, rows: number, cols: number): Promise<void> {
    return this.core.execOps.execResize(execId, rows, cols);
  }

  connectNetwork(idOrName: string, network: string, settings: DockerEndpointSettings): Promise<void> {
    return this.core.networkOps.connectNetwork(idOrName, network, settings);
  }

  disconnectNetwork(idOrName: string, network: string, force: boolean): Promise<void> {
    return this.core.networkOps.disconnectNetwork(idOrName, network, force);
  }

  inspect(idOrName: string): Promise<DockerContainerInspect> {
    return this.core.viewOps.inspect(idOrName);
  }

  list(opts: { all?: boolean; limit?: number; filters?: Filters } = {}): Promise<DockerContainerSummary[]> {
    return this.core.viewOps.list(opts);
  }

  restore(): Promise<void> {
    return this.core.restoreOps.restore();
  }

  /**
   * docker commit: the container's writable layer on top of its image, with
   * its run config (the body's keys over the container's) and the `changes`
   * (Dockerfile instructions) applied. A running container is paused meanwhile
   * unless `pause` is false, as Docker does.
   */
  commit(
    idOrName: string,
    opts: {
      repo?: string;
      tag?: string;
      comment?: string;
      author?: string;
      changes?: string[];
      pause?: boolean;
      config?: Partial<DockerContainerConfig>;
    },
  ): Promise<{ Id: string }> {
    return this.core.fileOps.commit(idOrName, opts);
  }

  async close(): Promise<void> {
    this.core.closed = true;
    this.core.execs.close();
    this.core.rotator.close();
    this.core.watcher?.close();
    this.core.watcher = undefined;
    if (this.core.poller) clearInterval(this.core.poller);
    this.core.poller = undefined;
    for (const s of this.core.liveSessions) s.close();
    this.core.liveSessions.clear();
    for (const set of this.core.pendingAttach.values()) for (const s of set) s.close();
    this.core.pendingAttach.clear();
    this.core.bus.removeAllListeners();
    // Wait for in-flight operations so the store is not closed under them.
    await Promise.allSettled([...this.core.locks.values()]);
  }
}
