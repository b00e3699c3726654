/**
 * The seed's "Customize the default ingress network" on a 3-host lab (one
 * manager, two workers), with the real docker CLI and with cove, checked on
 * every host: `network inspect ingress`; `network rm ingress` asks docker's
 * question, is refused while a service publishes through the routing mesh
 * (docker's error naming it) and then removes it on every node (and a
 * manager restart does not bring it back); without an ingress network a
 * service publishing in ingress mode gets docker's error; `network create
 * --driver overlay --ingress --subnet=10.11.0.0/16 --gateway=10.11.0.2 --opt
 * com.docker.network.driver.mtu=1200 my-ingress` (one at a time, overlay
 * only, not attachable) is honoured on every node: a service created
 * afterwards has its tasks on my-ingress (eth0, MTU 1200, an address in
 * 10.11.0.0/16, seen with `ip` inside each task container) and the overlay's
 * bridge holds the gateway 10.11.0.2, and its published port answers the
 * outside world (a client on the underlay) at every host's address, a
 * 200 kB page arriving whole through the 1200-byte MTU. Also (issue 13) `network rm` of an
 * overlay network a service uses is refused with docker's error and nothing
 * changes.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { run, type Lab, type RunResult } from '../lab/lab.js';
import { MultiHostLab } from '../lab/multihost.js';
import { api } from './clients-helpers.js';

const DOCKER = '/usr/local/bin/docker';
const WARNING =
  'WARNING! Before removing the routing-mesh network, make sure all the nodes in your swarm run the same docker engine version. ' +
  'Otherwise, removal may not be effective and functionality of newly create ingress networks will be impaired.\nAre you sure you want to continue? [y/N] ';
let lab: MultiHostLab;
let H: Lab[];
let M: Lab;
/** The outside world: an address on the underlay, nothing else. */
const CLIENT = '192.0.2.100';

const docker = (h: Lab, args: string[], input?: string, timeoutMs = 90_000): Promise<RunResult> =>
  run(DOCKER, args, { env: h.env, timeoutMs, ...(input === undefined ? {} : { input }) });
async function dockerOk(h: Lab, args: string[]): Promise<string> {
  const r = await docker(h, args);
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} on ${h.name}: ${r.stderr}${r.stdout}`);
  return r.stdout.trim();
}

async function until(what: string, f: () => Promise<boolean>, ms = 20_000, gapMs = 200): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await f().catch(() => false)) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, gapMs));
  }
  throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
}

interface Net {
  Id: string;
  Name: string;
  Driver: string;
  Scope: string;
  Ingress: boolean;
  Attachable: boolean;
  IPAM: { Config: Array<{ Subnet: string; Gateway?: string }> };
  Options: Record<string, string>;
}
async function inspectNet(h: Lab, name: string): Promise<Net> {
  return (JSON.parse(await dockerOk(h, ['network', 'inspect', name])) as Net[])[0]!;
}
async function netNames(h: Lab): Promise<string[]> {
  return (await dockerOk(h, ['network', 'ls', '--format', '{{.Name}}'])).split('\n');
}
/** The task containers of a service on one host. */
async function tasksOn(h: Lab, service: string): Promise<string[]> {
  return (
    await dockerOk(h, ['ps', '--filter', `label=com.docker.swarm.service.name=${service}`, '--format', '{{.ID}}'])
  )
    .split('\n')
    .filter(Boolean);
}

before(async () => {
  lab = await MultiHostLab.create('ig', 3);
  H = lab.hosts;
  M = H[0]!;
  await lab.startSwarm({ images: ['alpine', 'nginx'], role: 'worker' });
  const r = await lab.underlay(`ip addr add ${CLIENT}/24 dev ul0`);
  assert.equal(r.code, 0, r.stderr);
});

after(async () => {
  await lab?.destroy();
});

test("seed step 1: network inspect ingress, on every host: the swarm's one ingress overlay, 10.0.0.0/24", async () => {
  const ids = new Set<string>();
  for (const h of H) {
    const n = await inspectNet(h, 'ingress');
    assert.equal(n.Driver, 'overlay');
    assert.equal(n.Scope, 'swarm');
    assert.equal(n.Ingress, true);
    assert.equal(n.Attachable, false);
    assert.deepEqual(n.IPAM.Config, [{ Subnet: '10.0.0.0/24', Gateway: '10.0.0.1' }]);
    ids.add(n.Id);
  }
  assert.equal(ids.size, 1, 'one network, the same ID everywhere');
});

test("issue 13: network rm of an overlay a service uses is refused with docker's error (CLI and API), and nothing changes", async () => {
  const netId = await dockerOk(M, ['network', 'create', '-d', 'overlay', 'appnet']);
  const svcId = (
    await dockerOk(M, [
      'service',
      'create',
      '--detach',
      '--name',
      'app',
      '--network',
      'appnet',
      'alpine',
      'sleep',
      '1000',
    ])
  ).split('\n')[0]!;
  const r = await docker(M, ['network', 'rm', 'appnet']);
  assert.equal(r.code, 1);
  // (docker 28 adds its "exit status 1" line after the daemon's words)
  assert.equal(
    r.stderr.split('\n')[0],
    `Error response from daemon: rpc error: code = FailedPrecondition desc = network ${netId} is in use by service ${svcId}`,
  );
  const res = await api(M, 'DELETE', '/networks/appnet');
  assert.equal(res.status, 400);
  assert.match(
    (res.json() as { message: string }).message,
    new RegExp(`network ${netId} is in use by service ${svcId}$`),
  );
  assert.ok((await netNames(M)).includes('appnet'));
  assert.equal((await inspectNet(M, 'appnet')).Id, netId);
  assert.match(await dockerOk(M, ['service', 'ls', '--format', '{{.Name}}']), /^app$/m);
  // Once the service is gone the network goes (its tasks leave on their own, as in Docker).
  await dockerOk(M, ['service', 'rm', 'app']);
  assert.equal(await dockerOk(M, ['network', 'rm', 'appnet']), 'appnet');
});

test("seed step 2: network rm ingress asks docker's question; refused while a service publishes, then removed on every host", async () => {
  const svcId = (
    await dockerOk(M, ['service', 'create', '--detach', '--name', 'web', '--publish', '8080:80', 'nginx'])
  ).split('\n')[0]!;
  // "n": nothing happens, exit 0 (docker's behaviour).
  const no = await docker(M, ['network', 'rm', 'ingress'], 'n\n');
  assert.equal(no.code, 0, no.stderr);
  assert.equal(no.stdout, WARNING);
  assert.ok((await netNames(M)).includes('ingress'));
  // "y" while web publishes through the mesh: docker's error, naming the service.
  const busy = await docker(M, ['network', 'rm', 'ingress'], 'y\n');
  assert.equal(busy.code, 1);
  assert.equal(busy.stdout, WARNING);
  assert.equal(
    busy.stderr.split('\n')[0],
    `Error response from daemon: rpc error: code = FailedPrecondition desc = ingress network cannot be removed because service ${svcId} depends on it`,
  );
  for (const h of H) assert.ok((await netNames(h)).includes('ingress'), h.name);
  // The same question from cove.
  const coveNo = await M.cove(['network', 'rm', 'ingress'], { input: 'n\n' });
  assert.equal(coveNo.code, 0, coveNo.stderr);
  assert.equal(coveNo.stdout, WARNING);

  await dockerOk(M, ['service', 'rm', 'web']);
  const yes = await docker(M, ['network', 'rm', 'ingress'], 'y\n');
  assert.equal(yes.code, 0, yes.stderr);
  assert.equal(yes.stdout, `${WARNING}ingress\n`);
  for (const h of H) {
    await until(`ingress gone on ${h.name}`, async () => !(await netNames(h)).includes('ingress'));
    const r = await docker(h, ['network', 'inspect', 'ingress']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /network ingress not found/);
  }
});

test("a swarm without an ingress network: publishing in ingress mode gets docker's error and creates nothing; a manager restart does not bring ingress back", async () => {
  const msg =
    'Error response from daemon: rpc error: code = FailedPrecondition desc = service needs ingress network, but no ingress network is present';
  const r = await docker(M, ['service', 'create', '--detach', '--name', 'pub', '--publish', '8081:80', 'nginx']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.split('\n')[0], msg);
  assert.doesNotMatch(await dockerOk(M, ['service', 'ls', '--format', '{{.Name}}']), /pub/);
  // update --publish-add too; a service that does not publish is fine.
  await dockerOk(M, ['service', 'create', '--detach', '--name', 'quiet', 'alpine', 'sleep', '1000']);
  const u = await docker(M, ['service', 'update', '--detach', '--publish-add', '9000:80', 'quiet']);
  assert.equal(u.code, 1);
  assert.match(u.stderr, /service needs ingress network, but no ingress network is present/);
  assert.equal(await dockerOk(M, ['service', 'inspect', '-f', '{{json .Spec.EndpointSpec.Ports}}', 'quiet']), 'null');
  await dockerOk(M, ['service', 'rm', 'quiet']);
  // The default ingress is made once in a swarm's life, not at each manager start.
  await M.stopDaemon();
  await M.startDaemon();
  await until('manager back', async () => /Leader/.test(await dockerOk(M, ['node', 'ls'])), 30_000);
  assert.ok(!(await netNames(M)).includes('ingress'), (await netNames(M)).join(' '));
});

test('seed step 3: network create --ingress my-ingress with subnet, gateway and MTU 1200; one at a time, overlay only, not attachable', async () => {
  const id = await dockerOk(M, [
    'network',
    'create',
    '--driver',
    'overlay',
    '--ingress',
    '--subnet=10.11.0.0/16',
    '--gateway=10.11.0.2',
    '--opt',
    'com.docker.network.driver.mtu=1200',
    'my-ingress',
  ]);
  assert.match(id, /^[a-z0-9]{25}$/);
  for (const h of H) {
    await until(`my-ingress on ${h.name}`, async () => (await netNames(h)).includes('my-ingress'));
    const n = await inspectNet(h, 'my-ingress');
    assert.equal(n.Id, id);
    assert.equal(n.Ingress, true);
    assert.equal(n.Attachable, false);
    assert.deepEqual(n.IPAM.Config, [{ Subnet: '10.11.0.0/16', Gateway: '10.11.0.2' }]);
    assert.equal(n.Options['com.docker.network.driver.mtu'], '1200');
  }
  const twice = await docker(M, ['network', 'create', '--driver', 'overlay', '--ingress', 'second-ingress']);
  assert.equal(twice.code, 1);
  assert.equal(
    twice.stderr.split('\n')[0],
    `Error response from daemon: rpc error: code = AlreadyExists desc = ingress network (${id}) is already present`,
  );
  const bridge = await docker(M, ['network', 'create', '--driver', 'bridge', '--ingress', 'br-ingress']);
  assert.equal(bridge.code, 1);
  assert.match(bridge.stderr, /only overlay driver is currently supported for ingress network/);
  const att = await api(M, 'POST', '/networks/create', {
    Name: 'att-ingress',
    Driver: 'overlay',
    Ingress: true,
    Attachable: true,
  });
  assert.equal(att.status, 400);
  assert.match((att.json() as { message: string }).message, /ingress network cannot be attachable/);
  const names = await netNames(M);
  for (const n of ['second-ingress', 'br-ingress', 'att-ingress']) assert.ok(!names.includes(n), n);
  // Not attachable: a standalone container cannot join it.
  const runIt = await docker(M, ['run', '--rm', '--network', 'my-ingress', 'alpine', 'true']);
  assert.notEqual(runIt.code, 0);
  assert.match(runIt.stderr, /not manually attachable/);
});

test('services created afterwards publish through my-ingress: every task has eth0 on it with MTU 1200 and an address in 10.11.0.0/16; the gateway is 10.11.0.2 on every host', async () => {
  const svcId = (
    await dockerOk(M, [
      'service',
      'create',
      '--detach',
      '--name',
      'web2',
      '--mode',
      'global',
      '--publish',
      'target=80,published=8080',
      'nginx',
    ])
  ).split('\n')[0]!;
  const ingressId = (await inspectNet(M, 'my-ingress')).Id;
  await until(
    'a running task on every host',
    async () => (await Promise.all(H.map((h) => tasksOn(h, 'web2')))).every((t) => t.length === 1),
    60_000,
  ).catch(async (e: Error) => {
    throw new Error(`${e.message}\n${await dockerOk(M, ['service', 'ps', '--no-trunc', '--no-resolve', 'web2'])}`);
  });
  for (const h of H) {
    const [task] = await tasksOn(h, 'web2');
    const link = await dockerOk(h, ['exec', task!, 'ip', 'link', 'show', 'eth0']);
    assert.match(link, /mtu 1200 /, `${h.name}: ${link}`);
    const addr = await dockerOk(h, ['exec', task!, 'ip', '-4', '-o', 'addr', 'show', 'eth0']);
    assert.match(addr, /inet 10\.11\.\d+\.\d+\/16 /, `${h.name}: ${addr}`);
    // The network's bridge on this host holds the gateway, at the same MTU.
    const vni = (await inspectNet(h, 'my-ingress')).Options['com.docker.network.driver.overlay.vxlanid_list'];
    const br = await h.sh(
      `nsenter --net=${h.execRoot}/overlay/${vni}-${ingressId.slice(0, 12)} ip -o addr show br0; nsenter --net=${h.execRoot}/overlay/${vni}-${ingressId.slice(0, 12)} ip -o link show br0`,
    );
    assert.match(br.stdout, /inet 10\.11\.0\.2\/16 /, `${h.name}: ${br.stdout}${br.stderr}`);
    assert.match(br.stdout, /mtu 1200 /, `${h.name}: ${br.stdout}`);
  }
  const [svc] = JSON.parse(await dockerOk(M, ['service', 'inspect', svcId])) as Array<{
    Endpoint: { VirtualIPs: Array<{ NetworkID: string; Addr: string }> };
  }>;
  const vip = svc!.Endpoint.VirtualIPs.find((v) => v.NetworkID === ingressId);
  assert.ok(vip && /^10\.11\.\d+\.\d+\/16$/.test(vip.Addr), JSON.stringify(svc!.Endpoint));
  // The tasks are the network's containers, host by host (inspect shows this host's).
  for (const h of H) {
    const n = JSON.parse(await dockerOk(h, ['network', 'inspect', 'my-ingress'])) as Array<{
      Containers: Record<string, { Name: string }>;
    }>;
    assert.ok(
      Object.values(n[0]!.Containers ?? {}).some((c) => c.Name.startsWith('web2.')),
      `${h.name}: ${JSON.stringify(n[0]!.Containers)}`,
    );
  }
});

test('the port published through my-ingress answers the outside world at every host; a 200 kB page comes whole through MTU 1200', async () => {
  // Each task serves its own hostname and a large page (more than a hundred 1200-byte frames).
  const names = new Set<string>();
  const sums = new Set<string>();
  for (const h of H) {
    for (const id of await tasksOn(h, 'web2')) {
      const sum = await dockerOk(h, [
        'exec',
        id,
        'sh',
        '-c',
        'hostname > /www/who.txt; head -c 204800 /dev/urandom > /www/big.bin; md5sum /www/big.bin',
      ]);
      sums.add(sum.split(' ')[0]!);
      names.add(await dockerOk(h, ['exec', id, 'hostname']));
    }
  }
  const seen = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const a = lab.addr(i);
    await until(
      `8080 at ${a} from the underlay`,
      async () => (await lab.underlay(`curl -s -m 3 http://${a}:8080/`, 10_000)).stdout.includes('Welcome to nginx!'),
      30_000,
    );
    const who = await lab.underlay(`for i in $(seq 1 9); do curl -s -m 3 http://${a}:8080/who.txt; done`, 60_000);
    const got = who.stdout
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    assert.equal(got.length, 9, `${a}: every request answered: ${who.stdout}${who.stderr}`);
    for (const w of got) {
      assert.ok(names.has(w), `${a}: answered by a task of web2 (${w})`);
      seen.add(w);
    }
    // Whole and intact: the page arrives with the checksum of one task's own copy.
    const big = await lab.underlay(`curl -s -m 10 http://${a}:8080/big.bin | md5sum`, 30_000);
    assert.ok(
      sums.has(big.stdout.split(' ')[0]!),
      `${a}: ${big.stdout}${big.stderr} not one of ${[...sums].join(' ')}`,
    );
  }
  assert.ok(seen.size >= 2, `tasks on several hosts answer: ${[...seen].join(' ')}`);
});

test('cove: network rm my-ingress refused while web2 publishes; after service rm, the answer y removes it everywhere', async () => {
  const svcId = await dockerOk(M, ['service', 'inspect', '-f', '{{.ID}}', 'web2']);
  const busy = await M.cove(['network', 'rm', 'my-ingress'], { input: 'y\n' });
  assert.equal(busy.code, 1);
  assert.equal(busy.stdout, WARNING);
  assert.equal(
    busy.stderr.trim(),
    `Error response from daemon: rpc error: code = FailedPrecondition desc = ingress network cannot be removed because service ${svcId} depends on it`,
  );
  await M.coveOk(['service', 'rm', 'web2']);
  const yes = await M.cove(['network', 'rm', 'my-ingress'], { input: 'y\n' });
  assert.equal(yes.code, 0, yes.stderr);
  assert.equal(yes.stdout, `${WARNING}my-ingress\n`);
  for (const h of H) {
    await until(`my-ingress gone on ${h.name}`, async () => !(await netNames(h)).includes('my-ingress'));
    await until(`web2 tasks gone on ${h.name}`, async () => (await tasksOn(h, 'web2')).length === 0);
    const left = await h.sh(`ls ${h.execRoot}/overlay 2>/dev/null || true`);
    assert.equal(left.stdout.trim(), '', `${h.name}: overlay namespaces left: ${left.stdout}`);
  }
});
