/**
 * ContainerManager's shared state: its options, the records in the store, the paths of one container, the
 * per-container lock, the event helpers, and the small functions several parts use (signals, log config).
 * The operations live in the parts beside it; src/runtime/containers/manager.ts puts them together.
 */
import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, type FSWatcher } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Collection, type Store } from '../../../store/store.js';
import { InvalidParameter, NotFound } from '../../../common/errors.js';
import { silentLogger, type Logger } from '../../../common/log.js';
import type { DaemonConfig } from '../../../common/config.js';
import type { EventBus } from '../../../common/events.js';
import type { DockerEndpointSettings, NetworkService } from '../../../network/types.js';
import type { DockerContainerConfig, DockerContainerState, DockerHostConfig } from '../../types.js';
import type { ImageStore } from '../../images/store.js';
import { AttachSession } from '../attach.js';
import type { ConmonPaths } from '../conmon.js';
import type { MountPoint } from '../mounts.js';
import { VolumeStore } from '../../volumes/store.js';
import { ExecRecords } from '../exec-records.js';
import { DEFAULT_LOG_DRIVER, type LogConfig } from '../log-config.js';
import { LogRotator } from '../log-rotation.js';
import type { CreateOps } from './create.js';
import type { LifecycleOps } from './lifecycle.js';
import type { MonitorOps } from './monitor.js';
import type { HealthOps } from './health-monitor.js';
import type { ExecOps } from './exec.js';
import type { IoOps } from './io.js';
import type { FileOps } from './files.js';
import type { NetworkOps } from './network.js';
import type { ViewOps } from './views.js';
import type { RestoreOps } from './restore.js';

export interface ContainerRecord {
  Id: string;
  Name: string;
  Created: string;
  Path: string;
  Args: string[];
  /** The image reference as given at create. */
  ImageRef: string;
  ImageID: string;
  Config: DockerContainerConfig;
  HostConfig: DockerHostConfig;
  EndpointsConfig: Record<string, DockerEndpointSettings>;
  State: DockerContainerState;
  RestartCount: number;
  HostsPath: string;
  HostnamePath: string;
  ResolvConfPath: string;
  /** The live monitor, while running. */
  conmonPid?: number;
  /** The json-file driver's writer (json-log-writer.ts), while running. */
  logWriterPid?: number;
  /** Set by stop/kill from the user, so restart policies do not bring it back. */
  stoppedByUser?: boolean;
  hasBeenStarted?: boolean;
  /** Volumes, binds and tmpfs mounts (mounts.ts), decided at create. */
  MountPoints?: MountPoint[];
}

export interface ContainerManagerOptions {
  config: DaemonConfig;
  store: Store;
  images: ImageStore;
  networks: NetworkService;
  events: EventBus;
  log?: Logger;
  /** Path of conmon (default: conmon on PATH). */
  conmon?: string;
  /** How often to check monitors are alive besides watching the exit dir (ms). */
  pollMs?: number;
  /** The daemon's volumes (default: a VolumeStore on the same store and data root). */
  volumes?: VolumeStore;
}

export const run = promisify(execFile);

export const ZERO_TIME = '0001-01-01T00:00:00Z';

export function signalNumber(sig: string | number | undefined, fallback: string): number {
  const s = sig === undefined || sig === '' ? fallback : sig;
  if (typeof s === 'number' || /^\d+$/.test(String(s))) {
    const n = Number(s);
    if (n < 1 || n > 64) throw new InvalidParameter(`Invalid signal: ${s}`);
    return n;
  }
  let name = String(s).toUpperCase();
  if (!name.startsWith('SIG')) name = 'SIG' + name;
  const rt = /^SIGRTMIN(?:\+(\d+))?$/.exec(name) ?? /^SIGRTMAX(?:-(\d+))?$/.exec(name);
  if (rt) return name.startsWith('SIGRTMIN') ? 34 + Number(rt[1] ?? 0) : 64 - Number(rt[1] ?? 0);
  const n = (osConstants.signals as Record<string, number>)[name];
  if (!n) throw new InvalidParameter(`Invalid signal: ${s}`);
  return n;
}

export function signalName(n: number): string {
  for (const [k, v] of Object.entries(osConstants.signals)) if (v === n) return k;
  return String(n);
}

/** A record's log config (records made before log drivers existed have none: the default). */
export function logConfigOf(r: ContainerRecord): LogConfig {
  const lc = r.HostConfig.LogConfig as LogConfig | undefined;
  return lc?.Type ? lc : { Type: DEFAULT_LOG_DRIVER, Config: {} };
}

export class ContainerCore {
  readonly cfg: DaemonConfig;
  readonly records: Collection<ContainerRecord>;
  readonly images: ImageStore;
  readonly networks: NetworkService;
  readonly events: EventBus;
  readonly log: Logger;
  readonly paths: ConmonPaths;
  readonly exitDir: string;
  readonly bus = new EventEmitter();
  readonly locks = new Map<string, Promise<unknown>>();
  readonly pendingAttach = new Map<string, Set<AttachSession>>();
  readonly liveSessions = new Set<AttachSession>();
  readonly execs: ExecRecords;
  readonly rotator: LogRotator;
  readonly exiting = new Set<string>();
  /** Containers whose teardown (runc delete, unmount, sandbox, bundle) finished since they last started. */
  readonly tornDown = new Set<string>();
  watcher: FSWatcher | undefined;
  poller: NodeJS.Timeout | undefined;
  closed = false;
  /** Restarts found due while restore() runs, held until resumeRestarts(). */
  deferredRestarts: Array<() => void> | undefined;
  readonly pollMs: number;
  readonly volumes: VolumeStore;

  // The parts of the manager (src/runtime/containers/manager/*.ts), wired by ContainerManager's constructor.
  createOps!: CreateOps;
  lifecycleOps!: LifecycleOps;
  monitorOps!: MonitorOps;
  healthOps!: HealthOps;
  execOps!: ExecOps;
  ioOps!: IoOps;
  fileOps!: FileOps;
  networkOps!: NetworkOps;
  viewOps!: ViewOps;
  restoreOps!: RestoreOps;

  constructor(opts: ContainerManagerOptions) {
    this.cfg = opts.config;
    this.records = new Collection<ContainerRecord>(opts.store, 'runtime/containers');
    this.images = opts.images;
    this.networks = opts.networks;
    this.events = opts.events;
    this.log = opts.log ?? silentLogger;
    this.exitDir = join(this.cfg.execRoot, 'exits');
    this.paths = {
      conmon: opts.conmon ?? 'conmon',
      runtime: this.cfg.runtime && this.cfg.runtime !== 'runc' ? this.cfg.runtime : '/usr/sbin/runc',
      runcRoot: join(this.cfg.execRoot, 'runc'),
      socketDir: join(this.cfg.execRoot, 'cs'),
    };
    this.pollMs = opts.pollMs ?? 2000;
    this.execs = new ExecRecords(opts.store, this.log);
    this.rotator = new LogRotator(this.log);
    this.bus.setMaxListeners(0);
    this.volumes =
      opts.volumes ??
      new VolumeStore({ dataRoot: this.cfg.dataRoot, store: opts.store, events: opts.events, log: this.log });
    this.volumes.setUsage(async (name) => {
      const users = (await this.records.list())
        .map((r) => r.value)
        .filter((r) => r.MountPoints?.some((m) => m.Type === 'volume' && m.Name === name));
      return {
        all: users.map((r) => r.Id),
        running: users.filter((r) => r.State.Running && !this.exiting.has(r.Id)).map((r) => r.Id),
      };
    });
    this.images.setContainerUsage(async (imageId) =>
      (await this.records.list())
        .filter((r) => r.value.ImageID === imageId)
        .map((r) => ({ id: r.value.Id, running: r.value.State.Running })),
    );
  }

  private runDirsMade: Promise<void> | undefined;

  /** The exec root's dirs every container start needs (exit files, attach sockets, runc's state): made once. */
  runDirs(): Promise<void> {
    this.runDirsMade ??= (async () => {
      await mkdir(this.exitDir, { recursive: true });
      await mkdir(this.paths.socketDir, { recursive: true });
      await mkdir(this.paths.runcRoot, { recursive: true, mode: 0o700 });
    })().catch((e: unknown) => {
      this.runDirsMade = undefined;
      throw e;
    });
    return this.runDirsMade;
  }

  containerDir(id: string): string {
    return join(this.cfg.dataRoot, 'containers', id);
  }

  bundleDir(id: string): string {
    return join(this.cfg.execRoot, 'containers', id);
  }

  /**
   * Where a container's log is: json-file writes Docker's `<id>-json.log`
   * (json-log-writer.ts); `local` keeps conmon's k8s-file `ctr.log`, as did
   * json-file containers started before the writer existed (read as they are).
   */
  logPath(r: ContainerRecord): string {
    const dir = this.containerDir(r.Id);
    if (logConfigOf(r).Type !== 'json-file') return join(dir, 'ctr.log');
    const json = this.jsonLogPath(r.Id);
    if (r.logWriterPid === undefined && !existsSync(json) && existsSync(join(dir, 'ctr.log')))
      return join(dir, 'ctr.log');
    return json;
  }

  jsonLogPath(id: string): string {
    return join(this.containerDir(id), `${id}-json.log`);
  }

  /** conmon's attach-socket id: short enough for sun_path, unique enough in one daemon. */
  static cuuid(id: string): string {
    return id.slice(0, 32);
  }

  attachPath(cuuid: string): string {
    return join(this.paths.socketDir, cuuid, 'attach');
  }

  async withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(id, tail);
    void tail.then(() => {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    });
    return next;
  }

  attrs(r: ContainerRecord, extra: Record<string, string> = {}): Record<string, string> {
    return { ...(r.Config.Labels ?? {}), image: r.ImageRef, name: r.Name.replace(/^\//, ''), ...extra };
  }

  publish(r: ContainerRecord, action: string, extra: Record<string, string> = {}): void {
    this.events.publish('container', action, r.Id, this.attrs(r, extra));
  }

  async get(idOrName: string): Promise<ContainerRecord> {
    const q = idOrName.replace(/^\//, '');
    if (/^[0-9a-f]{64}$/.test(q)) {
      const hit = await this.records.get(q);
      if (hit) return hit.value;
    }
    // A scan of the shared (parsed once) records finds the ID; the caller gets its own copy.
    const all = await this.records.listShared();
    const own = async (id: string): Promise<ContainerRecord> => {
      const hit = await this.records.get(id);
      if (!hit) throw new NotFound(`No such container: ${idOrName}`);
      return hit.value;
    };
    const exact = all.find((r) => r.value.Id === q) ?? all.find((r) => r.value.Name === '/' + q);
    if (exact) return own(exact.id);
    if (/^[0-9a-f]+$/.test(q)) {
      const hits = all.filter((r) => r.value.Id.startsWith(q));
      if (hits.length === 1) return own(hits[0]!.id);
      if (hits.length > 1) throw new InvalidParameter(`multiple IDs found with provided prefix: ${q}`);
    }
    throw new NotFound(`No such container: ${idOrName}`);
  }

  async update(id: string, fn: (r: ContainerRecord) => void): Promise<ContainerRecord> {
    const next = await this.records.update(id, (cur) => {
      if (!cur) return undefined;
      const copy = structuredClone(cur);
      fn(copy);
      return copy;
    });
    if (!next) throw new NotFound(`No such container: ${id}`);
    return next;
  }

  async resolve(idOrName: string): Promise<{ id: string; name: string }> {
    const r = await this.get(idOrName);
    return { id: r.Id, name: r.Name.replace(/^\//, '') };
  }

  async runc(args: string[]): Promise<string> {
    try {
      const { stdout } = await run(this.paths.runtime, ['--root', this.paths.runcRoot, ...args], {
        maxBuffer: 1 << 20,
      });
      return stdout;
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      throw new Error(`runc ${args[0]}: ${(err.stderr || err.message).trim()}`);
    }
  }
}
