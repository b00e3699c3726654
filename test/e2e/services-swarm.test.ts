/**
 * Swarm services on a 3-host lab (the seed's "Create the services", steps
 * 1-8), driven with the real docker CLI and with cove, checked from inside
 * the task containers: the VIP answers from several tasks (each task's page
 * says which), tasks.my-nginx gives every task, network inspect on every
 * host lists that host's tasks; a stopped task leaves the balancing maps
 * within a second; update --network-add/--network-rm redeploys everything;
 * Docker's errors; a node killed; clean-up leaving nothing.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { type Lab } from '../lab/lab.js';
import { MultiHostLab } from '../lab/multihost.js';
import { docker, dockerOk, until } from '../lab/swarm-docker.js';

let lab: MultiHostLab;
let H: Lab[];

/** The task containers of a service on one host: name → container ID. */
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

/** The first host running a task of the service, with one of its task containers. */
async function hostWithTask(service: string, except?: Lab): Promise<{ h: Lab; name: string; id: string }> {
  for (const h of H) {
    if (h === except) continue;
    const [e] = [...(await tasksOn(h, service)).entries()];
    if (e) return { h, name: e[0], id: e[1] };
  }
  throw new Error(`no host runs a task of ${service}`);
}

before(async () => {
  lab = await MultiHostLab.create('sv', 3);
  H = lab.hosts;
  await lab.startSwarm({ images: ['alpine', 'nginx'], role: 'worker' });
});

after(async () => {
  await lab?.destroy();
});

test("seed steps 1-3: nginx-net, a 5-replica my-nginx converging with docker's progress, service ls 5/5", async () => {
  await dockerOk(H[0]!, ['network', 'create', '-d', 'overlay', 'nginx-net']);
  const t0 = Date.now();
  const c = await docker(
    H[0]!,
    [
      'service',
      'create',
      '--name',
      'my-nginx',
      '--publish',
      'target=80,published=80',
      '--replicas=5',
      '--network',
      'nginx-net',
      'nginx',
    ],
    120_000,
  );
  assert.equal(c.code, 0, c.stderr + c.stdout);
  const id = c.stdout.split('\n')[0]!;
  assert.match(id, /^[a-z0-9]{25}$/);
  assert.match(c.stdout, /overall progress: 5 out of 5 tasks/);
  assert.match(c.stdout, new RegExp(`verify: Service ${id} converged`));
  console.log(`# service create --replicas 5 converged (docker CLI incl. its 5 s verify) in ${Date.now() - t0} ms`);
  const ls = await dockerOk(H[0]!, ['service', 'ls']);
  assert.match(ls, /^ID +NAME +MODE +REPLICAS +IMAGE +PORTS$/m);
  assert.match(ls, new RegExp(`^${id.slice(0, 12)} +my-nginx +replicated +5/5 +nginx:latest +\\*:80->80/tcp$`, 'm'));
  // Node IDs (--no-resolve): what the scheduler placed, independent of names.
  const ps = await dockerOk(H[0]!, [
    'service',
    'ps',
    '--no-resolve',
    'my-nginx',
    '--format',
    '{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}}',
  ]);
  const rows = ps.split('\n');
  assert.equal(rows.length, 5, ps);
  assert.ok(
    rows.every((r) => / Running Running /.test(r)),
    ps,
  );
  assert.ok(new Set(rows.map((r) => r.split(' ')[1])).size >= 2, `tasks spread over nodes: ${ps}`);
});

test('seed steps 4-5: network inspect on every host lists its tasks; service inspect shows ports and the VIP', async () => {
  const net = JSON.parse(await dockerOk(H[0]!, ['network', 'inspect', 'nginx-net']))[0] as {
    Id: string;
    IPAM: { Config: Array<{ Subnet: string }> };
  };
  let total = 0;
  for (const h of H) {
    const mine = await tasksOn(h, 'my-nginx');
    total += mine.size;
    if (!mine.size) continue;
    const [n] = JSON.parse(await dockerOk(h, ['network', 'inspect', 'nginx-net'])) as Array<{
      Containers: Record<string, { Name: string }>;
    }>;
    assert.deepEqual(
      Object.values(n!.Containers)
        .map((x) => x.Name)
        .filter((x) => x.startsWith('my-nginx.'))
        .sort(),
      [...mine.keys()].sort(),
      h.name,
    );
    for (const name of mine.keys()) assert.match(name, /^my-nginx\.[1-5]\.[a-z0-9]{25}$/);
  }
  assert.equal(total, 5);
  const [svc] = JSON.parse(await dockerOk(H[0]!, ['service', 'inspect', 'my-nginx'])) as Array<{
    Endpoint: { Ports: unknown[]; VirtualIPs: Array<{ NetworkID: string; Addr: string }> };
  }>;
  assert.deepEqual(svc!.Endpoint.Ports, [
    { Protocol: 'tcp', TargetPort: 80, PublishedPort: 80, PublishMode: 'ingress' },
  ]);
  const vip = svc!.Endpoint.VirtualIPs.find((v) => v.NetworkID === net.Id);
  assert.ok(vip, JSON.stringify(svc!.Endpoint));
  const prefix = net.IPAM.Config[0]!.Subnet.split('.').slice(0, 3).join('.');
  assert.ok(vip!.Addr.startsWith(prefix + '.'), `${vip!.Addr} in ${net.IPAM.Config[0]!.Subnet}`);
  const pretty = await dockerOk(H[0]!, ['service', 'inspect', '--pretty', 'my-nginx']);
  assert.match(pretty, /Networks: nginx-net \n/);
  assert.match(pretty, / PublishedPort = 80\n  Protocol = tcp\n  TargetPort = 80\n  PublishMode = ingress/);
});

test('from inside the tasks: tasks.my-nginx has 5 addresses, my-nginx is the VIP, wget through the VIP answers from several tasks', async () => {
  // Each task's page says which task it is.
  for (const h of H)
    for (const id of (await tasksOn(h, 'my-nginx')).values())
      await dockerOk(h, ['exec', id, 'sh', '-c', 'hostname > /www/who.txt']);
  const { h: host, id: first } = await hostWithTask('my-nginx');
  const ns = await dockerOk(host, ['exec', first!, 'nslookup', 'tasks.my-nginx']);
  const addrs = [...ns.matchAll(/Address(?: \d+)?: (10\.\d+\.\d+\.\d+)/g)].map((m) => m[1]);
  assert.equal(new Set(addrs).size, 5, ns);
  const [svc] = JSON.parse(await dockerOk(H[0]!, ['service', 'inspect', 'my-nginx'])) as Array<{
    Endpoint: { VirtualIPs: Array<{ NetworkID: string; Addr: string }> };
  }>;
  // The VIP on nginx-net (the one on ingress, listed first as in Docker, is the routing mesh's).
  const netId = await dockerOk(H[0]!, ['network', 'inspect', '-f', '{{.Id}}', 'nginx-net']);
  const vip = svc!.Endpoint.VirtualIPs.find((v) => v.NetworkID === netId)!.Addr.split('/')[0]!;
  const one = await dockerOk(host, ['exec', first!, 'nslookup', 'my-nginx']);
  assert.match(one, new RegExp(`Address(?: \\d+)?: ${vip.replace(/\./g, '\\.')}`), one);
  const who = await dockerOk(host, [
    'exec',
    first!,
    'sh',
    '-c',
    'for i in $(seq 1 20); do wget -q -O - http://my-nginx/who.txt; done',
  ]);
  const seen = new Set(who.split('\n').filter(Boolean));
  assert.ok(seen.size >= 3, `answers from several tasks: ${[...seen].join(', ')}`);
});

test('a task that stops leaves the balancing maps within a second, and is replaced', async () => {
  const { h: victimHost, name: victimName, id: victimId } = await hostWithTask('my-nginx');
  const ip = await dockerOk(victimHost, [
    'inspect',
    '-f',
    '{{(index .NetworkSettings.Networks "nginx-net").IPAddress}}',
    victimId,
  ]);
  // Watch the map in the sandbox of a task on another host.
  const { h: other, id: otherId } = await hostWithTask('my-nginx', victimHost);
  const sb = await dockerOk(other, ['inspect', '-f', '{{.NetworkSettings.SandboxKey}}', otherId!]);
  const mapHas = async (): Promise<boolean> =>
    (await other.sh(`nsenter --net=${sb} nft list table ip cove_lb`)).stdout.includes(ip);
  assert.ok(await mapHas(), 'victim is in the map first');
  const t0 = Date.now();
  await dockerOk(victimHost, ['kill', victimId]);
  const gone = await until('victim out of the map', async () => !(await mapHas()), 5000, 50);
  console.log(`# stopped task out of a remote sandbox's map after ${Date.now() - t0} ms (poll ${gone} ms)`);
  assert.ok(Date.now() - t0 < 1500, `out of the map within a second or so (${Date.now() - t0} ms)`);
  await until(
    '5 running again',
    async () => (await dockerOk(H[0]!, ['service', 'ls', '--format', '{{.Replicas}}'])) === '5/5',
    30_000,
  );
  const ps = await dockerOk(H[0]!, ['service', 'ps', 'my-nginx', '--format', '{{.Name}} {{.CurrentState}} {{.Error}}']);
  assert.match(ps, /Failed .*"task: non-zero exit \(137\)"/, ps);
  assert.ok(victimName);
});

test('seed steps 6-7: update --network-add nginx-net-2 --network-rm nginx-net redeploys every task; nginx-net shows no containers anywhere', async () => {
  await dockerOk(H[0]!, ['network', 'create', '-d', 'overlay', 'nginx-net-2']);
  const u = await docker(
    H[0]!,
    ['service', 'update', '--network-add', 'nginx-net-2', '--network-rm', 'nginx-net', 'my-nginx'],
    180_000,
  );
  assert.equal(u.code, 0, u.stderr + u.stdout);
  assert.match(u.stdout, /^my-nginx\n/);
  assert.match(u.stdout, /verify: Service my-nginx converged/);
  assert.match(await dockerOk(H[0]!, ['service', 'ls', '--format', '{{.Name}} {{.Replicas}}']), /^my-nginx 5\/5$/);
  let onNew = 0;
  for (const h of H) {
    const old = await docker(h, ['network', 'inspect', '-f', '{{len .Containers}}', 'nginx-net']);
    if (old.code === 0) assert.equal(old.stdout.trim(), '0', `nginx-net on ${h.name} has no containers`);
    const mine = await tasksOn(h, 'my-nginx');
    if (mine.size) {
      const [n] = JSON.parse(await dockerOk(h, ['network', 'inspect', 'nginx-net-2'])) as Array<{
        Containers: Record<string, { Name: string }>;
      }>;
      const names = Object.values(n!.Containers)
        .map((x) => x.Name)
        .filter((x) => x.startsWith('my-nginx.'));
      assert.deepEqual(names.sort(), [...mine.keys()].sort());
      onNew += names.length;
    }
  }
  assert.equal(onNew, 5);
  // The service answers on the new network.
  const { h, id } = await hostWithTask('my-nginx');
  {
    const w = await docker(h, ['exec', id, 'wget', '-q', '-O', '-', 'http://my-nginx/']);
    assert.equal(w.code, 0, w.stderr);
    assert.match(w.stdout, /Welcome to nginx!/);
  }
});

test("cove: service ls/ps/inspect --pretty/scale; Docker's errors for bad input", async () => {
  const ls = await H[0]!.coveOk(['service', 'ls']);
  assert.match(ls, /my-nginx +replicated +5\/5 +nginx:latest +\*:80->80\/tcp/);
  const sc = await H[0]!.cove(['service', 'scale', 'my-nginx=2'], { timeoutMs: 60_000 });
  assert.equal(sc.code, 0, sc.stderr);
  assert.match(sc.stdout, /^my-nginx scaled to 2\noverall progress: 0 out of 2 tasks\n1\/2:  \n2\/2:  \n/);
  assert.match(sc.stdout, /verify: Service my-nginx converged\n$/);
  const ps = await H[0]!.coveOk(['service', 'ps', 'my-nginx', '--filter', 'desired-state=running']);
  assert.equal(ps.split('\n').length, 3, ps);

  const w = await docker(H[1]!, ['service', 'create', '--name', 'w', 'nginx']);
  assert.equal(w.code, 1);
  assert.match(
    w.stderr,
    /This node is not a swarm manager\. Worker nodes can't be used to view or modify cluster state\./,
  );
  await dockerOk(H[0]!, ['network', 'create', '-d', 'bridge', 'plainbr']);
  // The docker CLI looks networks up with scope=swarm (a local one is "not found"); cove passes the name on.
  const br = await docker(H[0]!, ['service', 'create', '--name', 'b', '--network', 'plainbr', '-d', 'nginx']);
  assert.match(br.stderr, /network plainbr not found/);
  const cbr = await H[0]!.cove(['service', 'create', '--name', 'b', '--network', 'plainbr', '-d', 'nginx']);
  assert.match(
    cbr.stderr,
    /The network plainbr cannot be used with services\. Only networks scoped to the swarm can be used, such as those created with the overlay driver\./,
  );
  const nn = await docker(H[0]!, ['service', 'create', '--name', 'b', '--network', 'nope', '-d', 'nginx']);
  assert.equal(nn.code, 1);
  assert.match(nn.stderr, /network nope not found/);
  const dup = await docker(H[0]!, ['service', 'create', '--name', 'my-nginx', '-d', 'nginx']);
  assert.match(dup.stderr, /name conflicts with an existing object: service my-nginx already exists/);
  const gr = await docker(H[0]!, ['service', 'create', '--mode', 'global', '--replicas', '2', 'nginx']);
  assert.match(gr.stderr, /replicas can only be used with replicated or replicated-job mode/);
  await dockerOk(H[0]!, ['service', 'create', '--mode', 'global', '--name', 'mon', '-d', 'alpine', 'sleep', '1000']);
  const sg = await docker(H[0]!, ['service', 'scale', 'mon=2']);
  assert.match(sg.stderr, /scale can only be used with replicated or replicated-job mode/);
  await until(
    'mon on every node',
    async () =>
      (await dockerOk(H[0]!, ['service', 'ls', '--filter', 'name=mon', '--format', '{{.Replicas}}'])) === '3/3',
    30_000,
  );
  await dockerOk(H[0]!, ['service', 'rm', 'mon']);
  await dockerOk(H[0]!, ['network', 'rm', 'plainbr']);
});

test('a node killed: its tasks come back on the others within 10 s of it going down; the VIP keeps answering', async () => {
  await dockerOk(H[0]!, ['service', 'scale', '-d', 'my-nginx=4']);
  await until(
    '4/4',
    async () =>
      (await dockerOk(H[0]!, ['service', 'ls', '--filter', 'name=my-nginx', '--format', '{{.Replicas}}'])) === '4/4',
    30_000,
  ).catch(async (e) => {
    throw new Error(
      `${(e as Error).message}\n${await dockerOk(H[0]!, ['service', 'ps', '--no-resolve', '--no-trunc', 'my-nginx'])}\n${await dockerOk(H[0]!, ['service', 'ls'])}`,
    );
  });
  const victim = H[2]!;
  const t0 = Date.now();
  await victim.stopDaemon('SIGKILL');
  const nodeDown = await until(
    'node3 down',
    async () => /Down/.test(await dockerOk(H[0]!, ['node', 'ls', '--format', '{{.Hostname}} {{.Status}}'])),
    30_000,
  );
  const back = await until(
    '4 running on the survivors',
    async () => {
      const ps = await dockerOk(H[0]!, [
        'service',
        'ps',
        'my-nginx',
        '--filter',
        'desired-state=running',
        '--format',
        '{{.Node}} {{.CurrentState}}',
      ]);
      const rows = ps.split('\n').filter(Boolean);
      return (
        rows.length === 4 &&
        rows.every((r) => / Running /.test(r)) &&
        (await Promise.all(H.slice(0, 2).map((h) => tasksOn(h, 'my-nginx')))).reduce((n, m) => n + m.size, 0) >= 4
      );
    },
    30_000,
  );
  console.log(
    `# node killed: Down after ${nodeDown} ms, replicas running again ${back} ms later (total ${Date.now() - t0} ms)`,
  );
  const { h, id } = await hostWithTask('my-nginx', victim);
  const who = await dockerOk(h, [
    'exec',
    id,
    'sh',
    '-c',
    'ok=0; for i in $(seq 1 10); do wget -q -O /dev/null http://my-nginx/ && ok=$((ok+1)); done; echo $ok',
  ]);
  assert.equal(who, '10', 'every request through the VIP answered');
  await victim.startDaemon();
  await until(
    'node3 ready',
    async () => !/Down/.test(await dockerOk(H[0]!, ['node', 'ls', '--format', '{{.Hostname}} {{.Status}}'])),
    30_000,
  );
  await until('node3 runs no stale task', async () => (await tasksOn(victim, 'my-nginx')).size === 0, 30_000);
});

test('measured: scale 4 -> 20 -> 1, and requests through the VIP against straight to one task', async () => {
  const converged = async (n: number): Promise<number> => {
    const t0 = Date.now();
    await dockerOk(H[0]!, ['service', 'scale', '-d', `my-nginx=${n}`]);
    await until(
      `${n}/${n}`,
      async () =>
        (await dockerOk(H[0]!, ['service', 'ls', '--filter', 'name=my-nginx', '--format', '{{.Replicas}}'])) ===
        `${n}/${n}`,
      120_000,
      100,
    );
    return Date.now() - t0;
  };
  const up = await converged(20);
  const down = await converged(1);
  console.log(`# scale to 20: ${up} ms; back to 1: ${down} ms`);
  await converged(3);
  const { h, id } = await hostWithTask('my-nginx');
  const ip = (
    await dockerOk(h, ['inspect', '-f', '{{(index .NetworkSettings.Networks "nginx-net-2").IPAddress}}', id])
  ).trim();
  const rate = async (target: string): Promise<number> => {
    // Wall clock around one exec of 200 sequential fetches (busybox date has no %N); the exec's own cost is in both.
    const t0 = Date.now();
    await dockerOk(h, [
      'exec',
      id,
      'sh',
      '-c',
      `for i in $(seq 1 200); do wget -q -O /dev/null http://${target}/ || exit 1; done`,
    ]);
    return 200 / ((Date.now() - t0) / 1000);
  };
  const viaVip = await rate('my-nginx');
  const direct = await rate(ip);
  console.log(
    `# requests/s (busybox wget, one at a time): through the VIP ${viaVip.toFixed(0)}, straight to one task ${direct.toFixed(0)} (${((viaVip / direct) * 100).toFixed(0)} %)`,
  );
  assert.ok(viaVip > 0 && direct > 0);
});

test('seed step 8: service rm and network rm leave no task container and no network anywhere', async () => {
  assert.equal(await dockerOk(H[0]!, ['service', 'rm', 'my-nginx']), 'my-nginx');
  await until(
    'no task container anywhere',
    async () => {
      for (const h of H)
        if ((await dockerOk(h, ['ps', '-a', '--filter', 'label=com.docker.swarm.service.name', '-q'])) !== '')
          return false;
      return true;
    },
    30_000,
  );
  await until(
    'networks removable',
    async () => (await docker(H[0]!, ['network', 'rm', 'nginx-net', 'nginx-net-2'])).code === 0,
    20_000,
  );
  for (const h of H) {
    const ls = await dockerOk(h, ['network', 'ls', '--format', '{{.Name}}']);
    assert.doesNotMatch(ls, /nginx-net/);
  }
});
