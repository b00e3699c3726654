/**
 * The routing mesh under faults and bad input, on a 3-host lab (one manager,
 * two workers), seen from the outside world (a client on the underlay,
 * 192.0.2.100) and driven with the real docker CLI:
 *   - a daemon restart (kill -9, then start): long-lived TCP connections
 *     through the other nodes survive it, and the restarted node's published
 *     port answers again; a prober measures how long the port did not answer
 *     (printed, never asserted: speed is for `npm run bench`);
 *   - a node cut off the network (its underlay link down): the published
 *     port keeps answering at the other nodes, its tasks come back on them,
 *     and when the link returns the node answers on the port again;
 *   - a published port some node's own container already holds (`docker run
 *     -p 8080:80` on node 2, then `service create --publish 8080:80`):
 *     docker's kind of error, and nothing made on any node; same for
 *     `service update --publish-add`; once the container is gone it works.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Lab } from '../lab/lab.js';
import { MultiHostLab } from '../lab/multihost.js';
import { docker, dockerOk, runningTasks, until } from '../lab/swarm-docker.js';

const CLIENT = '192.0.2.100';
let lab: MultiHostLab;
let H: Lab[];
let dir: string;
const children: ChildProcess[] = [];

/** Each task serves its own hostname at /who.txt, on port 80 (the stand-in nginx image's busybox httpd). */
const WHO = ['sh', '-c', 'hostname > /www/who.txt && exec busybox httpd -f -p 80 -h /www'];

/** A prober: one GET after another at addr:80, each line "<unix time> <1|0>", until the stop file exists. */
const PROBE = `import socket, sys, time, os
addr, stop = sys.argv[1], sys.argv[2]
end = time.time() + 240
while time.time() < end and not os.path.exists(stop):
    t, ok = time.time(), 0
    try:
        s = socket.create_connection((addr, 80), timeout=0.5)
        s.settimeout(0.5)
        s.sendall(b'GET /who.txt HTTP/1.0\\r\\n\\r\\n')
        ok = 1 if s.recv(16).startswith(b'HTTP/1') else 0
        s.close()
    except Exception:
        pass
    print('%.3f %d' % (t, ok), flush=True)
    time.sleep(0.05)
`;

/** Long-lived connections: opened at once (prints "open"), each sends its request only when the go file exists. */
const HOLD = `import socket, sys, time, os
go, addrs = sys.argv[1], sys.argv[2:]
conns = [socket.create_connection((a, 80), timeout=5) for a in addrs]
print('open', flush=True)
end = time.time() + 240
while not os.path.exists(go) and time.time() < end:
    time.sleep(0.1)
for a, s in zip(addrs, conns):
    try:
        s.settimeout(5)
        s.sendall(b'GET /who.txt HTTP/1.0\\r\\n\\r\\n')
        d = b''
        while True:
            c = s.recv(4096)
            if not c:
                break
            d += c
        print(a, d.split(b'\\r\\n')[0].decode(), d.strip().split(b'\\n')[-1].decode(), flush=True)
    except Exception as e:
        print(a, 'FAIL', e, flush=True)
`;

/** A python script run in the underlay namespace (the outside world), its output collected. */
function onUnderlay(script: string, args: string[]): { child: ChildProcess; out: () => string; done: Promise<void> } {
  const file = join(dir, `s${children.length}.py`);
  writeFileSync(file, script);
  const child = spawn('nsenter', [`--net=/run/netns/${lab.underlayNetns}`, 'python3', file, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let text = '';
  child.stdout!.on('data', (b: Buffer) => {
    text += b.toString();
  });
  child.stderr!.on('data', (b: Buffer) => {
    text += b.toString();
  });
  const done = new Promise<void>((r) => child.once('exit', () => r()));
  return { child, out: () => text, done };
}

/** Which tasks answer `n` requests at addr:80 (the lines; a request without answer gives none). */
async function whoAnswers(addr: string, n = 12): Promise<string[]> {
  const r = await lab.underlay(`for i in $(seq 1 ${n}); do curl -s -m 3 http://${addr}:80/who.txt; echo; done`, 90_000);
  return r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}
async function tasksOn(h: Lab, service: string): Promise<string[]> {
  return (await dockerOk(h, ['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${service}`]))
    .split('\n')
    .filter(Boolean);
}
async function hostnamesOn(h: Lab, service: string): Promise<string[]> {
  return Promise.all((await tasksOn(h, service)).map((id) => dockerOk(h, ['exec', id, 'hostname'])));
}
const nodeStatus = async (): Promise<string> =>
  dockerOk(H[0]!, ['node', 'ls', '--format', '{{.Hostname}} {{.Status}}']);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cove-if-'));
  lab = await MultiHostLab.create('if', 3);
  H = lab.hosts;
  await lab.startSwarm({ images: ['alpine', 'nginx'], role: 'worker' });
  const r = await lab.underlay(`ip addr add ${CLIENT}/24 dev ul0`);
  assert.equal(r.code, 0, r.stderr);
  await dockerOk(
    H[0]!,
    ['service', 'create', '--name', 'web', '--publish', 'published=80,target=80', '--replicas=3', 'nginx', ...WHO],
    180_000,
  );
  // The scheduler spreads the replicas: one on each node.
  await until(
    'one task of web on each node',
    async () => (await Promise.all(H.map((h) => tasksOn(h, 'web')))).every((t) => t.length === 1),
    60_000,
  );
});

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid) process.kill(c.pid, 'SIGKILL');
  await lab?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

test('a daemon restart (kill -9, start): connections held through the other nodes survive, and the node answers on its port again', async () => {
  for (let i = 0; i < 3; i++)
    await until(`80 at ${lab.addr(i)}`, async () => (await whoAnswers(lab.addr(i), 3)).length === 3, 60_000);
  const h = H[2]!;
  const names = new Set((await Promise.all(H.map((x) => hostnamesOn(x, 'web')))).flat());
  const stop = join(dir, 'stop');
  const probe = onUnderlay(PROBE, [lab.addr(2), stop]);
  await until('the prober sees node 3 answer', async () => / 1\n/.test(probe.out()), 20_000);
  // Six connections held open through nodes 1 and 2 (spread over the three tasks, node 3's among them);
  // each sends its request once node 3 is back (busybox httpd waits 60 s at most for it).
  const go = join(dir, 'go');
  const hold = onUnderlay(HOLD, [go, lab.addr(0), lab.addr(1), lab.addr(0), lab.addr(1), lab.addr(0), lab.addr(1)]);
  await until('held connections open', async () => hold.out().includes('open'), 20_000, 50);
  const tKill = Date.now() / 1000;
  await h.stopDaemon('SIGKILL');
  await new Promise((r) => setTimeout(r, 2000));
  const tStart = Date.now() / 1000;
  await h.startDaemon();
  const tPing = Date.now() / 1000;
  await until(
    'node 3 answers on 80 after its restart',
    async () =>
      probe
        .out()
        .split('\n')
        .some((l) => {
          const [t, ok] = l.split(' ');
          return ok === '1' && Number(t) > tPing;
        }),
    30_000,
    50,
  );
  writeFileSync(go, '');
  await new Promise((r) => setTimeout(r, 3000));
  writeFileSync(stop, '');
  await probe.done;
  const lines = probe
    .out()
    .split('\n')
    .map((l) => l.split(' '))
    .filter((p) => p.length === 2)
    .map(([t, ok]) => ({ t: Number(t), ok: ok === '1' }));
  const during = lines.filter((l) => l.t >= tKill);
  const failed = during.filter((l) => !l.ok);
  // The longest run of unanswered probes after the kill.
  let gap = 0;
  let from: number | undefined;
  for (const l of during) {
    if (!l.ok) from ??= l.t;
    else if (from !== undefined) {
      gap = Math.max(gap, l.t - from);
      from = undefined;
    }
  }
  const firstAfterPing = during.find((l) => l.ok && l.t > tPing);
  console.log(
    `# node 3 restart: ${during.length} probes from the kill, ${failed.length} unanswered; longest silence ${Math.round(gap * 1000)} ms; ` +
      `daemon down ${Math.round((tStart - tKill) * 1000)} ms, start to /_ping ${Math.round((tPing - tStart) * 1000)} ms, ` +
      `first answer ${firstAfterPing ? Math.round((firstAfterPing.t - tPing) * 1000) : '-'} ms after /_ping`,
  );
  assert.ok(firstAfterPing, 'node 3 answers after its restart');

  // The held connections: every one answers its (late) request, from a task of web.
  await hold.done;
  const rows = hold
    .out()
    .split('\n')
    .filter((l) => l.startsWith('192.0.2.'));
  assert.equal(rows.length, 6, hold.out());
  for (const r of rows) {
    const parts = r.split(' ');
    const code = parts[1];
    const who = parts.at(-1);
    assert.ok(code === 'HTTP/1.0' || code === 'HTTP/1.1', `a held connection answered: ${r}\n${hold.out()}`);
    assert.ok(names.has(who!), `answered by a task of web: ${r} (${[...names].join(' ')})`);
  }
  console.log(`# held connections answered by: ${rows.map((r) => r.split(' ').pop()).join(' ')}`);
  // The restarted daemon's own pass (once it is back in the swarm) holds the port and owns the rules again.
  let st = '';
  await until(
    'node 3 holds port 80 with both rules',
    async () => {
      st = await h.coveOk(['service', 'ports', 'web', '--format', '{{json .}}']);
      const p = (
        JSON.parse(st) as {
          Ports: Array<{ Held: boolean; HostRule: boolean; SandboxRule: boolean; Backends: unknown[] }>;
        }
      ).Ports[0]!;
      return p.Held && p.HostRule && p.SandboxRule && p.Backends.length === 3;
    },
    60_000,
  ).catch((e: Error) => assert.fail(`${e.message}: ${st}`));
  assert.equal((await whoAnswers(lab.addr(2), 9)).length, 9);
});

test('a node cut off the network: the port keeps answering at the other nodes, its task moves to them, and it answers again when back', async () => {
  // (After the restart above the swarm may still be moving node 3's task back and forth: wait until it settles.)
  await until(
    'web settled: 3 running tasks, each a container',
    async () => {
      const n = (await Promise.all(H.map((h) => tasksOn(h, 'web')))).reduce((a, t) => a + t.length, 0);
      return n === 3 && (await runningTasks(H[0]!, 'web')) === 3;
    },
    90_000,
  );
  const vi = (await tasksOn(H[1]!, 'web')).length ? 1 : 2;
  const oi = 3 - vi;
  const victim = H[vi]!;
  assert.ok((await tasksOn(victim, 'web')).length >= 1, `${victim.name} runs a task of web`);
  const cut = await victim.sh('ip link set eth1 down');
  assert.equal(cut.code, 0, cut.stderr);
  try {
    const t0 = Date.now();
    await until('the victim is Down', async () => /Down/.test(await nodeStatus()), 60_000, 100);
    const down = Date.now() - t0;
    const back = await until(
      '3 tasks running on the other two nodes',
      async () => {
        const n = (await Promise.all([H[0]!, H[oi]!].map((h) => tasksOn(h, 'web')))).reduce((a, t) => a + t.length, 0);
        if (n < 3) return false;
        return (await runningTasks(H[0]!, 'web')) === 3;
      },
      60_000,
      200,
    );
    console.log(`# node ${vi + 1} cut off: Down after ${down} ms, 3 tasks running on the others ${back} ms later`);
    const survivors = new Set((await Promise.all([H[0]!, H[oi]!].map((h) => hostnamesOn(h, 'web')))).flat());
    assert.equal(survivors.size, 3);
    for (const i of [0, oi]) {
      // The mesh follows the tasks: every request answered, by a task on a node still there.
      await until(
        `every request at ${lab.addr(i)} answered by the survivors`,
        async () => {
          const who = await whoAnswers(lab.addr(i), 12);
          return who.length === 12 && who.every((w) => survivors.has(w));
        },
        30_000,
      );
    }
  } finally {
    await victim.sh('ip link set eth1 up');
  }
  await until('the victim Ready again', async () => !/Down/.test(await nodeStatus()), 90_000);
  await until('the victim runs no stale task', async () => (await tasksOn(victim, 'web')).length === 0, 60_000);
  await until(
    `the victim answers on 80 again (${lab.addr(vi)})`,
    async () => (await whoAnswers(lab.addr(vi), 6)).length === 6,
    30_000,
  );
});

test("a port some node's container holds: service create --publish and update --publish-add are refused, nothing made on any node", async () => {
  const c = await dockerOk(H[1]!, ['run', '-d', '--name', 'if-holder', '-p', '8080:80', 'nginx']);
  await until(
    'the container answers at node 2:8080',
    async () => (await lab.underlay(`curl -s -m 3 http://${lab.addr(1)}:8080/`, 10_000)).stdout.includes('nginx'),
    30_000,
  );
  const nodeId = await dockerOk(H[1]!, ['info', '-f', '{{.Swarm.NodeID}}']);
  const hostname = await dockerOk(H[0]!, ['node', 'inspect', '-f', '{{.Description.Hostname}}', nodeId]);
  const want = `Error response from daemon: rpc error: code = InvalidArgument desc = port '8080' is already in use on node '${hostname}' (${nodeId}): Bind for 0.0.0.0:8080 failed: port is already allocated`;
  let r = await docker(H[0]!, ['service', 'create', '--detach', '--name', 'clash', '--publish', '8080:80', 'nginx']);
  assert.equal(r.code, 1, `refused: ${r.stdout}`);
  assert.equal(r.stderr.split('\n')[0], want);
  assert.doesNotMatch(await dockerOk(H[0]!, ['service', 'ls', '--format', '{{.Name}}']), /clash/);
  // update --publish-add too; the service keeps its ports.
  const u = await docker(H[0]!, ['service', 'update', '--detach', '--publish-add', '8080:80', 'web']);
  assert.equal(u.code, 1);
  assert.equal(u.stderr.split('\n')[0], want);
  assert.equal(
    await dockerOk(H[0]!, ['service', 'inspect', '-f', '{{json .Endpoint.Ports}}', 'web']),
    '[{"Protocol":"tcp","TargetPort":80,"PublishedPort":80,"PublishMode":"ingress"}]',
  );
  // Nothing half-made: no node publishes 8080 (node 1 and 3 refuse it, node 2's container still has it).
  for (const i of [0, 2])
    assert.equal(
      (await lab.underlay(`curl -s -m 2 http://${lab.addr(i)}:8080/`, 10_000)).code === 0,
      false,
      `nothing at ${lab.addr(i)}:8080`,
    );
  assert.match((await lab.underlay(`curl -s -m 3 http://${lab.addr(1)}:8080/`, 10_000)).stdout, /nginx/);
  for (const h of H) {
    const held = await h.sh(`nft list table ip cove_mesh`);
    assert.doesNotMatch(held.stdout, /\b8080\b/, `${h.name}: ${held.stdout}`);
  }
  // Once the container is gone, the same command works and 8080 answers at every node.
  await dockerOk(H[1]!, ['rm', '-f', c]);
  await until(
    "the port is free in the swarm's eyes",
    async () => {
      r = await docker(H[0]!, [
        'service',
        'create',
        '--detach',
        '--name',
        'clash',
        '--publish',
        '8080:80',
        'nginx',
        ...WHO,
      ]);
      return r.code === 0;
    },
    20_000,
    500,
  );
  for (let i = 0; i < 3; i++) {
    await until(
      `8080 at ${lab.addr(i)}`,
      async () => (await lab.underlay(`curl -s -m 3 http://${lab.addr(i)}:8080/who.txt`, 10_000)).code === 0,
      60_000,
    );
  }
  await dockerOk(H[0]!, ['service', 'rm', 'clash']);
});
