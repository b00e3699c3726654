/**
 * Workload 14 (issue #14): the ingress routing mesh on three simulated hosts
 * (test/lab/multihost.ts, a manager and two workers), Cove only: Docker's
 * mesh needs IPVS, which this kernel lacks, and Podman has no swarm.
 * Measured from the outside world (a client namespace on the underlay,
 * 192.0.2.100), with the cove CLI driving:
 *   - req/s through the mesh entering at a node with no task (host 3's
 *     published port; the one task runs on host 1) against straight to that
 *     task (a mode=host port on host 1, DNAT to the container alone), and the
 *     mesh entering at the task's own node; the bench's HTTP client, 16
 *     connections, no keep-alive, alternating which goes first;
 *   - `service create --publish` until every node answers on the port;
 *   - the per-node cost of a rule update (`service update --publish-add` of
 *     one port) with 1 and with 100 published ports: the kernel update time
 *     each node's mesh logs ('ingress mesh programmed': hostMs, sandboxMs),
 *     and the time until every node answers on the new port.
 * Everything runs in lab namespaces and is removed afterwards.
 */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { Lab } from '../test/lab/lab.js';
import { MultiHostLab } from '../test/lab/multihost.js';
import type { MetricDef } from './results.js';
import { run, sleep } from './exec.js';
import type { Ctx, Workload } from './workloads.js';

const CLIENTS = fileURLToPath(new URL('./clients/', import.meta.url));
const ID = 14;
const CLIENT = '192.0.2.100';

const M: Record<string, MetricDef> = {
  rpsMesh: {
    key: 'rps-mesh-notask',
    label: 'req/s through the mesh at a node with no task (1 task, 16 conns, no keep-alive)',
    unit: 'req/s',
    better: 'higher',
  },
  rpsDirect: {
    key: 'rps-direct',
    label: 'req/s straight to the task (mode=host port on its node)',
    unit: 'req/s',
    better: 'higher',
  },
  rpsShare: {
    key: 'rps-mesh-share',
    label: 'mesh (node with no task) req/s as % of straight to the task',
    unit: '%',
    better: 'higher',
  },
  rpsLocal: {
    key: 'rps-mesh-local',
    label: "req/s through the mesh at the task's own node",
    unit: 'req/s',
    better: 'higher',
  },
  createAll: {
    key: 'create-every-node',
    label: 'service create --publish (1 replica): every node answers on the port',
    unit: 'ms',
  },
  rule1Host: {
    key: 'rule-host-1',
    label: 'publish-add, 1 port published: host table update per node (median)',
    unit: 'ms',
  },
  rule1Sbox: {
    key: 'rule-sbox-1',
    label: 'publish-add, 1 port published: ingress sandbox table update per node (median)',
    unit: 'ms',
  },
  rule100Host: {
    key: 'rule-host-100',
    label: 'publish-add, 100 ports published: host table update per node (median)',
    unit: 'ms',
  },
  rule100Sbox: {
    key: 'rule-sbox-100',
    label: 'publish-add, 100 ports published: ingress sandbox table update per node (median)',
    unit: 'ms',
  },
  add1All: {
    key: 'publish-add-1',
    label: 'publish-add with 1 port published: every node answers on the new port',
    unit: 'ms',
  },
  add100All: {
    key: 'publish-add-100',
    label: 'publish-add with 100 ports published: every node answers on the new port',
    unit: 'ms',
  },
};

async function until(what: string, f: () => Promise<boolean>, ms: number, gapMs = 100): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await f().catch(() => false)) return;
    await sleep(gapMs);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** The 'ingress mesh programmed' records a daemon logged (ports, hostMs, sandboxMs), in order. */
function programmed(h: Lab): Array<{ ports: number; hostMs: number; sandboxMs: number }> {
  const out: Array<{ ports: number; hostMs: number; sandboxMs: number }> = [];
  for (const line of h.daemonLog().split('\n')) {
    if (!line.includes('"msg":"ingress mesh programmed"')) continue;
    try {
      const r = JSON.parse(line) as { ports: number; hostMs: number; sandboxMs: number };
      out.push({ ports: r.ports, hostMs: r.hostMs, sandboxMs: r.sandboxMs });
    } catch {
      /* not JSON */
    }
  }
  return out;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)] ?? NaN;
};

export const meshWorkload: Workload = {
  id: ID,
  title:
    'ingress routing mesh on 3 simulated hosts: req/s at a node with no task vs straight to the task, create until every node answers, rule updates at 1 and 100 ports (cove only)',
  perEngine: true,
  async run(t, ctx) {
    if (ctx.engine.name !== 'cove') {
      ctx.rec.note(
        ID,
        `${t.name}: not measured (Cove only: Docker's routing mesh needs IPVS, absent here; Podman has no swarm)`,
      );
      return;
    }
    await runMesh(ctx);
  },
};

async function runMesh(ctx: Ctx): Promise<void> {
  const target = 'cove-cli';
  // The mesh's 'ingress mesh programmed' lines (its rule-update times) are info: the bench's default is warn.
  const level = process.env.COVE_TEST_LOG_LEVEL;
  process.env.COVE_TEST_LOG_LEVEL = 'info';
  const lab = await MultiHostLab.create('cvbms', 3);
  try {
    await lab.startSwarm({ images: ['alpine', 'nginx'], role: 'worker' });
    const [m] = lab.hosts as [Lab, ...Lab[]];
    const cove = (args: string[]): Promise<string> => m.coveOk(args, { timeoutMs: 180_000 });
    const nodeId = async (h: Lab): Promise<string> => h.coveOk(['info', '-f', '{{.Swarm.NodeID}}']);
    const ids = await Promise.all(lab.hosts.map(nodeId));
    const added = await lab.underlay(`ip addr add ${CLIENT}/24 dev ul0`);
    if (added.code !== 0) throw new Error(added.stderr);
    /** One GET from the outside world; true when it answered 200. */
    const answers = async (addr: string, port: number): Promise<boolean> =>
      (await lab.underlay(`curl -s -o /dev/null -w '%{http_code}' -m 2 http://${addr}:${port}/`, 10_000)).stdout ===
      '200';
    const everyNode = (port: number, ms = 120_000): Promise<void[]> =>
      Promise.all(
        lab.hosts.map((_, i) => until(`port ${port} at ${lab.addr(i)}`, () => answers(lab.addr(i), port), ms, 50)),
      );
    const R = ctx.quick ? 1 : 3;

    // One task on host 1, published through the mesh (80) and straight (mode=host, 81 on host 1).
    await cove([
      'service',
      'create',
      '-d',
      '--name',
      'web',
      '--replicas',
      '1',
      '--constraint',
      `node.id==${ids[0]}`,
      '--publish',
      'published=80,target=80',
      'nginx',
    ]);
    await cove([
      'service',
      'create',
      '-d',
      '--name',
      'direct',
      '--replicas',
      '1',
      '--constraint',
      `node.id==${ids[0]}`,
      '--publish',
      'mode=host,published=81,target=80',
      'nginx',
    ]);
    await everyNode(80);
    await until('the host-mode port on host 1', () => answers(lab.addr(0), 81), 120_000);
    const client = async (url: string): Promise<number> => {
      const r = await run(
        'nsenter',
        [
          `--net=/run/netns/${lab.underlayNetns}`,
          process.execPath,
          join(CLIENTS, 'http-client.js'),
          'rps',
          url,
          '16',
          ctx.quick ? '2' : '3',
        ],
        { timeoutMs: 120_000 },
      );
      if (r.code !== 0) throw new Error(`http client ${url}: ${r.stderr.trim()}`);
      const res = JSON.parse(r.stdout) as { value: number; errors: number };
      if (res.errors) ctx.rec.note(ID, `${res.errors} failed requests to ${url}`);
      return res.value;
    };
    for (let i = 0; i < (ctx.quick ? 2 : 5); i++) {
      // Alternate which goes first, so drift in the machine's load favours neither.
      const order = i % 2 ? ['direct', 'mesh'] : ['mesh', 'direct'];
      const got: Record<string, number> = {};
      for (const k of order)
        got[k] = await client(k === 'mesh' ? `http://${lab.addr(2)}:80/` : `http://${lab.addr(0)}:81/`);
      ctx.rec.add(ID, M.rpsMesh!, target, got.mesh!);
      ctx.rec.add(ID, M.rpsDirect!, target, got.direct!);
      ctx.rec.add(ID, M.rpsShare!, target, (100 * got.mesh!) / got.direct!);
      ctx.rec.add(ID, M.rpsLocal!, target, await client(`http://${lab.addr(0)}:80/`));
    }
    await cove(['service', 'rm', 'direct']);

    // service create --publish until every node answers.
    for (let i = 0; i < R; i++) {
      const port = 8100 + i;
      const t0 = Date.now();
      await cove(['service', 'create', '-d', '--name', `c${i}`, '--replicas', '1', '--publish', `${port}:80`, 'nginx']);
      await everyNode(port);
      ctx.rec.add(ID, M.createAll!, target, Date.now() - t0);
      await cove(['service', 'rm', `c${i}`]);
    }

    // A rule update with 1 and with 100 published ports: `--publish-add P:80` to a service that already publishes
    // (8999 -> 9999, so it is on the ingress network and the update restarts no task), `--publish-rm 80` after
    // (docker's CLI removes by target port). First web's 80 alone, then with a range of 99 more (1 task each).
    await cove(['service', 'rm', 'web']);
    await cove(['service', 'create', '-d', '--name', 'add', '--replicas', '1', '--publish', '8999:9999', 'nginx']);
    await until(
      "add's task running",
      async () => (await cove(['service', 'ls', '--filter', 'name=add', '--format', '{{.Replicas}}'])) === '1/1',
      120_000,
      200,
    );
    await sleep(3000);
    ctx.rec.note(
      ID,
      `ports programmed per node before the 1-port updates: ${lab.hosts.map((h) => programmed(h).at(-1)?.ports ?? '-').join(', ')}`,
    );
    const publishAdd = async (port: number, hostM: MetricDef, sboxM: MetricDef, allM: MetricDef): Promise<void> => {
      const before = lab.hosts.map((h) => programmed(h).length);
      const t0 = Date.now();
      await cove(['service', 'update', '-d', '--publish-add', `${port}:80`, 'add']);
      await everyNode(port);
      ctx.rec.add(ID, allM, target, Date.now() - t0);
      // The pass that programmed the new port on each node (the first logged after the update).
      const host: number[] = [];
      const sbox: number[] = [];
      for (const [i, h] of lab.hosts.entries()) {
        const recs = programmed(h).slice(before[i]);
        const r = recs[0];
        if (!r) throw new Error(`${h.name} logged no mesh update for port ${port}`);
        host.push(r.hostMs);
        sbox.push(r.sandboxMs);
      }
      ctx.rec.add(ID, hostM, target, median(host));
      ctx.rec.add(ID, sboxM, target, median(sbox));
      await cove(['service', 'update', '-d', '--publish-rm', '80', 'add']);
      await until(
        `port ${port} gone everywhere`,
        async () => !(await Promise.all(lab.hosts.map((_, i) => answers(lab.addr(i), port)))).some(Boolean),
        60_000,
      );
      await sleep(500);
    };
    for (let i = 0; i < R; i++) await publishAdd(9000 + i, M.rule1Host!, M.rule1Sbox!, M.add1All!);
    await cove([
      'service',
      'create',
      '-d',
      '--name',
      'many',
      '--replicas',
      '1',
      '--publish',
      '20000-20098:20000-20098',
      'nginx',
    ]);
    // Every node holds all 100 ports before measuring.
    await until(
      '100 ports programmed on every node',
      async () => lab.hosts.every((h) => (programmed(h).at(-1)?.ports ?? 0) >= 100),
      180_000,
      200,
    );
    await sleep(3000);
    ctx.rec.note(
      ID,
      `ports programmed per node before the 100-port updates: ${lab.hosts.map((h) => programmed(h).at(-1)?.ports ?? '-').join(', ')}`,
    );
    for (let i = 0; i < R; i++) await publishAdd(9100 + i, M.rule100Host!, M.rule100Sbox!, M.add100All!);
  } finally {
    await lab.destroy();
    if (level === undefined) delete process.env.COVE_TEST_LOG_LEVEL;
    else process.env.COVE_TEST_LOG_LEVEL = level;
  }
}
