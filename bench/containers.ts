/**
 * Container everyday operations (issue #17), on one lab daemon, through the
 * real docker CLI (and the cove CLI where it says so), each beside a floor
 * that does the same work without the engine:
 *  - `stats --no-stream` of 50 running containers (docker's CLI asks each
 *    container's stats without one-shot, so the daemon samples twice a second
 *    apart: about 1 s is the design's floor) and the API's one-shot samples;
 *    floor: reading the same cgroup and /proc files directly.
 *  - `cp` of a 100 MB tree (100 dirs x 10 files x 100 KiB) into a container and
 *    back out; floor: `tar -c | tar -x` of the same tree between two host dirs.
 *  - log write throughput of a chatty container (`yes` 64-byte lines, 1M lines
 *    = 64 MB) with the default json-file driver vs `--log-driver none` (the
 *    container's own cost), then `logs` read back (line count checked, across
 *    the rotated files).
 *
 * With `--engine docker` the same runs go to Docker 20.10 (Debian's docker.io, bench/targets/docker.ts: dockerd
 * in lab netns cvb-dk, state under /tmp/cvb-docker) instead of a Cove lab; the cove CLI and floor rows are Cove's only.
 *
 *   npm run build && COVE_LAB_PREFIX=x npm run bench:containers [-- --quick] [--containers 50] [--runs 3] [--parts stats,cp,logs] [--engine docker]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../test/lab/lab.js';
import type { Lab } from '../test/lab/lab.js';
import { api, clientLab, teardown, DOCKER_BIN } from '../test/e2e/clients-helpers.js';
import { summarize } from './stats.js';
import { DockerEngine } from './targets/docker.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const QUICK = process.argv.includes('--quick');
const N = arg('containers', QUICK ? 10 : 50);
const RUNS = arg('runs', QUICK ? 1 : 3);
const LOG_LINES = arg('lines', QUICK ? 200_000 : 1_000_000);
const PARTS = (() => {
  const i = process.argv.indexOf('--parts');
  return new Set(i > 0 ? String(process.argv[i + 1]).split(',') : ['stats', 'cp', 'logs']);
})();
const ENGINE = (() => {
  const i = process.argv.indexOf('--engine');
  return i > 0 ? String(process.argv[i + 1]) : 'cove';
})();
const median = (xs: number[]): number => summarize(xs)?.median ?? NaN;

/** The engine the docker CLI talks to: Cove in a lab, or Docker 20.10 in a lab netns of its own. */
interface Subject {
  env: NodeJS.ProcessEnv;
  socket: string;
  dir: string;
  /** Cove's lab: the cove CLI and the cgroup floor (Cove's cgroup paths). */
  cove?: Lab;
}

/** clients-helpers' api() only needs the socket. */
const asLab = (s: Subject): Lab => ({ socket: s.socket }) as unknown as Lab;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

function sh(
  lab: Subject,
  script: string,
  timeoutMs = 600_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return run('bash', ['-c', script], { env: { ...lab.env }, timeoutMs });
}

async function ok(lab: Subject, args: string[], timeoutMs = 300_000): Promise<string> {
  const r = await run(DOCKER_BIN, args, { env: { ...lab.env }, timeoutMs });
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

/** The floor of one stats sample: the files the daemon reads, read directly. */
function readCgroupFloor(id: string, pid: number): number {
  let n = 0;
  for (const f of [
    'cpuacct/cove/ID/cpuacct.usage',
    'cpuacct/cove/ID/cpuacct.usage_percpu',
    'memory/cove/ID/memory.usage_in_bytes',
    'memory/cove/ID/memory.limit_in_bytes',
    'memory/cove/ID/memory.stat',
    'pids/cove/ID/pids.current',
    'blkio/cove/ID/blkio.throttle.io_service_bytes_recursive',
  ]) {
    try {
      n += readFileSync(`/sys/fs/cgroup/${f.replace('ID', id)}`, 'utf8').length;
    } catch {
      // a controller file this kernel lacks
    }
  }
  n += readFileSync(`/proc/${pid}/net/dev`, 'utf8').length;
  n += readFileSync('/proc/stat', 'utf8').length;
  return n;
}

async function statsBench(lab: Subject, out: string[]): Promise<void> {
  const names = Array.from({ length: N }, (_, i) => `st${i}`);
  for (const n of names) await ok(lab, ['run', '-d', '--name', n, '--network', 'none', 'alpine', 'sleep', '1d']);
  const ids: Array<{ id: string; pid: number }> = [];
  for (const n of names) {
    const j = (await api(asLab(lab), 'GET', `/containers/${n}/json`)).json();
    ids.push({ id: j.Id, pid: j.State.Pid });
  }
  const dockerMs: number[] = [];
  const coveMs: number[] = [];
  const oneShotMs: number[] = [];
  const floorMs: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    let rows = 0;
    dockerMs.push(
      await timed(async () => {
        rows = (await ok(lab, ['stats', '--no-stream'])).split('\n').length - 1;
      }),
    );
    if (rows !== N) throw new Error(`docker stats listed ${rows} containers, not ${N}`);
    if (lab.cove) {
      const cove = lab.cove;
      coveMs.push(await timed(() => cove.coveOk(['stats', '--no-stream'])));
    }
    oneShotMs.push(
      await timed(async () => {
        for (const { id } of ids) await api(asLab(lab), 'GET', `/containers/${id}/stats?stream=0&one-shot=1`);
      }),
    );
    if (lab.cove)
      floorMs.push(
        await timed(async () => {
          for (const { id, pid } of ids) readCgroupFloor(id, pid);
        }),
      );
  }
  out.push(
    `### stats --no-stream, ${N} running containers (median of ${RUNS})`,
    '',
    '| what | ms | per container |',
    '|---|---|---|',
    `| docker stats --no-stream (docker CLI 28.2 → ${ENGINE}) | ${median(dockerMs).toFixed(0)} | ${(median(dockerMs) / N).toFixed(1)} |`,
    ...(lab.cove
      ? [`| cove stats --no-stream | ${median(coveMs).toFixed(0)} | ${(median(coveMs) / N).toFixed(1)} |`]
      : []),
    `| API stats?stream=0&one-shot=1, one after another | ${median(oneShotMs).toFixed(0)} | ${(median(oneShotMs) / N).toFixed(1)} |`,
    ...(lab.cove
      ? [
          `| floor: the same cgroup and /proc files read directly | ${median(floorMs).toFixed(1)} | ${(median(floorMs) / N).toFixed(2)} |`,
        ]
      : []),
    '',
  );
  for (const n of names) await api(asLab(lab), 'DELETE', `/containers/${n}?force=1`, undefined, {}, 60_000);
}

async function cpBench(lab: Subject, out: string[]): Promise<void> {
  const work = join(lab.dir, 'cp-bench');
  const tree = join(work, 'tree');
  const chunk = Buffer.alloc(100 * 1024, 'x');
  const dirs = QUICK ? 20 : 100;
  for (let d = 0; d < dirs; d++) {
    mkdirSync(join(tree, `d${d}`), { recursive: true });
    for (let f = 0; f < 10; f++) writeFileSync(join(tree, `d${d}`, `f${f}`), chunk);
  }
  const mb = (dirs * 10 * chunk.length) / 1e6;
  await ok(lab, ['run', '-d', '--name', 'cpb', '--network', 'none', 'alpine', 'sleep', '1d']);
  const inMs: number[] = [];
  const outMs: number[] = [];
  const floorMs: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    await ok(lab, ['exec', 'cpb', 'rm', '-rf', '/tmp/tree']);
    inMs.push(await timed(() => ok(lab, ['cp', tree, 'cpb:/tmp/tree'])));
    rmSync(join(work, 'back'), { recursive: true, force: true });
    outMs.push(await timed(() => ok(lab, ['cp', 'cpb:/tmp/tree', join(work, 'back')])));
    const n = readdirSync(join(work, 'back')).length;
    if (n !== dirs) throw new Error(`cp out brought ${n} dirs back, not ${dirs}`);
    rmSync(join(work, 'floor'), { recursive: true, force: true });
    mkdirSync(join(work, 'floor'));
    floorMs.push(await timed(() => sh(lab, `tar -C ${work} -cf - tree | tar -C ${join(work, 'floor')} -xf -`)));
  }
  const rate = (ms: number): string => (mb / (ms / 1000)).toFixed(0);
  out.push(
    `### cp of a ${mb.toFixed(0)} MB tree (${dirs * 10} files of 100 KiB in ${dirs} dirs; median of ${RUNS})`,
    '',
    '| what | ms | MB/s |',
    '|---|---|---|',
    `| docker cp tree → container | ${median(inMs).toFixed(0)} | ${rate(median(inMs))} |`,
    `| docker cp container → host | ${median(outMs).toFixed(0)} | ${rate(median(outMs))} |`,
    `| floor: tar -c \\| tar -x between two host dirs | ${median(floorMs).toFixed(0)} | ${rate(median(floorMs))} |`,
    '',
  );
  await api(asLab(lab), 'DELETE', '/containers/cpb?force=1', undefined, {}, 60_000);
  rmSync(work, { recursive: true, force: true });
}

/** Runs `docker logs NAME` and counts the lines it prints, without buffering them. */
function countLogLines(lab: Subject, name: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(DOCKER_BIN, ['logs', name], { env: { ...lab.env }, stdio: ['ignore', 'pipe', 'ignore'] });
    let lines = 0;
    child.stdout.on('data', (b: Buffer) => {
      for (let i = 0; i < b.length; i++) if (b[i] === 10) lines++;
    });
    child.on('error', reject);
    child.on('close', () => resolve(lines));
  });
}

async function logBench(lab: Subject, out: string[]): Promise<void> {
  // 63 characters and a newline: 64 bytes a line.
  const line = 'x'.repeat(63);
  const mb = (LOG_LINES * 64) / 1e6;
  const rows: Array<{ driver: string; writeMs: number[]; readMs: number[]; lines: number[] }> = [];
  for (const driver of ['json-file', 'none']) {
    const row = { driver, writeMs: [] as number[], readMs: [] as number[], lines: [] as number[] };
    for (let r = 0; r < RUNS; r++) {
      const name = `chatty-${driver}-${r}`;
      await ok(lab, [
        'create',
        '--name',
        name,
        '--network',
        'none',
        '--log-driver',
        driver,
        // Docker's json-file keeps everything by default, Cove's caps at 5 x 20 MiB: room for every line on both.
        ...(driver === 'json-file' ? ['--log-opt', 'max-size=100m', '--log-opt', 'max-file=3'] : []),
        'alpine',
        'sh',
        '-c',
        `yes ${line} | head -n ${LOG_LINES}`,
      ]);
      row.writeMs.push(
        await timed(async () => {
          await ok(lab, ['start', name]);
          await ok(lab, ['wait', name], 600_000);
        }),
      );
      if (driver !== 'none') {
        let n = 0;
        row.readMs.push(
          await timed(async () => {
            n = await countLogLines(lab, name);
          }),
        );
        row.lines.push(n);
      }
      await api(asLab(lab), 'DELETE', `/containers/${name}?force=1`, undefined, {}, 60_000);
    }
    rows.push(row);
  }
  out.push(
    `### log throughput of a chatty container (${LOG_LINES} lines of 64 bytes = ${mb.toFixed(0)} MB; start → exit; median of ${RUNS})`,
    '',
    '| log driver | write: s | MB/s | logs read back: s | lines read back |',
    '|---|---|---|---|---|',
  );
  for (const r of rows) {
    const w = median(r.writeMs);
    out.push(
      `| ${r.driver} | ${(w / 1000).toFixed(2)} | ${(mb / (w / 1000)).toFixed(1)} | ${r.readMs.length ? (median(r.readMs) / 1000).toFixed(2) : '—'} | ${r.lines.length ? r.lines.join(', ') : '—'} |`,
    );
  }
  out.push('');
}

async function main(): Promise<void> {
  let lab: Subject;
  let cleanup: () => Promise<void>;
  if (ENGINE === 'docker') {
    const docker = new DockerEngine();
    await docker.setup();
    lab = {
      env: { ...process.env, DOCKER_HOST: `unix://${docker.socket}`, DOCKER_API_VERSION: '1.41' },
      socket: docker.socket,
      dir: mkdtempSync(join(tmpdir(), 'cvb-containers-')),
    };
    const dir = lab.dir;
    cleanup = async () => {
      await docker.teardown();
      rmSync(dir, { recursive: true, force: true });
    };
  } else {
    const cove = await clientLab('cbc');
    lab = { env: cove.env, socket: cove.socket, dir: cove.dir, cove };
    cleanup = () => teardown(cove);
  }
  const out: string[] = [
    `Engine: ${ENGINE}. Measured ${new Date().toISOString()}, load average before: ${loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}`,
    '',
  ];
  const stop = (): void => void cleanup().finally(() => process.exit(130));
  process.once('SIGINT', stop);
  try {
    if (PARTS.has('stats')) await statsBench(lab, out);
    if (PARTS.has('cp')) await cpBench(lab, out);
    if (PARTS.has('logs')) await logBench(lab, out);
    out.push(
      `Load average after: ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}`,
    );
  } finally {
    await cleanup();
  }
  process.stdout.write(out.join('\n') + '\n');
}

main().catch((e) => {
  process.stderr.write(`bench:containers failed: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
