/**
 * VolumeStore: Docker's named and anonymous volumes with the `local` driver.
 *
 * A volume is a directory `<dataRoot>/volumes/<name>/_data` (Docker's layout)
 * and a record in the Store under `runtime/volumes/<name>`. The local driver's
 * options (`type`, `device`, `o`, as `mount -t type -o o device`) make the
 * directory a mount point: mounted when the first container using it starts,
 * unmounted when the last one stops (and at `volume rm`).
 *
 * Which containers use a volume is asked of the container manager through
 * `setUsage` (it owns the mount points), so `volume rm` of a volume in use is
 * refused with Docker's words and `prune` keeps used ones.
 */
import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { Collection, type Store } from '../../store/store.js';
import { Conflict, CoveError, InvalidParameter, NotFound } from '../../common/errors.js';
import { silentLogger, type Logger } from '../../common/log.js';
import type { EventBus } from '../../common/events.js';
import { isMounted } from '../containers/rootfs.js';

const run = promisify(execFile);

/** Docker's volume name rule (moby volume/local: validName). */
export const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;
const LOCAL_OPTIONS = new Set(['type', 'device', 'o', 'size']);

export interface VolumeRecord {
  Name: string;
  Driver: string;
  Labels: Record<string, string> | null;
  Options: Record<string, string> | null;
  Scope: 'local';
  CreatedAt: string;
  /** Made for one container (an image's VOLUME, `-v /path`, a `--mount` without source). */
  anonymous?: boolean;
}

/** Docker's `Volume` object (GET /volumes/{name}). */
export interface DockerVolume {
  CreatedAt: string;
  Driver: string;
  Labels: Record<string, string> | null;
  Mountpoint: string;
  Name: string;
  Options: Record<string, string> | null;
  Scope: string;
  UsageData?: { Size: number; RefCount: number } | null;
}

export interface VolumeCreate {
  Name?: string;
  Driver?: string;
  DriverOpts?: Record<string, string> | null;
  Labels?: Record<string, string> | null;
}

/** The containers (ids) that use a volume; `running` = those running now. */
export type VolumeUsage = (name: string) => Promise<{ all: string[]; running: string[] }>;

export interface VolumeStoreOptions {
  dataRoot: string;
  store: Store;
  events?: EventBus;
  log?: Logger;
}

/** What the API serves for /volumes (VolumeStore; the unit tests' fake engine has its own). */
export interface VolumeService {
  create(body: VolumeCreate): Promise<DockerVolume>;
  inspect(name: string): Promise<DockerVolume>;
  list(filters?: Record<string, string[]>): Promise<{ Volumes: DockerVolume[]; Warnings: string[] | null }>;
  remove(name: string, opts?: { force?: boolean }): Promise<void>;
  prune(filters?: Record<string, string[]>): Promise<{ VolumesDeleted: string[]; SpaceReclaimed: number }>;
}

export class VolumeStore implements VolumeService {
  private readonly records: Collection<VolumeRecord>;
  private readonly root: string;
  private readonly events: EventBus | undefined;
  private readonly log: Logger;
  private usage: VolumeUsage = async () => ({ all: [], running: [] });
  /** One create/remove at a time per name. */
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(opts: VolumeStoreOptions) {
    this.records = new Collection<VolumeRecord>(opts.store, 'runtime/volumes');
    this.root = join(opts.dataRoot, 'volumes');
    this.events = opts.events;
    this.log = opts.log ?? silentLogger;
  }

  setUsage(fn: VolumeUsage): void {
    this.usage = fn;
  }

  mountpoint(name: string): string {
    return join(this.root, name, '_data');
  }

  private withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(name) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(name, tail);
    void tail.then(() => {
      if (this.locks.get(name) === tail) this.locks.delete(name);
    });
    return next;
  }

  private view(r: VolumeRecord): DockerVolume {
    return {
      CreatedAt: r.CreatedAt,
      Driver: r.Driver,
      Labels: r.Labels,
      Mountpoint: this.mountpoint(r.Name),
      Name: r.Name,
      Options: r.Options,
      Scope: r.Scope,
    };
  }

  private publish(action: string, r: VolumeRecord, extra: Record<string, string> = {}): void {
    this.events?.publish('volume', action, r.Name, { driver: r.Driver, ...extra });
  }

  /** Docker's checks of a create request, before anything is made. */
  static validate(body: VolumeCreate): void {
    const name = body.Name ?? '';
    if (name && !VOLUME_NAME.test(name)) {
      if (name.length < 2 && /^[a-zA-Z0-9]$/.test(name)) {
        throw new InvalidParameter(
          `create ${name}: volume name is too short, names should be at least two alphanumeric characters`,
        );
      }
      throw new InvalidParameter(
        `create ${name}: "${name}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`,
      );
    }
    const driver = body.Driver || 'local';
    if (driver !== 'local')
      throw new NotFound(`create ${name}: error looking up volume plugin ${driver}: plugin "${driver}" not found`);
    const opts = body.DriverOpts ?? {};
    for (const k of Object.keys(opts)) {
      if (!LOCAL_OPTIONS.has(k)) throw new InvalidParameter(`create ${name}: invalid option key: "${k}"`);
    }
    if (opts.size !== undefined)
      throw new InvalidParameter(`create ${name}: quota size requested but no quota support`);
    if ((opts.type || opts.o) && !opts.device && opts.type !== 'tmpfs') {
      throw new InvalidParameter(`create ${name}: missing required option: "device"`);
    }
    if (opts.device && !opts.type) throw new InvalidParameter(`create ${name}: missing required option: "type"`);
  }

  /** Creates a volume, or returns the existing one of that name (Docker's create is idempotent). */
  async create(body: VolumeCreate, opts: { anonymous?: boolean } = {}): Promise<DockerVolume> {
    VolumeStore.validate(body);
    const name = body.Name || randomBytes(32).toString('hex');
    return this.withLock(name, async () => {
      const have = await this.records.get(name);
      if (have) return this.view(have.value);
      const rec: VolumeRecord = {
        Name: name,
        Driver: 'local',
        Labels: body.Labels ?? (opts.anonymous ? null : {}),
        Options: body.DriverOpts ?? (opts.anonymous ? null : {}),
        Scope: 'local',
        CreatedAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
        ...(opts.anonymous ? { anonymous: true } : {}),
      };
      await mkdir(this.mountpoint(name), { recursive: true, mode: 0o755 });
      try {
        await this.records.put(name, rec, 0);
      } catch (e) {
        await rm(join(this.root, name), { recursive: true, force: true });
        throw e;
      }
      this.publish('create', rec);
      return this.view(rec);
    });
  }

  async get(name: string): Promise<VolumeRecord | undefined> {
    if (!name || name.includes('/')) return undefined;
    return (await this.records.get(name))?.value;
  }

  async inspect(name: string): Promise<DockerVolume> {
    const r = await this.get(name);
    if (!r) throw new NotFound(`get ${name}: no such volume`);
    return this.view(r);
  }

  async list(filters: Record<string, string[]> = {}): Promise<{ Volumes: DockerVolume[]; Warnings: string[] | null }> {
    for (const k of Object.keys(filters)) {
      if (!['dangling', 'driver', 'label', 'name'].includes(k)) throw new InvalidParameter(`Invalid filter '${k}'`);
    }
    for (const v of filters.dangling ?? []) {
      if (!['true', 'false', '1', '0'].includes(v)) throw new InvalidParameter(`Invalid filter 'dangling=${v}'`);
    }
    const out: DockerVolume[] = [];
    for (const { value: r } of await this.records.list()) {
      if (filters.name?.length && !filters.name.some((n) => r.Name.includes(n))) continue;
      if (filters.driver?.length && !filters.driver.includes(r.Driver)) continue;
      if (filters.label?.length && !labelsMatch(r.Labels, filters.label)) continue;
      if (filters.dangling?.length) {
        const dangling = (await this.usage(r.Name)).all.length === 0;
        if (!filters.dangling.some((v) => (v === 'true' || v === '1') === dangling)) continue;
      }
      out.push(this.view(r));
    }
    out.sort((a, b) => a.Name.localeCompare(b.Name));
    return { Volumes: out, Warnings: null };
  }

  async remove(name: string, opts: { force?: boolean } = {}): Promise<void> {
    await this.withLock(name, async () => {
      const r = await this.get(name);
      if (!r) {
        if (opts.force) return;
        throw new NotFound(`get ${name}: no such volume`);
      }
      const users = (await this.usage(name)).all;
      if (users.length) throw new Conflict(`remove ${name}: volume is in use - [${users.join(', ')}]`);
      await this.unmount(name);
      await this.records.delete(name);
      await rm(join(this.root, name), { recursive: true, force: true }).catch((e) =>
        this.log.warn({ name, err: (e as Error).message }, 'removing volume data failed'),
      );
      this.publish('destroy', r);
    });
  }

  /** Removes unused volumes: anonymous ones, or all with the filter all=true (API >= 1.42). */
  async prune(filters: Record<string, string[]> = {}): Promise<{ VolumesDeleted: string[]; SpaceReclaimed: number }> {
    for (const k of Object.keys(filters)) {
      if (!['label', 'label!', 'all'].includes(k)) throw new InvalidParameter(`Invalid filter '${k}'`);
    }
    const all = (filters.all ?? []).some((v) => v === 'true' || v === '1');
    const deleted: string[] = [];
    let space = 0;
    for (const { value: r } of await this.records.list()) {
      if (!all && !r.anonymous) continue;
      if (filters.label?.length && !labelsMatch(r.Labels, filters.label)) continue;
      if (filters['label!']?.length && labelsMatch(r.Labels, filters['label!'])) continue;
      if ((await this.usage(r.Name)).all.length) continue;
      const size = await dirSize(this.mountpoint(r.Name));
      try {
        await this.remove(r.Name);
        deleted.push(r.Name);
        space += size;
      } catch (e) {
        if (!(e instanceof CoveError)) throw e;
      }
    }
    this.events?.publish('volume', 'prune', '', { reclaimed: String(space) });
    return { VolumesDeleted: deleted, SpaceReclaimed: space };
  }

  /** Before a container using the volume starts: mounts a local volume with device options. */
  async mount(name: string): Promise<string> {
    const r = await this.get(name);
    if (!r) throw new NotFound(`get ${name}: no such volume`);
    const dir = this.mountpoint(name);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const o = r.Options ?? {};
    if (!o.type || (await isMounted(dir))) return dir;
    const args = ['-t', o.type];
    if (o.o) args.push('-o', o.o);
    args.push(o.device || o.type, dir);
    try {
      await run('mount', args);
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      throw new CoveError(
        `error while mounting volume '${dir}': failed to mount local volume: mount ${o.device || o.type}:${dir}, flags: ${o.o ?? ''}: ${(err.stderr || err.message).trim()}`,
        500,
      );
    }
    return dir;
  }

  /** After the last running container using it stopped: unmounts a device-backed volume. */
  async release(name: string): Promise<void> {
    const r = await this.get(name);
    if (!r?.Options?.type) return;
    if ((await this.usage(name)).running.length) return;
    await this.unmount(name);
  }

  private async unmount(name: string): Promise<void> {
    const dir = this.mountpoint(name);
    if (await isMounted(dir)) {
      await run('umount', [dir]).catch(async () => run('umount', ['-l', dir]).catch(() => undefined));
    }
  }
}

function labelsMatch(labels: Record<string, string> | null, wanted: string[]): boolean {
  const l = labels ?? {};
  return wanted.every((w) => {
    const eq = w.indexOf('=');
    return eq < 0 ? w in l : l[w.slice(0, eq)] === w.slice(eq + 1);
  });
}

export async function dirSize(dir: string): Promise<number> {
  try {
    const { stdout } = await run('du', ['-sb', dir]);
    return Number(stdout.split('\t')[0]) || 0;
  } catch {
    return 0;
  }
}
