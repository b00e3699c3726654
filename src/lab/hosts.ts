/**
 * `cove lab`: N simulated hosts on this machine, for multi-host tests, demos
 * and benchmarks. Each host is a network namespace plus a persistent UTS
 * namespace (its hostname hK), with its own coved, data root, exec root and
 * socket. The hosts hang off a Linux bridge in an underlay namespace of its
 * own, on 192.0.2.0/24 (hK = 192.0.2.(10+K)); the underlay namespace also
 * stands in for the router and the internet (192.0.2.1, 198.51.100.1), so
 * nothing ever reaches the root namespace.
 *
 * Names: every namespace and directory carries COVE_LAB_PREFIX and the lab
 * name, so several labs (and several checkouts) can run side by side. The
 * lab's state (namespaces, PIDs, mounts) is written to
 * /tmp/cove-lab/<prefix><name>/lab.json so `cove lab down` from another
 * process removes exactly what `up` made.
 */
import { spawn, execFile } from 'node:child_process';
import {
  mkdirSync,
  rmSync,
  readFileSync,
  writeFileSync,
  readdirSync,
  statSync,
  readlinkSync,
  openSync,
  closeSync,
  existsSync,
} from 'node:fs';
import { join, dirname } from 'node:path';
import { request } from 'node:http';
import { repoRoot } from '../common/repo-root.js';
import { removeContainerCgroups } from './cgroups.js';

/** Repository root (from dist/src/lab, src/lab or the bundled CLI). */
const REPO = repoRoot(import.meta.url);
const COVED_BIN = join(REPO, 'bin/coved');

/**
 * How to start coved: this process's node with the environment and flags bin/coved's first line gives it
 * (`#!/usr/bin/env -S [NAME=VALUE...] node FLAGS`), so a daemon started as `node bin/coved` (labs, tests,
 * the bench) runs with the same settings as an installed `coved`. They live in the shebang because they
 * must be there before any of coved's code runs: V8 sizes its heap from node's flags, and glibc reads its
 * malloc tunables (GLIBC_TUNABLES) when the process starts. With assignments the command starts with
 * /usr/bin/env, which sets them and execs node (the same process).
 */
export function covedCommand(bin: string = COVED_BIN): string[] {
  const first = readFileSync(bin, 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!\/usr\/bin\/env\s+-S((?:\s+[A-Z_][A-Z0-9_]*=\S+)*)\s+node((?:\s+-\S+)*)\s*$/.exec(first);
  if (!m && !/^#!\/usr\/bin\/env\s+node\s*$/.test(first))
    throw new Error(
      `${bin}: unexpected first line (want '#!/usr/bin/env [-S [NAME=VALUE...]] node [FLAGS]'): ${first}`,
    );
  const words = (s: string | undefined) => (s ?? '').split(/\s+/).filter(Boolean);
  const env = words(m?.[1]);
  const node = [process.execPath, ...words(m?.[2]), bin];
  return env.length ? ['/usr/bin/env', ...env, ...node] : node;
}

export const UNDERLAY_GW = '192.0.2.1';
export const INTERNET_IP = '198.51.100.1';

export interface LabHost {
  name: string;
  netns: string;
  /** Bind-mounted UTS namespace file (hostname = name). */
  uts: string;
  addr: string;
  dir: string;
  dataRoot: string;
  execRoot: string;
  socket: string;
  pid?: number;
}

export interface LabState {
  name: string;
  underlay: string;
  dir: string;
  hosts: LabHost[];
}

export function labPrefix(env: NodeJS.ProcessEnv = process.env): string {
  const p = env.COVE_LAB_PREFIX ?? '';
  if (!/^[a-z0-9]{0,3}$/.test(p)) throw new Error(`COVE_LAB_PREFIX must be up to 3 lowercase letters or digits: ${p}`);
  return p;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], input?: string, timeoutMs = 30_000): Promise<Run> {
  return new Promise((res) => {
    const child = execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err
        ? typeof (err as { code?: unknown }).code === 'number'
          ? (err as unknown as { code: number }).code
          : 1
        : 0;
      res({ code, stdout: String(stdout), stderr: String(stderr) });
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input ?? '');
  });
}

async function must(cmd: string, args: string[], input?: string): Promise<string> {
  const r = await run(cmd, args, input);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function pingSocket(socket: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((res) => {
    const req = request({ socketPath: socket, path: '/_ping', method: 'GET', timeout: timeoutMs }, (resp) => {
      resp.resume();
      res(resp.statusCode === 200);
    });
    req.on('error', () => res(false));
    req.on('timeout', () => {
      req.destroy();
      res(false);
    });
    req.end();
  });
}

export class HostLab {
  constructor(readonly state: LabState) {}

  static dirOf(name: string, env: NodeJS.ProcessEnv = process.env): string {
    return `/tmp/cove-lab/${labPrefix(env)}${name}`;
  }

  /** The lab `name` made earlier (by this or another process). */
  static load(name = 'lab', env: NodeJS.ProcessEnv = process.env): HostLab {
    const dir = HostLab.dirOf(name, env);
    const file = join(dir, 'lab.json');
    if (!existsSync(file)) throw new Error(`no lab named ${name} (${file} not found); run 'cove lab up' first`);
    return new HostLab(JSON.parse(readFileSync(file, 'utf8')) as LabState);
  }

  /** Builds the underlay and N hosts and starts a coved on each. */
  static async up(opts: {
    hosts: number;
    name?: string;
    env?: NodeJS.ProcessEnv;
    daemonArgs?: string[];
  }): Promise<HostLab> {
    const env = opts.env ?? process.env;
    const name = opts.name ?? 'lab';
    if (!/^[a-z][a-z0-9]{0,7}$/.test(name))
      throw new Error(`lab name must be 1-8 lowercase letters or digits: ${name}`);
    if (!Number.isInteger(opts.hosts) || opts.hosts < 1 || opts.hosts > 200)
      throw new Error(`--hosts must be 1..200: ${opts.hosts}`);
    const full = `${labPrefix(env)}${name}`;
    const dir = HostLab.dirOf(name, env);
    if (existsSync(join(dir, 'lab.json')))
      throw new Error(`lab ${name} already exists; run 'cove lab down --name ${name}' first`);
    mkdirSync(dir, { recursive: true });
    const state: LabState = { name, underlay: `${full}-ul`, dir, hosts: [] };
    const lab = new HostLab(state);
    lab.save();
    try {
      await must('ip', ['netns', 'add', state.underlay]);
      await must(
        'ip',
        ['-n', state.underlay, '-batch', '-'],
        [
          'link set lo up',
          'link add br0 type bridge',
          `addr add ${UNDERLAY_GW}/24 dev br0`,
          `addr add ${INTERNET_IP}/32 dev lo`,
          'link set br0 up',
        ].join('\n') + '\n',
      );
      for (let k = 1; k <= opts.hosts; k++) await lab.addHost(k);
      lab.save();
      // Daemons start in parallel, a few at a time (2 cores).
      const queue = [...state.hosts];
      const workers = Array.from({ length: Math.min(4, queue.length) }, async () => {
        for (let h = queue.shift(); h; h = queue.shift()) await lab.startDaemon(h, opts.daemonArgs ?? []);
      });
      await Promise.all(workers);
      lab.save();
      return lab;
    } catch (e) {
      await lab.down().catch(() => undefined);
      throw e;
    }
  }

  private save(): void {
    writeFileSync(join(this.state.dir, 'lab.json'), JSON.stringify(this.state, null, 2) + '\n');
  }

  private async addHost(k: number): Promise<LabHost> {
    const full = `${labPrefix()}${this.state.name}`;
    const name = `h${k}`;
    const hdir = join(this.state.dir, name);
    const host: LabHost = {
      name,
      netns: `${full}-${name}`,
      uts: join(hdir, 'uts'),
      addr: `192.0.2.${10 + k}`,
      dir: hdir,
      dataRoot: join(hdir, 'data'),
      execRoot: join(hdir, 'run'),
      socket: join(hdir, 'run/cove.sock'),
    };
    if (10 + k > 254) throw new Error('too many hosts for 192.0.2.0/24');
    this.state.hosts.push(host);
    mkdirSync(hdir, { recursive: true });
    await must('ip', ['netns', 'add', host.netns]);
    // The veth is made inside the underlay namespace and its far end moved
    // straight into the host: the root namespace never holds either end.
    await must('ip', [
      '-n',
      this.state.underlay,
      'link',
      'add',
      `v${name}`,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      host.netns,
    ]);
    await must(
      'ip',
      ['-n', this.state.underlay, '-batch', '-'],
      [`link set v${name} master br0`, `link set v${name} up`].join('\n') + '\n',
    );
    await must(
      'ip',
      ['-n', host.netns, '-batch', '-'],
      [
        'link set lo up',
        `addr add ${host.addr}/24 dev eth0`,
        'link set eth0 up',
        `route add default via ${UNDERLAY_GW}`,
      ].join('\n') + '\n',
    );
    await makeUtsNamespace(host.uts, name);
    return host;
  }

  host(name: string): LabHost {
    const h = this.state.hosts.find((x) => x.name === name);
    if (!h)
      throw new Error(
        `no host ${name} in lab ${this.state.name} (hosts: ${this.state.hosts.map((x) => x.name).join(', ')})`,
      );
    return h;
  }

  /** nsenter arguments that put a command inside host h (network and hostname). */
  static enter(h: LabHost): string[] {
    return [`--net=/run/netns/${h.netns}`, `--uts=${h.uts}`];
  }

  static envOf(h: LabHost): Record<string, string> {
    return { DOCKER_HOST: `unix://${h.socket}`, COVE_HOST: `unix://${h.socket}` };
  }

  /** Starts (or restarts) coved on host h, detached from this process; waits until it answers. */
  async startDaemon(h: LabHost, extraArgs: string[] = []): Promise<void> {
    mkdirSync(h.dataRoot, { recursive: true });
    mkdirSync(h.execRoot, { recursive: true });
    const log = openSync(join(h.dir, 'coved.log'), 'a');
    const child = spawn(
      'nsenter',
      [
        ...HostLab.enter(h),
        ...covedCommand(),
        '-H',
        `unix://${h.socket}`,
        '--data-root',
        h.dataRoot,
        '--exec-root',
        h.execRoot,
        '--pidfile',
        join(h.execRoot, 'coved.pid'),
        '--bridge-name',
        'cove0',
        '--dns',
        UNDERLAY_GW,
        '--log-level',
        process.env.COVE_LAB_LOG_LEVEL ?? 'info',
        ...extraArgs,
      ],
      { stdio: ['ignore', log, log], detached: true },
    );
    closeSync(log);
    // nsenter execs node, so this PID is coved's own.
    h.pid = child.pid;
    child.unref();
    let exited = false;
    child.once('exit', () => {
      exited = true;
    });
    for (let i = 0; i < 600; i++) {
      if (exited) throw new Error(`coved on ${h.name} exited at start:\n${this.daemonLog(h).slice(-3000)}`);
      if (await pingSocket(h.socket)) {
        this.save();
        return;
      }
      await sleep(50);
    }
    throw new Error(`coved on ${h.name} did not answer /_ping:\n${this.daemonLog(h).slice(-3000)}`);
  }

  /** Stops coved on host h (SIGTERM: clean; SIGKILL: a crash). Containers and etcd members keep running. */
  async stopDaemon(h: LabHost, signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const pid = h.pid;
    if (!pid || !isAlive(pid)) return;
    process.kill(pid, signal);
    for (let i = 0; i < 300 && isAlive(pid); i++) await sleep(50);
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100 && isAlive(pid); i++) await sleep(20);
    h.pid = undefined;
    this.save();
  }

  daemonLog(h: LabHost): string {
    try {
      return readFileSync(join(h.dir, 'coved.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /** Runs argv inside host h with DOCKER_HOST/COVE_HOST set; output captured. */
  exec(h: LabHost, argv: string[], timeoutMs = 60_000): Promise<Run> {
    return new Promise((res) => {
      const child = execFile(
        'nsenter',
        [...HostLab.enter(h), ...argv],
        { env: { ...process.env, ...HostLab.envOf(h) }, timeout: timeoutMs, maxBuffer: 16 << 20 },
        (err, stdout, stderr) => {
          const code = err
            ? typeof (err as { code?: unknown }).code === 'number'
              ? (err as unknown as { code: number }).code
              : 1
            : 0;
          res({ code, stdout: String(stdout), stderr: String(stderr) });
        },
      );
      child.stdin?.end();
    });
  }

  /** Removes every namespace, mount, process and directory the lab made. Safe to repeat. */
  async down(): Promise<void> {
    const hosts = this.state.hosts;
    // 1. Daemons, cleanly, so they stop what they supervise; in parallel.
    await Promise.all(hosts.map((h) => this.stopDaemon(h, 'SIGTERM').catch(() => undefined)));
    // 2. Whatever is left inside the lab's namespaces (etcd members, conmon,
    //    containers) or names the lab's directory: by PID.
    const nsPaths = [`/run/netns/${this.state.underlay}`, ...hosts.map((h) => `/run/netns/${h.netns}`)];
    for (const h of hosts) {
      const d = join(h.execRoot, 'netns');
      if (existsSync(d)) for (const f of readdirSync(d)) nsPaths.push(join(d, f));
    }
    const inodes = new Set(nsPaths.map(inodeOf).filter((x): x is number => x !== undefined));
    for (let round = 0; round < 5; round++) {
      const pids = new Set([...pidsInNetns(inodes), ...pidsWithArg(this.state.dir + '/')]);
      pids.delete(process.pid);
      if (pids.size === 0) break;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      await sleep(200);
    }
    // 3. Mounts under the lab directory (netns files, UTS files, container rootfs), deepest first.
    const mounts = readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[1]?.replace(/\\040/g, ' '))
      .filter((m): m is string => !!m && m.startsWith(this.state.dir + '/'))
      .sort((a, b) => b.length - a.length);
    for (const m of mounts) await run('umount', ['-l', m]);
    // 3b. Cgroups of the containers killed above (their daemon was not there to remove them).
    for (const h of hosts) await removeContainerCgroups(join(h.dataRoot, 'containers'));
    // 4. Namespaces; their links go with them.
    for (const h of hosts) await run('ip', ['netns', 'del', h.netns]);
    await run('ip', ['netns', 'del', this.state.underlay]);
    rmSync(this.state.dir, { recursive: true, force: true });
  }

  /** Resident memory (kB) of every process of host h: coved, its etcd member, helpers. */
  rssOf(h: LabHost): { coved: number; etcd: number; other: number; covedPss: number; etcdPss: number } {
    const inode = inodeOf(`/run/netns/${h.netns}`);
    // PSS too: the hosts' processes share their executables' and libraries' pages (node's, etcd's),
    // which RSS counts in full for each; PSS splits them among the sharers (what one more host costs).
    const out = { coved: 0, etcd: 0, other: 0, covedPss: 0, etcdPss: 0 };
    if (inode === undefined) return out;
    for (const pid of pidsInNetns(new Set([inode]))) {
      try {
        const status = readFileSync(`/proc/${pid}/status`, 'utf8');
        const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
        let pss = 0;
        try {
          pss = Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
        } catch {
          /* no smaps_rollup */
        }
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        if (pid === h.pid) {
          out.coved += kb;
          out.covedPss += pss;
        } else if (/(^|\/)etcd\0/.test(cmd)) {
          out.etcd += kb;
          out.etcdPss += pss;
        } else out.other += kb;
      } catch {
        /* gone */
      }
    }
    return out;
  }
}

/**
 * A persistent UTS namespace bind-mounted on `file`, whose hostname is
 * `hostname`: `nsenter --uts=FILE` puts a daemon in it, so `node ls` and
 * `network inspect` Peers show each simulated host by its own name.
 * Unmounting the file (lab teardown) frees it.
 */
export async function makeUtsNamespace(file: string, hostname: string): Promise<void> {
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/i.test(hostname)) throw new Error(`bad hostname ${hostname}`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, '');
  await must('unshare', [`--uts=${file}`, 'hostname', hostname]);
}

export function inodeOf(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

/** PIDs whose network namespace is one of the given inodes. */
export function pidsInNetns(inodes: Set<number>): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const ino = Number(readlinkSync(`/proc/${d}/ns/net`).slice(5, -1));
      if (inodes.has(ino)) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** PIDs whose command line contains `fragment` (a lab directory), never this process. */
export function pidsWithArg(fragment: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(fragment)) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}
