/**
 * ContainerManager: Docker's container lifecycle on runc under conmon.
 *
 * Layout of one container:
 *  - `<dataRoot>/containers/<id>/`: the overlay upper/work dirs and mountpoint
 *    (`diff`, `work`, `merged`), the k8s-file log `ctr.log`, and the sandbox
 *    files the network layer writes (hosts, hostname, resolv.conf).
 *  - `<execRoot>/containers/<id>/`: the OCI bundle (config.json), pid files,
 *    conmon's ctl FIFO and attach socket; exec sessions under `exec/<execId>/`.
 *  - `<execRoot>/exits/<id>`: conmon's exit file; `<execRoot>/runc`: runc's state.
 * Records live in the Store under `runtime/containers/<id>`.
 */
import { goRegexp } from '../../common/goregexp.js';
import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readFile, rm, rmdir, writeFile, readdir } from 'node:fs/promises';
import { hostname as osHostname, constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Collection, type Store } from '../../store/store.js';
import { Conflict, CoveError, Forbidden, InvalidParameter, NotFound, NotModified } from '../../common/errors.js';
import { MAX_NAME_LENGTH, newId, VALID_NAME } from '../../common/ids.js';
import { silentLogger, type Logger } from '../../common/log.js';
import type { DaemonConfig } from '../../daemon/config.js';
import type { EventBus } from '../../daemon/events.js';
import type { DockerEndpointSettings, DockerNetworkSettings, Filters, NetworkService } from '../../network/types.js';
import { checkEndpointSettings } from '../../network/endpoint.js';
import type {
  AttachOptions, ContainerService, DockerContainerConfig, DockerContainerCreate, DockerContainerInspect, DockerContainerState,
  DockerContainerSummary, DockerExecCreate, DockerHostConfig, IoSession, LogEntry, LogOptions,
} from '../types.js';
import type { ImageStore } from '../images/store.js';
import { AttachSession, parseDetachKeys } from './attach.js';
import { conmonCreate, conmonExec, isConmonAlive, resizeTty, type ConmonPaths } from './conmon.js';
import { statusText } from './format.js';
import { applyResult, initialHealth, mergeHealthcheck, nextDelayMs, probeOf, timeoutMessage, validateHealthcheck, type HealthConfig, type HealthLogEntry, type Probe } from './health.js';
import { readLogs } from './logs.js';
import { generateName } from './names.js';
import { bundleSpec, capabilities, processSpec, resolveUser } from './oci.js';
import { isMounted, mountRootfs, rootfsPaths, unmountRootfs } from './rootfs.js';
import { endpointRequest, exposedPorts, isSpecialMode, normalizeNetworkMode, parsePortKey, sandboxSpec } from './spec.js';
import { configView, hostConfigView, validateResources, validateRestartPolicy } from './inspect-view.js';
import { mountView, ociMounts, parseVolumesFrom, planMounts, type DockerMount, type MountPoint } from './mounts.js';
import { materialize, prepare as prepareMounts, release as releaseMounts, removeAnonymous } from './mount-setup.js';
import { VolumeStore, dirSize } from '../volumes/store.js';
import { prunePredicate } from './prune.js';
import { containerChanges, upperLayerTar, type FsChange } from './fs-changes.js';
import { applyChanges, type ImageRunConfig } from '../images/changes.js';
import * as tar from 'tar';
import { encodeStat, extractInto, locate, statPath, tarOf, type PathStat } from './archive.js';
import type { Readable } from 'node:stream';
import { sample as statsSample, top as topOf } from './stats.js';
import { ExecRecords, type ExecRecord } from './exec-records.js';
import { assertReadable, normalizeLogConfig, rotationOf, DEFAULT_LOG_DRIVER, type LogConfig } from './log-config.js';
import { LogRotator } from './log-rotation.js';
import { adaptResources, checkResources, mergeUpdate, ociResources, parseDeviceRule, UPDATABLE, type ResourceConfig } from './resources.js';
import { restartAfterExit, restartAtDaemonStart, restartDelayMs } from './restart-policy.js';

const run = promisify(execFile);
const ZERO_TIME = '0001-01-01T00:00:00Z';
/** The container config keys a committed image keeps (its run config). */
const COMMIT_CONFIG_KEYS = ['User', 'ExposedPorts', 'Env', 'Cmd', 'Healthcheck', 'Volumes', 'WorkingDir', 'Entrypoint', 'OnBuild', 'Labels', 'StopSignal', 'Shell'] as const;

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

function signalNumber(sig: string | number | undefined, fallback: string): number {
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

function signalName(n: number): string {
  for (const [k, v] of Object.entries(osConstants.signals)) if (v === n) return k;
  return String(n);
}

/** Docker's port filter value: "80", "80/udp", "8000-8010/tcp" (protocol tcp when left out). */
function portMatches(filter: string, port: number, proto: string): boolean {
  const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/.exec(filter);
  if (!m) throw new InvalidParameter(`invalid port filter: ${filter}`);
  const lo = Number(m[1]);
  const hi = m[2] ? Number(m[2]) : lo;
  return port >= lo && port <= hi && (m[3] ?? 'tcp') === proto;
}

export class ContainerManager implements ContainerService {
  private readonly cfg: DaemonConfig;
  private readonly records: Collection<ContainerRecord>;
  private readonly images: ImageStore;
  private readonly networks: NetworkService;
  private readonly events: EventBus;
  private readonly log: Logger;
  private readonly paths: ConmonPaths;
  private readonly exitDir: string;
  private readonly bus = new EventEmitter();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly pendingAttach = new Map<string, Set<AttachSession>>();
  private readonly liveSessions = new Set<AttachSession>();
  private readonly execs: ExecRecords;
  private readonly rotator: LogRotator;
  private readonly exiting = new Set<string>();
  private watcher: FSWatcher | undefined;
  private poller: NodeJS.Timeout | undefined;
  private closed = false;
  /** Restarts found due while restore() runs, held until resumeRestarts(). */
  private deferredRestarts: Array<() => void> | undefined;
  private readonly pollMs: number;
  readonly volumes: VolumeStore;

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
    this.volumes = opts.volumes ?? new VolumeStore({ dataRoot: this.cfg.dataRoot, store: opts.store, events: opts.events, log: this.log });
    this.volumes.setUsage(async (name) => {
      const users = (await this.records.list()).map((r) => r.value).filter((r) => r.MountPoints?.some((m) => m.Type === 'volume' && m.Name === name));
      return { all: users.map((r) => r.Id), running: users.filter((r) => r.State.Running && !this.exiting.has(r.Id)).map((r) => r.Id) };
    });
    this.images.setContainerUsage(async (imageId) =>
      (await this.records.list()).filter((r) => r.value.ImageID === imageId).map((r) => ({ id: r.value.Id, running: r.value.State.Running })));
  }

  // ---------- paths ----------

  private containerDir(id: string): string {
    return join(this.cfg.dataRoot, 'containers', id);
  }
  private bundleDir(id: string): string {
    return join(this.cfg.execRoot, 'containers', id);
  }
  private logPath(id: string): string {
    return join(this.containerDir(id), 'ctr.log');
  }
  /** conmon's attach-socket id: short enough for sun_path, unique enough in one daemon. */
  private static cuuid(id: string): string {
    return id.slice(0, 32);
  }
  private attachPath(cuuid: string): string {
    return join(this.paths.socketDir, cuuid, 'attach');
  }

  // ---------- small helpers ----------

  private async withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(id, tail);
    tail.then(() => {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    });
    return next;
  }

  private attrs(r: ContainerRecord, extra: Record<string, string> = {}): Record<string, string> {
    return { ...(r.Config.Labels ?? {}), image: r.ImageRef, name: r.Name.replace(/^\//, ''), ...extra };
  }

  private publish(r: ContainerRecord, action: string, extra: Record<string, string> = {}): void {
    this.events.publish('container', action, r.Id, this.attrs(r, extra));
  }

  private async get(idOrName: string): Promise<ContainerRecord> {
    const q = idOrName.replace(/^\//, '');
    if (/^[0-9a-f]{64}$/.test(q)) {
      const hit = await this.records.get(q);
      if (hit) return hit.value;
    }
    const all = await this.records.list();
    const exact = all.find((r) => r.value.Id === q) ?? all.find((r) => r.value.Name === '/' + q);
    if (exact) return exact.value;
    if (/^[0-9a-f]+$/.test(q)) {
      const hits = all.filter((r) => r.value.Id.startsWith(q));
      if (hits.length === 1) return hits[0]!.value;
      if (hits.length > 1) throw new InvalidParameter(`multiple IDs found with provided prefix: ${q}`);
    }
    throw new NotFound(`No such container: ${idOrName}`);
  }

  private async update(id: string, fn: (r: ContainerRecord) => void): Promise<ContainerRecord> {
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

  // ---------- create ----------

  async create(name: string | undefined, body: DockerContainerCreate): Promise<{ Id: string; Warnings: string[] }> {
    const warnings: string[] = [];
    if (!body || typeof body !== 'object') throw new InvalidParameter('config cannot be empty in order to create a container');
    if (name !== undefined && name !== '' && !VALID_NAME.test(name)) {
      throw new InvalidParameter(`Invalid container name (${name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    }
    // A name must stay addressable in a request path (see MAX_NAME_LENGTH).
    if (name && name.replace(/^\//, '').length > MAX_NAME_LENGTH) {
      throw new InvalidParameter(`Invalid container name (${name.slice(0, 64)}...): longer than ${MAX_NAME_LENGTH} characters`);
    }
    if (!body.Image) throw new InvalidParameter('No command specified');
    const imageId = await this.images.resolve(body.Image);
    const image = await this.images.imageConfig(imageId);
    const ic = image.config ?? {};
    const hostConfig: DockerHostConfig = structuredClone(body.HostConfig ?? {});
    const mode = normalizeNetworkMode(hostConfig.NetworkMode);
    hostConfig.NetworkMode = mode;
    validateRestartPolicy(hostConfig.RestartPolicy);
    validateResources(hostConfig as Parameters<typeof validateResources>[0]);
    hostConfig.LogConfig = normalizeLogConfig(hostConfig.LogConfig as LogConfig | undefined);
    checkResources(hostConfig as ResourceConfig);
    adaptResources(hostConfig as ResourceConfig);

    // Merge with the image's defaults, as Docker does at create.
    const { HostConfig: _h, NetworkingConfig: _n, ...cfgIn } = body;
    const config: DockerContainerConfig = structuredClone(cfgIn);
    const env = new Map<string, string>();
    for (const e of [...(ic.Env ?? []), ...(config.Env ?? [])]) env.set(e.split('=')[0]!, e);
    // Images made by `import` carry no PATH; Docker gives such containers its default one.
    if (!env.has('PATH')) env.set('PATH', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    config.Env = [...env.values()];
    const entrypointGiven = config.Entrypoint !== undefined && config.Entrypoint !== null;
    if (!entrypointGiven) config.Entrypoint = ic.Entrypoint ?? null;
    if (!config.Cmd?.length && !entrypointGiven) config.Cmd = ic.Cmd ?? null;
    // `--entrypoint ""` arrives as [""]: no entrypoint (and the image's Cmd is not merged).
    if (config.Entrypoint && (config.Entrypoint.length === 0 || (config.Entrypoint.length === 1 && config.Entrypoint[0] === ''))) config.Entrypoint = null;
    const argv = [...(config.Entrypoint ?? []), ...(config.Cmd ?? [])];
    if (!argv.length) throw new InvalidParameter('No command specified');
    config.WorkingDir = config.WorkingDir || ic.WorkingDir || '';
    config.User = config.User || ic.User || '';
    config.Labels = { ...(ic.Labels ?? {}), ...(config.Labels ?? {}) };
    config.ExposedPorts = { ...(ic.ExposedPorts ?? {}), ...(config.ExposedPorts ?? {}) };
    for (const k of Object.keys(config.ExposedPorts)) parsePortKey(k);
    if (!Object.keys(config.ExposedPorts).length) delete config.ExposedPorts;
    const health = mergeHealthcheck(config.Healthcheck as HealthConfig | null | undefined, (ic as { Healthcheck?: HealthConfig }).Healthcheck);
    validateHealthcheck(health);
    if (health) config.Healthcheck = health;
    else delete config.Healthcheck;
    if (!config.StopSignal && ic.StopSignal) config.StopSignal = ic.StopSignal;
    if (config.StopSignal) signalNumber(config.StopSignal, 'SIGTERM');
    config.Image = body.Image;
    config.Tty = !!config.Tty;
    config.OpenStdin = !!config.OpenStdin;
    config.StdinOnce = !!config.StdinOnce;
    config.AttachStdin = !!config.AttachStdin;
    config.AttachStdout = !!config.AttachStdout;
    config.AttachStderr = !!config.AttachStderr;
    config.Domainname = config.Domainname ?? '';

    // Networking: validate now, like Docker's create does.
    const endpoints: Record<string, DockerEndpointSettings> = structuredClone(body.NetworkingConfig?.EndpointsConfig ?? {});
    // The CLI names the default network "default" (NetworkMode too): it is the bridge.
    if (endpoints.default) {
      endpoints.bridge = { ...endpoints.default, ...(endpoints.bridge ?? {}) };
      delete endpoints.default;
    }
    if (mode === 'host') {
      if (hostConfig.PortBindings && Object.keys(hostConfig.PortBindings).length) {
        warnings.push('Published ports are discarded when using host network mode');
      }
      if (!config.Hostname) config.Hostname = osHostname();
    } else if (mode.startsWith('container:')) {
      // moby's validateNetContainerMode: what the other container's namespace already decides.
      if (body.Hostname) throw new InvalidParameter('conflicting options: hostname and the network mode');
      if (hostConfig.Dns?.length) throw new InvalidParameter('conflicting options: dns and the network mode');
      if (hostConfig.ExtraHosts?.length) throw new InvalidParameter('conflicting options: custom host-to-IP mapping and the network mode');
      if (body.MacAddress) throw new InvalidParameter('conflicting options: mac-address and the network mode');
      if ((hostConfig.PortBindings && Object.keys(hostConfig.PortBindings).length) || hostConfig.PublishAllPorts) {
        throw new InvalidParameter('conflicting options: port publishing and the container type network mode');
      }
      if (body.ExposedPorts && Object.keys(body.ExposedPorts).length) {
        throw new InvalidParameter('conflicting options: port exposing and the container type network mode');
      }
      const other = await this.get(mode.slice('container:'.length));
      hostConfig.NetworkMode = `container:${other.Id}`;
    } else if (mode !== 'none') {
      if (!endpoints[mode]) endpoints[mode] = {};
      // Legacy links on a user-defined network belong to its endpoint (libnetwork
      // aliases); Docker's inspect then shows HostConfig.Links as null.
      if (mode !== 'bridge' && hostConfig.Links?.length) {
        const ep = endpoints[mode]!;
        ep.Links = [...new Set([...(ep.Links ?? []), ...hostConfig.Links])];
        hostConfig.Links = null;
      }
    }
    if (isSpecialMode(mode) && Object.keys(endpoints).some((n) => n !== mode)) {
      if (mode === 'host') throw new InvalidParameter('container cannot be disconnected from host network or connected to host network');
      throw new InvalidParameter('container sharing network namespace with another container or host cannot be connected to any other network');
    }
    // The docker CLI sends an (empty) endpoint for "container:<name>"; that mode has no endpoints of its own.
    if (mode.startsWith('container:')) delete endpoints[mode];
    for (const s of Object.values(endpoints)) checkEndpointSettings(s);
    for (const net of Object.keys(endpoints)) {
      if (net === 'host' || net === 'none') continue;
      const found = await this.networks.resolveNetwork(net);
      endpoints[net]!.NetworkID = found.id;
    }
    // Port keys and bindings must parse.
    sandboxSpec({ id: 'x'.repeat(64), name: 'x', config, hostConfig, endpoints, dir: '/', networkMode: mode });
    // Mounts: parsed and checked now; volumes and bind sources are made inside the lock below.
    config.Volumes = { ...(ic.Volumes ?? {}), ...(config.Volumes ?? {}) };
    if (!Object.keys(config.Volumes).length) config.Volumes = null;
    const from: MountPoint[] = [];
    for (const spec of (hostConfig.VolumesFrom as string[] | null | undefined) ?? []) {
      const vf = parseVolumesFrom(spec);
      const other = await this.get(vf.container);
      for (const m of other.MountPoints ?? []) {
        if (m.Type === 'tmpfs') continue;
        from.push({ ...structuredClone(m), ...(vf.mode ? { RW: vf.mode === 'rw', Mode: vf.mode } : {}), anonymous: false });
      }
    }
    const planned = planMounts({
      binds: hostConfig.Binds as string[] | null | undefined,
      mounts: hostConfig.Mounts as DockerMount[] | null | undefined,
      tmpfs: hostConfig.Tmpfs as Record<string, string> | null | undefined,
      volumes: config.Volumes as Record<string, unknown> | null,
      from,
    });

    const id = newId();
    if (!config.Hostname) config.Hostname = id.slice(0, 12);
    return this.withLock('create', async () => {
      const all = await this.records.list();
      const names = new Map(all.map((r) => [r.value.Name, r.value.Id]));
      let finalName = name ? '/' + name.replace(/^\//, '') : '';
      if (finalName && names.has(finalName)) {
        throw new Conflict(`Conflict. The container name "${finalName}" is already in use by container "${names.get(finalName)}". You have to remove (or rename) that container to be able to reuse that name.`);
      }
      if (!finalName) finalName = '/' + generateName((n) => names.has('/' + n));
      const mountPoints = await materialize(this.volumes, planned);
      const dir = this.containerDir(id);
      await mkdir(dir, { recursive: true, mode: 0o710 });
      const rec: ContainerRecord = {
        Id: id,
        Name: finalName,
        Created: new Date().toISOString(),
        Path: argv[0]!,
        Args: argv.slice(1),
        ImageRef: body.Image!,
        ImageID: imageId,
        Config: config,
        HostConfig: hostConfig,
        EndpointsConfig: endpoints,
        State: {
          Status: 'created', Running: false, Paused: false, Restarting: false, OOMKilled: false, Dead: false,
          Pid: 0, ExitCode: 0, Error: '', StartedAt: ZERO_TIME, FinishedAt: ZERO_TIME,
        },
        RestartCount: 0,
        HostsPath: '',
        HostnamePath: '',
        ResolvConfPath: '',
        MountPoints: mountPoints,
      };
      try {
        await this.records.put(id, rec, 0);
      } catch (e) {
        await rm(dir, { recursive: true, force: true });
        await removeAnonymous(this.volumes, mountPoints);
        throw e;
      }
      this.publish(rec, 'create');
      return { Id: id, Warnings: warnings };
    });
  }

  // ---------- start ----------

  async start(idOrName: string): Promise<void> {
    const r0 = await this.get(idOrName);
    let attempted = false;
    try {
      await this.withLock(r0.Id, async () => {
        const r = await this.get(r0.Id);
        if (r.State.Running) throw new NotModified();
        if (r.State.Status === 'removing') throw new Conflict(`container is marked for removal and cannot be started`);
        // A user's start resets the policy's count, as Docker's ResetRestartManager does.
        await this.update(r.Id, (x) => {
          x.stoppedByUser = false;
          x.RestartCount = 0;
        });
        attempted = true;
        await this.startLocked(r);
      });
    } catch (e) {
      // Docker removes an AutoRemove (--rm) container whose start failed before it
      // answers: the CLI waits for condition=removed and would otherwise hang.
      if (attempted) await this.autoRemoveAfterFailedStart(r0.Id);
      throw e;
    }
  }

  private async autoRemoveAfterFailedStart(id: string): Promise<void> {
    const rec = (await this.records.get(id))?.value;
    if (!rec || rec.State.Running || !rec.HostConfig.AutoRemove) return;
    await this.removeRecord(rec).catch((e) => this.log.warn({ id, err: (e as Error).message }, 'auto-remove after a failed start failed'));
  }

  private async startLocked(r: ContainerRecord): Promise<void> {
    const id = r.Id;
    const cdir = this.containerDir(id);
    const bundle = this.bundleDir(id);
    const rootfs = rootfsPaths(cdir);
    const undo: Array<() => Promise<unknown>> = [];
    let conmonPid = 0;
    // Where a start spends its time, logged at debug level (ms per phase).
    const phases: Record<string, number> = {};
    let mark = performance.now();
    const lap = (name: string): void => {
      const t = performance.now();
      phases[name] = Math.round((t - mark) * 10) / 10;
      mark = t;
    };
    try {
      const lowers = await this.images.lowerDirs(r.ImageID);
      await mountRootfs(rootfs, lowers);
      undo.push(() => unmountRootfs(rootfs));
      lap('rootfs');

      const mode = r.HostConfig.NetworkMode ?? 'bridge';
      const spec = sandboxSpec({ id, name: r.Name, config: r.Config, hostConfig: r.HostConfig, endpoints: r.EndpointsConfig, dir: cdir, networkMode: mode });
      const sandbox = await this.networks.createSandbox(spec);
      lap('network');
      undo.push(() => this.networks.deleteSandbox(id));

      await prepareMounts(this.volumes, r.MountPoints ?? [], rootfs.merged);
      undo.push(() => releaseMounts(this.volumes, r.MountPoints));
      lap('mounts');

      const user = resolveUser(rootfs.merged, r.Config.User);
      const tty = !!r.Config.Tty;
      const env = [...(r.Config.Env ?? [])];
      if (!env.some((e) => e.startsWith('HOSTNAME='))) env.push(`HOSTNAME=${spec.hostname}`);
      if (tty && !env.some((e) => e.startsWith('TERM='))) env.push('TERM=xterm');
      if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${user.home}`);
      const caps = capabilities(!!r.HostConfig.Privileged, r.HostConfig.CapAdd ?? [], (r.HostConfig.CapDrop as string[] | undefined) ?? []);
      const oci = bundleSpec({
        id,
        rootfs: rootfs.merged,
        process: processSpec({ args: [r.Path, ...r.Args], env, cwd: r.Config.WorkingDir || '/', tty, user, caps }),
        hostname: spec.hostname,
        domainname: spec.domainname,
        netnsPath: sandbox.netnsPath,
        hostsPath: sandbox.hostsPath,
        hostnamePath: sandbox.hostnamePath,
        resolvConfPath: sandbox.resolvConfPath,
        privileged: !!r.HostConfig.Privileged,
        sysctls: { ...(r.HostConfig.Sysctls ?? {}) },
        readonlyRootfs: !!r.HostConfig.ReadonlyRootfs,
        shmSize: typeof r.HostConfig.ShmSize === 'number' ? r.HostConfig.ShmSize : undefined,
        userMounts: ociMounts(r.MountPoints ?? []),
        limits: ociResources(r.HostConfig as ResourceConfig),
        deviceRules: ((r.HostConfig.DeviceCgroupRules as string[] | null | undefined) ?? []).map(parseDeviceRule),
      });
      await rm(bundle, { recursive: true, force: true });
      await mkdir(bundle, { recursive: true, mode: 0o700 });
      undo.push(() => rm(bundle, { recursive: true, force: true }));
      await writeFile(join(bundle, 'config.json'), JSON.stringify(oci));
      await mkdir(this.exitDir, { recursive: true });
      await mkdir(this.paths.socketDir, { recursive: true });
      await mkdir(this.paths.runcRoot, { recursive: true, mode: 0o700 });
      await rm(join(this.exitDir, id), { force: true });

      undo.push(() => this.runc(['delete', '--force', id]).catch(() => undefined));
      lap('bundle');
      const stdin = !!r.Config.OpenStdin;
      const created = await conmonCreate(this.paths, {
        id,
        cuuid: ContainerManager.cuuid(id),
        name: r.Name.replace(/^\//, ''),
        bundle,
        logPath: logConfigOf(r).Type === 'none' ? '' : this.logPath(id),
        exitDir: this.exitDir,
        tty,
        stdin,
        leaveStdinOpen: tty || !r.Config.StdinOnce,
        conmonPidFile: join(bundle, 'conmon.pid'),
        pidFile: join(bundle, 'pidfile'),
      });
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
      // Attach whoever waits, before the process runs: no output is lost.
      for (const s of this.pendingAttach.get(id) ?? []) {
        await s.connect(this.attachPath(ContainerManager.cuuid(id))).catch((e) => this.log.warn({ id, err: (e as Error).message }, 'attach failed'));
        this.liveSessions.add(s);
      }
      this.pendingAttach.delete(id);
      lap('conmon+runc create');
      await this.runc(['start', id]);
      lap('runc start');
      const now = new Date().toISOString();
      const next = await this.update(id, (x) => {
        x.State = {
          ...x.State, Status: 'running', Running: true, Paused: false, Restarting: false, OOMKilled: false, Dead: false,
          Pid: created.pid, ExitCode: 0, Error: '', StartedAt: now, FinishedAt: ZERO_TIME,
        };
        if (probeOf(x.Config.Healthcheck as HealthConfig | undefined)) x.State.Health = initialHealth();
        else delete x.State.Health;
        x.conmonPid = created.conmonPid;
        x.hasBeenStarted = true;
        x.HostsPath = sandbox.hostsPath;
        x.HostnamePath = sandbox.hostnamePath;
        x.ResolvConfPath = sandbox.resolvConfPath;
      });
      this.publish(next, 'start');
      this.rotator.watch(id, this.logPath(id), bundle, rotationOf(logConfigOf(r)));
      this.startHealthMonitor(next);
      lap('record');
      this.log.debug({ id, phases }, 'container started');
      this.ensureWatching();
      // It may have exited already (a quick command): look now rather than at the next poll.
      if (!(await isConmonAlive(created.conmonPid, id)) || (await this.exitFileCode(id)) !== undefined) void this.handleExit(id).catch((e) => this.log.error({ id, err: (e as Error).message }, 'handling the exit failed'));
    } catch (e) {
      const msg = e instanceof CoveError ? e.message : `failed to create task for container: ${(e as Error).message}`;
      this.log.warn({ id, err: msg }, 'start failed; undoing');
      for (const u of undo.reverse()) {
        try {
          await u();
        } catch (ue) {
          this.log.warn({ id, err: (ue as Error).message }, 'undo step failed');
        }
      }
      await rm(join(this.exitDir, id), { force: true });
      await this.update(id, (x) => {
        x.State = { ...x.State, Status: x.hasBeenStarted ? 'exited' : 'created', Running: false, Pid: 0, Error: msg, ExitCode: startFailureExitCode(msg) };
        delete x.conmonPid;
      }).catch(() => undefined);
      // Sessions that waited for this start end with it.
      for (const s of this.pendingAttach.get(id) ?? []) s.endExited();
      this.pendingAttach.delete(id);
      if (e instanceof CoveError) throw e;
      // Docker: a command that is missing or cannot run is the caller's mistake (400), anything else 500.
      throw new CoveError(msg, startFailureExitCode(msg) === 128 ? 500 : 400);
    }
  }

  private async runc(args: string[]): Promise<string> {
    try {
      const { stdout } = await run(this.paths.runtime, ['--root', this.paths.runcRoot, ...args], { maxBuffer: 1 << 20 });
      return stdout;
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      throw new Error(`runc ${args[0]}: ${(err.stderr || err.message).trim()}`);
    }
  }

  // ---------- exits ----------

  private ensureWatching(): void {
    if (this.closed) return;
    if (!this.watcher) {
      try {
        this.watcher = watch(this.exitDir, (_ev, file) => {
          if (file && /^[0-9a-f]{64}$/.test(String(file))) void this.handleExit(String(file)).catch(() => undefined);
        });
        this.watcher.on('error', () => {
          this.watcher?.close();
          this.watcher = undefined;
        });
      } catch {
        this.watcher = undefined;
      }
    }
    if (!this.poller) {
      this.poller = setInterval(() => void this.poll().catch(() => undefined), this.pollMs);
      this.poller.unref();
    }
  }

  /** The safety net under the exit-dir watch: any running container whose monitor is gone has exited. */
  private async poll(): Promise<void> {
    for (const { value: r } of await this.records.list()) {
      if (!r.State.Running) continue;
      if ((await this.exitFileCode(r.Id)) !== undefined || !(await isConmonAlive(r.conmonPid ?? 0, r.Id))) await this.handleExit(r.Id);
    }
  }

  private async exitFileCode(id: string): Promise<number | undefined> {
    try {
      const t = (await readFile(join(this.exitDir, id), 'utf8')).trim();
      if (t === '') return undefined;
      const n = Number.parseInt(t, 10);
      return Number.isNaN(n) ? undefined : n;
    } catch {
      return undefined;
    }
  }

  /** Tears a stopped container down to 'exited': runc state, rootfs mount, sandbox, bundle. Idempotent. */
  private async handleExit(id: string, opts: { fromRestore?: boolean } = {}): Promise<void> {
    if (this.exiting.has(id)) return;
    this.exiting.add(id);
    try {
      await this.withLock(id, async () => {
        const rec = (await this.records.get(id))?.value;
        if (!rec || !rec.State.Running) return;
        let code = await this.exitFileCode(id);
        if (code === undefined) {
          if (await isConmonAlive(rec.conmonPid ?? 0, id)) {
            // conmon still runs: the exit file is on its way; give it a moment.
            for (let i = 0; i < 50 && code === undefined; i++) {
              await new Promise((res) => setTimeout(res, 100));
              code = await this.exitFileCode(id);
              if (code === undefined && !(await isConmonAlive(rec.conmonPid ?? 0, id))) code = await this.exitFileCode(id);
            }
            if (code === undefined && (await isConmonAlive(rec.conmonPid ?? 0, id))) return;
          }
        }
        const exitCode = code ?? 255;
        this.stopHealthMonitor(id);
        await this.teardown(id);
        const now = new Date().toISOString();
        const next = await this.update(id, (x) => {
          x.State = { ...x.State, Status: 'exited', Running: false, Paused: false, Restarting: false, Pid: 0, ExitCode: exitCode, FinishedAt: now };
          // A stopped container is not healthy (Docker shows its last results under unhealthy).
          if (x.State.Health) x.State.Health = { ...x.State.Health, Status: 'unhealthy' };
          delete x.conmonPid;
        });
        this.log.info({ id, exitCode, fromRestore: !!opts.fromRestore }, 'container exited');
        this.publish(next, 'die', { exitCode: String(exitCode) });
        this.bus.emit(`exit:${id}`, exitCode);
        for (const s of [...this.liveSessions]) if (s.ended) this.liveSessions.delete(s);
      });
      const rec = (await this.records.get(id))?.value;
      if (!rec || rec.State.Running) return;
      if (rec.HostConfig.AutoRemove) {
        await this.removeRecord(rec, { volumes: true }).catch((e) => this.log.warn({ id, err: (e as Error).message }, 'auto-remove failed'));
        return;
      }
      await this.maybeRestart(rec);
    } finally {
      this.exiting.delete(id);
    }
  }

  private async teardown(id: string): Promise<void> {
    this.rotator.unwatch(id);
    await this.runc(['delete', '--force', id]).catch(() => undefined);
    await removeCgroups(id);
    await unmountRootfs(rootfsPaths(this.containerDir(id))).catch((e) => this.log.warn({ id, err: (e as Error).message }, 'unmount failed'));
    const rec = (await this.records.get(id))?.value;
    if (rec) await releaseMounts(this.volumes, rec.MountPoints);
    await this.networks.deleteSandbox(id).catch((e) => this.log.warn({ id, err: (e as Error).message }, 'deleting the sandbox failed'));
    await rm(this.bundleDir(id), { recursive: true, force: true });
    await rm(join(this.paths.socketDir, ContainerManager.cuuid(id)), { force: true });
    await rm(join(this.exitDir, id), { force: true });
  }

  private async maybeRestart(rec: ContainerRecord): Promise<void> {
    if (this.closed) return;
    if (!restartAfterExit(rec.HostConfig.RestartPolicy, { exitCode: rec.State.ExitCode, stoppedByUser: !!rec.stoppedByUser, restartCount: rec.RestartCount })) return;
    await this.scheduleRestart(rec, restartDelayMs(rec.RestartCount));
  }

  /** Marks the container 'restarting' and starts it after `delay` ms (unless a user stops or removes it first). */
  private async scheduleRestart(rec: ContainerRecord, delay: number, counted = true): Promise<void> {
    // Meanwhile the state is 'restarting', as Docker shows it.
    await this.update(rec.Id, (x) => {
      x.State.Status = 'restarting';
      x.State.Restarting = true;
    });
    const fire = (): void => this.fireRestart(rec.Id, delay, counted);
    // During the daemon's restore the network controller has not yet rebuilt its
    // sandboxes and DNS records: a start now would be undone by that restore.
    if (this.deferredRestarts) this.deferredRestarts.push(fire);
    else fire();
  }

  /**
   * Daemon start, after the network controller restored its state: starts the
   * containers restore() found due by their restart policies.
   */
  resumeRestarts(): void {
    const due = this.deferredRestarts ?? [];
    this.deferredRestarts = undefined;
    for (const fire of due) fire();
  }

  private fireRestart(id: string, delay: number, counted: boolean): void {
    const rec = { Id: id };
    setTimeout(() => {
      void this.withLock(rec.Id, async () => {
        const cur = (await this.records.get(rec.Id))?.value;
        if (!cur || cur.State.Running || cur.State.Status !== 'restarting' || cur.stoppedByUser || this.closed) return;
        const next = await this.update(rec.Id, (x) => {
          if (counted) x.RestartCount += 1;
          x.State.Restarting = false;
        });
        await this.startLocked(next);
      }).catch((e) => this.log.warn({ id: rec.Id, err: (e as Error).message }, 'restart failed'));
    }, delay).unref();
  }

  private waitExit(id: string, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t = timeoutMs >= 0 ? setTimeout(() => {
        this.bus.off(`exit:${id}`, on);
        resolve(false);
      }, timeoutMs) : undefined;
      const on = (): void => {
        if (t) clearTimeout(t);
        resolve(true);
      };
      this.bus.once(`exit:${id}`, on);
    });
  }

  /** Sends a signal to the container's init process and waits up to `ms` for it to exit (it may already have). */
  private async signalAndWait(r: ContainerRecord, sig: number, ms: number): Promise<boolean> {
    const waiting = this.waitExit(r.Id, ms);
    try {
      process.kill(r.State.Pid, sig);
    } catch {
      // Already gone: the exit is being handled.
    }
    void this.poll().catch(() => undefined);
    const t0 = Date.now();
    const exitedNow = await Promise.race([
      waiting,
      (async () => {
        // Exits can be missed by both watch and poll timing; check directly too.
        while (Date.now() - t0 < ms || ms < 0) {
          await new Promise((res) => setTimeout(res, 200));
          const cur = (await this.records.get(r.Id))?.value;
          if (!cur || !cur.State.Running) return true;
          if ((await this.exitFileCode(r.Id)) !== undefined || !(await isConmonAlive(cur.conmonPid ?? 0, r.Id))) void this.handleExit(r.Id).catch((e) => this.log.error({ id: r.Id, err: (e as Error).message }, 'handling the exit failed'));
        }
        return false;
      })(),
    ]);
    return exitedNow;
  }

  // ---------- stop / kill / restart / remove ----------

  /** A container waiting to be restarted by its policy stays down (stop, kill, rm). */
  private async cancelRestart(r: ContainerRecord): Promise<boolean> {
    if (r.State.Status !== 'restarting') return false;
    await this.withLock(r.Id, () => this.update(r.Id, (x) => {
      x.stoppedByUser = true;
      x.State.Status = 'exited';
      x.State.Restarting = false;
    }));
    return true;
  }

  async stop(idOrName: string, opts: { timeout?: number; signal?: string } = {}): Promise<void> {
    const r = await this.get(idOrName);
    if (await this.cancelRestart(r)) {
      this.publish(r, 'stop');
      return;
    }
    if (!r.State.Running) throw new NotModified();
    const sig = signalNumber(opts.signal, r.Config.StopSignal || 'SIGTERM');
    const timeout = opts.timeout ?? (typeof r.Config.StopTimeout === 'number' ? r.Config.StopTimeout : 10);
    await this.thaw(r);
    await this.update(r.Id, (x) => {
      x.stoppedByUser = true;
    });
    this.publish(r, 'kill', { signal: String(sig) });
    let done = await this.signalAndWait(r, sig, timeout < 0 ? -1 : timeout * 1000);
    if (!done) {
      this.log.info({ id: r.Id, timeout }, 'container did not stop in time; sending SIGKILL');
      this.publish(r, 'kill', { signal: '9' });
      done = await this.signalAndWait(r, 9, 30_000);
    }
    // Let the exit handling finish before answering.
    await this.withLock(r.Id, async () => undefined);
    const cur = (await this.records.get(r.Id))?.value;
    this.publish(cur ?? r, 'stop');
  }

  async kill(idOrName: string, signal?: string): Promise<void> {
    const r = await this.get(idOrName);
    const sig = signalNumber(signal, 'SIGKILL');
    if (!r.State.Running) throw new Conflict(`Container ${r.Id} is not running`);
    await this.update(r.Id, (x) => {
      x.stoppedByUser = true;
    });
    if (sig === 9 || sig === 15) await this.thaw(r);
    try {
      process.kill(r.State.Pid, sig);
    } catch (e) {
      throw new Conflict(`Cannot kill container: ${r.Id}: ${(e as Error).message}`);
    }
    this.publish(r, 'kill', { signal: String(sig) });
    if (sig === 9) {
      await this.signalAndWait(r, 0, 10_000).catch(() => undefined);
      await this.withLock(r.Id, async () => undefined);
    }
  }

  async restart(idOrName: string, opts: { timeout?: number } = {}): Promise<void> {
    const r = await this.get(idOrName);
    if (r.State.Running) {
      try {
        await this.stop(r.Id, { timeout: opts.timeout });
      } catch (e) {
        if (!(e instanceof NotModified)) throw e;
      }
    }
    await this.start(r.Id);
    const cur = await this.get(r.Id);
    this.publish(cur, 'restart');
  }

  async remove(idOrName: string, opts: { force?: boolean; volumes?: boolean } = {}): Promise<void> {
    const r = await this.get(idOrName);
    if (r.State.Status === 'restarting') {
      if (!opts.force) {
        throw new Conflict(`You cannot remove a restarting container ${r.Id}. Stop the container before attempting removal or force remove`);
      }
      await this.cancelRestart(r);
    }
    if (r.State.Running) {
      if (!opts.force) {
        throw new Conflict(`You cannot remove a running container ${r.Id}. Stop the container before attempting removal or force remove`);
      }
      await this.update(r.Id, (x) => {
        x.stoppedByUser = true;
        x.HostConfig.AutoRemove = false;
      });
      this.publish(r, 'kill', { signal: '9' });
      await this.thaw(r).catch(() => undefined);
      const done = await this.signalAndWait(r, 9, 15_000);
      if (!done) throw new Conflict(`Could not kill running container ${r.Id}, cannot remove`);
      await this.withLock(r.Id, async () => undefined);
    }
    const cur = await this.get(r.Id);
    await this.removeRecord(cur, { volumes: !!opts.volumes });
  }

  private async removeRecord(r: ContainerRecord, opts: { volumes?: boolean } = {}): Promise<void> {
    await this.withLock(r.Id, async () => {
      const cur = (await this.records.get(r.Id))?.value;
      if (!cur) return;
      if (cur.State.Running) throw new Conflict(`You cannot remove a running container ${r.Id}. Stop the container before attempting removal or force remove`);
      await this.update(r.Id, (x) => {
        x.State.Status = 'removing';
      });
      // Defensive: whatever a crash may have left.
      await this.teardown(r.Id).catch(() => undefined);
      this.stopHealthMonitor(r.Id);
      await this.execs.removeForContainer(r.Id);
      for (const s of this.pendingAttach.get(r.Id) ?? []) s.endExited();
      this.pendingAttach.delete(r.Id);
      await rm(this.containerDir(r.Id), { recursive: true, force: true });
      await this.records.delete(r.Id);
      if (opts.volumes) await removeAnonymous(this.volumes, cur.MountPoints);
      this.publish(cur, 'destroy');
      this.bus.emit(`removed:${r.Id}`, cur.State.ExitCode);
      this.bus.emit(`exit:${r.Id}`, cur.State.ExitCode);
    });
  }

  /**
   * docker update: restart policy and resource limits; a running container's
   * cgroups change at once (runc update), the record for its next starts.
   */
  async updateContainer(idOrName: string, body: ResourceConfig & { RestartPolicy?: { Name?: string; MaximumRetryCount?: number } }): Promise<{ Warnings: string[] }> {
    if (!body || typeof body !== 'object') throw new InvalidParameter('config cannot be empty in order to update a container');
    for (const k of UPDATABLE) {
      const v = body[k];
      if (v === undefined || v === null) continue;
      const ok = k.startsWith('Cpuset') ? typeof v === 'string' : Number.isSafeInteger(v);
      if (!ok) throw new InvalidParameter(`json: cannot unmarshal ${typeof v} into Go struct field UpdateConfig.${k} of type ${k.startsWith('Cpuset') ? 'string' : 'int64'}`);
    }
    const r0 = await this.get(idOrName);
    return this.withLock(r0.Id, async () => {
      const r = await this.get(r0.Id);
      if (body.RestartPolicy) {
        validateRestartPolicy(body.RestartPolicy);
        if (r.HostConfig.AutoRemove && body.RestartPolicy.Name && body.RestartPolicy.Name !== 'no') {
          throw new InvalidParameter('Restart policy cannot be updated because AutoRemove is enabled for the container');
        }
      }
      validateResources(body as Parameters<typeof validateResources>[0]);
      checkResources({ ...(r.HostConfig as ResourceConfig), ...body, ...(body.NanoCpus ? { CpuQuota: 0, CpuPeriod: 0 } : {}) });
      const next = mergeUpdate(r.HostConfig as ResourceConfig, body);
      if (r.State.Running && UPDATABLE.some((k) => body[k] !== undefined && body[k] !== null)) {
        const dir = join(this.bundleDir(r.Id), 'update');
        await mkdir(dir, { recursive: true, mode: 0o700 });
        const file = join(dir, 'resources.json');
        const res = ociResources(next);
        // Lifting a pids limit: runc's -1 is "max".
        if (body.PidsLimit !== undefined && body.PidsLimit !== null && !(next.PidsLimit && next.PidsLimit > 0)) res.pids = { limit: -1 };
        await writeFile(file, JSON.stringify(res));
        await this.runc(['update', '--resources', file, r.Id]).catch((e) => {
          throw new CoveError(`Cannot update container ${r.Id}: ${(e as Error).message}`, 500);
        });
      }
      const updated = await this.update(r.Id, (x) => {
        Object.assign(x.HostConfig, next);
        if (body.RestartPolicy) x.HostConfig.RestartPolicy = { Name: body.RestartPolicy.Name ?? '', MaximumRetryCount: body.RestartPolicy.MaximumRetryCount ?? 0 };
      });
      this.publish(updated, 'update');
      return { Warnings: [] };
    });
  }

  /** docker container prune: every stopped container the filters keep (prune.ts), with the space of its writable layer. */
  async prune(filters: Filters = {}): Promise<{ ContainersDeleted: string[] | null; SpaceReclaimed: number }> {
    const wanted = prunePredicate(filters);
    const deleted: string[] = [];
    let space = 0;
    for (const { value: r } of await this.records.list()) {
      if (!wanted({ Id: r.Id, Created: r.Created, Labels: r.Config.Labels ?? {}, Status: r.State.Status })) continue;
      const size = await dirSize(rootfsPaths(this.containerDir(r.Id)).upper);
      try {
        await this.removeRecord(r);
        deleted.push(r.Id);
        space += size;
      } catch (e) {
        // Started meanwhile: not prunable any more.
        this.log.info({ id: r.Id, err: (e as Error).message }, 'prune skipped a container');
      }
    }
    this.events.publish('container', 'prune', '', { reclaimed: String(space) });
    return { ContainersDeleted: deleted.length ? deleted : null, SpaceReclaimed: space };
  }

  async rename(idOrName: string, newName: string): Promise<void> {
    const r = await this.get(idOrName);
    if (!newName || !VALID_NAME.test(newName) || newName.replace(/^\//, '').length > MAX_NAME_LENGTH) throw new InvalidParameter(`Invalid container name (${newName}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    const target = '/' + newName.replace(/^\//, '');
    if (target === r.Name) throw new InvalidParameter(`Renaming a container with the same name as its current name`);
    await this.withLock('create', async () => {
      const clash = (await this.records.list()).find((x) => x.value.Name === target);
      if (clash) {
        throw new Conflict(`Conflict. The container name "${target}" is already in use by container "${clash.value.Id}". You have to remove (or rename) that container to be able to reuse that name.`);
      }
      await this.update(r.Id, (x) => {
        x.Name = target;
      });
    });
    if (r.State.Running) {
      await this.networks.renameContainer(r.Id, target.slice(1)).catch((e) => this.log.warn({ id: r.Id, err: (e as Error).message }, 'network rename failed'));
    }
    const cur = await this.get(r.Id);
    this.publish(cur, 'rename', { oldName: r.Name });
  }

  // ---------- wait ----------

  async wait(idOrName: string, condition: 'not-running' | 'next-exit' | 'removed' = 'not-running'): Promise<{ StatusCode: number; Error?: { Message: string } | null }> {
    const r = await this.get(idOrName);
    const result = async (): Promise<{ StatusCode: number; Error: { Message: string } | null }> => {
      const cur = (await this.records.get(r.Id))?.value;
      const st = cur?.State ?? r.State;
      return { StatusCode: st.ExitCode, Error: st.Error ? { Message: st.Error } : null };
    };
    if (condition === 'not-running' && !r.State.Running) return result();
    if (condition === 'removed') {
      const code = await new Promise<number>((resolve) => {
        this.bus.once(`removed:${r.Id}`, (c: number) => resolve(c));
      });
      return { StatusCode: code, Error: null };
    }
    const code = await new Promise<number>((resolve) => {
      this.bus.once(`exit:${r.Id}`, (c: number) => resolve(c));
    });
    const res = await result();
    return { ...res, StatusCode: res.StatusCode ?? code };
  }

  // ---------- logs ----------

  logs(idOrName: string, opts: LogOptions): AsyncIterable<LogEntry> {
    const self = this;
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
          yield* readLogs(self.logPath(id), opts, {
            isLive: () => live && !self.closed,
            changed: (ms) => new Promise<void>((resolve) => {
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

  // ---------- pause / top / stats ----------

  async pause(idOrName: string): Promise<void> {
    const r0 = await this.get(idOrName);
    await this.withLock(r0.Id, async () => {
      const r = await this.get(r0.Id);
      if (!r.State.Running) throw new Conflict(`Container ${r.Id} is not running`);
      if (r.State.Paused) throw new Conflict(`Container ${r.Id} is already paused`);
      if (r.State.Restarting) throw new Conflict(`Container ${r.Id} is restarting, wait until the container is running`);
      await this.runc(['pause', r.Id]).catch((e) => {
        throw new CoveError(`Cannot pause container ${r.Id}: ${(e as Error).message}`, 500);
      });
      const next = await this.update(r.Id, (x) => {
        x.State.Paused = true;
        x.State.Status = 'paused';
      });
      this.publish(next, 'pause');
    });
  }

  async unpause(idOrName: string): Promise<void> {
    const r0 = await this.get(idOrName);
    await this.withLock(r0.Id, async () => {
      const r = await this.get(r0.Id);
      if (!r.State.Paused) throw new Conflict(`Container ${r.Id} is not paused`);
      await this.thaw(r);
      this.publish(await this.get(r.Id), 'unpause');
    });
  }

  /** Resumes a frozen container (signals to a frozen cgroup wait until it thaws: stop/kill/rm thaw first, as Docker does). */
  private async thaw(r: ContainerRecord): Promise<void> {
    if (!r.State.Paused) return;
    await this.runc(['resume', r.Id]).catch((e) => {
      throw new CoveError(`Cannot unpause container ${r.Id}: ${(e as Error).message}`, 500);
    });
    await this.update(r.Id, (x) => {
      x.State.Paused = false;
      if (x.State.Running) x.State.Status = 'running';
    });
  }

  async top(idOrName: string, psArgs: string): Promise<{ Titles: string[]; Processes: string[][] }> {
    const r = await this.get(idOrName);
    if (!r.State.Running) throw new Conflict(`Container ${r.Id} is not running`);
    if (r.State.Restarting) throw new Conflict(`Container ${r.Id} is restarting, wait until the container is running`);
    return topOf(r.Id, psArgs);
  }

  /**
   * Docker's stats samples: one a second while `stream`, else one (with
   * precpu_stats from a sample a second earlier unless `oneShot`).
   */
  async *stats(idOrName: string, opts: { stream: boolean; oneShot: boolean }): AsyncGenerator<Record<string, unknown>> {
    const r0 = await this.get(idOrName);
    let prev: Record<string, unknown> | undefined;
    const take = async (): Promise<Record<string, unknown> | undefined> => {
      const r = (await this.records.get(r0.Id))?.value;
      if (!r) return undefined;
      const s = await statsSample({ id: r.Id, name: r.Name, pid: r.State.Pid, running: r.State.Running, hostNetwork: r.HostConfig.NetworkMode === 'host' });
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
    while (!this.closed) {
      const s = await take();
      if (!s) return;
      yield s;
      await new Promise((res) => setTimeout(res, 1000));
    }
  }

  // ---------- archive (docker cp) ----------

  /**
   * Runs `fn` with the container's rootfs mounted: as it is while running; for
   * a stopped container mounted for the call (under the container's lock, so a
   * start waits) and unmounted after.
   */
  private async withRootfs<T>(idOrName: string, fn: (r: ContainerRecord, merged: string) => Promise<T>): Promise<T> {
    const r0 = await this.get(idOrName);
    const rootfs = rootfsPaths(this.containerDir(r0.Id));
    if (r0.State.Running && (await isMounted(rootfs.merged))) return fn(r0, rootfs.merged);
    return this.withLock(r0.Id, async () => {
      const r = await this.get(r0.Id);
      if (r.State.Running) return fn(r, rootfs.merged);
      await mountRootfs(rootfs, await this.images.lowerDirs(r.ImageID));
      try {
        return await fn(r, rootfs.merged);
      } finally {
        await unmountRootfs(rootfs).catch((e) => this.log.warn({ id: r.Id, err: (e as Error).message }, 'unmount after archive failed'));
      }
    });
  }

  async archiveStat(idOrName: string, path: string): Promise<PathStat> {
    return this.withRootfs(idOrName, async (r, merged) =>
      statPath(locate(merged, r.MountPoints ?? [], path, !!r.HostConfig.ReadonlyRootfs, false), path, idOrName));
  }

  /** GET archive: the stat header value and a tar; the rootfs stays mounted until the tar has been read. */
  async archiveGet(idOrName: string, path: string, consume: (statHeader: string, tar: Readable) => Promise<void>): Promise<void> {
    await this.withRootfs(idOrName, async (r, merged) => {
      const loc = locate(merged, r.MountPoints ?? [], path, !!r.HostConfig.ReadonlyRootfs, false);
      const st = await statPath(loc, path, idOrName);
      await consume(encodeStat(st), tarOf(loc, path));
    });
  }

  async archivePut(idOrName: string, path: string, input: Readable, opts: { copyUIDGID?: boolean }): Promise<void> {
    await this.withRootfs(idOrName, async (r, merged) => {
      const loc = locate(merged, r.MountPoints ?? [], path, !!r.HostConfig.ReadonlyRootfs, true);
      await extractInto(loc, path, idOrName, input, opts);
    });
  }

  // ---------- diff / export / commit ----------

  /** docker diff: the writable layer's changes against the image (fs-changes.ts). */
  async changes(idOrName: string): Promise<FsChange[] | null> {
    const r = await this.get(idOrName);
    const lowers = await this.images.lowerDirs(r.ImageID).catch(() => [] as string[]);
    const list = await containerChanges(rootfsPaths(this.containerDir(r.Id)).upper, lowers);
    return list.length ? list : null;
  }

  /** docker export: a tar of the container's root filesystem (its volumes not included). */
  async exportRootfs(idOrName: string, consume: (tar: Readable) => Promise<void>): Promise<void> {
    await this.withRootfs(idOrName, async (r, merged) => {
      const names = (await readdir(merged)).sort();
      this.publish(r, 'export');
      await consume(tar.c({ cwd: merged, portable: false, follow: false }, names) as unknown as Readable);
    });
  }

  /**
   * docker commit: the container's writable layer on top of its image, with
   * its run config (the body's keys over the container's) and the `changes`
   * (Dockerfile instructions) applied. A running container is paused meanwhile
   * unless `pause` is false, as Docker does.
   */
  async commit(idOrName: string, opts: {
    repo?: string; tag?: string; comment?: string; author?: string; changes?: string[]; pause?: boolean; config?: Partial<DockerContainerConfig>;
  }): Promise<{ Id: string }> {
    const r = await this.get(idOrName);
    if (r.State.Status === 'removing') throw new Conflict(`You cannot commit container ${r.Id} which is being removed`);
    if (r.State.Dead) throw new Conflict(`You cannot commit container ${r.Id} which is dead`);
    const base: ImageRunConfig = {};
    for (const k of COMMIT_CONFIG_KEYS) {
      const v = (opts.config as Record<string, unknown> | undefined)?.[k] ?? (r.Config as Record<string, unknown>)[k];
      if (v !== undefined && v !== null && v !== '') (base as Record<string, unknown>)[k] = structuredClone(v);
    }
    // Validate the instructions before pausing anything.
    const config = applyChanges(base, opts.changes ?? []);
    const pauseIt = opts.pause !== false && r.State.Running && !r.State.Paused;
    if (pauseIt) await this.pause(r.Id);
    let id: string;
    try {
      id = await this.images.commitLayer({
        base: r.ImageID,
        layer: await upperLayerTar(rootfsPaths(this.containerDir(r.Id)).upper),
        config,
        ...(opts.repo ? { repo: opts.repo } : {}),
        ...(opts.tag ? { tag: opts.tag } : {}),
        ...(opts.comment ? { comment: opts.comment } : {}),
        ...(opts.author ? { author: opts.author } : {}),
        createdBy: (r.Config.Cmd ?? []).join(' '),
        containerId: r.Id,
      });
    } finally {
      if (pauseIt) await this.unpause(r.Id).catch((e) => this.log.warn({ id: r.Id, err: (e as Error).message }, 'unpause after commit failed'));
    }
    const ref = opts.repo ? `${opts.repo}${opts.tag ? ':' + opts.tag : ''}` : '';
    this.publish(await this.get(r.Id), 'commit', { comment: opts.comment ?? '', imageID: id, imageRef: ref });
    return { Id: id };
  }

  // ---------- attach / resize ----------

  async attach(idOrName: string, opts: AttachOptions): Promise<IoSession> {
    const r = await this.get(idOrName);
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
      for await (const e of readLogs(this.logPath(r.Id), { follow: false, stdout: opts.stdout, stderr: opts.stderr, timestamps: false, tail: 'all' })) {
        session.replay(e.stream, e.data);
      }
    }
    this.publish(r, 'attach');
    if (!opts.stream) {
      session.endExited();
      return session;
    }
    await this.withLock(r.Id, async () => {
      const cur = await this.get(r.Id);
      if (cur.State.Running) {
        await session.connect(this.attachPath(ContainerManager.cuuid(r.Id)));
        this.liveSessions.add(session);
      } else {
        // Docker lets clients attach before start (docker run, start -a): connect at start.
        const set = this.pendingAttach.get(r.Id) ?? new Set();
        set.add(session);
        this.pendingAttach.set(r.Id, set);
        session.done.then(() => set.delete(session)).catch(() => undefined);
      }
    });
    session.done.then(() => this.liveSessions.delete(session)).catch(() => undefined);
    return session;
  }

  async resize(idOrName: string, rows: number, cols: number): Promise<void> {
    const r = await this.get(idOrName);
    if (!r.State.Running) throw new Conflict(`Container ${r.Id} is not running`);
    if (!r.Config.Tty) return;
    await resizeTty(this.bundleDir(r.Id), rows, cols).catch((e) => {
      throw new CoveError(`cannot resize container ${r.Id}: ${(e as Error).message}`, 500);
    });
  }

  // ---------- health checks (health.ts has the rules) ----------

  private readonly healthMonitors = new Map<string, { stop: () => void }>();

  /** Runs the container's HEALTHCHECK until it stops; one monitor per container. */
  private startHealthMonitor(r: ContainerRecord): void {
    const probe = probeOf(r.Config.Healthcheck as HealthConfig | undefined, r.Config.Shell as string[] | undefined);
    if (!probe || this.healthMonitors.has(r.Id)) return;
    const id = r.Id;
    const startedAt = Date.parse(r.State.StartedAt) || Date.now();
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const schedule = (ms: number): void => {
      if (stopped) return;
      timer = setTimeout(() => void tick().catch((e) => this.log.warn({ id, err: (e as Error).message }, 'health check failed to run')).finally(() => {
        const h = this.healthOf(id);
        void h.then((st) => schedule(nextDelayMs(probe, st ?? initialHealth(), Date.now() - startedAt)));
      }), ms);
      timer.unref?.();
    };
    const tick = async (): Promise<void> => {
      const cur = (await this.records.get(id))?.value;
      if (!cur?.State.Running) return this.stopHealthMonitor(id);
      if (cur.State.Paused) return;
      const result = await this.runProbe(cur, probe);
      if (stopped) return;
      let changed: string | undefined;
      const next = await this.update(id, (x) => {
        if (!x.State.Running) return;
        const before = x.State.Health ?? initialHealth();
        x.State.Health = applyResult(probe, before, result, Date.now() - startedAt);
        if (x.State.Health.Status !== before.Status) changed = x.State.Health.Status;
      });
      if (changed) this.publish(next, `health_status: ${changed}`);
    };
    this.healthMonitors.set(id, {
      stop: () => {
        stopped = true;
        if (timer) clearTimeout(timer);
      },
    });
    schedule(nextDelayMs(probe, r.State.Health ?? initialHealth(), Date.now() - startedAt));
  }

  private stopHealthMonitor(id: string): void {
    this.healthMonitors.get(id)?.stop();
    this.healthMonitors.delete(id);
  }

  private async healthOf(id: string): Promise<ContainerRecord['State']['Health']> {
    return (await this.records.get(id))?.value.State.Health;
  }

  /** One probe: an exec like Docker's (exec_create/exec_start/exec_die events), output kept, cut at the timeout. */
  private async runProbe(r: ContainerRecord, probe: Probe): Promise<HealthLogEntry> {
    const start = new Date().toISOString();
    const { Id: execId } = await this.execCreate(r.Id, { Cmd: probe.cmd, AttachStdout: true, AttachStderr: true, Tty: false });
    const ex = this.execs.get(execId)!;
    const chunks: Buffer[] = [];
    let size = 0;
    const keep = (b: Buffer): void => {
      if (size < 4096) chunks.push(b);
      size += b.length;
    };
    let timedOut = false;
    try {
      const session = await this.execStart(execId, { Detach: false, Tty: false });
      session?.stdout?.on('data', keep);
      session?.stderr?.on('data', keep);
      const cut = setTimeout(() => {
        timedOut = true;
        try {
          if (ex.pid) process.kill(ex.pid, 'SIGKILL');
        } catch {
          // already gone
        }
        session?.close();
      }, probe.timeoutMs);
      try {
        await session?.done;
        for (let i = 0; i < 100 && ex.running; i++) await new Promise((res) => setTimeout(res, 20));
      } finally {
        clearTimeout(cut);
      }
    } catch (e) {
      return { Start: start, End: new Date().toISOString(), ExitCode: -1, Output: (e as Error).message };
    }
    // The session stays a record like any exec (ExecRecords.trim keeps the newest 64 per container).
    const end = new Date().toISOString();
    if (timedOut) return { Start: start, End: end, ExitCode: -1, Output: timeoutMessage(probe) };
    return { Start: start, End: end, ExitCode: ex.exitCode ?? -1, Output: Buffer.concat(chunks).toString('utf8') };
  }

  // ---------- exec ----------

  async execCreate(idOrName: string, body: DockerExecCreate): Promise<{ Id: string }> {
    const r = await this.get(idOrName);
    if (!r.State.Running) throw new Conflict(`Container ${r.Id} is not running`);
    if (!body || !Array.isArray(body.Cmd) || !body.Cmd.length) throw new InvalidParameter('No exec command specified');
    if (body.DetachKeys) parseDetachKeys(body.DetachKeys);
    const id = newId();
    await this.execs.trim(r.Id);
    await this.execs.save({
      id, containerId: r.Id, config: structuredClone(body), running: false, exitCode: null, pid: 0, started: false,
      dir: join(this.bundleDir(r.Id), 'exec', id.slice(0, 16)),
    });
    this.publish(r, 'exec_create', { execID: id, exec_command: body.Cmd.join(' ') });
    return { Id: id };
  }

  private getExec(execId: string): ExecRecord {
    const ex = this.execs.get(execId);
    if (!ex) throw new NotFound(`No such exec instance: ${execId}`);
    return ex;
  }

  async execStart(execId: string, opts: { Detach?: boolean; Tty?: boolean }): Promise<IoSession | undefined> {
    const ex = this.getExec(execId);
    if (ex.started) throw new Conflict(`Error: Exec command ${execId} has already run`);
    const r = await this.get(ex.containerId);
    if (!r.State.Running) throw new Conflict(`Container ${r.Id} is not running`);
    ex.started = true;
    const c = ex.config;
    const tty = opts.Tty ?? !!c.Tty;
    const detach = !!opts.Detach;
    const rootfs = rootfsPaths(this.containerDir(r.Id)).merged;
    const user = resolveUser(rootfs, c.User || r.Config.User);
    const env = new Map<string, string>();
    for (const e of [...(r.Config.Env ?? []), ...(c.Env ?? [])]) env.set(e.split('=')[0]!, e);
    if (!env.has('HOSTNAME')) env.set('HOSTNAME', `HOSTNAME=${r.Config.Hostname || r.Id.slice(0, 12)}`);
    if (tty && !env.has('TERM')) env.set('TERM', 'TERM=xterm');
    if (!env.has('HOME')) env.set('HOME', `HOME=${user.home}`);
    const caps = capabilities(!!(c.Privileged || r.HostConfig.Privileged), r.HostConfig.CapAdd ?? [], (r.HostConfig.CapDrop as string[] | undefined) ?? []);
    const spec = processSpec({ args: c.Cmd, env: [...env.values()], cwd: c.WorkingDir || r.Config.WorkingDir || '/', tty, user, caps });
    if (tty && c.ConsoleSize?.length === 2) spec.consoleSize = { height: c.ConsoleSize[0], width: c.ConsoleSize[1] };
    await mkdir(ex.dir, { recursive: true, mode: 0o700 });
    const specPath = join(ex.dir, 'process.json');
    await writeFile(specPath, JSON.stringify(spec));
    const cuuid = ex.id.slice(0, 32);
    const wantStdin = !!c.AttachStdin && !detach;
    const session = detach
      ? undefined
      : new AttachSession({
          tty,
          stdin: wantStdin,
          stdout: c.AttachStdout !== false,
          stderr: c.AttachStderr !== false,
          detachKeys: c.DetachKeys,
          closeStdinOnEof: true,
          resize: (rows, cols) => this.execResize(ex.id, rows, cols),
          exitGate: () => exitKnown,
        });
    let markExit!: () => void;
    const exitKnown = new Promise<void>((res) => {
      markExit = res;
    });
    this.publish(r, 'exec_start', { execID: ex.id, exec_command: c.Cmd.join(' ') });
    ex.running = true;
    try {
      const handle = await conmonExec(
        this.paths,
        {
          containerId: r.Id, execId: cuuid, dir: ex.dir, processSpecPath: specPath, tty, stdin: wantStdin, attach: !detach,
          pidFile: join(ex.dir, 'pid'), conmonPidFile: join(ex.dir, 'conmon.pid'), exitDir: ex.dir,
        },
        session ? () => session.connect(this.attachPath(cuuid)) : undefined,
      );
      ex.pid = handle.pid;
      const conmonPid = Number.parseInt(await readFile(join(ex.dir, 'conmon.pid'), 'utf8').catch(() => ''), 10);
      if (conmonPid > 0) ex.conmonPid = conmonPid;
      await this.execs.save(ex);
      handle.exit.then(async (m) => {
        ex.running = false;
        if (m.data < 0) {
          const msg = m.message ?? 'exec failed';
          ex.exitCode = /not found|no such file/i.test(msg) ? 127 : 126;
          session?.stderr?.write(`OCI runtime exec failed: ${msg}\n`);
          if (session?.tty) session.stdout?.write(`OCI runtime exec failed: ${msg}\n`);
        } else {
          ex.exitCode = m.data;
        }
        delete ex.conmonPid;
        await this.execs.save(ex);
        this.publish(r, 'exec_die', { execID: ex.id, exitCode: String(ex.exitCode) });
        markExit();
        // The socket may already be gone; end the session now that the code is known.
        setTimeout(() => session?.endExited(), 50).unref();
        void rm(ex.dir, { recursive: true, force: true }).catch(() => undefined);
        void rm(join(this.paths.socketDir, cuuid), { force: true }).catch(() => undefined);
      }).catch(() => undefined);
      return session;
    } catch (e) {
      ex.running = false;
      ex.exitCode = 126;
      await this.execs.save(ex);
      markExit();
      session?.close();
      await rm(ex.dir, { recursive: true, force: true });
      throw new CoveError(`OCI runtime exec failed: ${(e as Error).message}`, 500);
    }
  }

  async execInspect(execId: string): Promise<Record<string, unknown>> {
    const ex = this.getExec(execId);
    const c = ex.config;
    return {
      ID: ex.id,
      Running: ex.running,
      ExitCode: ex.exitCode,
      ProcessConfig: { tty: !!c.Tty, entrypoint: c.Cmd[0], arguments: c.Cmd.slice(1), privileged: !!c.Privileged, user: c.User ?? '' },
      OpenStdin: !!c.AttachStdin,
      OpenStderr: !!c.AttachStderr,
      OpenStdout: !!c.AttachStdout,
      CanRemove: false,
      ContainerID: ex.containerId,
      DetachKeys: c.DetachKeys ?? '',
      Pid: ex.pid,
    };
  }

  async execResize(execId: string, rows: number, cols: number): Promise<void> {
    const ex = this.getExec(execId);
    if (!ex.running) throw new Conflict(`Exec ${execId} is not running`);
    if (!ex.config.Tty) return;
    await resizeTty(ex.dir, rows, cols);
  }

  // ---------- networks ----------

  async connectNetwork(idOrName: string, network: string, settings: DockerEndpointSettings): Promise<void> {
    const r = await this.get(idOrName);
    const mode = r.HostConfig.NetworkMode ?? 'bridge';
    const net = await this.networks.resolveNetwork(network);
    if (mode === 'host' || net.name === 'host') throw new Forbidden('container cannot be disconnected from host network or connected to host network');
    if (mode === 'none' || mode.startsWith('container:') || net.name === 'none') {
      throw new Forbidden('container sharing network namespace with another container or host cannot be connected to any other network');
    }
    checkEndpointSettings(settings);
    const already = Object.entries(r.EndpointsConfig).find(([n, s]) => n === net.name || n === net.id || s.NetworkID === net.id);
    if (already) throw new Forbidden(`endpoint with name ${r.Name.replace(/^\//, '')} already exists in network ${net.name}`);
    if (r.State.Running) {
      await this.networks.connect(r.Id, endpointRequest(net.name, settings));
    }
    await this.update(r.Id, (x) => {
      x.EndpointsConfig[net.name] = { ...structuredClone(settings ?? {}), NetworkID: net.id };
    });
  }

  async disconnectNetwork(idOrName: string, network: string, force: boolean): Promise<void> {
    const r = await this.get(idOrName);
    const mode = r.HostConfig.NetworkMode ?? 'bridge';
    let net: { id: string; name: string };
    try {
      net = await this.networks.resolveNetwork(network);
    } catch (e) {
      if (!force) throw e;
      net = { id: network, name: network };
    }
    if (mode === 'host' || net.name === 'host') throw new Forbidden('container cannot be disconnected from host network or connected to host network');
    const entry = Object.entries(r.EndpointsConfig).find(([n, s]) => n === net.name || n === net.id || s.NetworkID === net.id);
    if (!entry) {
      if (mode === 'none' || mode.startsWith('container:')) {
        throw new Forbidden('container sharing network namespace with another container or host cannot be connected to any other network');
      }
      throw new Forbidden(`container ${r.Id} is not connected to network ${network}`);
    }
    if (r.State.Running) await this.networks.disconnect(r.Id, net.name, force);
    await this.update(r.Id, (x) => {
      delete x.EndpointsConfig[entry[0]];
    });
  }

  // ---------- inspect / list ----------

  private async settingsOf(r: ContainerRecord): Promise<DockerNetworkSettings> {
    if (r.State.Running) {
      const live = await this.networks.networkSettings(r.Id).catch(() => undefined);
      if (live) return live;
    }
    const networks: Record<string, DockerEndpointSettings> = {};
    for (const [name, s] of Object.entries(r.EndpointsConfig)) {
      networks[name] = {
        IPAMConfig: s.IPAMConfig ?? null,
        Links: s.Links ?? null,
        Aliases: s.Aliases ?? null,
        MacAddress: s.MacAddress ?? '',
        DriverOpts: s.DriverOpts ?? null,
        GwPriority: s.GwPriority ?? 0,
        NetworkID: s.NetworkID ?? '',
        EndpointID: '',
        Gateway: '',
        IPAddress: '',
        IPPrefixLen: 0,
        IPv6Gateway: '',
        GlobalIPv6Address: '',
        GlobalIPv6PrefixLen: 0,
        DNSNames: null,
      };
    }
    const mode = r.HostConfig.NetworkMode ?? 'bridge';
    if ((mode === 'host' || mode === 'none') && !networks[mode]) {
      const net = await this.networks.resolveNetwork(mode).catch(() => undefined);
      networks[mode] = {
        IPAMConfig: null, Links: null, Aliases: null, MacAddress: '', DriverOpts: null, GwPriority: 0, NetworkID: net?.id ?? '',
        EndpointID: '', Gateway: '', IPAddress: '', IPPrefixLen: 0, IPv6Gateway: '', GlobalIPv6Address: '', GlobalIPv6PrefixLen: 0, DNSNames: null,
      };
    }
    return {
      Bridge: '', SandboxID: '', SandboxKey: '', Ports: {}, HairpinMode: false, LinkLocalIPv6Address: '', LinkLocalIPv6PrefixLen: 0,
      SecondaryIPAddresses: null, SecondaryIPv6Addresses: null, EndpointID: '', Gateway: '', GlobalIPv6Address: '', GlobalIPv6PrefixLen: 0,
      IPAddress: '', IPPrefixLen: 0, IPv6Gateway: '', MacAddress: '', Networks: networks,
    };
  }

  async inspect(idOrName: string): Promise<DockerContainerInspect> {
    const r = await this.get(idOrName);
    const cdir = this.containerDir(r.Id);
    const rf = rootfsPaths(cdir);
    const lowers = await this.images.lowerDirs(r.ImageID).catch(() => [] as string[]);
    const execIds = [...this.execs.values()].filter((e) => e.containerId === r.Id && e.running).map((e) => e.id);
    return {
      Id: r.Id,
      Created: r.Created,
      Path: r.Path,
      Args: r.Args,
      State: r.State,
      Image: r.ImageID,
      ResolvConfPath: r.ResolvConfPath || join(cdir, 'resolv.conf'),
      HostnamePath: r.HostnamePath || join(cdir, 'hostname'),
      HostsPath: r.HostsPath || join(cdir, 'hosts'),
      LogPath: this.logPath(r.Id),
      Name: r.Name,
      RestartCount: r.RestartCount,
      Driver: 'overlay2',
      Platform: 'linux',
      MountLabel: '',
      ProcessLabel: '',
      AppArmorProfile: '',
      ExecIDs: execIds.length ? execIds : null,
      HostConfig: hostConfigView({
        ...r.HostConfig,
        LogConfig: logConfigOf(r),
        RestartPolicy: r.HostConfig.RestartPolicy ?? { Name: 'no', MaximumRetryCount: 0 },
        AutoRemove: !!r.HostConfig.AutoRemove,
        PortBindings: r.HostConfig.PortBindings ?? {},
        PublishAllPorts: !!r.HostConfig.PublishAllPorts,
        Dns: r.HostConfig.Dns ?? [],
        DnsOptions: r.HostConfig.DnsOptions ?? [],
        DnsSearch: r.HostConfig.DnsSearch ?? [],
        ExtraHosts: r.HostConfig.ExtraHosts ?? null,
        Privileged: !!r.HostConfig.Privileged,
        CapAdd: r.HostConfig.CapAdd ?? null,
      }),
      GraphDriver: {
        Name: 'overlay2',
        Data: { LowerDir: lowers.join(':'), UpperDir: rf.upper, WorkDir: rf.work, MergedDir: rf.merged },
      },
      Mounts: (r.MountPoints ?? []).map(mountView),
      Config: configView(r.Config),
      NetworkSettings: await this.settingsOf(r),
    };
  }

  async list(opts: { all?: boolean; limit?: number; filters?: Filters } = {}): Promise<DockerContainerSummary[]> {
    const f = opts.filters ?? {};
    const known = ['id', 'name', 'status', 'label', 'network', 'ancestor', 'exited', 'before', 'since', 'health', 'isolation', 'is-task', 'publish', 'expose', 'volume'];
    for (const k of Object.keys(f)) if (!known.includes(k)) throw new InvalidParameter(`Invalid filter '${k}'`);
    const statuses = ['created', 'restarting', 'running', 'removing', 'paused', 'exited', 'dead'];
    for (const v of f.status ?? []) if (!statuses.includes(v)) throw new InvalidParameter(`Invalid filter 'status=${v}'`);
    for (const v of f.exited ?? []) if (!/^-?\d+$/.test(v)) throw new InvalidParameter(`Invalid filter 'exited=${v}'`);
    for (const v of f.health ?? []) if (!['starting', 'healthy', 'unhealthy', 'none'].includes(v)) throw new InvalidParameter(`Unrecognised filter value for health: ${v}`);
    const nameMatchers = (f.name ?? []).map((p) => goRegexp(p.replace(/^\//, '')));
    let rows = (await this.records.list()).map((x) => x.value).sort((a, b) => b.Created.localeCompare(a.Created));
    // before/since: relative to another container's creation.
    for (const [key, keepIf] of [['before', (c: string, ref: string) => c < ref], ['since', (c: string, ref: string) => c > ref]] as const) {
      for (const v of f[key] ?? []) {
        const ref = await this.get(v);
        rows = rows.filter((r) => keepIf(r.Created, ref.Created));
      }
    }
    const out: DockerContainerSummary[] = [];
    const netIds = new Map<string, string>();
    for (const r of rows) {
      if (!opts.all && !r.State.Running && !(f.status?.length || f.exited?.length)) continue;
      if (f.id?.length && !f.id.some((p) => r.Id.startsWith(p))) continue;
      if (nameMatchers.length && !nameMatchers.some((m) => m(r.Name.slice(1)))) continue;
      if (f.status?.length && !f.status.includes(r.State.Status)) continue;
      if (f.exited?.length && !(r.State.Status === 'exited' && f.exited.includes(String(r.State.ExitCode)))) continue;
      if (f.health?.length && !f.health.includes(r.State.Health?.Status ?? 'none')) continue;
      if (f.label?.length && !f.label.every((l) => {
        const eq = l.indexOf('=');
        const labels = r.Config.Labels ?? {};
        return eq < 0 ? l in labels : labels[l.slice(0, eq)] === l.slice(eq + 1);
      })) continue;
      if (f.volume?.length && !f.volume.some((v) => (r.MountPoints ?? []).some((m) => m.Name === v || m.Destination === v || (m.Type === 'bind' && m.Source === v)))) continue;
      if (f.ancestor?.length) {
        const ids = await Promise.all(f.ancestor.map((a) => this.images.resolve(a).catch(() => '')));
        if (!ids.includes(r.ImageID) && !f.ancestor.includes(r.ImageRef)) continue;
      }
      if (f.network?.length) {
        const mine = new Set<string>();
        for (const [n, s] of Object.entries(r.EndpointsConfig)) {
          mine.add(n);
          if (s.NetworkID) mine.add(s.NetworkID);
        }
        if (r.HostConfig.NetworkMode === 'host' || r.HostConfig.NetworkMode === 'none') mine.add(r.HostConfig.NetworkMode);
        if (!f.network.some((n) => mine.has(n) || [...mine].some((m) => /^[0-9a-f]{64}$/.test(m) && m.startsWith(n)))) continue;
      }
      const settings = await this.settingsOf(r);
      for (const [n, s] of Object.entries(settings.Networks)) if (s.NetworkID) netIds.set(n, s.NetworkID);
      const ports: DockerContainerSummary['Ports'] = [];
      if (r.State.Running) {
        for (const [key, binds] of Object.entries(settings.Ports ?? {})) {
          const p = parsePortKey(key);
          if (!binds?.length) ports.push({ PrivatePort: p.start, Type: p.protocol });
          else for (const b of binds) ports.push({ IP: b.HostIp || '0.0.0.0', PrivatePort: p.start, PublicPort: Number(b.HostPort), Type: p.protocol });
        }
      }
      if (!ports.length) for (const e of exposedPorts(r.Config.ExposedPorts)) ports.push({ PrivatePort: e.port, Type: e.protocol });
      // publish=<port>[/<proto>] matches published host ports, expose=... container ports (ranges allowed).
      if (f.publish?.length && !f.publish.some((v) => ports.some((p) => p.PublicPort !== undefined && portMatches(v, p.PublicPort, p.Type)))) continue;
      if (f.expose?.length && !f.expose.some((v) => [...ports.map((p) => ({ port: p.PrivatePort, proto: p.Type })), ...exposedPorts(r.Config.ExposedPorts).map((e) => ({ port: e.port, proto: e.protocol as string }))].some((p) => portMatches(v, p.port, p.proto)))) continue;
      out.push({
        Id: r.Id,
        Names: [r.Name],
        Image: r.ImageRef,
        ImageID: r.ImageID,
        Command: [r.Path, ...r.Args].map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' '),
        Created: Math.floor(Date.parse(r.Created) / 1000),
        Ports: ports,
        Labels: r.Config.Labels ?? {},
        State: r.State.Status,
        Status: statusText(r.State),
        HostConfig: { NetworkMode: r.HostConfig.NetworkMode ?? 'bridge' },
        NetworkSettings: { Networks: settings.Networks },
        Mounts: (r.MountPoints ?? []).map(mountView),
      });
    }
    return opts.limit && opts.limit > 0 ? out.slice(0, opts.limit) : out;
  }

  // ---------- daemon start / stop ----------

  async restore(): Promise<void> {
    this.deferredRestarts ??= [];
    await mkdir(this.exitDir, { recursive: true });
    await mkdir(this.paths.socketDir, { recursive: true });
    await this.images.cleanupTemp().catch(() => undefined);
    const known = new Set<string>();
    for (const { value: r } of await this.records.list()) {
      known.add(r.Id);
      if (r.State.Status === 'removing') {
        await this.removeRecord({ ...r, State: { ...r.State, Running: false } }).catch(() => undefined);
        continue;
      }
      if (!r.State.Running) {
        // Nothing may be left mounted or registered for a stopped container.
        if (await isMounted(rootfsPaths(this.containerDir(r.Id)).merged)) await this.teardown(r.Id);
        // The daemon stopped during a restart back-off: schedule it again.
        if (r.State.Status === 'restarting') await this.maybeRestart(r).catch(() => undefined);
        else if (r.hasBeenStarted && restartAtDaemonStart(r.HostConfig.RestartPolicy, { exitCode: r.State.ExitCode, stoppedByUser: !!r.stoppedByUser, restartCount: r.RestartCount })) {
          // Docker starts these with a fresh restart manager: count reset, the user's stop forgotten.
          this.log.info({ id: r.Id, policy: r.HostConfig.RestartPolicy?.Name }, 'starting container by its restart policy');
          const fresh = await this.update(r.Id, (x) => {
            x.stoppedByUser = false;
            x.RestartCount = 0;
          });
          await this.scheduleRestart(fresh, 0, false).catch((e) => this.log.warn({ id: r.Id, err: (e as Error).message }, 'restart at daemon start failed'));
        }
        continue;
      }
      if (await isConmonAlive(r.conmonPid ?? 0, r.Id)) {
        this.log.info({ id: r.Id }, 'adopting running container');
        this.rotator.watch(r.Id, this.logPath(r.Id), this.bundleDir(r.Id), rotationOf(logConfigOf(r)));
        this.startHealthMonitor(r);
        continue;
      }
      this.log.info({ id: r.Id }, 'container exited while the daemon was down');
      await this.handleExit(r.Id, { fromRestore: true });
    }
    // Exec sessions: inspectable again; those that ran across the restart settle from their exit files.
    await this.execs.restore((ex) => {
      const owner = { Id: ex.containerId, Name: '', ImageRef: '', Config: {} } as unknown as ContainerRecord;
      void this.records.get(ex.containerId).then((c) => this.publish(c?.value ?? owner, 'exec_die', { execID: ex.id, exitCode: String(ex.exitCode) })).catch(() => undefined);
    });
    // Runtime state of containers we no longer know (a crash between steps).
    try {
      const state = JSON.parse(await this.runc(['list', '--format', 'json'])) as Array<{ id: string }> | null;
      for (const s of state ?? []) if (!known.has(s.id)) await this.runc(['delete', '--force', s.id]).catch(() => undefined);
    } catch {
      // no runc state yet
    }
    try {
      for (const n of await readdir(join(this.cfg.execRoot, 'containers'))) {
        if (!known.has(n)) await rm(join(this.cfg.execRoot, 'containers', n), { recursive: true, force: true });
      }
    } catch {
      // none
    }
    this.ensureWatching();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.execs.close();
    this.rotator.close();
    this.watcher?.close();
    this.watcher = undefined;
    if (this.poller) clearInterval(this.poller);
    this.poller = undefined;
    for (const s of this.liveSessions) s.close();
    this.liveSessions.clear();
    for (const set of this.pendingAttach.values()) for (const s of set) s.close();
    this.pendingAttach.clear();
    this.bus.removeAllListeners();
    // Wait for in-flight operations so the store is not closed under them.
    await Promise.allSettled([...this.locks.values()]);
  }
}

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

/** A record's log config (records made before log drivers existed have none: the default). */
function logConfigOf(r: ContainerRecord): LogConfig {
  const lc = r.HostConfig.LogConfig as LogConfig | undefined;
  return lc?.Type ? lc : { Type: DEFAULT_LOG_DRIVER, Config: {} };
}

export { signalNumber, signalName };
