/**
 * `cove service ...` (bin/cove, spawned) against the API server whose
 * services come from a fake 3-node swarm (one store, fake containers):
 * docker's outputs for create (with the progress display), ls, ps,
 * inspect --pretty, scale, update, rollback, rm, and the errors.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startApi, request, json, type Harness } from '../support/api-harness.js';
import { FakeSwarm, fakeNetworks } from './fakes/services.js';
import type { SwarmServices } from '../../src/services/index.js';

const COVE = fileURLToPath(new URL('../../../bin/cove', import.meta.url));

let h: Harness;
let sw: FakeSwarm;
before(async () => {
  h = await startApi();
  sw = new FakeSwarm(3);
  sw.start();
  (h.engine as { services?: SwarmServices }).services = { api: () => sw.manager } as unknown as SwarmServices;
  // The swarm's overlay networks, as GET /networks/{name} shows them to the CLI.
  const inspect = h.engine.networks.inspectNetwork.bind(h.engine.networks);
  h.engine.networks.inspectNetwork = async (ref: string, opts?: { verbose?: boolean; scope?: string }) => {
    const n = await fakeNetworks.lookup(ref).catch(() => undefined);
    if (!n) return inspect(ref, opts);
    return { Id: n.id, Name: n.name, Driver: n.driver, Scope: n.scope, Ingress: n.ingress } as Awaited<
      ReturnType<typeof inspect>
    >;
  };
});
after(async () => {
  await sw.close();
  await h.close();
});

function cove(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(COVE, args, {
      env: { ...process.env, COVE_HOST: `unix://${h.socket}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test("cove service create shows docker's progress until converged; ls, ps and inspect --pretty", async () => {
  const c = await cove(
    'service',
    'create',
    '--name',
    'my-nginx',
    '--publish',
    'target=80,published=80',
    '--replicas=5',
    '--network',
    'nginx-net',
    '--update-monitor',
    '1s',
    'nginx',
  );
  assert.equal(c.code, 0, c.stderr);
  const lines = c.stdout.split('\n');
  const id = lines[0]!;
  assert.match(id, /^[a-z0-9]{25}$/);
  assert.equal(lines[1], 'overall progress: 0 out of 5 tasks');
  assert.deepEqual(lines.slice(2, 7), ['1/5:  ', '2/5:  ', '3/5:  ', '4/5:  ', '5/5:  ']);
  assert.ok(lines.includes('overall progress: 5 out of 5 tasks'));
  assert.ok(lines.includes('verify: Waiting 1 seconds to verify that tasks are stable...'));
  assert.equal(lines.at(-2), `verify: Service ${id} converged`);

  const ls = await cove('service', 'ls');
  assert.equal(
    ls.stdout,
    [
      'ID             NAME       MODE         REPLICAS   IMAGE          PORTS',
      `${id.slice(0, 12)}   my-nginx   replicated   5/5        nginx:latest   *:80->80/tcp`,
      '',
    ].join('\n'),
  );

  const ps = await cove('service', 'ps', 'my-nginx');
  const rows = ps.stdout.trimEnd().split('\n');
  assert.match(rows[0]!, /^ID +NAME +IMAGE +NODE +DESIRED STATE +CURRENT STATE +ERROR +PORTS$/);
  assert.equal(rows.length, 6);
  for (let i = 1; i <= 5; i++)
    assert.match(
      rows[i]!,
      new RegExp(
        `^[a-z0-9]{12} +my-nginx\\.${i} +nginx:latest +node\\d+id +Running +Running (less than a second|\\d+ seconds?) ago`,
      ),
    );

  const pretty = await cove('service', 'inspect', '--pretty', 'my-nginx');
  assert.equal(
    pretty.stdout,
    [
      '',
      `ID:\t\t${id}`,
      'Name:\t\tmy-nginx',
      'Service Mode:\tReplicated',
      ' Replicas:\t5',
      'Placement:',
      'UpdateConfig:',
      ' Parallelism:\t1',
      ' On failure:\tpause',
      ' Monitor Period: 1s',
      ' Max failure ratio: 0',
      ' Update order:      stop-first',
      'RollbackConfig:',
      ' Parallelism:\t1',
      ' On failure:\tpause',
      ' Monitor Period: 5s',
      ' Max failure ratio: 0',
      ' Rollback order:    stop-first',
      'ContainerSpec:',
      ' Image:\t\tnginx:latest',
      ' Init:\t\tfalse',
      'Resources:',
      'Networks: nginx-net ',
      'Endpoint Mode:\tvip',
      'Ports:',
      ' PublishedPort = 80',
      '  Protocol = tcp',
      '  TargetPort = 80',
      '  PublishMode = ingress ',
      '',
      '',
    ].join('\n'),
  );

  const raw = json(await request(h.socket, 'GET', '/services/my-nginx'));
  assert.deepEqual(raw.Endpoint.VirtualIPs, [{ NetworkID: 'n1overlay', Addr: '10.0.1.200/24' }]);
});

test('cove service scale, update --network-add/--network-rm, rollback, rm', async () => {
  const s = await cove('service', 'scale', 'my-nginx=2', '-d');
  assert.equal(s.code, 0, s.stderr);
  assert.equal(s.stdout, 'my-nginx scaled to 2\n');
  await sw.until('2 tasks', async () => (await sw.tasks()).filter((t) => t.DesiredState === 'running').length === 2);

  const u = await cove(
    'service',
    'update',
    '--network-add',
    'nginx-net-2',
    '--network-rm',
    'nginx-net',
    '--update-monitor',
    '1s',
    '--update-delay',
    '1s',
    'my-nginx',
  );
  assert.equal(u.code, 0, u.stderr);
  assert.equal(u.stdout.split('\n')[0], 'my-nginx');
  assert.match(u.stdout, /verify: Service my-nginx converged\n$/);
  const live = (await sw.tasks()).filter((t) => t.DesiredState === 'running');
  assert.ok(live.every((t) => t.NetworksAttachments?.[0]?.Network.ID === 'n2overlay'));
  const ps = await cove('service', 'ps', 'my-nginx');
  assert.match(ps.stdout, / \\_ my-nginx\.1 +nginx:latest +node\d+id +Shutdown +Shutdown /);

  const r = await cove('service', 'rollback', 'my-nginx');
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /^my-nginx\nrollback: manually requested rollback\noverall progress: rolling back update: 0 out of 2 tasks\n/,
  );
  assert.match(r.stdout, /verify: Service my-nginx converged\n(rollback: rollback completed\n)?$/);

  const bad = await cove('service', 'create', '--mode', 'global', '--replicas', '2', 'nginx');
  assert.equal(bad.code, 1);
  assert.equal(bad.stderr, 'replicas can only be used with replicated or replicated-job mode\n');
  const br = await cove('service', 'create', '--network', 'mybridge', '-d', 'nginx');
  assert.equal(
    br.stderr,
    'Error response from daemon: The network mybridge cannot be used with services. Only networks scoped to the swarm can be used, such as those created with the overlay driver.\n',
  );
  const g = await cove('service', 'create', '--mode', 'global', '--name', 'mon', '-d', 'busybox');
  assert.equal(g.code, 0, g.stderr);
  const sg = await cove('service', 'scale', 'mon=3');
  assert.equal(sg.code, 1);
  assert.equal(sg.stderr, 'mon: scale can only be used with replicated or replicated-job mode\n');

  // --restart-max-attempts and --restart-window into the spec on create, changed by update; docker's words for a bad window.
  const rp = await cove(
    'service',
    'create',
    '--name',
    'rp',
    '-d',
    '--restart-max-attempts',
    '3',
    '--restart-window',
    '10s',
    'busybox',
  );
  assert.equal(rp.code, 0, rp.stderr);
  assert.deepEqual((await sw.manager.inspect('rp')).Spec.TaskTemplate?.RestartPolicy, {
    MaxAttempts: 3,
    Window: 10_000_000_000,
  });
  const ru = await cove('service', 'update', '-d', '--restart-window', '1m', '--restart-max-attempts', '4', 'rp');
  assert.equal(ru.code, 0, ru.stderr);
  assert.deepEqual((await sw.manager.inspect('rp')).Spec.TaskTemplate?.RestartPolicy, {
    MaxAttempts: 4,
    Window: 60_000_000_000,
  });
  const rw = await cove('service', 'create', '-d', '--restart-window', 'soon', 'busybox');
  assert.equal(rw.code, 1);
  assert.match(rw.stderr, /^invalid argument "soon" for "--restart-window" flag: time: invalid duration "soon"/);
  assert.equal((await cove('service', 'rm', 'rp')).code, 0);

  const rm = await cove('service', 'rm', 'my-nginx', 'mon', 'nope');
  assert.equal(rm.code, 1);
  assert.equal(rm.stdout, 'my-nginx\nmon\n');
  assert.equal(rm.stderr, 'Error response from daemon: service nope not found\n');
  await sw.until('all gone', async () => (await sw.tasks()).length === 0);
});
