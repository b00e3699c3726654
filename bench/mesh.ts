/**
 * Workload 14 (issue #14): the ingress routing mesh on three simulated hosts
 * (test/lab/multihost.ts, a manager and two workers), Cove only: Docker's
 * mesh needs IPVS, which this kernel lacks, and Podman has no swarm.
 * Measured from the outside world (a client namespace on the underlay,
 * 192.0.2.100), with the cove CLI driving:
 *   - req/s through the mesh entering at a node with no task (host 3's
 *     published port; the one task runs on host 1) against straight to that
 *     task (a mode=host port on host 1, DNAT to the container alone), and the
 *     mesh entering at the task's own node, in interleaved rounds (the order
 *     turns each round, ABBA), each round also measuring the kernel floor: the
 *     same two paths built by hand with ip and nft (meshFloor below), so the
 *     share the mesh reaches can be told from what this machine's kernel path
 *     allows. Load: ApacheBench (`ab`, C, no keep-alive; the node client
 *     costs ~1 ms of CPU per request here, which hid the path's cost), 8
 *     connections: the stand-in nginx is busybox httpd, whose listen backlog
 *     is 9, and with 16 connections its accept queue overflowed (ListenOverflows
 *     in the task's netns), so 1-s SYN retransmits decided the figure;
 *   - `service create --publish` until every node answers on the port;
 *   - the per-node cost of a rule update (`service update --publish-add` of
 *     one port) with 1 and with 100 published ports: the kernel update time
 *     each node's mesh logs ('ingress mesh programmed': hostMs, sandboxMs),
 *     and the time until every node answers on the new port.
 * Everything runs in lab namespaces and is removed afterwards.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { Lab } from '../test/lab/lab.js';
import { MultiHostLab } from '../test/lab/multihost.js';
import type { MetricDef } from './results.js';
import { deleteNetns, must, pidsInNetns, run, sleep } from './exec.js';
import type { Ctx, Workload } from './workloads.js';

const CLIENTS = fileURLToPath(new URL('./clients/', import.meta.url));
const ID = 14;
const CLIENT = '192.0.2.100';
/** Below busybox httpd's listen backlog (9): see the header. */
const CONNS = 8;

const M: Record<string, MetricDef> = {
  rpsMesh: {
    key: 'rps-mesh-notask',
    label: 'req/s through the mesh at a node with no task (1 task, 8 conns, no keep-alive)',
    unit: 'req/s',
    better: 'higher',
  },
  rpsDirect: {
    key: 'rps-direct',
    label: 'req/s straight to the task (mode=host port on its node)',
    unit: 'req/s',
    better: 'higher',
  },
  rpsShare: {
    key: 'rps-mesh-share',
    label: 'mesh (node with no task) req/s as % of straight to the task',
    unit: '%',
    better: 'higher',
  },
  rpsFloorMesh: {
    key: 'rps-floor-mesh',
    label: 'floor: req/s through the same path built by hand (DNAT, netns, DNAT+SNAT, VXLAN) to a busybox httpd',
    unit: 'req/s',
    better: 'higher',
  },
  rpsFloorDirect: {
    key: 'rps-floor-direct',
    label: 'floor: req/s straight to that httpd (one DNAT), built by hand',
    unit: 'req/s',
    better: 'higher',
  },
  rpsFloorShare: {
    key: 'rps-floor-share',
    label: 'floor: hand-built mesh path req/s as % of hand-built straight path (per round)',
    unit: '%',
    better: 'higher',
  },
  rpsLocal: {
    key: 'rps-mesh-local',
    label: "req/s through the mesh at the task's own node",
    unit: 'req/s',
    better: 'higher',
  },
  createAll: {
    key: 'create-every-node',
    label: 'service create --publish (1 replica): every node answers on the port',
    unit: 'ms',
  },
  rule1Host: {
    key: 'rule-host-1',
    label: 'publish-add, 1 port published: host table update per node (median)',
    unit: 'ms',
  },
  rule1Sbox: {
    key: 'rule-sbox-1',
    label: 'publish-add, 1 port published: ingress sandbox table update per node (median)',
    unit: 'ms',
  },
  rule100Host: {
    key: 'rule-host-100',
    label: 'publish-add, 100 ports published: host table update per node (median)',
    unit: 'ms',
  },
  rule100Sbox: {
    key: 'rule-sbox-100',
    label: 'publish-add, 100 ports published: ingress sandbox table update per node (median)',
    unit: 'ms',
  },
  add1All: {
    key: 'publish-add-1',
    label: 'publish-add with 1 port published: every node answers on the new port',
    unit: 'ms',
  },
  add100All: {
    key: 'publish-add-100',
    label: 'publish-add with 100 ports published: every node answers on the new port',
    unit: 'ms',
  },
};

async function until(what: string, f: () => Promise<boolean>, ms: number, gapMs = 100): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await f().catch(() => false)) return;
    await sleep(gapMs);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** The 'ingress mesh programmed' records a daemon logged (ports, hostMs, sandboxMs), in order. */
function programmed(h: Lab): Array<{ ports: number; hostMs: number; sandboxMs: number }> {
  const out: Array<{ ports: number; hostMs: number; sandboxMs: number }> = [];
  for (const line of h.daemonLog().split('\n')) {
    if (!line.includes('"msg":"ingress mesh programmed"')) continue;
    try {
      const r = JSON.parse(line) as { ports: number; hostMs: number; sandboxMs: number };
      out.push({ ports: r.ports, hostMs: r.hostMs, sandboxMs: r.sandboxMs });
    } catch {
      /* not JSON */
    }
  }
  return out;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)] ?? NaN;
};

export const meshWorkload: Workload = {
  id: ID,
  title:
    'ingress routing mesh on 3 simulated hosts: req/s at a node with no task vs straight to the task, create until every node answers, rule updates at 1 and 100 ports (cove only)',
  perEngine: true,
  async run(t, ctx) {
    if (ctx.engine.name !== 'cove') {
      ctx.rec.note(
        ID,
        `${t.name}: not measured (Cove only: Docker's routing mesh needs IPVS, absent here; Podman has no swarm)`,
      );
      return;
    }
    await runMesh(ctx);
  },
};

async function runMesh(ctx: Ctx): Promise<void> {
  const target = 'cove-cli';
  // The mesh's 'ingress mesh programmed' lines (its rule-update times) are info: the bench's default is warn.
  const level = process.env.COVE_TEST_LOG_LEVEL;
  process.env.COVE_TEST_LOG_LEVEL = 'info';
  const lab = await MultiHostLab.create('cvbms', 3);
  try {
    await lab.startSwarm({ images: ['alpine', 'nginx'], role: 'worker' });
    const [m] = lab.hosts as [Lab, ...Lab[]];
    const cove = (args: string[]): Promise<string> => m.coveOk(args, { timeoutMs: 180_000 });
    const nodeId = async (h: Lab): Promise<string> => h.coveOk(['info', '-f', '{{.Swarm.NodeID}}']);
    const ids = await Promise.all(lab.hosts.map(nodeId));
    const added = await lab.underlay(`ip addr add ${CLIENT}/24 dev ul0`);
    if (added.code !== 0) throw new Error(added.stderr);
    /** One GET from the outside world; true when it answered 200. */
    const answers = async (addr: string, port: number): Promise<boolean> =>
      (await lab.underlay(`curl -s -o /dev/null -w '%{http_code}' -m 2 http://${addr}:${port}/`, 10_000)).stdout ===
      '200';
    const everyNode = (port: number, ms = 120_000): Promise<void[]> =>
      Promise.all(
        lab.hosts.map((_, i) => until(`port ${port} at ${lab.addr(i)}`, () => answers(lab.addr(i), port), ms, 50)),
      );
    const R = ctx.quick ? 1 : 3;

    // One task on host 1, published through the mesh (80) and straight (mode=host, 81 on host 1).
    await cove([
      'service',
      'create',
      '-d',
      '--name',
      'web',
      '--replicas',
      '1',
      '--constraint',
      `node.id==${ids[0]}`,
      '--publish',
      'published=80,target=80',
      'nginx',
    ]);
    await cove([
      'service',
      'create',
      '-d',
      '--name',
      'direct',
      '--replicas',
      '1',
      '--constraint',
      `node.id==${ids[0]}`,
      '--publish',
      'mode=host,published=81,target=80',
      'nginx',
    ]);
    await everyNode(80);
    await until('the host-mode port on host 1', () => answers(lab.addr(0), 81), 120_000);
    const seconds = ctx.quick ? 2 : 3;
    const rounds = ctx.quick ? 6 : 12;
    const ab = existsSync('/usr/bin/ab');
    /** req/s of CONNS closed loops of GETs without keep-alive, from the outside world (every answer must be 200). */
    const client = async (url: string): Promise<number> => {
      const argv = ab
        ? ['ab', '-q', '-t', String(seconds), '-n', '100000000', '-c', String(CONNS), url]
        : [process.execPath, join(CLIENTS, 'http-client.js'), 'rps', url, String(CONNS), String(seconds)];
      const r = await run('nsenter', [`--net=/run/netns/${lab.underlayNetns}`, ...argv], { timeoutMs: 120_000 });
      if (r.code !== 0) throw new Error(`load client ${url}: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
      if (!ab) {
        const res = JSON.parse(r.stdout) as { value: number; errors: number };
        if (res.errors) ctx.rec.note(ID, `${res.errors} failed requests to ${url}`);
        return res.value;
      }
      const num = (re: RegExp): number => Number(re.exec(r.stdout)?.[1] ?? NaN);
      const bad = (num(/Failed requests:\s+(\d+)/) || 0) + (num(/Non-2xx responses:\s+(\d+)/) || 0);
      if (bad) ctx.rec.note(ID, `${bad} failed requests to ${url} in one ${seconds}-s run`);
      return num(/Requests per second:\s+([\d.]+)/);
    };
    const page = await lab.underlay(`curl -s -m 5 http://${lab.addr(0)}:81/`);
    const floor = await meshFloor(lab.underlayNetns, page.stdout);
    try {
      const load0 = loadavg();
      const paths: Array<[string, string]> = [
        ['mesh', `http://${lab.addr(2)}:80/`],
        ['direct', `http://${lab.addr(0)}:81/`],
        ['fmesh', floor.meshUrl],
        ['fdirect', floor.directUrl],
        ['local', `http://${lab.addr(0)}:80/`],
      ];
      for (let i = 0; i < rounds; i++) {
        // The order turns every round (ABBA...), so drift in the machine's load favours no path.
        const order = i % 2 ? [...paths].reverse() : paths;
        const got: Record<string, number> = {};
        for (const [k, url] of order) got[k] = await client(url);
        ctx.rec.add(ID, M.rpsMesh!, target, got.mesh!);
        ctx.rec.add(ID, M.rpsDirect!, target, got.direct!);
        ctx.rec.add(ID, M.rpsShare!, target, (100 * got.mesh!) / got.direct!);
        ctx.rec.add(ID, M.rpsLocal!, target, got.local!);
        ctx.rec.add(ID, M.rpsFloorMesh!, target, got.fmesh!);
        ctx.rec.add(ID, M.rpsFloorDirect!, target, got.fdirect!);
        ctx.rec.add(ID, M.rpsFloorShare!, target, (100 * got.fmesh!) / got.fdirect!);
      }
      const load1 = loadavg();
      ctx.rec.note(
        ID,
        `req/s rounds: ${rounds} x ${paths.length} runs of ${seconds} s, ${ab ? 'ab' : 'node client'} with ${CONNS} connections; load average ${load0.map((x) => x.toFixed(1)).join('/')} at start, ${load1.map((x) => x.toFixed(1)).join('/')} at end`,
      );
    } finally {
      await floor.destroy();
    }
    await cove(['service', 'rm', 'direct']);

    // service create --publish until every node answers.
    for (let i = 0; i < R; i++) {
      const port = 8100 + i;
      const t0 = Date.now();
      await cove(['service', 'create', '-d', '--name', `c${i}`, '--replicas', '1', '--publish', `${port}:80`, 'nginx']);
      await everyNode(port);
      ctx.rec.add(ID, M.createAll!, target, Date.now() - t0);
      await cove(['service', 'rm', `c${i}`]);
    }

    // A rule update with 1 and with 100 published ports: `--publish-add P:80` to a service that already publishes
    // (8999 -> 9999, so it is on the ingress network and the update restarts no task), `--publish-rm 80` after
    // (docker's CLI removes by target port). First web's 80 alone, then with a range of 99 more (1 task each).
    await cove(['service', 'rm', 'web']);
    await cove(['service', 'create', '-d', '--name', 'add', '--replicas', '1', '--publish', '8999:9999', 'nginx']);
    await until(
      "add's task running",
      async () => (await cove(['service', 'ls', '--filter', 'name=add', '--format', '{{.Replicas}}'])) === '1/1',
      120_000,
      200,
    );
    await sleep(3000);
    ctx.rec.note(
      ID,
      `ports programmed per node before the 1-port updates: ${lab.hosts.map((h) => programmed(h).at(-1)?.ports ?? '-').join(', ')}`,
    );
    const publishAdd = async (port: number, hostM: MetricDef, sboxM: MetricDef, allM: MetricDef): Promise<void> => {
      const before = lab.hosts.map((h) => programmed(h).length);
      const t0 = Date.now();
      await cove(['service', 'update', '-d', '--publish-add', `${port}:80`, 'add']);
      await everyNode(port);
      ctx.rec.add(ID, allM, target, Date.now() - t0);
      // The pass that programmed the new port on each node (the first logged after the update).
      const host: number[] = [];
      const sbox: number[] = [];
      for (const [i, h] of lab.hosts.entries()) {
        const recs = programmed(h).slice(before[i]);
        const r = recs[0];
        if (!r) throw new Error(`${h.name} logged no mesh update for port ${port}`);
        host.push(r.hostMs);
        sbox.push(r.sandboxMs);
      }
      ctx.rec.add(ID, hostM, target, median(host));
      ctx.rec.add(ID, sboxM, target, median(sbox));
      await cove(['service', 'update', '-d', '--publish-rm', '80', 'add']);
      await until(
        `port ${port} gone everywhere`,
        async () => !(await Promise.all(lab.hosts.map((_, i) => answers(lab.addr(i), port)))).some(Boolean),
        60_000,
      );
      await sleep(500);
    };
    for (let i = 0; i < R; i++) await publishAdd(9000 + i, M.rule1Host!, M.rule1Sbox!, M.add1All!);
    await cove([
      'service',
      'create',
      '-d',
      '--name',
      'many',
      '--replicas',
      '1',
      '--publish',
      '20000-20098:20000-20098',
      'nginx',
    ]);
    // Every node holds all 100 ports before measuring.
    await until(
      '100 ports programmed on every node',
      async () => lab.hosts.every((h) => (programmed(h).at(-1)?.ports ?? 0) >= 100),
      180_000,
      200,
    );
    await sleep(3000);
    ctx.rec.note(
      ID,
      `ports programmed per node before the 100-port updates: ${lab.hosts.map((h) => programmed(h).at(-1)?.ports ?? '-').join(', ')}`,
    );
    for (let i = 0; i < R; i++) await publishAdd(9100 + i, M.rule100Host!, M.rule100Sbox!, M.add100All!);
  } finally {
    await lab.destroy();
    if (level === undefined) delete process.env.COVE_TEST_LOG_LEVEL;
    else process.env.COVE_TEST_LOG_LEVEL = level;
  }
}

/**
 * The kernel floor of the mesh's path, built by hand with ip and nft next to
 * the lab, on its underlay bridge (so the same client namespace reaches it):
 * an entry host (192.0.2.23) DNATs port 80 to a sandbox over a veth; the
 * sandbox DNATs to the task's overlay address and SNATs to its own; a bridge
 * and VXLAN (VNI 4242, the lab's MTU 1450) carry it to the task's host
 * (192.0.2.21), whose bridge reaches the task. Straight: that host DNATs
 * port 81 to the task over a second veth. The task serves the same page with
 * the same busybox httpd as the lab's stand-in nginx. One rule each, no maps,
 * no daemon: what any mesh of this shape costs on this kernel.
 */
export async function meshFloor(
  underlay: string,
  page: string,
): Promise<{ meshUrl: string; directUrl: string; destroy: () => Promise<void> }> {
  const ns = (x: string): string => `cvbmf${x}`;
  const [H1, H3, S, O1, O3, T] = ['h1', 'h3', 's', 'o1', 'o3', 't'].map(ns) as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const all = [H1, H3, S, O1, O3, T];
  const dir = `/tmp/${ns('www')}`;
  const destroy = async (): Promise<void> => {
    for (const pid of pidsOf(T)) await run('kill', [String(pid)]);
    await run('ip', ['-n', underlay, 'link', 'del', 'fh1']);
    await run('ip', ['-n', underlay, 'link', 'del', 'fh3']);
    await deleteNetns(...all);
    rmSync(dir, { recursive: true, force: true });
  };
  await destroy();
  try {
    for (const n of all) await must('ip', ['netns', 'add', n]);
    const ip = (n: string, script: string): Promise<string> =>
      must('ip', ['-n', n, '-batch', '-'], { input: script.trim().replace(/^\s+/gm, '') + '\n' });
    const veth = (a: string, an: string, b: string, bn: string): Promise<string> =>
      must('ip', ['link', 'add', an, 'netns', a, 'type', 'veth', 'peer', 'name', bn, 'netns', b]);
    const sysctl = (n: string, kv: string): Promise<string> =>
      must('nsenter', [`--net=/run/netns/${n}`, 'sysctl', '-q', '-w', kv]);
    const nft = (n: string, script: string): Promise<string> =>
      must('nsenter', [`--net=/run/netns/${n}`, 'nft', '-f', '-'], { input: script });
    for (const n of all) await ip(n, 'link set lo up');
    await veth(underlay, 'fh1', H1, 'eth1');
    await veth(underlay, 'fh3', H3, 'eth1');
    await ip(underlay, 'link set fh1 master ul0 up\nlink set fh3 master ul0 up');
    await ip(H1, 'addr add 192.0.2.21/24 dev eth1\nlink set eth1 up');
    await ip(H3, 'addr add 192.0.2.23/24 dev eth1\nlink set eth1 up');
    // entry host -> sandbox (the docker_gwbridge hop)
    await veth(H3, 'gw0', S, 'eth1');
    await ip(H3, 'addr add 172.30.0.1/24 dev gw0\nlink set gw0 up');
    await ip(S, 'addr add 172.30.0.2/24 dev eth1\nlink set eth1 up\nroute add default via 172.30.0.1');
    // sandbox -> overlay bridge on the entry host; task -> overlay bridge on its host
    await veth(S, 'eth0', O3, 'vs');
    await veth(T, 'eth0', O1, 'vt');
    await ip(S, 'addr add 10.30.0.4/24 dev eth0\nlink set eth0 mtu 1450 up');
    await ip(T, 'addr add 10.30.0.6/24 dev eth0\nlink set eth0 mtu 1450 up');
    for (const [h, o, port, local, peer] of [
      [H3, O3, 'vs', '192.0.2.23', '192.0.2.21'],
      [H1, O1, 'vt', '192.0.2.21', '192.0.2.23'],
    ] as const) {
      await ip(h, `link add vx0 type vxlan id 4242 local ${local} dstport 4789 dev eth1\nlink set vx0 netns ${o}`);
      await ip(
        o,
        `link add br0 type bridge\nlink set br0 up\nlink set vx0 mtu 1450 master br0 up\nlink set ${port} mtu 1450 master br0 up`,
      );
      await must('nsenter', [
        `--net=/run/netns/${o}`,
        'bridge',
        'fdb',
        'append',
        '00:00:00:00:00:00',
        'dev',
        'vx0',
        'dst',
        peer,
      ]);
    }
    // task host -> task (the straight path's hop)
    await veth(H1, 'gw0', T, 'eth1');
    await ip(H1, 'addr add 172.31.0.1/24 dev gw0\nlink set gw0 up');
    await ip(T, 'addr add 172.31.0.3/24 dev eth1\nlink set eth1 up\nroute add default via 172.31.0.1');
    for (const n of [H1, H3, S]) await sysctl(n, 'net.ipv4.ip_forward=1');
    const natTable = (rules: string[]): string => `table ip f {\n${rules.join('\n')}\n}\n`;
    const pre = 'type nat hook prerouting priority dstnat; policy accept;';
    await nft(H3, natTable([`chain pre { ${pre} tcp dport 80 fib daddr type local dnat to 172.30.0.2; }`]));
    await nft(
      S,
      natTable([
        `chain pre { ${pre} tcp dport 80 dnat to 10.30.0.6:80; }`,
        'chain post { type nat hook postrouting priority srcnat; policy accept; ct status dnat ip daddr 10.30.0.0/24 snat to 10.30.0.4; }',
      ]),
    );
    await nft(H1, natTable([`chain pre { ${pre} tcp dport 81 fib daddr type local dnat to 172.31.0.3:80; }`]));
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'index.html'), page);
    await must('nsenter', [`--net=/run/netns/${T}`, 'busybox', 'httpd', '-p', '80', '-h', dir]);
  } catch (e) {
    await destroy();
    throw e;
  }
  return { meshUrl: 'http://192.0.2.23:80/', directUrl: 'http://192.0.2.21:81/', destroy };
}

/** PIDs in a named netns (the floor's httpd, which daemonizes). */
function pidsOf(name: string): number[] {
  return existsSync(`/run/netns/${name}`) ? pidsInNetns([`/run/netns/${name}`]) : [];
}
