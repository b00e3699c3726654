/**
 * Workload 9: swarm services on three simulated hosts (test/lab/multihost.ts,
 * a manager and two workers), Cove only: Docker's service VIPs need IPVS,
 * which this kernel lacks, and Podman has no swarm. Measured with the cove CLI
 * (one process per command, polling `service ls` every 100 ms):
 *   - time to converge `service create --replicas 5` (all 5 running);
 *   - scale 1 → 20 and 20 → 1;
 *   - req/s through the VIP against straight to one task (a task on another
 *     host, as most of the VIP's backends are), from a client container's
 *     network namespace with the bench's HTTP client, 16 connections: short
 *     runs in pairs, the order alternating, the share taken per pair (the
 *     machine's load drifts less within a pair); and the client's CPU time per
 *     request (kernel work in its context included: the connection set-up,
 *     the DNAT, the overlay's encapsulation), which the load does not change;
 *   - a worker's daemon killed: time until every replica runs again.
 * The cost of one more service beside 50 is workload 13 (services-scale.ts).
 * Everything runs in lab namespaces and is removed afterwards.
 */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import type { Lab } from '../test/lab/lab.js';
import { MultiHostLab } from '../test/lab/multihost.js';
import type { MetricDef } from './results.js';
import { run, sleep } from './exec.js';
import type { Ctx, Workload } from './workloads.js';

const CLIENTS = fileURLToPath(new URL('./clients/', import.meta.url));
const ID = 9;

const M: Record<string, MetricDef> = {
  converge5: { key: 'converge-5', label: 'service create --replicas 5: all 5 running', unit: 'ms' },
  up20: { key: 'scale-1-20', label: 'service scale 1 → 20: all 20 running', unit: 'ms' },
  down1: { key: 'scale-20-1', label: 'service scale 20 → 1: 1 left', unit: 'ms' },
  rpsVip: {
    key: 'rps-vip',
    label: 'req/s through the VIP (3 tasks, 16 conns, no keep-alive)',
    unit: 'req/s',
    better: 'higher',
  },
  rpsTask: { key: 'rps-task', label: 'req/s straight to one task on another host', unit: 'req/s', better: 'higher' },
  rpsShare: {
    key: 'rps-share',
    label: 'VIP req/s as % of straight to one task (per pair)',
    unit: '%',
    better: 'higher',
  },
  cpuVip: { key: 'cpu-vip', label: 'client CPU per request through the VIP', unit: 'ms' },
  cpuTask: { key: 'cpu-task', label: 'client CPU per request straight to one task', unit: 'ms' },
  cpuShare: {
    key: 'cpu-share',
    label: 'client CPU per request, straight as % of VIP (per pair)',
    unit: '%',
    better: 'higher',
  },
  nodeKill: { key: 'node-killed', label: 'a worker killed: all replicas running again (from the kill)', unit: 'ms' },
};

async function until(what: string, f: () => Promise<boolean>, ms: number): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await f().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

export const servicesWorkload: Workload = {
  id: ID,
  title: 'swarm services on 3 simulated hosts: converge, scale, VIP vs one task, node killed (cove only)',
  perEngine: true,
  async run(t, ctx) {
    if (ctx.engine.name !== 'cove') {
      ctx.rec.note(
        ID,
        `${t.name}: not measured (Cove only: Docker's VIPs need IPVS, absent here; Podman has no swarm)`,
      );
      return;
    }
    await runServices(ctx);
  },
};

async function runServices(ctx: Ctx): Promise<void> {
  const target = 'cove-cli';
  const lab = await MultiHostLab.create('cvbsv', 3);
  try {
    await lab.startSwarm({ images: ['alpine', 'nginx'], role: 'worker' });
    const [m] = lab.hosts as [Lab, ...Lab[]];
    const cove = (args: string[]): Promise<string> => m.coveOk(args, { timeoutMs: 180_000 });
    const replicas = async (s: string): Promise<string> =>
      cove(['service', 'ls', '--filter', `name=${s}`, '--format', '{{.Name}} {{.Replicas}}']).then(
        (o) =>
          o
            .split('\n')
            .find((l) => l.startsWith(`${s} `))
            ?.split(' ')[1] ?? '',
      );
    const converged = (s: string, n: number, ms = 180_000): Promise<void> =>
      until(`${s} ${n}/${n}`, async () => (await replicas(s)) === `${n}/${n}`, ms);
    // --no-resolve-image: the digest lookup asks Docker Hub, which the lab cannot reach (a resolver timeout of
    // ~10 s, remembered for 30 s: it decided the first rounds' times, not the scheduling; as workload 13).
    const createNginx = (name: string, n: number) =>
      cove([
        'service',
        'create',
        '-d',
        '--no-resolve-image',
        '--name',
        name,
        '--replicas',
        String(n),
        '--network',
        'bnet',
        'nginx',
      ]);
    const R = ctx.quick ? 1 : 3;
    await cove(['network', 'create', '-d', 'overlay', '--attachable', 'bnet']);

    for (let i = 0; i < R; i++) {
      let t0 = Date.now();
      await createNginx(`c${i}`, 5);
      await converged(`c${i}`, 5);
      ctx.rec.add(ID, M.converge5!, target, Date.now() - t0);
      await cove(['service', 'scale', '-d', `c${i}=1`]);
      await converged(`c${i}`, 1);
      t0 = Date.now();
      await cove(['service', 'scale', '-d', `c${i}=20`]);
      await converged(`c${i}`, 20, 300_000);
      ctx.rec.add(ID, M.up20!, target, Date.now() - t0);
      t0 = Date.now();
      await cove(['service', 'scale', '-d', `c${i}=1`]);
      await converged(`c${i}`, 1);
      ctx.rec.add(ID, M.down1!, target, Date.now() - t0);
      await cove(['service', 'rm', `c${i}`]);
    }

    // VIP against one task: three tasks, a client container on the manager.
    await createNginx('web', 3);
    await converged('web', 3);
    await cove(['run', '-d', '--name', 'bclient', '--network', 'bnet', 'alpine', 'sleep', '1000000']);
    const sandbox = await cove(['inspect', '-f', '{{.NetworkSettings.SandboxKey}}', 'bclient']);
    const [svc] = JSON.parse(await cove(['service', 'inspect', 'web'])) as Array<{
      Endpoint: { VirtualIPs: Array<{ Addr: string }> };
    }>;
    const vip = svc!.Endpoint.VirtualIPs[0]!.Addr.split('/')[0]!;
    let remote: string | undefined;
    for (const h of lab.hosts.slice(1)) {
      const id = (await h.coveOk(['ps', '-q', '--filter', 'label=com.docker.swarm.service.name=web'])).split('\n')[0];
      if (id) remote = await h.coveOk(['inspect', '-f', '{{(index .NetworkSettings.Networks "bnet").IPAddress}}', id]);
      if (remote) break;
    }
    if (!remote) throw new Error('no task of web on a worker');
    const client = async (url: string): Promise<{ rps: number; cpuMs: number }> => {
      const r = await run(
        'nsenter',
        [
          `--net=${sandbox}`,
          process.execPath,
          join(CLIENTS, 'http-client.js'),
          'rps',
          url,
          '16',
          ctx.quick ? '1' : '2',
        ],
        { timeoutMs: 120_000 },
      );
      if (r.code !== 0) throw new Error(`http client ${url}: ${r.stderr.trim()}`);
      const res = JSON.parse(r.stdout) as { value: number; errors: number; requests: number; cpuMs: number };
      if (res.errors) ctx.rec.note(ID, `${res.errors} failed requests to ${url}`);
      return { rps: res.value, cpuMs: res.cpuMs / Math.max(1, res.requests) };
    };
    ctx.rec.note(
      ID,
      `VIP vs one task: load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} before`,
    );
    for (let i = 0; i < (ctx.quick ? 4 : 12); i++) {
      // Alternate which goes first, so drift in the machine's load favours neither.
      let direct: { rps: number; cpuMs: number };
      let viaVip: { rps: number; cpuMs: number };
      if (i % 2) {
        direct = await client(`http://${remote}/`);
        viaVip = await client(`http://${vip}/`);
      } else {
        viaVip = await client(`http://${vip}/`);
        direct = await client(`http://${remote}/`);
      }
      ctx.rec.add(ID, M.rpsVip!, target, viaVip.rps);
      ctx.rec.add(ID, M.rpsTask!, target, direct.rps);
      ctx.rec.add(ID, M.rpsShare!, target, (100 * viaVip.rps) / direct.rps);
      ctx.rec.add(ID, M.cpuVip!, target, viaVip.cpuMs);
      ctx.rec.add(ID, M.cpuTask!, target, direct.cpuMs);
      ctx.rec.add(ID, M.cpuShare!, target, (100 * direct.cpuMs) / viaVip.cpuMs);
    }
    ctx.rec.note(
      ID,
      `VIP vs one task: load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} after`,
    );
    await cove(['rm', '-f', 'bclient']);

    // A worker's daemon killed: its tasks come back on the others.
    await cove(['service', 'scale', '-d', 'web=6']);
    await converged('web', 6);
    const victim = lab.hosts[2]!;
    const t0 = Date.now();
    await victim.stopDaemon('SIGKILL');
    await until(
      'web running on the survivors',
      async () => {
        const rows = (
          await cove([
            'service',
            'ps',
            'web',
            '--filter',
            'desired-state=running',
            '--format',
            '{{.Node}} {{.CurrentState}}',
          ])
        )
          .split('\n')
          .filter(Boolean);
        const ids = await Promise.all(
          lab.hosts
            .slice(0, 2)
            .map((h) => h.coveOk(['ps', '-q', '--filter', 'label=com.docker.swarm.service.name=web'])),
        );
        return (
          rows.filter((r) => / Running /.test(r)).length >= 6 && ids.join('\n').split('\n').filter(Boolean).length >= 6
        );
      },
      120_000,
    );
    ctx.rec.add(ID, M.nodeKill!, target, Date.now() - t0);
    await cove(['service', 'rm', 'web']);
  } finally {
    await lab.destroy();
  }
}
