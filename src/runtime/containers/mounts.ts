/**
 * A container's mounts, as Docker decides them at create:
 *  - `HostConfig.Binds` (`-v`): `/host:/ctr[:opts]` binds, `name:/ctr[:opts]` named volumes;
 *  - `HostConfig.Mounts` (`--mount`): type bind | volume | tmpfs;
 *  - `HostConfig.Tmpfs` (`--tmpfs /run:size=64m`);
 *  - `Config.Volumes` (`-v /ctr` and the image's VOLUME): anonymous volumes;
 *  - `HostConfig.VolumesFrom`: another container's mount points (`:ro`/`:rw`).
 * `planMounts` is pure (Docker's parse errors, duplicates); the manager then
 * makes the volumes and checks bind sources (`materialize`), and turns the
 * mount points into OCI mounts at start (`ociMounts`).
 */
import { posix } from 'node:path';
import { InvalidParameter } from '../../common/errors.js';

export interface MountPoint {
  Type: 'bind' | 'volume' | 'tmpfs';
  /** Volume name (volumes only). */
  Name?: string;
  /** Host path: the bind source or, for volumes, filled at materialize. */
  Source: string;
  Destination: string;
  Driver?: string;
  Mode: string;
  RW: boolean;
  Propagation: string;
  /** Volumes: do not copy the image's content at the destination into an empty volume. */
  noCopy?: boolean;
  /** A volume made for this container (removed with it by rm -v / --rm). */
  anonymous?: boolean;
  /** tmpfs mount options (size=, mode=, ...). */
  tmpfsOptions?: string[];
  /** Driver options and labels for a volume `--mount` creates. */
  volumeOptions?: { labels?: Record<string, string>; driver?: string; driverOpts?: Record<string, string> };
  /** -v bind sources are created when missing; --mount ones must exist. */
  createSource?: boolean;
}

export interface DockerMount {
  Type?: string;
  Source?: string;
  Target?: string;
  ReadOnly?: boolean;
  Consistency?: string;
  BindOptions?: { Propagation?: string; NonRecursive?: boolean; CreateMountpoint?: boolean } | null;
  VolumeOptions?: {
    NoCopy?: boolean;
    Labels?: Record<string, string> | null;
    DriverConfig?: { Name?: string; Options?: Record<string, string> | null } | null;
    Subpath?: string;
  } | null;
  TmpfsOptions?: { SizeBytes?: number; Mode?: number; Options?: string[][] } | null;
}

const PROPAGATION = ['shared', 'rshared', 'slave', 'rslave', 'private', 'rprivate'];
const CONSISTENCY = ['consistent', 'cached', 'delegated', 'default'];
const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

function cleanTarget(spec: string, target: string, type: string): string {
  if (!target) throw new InvalidParameter(`invalid mount config for type "${type}": field Target must not be empty`);
  if (!target.startsWith('/')) {
    throw new InvalidParameter(
      `invalid volume specification: '${spec}': invalid mount config for type "${type}": invalid mount path: '${target}' mount path must be absolute`,
    );
  }
  const t = posix.normalize(target).replace(/(.)\/$/, '$1');
  if (t === '/') throw new InvalidParameter(`invalid specification: destination can't be '/'`);
  return t;
}

/** One `-v` entry (moby volume/mounts linuxParser.ParseMountRaw). */
export function parseBind(spec: string): MountPoint {
  const parts = spec.split(':');
  if (spec === '' || (parts.some((p) => p === '') && parts.length > 1))
    throw new InvalidParameter(`invalid volume specification: '${spec}'`);
  if (parts.length > 3) throw new InvalidParameter(`invalid spec: ${spec}: too many colons`);
  if (parts.length === 1) {
    const dest = cleanTarget(spec, parts[0]!, 'volume');
    return {
      Type: 'volume',
      Source: '',
      Destination: dest,
      Driver: 'local',
      Mode: '',
      RW: true,
      Propagation: '',
      anonymous: true,
    };
  }
  const [src, dst, modeStr = ''] = parts as [string, string, string?];
  let rw = true;
  let propagation = '';
  let noCopy = false;
  const modes = modeStr ? modeStr.split(',') : [];
  let rwSeen = 0;
  for (const m of modes) {
    if (m === 'ro' || m === 'rw') {
      rw = m === 'rw';
      rwSeen++;
    } else if (PROPAGATION.includes(m)) propagation = m;
    else if (m === 'nocopy') noCopy = true;
    else if (m === 'z' || m === 'Z' || CONSISTENCY.includes(m)) continue;
    else throw new InvalidParameter(`invalid mode: ${modeStr}`);
  }
  if (rwSeen > 1) throw new InvalidParameter(`invalid mode: ${modeStr}`);
  if (src.startsWith('/')) {
    if (noCopy) throw new InvalidParameter(`invalid mode: ${modeStr}`);
    const dest = cleanTarget(spec, dst, 'bind');
    return {
      Type: 'bind',
      Source: posix.normalize(src),
      Destination: dest,
      Mode: modeStr,
      RW: rw,
      Propagation: propagation || 'rprivate',
      createSource: true,
    };
  }
  if (!VOLUME_NAME.test(src)) {
    throw new InvalidParameter(
      `create ${src}: "${src}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`,
    );
  }
  if (propagation) throw new InvalidParameter(`invalid mode: ${modeStr}`);
  const dest = cleanTarget(spec, dst, 'volume');
  return {
    Type: 'volume',
    Name: src,
    Source: '',
    Destination: dest,
    Driver: 'local',
    Mode: modeStr || 'z',
    RW: rw,
    Propagation: '',
    ...(noCopy ? { noCopy } : {}),
  };
}

/** One `--mount` entry (moby volume/mounts validate + linuxParser.ParseMountSpec). */
export function parseMount(m: DockerMount): MountPoint {
  const type = m.Type ?? '';
  const bad = (msg: string): InvalidParameter =>
    new InvalidParameter(`invalid mount config for type "${type}": ${msg}`);
  if (!m.Target) throw bad('field Target must not be empty');
  const target = cleanTarget(m.Target, m.Target, type);
  switch (type) {
    case 'bind': {
      if (!m.Source) throw bad('field Source must not be empty');
      if (m.VolumeOptions) throw bad('field VolumeOptions must not be specified');
      if (m.TmpfsOptions) throw bad('field TmpfsOptions must not be specified');
      if (!m.Source.startsWith('/')) throw bad(`invalid mount path: '${m.Source}' mount path must be absolute`);
      const prop = m.BindOptions?.Propagation || 'rprivate';
      if (!PROPAGATION.includes(prop)) throw bad(`invalid propagation mode: ${prop}`);
      return {
        Type: 'bind',
        Source: posix.normalize(m.Source),
        Destination: target,
        Mode: '',
        RW: !m.ReadOnly,
        Propagation: prop,
        ...(m.BindOptions?.CreateMountpoint ? { createSource: true } : {}),
      };
    }
    case 'volume': {
      if (m.BindOptions) throw bad('field BindOptions must not be specified');
      if (m.TmpfsOptions) throw bad('field TmpfsOptions must not be specified');
      if (m.Source && !VOLUME_NAME.test(m.Source)) {
        throw new InvalidParameter(
          `create ${m.Source}: "${m.Source}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`,
        );
      }
      const vo = m.VolumeOptions ?? {};
      const mp: MountPoint = {
        Type: 'volume',
        Source: '',
        Destination: target,
        Driver: vo.DriverConfig?.Name || 'local',
        Mode: '',
        RW: !m.ReadOnly,
        Propagation: '',
        ...(vo.NoCopy ? { noCopy: true } : {}),
      };
      if (m.Source) mp.Name = m.Source;
      else mp.anonymous = true;
      const opts: NonNullable<MountPoint['volumeOptions']> = {};
      if (vo.Labels) opts.labels = vo.Labels;
      if (vo.DriverConfig?.Name) opts.driver = vo.DriverConfig.Name;
      if (vo.DriverConfig?.Options) opts.driverOpts = vo.DriverConfig.Options;
      if (Object.keys(opts).length) mp.volumeOptions = opts;
      return mp;
    }
    case 'tmpfs': {
      if (m.Source) throw bad('field Source must not be specified');
      if (m.BindOptions) throw bad('field BindOptions must not be specified');
      if (m.VolumeOptions) throw bad('field VolumeOptions must not be specified');
      const o: string[] = [];
      const t = m.TmpfsOptions ?? {};
      if (t.SizeBytes !== undefined) {
        if (t.SizeBytes < 0) throw bad(`invalid tmpfs size: ${t.SizeBytes}`);
        if (t.SizeBytes > 0) o.push(`size=${Math.floor(t.SizeBytes / 1024)}k`);
      }
      if (t.Mode) o.push(`mode=${t.Mode.toString(8)}`);
      if (m.ReadOnly) o.push('ro');
      return {
        Type: 'tmpfs',
        Source: '',
        Destination: target,
        Mode: '',
        RW: !m.ReadOnly,
        Propagation: '',
        tmpfsOptions: o,
      };
    }
    default:
      throw bad('mount type unknown');
  }
}

/** `--tmpfs /run:rw,size=64m` as HostConfig.Tmpfs {"/run": "rw,size=64m"}. */
export function parseTmpfs(dest: string, opts: string): MountPoint {
  const target = cleanTarget(dest, dest, 'tmpfs');
  const o = opts ? opts.split(',').filter(Boolean) : [];
  for (const x of o) {
    if (
      !/^(ro|rw|exec|noexec|suid|nosuid|dev|nodev|size=\d+[kmgKMG%]?|mode=[0-7]{3,4}|uid=\d+|gid=\d+|nr_inodes=\d+[kmg]?|nr_blocks=\d+[kmg]?|mpol=.+|atime|noatime|strictatime|relatime|sync|async|dirsync)$/.test(
        x,
      )
    ) {
      throw new InvalidParameter(`Invalid tmpfs option ["${x.split('=')[0]}"]`);
    }
  }
  return {
    Type: 'tmpfs',
    Source: '',
    Destination: target,
    Mode: '',
    RW: !o.includes('ro'),
    Propagation: '',
    tmpfsOptions: o,
  };
}

/** `container[:ro|rw]` of `--volumes-from`. */
export function parseVolumesFrom(spec: string): { container: string; mode: '' | 'ro' | 'rw' } {
  const [container = '', mode = '', ...rest] = spec.split(':');
  if (!container || rest.length || (mode && mode !== 'ro' && mode !== 'rw' && mode !== 'z' && mode !== 'Z')) {
    throw new InvalidParameter(`invalid mode: ${mode || spec}`);
  }
  return { container, mode: mode === 'ro' || mode === 'rw' ? mode : '' };
}

/**
 * The container's mount points in Docker's order of precedence: another
 * container's (`--volumes-from`), then the image's and Config.Volumes'
 * anonymous volumes, overridden by -v/--mount/--tmpfs at the same destination;
 * -v and --mount (and --tmpfs) naming one destination twice is an error.
 */
export function planMounts(input: {
  binds?: string[] | null;
  mounts?: DockerMount[] | null;
  tmpfs?: Record<string, string> | null;
  volumes?: Record<string, unknown> | null;
  from?: MountPoint[];
}): MountPoint[] {
  const byDest = new Map<string, MountPoint>();
  for (const m of input.from ?? []) byDest.set(m.Destination, m);
  for (const d of Object.keys(input.volumes ?? {})) {
    const mp = parseBind(d.replace(/\/+$/, '') || d);
    if (mp.Type !== 'volume' || !mp.anonymous) throw new InvalidParameter(`invalid volume specification: '${d}'`);
    if (!byDest.has(mp.Destination)) byDest.set(mp.Destination, mp);
  }
  const explicit = new Map<string, MountPoint>();
  const add = (mp: MountPoint): void => {
    if (explicit.has(mp.Destination)) throw new InvalidParameter(`Duplicate mount point: ${mp.Destination}`);
    explicit.set(mp.Destination, mp);
  };
  for (const b of input.binds ?? []) add(parseBind(b));
  for (const m of input.mounts ?? []) add(parseMount(m));
  for (const [d, o] of Object.entries(input.tmpfs ?? {})) add(parseTmpfs(d, o));
  for (const [d, m] of explicit) byDest.set(d, m);
  return [...byDest.values()];
}

/** Parents before children (Docker sorts mounts by the depth of their destination). */
export function sortMounts<T extends { Destination: string }>(list: T[]): T[] {
  const depth = (p: string): number => p.split('/').filter(Boolean).length;
  return [...list].sort((a, b) => depth(a.Destination) - depth(b.Destination));
}

/** The OCI mount entries for a container's mount points (sources already resolved). */
export function ociMounts(list: MountPoint[]): Array<Record<string, unknown>> {
  return sortMounts(list).map((m) => {
    if (m.Type === 'tmpfs') {
      const opts = m.tmpfsOptions ?? [];
      const base = ['nosuid', 'nodev', 'noexec'].filter(
        (d) => !opts.some((o) => o === d.replace(/^no/, '') || o === d),
      );
      return { destination: m.Destination, type: 'tmpfs', source: 'tmpfs', options: [...base, ...opts] };
    }
    return {
      destination: m.Destination,
      type: 'bind',
      source: m.Source,
      options: ['rbind', m.RW ? 'rw' : 'ro', m.Propagation || 'rprivate'],
    };
  });
}

/** What inspect and ps show (Docker's MountPoint JSON). */
export function mountView(m: MountPoint): Record<string, unknown> {
  if (m.Type === 'volume') {
    return {
      Type: 'volume',
      Name: m.Name ?? '',
      Source: m.Source,
      Destination: m.Destination,
      Driver: m.Driver ?? 'local',
      Mode: m.Mode,
      RW: m.RW,
      Propagation: m.Propagation,
    };
  }
  return {
    Type: m.Type,
    Source: m.Source,
    Destination: m.Destination,
    Mode: m.Mode,
    RW: m.RW,
    Propagation: m.Propagation,
  };
}
