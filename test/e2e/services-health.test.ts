/**
 * HEALTHCHECK, in the runtime and in services, on a 2-host swarm (a manager
 * and a worker), driven with the real docker CLI:
 *   - a container's probe runs as Docker runs it: State.Health (starting →
 *     healthy → unhealthy after Retries failures, the last results in Log),
 *     `health_status: ...` events, `(healthy)` in ps and the health filter,
 *     --no-healthcheck, Docker's error for a bad interval;
 *   - a service task with a HEALTHCHECK is `Starting` until healthy and takes
 *     no traffic until then: not in `tasks.S`, not behind the VIP (checked
 *     from a client container); once healthy it is in both; when it turns
 *     unhealthy it fails ("dockerexec: unhealthy container"), leaves both, and
 *     its replacement again waits to be healthy.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { type Lab } from '../lab/lab.js';
import { MultiHostLab } from '../lab/multihost.js';
import { docker, dockerOk, taskStates, until } from '../lab/swarm-docker.js';
import { api } from './clients-helpers.js';

let lab: MultiHostLab;
let H: Lab[];

const health = async (
  h: Lab,
  c: string,
): Promise<{ Status: string; FailingStreak: number; Log: Array<{ ExitCode: number; Output: string }> }> =>
  JSON.parse(await dockerOk(h, ['inspect', '-f', '{{json .State.Health}}', c]));

before(async () => {
  lab = await MultiHostLab.create('svh', 2);
  H = lab.hosts;
  await lab.startSwarm({ images: ['alpine', 'nginx'], role: 'worker' });
});

after(async () => {
  await lab?.destroy();
});

test("a container's HEALTHCHECK: starting, healthy, unhealthy after the retries; events, ps, filters; --no-healthcheck; bad input", async () => {
  const h = H[0]!;
  const since = Math.floor(Date.now() / 1000) - 1;
  await dockerOk(h, [
    'run',
    '-d',
    '--name',
    'hc',
    '--health-cmd',
    'test -f /tmp/ok && echo fine',
    '--health-interval',
    '300ms',
    '--health-retries',
    '2',
    'alpine',
    'sleep',
    '1000',
  ]);
  assert.equal((await health(h, 'hc')).Status, 'starting');
  assert.match(
    await dockerOk(h, ['ps', '--filter', 'name=hc', '--format', '{{.Status}}']),
    /^Up .* \(health: starting\)$/,
  );
  const cfg = JSON.parse(await dockerOk(h, ['inspect', '-f', '{{json .Config.Healthcheck}}', 'hc']));
  assert.deepEqual(cfg, { Test: ['CMD-SHELL', 'test -f /tmp/ok && echo fine'], Interval: 300_000_000, Retries: 2 });
  // Failures while never healthy count (no start period): unhealthy after two.
  await until('unhealthy', async () => (await health(h, 'hc')).Status === 'unhealthy', 15_000);
  const bad = await health(h, 'hc');
  assert.ok(
    bad.FailingStreak >= 2 && bad.Log.length >= 2 && bad.Log.every((l) => l.ExitCode === 1),
    JSON.stringify(bad),
  );
  await dockerOk(h, ['exec', 'hc', 'touch', '/tmp/ok']);
  await until('healthy', async () => (await health(h, 'hc')).Status === 'healthy', 15_000);
  const good = await health(h, 'hc');
  assert.equal(good.FailingStreak, 0);
  assert.equal(good.Log.at(-1)!.Output, 'fine\n');
  assert.ok(good.Log.length <= 5, 'five results kept');
  assert.match(await dockerOk(h, ['ps', '--filter', 'name=hc', '--format', '{{.Status}}']), /^Up .* \(healthy\)$/);
  assert.equal(
    await dockerOk(h, ['ps', '-q', '--filter', 'health=healthy']),
    (await dockerOk(h, ['inspect', '-f', '{{.Id}}', 'hc'])).slice(0, 12),
  );
  assert.equal(await dockerOk(h, ['ps', '-q', '--filter', 'health=unhealthy']), '');
  const ev = await dockerOk(h, [
    'events',
    '--since',
    String(since),
    '--until',
    String(Math.floor(Date.now() / 1000) + 1),
    '--filter',
    'container=hc',
    '--format',
    '{{.Action}}',
  ]);
  const statuses = ev.split('\n').filter((a) => a.startsWith('health_status'));
  assert.deepEqual(statuses, ['health_status: unhealthy', 'health_status: healthy'], ev);
  const wrong = await docker(h, ['ps', '--filter', 'health=sick']);
  assert.match(wrong.stderr, /Unrecognised filter value for health: sick/);

  await dockerOk(h, ['run', '-d', '--name', 'nohc', '--no-healthcheck', 'alpine', 'sleep', '1000']);
  assert.equal(await dockerOk(h, ['inspect', '-f', '{{json .State.Health}}', 'nohc']), 'null');
  const r = await api(h, 'POST', '/containers/create?name=badhc', {
    Image: 'alpine',
    Cmd: ['true'],
    Healthcheck: { Test: ['CMD', 'true'], Interval: 1000 },
  });
  assert.equal(r.status, 400);
  assert.match((r.json() as { message: string }).message, /^Interval in Healthcheck cannot be less than 1ms$/);
  await dockerOk(h, ['rm', '-f', 'hc', 'nohc']);
});

test('a service task takes traffic only while healthy: Starting until then, out of tasks.S and the VIP when unhealthy, then replaced', async () => {
  await dockerOk(H[0]!, ['network', 'create', '-d', 'overlay', '--attachable', 'hnet']);
  await dockerOk(H[0]!, [
    'service',
    'create',
    '-d',
    '--name',
    'hs',
    '--replicas',
    '2',
    '--network',
    'hnet',
    '--restart-delay',
    '1s',
    '--health-cmd',
    'test -f /tmp/ready',
    '--health-interval',
    '300ms',
    '--health-retries',
    '2',
    '--health-start-period',
    '1h',
    'nginx',
  ]);
  await dockerOk(H[0]!, ['run', '-d', '--name', 'client', '--network', 'hnet', 'alpine', 'sleep', '1000']);
  const states = (): Promise<string[]> => taskStates(H[0]!, 'hs');
  let seen: string[] = [];
  await until(
    'two tasks Starting',
    async () => {
      seen = await states();
      return seen.length === 2 && seen.every((x) => /^Starting /.test(x));
    },
    60_000,
  ).catch(async (e: Error) => {
    const ps = await docker(H[0]!, ['service', 'ps', '--no-trunc', 'hs']);
    const logs = H.map((h) =>
      h
        .daemonLog()
        .split('\n')
        .filter((l) => /agent|task|warn|error/i.test(l))
        .slice(-15)
        .join('\n'),
    );
    throw new Error(
      `${e.message}; last states ${JSON.stringify(seen)}\n${ps.stdout}${ps.stderr}\n${logs.join('\n--\n')}`,
    );
  });
  // Task containers run, but nothing is healthy: no name, and the VIP refuses.
  const ns = await docker(H[0]!, ['exec', 'client', 'nslookup', 'tasks.hs']);
  assert.doesNotMatch(ns.stdout, /Address(?: \d+)?: 10\./, ns.stdout);
  const vipRefused = await docker(H[0]!, ['exec', 'client', 'timeout', '3', 'wget', '-q', '-O', '-', 'http://hs/']);
  assert.notEqual(vipRefused.code, 0, 'no healthy task behind the VIP');

  // One task becomes healthy: it alone is in tasks.hs and behind the VIP.
  const all: Array<{ h: Lab; id: string; ip: string }> = [];
  for (const h of H) {
    for (const id of (await dockerOk(h, ['ps', '-q', '--filter', 'label=com.docker.swarm.service.name=hs']))
      .split('\n')
      .filter(Boolean)) {
      await dockerOk(h, ['exec', id, 'sh', '-c', 'hostname > /www/who.txt']);
      all.push({
        h,
        id,
        ip: await dockerOk(h, ['inspect', '-f', '{{(index .NetworkSettings.Networks "hnet").IPAddress}}', id]),
      });
    }
  }
  assert.equal(all.length, 2);
  const [a, b] = all as [(typeof all)[0], (typeof all)[0]];
  const tasksHs = async (): Promise<string[]> =>
    [
      ...(await docker(H[0]!, ['exec', 'client', 'nslookup', 'tasks.hs'])).stdout.matchAll(
        /Address(?: \d+)?: (10\.\d+\.\d+\.\d+)/g,
      ),
    ]
      .map((m) => m[1]!)
      .sort();
  const fetches = async (n: number): Promise<string[]> =>
    (
      await dockerOk(H[0]!, [
        'exec',
        'client',
        'sh',
        '-c',
        `for i in $(seq 1 ${n}); do timeout 3 wget -q -O - http://hs/who.txt || echo FAIL; done`,
      ])
    ).split('\n');
  const whoA = await dockerOk(a.h, ['exec', a.id, 'hostname']);
  const whoB = await dockerOk(b.h, ['exec', b.id, 'hostname']);
  await dockerOk(a.h, ['exec', a.id, 'touch', '/tmp/ready']);
  await until('A running', async () => (await states()).filter((x) => /^Running /.test(x)).length === 1, 20_000);
  await until('tasks.hs = A', async () => JSON.stringify(await tasksHs()) === JSON.stringify([a.ip]), 10_000);
  assert.deepEqual([...new Set(await fetches(10))], [whoA], 'only the healthy task answers through the VIP');

  await dockerOk(b.h, ['exec', b.id, 'touch', '/tmp/ready']);
  await until('tasks.hs = A, B', async () => (await tasksHs()).length === 2, 20_000);
  assert.deepEqual(new Set(await fetches(20)), new Set([whoA, whoB]), 'both answer');

  // A turns unhealthy: it fails, leaves the name and the VIP; its replacement waits to be healthy.
  const t0 = Date.now();
  await dockerOk(a.h, ['exec', a.id, 'rm', '/tmp/ready']);
  await until('tasks.hs = B', async () => JSON.stringify(await tasksHs()) === JSON.stringify([b.ip]), 15_000, 100);
  console.log(
    `# unhealthy task out of tasks.hs ${Date.now() - t0} ms after its check started failing (interval 300 ms, 2 retries)`,
  );
  assert.deepEqual([...new Set(await fetches(10))], [whoB], 'only the healthy task answers through the VIP');
  const ps = await dockerOk(H[0]!, ['service', 'ps', '--no-trunc', 'hs', '--format', '{{.CurrentState}}|{{.Error}}']);
  assert.match(ps, /^Failed .*\|"dockerexec: unhealthy container"$/m, ps);
  await until(
    'a replacement Starting',
    async () => {
      const s = await states();
      return s.length === 2 && s.some((x) => /^Starting /.test(x));
    },
    20_000,
  );
  assert.deepEqual(await tasksHs(), [b.ip], 'the replacement takes no traffic before it is healthy');
  await dockerOk(H[0]!, ['rm', '-f', 'client']);
  await dockerOk(H[0]!, ['service', 'rm', 'hs']);
  await until('hnet removable', async () => (await docker(H[0]!, ['network', 'rm', 'hnet'])).code === 0, 30_000);
});
