/**
 * Several simulated hosts for multi-host tests: each a Lab (its own network
 * namespace, coved, data root, socket and stand-in internet), joined by an
 * underlay: a bridge `ul0` in a namespace of its own, each host reaching it
 * through `eth1` with a documentation address 192.0.2.1N/24 (N = 1, 2, ...).
 * Each host has its own UTS namespace and hostname (node1, node2, ...), so
 * `node ls` and `network inspect` Peers tell the hosts apart.
 * Nothing reaches the root namespace. destroy() removes it all.
 *
 * `cove lab` (src/lab/hosts.ts) builds the same kind of hosts for demos and
 * benchmarks, one coved each without a stand-in internet per host; this
 * harness adds what tests need (a stand-in internet per host, Lab's
 * helpers) and shares the namespace and process plumbing with it.
 */
import { join } from 'node:path';
import { Lab, REPO, labName, run, type DaemonOptions, type RunResult } from './lab.js';

const DOCKER = '/usr/local/bin/docker';

export const UNDERLAY_PREFIX = '192.0.2.';

export class MultiHostLab {
  private constructor(
    readonly name: string,
    readonly underlayNetns: string,
    readonly hosts: Lab[],
  ) {}

  /** Underlay address of host i (0-based): 192.0.2.11, .12, ... */
  addr(i: number): string {
    return `${UNDERLAY_PREFIX}${11 + i}`;
  }

  /**
   * etcdctl inside host h with h's own node certificate (etcd's user = the certificate's CN), against
   * host 1's member: what that node's credentials may do in the cluster store.
   */
  async etcdctlAs(h: Lab, ...args: string[]): Promise<{ code: number; out: string }> {
    const d = join(h.dataRoot, 'swarm/certs');
    const r = await run(
      'nsenter',
      [
        ...h.enter(),
        'etcdctl',
        `--endpoints=https://${this.addr(0)}:2379`,
        `--cacert=${d}/ca.crt`,
        `--cert=${d}/node.crt`,
        `--key=${d}/node.key`,
        '--command-timeout=5s',
        ...args,
      ],
      { timeoutMs: 20_000 },
    );
    return { code: r.code, out: `${r.stdout}${r.stderr}`.trim() };
  }

  /** The hostname of host i (0-based). */
  static hostname(i: number): string {
    return `node${i + 1}`;
  }

  static async create(name: string, n: number): Promise<MultiHostLab> {
    const ul = labName(`${name}ul`);
    const lab = new MultiHostLab(name, ul, []);
    try {
      await must('ip', ['netns', 'add', ul]);
      await must('ip', ['-n', ul, '-batch', '-'], 'link set lo up\nlink add ul0 type bridge\nlink set ul0 up\n');
      for (let i = 0; i < n; i++) {
        const h = await Lab.create(`${name}${i + 1}`, { hostname: MultiHostLab.hostname(i) });
        lab.hosts.push(h);
        await must('ip', [
          'link',
          'add',
          `h${i + 1}`,
          'netns',
          ul,
          'type',
          'veth',
          'peer',
          'name',
          'eth1',
          'netns',
          h.netns,
        ]);
        await must('ip', ['-n', ul, 'link', 'set', `h${i + 1}`, 'master', 'ul0', 'up']);
        await must('ip', ['-n', h.netns, '-batch', '-'], `addr add ${lab.addr(i)}/24 dev eth1\nlink set eth1 up\n`);
      }
    } catch (e) {
      await lab.destroy();
      throw e;
    }
    return lab;
  }

  /**
   * A started swarm on these hosts, made with the real docker CLI: every host's
   * daemon up with the demo images loaded, host 1 runs `swarm init`, the others
   * join with the `role` token.
   */
  async startSwarm(opts: {
    images: string[];
    role: 'worker' | 'manager';
    daemon?: DaemonOptions;
    daemonEnv?: (i: number) => NodeJS.ProcessEnv | undefined;
  }): Promise<void> {
    for (const [i, h] of this.hosts.entries()) {
      const env = opts.daemonEnv?.(i);
      await h.startDaemon(env ? { ...opts.daemon, env: { ...opts.daemon?.env, ...env } } : opts.daemon);
      for (const img of opts.images) await h.coveOk(['load', '-q', '-i', join(REPO, 'build/images', `${img}.tar`)]);
    }
    const docker = async (h: Lab, args: string[]): Promise<string> => {
      const r = await run(DOCKER, args, { env: h.env, timeoutMs: 90_000 });
      if (r.code !== 0) throw new Error(`docker ${args.join(' ')} on ${h.name}: ${r.stderr}${r.stdout}`);
      return r.stdout.trim();
    };
    const [first, ...others] = this.hosts as [Lab, ...Lab[]];
    await docker(first, ['swarm', 'init', '--advertise-addr', this.addr(0)]);
    const token = await docker(first, ['swarm', 'join-token', '-q', opts.role]);
    for (const h of others) await docker(h, ['swarm', 'join', '--token', token, `${this.addr(0)}:2377`]);
  }

  /**
   * Gives the underlay bridge an address (192.0.2.250 and the like), for a
   * service every host reaches over eth1 (a registry run in underlayNetns).
   */
  async addUnderlayAddress(ip: string): Promise<void> {
    await must('ip', ['-n', this.underlayNetns, 'addr', 'add', `${ip}/24`, 'dev', 'ul0']);
  }

  /** A command on the underlay (tcpdump there sees every VXLAN packet between hosts). */
  underlay(script: string, timeoutMs = 30_000): Promise<RunResult> {
    return run('nsenter', [`--net=/run/netns/${this.underlayNetns}`, 'sh', '-c', script], { timeoutMs });
  }

  async destroy(): Promise<void> {
    for (const h of this.hosts) await h.destroy().catch(() => undefined);
    await run('ip', ['netns', 'del', this.underlayNetns]);
  }
}

async function must(cmd: string, args: string[], input?: string): Promise<void> {
  const r = await run(cmd, args, input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr || r.stdout}`);
}
