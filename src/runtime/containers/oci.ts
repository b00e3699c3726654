/**
 * The OCI runtime spec (config.json) of a container's bundle, shaped like
 * Docker's defaults: pid/ipc/uts/mount namespaces, the network namespace of the
 * sandbox (none = host networking), Docker's default capabilities (which
 * include CAP_NET_RAW for ping), masked and read-only /proc paths, the
 * sandbox's hosts/hostname/resolv.conf bind-mounted over /etc.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidParameter } from '../../common/errors.js';

/** Docker's default capability set (moby oci/caps/defaults.go). */
export const DEFAULT_CAPS = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** Every capability this kernel knows (for --privileged and CapAdd ALL). */
export const ALL_CAPS = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
];

export function capabilities(privileged: boolean, add: string[] = [], drop: string[] = []): string[] {
  if (privileged) return ALL_CAPS;
  const norm = (c: string): string => {
    const u = c.toUpperCase();
    return u === 'ALL' ? 'ALL' : u.startsWith('CAP_') ? u : `CAP_${u}`;
  };
  let caps = new Set(DEFAULT_CAPS);
  for (const c of add.map(norm)) {
    if (c === 'ALL') caps = new Set(ALL_CAPS);
    else if (ALL_CAPS.includes(c)) caps.add(c);
    else throw new InvalidParameter(`unknown capability: "${c}"`);
  }
  for (const c of drop.map(norm)) {
    if (c === 'ALL') caps.clear();
    else caps.delete(c);
  }
  return [...caps];
}

export interface ProcessUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
  home: string;
}

/**
 * Resolves Docker's User (name|uid[:group|gid]) against the rootfs's /etc/passwd
 * and /etc/group, with the user's supplementary groups from /etc/group and
 * `--group-add` (names resolved in /etc/group, numbers as they are), as
 * moby's getUser does.
 */
export function resolveUser(rootfs: string, user: string | undefined, groupAdd: string[] = []): ProcessUser {
  const readDb = (f: string): string[][] => {
    try {
      return readFileSync(join(rootfs, 'etc', f), 'utf8')
        .split('\n')
        .filter((l) => l && !l.startsWith('#'))
        .map((l) => l.split(':'));
    } catch {
      return [];
    }
  };
  const [u = '', g] = (user ?? '').split(':');
  const passwd = readDb('passwd');
  let uid = 0;
  let gid = 0;
  let home = '/root';
  if (u) {
    const row = /^\d+$/.test(u) ? passwd.find((r) => r[2] === u) : passwd.find((r) => r[0] === u);
    if (row) {
      uid = Number(row[2]);
      gid = Number(row[3]);
      home = row[5] || '/';
    } else if (/^\d+$/.test(u)) {
      uid = Number(u);
      gid = 0;
      home = '/';
    } else {
      throw new InvalidParameter(`unable to find user ${u}: no matching entries in passwd file`);
    }
  }
  if (g) {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const row = readDb('group').find((r) => r[0] === g);
      if (!row) throw new InvalidParameter(`unable to find group ${g}: no matching entries in group file`);
      gid = Number(row[2]);
    }
  }
  const groups = readDb('group');
  const name = u && !/^\d+$/.test(u) ? u : passwd.find((r) => Number(r[2]) === uid)?.[0];
  const extra: number[] = [];
  if (name) for (const r of groups) if ((r[3] ?? '').split(',').includes(name)) extra.push(Number(r[2]));
  for (const ga of groupAdd) {
    if (/^\d+$/.test(ga)) {
      const n = Number(ga);
      if (n > 2 ** 31 - 1) throw new InvalidParameter(`unable to find group ${ga}: no matching entries in group file`);
      extra.push(n);
      continue;
    }
    const row = groups.find((r) => r[0] === ga);
    if (!row) throw new InvalidParameter(`unable to find group ${ga}: no matching entries in group file`);
    extra.push(Number(row[2]));
  }
  const additional = [...new Set(extra)];
  return { uid, gid, home, ...(additional.length ? { additionalGids: additional } : {}) };
}

export interface ProcessSpec {
  terminal: boolean;
  user: { uid: number; gid: number; additionalGids?: number[] };
  args: string[];
  env: string[];
  cwd: string;
  capabilities: {
    bounding: string[];
    effective: string[];
    permitted: string[];
    inheritable?: string[];
    ambient?: string[];
  };
  noNewPrivileges: boolean;
  consoleSize?: { height: number; width: number };
}

export function processSpec(opts: {
  args: string[];
  env: string[];
  cwd: string;
  tty: boolean;
  user: ProcessUser;
  caps: string[];
}): ProcessSpec {
  return {
    terminal: opts.tty,
    user: {
      uid: opts.user.uid,
      gid: opts.user.gid,
      ...(opts.user.additionalGids ? { additionalGids: opts.user.additionalGids } : {}),
    },
    args: opts.args,
    env: opts.env,
    cwd: opts.cwd || '/',
    capabilities: { bounding: opts.caps, effective: opts.caps, permitted: opts.caps },
    noNewPrivileges: false,
  };
}

export interface BundleOptions {
  id: string;
  rootfs: string;
  process: ProcessSpec;
  hostname: string;
  domainname?: string;
  /** The sandbox's netns; null = the host's (no network namespace entry). */
  netnsPath: string | null;
  hostsPath: string;
  hostnamePath: string;
  resolvConfPath: string;
  privileged: boolean;
  sysctls: Record<string, string>;
  readonlyRootfs: boolean;
  shmSize?: number;
  /** The container's own mounts (volumes, binds, tmpfs), already in OCI form; they win over the defaults at one destination. */
  userMounts?: Array<Record<string, unknown>>;
  /** memory/cpu/pids limits in OCI form (resources.ts). */
  limits?: Record<string, unknown>;
  /** --device-cgroup-rule entries, after Docker's default allow list. */
  deviceRules?: Array<Record<string, unknown>>;
}

export function bundleSpec(o: BundleOptions): Record<string, unknown> {
  const namespaces: Array<{ type: string; path?: string }> = [
    { type: 'pid' },
    { type: 'ipc' },
    { type: 'uts' },
    { type: 'mount' },
  ];
  if (o.netnsPath) namespaces.push({ type: 'network', path: o.netnsPath });
  const shm = o.shmSize && o.shmSize > 0 ? o.shmSize : 64 * 1024 * 1024;
  const mounts: Array<Record<string, unknown>> = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    {
      destination: '/sys',
      type: 'sysfs',
      source: 'sysfs',
      options: ['nosuid', 'noexec', 'nodev', o.privileged ? 'rw' : 'ro'],
    },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', `size=${shm}`],
    },
    { destination: '/etc/resolv.conf', type: 'bind', source: o.resolvConfPath, options: ['rbind', 'rprivate'] },
    { destination: '/etc/hostname', type: 'bind', source: o.hostnamePath, options: ['rbind', 'rprivate'] },
    { destination: '/etc/hosts', type: 'bind', source: o.hostsPath, options: ['rbind', 'rprivate'] },
  ];
  const user = o.userMounts ?? [];
  const taken = new Set(user.map((m) => m.destination));
  // Parents before children, as Docker sorts them: a volume on /etc comes before /etc/hosts on top of it.
  const depth = (m: Record<string, unknown>): number => String(m.destination).split('/').filter(Boolean).length;
  const all = [...mounts.filter((m) => !taken.has(m.destination)), ...user].sort((a, b) => depth(a) - depth(b));
  return {
    ociVersion: '1.0.2',
    process: o.process,
    root: { path: o.rootfs, readonly: o.readonlyRootfs },
    hostname: o.hostname,
    ...(o.domainname ? { domainname: o.domainname } : {}),
    mounts: all,
    linux: {
      namespaces,
      // cgroup v1 (hybrid) hierarchy under /cove, as Docker's cgroupfs driver uses /docker/<id>.
      cgroupsPath: `/cove/${o.id}`,
      resources: {
        devices: o.privileged
          ? [{ allow: true, access: 'rwm' }]
          : [
              { allow: false, access: 'rwm' },
              // Docker's default allow list: null, zero, full, random, urandom, tty, console, ptmx, pts.
              { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' },
              { allow: true, type: 'c', major: 1, minor: 5, access: 'rwm' },
              { allow: true, type: 'c', major: 1, minor: 7, access: 'rwm' },
              { allow: true, type: 'c', major: 1, minor: 8, access: 'rwm' },
              { allow: true, type: 'c', major: 1, minor: 9, access: 'rwm' },
              { allow: true, type: 'c', major: 5, minor: 0, access: 'rwm' },
              { allow: true, type: 'c', major: 5, minor: 1, access: 'rwm' },
              { allow: true, type: 'c', major: 5, minor: 2, access: 'rwm' },
              { allow: true, type: 'c', major: 136, access: 'rwm' },
              { allow: true, type: 'c', major: 10, minor: 200, access: 'rwm' },
              ...(o.deviceRules ?? []),
            ],
        ...(o.limits ?? {}),
      },
      sysctl: o.sysctls,
      ...(o.privileged
        ? {}
        : {
            maskedPaths: [
              '/proc/asound',
              '/proc/acpi',
              '/proc/kcore',
              '/proc/keys',
              '/proc/latency_stats',
              '/proc/timer_list',
              '/proc/timer_stats',
              '/proc/sched_debug',
              '/proc/scsi',
              '/sys/firmware',
              '/sys/devices/virtual/powercap',
            ],
            readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
          }),
    },
  };
}
