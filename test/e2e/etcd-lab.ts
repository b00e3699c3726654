/**
 * A lab for the cluster-store tests: real etcd members inside one lab network
 * namespace `cve-*` with no uplink. Members talk raft to each other on
 * 127.0.0.1 inside that namespace, and serve clients on unix sockets under
 * /tmp/cve-*, which the test process (in the root namespace: Node cannot
 * setns) reaches without any network path out of the lab.
 *
 * Every member is started by `nsenter --net=` (which execs etcd, so the PID we
 * hold is etcd's) and ended by that PID. destroy() kills what is left, deletes
 * the data dirs (etcd preallocates ~123 MB of WAL per member) and the netns.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

export interface Member {
  name: string;
  /** Client URL for etcd3 / EtcdStore. */
  endpoint: string;
  peerUrl: string;
  dataDir: string;
  logPath: string;
  proc?: ChildProcess;
  pid?: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class EtcdLab {
  readonly netns: string;
  readonly dir: string;
  readonly members: Member[] = [];
  private static portBase = 12380;

  constructor(tag: string) {
    const id = randomBytes(3).toString('hex');
    this.netns = `cve-${tag}-${id}`;
    this.dir = `/tmp/cve-${tag}-${id}`;
    if (!/^cve-[a-z0-9-]{1,20}$/.test(this.netns)) throw new Error(`bad lab name ${this.netns}`);
    mkdirSync(this.dir, { recursive: true });
    execFileSync('ip', ['netns', 'add', this.netns]);
    execFileSync('ip', ['-n', this.netns, 'link', 'set', 'lo', 'up']);
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.endpoint);
  }

  /** Starts an n-member cluster (all members at once) and waits until every member answers. */
  async startCluster(n: number): Promise<Member[]> {
    const base = EtcdLab.portBase;
    EtcdLab.portBase += 10;
    const ms: Member[] = [];
    for (let i = 1; i <= n; i++) {
      const name = `m${i}`;
      ms.push({
        name,
        // etcd wants host:port even for unix URLs and makes the socket at that
        // path relative to its working directory (this.dir).
        endpoint: `unix://${this.dir}/${name}.sock:0`,
        peerUrl: `http://127.0.0.1:${base + i}`,
        dataDir: `${this.dir}/${name}.data`,
        logPath: `${this.dir}/${name}.log`,
      });
    }
    const cluster = ms.map((m) => `${m.name}=${m.peerUrl}`).join(',');
    this.members.push(...ms);
    for (const m of ms) this.spawnMember(m, cluster);
    await Promise.all(ms.map((m) => this.waitHealthy(m)));
    return ms;
  }

  private spawnMember(m: Member, cluster: string): void {
    const log = openSync(m.logPath, 'a');
    const args = [
      `--net=/run/netns/${this.netns}`,
      '--',
      'etcd',
      '--name',
      m.name,
      '--data-dir',
      m.dataDir,
      '--listen-client-urls',
      `unix://${m.name}.sock:0`,
      '--advertise-client-urls',
      `unix://${m.name}.sock:0`,
      '--listen-peer-urls',
      m.peerUrl,
      '--initial-advertise-peer-urls',
      m.peerUrl,
      '--initial-cluster',
      cluster,
      '--initial-cluster-state',
      'new',
      '--initial-cluster-token',
      this.netns,
      // A healed member must not force an election (see etcd-feasibility.md §2).
      '--pre-vote=true',
      '--logger',
      'zap',
      '--log-outputs',
      'stderr',
    ];
    const proc = spawn('nsenter', args, { cwd: this.dir, stdio: ['ignore', log, log] });
    closeSync(log);
    m.proc = proc;
    m.pid = proc.pid;
    proc.on('error', () => undefined);
  }

  /** Restarts a stopped member on its old data dir. */
  async restart(m: Member): Promise<void> {
    if (m.pid && this.alive(m)) throw new Error(`${m.name} still runs`);
    // A SIGKILLed member leaves its unix socket behind, and a new bind would fail.
    rmSync(`${this.dir}/${m.name}.sock:0`, { force: true });
    const cluster = this.members.map((x) => `${x.name}=${x.peerUrl}`).join(',');
    this.spawnMember(m, cluster);
    await this.waitHealthy(m);
  }

  alive(m: Member): boolean {
    return m.proc !== undefined && m.proc.exitCode === null && m.proc.signalCode === null;
  }

  /** Waits until the member answers `endpoint health` (a quorum read through it). */
  async waitHealthy(m: Member, timeoutMs = 20_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (!this.alive(m)) throw new Error(`etcd ${m.name} exited: ${this.tail(m)}`);
      if (this.etcdctl([m.endpoint], ['endpoint', 'health'], 3000).ok) return;
      if (Date.now() > until) throw new Error(`etcd ${m.name} not healthy after ${timeoutMs} ms: ${this.tail(m)}`);
      await sleep(100);
    }
  }

  /** The member that is raft leader now (by `endpoint status`). */
  leader(): Member | undefined {
    for (const m of this.members) {
      if (!this.alive(m)) continue;
      const r = this.etcdctl([m.endpoint], ['endpoint', 'status', '-w', 'json'], 3000);
      if (!r.ok) continue;
      const [st] = JSON.parse(r.out) as Array<{
        Status: { header: { member_id: number | string }; leader: number | string };
      }>;
      if (st && String(st.Status.header.member_id) === String(st.Status.leader)) return m;
    }
    return undefined;
  }

  etcdctl(endpoints: string[], args: string[], timeoutMs = 5000): { ok: boolean; out: string } {
    try {
      const out = execFileSync(
        'etcdctl',
        [`--endpoints=${endpoints.join(',')}`, '--dial-timeout=1s', '--command-timeout=2s', ...args],
        {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
          timeout: timeoutMs,
        },
      );
      return { ok: true, out };
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string };
      return { ok: false, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
    }
  }

  /** Sends a signal to one member by its PID and waits for it to exit. */
  async kill(m: Member, signal: NodeJS.Signals = 'SIGKILL', timeoutMs = 15_000): Promise<void> {
    if (!m.proc || !this.alive(m)) return;
    const exited = new Promise<void>((r) => m.proc!.once('exit', () => r()));
    process.kill(m.pid!, signal);
    const t = setTimeout(() => this.alive(m) && process.kill(m.pid!, 'SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(t);
  }

  tail(m: Member, lines = 8): string {
    if (!existsSync(m.logPath)) return '(no log)';
    return readFileSync(m.logPath, 'utf8').trim().split('\n').slice(-lines).join('\n');
  }

  /** Kills every member still running (by PID), removes the data dirs and the netns. */
  async destroy(): Promise<void> {
    await Promise.all(this.members.map((m) => this.kill(m, 'SIGKILL')));
    rmSync(this.dir, { recursive: true, force: true });
    try {
      execFileSync('ip', ['netns', 'del', this.netns], { stdio: 'ignore' });
    } catch {
      /* already gone */
    }
  }
}
