/**
 * Workload 13: the cost of one more swarm service beside many (issue #13's
 * "the cost of one more service on a network with 50 services (flat)"), Cove
 * only (Docker's service VIPs need IPVS, absent here; Podman has no swarm).
 *
 * One simulated host (a 1-node swarm: every task and every sandbox on it, the
 * worst case for the per-host work), the cove CLI, two attachable overlays:
 * net0 with no service and net50 with 50 (alpine, 1 task each, all running,
 * so 50 VIPs with backends in the table of every sandbox on net50). Measured:
 *   - each background `service create` (the CLI's round trip) and create →
 *     its task Running, the first ten against the last ten (flat?);
 *   - one more service (an nginx stand-in, 1 task): from `service create`
 *     until its name answers an HTTP fetch through its VIP from a client
 *     container already on the network (`wget http://NAME/`, as a user checks),
 *     on net0 and on net50, the two interleaved sample by sample.
 * Creates pass --no-resolve-image: the digest lookup asks Docker Hub, which
 * the lab cannot reach (see REPORT.md; not a cost of the services layer).
 * Everything runs in lab namespaces and is removed afterwards.
 */
import { loadavg } from 'node:os';
import type { Lab } from '../test/lab/lab.js';
import { MultiHostLab } from '../test/lab/multihost.js';
import type { MetricDef } from './results.js';
import { sleep } from './exec.js';
import type { Ctx, Workload } from './workloads.js';

const ID = 13;
const BACKGROUND = 50;

const M: Record<string, MetricDef> = {
  bgFirst: {
    key: 'bg-create-first',
    label: 'service create (CLI round trip), services 1-10 on the network',
    unit: 'ms',
  },
  bgLast: { key: 'bg-create-last', label: 'service create (CLI round trip), services 41-50', unit: 'ms' },
  bgRunFirst: { key: 'bg-running-first', label: 'service create → its task Running, services 1-10', unit: 'ms' },
  bgRunLast: { key: 'bg-running-last', label: 'service create → its task Running, services 41-50', unit: 'ms' },
  one0: {
    key: 'one-more-0',
    label: 'one more service: create → its name answers through the VIP, network with no other service',
    unit: 'ms',
  },
  one50: {
    key: 'one-more-50',
    label: 'one more service: create → its name answers, network with 50 services (each with a running task)',
    unit: 'ms',
  },
  oneDiff: { key: 'one-more-diff', label: 'one more service: with 50 minus with none (per pair)', unit: 'ms' },
};

async function until(what: string, f: () => Promise<boolean>, ms: number, gapMs = 100): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await f().catch(() => false)) return Date.now() - t0;
    await sleep(gapMs);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

const load = (): string =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');

export const servicesScaleWorkload: Workload = {
  id: ID,
  title: 'one more swarm service beside 50 on a 1-node swarm: create → answering by name (cove only)',
  perEngine: true,
  async run(t, ctx) {
    if (ctx.engine.name !== 'cove') {
      ctx.rec.note(
        ID,
        `${t.name}: not measured (Cove only: Docker's VIPs need IPVS, absent here; Podman has no swarm)`,
      );
      return;
    }
    await runScale(ctx);
  },
};

async function runScale(ctx: Ctx): Promise<void> {
  const target = 'cove-cli';
  const lab = await MultiHostLab.create('cvbsc', 1);
  try {
    await lab.startSwarm({ images: ['alpine', 'nginx'], role: 'worker' });
    const [m] = lab.hosts as [Lab];
    const cove = (args: string[]): Promise<string> => m.coveOk(args, { timeoutMs: 180_000 });
    const running = async (s: string): Promise<boolean> =>
      (await cove(['service', 'ps', s, '--filter', 'desired-state=running', '--format', '{{.CurrentState}}']))
        .split('\n')
        .some((l) => l.startsWith('Running'));
    for (const net of ['net0', 'net50']) {
      await cove(['network', 'create', '-d', 'overlay', '--attachable', net]);
      await cove(['run', '-d', '--name', `cl-${net}`, '--network', net, 'alpine', 'sleep', '1000000']);
    }
    ctx.rec.note(ID, `${BACKGROUND} background services: load average ${load()} before`);
    for (let i = 0; i < BACKGROUND; i++) {
      const t0 = Date.now();
      await cove([
        'service',
        'create',
        '-d',
        '--no-resolve-image',
        '--name',
        `bg${i}`,
        '--network',
        'net50',
        'alpine',
        'sleep',
        '1000000',
      ]);
      const created = Date.now() - t0;
      await until(`bg${i} running`, () => running(`bg${i}`), 120_000);
      const run = Date.now() - t0;
      if (i < 10) {
        ctx.rec.add(ID, M.bgFirst!, target, created);
        ctx.rec.add(ID, M.bgRunFirst!, target, run);
      } else if (i >= BACKGROUND - 10) {
        ctx.rec.add(ID, M.bgLast!, target, created);
        ctx.rec.add(ID, M.bgRunLast!, target, run);
      }
    }
    ctx.rec.note(ID, `${BACKGROUND} background services: load average ${load()} after`);

    const oneMore = async (name: string, net: string): Promise<number> => {
      const t0 = Date.now();
      await cove(['service', 'create', '-d', '--no-resolve-image', '--name', name, '--network', net, 'nginx']);
      // As a user checks it, from a container already on the network. (Not wget -T: Debian's busybox 1.35 wget
      // segfaults with it, exit 139, whatever the server does.)
      await until(
        `${name} answers by name`,
        async () =>
          (
            await m.cove(['exec', `cl-${net}`, 'timeout', '5', 'wget', '-q', '-O', '/dev/null', `http://${name}/`], {
              timeoutMs: 30_000,
            })
          ).code === 0,
        120_000,
      );
      const ms = Date.now() - t0;
      await cove(['service', 'rm', name]);
      return ms;
    };
    ctx.rec.note(ID, `one more service: load average ${load()} before`);
    for (let i = 0; i < (ctx.quick ? 2 : 8); i++) {
      // Alternate which goes first, so a drift in the machine's load favours neither.
      const [a, b] = i % 2 ? (['net50', 'net0'] as const) : (['net0', 'net50'] as const);
      const first = await oneMore(`o${a}x${i}`, a);
      const second = await oneMore(`o${b}x${i}`, b);
      const [with0, with50] = a === 'net0' ? [first, second] : [second, first];
      ctx.rec.add(ID, M.one0!, target, with0);
      ctx.rec.add(ID, M.one50!, target, with50);
      ctx.rec.add(ID, M.oneDiff!, target, with50 - with0);
    }
    ctx.rec.note(ID, `one more service: load average ${load()} after`);
  } finally {
    await lab.destroy();
  }
}
