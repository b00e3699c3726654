/**
 * The test lab: every daemon under test runs inside a network namespace of its
 * own with no uplink to the machine. A second namespace, joined to it by a
 * veth pair, stands in for "the internet": it answers pings on 198.51.100.1
 * (a documentation address, never routed anywhere) and runs a small DNS
 * server that says google.com is 198.51.100.1. The lab's default route points
 * at it, so a container's `ping google.com` crosses Cove's NAT for real while
 * nothing can leave the machine.
 *
 * Several labs can be joined by an "underlay" for multi-host tests.
 * destroy() removes every namespace, link, mount and process the lab made,
 * also after a failed test.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, readFileSync, readdirSync, openSync, closeSync, existsSync } from 'node:fs';
import { removeContainerCgroups } from '../../src/lab/cgroups.js';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'node:http';
import { covedCommand, inodeOf, makeUtsNamespace, pidsInNetns, pidsWithArg } from '../../src/lab/hosts.js';

const here = dirname(fileURLToPath(import.meta.url));
/** Repository root, from dist/test/lab or test/lab. */
export const REPO = resolve(here, here.includes('/dist/') ? '../../..' : '../..');
export const COVE_BIN = join(REPO, 'bin/cove');
export const COVED_BIN = join(REPO, 'bin/coved');
export const INTERNET_IP = '198.51.100.1';

/**
 * COVE_LAB_OFFLINE=1: labs get no stand-in internet and no route out (the
 * daemon's netns has only loopback and what Cove makes), as on a machine with
 * no uplink. Checks that need the internet stand-in skip themselves through
 * `lab.online` / skipOffline(); everything else must pass as well.
 */
export const LAB_OFFLINE = process.env.COVE_LAB_OFFLINE === '1';

/** In a test that needs the internet stand-in: skips it (true) when the lab has none. */
export function skipOffline(t: { skip: (msg?: string) => void }, lab: { online: boolean }): boolean {
  if (lab.online) return false;
  t.skip('needs the stand-in internet (COVE_LAB_OFFLINE=1: no uplink)');
  return true;
}
export const LAB_IP = '10.99.0.1';
export const INET_GW = '10.99.0.254';

/**
 * Lab names get COVE_LAB_PREFIX in front (one or two letters), so that several
 * checkouts can run their tests on one machine at once without their
 * namespaces, directories and processes colliding.
 */
export const LAB_PREFIX = process.env.COVE_LAB_PREFIX ?? '';
if (!/^[a-z0-9]{0,3}$/.test(LAB_PREFIX))
  throw new Error(`COVE_LAB_PREFIX must be up to 3 lowercase letters or digits: ${LAB_PREFIX}`);
export function labName(name: string): string {
  return LAB_PREFIX + name;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(
  cmd: string,
  args: string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolvePromise) => {
    const child = execFile(
      cmd,
      args,
      { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number'
            ? (err as unknown as { code: number }).code
            : 1
          : 0;
        resolvePromise({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

async function must(cmd: string, args: string[], input?: string): Promise<string> {
  const r = await run(cmd, args, input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface DaemonOptions {
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
}

export class Lab {
  readonly netns: string;
  readonly inetNetns: string;
  readonly dir: string;
  readonly socket: string;
  readonly dataRoot: string;
  readonly execRoot: string;
  daemon: ChildProcess | undefined;
  private dnsServer: ChildProcess | undefined;
  private readonly extraNetns: string[] = [];
  /** Has a stand-in internet and a default route to it (false with COVE_LAB_OFFLINE=1 or internet: false). */
  online = false;
  /** A UTS namespace file (bind mount) with this host's own hostname, when made with `hostname`. */
  uts: string | undefined;

  private constructor(readonly name: string) {
    this.netns = name;
    this.inetNetns = `${name}-inet`;
    this.dir = `/tmp/cove-lab/${name}`;
    this.socket = join(this.dir, 'run/cove.sock');
    this.dataRoot = join(this.dir, 'data');
    this.execRoot = join(this.dir, 'run');
  }

  get netnsPath(): string {
    return `/run/netns/${this.netns}`;
  }

  /** A handle on a lab made earlier (by another process), to destroy it. */
  static existing(name: string): Lab {
    return new Lab(labName(name));
  }

  /** Makes the lab and its stand-in internet. Names must be short (interface names are derived from them). */
  static async create(name: string, opts: { internet?: boolean; hostname?: string } = {}): Promise<Lab> {
    const lab = new Lab(labName(name));
    try {
      lab.online = (opts.internet ?? true) && !LAB_OFFLINE;
      await lab.setup(lab.online);
      if (opts.hostname) {
        lab.uts = join(lab.dir, 'uts');
        await makeUtsNamespace(lab.uts, opts.hostname);
      }
    } catch (e) {
      await lab.destroy();
      throw e;
    }
    return lab;
  }

  private async setup(internet: boolean): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    await must('ip', ['netns', 'add', this.netns]);
    await must('ip', ['-n', this.netns, 'link', 'set', 'lo', 'up']);
    if (!internet) {
      // No uplink, no route out; the host keeps its address (on lo) so remote hosts and published ports still find it.
      if (LAB_OFFLINE) await must('ip', ['-n', this.netns, 'addr', 'add', `${LAB_IP}/32`, 'dev', 'lo']);
      return;
    }
    await must('ip', ['netns', 'add', this.inetNetns]);
    await must('ip', [
      'link',
      'add',
      'uplink0',
      'netns',
      this.netns,
      'type',
      'veth',
      'peer',
      'name',
      'inet0',
      'netns',
      this.inetNetns,
    ]);
    await must(
      'ip',
      ['-n', this.netns, '-batch', '-'],
      [`addr add ${LAB_IP}/24 dev uplink0`, 'link set uplink0 up', `route add default via ${INET_GW}`].join('\n') +
        '\n',
    );
    await must(
      'ip',
      ['-n', this.inetNetns, '-batch', '-'],
      [
        'link set lo up',
        `addr add ${INET_GW}/24 dev inet0`,
        `addr add ${INTERNET_IP}/32 dev lo`,
        'link set inet0 up',
      ].join('\n') + '\n',
    );
    // The stand-in resolver of the internet: google.com and *.example -> 198.51.100.1.
    const dnsScript = join(REPO, here.includes('/dist/') ? 'dist/test/lab/fake-dns.js' : 'dist/test/lab/fake-dns.js');
    this.dnsServer = spawn(
      'nsenter',
      [`--net=/run/netns/${this.inetNetns}`, process.execPath, dnsScript, INET_GW, INTERNET_IP],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    for (let i = 0; i < 100; i++) {
      const r = await run(
        'nsenter',
        [`--net=/run/netns/${this.inetNetns}`, 'busybox', 'nslookup', 'google.com', INET_GW],
        { timeoutMs: 3000 },
      );
      if (r.code === 0 && r.stdout.includes(INTERNET_IP)) return;
      await sleep(50);
    }
    throw new Error('stand-in DNS did not start');
  }

  /** Runs a command inside the lab namespace (the daemon's "host"). */
  sh(script: string, timeoutMs = 30_000): Promise<RunResult> {
    return run('nsenter', [...this.enter(), 'sh', '-c', script], { timeoutMs });
  }

  /** nsenter's arguments that put a command inside this host (network, and hostname when it has one). */
  enter(): string[] {
    return [`--net=${this.netnsPath}`, ...(this.uts ? [`--uts=${this.uts}`] : [])];
  }

  /** Runs a command on the stand-in internet host. */
  inet(script: string, timeoutMs = 30_000): Promise<RunResult> {
    if (!this.online)
      throw new Error(`lab ${this.name} has no stand-in internet (COVE_LAB_OFFLINE=1 or internet: false)`);
    return run('nsenter', [`--net=/run/netns/${this.inetNetns}`, 'sh', '-c', script], { timeoutMs });
  }

  get env(): NodeJS.ProcessEnv {
    return { ...process.env, COVE_HOST: `unix://${this.socket}`, DOCKER_HOST: `unix://${this.socket}` };
  }

  /** The cove CLI against this lab's daemon. */
  cove(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    return run(COVE_BIN, args, { env: this.env, ...opts });
  }

  /** Like cove(), but throws on a non-zero exit; returns trimmed stdout. */
  async coveOk(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
    const r = await this.cove(args, opts);
    if (r.code !== 0) throw new Error(`cove ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
    return r.stdout.trim();
  }

  /**
   * `cove attach NAME` as a person uses it: type each line, wait until the
   * output shows what that line should print, then detach with CTRL-p CTRL-q.
   * Resolves with everything the session printed and the CLI's exit code.
   */
  attach(name: string, steps: Array<{ send: string; until: RegExp }>, timeoutMs = 30_000): Promise<RunResult> {
    return new Promise((resolvePromise) => {
      const child = spawn(COVE_BIN, ['attach', name], { env: this.env, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      let step = 0;
      let seenUpTo = 0;
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const next = (): void => {
        const cur = steps[step];
        if (!cur) {
          child.stdin.write('\x10\x11');
          return;
        }
        child.stdin.write(cur.send + '\n');
      };
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString('utf8');
        const cur = steps[step];
        if (cur && cur.until.test(stdout.slice(seenUpTo))) {
          seenUpTo = stdout.length;
          step++;
          next();
        }
      });
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
      child.on('close', (code) => {
        clearTimeout(timer);
        resolvePromise({ code: code ?? 1, stdout, stderr });
      });
      // Let the attach settle before typing, as a person would.
      setTimeout(next, 200);
    });
  }

  async startDaemon(opts: DaemonOptions = {}): Promise<void> {
    mkdirSync(this.dataRoot, { recursive: true });
    mkdirSync(this.execRoot, { recursive: true });
    const log = openSync(join(this.dir, 'coved.log'), 'a');
    const args = [
      ...this.enter(),
      ...covedCommand(COVED_BIN),
      '-H',
      `unix://${this.socket}`,
      '--data-root',
      this.dataRoot,
      '--exec-root',
      this.execRoot,
      '--pidfile',
      join(this.execRoot, 'coved.pid'),
      '--dns',
      INET_GW,
      '--log-level',
      process.env.COVE_TEST_LOG_LEVEL ?? 'debug',
      ...(opts.extraArgs ?? []),
    ];
    this.daemon = spawn('nsenter', args, { stdio: ['ignore', log, log], env: { ...process.env, ...opts.env } });
    closeSync(log);
    const child = this.daemon;
    let exited = false;
    child.once('exit', () => {
      exited = true;
    });
    // (a generous bound: on the shared 2-core machine at load 40-60 a start takes 15 s and more)
    for (let i = 0; i < 1200; i++) {
      if (exited) throw new Error(`coved exited at start:\n${this.daemonLog().slice(-4000)}`);
      if (await this.ping()) return;
      await sleep(50);
    }
    throw new Error(`coved did not answer /_ping:\n${this.daemonLog().slice(-4000)}`);
  }

  daemonLog(): string {
    try {
      return readFileSync(join(this.dir, 'coved.log'), 'utf8');
    } catch {
      return '';
    }
  }

  ping(): Promise<boolean> {
    return new Promise((res) => {
      const req = request({ socketPath: this.socket, path: '/_ping', method: 'GET', timeout: 1000 }, (resp) => {
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

  /** The daemon's own PID (nsenter execs it, so the child's PID is the daemon's). */
  get daemonPid(): number | undefined {
    return this.daemon?.pid;
  }

  /** Stops the daemon: SIGTERM (clean) or SIGKILL (crash). Containers keep running either way. */
  async stopDaemon(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.daemon;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const done = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await done;
    clearTimeout(timer);
    this.daemon = undefined;
  }

  /**
   * Adds another machine out on the network: a namespace routed to the lab
   * through the internet stand-in (10.98.N.2, gateway 10.98.N.1; offline,
   * linked to the lab directly with the same addresses). Returns a
   * function running a shell command on it.
   */
  async addRemoteHost(name: string, n: number): Promise<{ ip: string; sh: (script: string) => Promise<RunResult> }> {
    const ns = `${this.name}-${name}`;
    await must('ip', ['netns', 'add', ns]);
    this.extraNetns.push(ns);
    const routerIf = `r${name}`.slice(0, 15);
    // Offline there is no router in between: the host hangs straight off the lab (a LAN neighbour on its own subnet).
    const routerNs = this.online ? this.inetNetns : this.netns;
    await must('ip', ['link', 'add', routerIf, 'netns', routerNs, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await must(
      'ip',
      ['-n', routerNs, '-batch', '-'],
      [`addr add 10.98.${n}.1/24 dev ${routerIf}`, `link set ${routerIf} up`].join('\n') + '\n',
    );
    if (this.online)
      await must('nsenter', [`--net=/run/netns/${this.inetNetns}`, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    await must(
      'ip',
      ['-n', ns, '-batch', '-'],
      [
        'link set lo up',
        `addr add 10.98.${n}.2/24 dev eth0`,
        'link set eth0 up',
        `route add default via 10.98.${n}.1`,
      ].join('\n') + '\n',
    );
    return { ip: `10.98.${n}.2`, sh: (script) => run('nsenter', [`--net=/run/netns/${ns}`, 'sh', '-c', script]) };
  }

  /** Removes everything the lab made; safe to call twice and after a failure. */
  async destroy(): Promise<void> {
    // 1. Containers, through the daemon if it still answers.
    if (await this.ping()) {
      const ids = (await this.cove(['ps', '-aq'])).stdout.split(/\s+/).filter(Boolean);
      if (ids.length) await this.cove(['rm', '-f', ...ids], { timeoutMs: 60_000 });
    }
    await this.stopDaemon('SIGTERM').catch(() => undefined);
    this.dnsServer?.kill('SIGKILL');
    // wireguard-go devices of the daemon (encrypted overlays) end by their PID files first, gracefully,
    // so they remove their UAPI sockets from /var/run/wireguard (shared by the whole machine).
    await stopWireguardDevices(join(this.execRoot, 'wireguard'));
    // 2. Any process left in the lab's namespaces or naming its directory (conmon, containers, helpers).
    const nsPaths = [this.netnsPath, `/run/netns/${this.inetNetns}`, ...this.extraNetns.map((n) => `/run/netns/${n}`)];
    const netnsDir = join(this.execRoot, 'netns');
    if (existsSync(netnsDir)) for (const f of readdirSync(netnsDir)) nsPaths.push(join(netnsDir, f));
    const inodes = new Set(nsPaths.map(inodeOf).filter((x): x is number => x !== undefined));
    for (let round = 0; round < 3; round++) {
      const pids = new Set([...pidsInNetns(inodes), ...pidsWithArg(this.dir + '/')]);
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
    // 2b. Cgroups of this lab's containers: a container that was never removed through the daemon (the daemon
    // was down or crashed) keeps its empty /sys/fs/cgroup/<controller>/cove/<id> directories.
    await removeContainerCgroups(join(this.dataRoot, 'containers'));
    // 3. Mounts under the lab directory, deepest first.
    const mounts = readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[1])
      .filter((m): m is string => !!m && (m === this.dir || m.startsWith(this.dir + '/')))
      .sort((a, b) => b.length - a.length);
    for (const m of mounts) await run('umount', ['-l', m]);
    // 4. Namespaces (links inside them go with them).
    for (const ns of [...this.extraNetns, this.inetNetns, this.netns]) await run('ip', ['netns', 'del', ns]);
    // 5. runc state of this lab's containers lives under its exec root; files last.
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function stopWireguardDevices(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.pid')) continue;
    const name = f.slice(0, -4);
    const pid = Number(readFileSync(join(dir, f), 'utf8').trim());
    let alive = false;
    try {
      alive =
        Number.isInteger(pid) && pid > 1 && readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(name);
    } catch {
      alive = false;
    }
    if (alive) {
      process.kill(pid, 'SIGTERM');
      for (let i = 0; i < 40 && existsSync(`/proc/${pid}`); i++) await sleep(50);
    }
    rmSync(`/var/run/wireguard/${name}.sock`, { force: true });
  }
}
