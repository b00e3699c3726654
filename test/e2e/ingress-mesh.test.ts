/**
 * The ingress routing mesh on a 3-host lab, seen from the outside world: a
 * client namespace on the underlay (192.0.2.100) that knows nothing but the
 * hosts' addresses. The seed's `my-nginx` (`--publish target=80,published=80`)
 * answers at port 80 of EVERY host, from tasks on several hosts, also at a
 * host running no task; udp too; mode=host only where a task runs;
 * `service update --publish-add/--publish-rm` changes what every node
 * answers while a connection through another port stays up; Docker's errors
 * for a port two services want and for a container wanting a mesh port;
 * `cove service ports` tells each node's truth; a restarted daemon answers
 * again at once. Driven with the real docker CLI (cove for Cove's own
 * command).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { type Lab, type RunResult } from '../lab/lab.js';
import { MultiHostLab } from '../lab/multihost.js';
import { docker, dockerOk, until } from '../lab/swarm-docker.js';

const CLIENT = '192.0.2.100';
let lab: MultiHostLab;
let H: Lab[];
const nodeIds: string[] = [];
const helpers: ChildProcess[] = [];

/** One HTTP GET from the outside world (the underlay client); the body, or null when nothing answered. */
async function fetchFromOutside(addr: string, port: number, path = '/who.txt'): Promise<string | null> {
  const r = await lab.underlay(`curl -s -m 3 http://${addr}:${port}${path}`, 10_000);
  return r.code === 0 ? r.stdout.trim() : null;
}

/** Which tasks answer `n` requests at addr:port. */
async function whoAnswers(addr: string, port: number, n = 12): Promise<string[]> {
  const r = await lab.underlay(
    `for i in $(seq 1 ${n}); do curl -s -m 3 http://${addr}:${port}/who.txt; echo; done`,
    60_000,
  );
  return r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

/** The task containers of a service on one host (IDs). */
async function tasksOn(h: Lab, service: string): Promise<string[]> {
  const out = await dockerOk(h, ['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${service}`]);
  return out.split('\n').filter(Boolean);
}

/** Every task's page names the task (its container's hostname). */
async function nameTasks(service: string): Promise<void> {
  for (const h of H)
    for (const id of await tasksOn(h, service)) await dockerOk(h, ['exec', id, 'sh', '-c', 'hostname > /www/who.txt']);
}

before(async () => {
  lab = await MultiHostLab.create('im', 3);
  H = lab.hosts;
  await lab.startSwarm({ images: ['alpine', 'nginx'], role: 'worker' });
  for (const h of H) nodeIds.push(await dockerOk(h, ['info', '-f', '{{.Swarm.NodeID}}']));
  // The outside world: one address on the underlay, nothing else.
  const r = await lab.underlay(`ip addr add ${CLIENT}/24 dev ul0`);
  assert.equal(r.code, 0, r.stderr);
});

after(async () => {
  for (const c of helpers) if (c.exitCode === null && c.pid) process.kill(c.pid, 'SIGKILL');
  await lab?.destroy();
});

test('every node has an ingress sandbox on ingress and docker_gwbridge (docker network inspect ingress shows ingress-sbox)', async () => {
  for (const h of H) {
    await until(`ingress-sbox on ${h.name}`, async () => {
      const [n] = JSON.parse(await dockerOk(h, ['network', 'inspect', 'ingress'])) as Array<{
        Containers: Record<string, { Name: string; IPv4Address: string }>;
      }>;
      const sb = n!.Containers['ingress-sbox'];
      return Boolean(sb && sb.Name === 'ingress-endpoint' && sb.IPv4Address.startsWith('10.0.0.'));
    });
  }
});

test('seed: my-nginx --publish target=80,published=80 answers at port 80 of every host, from tasks on several hosts; a host with no task answers too', async () => {
  await dockerOk(H[0]!, ['network', 'create', '-d', 'overlay', 'mesh-net']);
  // Two replicas kept off host 3, so host 3 has no task of its own.
  await dockerOk(
    H[0]!,
    [
      'service',
      'create',
      '--name',
      'my-nginx',
      '--publish',
      'target=80,published=80',
      '--replicas=2',
      '--constraint',
      `node.id!=${nodeIds[2]}`,
      '--network',
      'mesh-net',
      'nginx',
      // nginx's page on 80, and the same pages on 8000 too (for --publish-add later).
      'sh',
      '-c',
      'busybox httpd -p 8000 -h /www && exec busybox httpd -f -p 80 -h /www',
    ],
    120_000,
  );
  await nameTasks('my-nginx');
  assert.equal((await tasksOn(H[2]!, 'my-nginx')).length, 0, 'host 3 runs no task');
  const all = new Set<string>();
  for (let i = 0; i < 3; i++) {
    await until(`port 80 at ${lab.addr(i)}`, async () => (await fetchFromOutside(lab.addr(i), 80)) !== null);
    const who = await whoAnswers(lab.addr(i), 80);
    assert.equal(who.length, 12, `every request at ${lab.addr(i)} answered: ${who.join(' ')}`);
    for (const w of who) all.add(w);
    if (i === 2)
      assert.ok(new Set(who).size >= 2, `host 3 (no task) reaches tasks on both other hosts: ${who.join(' ')}`);
  }
  assert.equal(all.size, 2, `both tasks answer: ${[...all].join(' ')}`);
  const page = await fetchFromOutside(lab.addr(2), 80, '/');
  assert.match(page ?? '', /Welcome to nginx!/);
  const [svc] = JSON.parse(await dockerOk(H[0]!, ['service', 'inspect', 'my-nginx'])) as Array<{
    Endpoint: { Ports: Array<{ PublishedPort: number; TargetPort: number; PublishMode: string; Protocol: string }> };
  }>;
  assert.deepEqual(svc!.Endpoint.Ports, [
    { Protocol: 'tcp', TargetPort: 80, PublishedPort: 80, PublishMode: 'ingress' },
  ]);
});

test('cove service ports: each node holds the port, has the rule, knows both backends and reaches them', async () => {
  for (const h of H) {
    const st = JSON.parse(await h.coveOk(['service', 'ports', 'my-nginx', '--format', '{{json .}}'])) as {
      Ports: Array<{
        PublishedPort: number;
        Held: boolean;
        HostRule: boolean;
        SandboxRule: boolean;
        Backends: Array<{ InKernel: boolean; Reachable: boolean; NodeID: string }>;
      }>;
    };
    assert.equal(st.Ports.length, 1, h.name);
    const p = st.Ports[0]!;
    assert.equal(p.PublishedPort, 80);
    assert.ok(p.Held && p.HostRule && p.SandboxRule, `${h.name}: ${JSON.stringify(p)}`);
    assert.equal(p.Backends.length, 2, h.name);
    assert.ok(
      p.Backends.every((b) => b.InKernel && b.Reachable),
      `${h.name}: ${JSON.stringify(p.Backends)}`,
    );
    assert.ok(p.Backends.every((b) => b.NodeID !== nodeIds[2]));
  }
  const table = await H[2]!.coveOk(['service', 'ports', 'my-nginx']);
  assert.match(table, /^PUBLISHED +TARGET +HELD +RULE +BACKENDS$/m);
  assert.match(table, /^80\/tcp +80 +yes +present +10\.0\.0\.\d+@\S+, 10\.0\.0\.\d+@\S+$/m);
});

test("the port is held on every node: docker run -p 80:80 and a second service on 80 get Docker's errors", async () => {
  const r = await docker(H[2]!, ['run', '-d', '--name', 'im-clash', '-p', '80:80', 'nginx']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /Bind for 0\.0\.0\.0:80 failed: port is already allocated/);
  const [svc] = JSON.parse(await dockerOk(H[0]!, ['service', 'inspect', 'my-nginx'])) as Array<{ ID: string }>;
  const s = await docker(H[0]!, ['service', 'create', '--name', 'other', '-p', '80:80', '--detach', 'nginx']);
  assert.notEqual(s.code, 0);
  assert.match(
    s.stderr,
    new RegExp(
      `rpc error: code = InvalidArgument desc = port '80' is already in use by service 'my-nginx' \\(${svc!.ID}\\) as an ingress port`,
    ),
  );
  assert.doesNotMatch(await dockerOk(H[0]!, ['service', 'ls', '--format', '{{.Name}}']), /other/);
  await dockerOk(H[2]!, ['rm', '-f', 'im-clash']);
});

test('udp: a published udp port answers at every host', async () => {
  await dockerOk(
    H[0]!,
    [
      'service',
      'create',
      '--name',
      'echo-udp',
      '--publish',
      'published=5353,target=5353,protocol=udp',
      '--replicas=2',
      '--constraint',
      `node.id!=${nodeIds[2]}`,
      'alpine',
      'sleep',
      '3600',
    ],
    120_000,
  );
  // A UDP responder in each task's network namespace: answers every datagram with the task's hostname.
  for (const h of H) {
    for (const id of await tasksOn(h, 'echo-udp')) {
      const key = await dockerOk(h, ['inspect', '-f', '{{.NetworkSettings.SandboxKey}}', id]);
      const host = await dockerOk(h, ['inspect', '-f', '{{.Config.Hostname}}', id]);
      const py = `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',5353))\nwhile True:\n d,a=s.recvfrom(2048)\n s.sendto(b'${host}\\n',a)\n`;
      helpers.push(spawn('nsenter', [`--net=${key}`, 'timeout', '300', 'python3', '-c', py], { stdio: 'ignore' }));
    }
  }
  const client = join(mkdtempSync(join(tmpdir(), 'cove-im-')), 'udp-client.py');
  writeFileSync(
    client,
    [
      'import socket, sys',
      'out = []',
      'for i in range(8):',
      '    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
      '    s.settimeout(2)',
      '    s.sendto(b"who", (sys.argv[1], 5353))',
      '    try: out.append(s.recvfrom(100)[0].decode().strip())',
      '    except Exception: out.append("-")',
      'print(" ".join(out))',
      '',
    ].join('\n'),
  );
  for (let i = 0; i < 3; i++) {
    let got = '';
    await until(`udp 5353 at ${lab.addr(i)}`, async () => {
      got = (await lab.underlay(`python3 ${client} ${lab.addr(i)}`, 30_000)).stdout.trim();
      return got.split(' ').filter((x) => x !== '-' && x !== '').length === 8;
    });
    if (i === 2) assert.ok(new Set(got.split(' ')).size >= 2, `host 3 (no task) reaches both tasks: ${got}`);
  }
  rmSync(dirname(client), { recursive: true, force: true });
  await dockerOk(H[0]!, ['service', 'rm', 'echo-udp']);
});

test('mode=host: the port answers only on the node running the task', async () => {
  await dockerOk(
    H[0]!,
    [
      'service',
      'create',
      '--name',
      'web-host',
      '--publish',
      'mode=host,target=80,published=8081',
      '--replicas=1',
      '--constraint',
      `node.id==${nodeIds[1]}`,
      'nginx',
    ],
    120_000,
  );
  await until('host-mode port on host 2', async () => (await fetchFromOutside(lab.addr(1), 8081, '/')) !== null);
  assert.equal(await fetchFromOutside(lab.addr(0), 8081, '/'), null);
  assert.equal(await fetchFromOutside(lab.addr(2), 8081, '/'), null);
  await dockerOk(H[0]!, ['service', 'rm', 'web-host']);
});

test("service update --publish-add/--publish-rm changes every node without dropping a connection through port 80 or restarting tasks; --publish-rm goes by target port, as docker's CLI", async () => {
  const before = (await dockerOk(H[0]!, ['service', 'ps', '-q', '--filter', 'desired-state=running', 'my-nginx']))
    .split('\n')
    .sort();
  const ports = async (): Promise<string> =>
    dockerOk(H[0]!, ['service', 'inspect', '-f', '{{json .Spec.EndpointSpec.Ports}}', 'my-nginx']);
  const only80 = '[{"Protocol":"tcp","TargetPort":80,"PublishedPort":80,"PublishMode":"ingress"}]';
  // A connection through host 3's port 80, held open across the updates: its request goes out after them
  // (one per pair of updates: busybox httpd waits 60 s at most for a request).
  const dir = mkdtempSync(join(tmpdir(), 'cove-im-'));
  const hold = (go: string): Promise<RunResult> =>
    lab.underlay(
      `(while [ ! -e ${go} ]; do sleep 0.2; done; printf 'GET /who.txt HTTP/1.0\\r\\n\\r\\n'; sleep 2) | busybox nc ${lab.addr(2)} 80`,
      120_000,
    );
  const release = async (go: string, held: Promise<RunResult>): Promise<void> => {
    writeFileSync(go, '');
    const r = await held;
    assert.match(r.stdout, /^HTTP\/1\.[01] 200 OK/, `the held connection still answers: ${r.stdout} ${r.stderr}`);
  };
  let held = hold(join(dir, 'go1'));
  await new Promise((r) => setTimeout(r, 1000));
  // Two published ports for one target (not 8081: web-host's task held it on node 2 a moment ago, and a port
  // some node's container still holds is refused).
  await dockerOk(H[0]!, [
    'service',
    'update',
    '--publish-add',
    'published=8080,target=8000',
    '--publish-add',
    'published=8082,target=8000',
    '--detach',
    'my-nginx',
  ]);
  for (let i = 0; i < 3; i++) {
    for (const p of [8080, 8082])
      await until(`${p} at ${lab.addr(i)}`, async () => (await fetchFromOutside(lab.addr(i), p)) !== null, 15_000);
  }
  // docker's CLI removes by target port (what it sends: every port whose target is not 8000): both go.
  await dockerOk(H[0]!, ['service', 'update', '--publish-rm', 'published=8080,target=8000', '--detach', 'my-nginx']);
  assert.equal(await ports(), only80);
  for (let i = 0; i < 3; i++) {
    for (const p of [8080, 8082])
      await until(`${p} gone at ${lab.addr(i)}`, async () => (await fetchFromOutside(lab.addr(i), p)) === null, 15_000);
  }
  await release(join(dir, 'go1'), held);
  // cove's CLI does the same: `--publish-rm 8000` (a target port) drops 8080:8000 again.
  held = hold(join(dir, 'go2'));
  await new Promise((r) => setTimeout(r, 1000));
  await H[0]!.coveOk(['service', 'update', '--publish-add', '8080:8000', '--detach', 'my-nginx']);
  for (let i = 0; i < 3; i++)
    await until(
      `8080 at ${lab.addr(i)} again`,
      async () => (await fetchFromOutside(lab.addr(i), 8080)) !== null,
      15_000,
    );
  await H[0]!.coveOk(['service', 'update', '--publish-rm', '8000', '--detach', 'my-nginx']);
  assert.equal(await ports(), only80);
  for (let i = 0; i < 3; i++)
    await until(
      `8080 gone at ${lab.addr(i)} again`,
      async () => (await fetchFromOutside(lab.addr(i), 8080)) === null,
      15_000,
    );
  await release(join(dir, 'go2'), held);
  rmSync(dir, { recursive: true, force: true });
  const after = (await dockerOk(H[0]!, ['service', 'ps', '-q', '--filter', 'desired-state=running', 'my-nginx']))
    .split('\n')
    .sort();
  assert.deepEqual(
    after,
    before,
    `no task restarted: ${await dockerOk(H[0]!, ['service', 'ps', '--no-trunc', 'my-nginx'])}`,
  );
  for (let i = 0; i < 3; i++) assert.notEqual(await fetchFromOutside(lab.addr(i), 80), null);
});

test('a daemon restart: the node answers on its published port again at once, other nodes never stopped', async () => {
  const h = H[2]!;
  await h.stopDaemon('SIGKILL');
  // Other nodes keep answering meanwhile.
  assert.notEqual(
    await fetchFromOutside(lab.addr(0), 80),
    null,
    await dockerOk(H[0]!, ['service', 'ps', '--no-trunc', 'my-nginx']),
  );
  await h.startDaemon();
  const t0 = Date.now();
  await until(
    'port 80 at host 3 after its restart',
    async () => (await fetchFromOutside(lab.addr(2), 80)) !== null,
    20_000,
    50,
  );
  const ms = Date.now() - t0;
  console.log(`# port 80 answered again ${ms} ms after the restarted daemon answered /_ping`);
  // Every request answered (by HTTP status, not by page: under heavy load the orchestrator may have replaced a
  // task meanwhile, whose page does not name it).
  const codes = (
    await lab.underlay(
      `for i in $(seq 1 8); do curl -s -o /dev/null -m 3 -w '%{http_code}\\n' http://${lab.addr(2)}:80/; done`,
      60_000,
    )
  ).stdout
    .split('\n')
    .filter(Boolean);
  assert.deepEqual(codes, Array(8).fill('200'), codes.join(' '));
  // (The kernel's tables outlive the daemon, so the port answers before the restarted daemon is back in the swarm;
  // its own pass then holds the port and owns the rules again.)
  let st = '';
  await until(
    'host 3 holds port 80 with both rules',
    async () => {
      st = await h.coveOk(['service', 'ports', 'my-nginx', '--format', '{{json .}}']);
      const p = (JSON.parse(st) as { Ports: Array<{ Held: boolean; HostRule: boolean; SandboxRule: boolean }> })
        .Ports[0]!;
      return p.Held && p.HostRule && p.SandboxRule;
    },
    60_000,
  ).catch((e: Error) => assert.fail(`${e.message}: ${st}`));
});

test('service rm: the port stops answering on every node and is free again', async () => {
  await dockerOk(H[0]!, ['service', 'rm', 'my-nginx']);
  for (let i = 0; i < 3; i++)
    await until(`80 gone at ${lab.addr(i)}`, async () => (await fetchFromOutside(lab.addr(i), 80)) === null, 15_000);
  const id = await dockerOk(H[2]!, ['run', '-d', '-p', '80:80', 'nginx']);
  await until(
    'a container now publishes 80 on host 3',
    async () => (await fetchFromOutside(lab.addr(2), 80, '/')) !== null,
    10_000,
  );
  await dockerOk(H[2]!, ['rm', '-f', id]);
});
