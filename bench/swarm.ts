/**
 * `npm run bench -- --swarm [2,10,20]`: swarm mode as the lab grows (issue #11's benchmark).
 *
 * For each size N: `cove lab up --hosts N` (prefix COVE_LAB_PREFIX), `swarm init` on h1 (a manager
 * and its etcd member), managers h2, h3 when N >= 5 (3 managers, as a real swarm), the rest join as
 * workers, one at a time. Measured through the Engine API on each host's socket (no CLI start in
 * the numbers): init, every join (and the phases the daemons log for it: key+CSR, admission on the
 * manager = reads + claim/sign/record (+ member add), and a worker's background part: etcd client loaded,
 * store ready, lease, attach), the join plus a `network ls` sent right after it answered, `GET /nodes`
 * latency on h1, RSS of every coved and etcd member, and the time until a worker killed with
 * kill -9 shows Down. The lab is removed afterwards, also on errors and Ctrl-C.
 */
import { request } from 'node:http';
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HostLab, type LabHost } from '../src/lab/hosts.js';

interface LevelResult {
  hosts: number;
  managers: number;
  labUpMs: number;
  initMs: number;
  joinMs: { manager: number[]; worker: number[] };
  /** From the join's start until a `network ls` sent right after it answered (a worker's background part included). */
  joinThenNetworkLsMs: { manager: number[]; worker: number[] };
  /** Median of each phase over the worker joins (joiner's and manager's logs). */
  workerJoinPhasesMs: Record<string, number>;
  nodeLsMs: number[];
  rssMB: { coved: number[]; etcd: number[] };
  /** Proportional set size: shared pages (node's and etcd's executables) split among the hosts. */
  pssMB: { coved: number[]; etcd: number[] };
  downAfterKillMs?: number;
}

export function api(
  socket: string,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 60_000,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        socketPath: socket,
        method,
        path: `/v1.51${path}`,
        timeout: timeoutMs,
        headers: data ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } : {},
      },
      (res) => {
        let s = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (s += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: s }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.on('error', reject);
    req.end(data);
  });
}

export async function ok(socket: string, method: string, path: string, body?: unknown): Promise<string> {
  const r = await api(socket, method, path, body);
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.body}`);
  return r.body;
}

export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = process.hrtime.bigint();
  const value = await fn();
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, value };
}

export const median = (xs: number[]): number => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
};
export const r1 = (x: number) => Math.round(x * 10) / 10;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The phasesMs the daemon logged with its last message `msg` (see src/swarm/controller.ts). */
function loggedPhases(lab: HostLab, h: LabHost, msg: string): Array<Record<string, number>> {
  const out: Array<Record<string, number>> = [];
  for (const line of lab.daemonLog(h).split('\n')) {
    if (!line.includes(`"msg":"${msg}"`)) continue;
    try {
      const rec = JSON.parse(line) as { phasesMs?: Record<string, number> };
      if (rec.phasesMs) out.push(rec.phasesMs);
    } catch {
      /* not JSON */
    }
  }
  return out;
}

async function level(n: number, log: (s: string) => void): Promise<LevelResult> {
  const t0 = Date.now();
  const lab = await HostLab.up({ hosts: n, name: 'bsw' });
  const stop = () => void lab.down().finally(() => process.exit(130));
  process.once('SIGINT', stop);
  try {
    const labUpMs = Date.now() - t0;
    const hosts = lab.state.hosts;
    const [h1] = hosts as [LabHost];
    const managers = n >= 5 ? 3 : 1;
    const init = await timed(() =>
      ok(h1.socket, 'POST', '/swarm/init', { ListenAddr: '0.0.0.0:2377', AdvertiseAddr: h1.addr }),
    );
    const sw = JSON.parse(await ok(h1.socket, 'GET', '/swarm')) as { JoinTokens: { Worker: string; Manager: string } };
    const res: LevelResult = {
      hosts: n,
      managers,
      labUpMs,
      initMs: r1(init.ms),
      joinMs: { manager: [], worker: [] },
      joinThenNetworkLsMs: { manager: [], worker: [] },
      workerJoinPhasesMs: {},
      nodeLsMs: [],
      rssMB: { coved: [], etcd: [] },
      pssMB: { coved: [], etcd: [] },
    };
    for (let i = 1; i < n; i++) {
      const h = hosts[i]!;
      const role = i < managers ? 'manager' : 'worker';
      const j = await timed(() =>
        ok(h.socket, 'POST', '/swarm/join', {
          ListenAddr: '0.0.0.0:2377',
          AdvertiseAddr: h.addr,
          RemoteAddrs: [`${h1.addr}:2377`],
          JoinToken: role === 'manager' ? sw.JoinTokens.Manager : sw.JoinTokens.Worker,
        }),
      );
      res.joinMs[role].push(r1(j.ms));
      // The next request after the join: it waits for what a worker's join finishes in the background.
      const nl = await timed(() => ok(h.socket, 'GET', '/networks'));
      res.joinThenNetworkLsMs[role].push(r1(j.ms + nl.ms));
      log(`  ${h.name} joined as ${role} in ${r1(j.ms)} ms; network ls right after it answered ${r1(nl.ms)} ms later`);
    }
    // Where a worker join's time goes: the joiner's phases and the admitting manager's.
    // A worker logs its join ('joined swarm': up to the answer) and the rest done in the background ('swarm ready').
    const joinerPhases = hosts.slice(managers).flatMap((h) => {
      const ready = loggedPhases(lab, h, 'swarm ready');
      return loggedPhases(lab, h, 'joined swarm').map((p, i) => ({ ...p, ...ready[i] }));
    });
    const admitPhases = loggedPhases(lab, h1, 'node joined').slice(managers - 1);
    const names = new Set([...joinerPhases, ...admitPhases].flatMap((p) => Object.keys(p)));
    for (const k of names) {
      const src = k in (admitPhases[0] ?? {}) ? admitPhases : joinerPhases;
      res.workerJoinPhasesMs[k] = median(src.map((p) => p[k] ?? 0));
    }
    await sleep(1000);
    for (let i = 0; i < 20; i++) res.nodeLsMs.push(r1((await timed(() => ok(h1.socket, 'GET', '/nodes'))).ms));
    for (const h of hosts) {
      const r = lab.rssOf(h);
      res.rssMB.coved.push(r1(r.coved / 1024));
      if (r.etcd) res.rssMB.etcd.push(r1(r.etcd / 1024));
      res.pssMB.coved.push(r1(r.covedPss / 1024));
      if (r.etcd) res.pssMB.etcd.push(r1(r.etcdPss / 1024));
    }
    if (n > managers) {
      const victim = hosts[n - 1]!;
      const vid = (JSON.parse(readFileSync(join(victim.dataRoot, 'swarm/state.json'), 'utf8')) as { nodeId: string })
        .nodeId;
      await lab.stopDaemon(victim, 'SIGKILL');
      const k0 = Date.now();
      for (;;) {
        const nodes = JSON.parse(await ok(h1.socket, 'GET', '/nodes')) as Array<{
          ID: string;
          Status: { State: string };
        }>;
        if (nodes.find((x) => x.ID === vid)?.Status.State === 'down') break;
        if (Date.now() - k0 > 30_000) throw new Error('killed worker not Down within 30 s');
        await sleep(50);
      }
      res.downAfterKillMs = Date.now() - k0;
    }
    return res;
  } finally {
    process.removeListener('SIGINT', stop);
    await lab.down();
  }
}

function table(rs: LevelResult[]): string {
  const lines = [
    '| hosts (managers) | lab up | swarm init | manager join (median) | worker join (median, max) | worker join + network ls (median, max) | node ls (median) | coved RSS (median, max) | etcd RSS per member | coved PSS (median) | etcd PSS per member | kill -9 -> Down |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rs) {
    lines.push(
      `| ${r.hosts} (${r.managers}) | ${(r.labUpMs / 1000).toFixed(1)} s | ${r.initMs} ms | ${r.joinMs.manager.length ? `${median(r.joinMs.manager)} ms` : '-'} | ` +
        `${r.joinMs.worker.length ? `${median(r.joinMs.worker)} ms, ${Math.max(...r.joinMs.worker)} ms` : '-'} | ` +
        `${r.joinThenNetworkLsMs.worker.length ? `${median(r.joinThenNetworkLsMs.worker)} ms, ${Math.max(...r.joinThenNetworkLsMs.worker)} ms` : '-'} | ${median(r.nodeLsMs)} ms | ` +
        `${median(r.rssMB.coved)} MB, ${Math.max(...r.rssMB.coved)} MB | ${r.rssMB.etcd.join(', ')} MB | ${median(r.pssMB.coved)} MB | ${r.pssMB.etcd.join(', ')} MB | ${r.downAfterKillMs ?? '-'} ms |`,
    );
  }
  lines.push(
    '',
    'Worker join phases (median ms): ' +
      rs
        .map(
          (r) =>
            `${r.hosts} hosts: ${Object.entries(r.workerJoinPhasesMs)
              .map(([k, v]) => `${k} ${v}`)
              .join(', ')}`,
        )
        .join('; '),
  );
  return lines.join('\n') + '\n';
}

export async function swarmBench(levels: number[], outDir: string): Promise<number> {
  const results: LevelResult[] = [];
  for (const n of levels) {
    process.stdout.write(`swarm bench: ${n} hosts\n`);
    results.push(await level(n, (s) => process.stdout.write(s + '\n')));
  }
  const md = table(results);
  process.stdout.write('\n' + md);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'swarm.json'), JSON.stringify(results, null, 2) + '\n');
  writeFileSync(join(outDir, 'swarm.md'), md);
  process.stdout.write(`\nwritten: ${join(outDir, 'swarm.json')}, swarm.md\n`);
  return 0;
}
