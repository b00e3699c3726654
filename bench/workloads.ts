/**
 * The eight workloads of issue #5, written once against the Target interface.
 * Each one records every sample in the Recorder and removes what it made,
 * also when it fails half-way.
 */
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { ContainerRef, Engine, Target } from './targets/target.js';
import type { MetricDef, Recorder } from './results.js';
import { run, sleep } from './exec.js';
import { timeMs } from './stats.js';
import { servicesWorkload } from './services.js';
import { servicesScaleWorkload } from './services-scale.js';
import { imagesWorkload } from './images.js';
import { meshWorkload } from './mesh.js';

const CLIENTS = fileURLToPath(new URL('./clients/', import.meta.url));
const SLEEPER = ['sleep', '1000000'];
/** Workloads 5 and 8 put up to 500 containers on one network: more than a /24 holds. */
const BIG_SUBNET = '10.20.0.0/16';

export interface Ctx {
  quick: boolean;
  /** --n: the N values for workloads 5 and 6 (and the levels of 8), replacing the defaults. */
  ns?: number[];
  rec: Recorder;
  engine: Engine;
  log: (msg: string) => void;
  /** A fresh short name with the given prefix, unique in this run. */
  name: (prefix: string) => string;
}

export interface Workload {
  id: number;
  title: string;
  /** once per engine (memory) rather than once per target */
  perEngine?: boolean;
  run(t: Target, ctx: Ctx): Promise<void>;
}

const reps = (ctx: Ctx, quick: number, full: number) => (ctx.quick ? quick : full);

/** The floor measures the OCI runtime's own start beside its hand-made containers (bench/targets/floor.ts). */
function isRuntimeFloor(t: Target): t is Target & { runtimeRun(): Promise<number> } {
  return typeof (t as { runtimeRun?: unknown }).runtimeRun === 'function';
}

/** Runs fn over items with at most `limit` in flight (for untimed clean-up). */
async function pool<T>(items: T[], limit: number, fn: (x: T) => Promise<unknown>): Promise<void> {
  let i = 0;
  const worker = async () => {
    while (i < items.length) {
      const x = items[i++]!;
      await fn(x).catch(() => undefined);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

async function cleanup(t: Target, ctrs: ContainerRef[], nets: string[]): Promise<void> {
  await pool(ctrs.splice(0), 4, (c) => t.removeContainer(c));
  await pool(nets.splice(0), 4, (n) => t.removeNetwork(n));
}

const w1: Workload = {
  id: 1,
  title: 'network create + rm (bridge), and the round trip of one command',
  async run(t, ctx) {
    const R = reps(ctx, 5, 20);
    const defs: Record<string, MetricDef> = {
      create: { key: 'create', label: 'network create', unit: 'ms' },
      rm: { key: 'rm', label: 'network rm', unit: 'ms' },
      both: { key: 'create+rm', label: 'network create + rm', unit: 'ms' },
      rt: { key: 'roundtrip', label: 'round trip: `network ls` (floor: bare `node -e 0`)', unit: 'ms' },
    };
    const warm = ctx.name('n');
    await t.createNetwork(warm);
    await t.removeNetwork(warm);
    for (let i = 0; i < R; i++) {
      const n = ctx.name('n');
      const c = await timeMs(() => t.createNetwork(n));
      const r = await timeMs(() => t.removeNetwork(n));
      ctx.rec.add(1, defs.create!, t.name, c.ms);
      ctx.rec.add(1, defs.rm!, t.name, r.ms);
      ctx.rec.add(1, defs.both!, t.name, c.ms + r.ms);
    }
    await t.roundTrip();
    for (let i = 0; i < R; i++) ctx.rec.add(1, defs.rt!, t.name, (await timeMs(() => t.roundTrip())).ms);
  },
};

const w2: Workload = {
  id: 2,
  title: 'container run (until running) + rm, on a user-defined bridge vs on none',
  async run(t, ctx) {
    const R = reps(ctx, 5, 15);
    const nets: string[] = [];
    const ctrs: ContainerRef[] = [];
    const net = ctx.name('n');
    await t.createNetwork(net);
    nets.push(net);
    try {
      // warm-up (image and page caches, first container on the bridge)
      for (const network of [net, 'none']) {
        const c = await t.runContainer({ name: ctx.name('c'), network, image: 'alpine', cmd: SLEEPER });
        await t.removeContainer(c);
      }
      for (let i = 0; i < R; i++) {
        const got: Record<string, number> = {};
        for (const [mode, network] of [
          ['bridge', net],
          ['none', 'none'],
        ] as const) {
          const r = await timeMs(() => t.runContainer({ name: ctx.name('c'), network, image: 'alpine', cmd: SLEEPER }));
          ctrs.push(r.value);
          const d = await timeMs(() => t.removeContainer(r.value));
          ctrs.pop();
          got[mode] = r.ms;
          ctx.rec.add(
            2,
            { key: `run-${mode}`, label: `run on ${mode === 'bridge' ? 'a user-defined bridge' : 'none'}`, unit: 'ms' },
            t.name,
            r.ms,
          );
          ctx.rec.add(2, { key: `rm-${mode}`, label: `rm -f (was on ${mode})`, unit: 'ms' }, t.name, d.ms);
          ctx.rec.add(2, { key: `run+rm-${mode}`, label: `run + rm on ${mode}`, unit: 'ms' }, t.name, r.ms + d.ms);
        }
        ctx.rec.add(
          2,
          { key: 'share', label: "network's share of run (bridge − none, paired)", unit: 'ms' },
          t.name,
          got.bridge! - got.none!,
        );
        if (isRuntimeFloor(t))
          ctx.rec.add(
            2,
            { key: 'run-runtime', label: 'the OCI runtime alone: `runc run -d`, no image, no network', unit: 'ms' },
            t.name,
            await t.runtimeRun(),
          );
      }
    } finally {
      await cleanup(t, ctrs, nets);
    }
  },
};

const w3: Workload = {
  id: 3,
  title: 'connect + disconnect of a running container',
  async run(t, ctx) {
    const R = reps(ctx, 5, 20);
    const nets = [ctx.name('n'), ctx.name('n')];
    const ctrs: ContainerRef[] = [];
    const made: string[] = [];
    try {
      for (const n of nets) {
        await t.createNetwork(n);
        made.push(n);
      }
      const c = await t.runContainer({ name: ctx.name('c'), network: nets[0]!, image: 'alpine', cmd: SLEEPER });
      ctrs.push(c);
      await t.connect(nets[1]!, c);
      await t.disconnect(nets[1]!, c);
      for (let i = 0; i < R; i++) {
        const a = await timeMs(() => t.connect(nets[1]!, c));
        const b = await timeMs(() => t.disconnect(nets[1]!, c));
        ctx.rec.add(3, { key: 'connect', label: 'network connect', unit: 'ms' }, t.name, a.ms);
        ctx.rec.add(3, { key: 'disconnect', label: 'network disconnect', unit: 'ms' }, t.name, b.ms);
        ctx.rec.add(3, { key: 'connect+disconnect', label: 'connect + disconnect', unit: 'ms' }, t.name, a.ms + b.ms);
      }
    } finally {
      await cleanup(t, ctrs, made);
    }
  },
};

interface DnsClientResult {
  latenciesMs: number[];
  qps: number;
  sent: number;
  answered: number;
  bad: number;
  timeouts: number;
}

const w4: Workload = {
  id: 4,
  title: 'name lookup from inside a container (embedded DNS)',
  async run(t, ctx) {
    const R = reps(ctx, 1, 3);
    const count = ctx.quick ? 300 : 1000;
    const seconds = ctx.quick ? 2 : 3;
    const net = ctx.name('n');
    const nets: string[] = [];
    const ctrs: ContainerRef[] = [];
    try {
      await t.createNetwork(net);
      nets.push(net);
      const a = await t.runContainer({ name: ctx.name('dnsa'), network: net, image: 'alpine', cmd: SLEEPER });
      ctrs.push(a);
      const b = await t.runContainer({ name: ctx.name('dnsb'), network: net, image: 'alpine', cmd: SLEEPER });
      ctrs.push(b);
      const ep = await t.dnsEndpoint(a, b, net);
      const netns = await t.netnsPath(a);
      ctx.rec.note(
        4,
        `Queries go to the container's own resolver (first nameserver of its resolv.conf: 127.0.0.11 for Docker and Cove, the network's gateway (aardvark-dns) for Podman); podman is asked NAME.dns.podman. The floor is a Node UDP responder that copies the question and appends a fixed A record.`,
      );
      for (let i = 0; i < R; i++) {
        const r = await run(
          'nsenter',
          [
            `--net=${netns}`,
            process.execPath,
            join(CLIENTS, 'dns-client.js'),
            ep.server,
            ep.name,
            String(count),
            '50',
            String(seconds),
          ],
          { timeoutMs: 120_000 },
        );
        if (r.code !== 0) throw new Error(`dns client: ${r.stderr.trim()}`);
        const res = JSON.parse(r.stdout) as DnsClientResult;
        if (res.answered === 0)
          throw new Error(`no answers from ${ep.server} for ${ep.name} (${res.timeouts} timeouts, ${res.bad} bad)`);
        if (res.timeouts || res.bad)
          ctx.rec.note(4, `${t.name}: ${res.timeouts} timeouts and ${res.bad} bad answers out of ${res.sent}`);
        for (const ms of res.latenciesMs)
          ctx.rec.add(4, { key: 'lookup', label: 'one A lookup, 1 in flight (node client)', unit: 'ms' }, t.name, ms);
        ctx.rec.add(
          4,
          { key: 'qps-node', label: 'lookups/s, 50 in flight (node client)', unit: 'q/s', better: 'higher' },
          t.name,
          res.qps,
        );
        if ((await run('sh', ['-c', 'command -v dnsperf'])).code === 0) {
          const qfile = '/tmp/cvb-dnsperf-queries.txt';
          writeFileSync(qfile, `${ep.name} A\n`);
          const d = await run(
            'nsenter',
            [`--net=${netns}`, 'dnsperf', '-s', ep.server, '-d', qfile, '-l', String(seconds), '-c', '1', '-q', '50'],
            { timeoutMs: 60_000 },
          );
          rmSync(qfile, { force: true });
          const qps = /Queries per second:\s+([\d.]+)/.exec(d.stdout)?.[1];
          const lost = /Queries lost:\s+(\d+)/.exec(d.stdout)?.[1];
          if (qps)
            ctx.rec.add(
              4,
              { key: 'qps-dnsperf', label: 'lookups/s, 50 in flight (dnsperf)', unit: 'q/s', better: 'higher' },
              t.name,
              Number(qps),
            );
          else ctx.rec.note(4, `${t.name}: dnsperf gave no rate: ${(d.stderr || d.stdout).trim().slice(0, 200)}`);
          if (lost && Number(lost) > 0) ctx.rec.note(4, `${t.name}: dnsperf lost ${lost} queries`);
        } else
          ctx.rec.note(
            4,
            'dnsperf is not installed (apt-get install dnsperf): only the node client measured lookups/s',
          );
      }
      ctx.rec.note(4, 'With 2 cores the load generator competes with the server for CPU: lookups/s is a lower bound.');
    } finally {
      await cleanup(t, ctrs, nets);
    }
  },
};

function scaleNs(ctx: Ctx, full: number[], quick: number[]): number[] {
  return ctx.ns?.length ? ctx.ns : ctx.quick ? quick : full;
}

const w5: Workload = {
  id: 5,
  title: 'start N containers on one network (is the per-container cost flat?)',
  async run(t, ctx) {
    const net = ctx.name('n');
    const nets: string[] = [];
    const ctrs: ContainerRef[] = [];
    try {
      await t.createNetwork(net, BIG_SUBNET);
      nets.push(net);
      for (const N of scaleNs(ctx, [1, 10, 100, 500], [1, 10])) {
        const R = N <= 10 ? reps(ctx, 2, 3) : N <= 100 ? reps(ctx, 1, 2) : 1;
        for (let r = 0; r < R; r++) {
          const t0 = process.hrtime.bigint();
          for (let i = 0; i < N; i++) {
            const x = await timeMs(() =>
              t.runContainer({ name: ctx.name('s'), network: net, image: 'alpine', cmd: SLEEPER }),
            );
            ctrs.push(x.value);
            ctx.rec.add(
              5,
              { key: `each@${N}`, label: `per container, N=${N}`, unit: 'ms', series: 'per container', x: N },
              t.name,
              x.ms,
            );
            if (N >= 100 && i >= N - Math.ceil(N / 10))
              ctx.rec.add(
                5,
                { key: `lastdecile@${N}`, label: `per container, last 10% of N=${N}`, unit: 'ms' },
                t.name,
                x.ms,
              );
          }
          const total = Number(process.hrtime.bigint() - t0) / 1e6;
          ctx.rec.add(
            5,
            { key: `total@${N}`, label: `total, N=${N}`, unit: 'ms', series: 'total', x: N },
            t.name,
            total,
          );
          ctx.log(`  ${t.name}: ${N} containers in ${(total / 1000).toFixed(2)} s`);
          await pool(ctrs.splice(0), 4, (c) => t.removeContainer(c));
        }
      }
    } finally {
      await cleanup(t, ctrs, nets);
    }
  },
};

const w6: Workload = {
  id: 6,
  title: 'N networks with one container each (does cost grow with the number of networks?)',
  async run(t, ctx) {
    const nets: string[] = [];
    const ctrs: ContainerRef[] = [];
    try {
      for (const N of scaleNs(ctx, [1, 10, 100], [1, 10])) {
        const R = N <= 10 ? reps(ctx, 2, 3) : 1;
        for (let r = 0; r < R; r++) {
          const t0 = process.hrtime.bigint();
          for (let i = 0; i < N; i++) {
            const n = ctx.name('m');
            const a = await timeMs(() => t.createNetwork(n));
            nets.push(n);
            const b = await timeMs(() =>
              t.runContainer({ name: ctx.name('k'), network: n, image: 'alpine', cmd: SLEEPER }),
            );
            ctrs.push(b.value);
            ctx.rec.add(
              6,
              {
                key: `each@${N}`,
                label: `per network (create + run), N=${N}`,
                unit: 'ms',
                series: 'per network',
                x: N,
              },
              t.name,
              a.ms + b.ms,
            );
          }
          const total = Number(process.hrtime.bigint() - t0) / 1e6;
          ctx.rec.add(
            6,
            { key: `total@${N}`, label: `total, N=${N}`, unit: 'ms', series: 'total', x: N },
            t.name,
            total,
          );
          ctx.log(`  ${t.name}: ${N} networks + containers in ${(total / 1000).toFixed(2)} s`);
          await cleanup(t, ctrs, nets);
        }
      }
    } finally {
      await cleanup(t, ctrs, nets);
    }
  },
};

interface HttpResult {
  value: number;
  requests: number;
  errors: number;
}

const w7: Workload = {
  id: 7,
  title: 'published port (-p) vs the container address directly',
  async run(t, ctx) {
    const R = reps(ctx, 3, 5);
    const seconds = 2;
    const net = ctx.name('n');
    const nets: string[] = [];
    const ctrs: ContainerRef[] = [];
    const lab = ctx.engine.labNetns;
    const hostPort = 18080;
    try {
      await t.createNetwork(net);
      nets.push(net);
      const c = await t.runContainer({
        name: ctx.name('web'),
        network: net,
        image: 'nginx',
        // the big file appears whole (rename), so a GET never sees it half written
        cmd: [
          'sh',
          '-c',
          'dd if=/dev/zero of=/www/.big bs=1M count=32 2>/dev/null && mv /www/.big /www/big; exec httpd -f -p 80 -h /www',
        ],
        publish: { hostPort, containerPort: 80 },
      });
      ctrs.push(c);
      const ip = await t.address(c, net);
      const direct = `http://${ip}:80`;
      const published = `http://${ctx.engine.hostAddress}:${hostPort}`;
      let ready = false;
      for (let i = 0; i < 100 && !ready; i++) {
        const r = await run('nsenter', [
          `--net=${lab}`,
          'timeout',
          '5',
          'busybox',
          'wget',
          '-q',
          '-O',
          '/dev/null',
          `${direct}/big`,
        ]);
        ready = r.code === 0;
        if (!ready) await sleep(100);
      }
      if (!ready) throw new Error(`the web container at ${direct} did not answer`);
      const client = async (args: string[]): Promise<HttpResult> => {
        const r = await run('nsenter', [`--net=${lab}`, process.execPath, join(CLIENTS, 'http-client.js'), ...args], {
          timeoutMs: 120_000,
        });
        if (r.code !== 0) throw new Error(`http client ${args.join(' ')}: ${r.stderr.trim()}`);
        const res = JSON.parse(r.stdout) as HttpResult;
        if (res.errors) ctx.rec.note(7, `${t.name}: ${res.errors} failed requests (${args[0]} ${args[1]})`);
        return res;
      };
      for (let i = 0; i < R; i++) {
        // Alternate which path goes first, so drift in the machine's load does not favour one.
        const first = i % 2 === 0;
        const pair = async (a: string[], b: string[]) =>
          (first ? [await client(a), await client(b)] : [await client(b), await client(a)].reverse()) as [
            HttpResult,
            HttpResult,
          ];
        const [rd, rp] = await pair(
          ['rps', `${direct}/index.html`, '16', String(seconds)],
          ['rps', `${published}/index.html`, '16', String(seconds)],
        );
        const [td, tp] = await pair(
          ['throughput', `${direct}/big`, String(seconds)],
          ['throughput', `${published}/big`, String(seconds)],
        );
        ctx.rec.add(
          7,
          {
            key: 'rps-direct',
            label: 'req/s to the container address (16 conns, no keep-alive)',
            unit: 'req/s',
            better: 'higher',
          },
          t.name,
          rd.value,
        );
        ctx.rec.add(
          7,
          { key: 'rps-published', label: 'req/s through -p', unit: 'req/s', better: 'higher' },
          t.name,
          rp.value,
        );
        ctx.rec.add(
          7,
          { key: 'mbps-direct', label: 'MB/s to the container address (32 MB GETs)', unit: 'MB/s', better: 'higher' },
          t.name,
          td.value,
        );
        ctx.rec.add(
          7,
          { key: 'mbps-published', label: 'MB/s through -p', unit: 'MB/s', better: 'higher' },
          t.name,
          tp.value,
        );
        ctx.rec.add(
          7,
          { key: 'throughput-share', label: '-p throughput as % of direct', unit: '%', better: 'higher' },
          t.name,
          (100 * tp.value) / td.value,
        );
        ctx.rec.add(
          7,
          { key: 'rps-share', label: '-p req/s as % of direct', unit: '%', better: 'higher' },
          t.name,
          (100 * rp.value) / rd.value,
        );
      }
      ctx.rec.note(
        7,
        `Client: a Node HTTP client in the lab namespace (the engine's host), busybox httpd in the nginx stand-in. "-p" goes to the lab's own address ${ctx.engine.hostAddress}:${hostPort} (DNAT on the output path).`,
      );
    } finally {
      await cleanup(t, ctrs, nets);
    }
  },
};

const w8: Workload = {
  id: 8,
  title: 'memory: engine RSS idle and with N containers (daemon vs per-container monitors)',
  perEngine: true,
  async run(t, ctx) {
    const first = await ctx.engine.memory();
    if (!first) {
      ctx.rec.note(8, `${ctx.engine.name}: no engine processes (nothing resident)`);
      return;
    }
    const mb = (kb: number) => kb / 1024;
    const sample = async (n: number) => {
      await sleep(2000); // let the engine settle (GC, lazy work)
      const m = (await ctx.engine.memory())!;
      const label = n === 0 ? 'idle' : `with ${n} containers`;
      ctx.rec.add(
        8,
        { key: `engine@${n}`, label: `engine RSS ${label}`, unit: 'MB', series: 'engine RSS', x: n },
        t.name,
        mb(m.engineKb),
      );
      if (n > 0) {
        ctx.rec.add(
          8,
          { key: `monitors@${n}`, label: `monitors RSS ${label} (sum)`, unit: 'MB' },
          t.name,
          mb(m.monitorsKb),
        );
        ctx.rec.add(
          8,
          { key: `permonitor@${n}`, label: `monitor RSS per container, ${n} containers`, unit: 'MB' },
          t.name,
          mb(m.monitorsKb / Math.max(1, m.monitors)),
        );
        if (m.monitors !== n)
          ctx.rec.note(8, `${ctx.engine.name}: ${m.monitors} monitor processes found with ${n} containers`);
      }
      ctx.rec.note(
        8,
        `${ctx.engine.name} engine = ${Object.keys(m.engineParts).join(' + ')}; monitors = ${ctx.engine.name === 'docker' ? 'containerd-shim' : 'conmon'} per container`,
      );
      ctx.log(
        `  ${ctx.engine.name}: ${label}: engine ${mb(m.engineKb).toFixed(1)} MB, ${m.monitors} monitors ${mb(m.monitorsKb).toFixed(1)} MB`,
      );
    };
    const net = ctx.name('n');
    const nets: string[] = [];
    const ctrs: ContainerRef[] = [];
    try {
      await sample(0);
      await t.createNetwork(net, BIG_SUBNET);
      nets.push(net);
      for (const N of ctx.ns?.length ? [20, ...ctx.ns.filter((n) => n > 20)] : scaleNs(ctx, [20, 100, 500], [20])) {
        while (ctrs.length < N)
          ctrs.push(await t.runContainer({ name: ctx.name('mem'), network: net, image: 'alpine', cmd: SLEEPER }));
        await sample(N);
      }
    } finally {
      await cleanup(t, ctrs, nets);
    }
  },
};

export const WORKLOADS: Workload[] = [
  w1,
  w2,
  w3,
  w4,
  w5,
  w6,
  w7,
  w8,
  servicesWorkload,
  servicesScaleWorkload,
  meshWorkload,
  imagesWorkload,
];

export function clientsBuilt(): boolean {
  return existsSync(join(CLIENTS, 'dns-client.js')) && existsSync(join(CLIENTS, 'http-client.js'));
}
