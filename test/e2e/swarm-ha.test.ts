/**
 * A swarm that survives losing a manager: 3 managers (etcd members) and 2
 * workers on `cove lab` hosts. One manager's daemon and its etcd member are
 * killed (kill -9, by PID): the other two managers keep quorum and answer
 * `node ls` (the dead one Down and Unreachable), networks and containers are
 * still created, the workers keep working across hosts. Then the daemon comes
 * back, restarts its member on the same data, catches up and is a manager
 * again.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HostLab, type LabHost } from '../../src/lab/hosts.js';
import { COVE_BIN, REPO } from '../lab/lab.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let lab: HostLab;
let h1: LabHost, h2: LabHost, h3: LabHost, h4: LabHost, h5: LabHost;

const cove = (h: LabHost, ...args: string[]) => lab.exec(h, [COVE_BIN, ...args], 90_000);

async function ok(p: Promise<{ code: number; stdout: string; stderr: string }>): Promise<string> {
  const r = await p;
  assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

async function until<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  ms = 30_000,
  every = 200,
): Promise<{ value: T; ms: number }> {
  const t0 = Date.now();
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return { value: v, ms: Date.now() - t0 };
    } catch (e) {
      last = e;
    }
    if (Date.now() - t0 > ms)
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(every);
  }
}

/** node ls on h, by hostname: status and manager status. */
async function nodeTable(h: LabHost): Promise<Map<string, { status: string; mgr: string }>> {
  const out = await ok(cove(h, 'node', 'ls', '--format', '{{.Hostname}}|{{.Status}}|{{.ManagerStatus}}'));
  return new Map(
    out
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [name, status, mgr] = l.split('|') as [string, string, string];
        return [name, { status, mgr }];
      }),
  );
}

before(async () => {
  lab = await HostLab.up({ hosts: 5, name: 'ha' });
  [h1, h2, h3, h4, h5] = lab.state.hosts as [LabHost, LabHost, LabHost, LabHost, LabHost];
  for (const h of [h4, h5]) await ok(cove(h, 'load', '-q', '-i', join(REPO, 'build/images/alpine.tar')));
  await ok(cove(h1, 'swarm', 'init', '--advertise-addr', h1.addr));
  const mgr = (await ok(cove(h1, 'swarm', 'join-token', '-q', 'manager'))).trim();
  const wrk = (await ok(cove(h1, 'swarm', 'join-token', '-q', 'worker'))).trim();
  for (const h of [h2, h3]) await ok(cove(h, 'swarm', 'join', '--token', mgr, `${h1.addr}:2377`));
  for (const h of [h4, h5]) await ok(cove(h, 'swarm', 'join', '--token', wrk, `${h1.addr}:2377`));
});

after(async () => {
  if (!process.env.COVE_LAB_KEEP) await lab?.down();
});

test('3 managers + 2 workers: every manager sees all five nodes Ready, one Leader, two Reachable', async () => {
  for (const h of [h1, h2, h3]) {
    const t = await until(`five nodes on ${h.name}`, async () => {
      const t = await nodeTable(h);
      return t.size === 5 &&
        [...t.values()].every((n) => n.status === 'Ready') &&
        [...t.values()].filter((n) => n.mgr === 'Reachable').length === 2
        ? t
        : undefined;
    });
    assert.deepEqual([...t.value.keys()].sort(), ['h1', 'h2', 'h3', 'h4', 'h5']);
    assert.deepEqual([...t.value.values()].map((n) => n.mgr).sort(), ['', '', 'Leader', 'Reachable', 'Reachable']);
  }
  const w = await cove(h4, 'node', 'ls');
  assert.equal(w.code, 1, 'a worker is not a manager');
});

test("kill -9 of a manager's daemon and its etcd member: the cluster keeps working; it comes back and rejoins", async () => {
  const etcdPid = Number(readFileSync(join(h1.dataRoot, 'swarm/etcd/etcd.pid'), 'utf8'));
  assert.ok(etcdPid > 0);
  await lab.stopDaemon(h1, 'SIGKILL');
  process.kill(etcdPid, 'SIGKILL');
  const killedAt = Date.now();

  // The other managers: h1 Down and Unreachable, a leader among themselves.
  for (const h of [h2, h3]) {
    const { ms } = await until(`h1 Down on ${h.name}`, async () => {
      const t = await nodeTable(h);
      return t.get('h1')?.status === 'Down' &&
        t.get('h1')?.mgr === 'Unreachable' &&
        [t.get('h2')?.mgr, t.get('h3')?.mgr].includes('Leader')
        ? true
        : undefined;
    });
    process.stdout.write(
      `# manager kill -9 -> Down/Unreachable on ${h.name} after ${Date.now() - killedAt} ms (poll ${ms} ms)\n`,
    );
  }
  const t = await nodeTable(h3);
  for (const n of ['h2', 'h3', 'h4', 'h5']) assert.equal(t.get(n)?.status, 'Ready', `${n} stays Ready`);

  // Cluster state is still written: an overlay network created on h2, used by both workers.
  await ok(cove(h2, 'network', 'create', '-d', 'overlay', '--attachable', 'ha-net'));
  await ok(cove(h4, 'run', '-d', '--name', 'w4', '--network', 'ha-net', 'alpine', 'sleep', '600'));
  await ok(cove(h5, 'run', '-d', '--name', 'w5', '--network', 'ha-net', 'alpine', 'sleep', '600'));
  await until(
    'w4 reaches w5 by name across hosts',
    async () => ((await cove(h4, 'exec', 'w4', 'ping', '-c', '1', '-W', '1', 'w5')).code === 0 ? true : undefined),
    20_000,
  );
  await until(
    'w5 reaches w4 by name across hosts',
    async () => ((await cove(h5, 'exec', 'w5', 'ping', '-c', '1', '-W', '1', 'w4')).code === 0 ? true : undefined),
    20_000,
  );
  assert.match(await ok(cove(h3, 'network', 'ls', '--format', '{{.Name}} {{.Scope}}')), /^ha-net swarm$/m);

  // h1 comes back: its daemon restarts the member on its old data; it catches up.
  await lab.startDaemon(h1);
  const back = await until(
    'h1 manager again',
    async () => {
      const t = await nodeTable(h1);
      return t.get('h1')?.status === 'Ready' && ['Leader', 'Reachable'].includes(t.get('h1')?.mgr ?? '')
        ? true
        : undefined;
    },
    45_000,
    300,
  );
  process.stdout.write(`# manager restart -> Ready and Reachable after ${back.ms} ms\n`);
  const newPid = Number(readFileSync(join(h1.dataRoot, 'swarm/etcd/etcd.pid'), 'utf8'));
  assert.notEqual(newPid, etcdPid, 'a new etcd member process on the old data');
  for (const h of [h2, h3]) {
    await until(`h1 Reachable on ${h.name}`, async () => {
      const t = await nodeTable(h);
      return t.get('h1')?.status === 'Ready' && ['Leader', 'Reachable'].includes(t.get('h1')?.mgr ?? '')
        ? true
        : undefined;
    });
  }
  // What was written while it was away is there on h1.
  assert.match(await ok(cove(h1, 'network', 'ls', '--format', '{{.Name}} {{.Scope}}')), /^ha-net swarm$/m);
  assert.equal(JSON.parse(await ok(cove(h1, 'info', '--format', '{{json .Swarm.Managers}}'))), 3);
  // And it writes again: a network made on h1 is seen on h3.
  await ok(cove(h1, 'network', 'create', '-d', 'overlay', 'ha-net2'));
  await until(
    'ha-net2 on h3',
    async () => (/^ha-net2$/m.test(await ok(cove(h3, 'network', 'ls', '--format', '{{.Name}}'))) ? true : undefined),
    10_000,
  );

  // Services run on the workers, and their logs come back through the cluster store
  // (logs/req|resp/<worker id>/: what the worker's narrowed etcd role lets it write).
  await ok(
    cove(
      h2,
      'service',
      'create',
      '-d',
      '--name',
      'ha-svc',
      '--replicas',
      '2',
      '--constraint',
      'node.role==worker',
      'alpine',
      'sh',
      '-c',
      'echo ha-log-line; sleep 600',
    ),
  );
  const logs = await until(
    "both tasks' logs on h3",
    async () => {
      const r = await cove(h3, 'service', 'logs', 'ha-svc');
      return (r.stdout.match(/ha-log-line/g) ?? []).length === 2 ? r.stdout : undefined;
    },
    60_000,
    1000,
  );
  assert.match(logs.value, /@h4 .*ha-log-line/);
  assert.match(logs.value, /@h5 .*ha-log-line/);
  await ok(cove(h1, 'service', 'rm', 'ha-svc'));

  await ok(cove(h4, 'rm', '-f', 'w4'));
  await ok(cove(h5, 'rm', '-f', 'w5'));
  await ok(cove(h1, 'network', 'rm', 'ha-net', 'ha-net2'));
});
