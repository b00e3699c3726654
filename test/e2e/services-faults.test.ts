/**
 * Faults of swarm services on a 3-host lab (one manager, two workers), driven
 * with the real docker CLI and checked from inside containers:
 *   - a task that stops leaves the VIP's balancing within a second, measured
 *     by a client container that fetches through the VIP in a loop (its own
 *     clock, /proc/uptime, against the moment of the kill);
 *   - a task that exits is replaced, or not, per --restart-condition
 *     (none / on-failure / any), with Docker's task states and errors;
 *   - a node cut off the network (its underlay link down: daemon and tasks
 *     alive but unreachable): its tasks come back on the others within 10 s
 *     of it going Down, the VIP keeps answering with the survivors, and when
 *     the link returns the node drops its stale tasks;
 *   - an image no node has: every task is rejected with Docker's error.
 * (A daemon killed by PID is in services-swarm.test.ts, the orchestrator's
 * leader killed in services-leader.test.ts.)
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { type Lab } from '../lab/lab.js';
import { MultiHostLab } from '../lab/multihost.js';
import { dockerOk, runningTasks, until } from '../lab/swarm-docker.js';

let lab: MultiHostLab;
let H: Lab[];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** The kernel's boot clock, which containers read too (/proc/uptime is not namespaced). */
const uptime = (): number => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);

async function tasksOn(h: Lab, service: string): Promise<Map<string, string>> {
  const out = await dockerOk(h, [
    'ps',
    '--filter',
    `label=com.docker.swarm.service.name=${service}`,
    '--format',
    '{{.Names}} {{.ID}}',
  ]);
  return new Map(
    out
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' ') as [string, string]),
  );
}
async function replicasOf(service: string): Promise<string> {
  return dockerOk(H[0]!, ['service', 'ls', '--filter', `name=${service}`, '--format', '{{.Replicas}}']);
}
async function psRows(service: string): Promise<string[]> {
  return (
    await dockerOk(H[0]!, [
      'service',
      'ps',
      '--no-trunc',
      service,
      '--format',
      '{{.Name}}|{{.DesiredState}}|{{.CurrentState}}|{{.Error}}',
    ])
  )
    .split('\n')
    .filter(Boolean);
}
async function vipOf(service: string): Promise<string> {
  const [s] = JSON.parse(await dockerOk(H[0]!, ['service', 'inspect', service])) as Array<{
    Endpoint: { VirtualIPs: Array<{ Addr: string }> };
  }>;
  return s!.Endpoint.VirtualIPs[0]!.Addr.split('/')[0]!;
}

before(async () => {
  lab = await MultiHostLab.create('svf', 3);
  H = lab.hosts;
  await lab.startSwarm({ images: ['alpine', 'nginx'], role: 'worker' });
  await dockerOk(H[0]!, ['network', 'create', '-d', 'overlay', '--attachable', 'fnet']);
  await dockerOk(H[0]!, ['service', 'create', '-d', '--name', 'web', '--replicas', '3', '--network', 'fnet', 'nginx']);
  await until('web 3/3', async () => (await replicasOf('web')) === '3/3', 60_000);
});

after(async () => {
  await lab?.destroy();
});

/** A probe container on host 1: one fetch through the VIP after another, each line "<uptime at start> <task or FAIL>". */
async function startProbe(vip: string): Promise<void> {
  await dockerOk(H[0]!, [
    'run',
    '-d',
    '--name',
    'probe',
    '--network',
    'fnet',
    'alpine',
    'sh',
    '-c',
    `while :; do s=$(cut -d' ' -f1 /proc/uptime); r=$(timeout 1 wget -q -O - http://${vip}/who.txt 2>/dev/null || echo FAIL); echo "$s $r"; done`,
  ]);
}
async function probeLines(since: number): Promise<Array<{ t: number; who: string }>> {
  const out = await dockerOk(H[0]!, ['logs', 'probe']);
  return out
    .split('\n')
    .map((l) => l.trim().split(' '))
    .filter((p) => p.length === 2 && Number(p[0]) >= since)
    .map(([t, who]) => ({ t: Number(t), who: who! }));
}

test('a task that stops leaves the VIP within a second, seen from inside a client container', async () => {
  for (const h of H)
    for (const id of (await tasksOn(h, 'web')).values())
      await dockerOk(h, ['exec', id, 'sh', '-c', 'hostname > /www/who.txt']);
  const vip = await vipOf('web');
  await startProbe(vip);
  await until(
    'the probe sees all three tasks',
    async () => new Set((await probeLines(0)).map((l) => l.who).filter((w) => w !== 'FAIL')).size === 3,
    20_000,
  );
  // The victim: a task on a worker, so the client reaches it over VXLAN.
  const victimHost = (await tasksOn(H[1]!, 'web')).size ? H[1]! : H[2]!;
  const [victimId] = [...(await tasksOn(victimHost, 'web')).values()];
  const victim = (await dockerOk(victimHost, ['exec', victimId!, 'hostname'])).trim();
  const t0 = uptime();
  await dockerOk(victimHost, ['kill', victimId!]);
  await sleep(4000);
  const after = await probeLines(t0);
  const fails = after.filter((l) => (l.who !== 'FAIL' ? false : true));
  const lastBad = [...after].reverse().find((l) => l.who === 'FAIL' || l.who === victim);
  const out = lastBad ? lastBad.t - t0 : 0;
  console.log(
    `# task killed: ${after.length} fetches through the VIP in 4 s, ${fails.length} failed; the last one that went to the dead task started ${(out * 1000).toFixed(0)} ms after the kill`,
  );
  assert.ok(
    out < 1.0,
    `the dead task was out of the VIP's map within a second (last failure ${(out * 1000).toFixed(0)} ms after the kill)`,
  );
  const late = after.filter((l) => l.t >= t0 + 1);
  assert.ok(
    late.length >= 10 && late.every((l) => l.who !== 'FAIL'),
    `every fetch a second after the kill answered: ${late.map((l) => l.who).join(' ')}`,
  );
  assert.ok(late.every((l) => l.who !== victim));
  await dockerOk(H[0]!, ['rm', '-f', 'probe']);
  await until('web 3/3 again', async () => (await replicasOf('web')) === '3/3', 30_000);
});

test('--restart-condition: none leaves a failed task, on-failure replaces failures only, any replaces every exit', async () => {
  const mk = (name: string, cond: string, cmd: string): Promise<string> =>
    dockerOk(H[0]!, [
      'service',
      'create',
      '-d',
      '--name',
      name,
      '--restart-condition',
      cond,
      '--restart-delay',
      '1s',
      'alpine',
      'sh',
      '-c',
      cmd,
    ]);
  await mk('rc-none', 'none', 'sleep 1; exit 3');
  await mk('rc-onfail', 'on-failure', 'sleep 1; exit 3');
  await mk('rc-onfail-ok', 'on-failure', 'sleep 1; exit 0');
  await mk('rc-any', 'any', 'sleep 1; exit 0');
  // Long enough for several restarts (1 s of work + 1 s delay each).
  await until(
    'on-failure and any restarted at least twice',
    async () => (await psRows('rc-onfail')).length >= 3 && (await psRows('rc-any')).length >= 3,
    60_000,
    500,
  );
  await sleep(3000);

  const none = await psRows('rc-none');
  assert.equal(none.length, 1, `none: never replaced\n${none.join('\n')}`);
  assert.match(none[0]!, /^rc-none\.1\|Shutdown\|Failed .*\|"task: non-zero exit \(3\)"$/);
  assert.equal(await replicasOf('rc-none'), '0/1');

  const onfail = await psRows('rc-onfail');
  assert.ok(
    onfail.filter((r) => /\|Failed .*\|"task: non-zero exit \(3\)"$/.test(r)).length >= 2,
    `on-failure: failures replaced\n${onfail.join('\n')}`,
  );
  assert.ok(
    onfail.every((r) => /^(rc-onfail\.1| \\_ rc-onfail\.1)\|/.test(r)),
    onfail.join('\n'),
  );

  const ok = await psRows('rc-onfail-ok');
  assert.equal(ok.length, 1, `on-failure: a clean exit is not replaced\n${ok.join('\n')}`);
  assert.match(ok[0]!, /^rc-onfail-ok\.1\|Shutdown\|Complete .*\|$/);

  const any = await psRows('rc-any');
  assert.ok(any.filter((r) => /\|Complete /.test(r)).length >= 2, `any: clean exits replaced too\n${any.join('\n')}`);
  for (const s of ['rc-none', 'rc-onfail', 'rc-onfail-ok', 'rc-any']) await dockerOk(H[0]!, ['service', 'rm', s]);
});

test("an image no node has: every task is rejected with Docker's error, and service ls says 0/1", async () => {
  await dockerOk(H[0]!, ['service', 'create', '-d', '--name', 'noimg', 'cove-no-such-image:1']);
  await until('a rejected task', async () => (await psRows('noimg')).some((r) => /\|Rejected /.test(r)), 30_000);
  const rows = await psRows('noimg');
  assert.match(
    rows.find((r) => /\|Rejected /.test(r))!,
    /\|"No such image: cove-no-such-image:1"$/,
  );
  assert.equal(await replicasOf('noimg'), '0/1');
  await dockerOk(H[0]!, ['service', 'rm', 'noimg']);
});

test('a node cut off the network: its tasks come back on the others within 10 s of it going Down, the VIP answers with the survivors', async () => {
  await dockerOk(H[0]!, ['service', 'scale', '-d', 'web=4']);
  await until('web 4/4', async () => (await replicasOf('web')) === '4/4', 30_000);
  const victim = (await tasksOn(H[2]!, 'web')).size ? H[2]! : H[1]!;
  assert.ok((await tasksOn(victim, 'web')).size > 0, 'the victim runs a task of web');
  const cut = await victim.sh('ip link set eth1 down');
  assert.equal(cut.code, 0, cut.stderr);
  try {
    const t0 = Date.now();
    await until(
      'the node is Down',
      async () => /Down/.test(await dockerOk(H[0]!, ['node', 'ls', '--format', '{{.Status}}'])),
      30_000,
      100,
    );
    const down = Date.now() - t0;
    const back = await until(
      '4 running on the survivors',
      async () => {
        const n = (await Promise.all(H.filter((h) => h !== victim).map((h) => tasksOn(h, 'web')))).reduce(
          (a, m) => a + m.size,
          0,
        );
        if (n < 4) return false;
        return (await runningTasks(H[0]!, 'web')) === 4;
      },
      20_000,
      200,
    );
    console.log(`# node cut off: Down after ${down} ms, 4 replicas running on the survivors ${back} ms later`);
    assert.ok(back < 10_000, `rescheduled within 10 s of Down (${back} ms)`);
    // From a container on the manager: every fetch through the VIP answers.
    const r = await dockerOk(H[0]!, [
      'run',
      '--rm',
      '--network',
      'fnet',
      'alpine',
      'sh',
      '-c',
      `ok=0; for i in $(seq 1 20); do timeout 2 wget -q -O /dev/null http://${await vipOf('web')}/ && ok=$((ok+1)); done; echo $ok`,
    ]);
    assert.equal(r, '20', 'every request through the VIP answered by a survivor');
  } finally {
    await victim.sh('ip link set eth1 up');
  }
  await until(
    'the node is Ready again',
    async () => !/Down/.test(await dockerOk(H[0]!, ['node', 'ls', '--format', '{{.Status}}'])),
    60_000,
  );
  await until('the returning node runs no stale task', async () => (await tasksOn(victim, 'web')).size === 0, 30_000);
  assert.equal(await replicasOf('web'), '4/4');
});
