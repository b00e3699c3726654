/**
 * Swarm mode on etcd, on simulated hosts (`cove lab`), driven by the real
 * docker CLI and by cove: the seed's "Create the swarm" steps word for word,
 * bad input, RBAC, faults.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HostLab, type LabHost } from '../../src/lab/hosts.js';
import { COVE_BIN, REPO } from '../lab/lab.js';
import { NetworkController } from '../../src/network/controller.js';

const DOCKER = '/usr/local/bin/docker';
const hasDocker = existsSync(DOCKER);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let lab: HostLab;
let h1: LabHost, h2: LabHost, h3: LabHost;

const docker = (h: LabHost, ...args: string[]) => lab.exec(h, [DOCKER, ...args]);
const cove = (h: LabHost, ...args: string[]) => lab.exec(h, [COVE_BIN, ...args]);

async function ok(p: Promise<{ code: number; stdout: string; stderr: string }>): Promise<string> {
  const r = await p;
  assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

function rows(table: string): string[][] {
  return table
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split(/\s{2,}/));
}

async function until<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  ms = 20_000,
  every = 100,
): Promise<{ value: T; ms: number }> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v !== undefined) return { value: v, ms: Date.now() - t0 };
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(every);
  }
}

/** Node ls rows on h keyed by hostname: [id, hostname, status, availability, manager status]. */
async function nodeTable(h: LabHost): Promise<Map<string, { status: string; avail: string; mgr: string }>> {
  const out = await ok(
    cove(h, 'node', 'ls', '--format', '{{.Hostname}}|{{.Status}}|{{.Availability}}|{{.ManagerStatus}}'),
  );
  return new Map(
    out
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [name, status, avail, mgr] = l.split('|') as [string, string, string, string];
        return [name, { status, avail, mgr }];
      }),
  );
}

before(async () => {
  lab = await HostLab.up({ hosts: 3, name: 'sw' });
  [h1, h2, h3] = lab.state.hosts as [LabHost, LabHost, LabHost];
});

after(async () => {
  // COVE_LAB_KEEP=1 keeps the lab for a post-mortem (`cove lab down --name sw` removes it).
  if (!process.env.COVE_LAB_KEEP) await lab?.down();
});

let workerToken = '';
let managerToken = '';

test(
  'seed, Create the swarm: init on the manager, workers join, node ls with filters, network ls',
  { skip: !hasDocker },
  async () => {
    const init = await ok(docker(h1, 'swarm', 'init', '--advertise-addr=192.0.2.11'));
    const m =
      /^Swarm initialized: current node \(([a-z0-9]{25})\) is now a manager\.\n\nTo add a worker to this swarm, run the following command:\n\n {4}docker swarm join --token (SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}) 192\.0\.2\.11:2377\n\nTo add a manager to this swarm, run 'docker swarm join-token manager' and follow the instructions\.\n+$/.exec(
        init,
      );
    assert.ok(m, init);
    const managerId = m[1]!;
    workerToken = m[2]!;
    managerToken = (await ok(docker(h1, 'swarm', 'join-token', '-q', 'manager'))).trim();
    assert.notEqual(managerToken, workerToken);
    assert.equal(managerToken.slice(0, 60), workerToken.slice(0, 60), 'same CA digest in both tokens');

    assert.equal(
      await ok(docker(h2, 'swarm', 'join', '--token', workerToken, '192.0.2.11:2377')),
      'This node joined a swarm as a worker.\n',
    );
    assert.equal(
      await ok(docker(h3, 'swarm', 'join', '--token', workerToken, '192.0.2.11:2377')),
      'This node joined a swarm as a worker.\n',
    );

    const ls = await ok(docker(h1, 'node', 'ls'));
    assert.match(ls.split('\n')[0]!, /^ID {28}HOSTNAME {3}STATUS {4}AVAILABILITY {3}MANAGER STATUS {3}ENGINE VERSION$/);
    const r = rows(ls);
    assert.equal(r.length, 3, ls);
    assert.deepEqual(
      r.map((x) => x.slice(1, 4)),
      [
        ['h1', 'Ready', 'Active'],
        ['h2', 'Ready', 'Active'],
        ['h3', 'Ready', 'Active'],
      ],
    );
    assert.deepEqual(
      r.map((x) => x.length),
      [6, 5, 5],
      'MANAGER STATUS only on the manager',
    );
    assert.equal(r[0]![4], 'Leader');
    assert.equal(r[0]![0], `${managerId} *`);

    const mgrs = rows(await ok(docker(h1, 'node', 'ls', '--filter', 'role=manager')));
    assert.deepEqual(
      mgrs.map((x) => x[1]),
      ['h1'],
    );
    const workers = rows(await ok(docker(h1, 'node', 'ls', '--filter', 'role=worker')));
    assert.deepEqual(
      workers.map((x) => x[1]),
      ['h2', 'h3'],
    );

    // Only a manager can list nodes: docker's words, exit 1.
    const onWorker = await docker(h2, 'node', 'ls');
    assert.equal(onWorker.code, 1);
    assert.equal(
      onWorker.stderr.trim(),
      "Error response from daemon: This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.",
    );

    // Step 4: every node lists ingress (overlay, swarm) and docker_gwbridge, once the network layer is cluster-aware.
    if (typeof (NetworkController.prototype as unknown as { attachCluster?: unknown }).attachCluster === 'function') {
      for (const h of [h1, h2, h3]) {
        const nets = await ok(docker(h, 'network', 'ls'));
        assert.match(nets, /\singress\s+overlay\s+swarm\n/, `${h.name}:\n${nets}`);
        assert.match(nets, /\sdocker_gwbridge\s+bridge\s+local\n/, `${h.name}:\n${nets}`);
      }
    }
  },
);

test('info reports Swarm as Docker does, on the manager and on a worker', { skip: !hasDocker }, async () => {
  const mgr = JSON.parse(await ok(docker(h1, 'info', '--format', '{{json .Swarm}}'))) as Record<string, unknown>;
  assert.equal(mgr.NodeAddr, '192.0.2.11');
  assert.equal(mgr.LocalNodeState, 'active');
  assert.equal(mgr.ControlAvailable, true);
  assert.equal(mgr.Nodes, 3);
  assert.equal(mgr.Managers, 1);
  assert.deepEqual(mgr.RemoteManagers, [{ NodeID: mgr.NodeID, Addr: '192.0.2.11:2377' }]);
  const cluster = mgr.Cluster as {
    ID: string;
    Spec: { Raft: { ElectionTick: number }; Orchestration: { TaskHistoryRetentionLimit: number } };
    TLSInfo: { TrustRoot: string };
    DataPathPort: number;
  };
  assert.match(cluster.ID, /^[a-z0-9]{25}$/);
  assert.equal(cluster.Spec.Raft.ElectionTick, 10);
  assert.equal(cluster.Spec.Orchestration.TaskHistoryRetentionLimit, 5);
  assert.match(cluster.TLSInfo.TrustRoot, /BEGIN CERTIFICATE/);
  assert.equal(cluster.DataPathPort, 4789);
  const wk = JSON.parse(await ok(docker(h2, 'info', '--format', '{{json .Swarm}}'))) as Record<string, unknown>;
  assert.deepEqual(Object.keys(wk).sort(), [
    'ControlAvailable',
    'Error',
    'LocalNodeState',
    'NodeAddr',
    'NodeID',
    'RemoteManagers',
  ]);
  assert.equal(wk.ControlAvailable, false);
  assert.equal(wk.NodeAddr, '192.0.2.12');
  assert.deepEqual(wk.RemoteManagers, mgr.RemoteManagers);
  // node inspect --pretty, through docker's own renderer.
  const pretty = await ok(docker(h1, 'node', 'inspect', 'self', '--pretty'));
  assert.match(pretty, /^ID:\t\t\t[a-z0-9]{25}\nHostname: +\th1\n/);
  assert.match(
    pretty,
    /Manager Status:\n Address:\t\t192\.0\.2\.11:2377\n Raft Status:\t\tReachable\n Leader:\t\tYes\n/,
  );
});

test('certificates: CN = node ID, OU = role, issued by the cluster CA; etcd answers only mutual TLS', async () => {
  const { X509Certificate } = await import('node:crypto');
  const ca = new X509Certificate(readFileSync(join(h2.dataRoot, 'swarm/certs/ca.crt')));
  const cert = new X509Certificate(readFileSync(join(h2.dataRoot, 'swarm/certs/node.crt')));
  const id = (JSON.parse(readFileSync(join(h2.dataRoot, 'swarm/state.json'), 'utf8')) as { nodeId: string }).nodeId;
  assert.ok(cert.verify(ca.publicKey));
  assert.match(cert.subject, new RegExp(`OU=swarm-worker\\nCN=${id}`));
  // Plain HTTP to the etcd member is refused; TLS without a client certificate too.
  const plain = await lab.exec(h2, [
    'sh',
    '-c',
    'printf "GET /version HTTP/1.0\\r\\n\\r\\n" | busybox nc -w 2 192.0.2.11 2379 | head -c 200; echo',
  ]);
  assert.doesNotMatch(plain.stdout, /etcdserver/);
  const noCert = await lab.exec(
    h2,
    ['openssl', 's_client', '-connect', '192.0.2.11:2379', '-CAfile', join(h2.dataRoot, 'swarm/certs/ca.crt')],
    10_000,
  );
  assert.doesNotMatch(noCert.stdout, /etcdserver/);
});

/** Runs an EtcdStore put inside host h with h's own node certificate; returns 'ok' or the error. */
async function putAs(h: LabHost, key: string, owner: string): Promise<string> {
  const script = `
    import { EtcdStore } from '${REPO}/dist/src/store/etcd.js';
    import { readFileSync } from 'node:fs';
    const d = '${h.dataRoot}/swarm/certs/';
    const s = new EtcdStore({ endpoints: ['https://192.0.2.11:2379'], prefix: 'cove/', requestTimeoutMs: 3000, markerOwner: '${owner}',
      tls: { ca: readFileSync(d + 'ca.crt'), cert: readFileSync(d + 'node.crt'), key: readFileSync(d + 'node.key') } });
    try { await s.put(${JSON.stringify(key)}, 'x'); console.log('ok'); } catch (e) { console.log('ERR ' + e.message); }
    await s.close(); process.exit(0);`;
  const r = await lab.exec(h, [process.execPath, '--no-deprecation', '--input-type=module', '-e', script], 20_000);
  return r.stdout.trim();
}

/** etcdctl inside host h with h's own node certificate (etcd's user = the certificate's CN). */
async function etcdctlAs(h: LabHost, ...args: string[]): Promise<{ code: number; out: string }> {
  const d = join(h.dataRoot, 'swarm/certs');
  const r = await lab.exec(
    h,
    [
      'etcdctl',
      '--endpoints=https://192.0.2.11:2379',
      `--cacert=${d}/ca.crt`,
      `--cert=${d}/node.crt`,
      `--key=${d}/node.key`,
      '--command-timeout=5s',
      ...args,
    ],
    20_000,
  );
  return { code: r.code, out: `${r.stdout}${r.stderr}`.trim() };
}

test('RBAC: a worker writes only its own records', async () => {
  const idOf = (h: LabHost) =>
    (JSON.parse(readFileSync(join(h.dataRoot, 'swarm/state.json'), 'utf8')) as { nodeId: string }).nodeId;
  const id = idOf(h2);
  const other = idOf(h3);
  const manager = idOf(h1);
  // The daemon's own client (EtcdStore, markers under \0txn/<id>/) writes its own records.
  assert.equal(await putAs(h2, `node-local/${id}/probe`, id), 'ok');
  assert.match(await putAs(h2, `nodes/${id}`, id), /permission denied/);
  assert.match(await putAs(h2, 'swarm/cluster', id), /permission denied/);
  assert.match(await putAs(h2, `alive/${other}`, id), /permission denied/);
  // Its write markers must be its own: posing as another node's client is refused.
  assert.match(await putAs(h2, `node-local/${id}/probe`, other), /permission denied/);

  // etcdctl with the worker's certificate: its own keys yes, another node's no.
  for (const key of [
    `endpoints/${id}/n/e`,
    `logs/resp/${id}/r`,
    `logs/req/${id}/r`,
    `node-local/${id}/x`,
    `node-local/${id}/tasks/t`,
    `tunnels/wireguard/${id}/100.64.0.9`,
  ]) {
    const r = await etcdctlAs(h2, 'put', `cove/${key}`, 'x');
    assert.equal(r.code, 0, `${key}: ${r.out}`);
    assert.equal((await etcdctlAs(h2, 'del', `cove/${key}`)).code, 0);
  }
  for (const victim of [other, manager]) {
    for (const key of [
      `endpoints/${victim}/n/e`,
      `logs/resp/${victim}/r`,
      `logs/req/${victim}/r`,
      `node-local/${victim}/x`,
      `node-local/${victim}/tasks/t`,
      `tunnels/wireguard/${victim}/100.64.0.9`,
      `alive/${victim}`,
      `nodes/${victim}`,
    ]) {
      const r = await etcdctlAs(h2, 'put', `cove/${key}`, 'x');
      assert.notEqual(r.code, 0, `the worker wrote ${JSON.stringify(key)}`);
      assert.match(r.out, /permission denied/, key);
    }
  }
  // Task records are the managers' (a worker's agent reports under node-local/<self>/tasks/).
  for (const key of [
    'networks/x',
    'netnames/x',
    'services/x',
    'tasks/x',
    'ipam/config',
    'ipam/subnets/10.9.0.0_24',
    'ipam/vni/9999',
    'tunnels/wireguard/100.64.0.9',
    'swarm/cluster',
    'secret/tokens',
  ]) {
    const r = await etcdctlAs(h2, 'put', `cove/${key}`, 'x');
    assert.match(r.out, /permission denied/, key);
  }
  // Deleting a range that spans other nodes' records is refused too.
  assert.match((await etcdctlAs(h2, 'del', '--prefix', 'cove/endpoints/')).out, /permission denied/);
  // Secrets are not even readable.
  assert.match((await etcdctlAs(h2, 'get', 'cove/secret/ca')).out, /permission denied/);
  // A manager's certificate has the root role.
  const m = await etcdctlAs(h1, 'put', `cove/node-local/${other}/probe`, 'x');
  assert.equal(m.code, 0, m.out);
  await etcdctlAs(h1, 'del', `cove/node-local/${other}/probe`);
});

test(
  'bad input: join twice, init twice, malformed/wrong/rotated tokens, bad addresses; nothing half-made',
  { skip: !hasDocker },
  async () => {
    const already =
      'Error response from daemon: This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and join another one.';
    let r = await docker(h2, 'swarm', 'join', '--token', workerToken, '192.0.2.11:2377');
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim(), already);
    r = await docker(h1, 'swarm', 'init', '--advertise-addr', '192.0.2.11');
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim(), already);
    // Last manager may not leave without --force.
    r = await docker(h1, 'swarm', 'leave');
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr.trim(),
      'Error response from daemon: You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.',
    );

    // h3 leaves (a worker: no warning) and is then outside the swarm.
    assert.equal(await ok(docker(h3, 'swarm', 'leave')), 'Node left the swarm.\n');
    r = await docker(h3, 'node', 'ls');
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr.trim(),
      'Error response from daemon: This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.',
    );
    r = await docker(h3, 'swarm', 'leave');
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim(), 'Error response from daemon: This node is not part of a swarm');
    const before = (await nodeTable(h1)).size;

    const bad = async (token: string, addr: string, want: RegExp, extra: string[] = []) => {
      const t0 = Date.now();
      const res = await docker(h3, 'swarm', 'join', ...extra, '--token', token, addr);
      assert.equal(res.code, 1, res.stdout);
      assert.match(res.stderr, want);
      assert.ok(Date.now() - t0 < 15_000, 'answered within a timeout');
      assert.equal(existsSync(join(h3.dataRoot, 'swarm')), false, 'no local swarm state after a failed join');
    };
    await bad('SWMTKN-1-garbage', '192.0.2.11:2377', /invalid join token/);
    await bad(
      workerToken.slice(0, -1) + (workerToken.endsWith('a') ? 'b' : 'a'),
      '192.0.2.11:2377',
      /A valid join token is necessary to join this cluster/,
    );
    await bad(
      workerToken.replace(/^SWMTKN-1-./, (s) => s.slice(0, -1) + (s.endsWith('1') ? '2' : '1')),
      '192.0.2.11:2377',
      /remote CA does not match fingerprint/,
    );
    await bad(workerToken, '192.0.2.99:2377', /could not reach the manager at 192\.0\.2\.99:2377/);
    await bad(workerToken, '192.0.2.11:2377', /advertise address 10\.9\.9\.9 is not an address of this host/, [
      '--advertise-addr',
      '10.9.9.9',
    ]);

    // A rotated worker token refuses new joins and leaves joined nodes alone.
    const rot = await ok(docker(h1, 'swarm', 'join-token', '--rotate', 'worker'));
    assert.match(
      rot,
      /^Successfully rotated worker join token\.\n\nTo add a worker to this swarm, run the following command:\n\n {4}docker swarm join --token SWMTKN-1-/,
    );
    const fresh = (await ok(docker(h1, 'swarm', 'join-token', '-q', 'worker'))).trim();
    assert.notEqual(fresh, workerToken);
    await bad(workerToken, '192.0.2.11:2377', /A valid join token is necessary to join this cluster/);
    assert.equal((await nodeTable(h1)).size, before, 'failed joins made no node record');
    assert.equal((await nodeTable(h1)).get('h2')?.status, 'Ready', 'joined nodes are left alone');
    assert.equal(
      await ok(docker(h3, 'swarm', 'join', '--token', fresh, '192.0.2.11:2377')),
      'This node joined a swarm as a worker.\n',
    );
    workerToken = fresh;
    // The node that left shows Down until removed, as in Docker; remove it.
    const t = await nodeTable(h1);
    assert.equal([...t.keys()].filter((k) => k === 'h3').length, 1);
    const ids = (await ok(docker(h1, 'node', 'ls', '-q', '--filter', 'name=h3'))).trim().split('\n');
    for (const id of ids) {
      const st = (await ok(docker(h1, 'node', 'inspect', '-f', '{{.Status.State}}', id))).trim();
      if (st === 'down') assert.equal(await ok(docker(h1, 'node', 'rm', id)), `${id}\n`);
    }
    assert.equal(rows(await ok(docker(h1, 'node', 'ls', '--filter', 'name=h3'))).length, 1);
  },
);

test('nodes: update availability, promote and demote, rm refuses a ready node', { skip: !hasDocker }, async () => {
  assert.equal(await ok(docker(h1, 'node', 'update', '--availability', 'drain', 'h2')), 'h2\n');
  assert.equal((await nodeTable(h1)).get('h2')?.avail, 'Drain');
  await ok(docker(h1, 'node', 'update', '--availability', 'active', 'h2'));
  const r = await docker(h1, 'node', 'rm', 'h2');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /node [a-z0-9]{25} is not down and can't be removed/);

  assert.equal(await ok(docker(h1, 'node', 'promote', 'h2')), 'Node h2 promoted to a manager in the swarm.\n');
  // A new member may win an election at once (a slow leader on a loaded machine): Leader counts too.
  const { ms } = await until(
    'h2 reachable',
    async () => (['Reachable', 'Leader'].includes((await nodeTable(h1)).get('h2')?.mgr ?? '') ? true : undefined),
    30_000,
    200,
  );
  process.stdout.write(`# promote: Reachable after ${ms} ms\n`);
  // The promoted node now answers manager commands.
  assert.equal(rows(await ok(docker(h2, 'node', 'ls'))).length, 3);
  assert.equal(await ok(docker(h1, 'node', 'demote', 'h2')), 'Manager h2 demoted in the swarm.\n');
  await until('h2 worker', async () => ((await nodeTable(h1)).get('h2')?.mgr === '' ? true : undefined), 30_000, 200);
  await until(
    'h2 refuses node ls',
    async () => ((await docker(h2, 'node', 'ls')).code === 1 ? true : undefined),
    15_000,
    200,
  );
  const demoteLast = await docker(h1, 'node', 'demote', 'h1');
  assert.equal(demoteLast.code, 1);
  assert.match(demoteLast.stderr, /attempting to demote the last manager of the swarm/);
});

test('faults: kill -9 of a worker daemon: Down within seconds, Ready again after restart; manager restart re-adopts etcd', async () => {
  await lab.stopDaemon(h3, 'SIGKILL');
  const down = await until(
    'h3 Down',
    async () => ((await nodeTable(h1)).get('h3')?.status === 'Down' ? true : undefined),
    20_000,
    100,
  );
  process.stdout.write(`# worker kill -9 -> Down in ${down.ms} ms\n`);
  assert.ok(down.ms < 8000, `Down after ${down.ms} ms`);
  await lab.startDaemon(h3);
  const ready = await until(
    'h3 Ready',
    async () => ((await nodeTable(h1)).get('h3')?.status === 'Ready' ? true : undefined),
    20_000,
    100,
  );
  process.stdout.write(`# worker restart -> Ready in ${ready.ms} ms\n`);

  const etcdPid = Number(readFileSync(join(h1.dataRoot, 'swarm/etcd/etcd.pid'), 'utf8'));
  await lab.stopDaemon(h1, 'SIGKILL');
  await lab.startDaemon(h1);
  await until(
    'manager answers again',
    async () => ((await cove(h1, 'node', 'ls')).code === 0 ? true : undefined),
    20_000,
    200,
  );
  assert.equal(
    Number(readFileSync(join(h1.dataRoot, 'swarm/etcd/etcd.pid'), 'utf8')),
    etcdPid,
    'the same etcd member, re-adopted',
  );
  await until(
    'h1 Leader (the only member)',
    async () => ((await nodeTable(h1)).get('h1')?.mgr === 'Leader' ? true : undefined),
    10_000,
    200,
  );
});

test('cove CLI: swarm inspect, join-token, node ls filters, leave --force', async () => {
  const sw = JSON.parse(await ok(cove(h1, 'swarm', 'inspect'))) as Array<{ JoinTokens: { Worker: string } }>;
  assert.equal(sw[0]!.JoinTokens.Worker, workerToken);
  assert.equal((await ok(cove(h1, 'swarm', 'join-token', '-q', 'worker'))).trim(), workerToken);
  const out = await ok(cove(h1, 'node', 'ls', '--filter', 'role=worker', '--format', '{{.Hostname}}'));
  assert.deepEqual(out.trim().split('\n').sort(), ['h2', 'h3']);
  const bad = await cove(h1, 'node', 'ls', '--filter', 'role=boss');
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /Invalid role 'boss', must be worker or manager/);
  for (const h of [h2, h3]) assert.equal(await ok(cove(h, 'swarm', 'leave')), 'Node left the swarm.\n');
  assert.equal(await ok(cove(h1, 'swarm', 'leave', '--force')), 'Node left the swarm.\n');
  assert.equal(existsSync(join(h1.dataRoot, 'swarm')), false);
  const info = JSON.parse(await ok(cove(h1, 'info', '--format', '{{json .Swarm}}'))) as { LocalNodeState: string };
  assert.equal(info.LocalNodeState, 'inactive');
});
