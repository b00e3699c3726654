/**
 * The etcd member of a manager node: started by coved, detached from it (its
 * own session, output to a log file), so that it outlives a daemon restart
 * as conmon does; a restarted daemon re-adopts it by its pidfile. Members
 * talk to each other and to clients over mutual TLS only, with the node's
 * certificate from the cluster CA.
 *
 * Flags (see reference/etcd-feasibility.md): --pre-vote (a healed partition
 * does not force an election), periodic auto-compaction (etcd keeps all
 * history by default), and the default 100 ms heartbeat / 1 s election.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../common/log.js';

export const CLIENT_PORT = 2379;
export const PEER_PORT = 2380;

export interface MemberConfig {
  /** etcd member name: the node ID. */
  name: string;
  addr: string;
  /** Directory with ca.crt, node.crt, node.key. */
  certDir: string;
  /** This member's directory: data/, etcd.pid, etcd.log. */
  dir: string;
  /** "name=https://addr:2380,..." for a new member; ignored by etcd once the data dir exists. */
  initialCluster: string;
  state: 'new' | 'existing';
  clusterToken: string;
}

export function clientUrl(addr: string): string {
  return `https://${addr}:${CLIENT_PORT}`;
}
export function peerUrl(addr: string): string {
  return `https://${addr}:${PEER_PORT}`;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class EtcdMember {
  pid?: number;
  /** Supervision: while wanted, a member that exits is started again (a promoted node's first start fails until `member add` lands). */
  private watchdog?: NodeJS.Timeout;
  constructor(
    readonly cfg: MemberConfig,
    private readonly log: Logger,
  ) {}

  get dataDir(): string {
    return join(this.cfg.dir, 'data');
  }
  private get pidfile(): string {
    return join(this.cfg.dir, 'etcd.pid');
  }

  /** The PID of a running member of ours (same data dir), if any. */
  running(): number | undefined {
    try {
      const pid = Number(readFileSync(this.pidfile, 'utf8').trim());
      if (!pid || !isAlive(pid)) return undefined;
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      return cmd.includes(this.dataDir) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** Adopts the running member, or starts one, and keeps it running until stop(). */
  start(): number {
    const pid = this.startOnce();
    if (!this.watchdog) {
      this.watchdog = setInterval(() => {
        if (this.pid && isAlive(this.pid)) return;
        this.log.warn({ log: this.logTail(400) }, 'etcd member exited; starting it again');
        try {
          this.startOnce();
        } catch (e) {
          this.log.error({ err: e }, 'etcd member did not start');
        }
      }, 1000);
      this.watchdog.unref();
    }
    return pid;
  }

  /** Stops supervising without stopping the member (daemon shutdown: the member outlives it). */
  release(): void {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = undefined;
  }

  private startOnce(): number {
    const alive = this.running();
    if (alive) {
      this.pid = alive;
      this.log.info({ pid: alive }, 'etcd member adopted');
      return alive;
    }
    mkdirSync(this.cfg.dir, { recursive: true, mode: 0o700 });
    const c = this.cfg;
    const cert = join(c.certDir, 'node.crt');
    const key = join(c.certDir, 'node.key');
    const ca = join(c.certDir, 'ca.crt');
    const args = [
      '--name',
      c.name,
      '--data-dir',
      this.dataDir,
      '--listen-client-urls',
      `${clientUrl(c.addr)},https://127.0.0.1:${CLIENT_PORT}`,
      '--advertise-client-urls',
      clientUrl(c.addr),
      '--listen-peer-urls',
      peerUrl(c.addr),
      '--initial-advertise-peer-urls',
      peerUrl(c.addr),
      '--initial-cluster',
      c.initialCluster,
      '--initial-cluster-state',
      c.state,
      '--initial-cluster-token',
      c.clusterToken,
      '--cert-file',
      cert,
      '--key-file',
      key,
      '--trusted-ca-file',
      ca,
      '--client-cert-auth',
      '--peer-cert-file',
      cert,
      '--peer-key-file',
      key,
      '--peer-trusted-ca-file',
      ca,
      '--peer-client-cert-auth',
      '--pre-vote=true',
      '--auto-compaction-mode',
      'periodic',
      '--auto-compaction-retention',
      '5m',
      '--snapshot-count',
      '10000',
      '--grpc-keepalive-min-time',
      '2s',
      // An address claim compares one key per node (src/network/ipam/claims.ts): room for 1000 nodes, not 128.
      '--max-txn-ops',
      '2048',
      '--logger',
      'zap',
      '--log-outputs',
      'stderr',
    ];
    const log = openSync(join(c.dir, 'etcd.log'), 'a');
    const child = spawn('etcd', args, { stdio: ['ignore', log, log], detached: true });
    closeSync(log);
    child.on('error', (e) => this.log.error({ err: e }, 'etcd did not start'));
    child.unref();
    if (!child.pid) throw new Error('etcd did not start (is etcd-server installed?)');
    this.pid = child.pid;
    writeFileSync(this.pidfile, `${child.pid}\n`);
    this.log.info({ pid: child.pid, state: c.state }, 'etcd member started');
    return child.pid;
  }

  /** Stops the member (SIGTERM, then SIGKILL) and waits for it to exit. */
  async stop(): Promise<void> {
    this.release();
    const pid = this.pid ?? this.running();
    if (!pid) return;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
    for (let i = 0; i < 100 && isAlive(pid); i++) await sleep(50);
    if (isAlive(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      for (let i = 0; i < 50 && isAlive(pid); i++) await sleep(20);
    }
    this.pid = undefined;
  }

  /** Stops the member and deletes its data (leave, demote, failed join). */
  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.cfg.dir, { recursive: true, force: true });
  }

  logTail(n = 2000): string {
    try {
      const s = readFileSync(join(this.cfg.dir, 'etcd.log'), 'utf8');
      return s.slice(-n);
    } catch {
      return '';
    }
  }

  exists(): boolean {
    return existsSync(this.dataDir);
  }
}
