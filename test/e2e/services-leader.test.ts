/**
 * The orchestrator's leader killed: three managers, the one leading the
 * orchestrator is killed (-9); another takes over, the service keeps its
 * replicas and scales, and no slot is ever scheduled twice.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { run, type Lab, type RunResult } from '../lab/lab.js';
import { MultiHostLab } from '../lab/multihost.js';

const DOCKER = '/usr/local/bin/docker';
let lab: MultiHostLab;
let H: Lab[];

const docker = (h: Lab, args: string[], timeoutMs = 90_000): Promise<RunResult> =>
  run(DOCKER, args, { env: h.env, timeoutMs });
async function dockerOk(h: Lab, args: string[]): Promise<string> {
  const r = await docker(h, args);
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} on ${h.name}: ${r.stderr}${r.stdout}`);
  return r.stdout.trim();
}
async function until(what: string, f: () => Promise<boolean>, ms = 30_000): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await f().catch(() => false)) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
}

before(async () => {
  lab = await MultiHostLab.create('svl', 3);
  H = lab.hosts;
  await lab.startSwarm({ images: ['nginx'], role: 'manager' });
});

after(async () => {
  await lab?.destroy();
});

test('the orchestrator leader killed: another manager takes over, nothing scheduled twice', async (t) => {
  await dockerOk(H[0]!, ['service', 'create', '-d', '--name', 'web', '--replicas', '3', 'nginx']);
  await until('3/3', async () => (await dockerOk(H[0]!, ['service', 'ls', '--format', '{{.Replicas}}'])) === '3/3');
  const leader = H.find((h) => /this manager now leads the orchestrator/.test(h.daemonLog()))!;
  assert.ok(leader, 'one manager leads the orchestrator');
  const others = H.filter((h) => h !== leader);
  await leader.stopDaemon('SIGKILL');
  const t0 = Date.now();
  await dockerOk(others[0]!, ['service', 'scale', '-d', 'web=6']);
  await until(
    '6 running on the survivors',
    async () => {
      const rows = (
        await dockerOk(others[0]!, [
          'service',
          'ps',
          'web',
          '--filter',
          'desired-state=running',
          '--format',
          '{{.Name}} {{.CurrentState}}',
        ])
      ).split('\n');
      return rows.length >= 6 && rows.filter((r) => / Running /.test(r)).length >= 6;
    },
    60_000,
  );
  console.log(`# leader killed: scaled to 6 by the new leader in ${Date.now() - t0} ms`);
  assert.ok(
    others.some((h) => /this manager now leads the orchestrator/.test(h.daemonLog())),
    'a survivor leads now',
  );
  const names = (
    await dockerOk(others[0]!, ['service', 'ps', 'web', '--filter', 'desired-state=running', '--format', '{{.Name}}'])
  ).split('\n');
  // The killed node's tasks may still be listed as running (it is down); per slot, one live task on the survivors.
  assert.equal(new Set(names).size, 6, `six slots: ${names.join(', ')}`);
  await leader.startDaemon();
  await dockerOk(others[0]!, ['service', 'rm', 'web']);
  await until('no task container anywhere', async () => {
    for (const h of H)
      if ((await dockerOk(h, ['ps', '-aq', '--filter', 'label=com.docker.swarm.service.name=web'])) !== '')
        return false;
    return true;
  });
});
