/**
 * npm run bench [-- --quick] [--peers docker,podman] [--workloads 1,2,5] [--out DIR] [--no-cove] [--no-floor]
 *
 * Runs the workloads of issue #5 on the kernel floor, on Cove (API and CLI)
 * and on the peers asked for, each engine in a lab namespace of its own, one
 * engine at a time. Prints a table per workload, and writes results.json
 * (every sample), report.md and scaling.svg to bench/results/<timestamp>/.
 * Ctrl-C tears down the engine that is running and still writes what was measured.
 */
import { cpus, loadavg, release } from 'node:os';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from '../test/lab/lab.js';
import type { BenchResults } from './results.js';
import { Recorder, mergeEarlier } from './results.js';
import { WORKLOADS, clientsBuilt, type Ctx } from './workloads.js';
import type { Engine } from './targets/target.js';
import { FloorEngine } from './targets/floor.js';
import { CoveEngine } from './targets/cove.js';
import { DockerEngine } from './targets/docker.js';
import { PodmanEngine } from './targets/podman.js';
import { renderMarkdown, renderScalingSvg, renderText } from './report.js';
import { parseOptions, type Options } from './options.js';

const HELP = `Usage: npm run bench -- [options]

Runs Cove's networking benchmark against the kernel floor, Cove and (optionally) Docker and Podman.
Every engine runs in a lab network namespace of its own (prefix cvb-), and is torn down afterwards.

Options:
  --swarm [2,10,20]     swarm mode instead: init, joins, node ls, RSS, kill -> Down as the lab grows (bench/swarm.ts)
  --overlay [2,10,20]   overlay networks instead: peer visibility across hosts, run onto an overlay, throughput
                        vs bare VXLAN, per-host cost of joining as the lab grows (bench/overlay.ts)
  --quick               short run: fewer repetitions, N up to 10 (workloads 5, 6), 20 containers (8)
  --peers LIST          peers to include, comma-separated: docker, podman (installed with apt-get if missing)
  --workloads LIST      workloads to run, comma-separated numbers (default: all)
  --out DIR             where results.json, report.md and scaling.svg go (default bench/results/<timestamp>)
  --no-cove             skip Cove
  --no-floor            skip the kernel floor (ratios to it are then missing)
  --targets LIST        run only these targets (floor, cove-api, cove-cli, docker, docker-api, podman)
  --n LIST              N values for workloads 5 and 6 (and the levels of 8), e.g. --n 500
  --include FILE        merge the targets of an earlier results.json that this run does not measure
                        (e.g. peers measured once); repeatable
  --help                this text

Workloads:
${WORKLOADS.map((w) => `  ${w.id}  ${w.title}`).join('\n')}
`;

function writeOutputs(results: BenchResults, out: string): void {
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'results.json'), JSON.stringify(results, null, 1));
  const svg = renderScalingSvg(results);
  if (svg) writeFileSync(join(out, 'scaling.svg'), svg);
  writeFileSync(join(out, 'report.md'), renderMarkdown(results, svg ? 'scaling.svg' : undefined));
}

async function main(): Promise<number> {
  // --swarm [LEVELS]: swarm mode as the lab grows (bench/swarm.ts), instead of the single-host workloads.
  const sw = process.argv.indexOf('--swarm');
  if (sw >= 0) {
    const arg = process.argv[sw + 1];
    const levels = arg && /^\d+(,\d+)*$/.test(arg) ? arg.split(',').map(Number) : [2, 10, 20];
    const { swarmBench } = await import('./swarm.js');
    return swarmBench(
      levels,
      join(REPO, 'bench/results', new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, 'Z')),
    );
  }
  // --overlay [LEVELS]: overlay networks as the lab grows (bench/overlay.ts).
  const ov = process.argv.indexOf('--overlay');
  if (ov >= 0) {
    const arg = process.argv[ov + 1];
    const levels = arg && /^\d+(,\d+)*$/.test(arg) ? arg.split(',').map(Number) : [2, 10, 20];
    if (levels.some((n) => n < 2 || n > 200)) {
      process.stderr.write('bench: --overlay needs 2 to 200 hosts per level\n');
      return 2;
    }
    const { overlayBench } = await import('./overlay.js');
    return overlayBench(
      levels,
      join(REPO, 'bench/results', new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, 'Z')),
    );
  }
  let opts: Options | 'help';
  try {
    opts = parseOptions(process.argv.slice(2), (m) => process.stderr.write(m + '\n'), {
      workloads: WORKLOADS.map((w) => w.id),
      repo: REPO,
    });
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (opts === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (opts.workloads.length === 0) {
    process.stderr.write('bench: no known workload left to run\n');
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench: must run as root (it makes network namespaces)\n');
    return 2;
  }
  if (!clientsBuilt()) {
    process.stderr.write('bench: dist/bench/clients is missing: build first (npx tsc -p .)\n');
    return 2;
  }
  const results: BenchResults = {
    started: new Date().toISOString(),
    command: ['npm run bench --', ...process.argv.slice(2)].join(' '),
    quick: opts.quick,
    machine: { cpus: cpus().length, kernel: release(), node: process.version, load: loadavg() },
    engines: {},
    targets: {},
    unavailable: {},
    workloads: [],
  };
  const rec = new Recorder(results);
  for (const id of opts.workloads) rec.workload(id, WORKLOADS.find((w) => w.id === id)!.title);
  const engines: Engine[] = [];
  if (opts.floor) engines.push(new FloorEngine());
  if (opts.cove) engines.push(new CoveEngine());
  for (const p of opts.peers) engines.push(p === 'docker' ? new DockerEngine() : new PodmanEngine());
  const log = (m: string) => process.stderr.write(m + '\n');
  let counter = 0;
  const name = (prefix: string) => `cvb${prefix}${(counter++).toString(36)}`;

  let current: Engine | undefined;
  let stopping = false;
  let firstTeardown: Promise<void> = Promise.resolve();
  const finishStopped = async (): Promise<number> => {
    // The interrupted workload may have made objects while the first teardown ran: tear down again.
    await firstTeardown;
    if (current) await current.teardown().catch((e: Error) => log(`bench: teardown of ${current?.name}: ${e.message}`));
    results.finished = new Date().toISOString();
    writeOutputs(results, opts.out);
    log(`bench: partial results in ${opts.out}`);
    return 130;
  };
  const onSignal = (sig: NodeJS.Signals) => {
    if (stopping) {
      log(`bench: second ${sig}: exiting now; run again to clean up what is left`);
      process.exit(130);
    }
    stopping = true;
    log(`bench: ${sig}: tearing down ${current?.name ?? 'nothing'} and writing what was measured`);
    // Tearing down now also makes the running workload fail fast.
    firstTeardown = current
      ? current.teardown().catch((e: Error) => void log(`bench: teardown: ${e.message}`))
      : Promise.resolve();
    // If the workload does not come back, finish from here.
    setTimeout(() => void finishStopped().then((code) => process.exit(code)), 60_000).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  for (const engine of engines) {
    if (stopping) break;
    current = engine;
    log(`bench: setting up ${engine.name}`);
    try {
      await engine.setup();
      results.engines[engine.name] = await engine.describe();
    } catch (e) {
      const msg = (e as Error).message;
      results.unavailable[engine.name] =
        engine.name === 'cove' && !msg.startsWith('cove unavailable') ? `cove unavailable: ${msg}` : msg;
      log(`bench: ${engine.name} not run: ${results.unavailable[engine.name]}`);
      await engine.teardown().catch((err: Error) => log(`bench: teardown of ${engine.name}: ${err.message}`));
      continue;
    }
    try {
      const all = engine.targets();
      const unavailable = all.unavailable;
      const ready = opts.targets.length ? all.ready.filter((t) => opts.targets.includes(t.name)) : all.ready;
      if (ready.length === 0)
        log(
          `bench: ${engine.name}: none of --targets ${opts.targets.join(',')} is one of its targets (${all.ready.map((t) => t.name).join(', ')})`,
        );
      Object.assign(results.unavailable, unavailable);
      for (const t of ready) results.targets[t.name] = engine.name;
      const ctx: Ctx = { quick: opts.quick, ns: opts.ns, rec, engine, log, name };
      for (const id of opts.workloads) {
        const w = WORKLOADS.find((x) => x.id === id)!;
        // Per-engine workloads (memory) drive the engine through its API when it has one: fastest to fill.
        const once = ready.find((t) => t.name.endsWith('-api')) ?? ready[0];
        for (const t of w.perEngine ? (once ? [once] : []) : ready) {
          if (stopping) break;
          log(`bench: ${t.name}: workload ${w.id} (${w.title})`);
          const t0 = Date.now();
          try {
            await w.run(t, ctx);
          } catch (e) {
            const msg = stopping ? 'interrupted (signal)' : (e as Error).message.split('\n')[0]!.slice(0, 400);
            rec.error(w.id, t.name, msg);
            log(`bench: ${t.name}: workload ${w.id} failed: ${msg}`);
          }
          log(`bench: ${t.name}: workload ${w.id} took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
        }
      }
    } finally {
      if (!stopping) {
        log(`bench: tearing down ${engine.name}`);
        await engine.teardown().catch((e: Error) => log(`bench: teardown of ${engine.name}: ${e.message}`));
        current = undefined;
        writeOutputs(results, opts.out); // partial results survive a later failure
      }
    }
  }
  if (stopping) return finishStopped();
  for (const file of opts.include) {
    try {
      const taken = mergeEarlier(results, JSON.parse(readFileSync(file, 'utf8')) as BenchResults, file);
      log(`bench: merged ${taken.length ? taken.join(', ') : 'nothing new'} from ${file}`);
    } catch (e) {
      log(`bench: cannot include ${file}: ${(e as Error).message}`);
    }
  }
  results.finished = new Date().toISOString();
  results.machine.loadAtEnd = loadavg();
  writeOutputs(results, opts.out);
  process.stdout.write(renderText(results));
  process.stdout.write(`\nresults: ${join(opts.out, 'results.json')}\nreport:  ${join(opts.out, 'report.md')}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    process.stderr.write(`bench: ${e.stack ?? e.message}\n`);
    process.exit(1);
  },
);
