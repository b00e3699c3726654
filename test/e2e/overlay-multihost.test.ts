/**
 * Overlay networks on a 3-host swarm (the seed's "Use an overlay network"):
 * an attachable overlay with a container on each host, reached by name and
 * address in every direction (ping and TCP), network inspect on each host,
 * VXLAN with the network's VNI on the underlay, MTU, egress through
 * docker_gwbridge, a daemon killed while containers talk, a host's underlay
 * cut and restored, Docker's errors,
 * and removal leaving nothing behind. Driven with the real docker CLI and
 * with cove.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, INTERNET_IP, LAB_OFFLINE, type Lab, type RunResult } from '../lab/lab.js';
import { MultiHostLab } from '../lab/multihost.js';

const DOCKER = '/usr/local/bin/docker';
let lab: MultiHostLab;
let H: Lab[];

/** Each test: skipped when the daemon has no swarm mode. */

const docker = (h: Lab, args: string[], timeoutMs = 60_000): Promise<RunResult> =>
  run(DOCKER, args, { env: h.env, timeoutMs });
async function dockerOk(h: Lab, args: string[]): Promise<string> {
  const r = await docker(h, args);
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} on ${h.name}: ${r.stderr}${r.stdout}`);
  return r.stdout.trim();
}

async function retry(f: () => Promise<boolean>, tries = 10, gapMs = 100): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (await f()) return true;
    await new Promise((r) => setTimeout(r, gapMs));
  }
  return false;
}

before(async () => {
  lab = await MultiHostLab.create('ov', 3);
  H = lab.hosts;
  await lab.startSwarm({ images: ['alpine', 'nginx'], role: 'worker' });
});

after(async () => {
  await lab?.destroy();
});

test("overlay needs a manager: Docker's error on a worker; ingress and docker_gwbridge everywhere", async () => {
  const r = await docker(H[1]!, ['network', 'create', '-d', 'overlay', 'fromworker']);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /Cannot create a multi-host network from a worker node\. Please create the network from a manager node\./,
  );
  for (const h of H) {
    const ls = await dockerOk(h, ['network', 'ls', '--format', '{{.Name}} {{.Driver}} {{.Scope}}']);
    assert.match(ls, /^ingress overlay swarm$/m);
    assert.match(ls, /^docker_gwbridge bridge local$/m);
  }
});

test('an attachable overlay, one container per host: ping and TCP by name and address in every direction', async () => {
  await dockerOk(H[0]!, ['network', 'create', '-d', 'overlay', '--attachable', 'my-attachable-overlay']);
  // A worker does not list it until something there uses it.
  assert.doesNotMatch(await dockerOk(H[1]!, ['network', 'ls', '--format', '{{.Name}}']), /my-attachable-overlay/);
  for (let i = 0; i < 3; i++) {
    // Host 1 through cove, the others through the docker CLI.
    const args = ['run', '-d', '--name', `n${i + 1}`, '--network', 'my-attachable-overlay', 'nginx'];
    if (i === 0) await H[i]!.coveOk(args);
    else await dockerOk(H[i]!, args);
  }
  const ips: string[] = [];
  for (let i = 0; i < 3; i++)
    ips.push(
      await dockerOk(H[i]!, [
        'inspect',
        '-f',
        '{{(index .NetworkSettings.Networks "my-attachable-overlay").IPAddress}}',
        `n${i + 1}`,
      ]),
    );
  assert.equal(new Set(ips).size, 3, `addresses unique across the cluster: ${ips}`);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      if (i === j) continue;
      const from = `n${i + 1}`;
      for (const target of [`n${j + 1}`, ips[j]!]) {
        assert.ok(
          await retry(
            async () => (await docker(H[i]!, ['exec', from, 'ping', '-c', '1', '-W', '1', target])).code === 0,
            3,
          ),
          `${from} on host ${i + 1} pings ${target}`,
        );
        const w = await docker(H[i]!, ['exec', from, 'timeout', '5', 'wget', '-q', '-O', '-', `http://${target}/`]);
        assert.equal(w.code, 0, `${from} fetches http://${target}/: ${w.stderr}`);
      }
    }
  }
  // The worker now lists it.
  assert.match(
    await dockerOk(H[1]!, ['network', 'ls', '--format', '{{.Name}} {{.Scope}}']),
    /^my-attachable-overlay swarm$/m,
  );
});

test("network inspect on each host: scope swarm, the VNI, this host's container, peers of all three nodes, MTU", async () => {
  for (let i = 0; i < 3; i++) {
    const [n] = JSON.parse(await dockerOk(H[i]!, ['network', 'inspect', 'my-attachable-overlay'])) as Array<{
      Scope: string;
      Options: Record<string, string>;
      Containers: Record<string, { Name: string }>;
      Peers: Array<{ Name: string; IP: string }>;
    }>;
    assert.equal(n!.Scope, 'swarm');
    assert.match(n!.Options['com.docker.network.driver.overlay.vxlanid_list']!, /^\d+$/);
    assert.ok(Number(n!.Options['com.docker.network.driver.overlay.vxlanid_list']) >= 4096);
    assert.deepEqual(
      Object.values(n!.Containers).map((c) => c.Name),
      [`n${i + 1}`],
    );
    assert.deepEqual(n!.Peers.map((p) => p.IP).sort(), [lab.addr(0), lab.addr(1), lab.addr(2)]);
    // Each simulated host has its own hostname (UTS namespace): the peers are told apart by name.
    assert.deepEqual(
      n!.Peers.map((p) => `${p.Name} ${p.IP}`).sort(),
      [0, 1, 2].map((k) => `${MultiHostLab.hostname(k)} ${lab.addr(k)}`),
    );
    assert.equal(n!.Options['com.docker.network.driver.mtu'], '1450');
  }
});

test("the underlay carries VXLAN on UDP 4789 with the network's VNI; a 1400-byte unfragmented ping crosses", async () => {
  const vni = await dockerOk(H[0]!, [
    'network',
    'inspect',
    '-f',
    '{{index .Options "com.docker.network.driver.overlay.vxlanid_list"}}',
    'my-attachable-overlay',
  ]);
  const cap = lab.underlay('timeout 8 tcpdump -nn -c 2 -i ul0 udp port 4789 2>&1', 12_000);
  await new Promise((r) => setTimeout(r, 700));
  const sbKey = await dockerOk(H[0]!, ['inspect', '-f', '{{.NetworkSettings.SandboxKey}}', 'n1']);
  const ip2 = await dockerOk(H[1]!, [
    'inspect',
    '-f',
    '{{(index .NetworkSettings.Networks "my-attachable-overlay").IPAddress}}',
    'n2',
  ]);
  const big = await H[0]!.sh(`nsenter --net=${sbKey} ping -c 2 -W 2 -s 1400 -M do ${ip2}`);
  assert.equal(big.code, 0, big.stdout + big.stderr);
  const dump = await cap;
  assert.match(
    dump.stdout,
    new RegExp(
      `192\\.0\\.2\\.1[123]\\.\\d+ > 192\\.0\\.2\\.1[123]\\.4789: VXLAN, flags \\[I\\] \\(0x08\\), vni ${vni}`,
    ),
    dump.stdout,
  );
  const mtu = await H[0]!.sh(`nsenter --net=${sbKey} ip -o link show eth0`);
  assert.match(mtu.stdout, / mtu 1450 /);
});

test('egress: a container on the overlay reaches the stand-in internet through docker_gwbridge', async () => {
  if (LAB_OFFLINE) return; // needs the stand-in internet (COVE_LAB_OFFLINE=1 has none)
  const r = await docker(H[2]!, ['exec', 'n3', 'ping', '-c', '1', '-W', '2', INTERNET_IP]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const route = await dockerOk(H[2]!, ['exec', 'n3', 'ip', 'route']);
  assert.match(route, /^default via 172\.\d+\.0\.1 dev eth1/m);
});

test("a non-attachable overlay refuses standalone containers with Docker's message", async () => {
  await dockerOk(H[0]!, ['network', 'create', '-d', 'overlay', 'my-overlay']);
  const r = await docker(H[1]!, [
    'run',
    '-d',
    '--name',
    'refused',
    '--network',
    'my-overlay',
    'alpine',
    'sleep',
    '100',
  ]);
  assert.notEqual(r.code, 0);
  assert.match(
    r.stderr,
    /Could not attach to network my-overlay: rpc error: code = PermissionDenied desc = network my-overlay not manually attachable/,
  );
  await docker(H[1]!, ['rm', '-f', 'refused']);
  await dockerOk(H[0]!, ['network', 'rm', 'my-overlay']);
});

test('kill -9 of a daemon while containers talk: they keep talking; after restart the host is back in step', async () => {
  const ip1 = await dockerOk(H[0]!, [
    'inspect',
    '-f',
    '{{(index .NetworkSettings.Networks "my-attachable-overlay").IPAddress}}',
    'n1',
  ]);
  const sb2 = await dockerOk(H[1]!, ['inspect', '-f', '{{.NetworkSettings.SandboxKey}}', 'n2']);
  await H[1]!.stopDaemon('SIGKILL');
  const during = await H[1]!.sh(`nsenter --net=${sb2} ping -c 5 -i 0.2 -W 1 ${ip1}`);
  assert.equal(during.code, 0, `n2 -> n1 while host 2's daemon is down: ${during.stdout}`);
  // A container started elsewhere meanwhile is reachable from host 2 once its daemon is back.
  await dockerOk(H[2]!, ['run', '-d', '--name', 'late', '--network', 'my-attachable-overlay', 'nginx']);
  await H[1]!.startDaemon();
  assert.ok(
    await retry(
      async () => (await docker(H[1]!, ['exec', 'n2', 'ping', '-c', '1', '-W', '1', 'late'])).code === 0,
      20,
      200,
    ),
    'host 2 resolves and reaches a container started while it was down',
  );
  await dockerOk(H[2]!, ['rm', '-f', 'late']);
});

test('host 3 loses the underlay for a while: local networking stays; after it returns, cross-host ping and TCP come back and a container started meanwhile is reached', async () => {
  await H[2]!.sh('ip link set eth1 down');
  try {
    // Cut off: nothing crosses, but host 3's container still reaches its own host's side (docker_gwbridge gateway).
    assert.notEqual(
      (await docker(H[2]!, ['exec', 'n3', 'ping', '-c', '1', '-W', '1', 'n1'])).code,
      0,
      'the underlay is really cut',
    );
    const gw = await dockerOk(H[2]!, [
      'network',
      'inspect',
      '-f',
      '{{(index .IPAM.Config 0).Gateway}}',
      'docker_gwbridge',
    ]);
    assert.equal(
      (await docker(H[2]!, ['exec', 'n3', 'ping', '-c', '1', '-W', '2', gw])).code,
      0,
      'local networking during the cut',
    );
    // Meanwhile a container starts on host 1: host 3 learns it from the store's watch when it is back.
    await dockerOk(H[0]!, ['run', '-d', '--name', 'cut1', '--network', 'my-attachable-overlay', 'nginx']);
    await new Promise((r) => setTimeout(r, 4000));
  } finally {
    await H[2]!.sh('ip link set eth1 up');
  }
  try {
    const t0 = Date.now();
    assert.ok(
      await retry(
        async () => (await docker(H[2]!, ['exec', 'n3', 'ping', '-c', '1', '-W', '1', 'n1'])).code === 0,
        60,
        500,
      ),
      'n3 -> n1 after the underlay returns',
    );
    assert.ok(
      await retry(
        async () => (await docker(H[0]!, ['exec', 'n1', 'ping', '-c', '1', '-W', '1', 'n3'])).code === 0,
        20,
        500,
      ),
      'n1 -> n3',
    );
    assert.ok(
      await retry(
        async () =>
          (await docker(H[2]!, ['exec', 'n3', 'timeout', '5', 'wget', '-q', '-O', '-', 'http://cut1/'])).code === 0,
        60,
        500,
      ),
      'n3 reaches (TCP, by name) the container started on host 1 during the cut',
    );
    process.stdout.write(`# underlay back -> cross-host ping and TCP again after ${Date.now() - t0} ms\n`);
  } finally {
    await docker(H[0]!, ['rm', '-f', 'cut1']);
  }
});

test('network rm: refused while any host has a container on it; then gone from every host, nothing left', async () => {
  const r = await docker(H[0]!, ['network', 'rm', 'my-attachable-overlay']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /has active endpoints/);
  for (let i = 0; i < 3; i++) await dockerOk(H[i]!, ['rm', '-f', `n${i + 1}`]);
  const id12 = (await dockerOk(H[0]!, ['network', 'inspect', '-f', '{{.Id}}', 'my-attachable-overlay']))
    .trim()
    .slice(0, 12);
  await dockerOk(H[0]!, ['network', 'rm', 'my-attachable-overlay']);
  for (const h of H) {
    assert.doesNotMatch(await dockerOk(h, ['network', 'ls', '--format', '{{.Name}}']), /my-attachable-overlay/);
    // Each host removes its part when the store's delete reaches it (a watch), so it may land just after rm returns.
    const dir = join(h.execRoot, 'overlay');
    // (The ingress overlay's namespace stays: every node's ingress sandbox is on it, as Docker's ingress_sbox is.)
    const left = (): string[] => (existsSync(dir) ? readdirSync(dir) : []).filter((d) => d.endsWith(id12));
    for (let i = 0; i < 50 && left().length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(left(), [], `no overlay namespace of the network left on ${h.name}`);
    const links = await h.sh('ip -o link show');
    assert.doesNotMatch(links.stdout, /vxlan/, `no vxlan left on ${h.name}`);
    // The only veth left in the host's namespace is the ingress sandbox's leg on docker_gwbridge.
    const veths = links.stdout.split('\n').filter((l) => /veth/.test(l));
    assert.ok(
      veths.length <= 1 && veths.every((l) => /master docker_gwbridge/.test(l)),
      `no container veth left on ${h.name}: ${veths.join('\n')}`,
    );
  }
});

const etcdctlAs = (h: Lab, ...args: string[]) => lab.etcdctlAs(h, ...args);

const nodeIdOf = (h: Lab): string =>
  (JSON.parse(readFileSync(join(h.dataRoot, 'swarm/state.json'), 'utf8')) as { nodeId: string }).nodeId;

test("concurrent runs on 3 hosts onto one attachable overlay: distinct addresses, all ping by name; a worker cannot touch another node's address claim; rm releases", async () => {
  await dockerOk(H[0]!, ['network', 'create', '-d', 'overlay', '--attachable', '--subnet', '10.77.0.0/24', 'race-net']);
  const nid = await dockerOk(H[0]!, ['network', 'inspect', '-f', '{{.Id}}', 'race-net']);
  const names = [0, 1, 2].flatMap((i) => [`r${i + 1}a`, `r${i + 1}b`]);
  const hostOf = (name: string) => H[Number(name[1]) - 1]!;
  try {
    // Every run at once: 6 claims racing on 3 nodes (2 per node, so a node also races itself).
    await Promise.all(
      names.map((n) =>
        dockerOk(hostOf(n), ['run', '-d', '--name', n, '--network', 'race-net', 'alpine', 'sleep', '600']),
      ),
    );
    const ips = await Promise.all(
      names.map((n) =>
        dockerOk(hostOf(n), ['inspect', '-f', '{{(index .NetworkSettings.Networks "race-net").IPAddress}}', n]),
      ),
    );
    assert.equal(new Set(ips).size, 6, `addresses unique across the cluster: ${ips.join(' ')}`);
    for (const ip of ips) assert.match(ip, /^10\.77\.0\.\d+$/);
    assert.ok(!ips.includes('10.77.0.1'), 'the gateway is never handed out');
    for (const from of names)
      for (const to of names) {
        if (from === to) continue;
        assert.ok(
          await retry(
            async () => (await docker(hostOf(from), ['exec', from, 'ping', '-c', '1', '-W', '1', to])).code === 0,
            3,
          ),
          `${from} pings ${to} by name`,
        );
      }

    // The claims: each node's under its own key, readable by every node.
    const worker = H[1]!;
    const self = nodeIdOf(worker);
    const other = nodeIdOf(H[2]!);
    const manager = nodeIdOf(H[0]!);
    const theirs = await etcdctlAs(worker, 'get', '--prefix', '--keys-only', `cove/ipam/node/${other}/${nid}/`);
    assert.equal(theirs.code, 0, theirs.out);
    const victim = theirs.out.split('\n').filter(Boolean);
    assert.equal(victim.length, 2, `host 3's two claims: ${theirs.out}`);
    assert.ok(
      victim.every((k) => ips.slice(4).includes(k.split('/').pop()!)),
      `${victim.join(' ')} vs ${ips.join(' ')}`,
    );
    // A worker's credentials: overwriting or deleting another node's claim, claiming in its name, or writing
    // the managers' claims is refused by etcd.
    for (const args of [
      ['put', victim[0]!, 'stolen'],
      ['del', victim[0]!],
      ['del', '--prefix', `cove/ipam/node/${other}/`],
      ['put', `cove/ipam/node/${manager}/${nid}/10.77.0.200`, 'x'],
      ['put', `cove/ipam/addr/${nid}/10.77.0.201`, 'vip:x'],
      ['del', '--prefix', 'cove/ipam/'],
    ]) {
      const r = await etcdctlAs(worker, ...args);
      assert.notEqual(r.code, 0, `the worker ran etcdctl ${args.join(' ')}`);
      assert.match(r.out, /permission denied/, args.join(' '));
    }
    assert.equal((await etcdctlAs(worker, 'get', victim[0]!, '--print-value-only')).out.length > 0, true);
    // Its own claims it may write (the daemon does, on every run).
    const own = `cove/ipam/node/${self}/${nid}/10.77.0.202`;
    assert.equal((await etcdctlAs(worker, 'put', own, 'probe')).code, 0);
    assert.equal((await etcdctlAs(worker, 'del', own)).code, 0);
  } finally {
    await Promise.all(names.map((n) => docker(hostOf(n), ['rm', '-f', n])));
  }
  // Container rm released every address; network rm leaves no claim.
  const left = await etcdctlAs(H[0]!, 'get', '--prefix', '--keys-only', 'cove/ipam/');
  assert.equal(left.code, 0, left.out);
  assert.deepEqual(
    left.out.split('\n').filter((k) => k.includes(`/${nid}/`)),
    [],
    'no address claim left after container rm',
  );
  await dockerOk(H[0]!, ['network', 'rm', 'race-net']);
});
