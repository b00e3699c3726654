/**
 * `npm run bench -- --overlay [2,10,20]`: overlay networks as the lab grows (issue #12's benchmark).
 *
 * For each size N: `cove lab up --hosts N` (prefix COVE_LAB_PREFIX), a swarm (h1 init; h2, h3
 * managers from 5 hosts up; the rest workers), alpine loaded everywhere, an attachable overlay
 * `bov` made on h1. Then, through each host's Engine API socket (create + start: no CLI start in
 * the numbers):
 *  - join: one container per host onto `bov`, host after host; for each, the `run` time (the
 *    network comes up on that host with it) and the CPU every process of the lab spent on it
 *    (coved, etcd, ... of all hosts: the per-host cost of a host joining a network in use);
 *  - visibility: a probe (clients/reach-probe.js) inside the container on the last host asks
 *    the embedded DNS for a name that does not exist yet, then connects to it; h1 runs a
 *    container of that name: when, counted from `run`'s return, does the last host resolve
 *    and reach it (negative = before `run` returned);
 *  - run: `run` onto the overlay vs onto a user-defined bridge, on h2 (network already up there);
 *  - throughput (first level only): iperf3 from h1's container to h2's over the overlay, and
 *    over a bare VXLAN device (no bridge, no veth) made between the same two container
 *    namespaces, its UDP socket on the hosts' underlay as the overlay's is; and host to host
 *    over the underlay. Runs alternate, so the machine's load drifts onto neither.
 * Writes overlay.json / overlay.md to bench/results/<timestamp>/. The lab is removed
 * afterwards, also on errors and Ctrl-C.
 */
import { request } from 'node:http';
import { createReadStream, mkdirSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HostLab, inodeOf, pidsInNetns, type LabHost } from '../src/lab/hosts.js';
import { REPO, run } from '../test/lab/lab.js';
import { median, ok, r1, timed } from './swarm.js';

const CLIENTS = fileURLToPath(new URL('./clients/', import.meta.url));
const NET = 'bov';
const TRIALS = 5;
const RUNS = 8;
const IPERF_SECONDS = 4;
const IPERF_RUNS = 5;

/** cpuMs: the whole lab's CPU for the join; joinerCpuMs: the joining host's; perPeerCpuMs: the mean of each host already on the network. */
interface JoinSample {
  host: string;
  runMs: number;
  cpuMs: number;
  joinerCpuMs: number;
  perPeerCpuMs: number;
}
interface SeenSample {
  runMs: number;
  resolvedMs: number;
  reachedMs: number;
  error?: string;
}
interface LevelResult {
  hosts: number;
  managers: number;
  loadBefore: number[];
  swarmMs: number;
  joins: JoinSample[];
  /** CPU of the lab's processes per second when nothing happens (the baseline subtracted from joins). */
  idleCpuMsPerS: number;
  seen: SeenSample[];
  runOverlayMs: number[];
  runBridgeMs: number[];
  throughputGbps?: { overlay: number[]; rawVxlan: number[]; underlay: number[] };
  /** Median phases (ms) of h2's runs onto the overlay, from its coved's log: the sandbox's and the overlay endpoint's. */
  runPhasesMs: { sandbox: Record<string, number>; endpoint: Record<string, number> };
}

/** Median of each phase over the phasesMs h's coved logged with message `msg` (the last `last` of them). */
function loggedPhases(lab: HostLab, h: LabHost, msg: string, last: number): Record<string, number> {
  const all: Array<Record<string, number>> = [];
  for (const line of lab.daemonLog(h).split('\n')) {
    if (!line.includes(`"msg":"${msg}"`)) continue;
    try {
      const rec = JSON.parse(line) as { phasesMs?: Record<string, number> };
      if (rec.phasesMs) all.push(rec.phasesMs);
    } catch {
      /* not JSON */
    }
  }
  const some = all.slice(-last);
  const out: Record<string, number> = {};
  for (const k of new Set(some.flatMap((p) => Object.keys(p)))) out[k] = median(some.map((p) => p[k] ?? 0));
  return out;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const nowMs = (): number => performance.timeOrigin + performance.now();
const CLK_TCK = 100;

function loadImage(socket: string, file: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath: socket,
        method: 'POST',
        path: '/v1.51/images/load?quiet=1',
        timeout: 120_000,
        headers: { 'Content-Type': 'application/x-tar', 'Content-Length': statSync(file).size },
      },
      (res) => {
        let s = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (s += c));
        res.on('end', () =>
          res.statusCode === 200 ? resolve() : reject(new Error(`image load: ${res.statusCode} ${s}`)),
        );
      },
    );
    req.on('error', reject);
    createReadStream(file).pipe(req);
  });
}

/** `docker run -d` through the API: create + start. Returns the container's id. */
async function runContainer(h: LabHost, name: string, network: string): Promise<string> {
  const created = JSON.parse(
    await ok(h.socket, 'POST', `/containers/create?name=${name}`, {
      Image: 'alpine',
      Cmd: ['sleep', '1d'],
      HostConfig: { NetworkMode: network },
      NetworkingConfig: { EndpointsConfig: { [network]: {} } },
    }),
  ) as { Id: string };
  await ok(h.socket, 'POST', `/containers/${created.Id}/start`);
  return created.Id;
}

async function inspect(h: LabHost, id: string): Promise<{ sandbox: string; ip: string }> {
  const c = JSON.parse(await ok(h.socket, 'GET', `/containers/${id}/json`)) as {
    NetworkSettings: { SandboxKey: string; Networks: Record<string, { IPAddress: string }> };
  };
  return { sandbox: c.NetworkSettings.SandboxKey, ip: c.NetworkSettings.Networks[NET]?.IPAddress ?? '' };
}

/** CPU time (ms) used so far by the processes in each host's namespace (coved, etcd, conmon, ...), by host. */
function labCpuMs(lab: HostLab): Map<string, number> {
  const out = new Map<string, number>();
  for (const h of lab.state.hosts) {
    const ino = inodeOf(`/run/netns/${h.netns}`);
    let ticks = 0;
    for (const pid of ino === undefined ? [] : pidsInNetns(new Set([ino]))) {
      try {
        const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
        ticks += Number(rest[11]) + Number(rest[12]); // utime, stime
      } catch {
        /* gone */
      }
    }
    out.set(h.name, (ticks * 1000) / CLK_TCK);
  }
  return out;
}

const sum = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);

async function formSwarm(lab: HostLab, managers: number): Promise<void> {
  const [h1, ...rest] = lab.state.hosts as [LabHost, ...LabHost[]];
  await ok(h1.socket, 'POST', '/swarm/init', { ListenAddr: '0.0.0.0:2377', AdvertiseAddr: h1.addr });
  const sw = JSON.parse(await ok(h1.socket, 'GET', '/swarm')) as { JoinTokens: { Worker: string; Manager: string } };
  for (const [i, h] of rest.entries()) {
    await ok(h.socket, 'POST', '/swarm/join', {
      ListenAddr: '0.0.0.0:2377',
      AdvertiseAddr: h.addr,
      RemoteAddrs: [`${h1.addr}:2377`],
      JoinToken: i + 1 < managers ? sw.JoinTokens.Manager : sw.JoinTokens.Worker,
    });
  }
}

/** The probe inside `sandbox`, ready (its socket bound); `result` is its one JSON line. */
async function startProbe(
  sandbox: string,
  name: string,
): Promise<{ result: Promise<{ resolvedAt?: number; reachedAt?: number; error?: string }> }> {
  const child = spawn(
    'nsenter',
    [`--net=${sandbox}`, process.execPath, join(CLIENTS, 'reach-probe.js'), '127.0.0.11', name, '2', '15000'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const lines = createInterface({ input: child.stdout });
  const it = lines[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done || first.value !== 'ready') throw new Error(`probe did not start: ${err}`);
  // Wrapped: an async function returning a bare promise would wait for it.
  return {
    result: (async () => {
      const out = await it.next();
      if (out.done) return { error: `probe ended without an answer: ${err}` };
      return JSON.parse(out.value) as { resolvedAt?: number; reachedAt?: number; error?: string };
    })(),
  };
}

async function iperf(serverNs: string, clientNs: string, ip: string): Promise<number> {
  const srv = run('nsenter', [`--net=${serverNs}`, 'iperf3', '-s', '-1', '-B', ip], {
    timeoutMs: (IPERF_SECONDS + 30) * 1000,
  });
  await sleep(300);
  const c = await run('nsenter', [`--net=${clientNs}`, 'iperf3', '-c', ip, '-t', String(IPERF_SECONDS), '-J'], {
    timeoutMs: (IPERF_SECONDS + 30) * 1000,
  });
  await srv;
  if (c.code !== 0) throw new Error(`iperf3 to ${ip}: ${c.stdout}${c.stderr}`);
  return (
    (JSON.parse(c.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second /
    1e9
  );
}

async function must(args: string[], input?: string): Promise<void> {
  const r = await run(args[0]!, args.slice(1), input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr || r.stdout}`);
}

/**
 * A bare VXLAN link between two container namespaces: made from each host's namespace (so its
 * UDP socket is on the underlay, as the overlay's vxlan0), moved into the container's
 * namespace, with the same static FDB + neighbour entries and MTU as the overlay; VNI 99 on
 * UDP 4790 so it never meets Cove's devices.
 */
async function rawVxlan(
  a: { host: LabHost; sandbox: string },
  b: { host: LabHost; sandbox: string },
  mtu: number,
): Promise<[string, string]> {
  const ends = [
    { ...a, ip: '10.250.0.1', mac: '02:00:0a:fa:00:01', remote: b.host.addr },
    { ...b, ip: '10.250.0.2', mac: '02:00:0a:fa:00:02', remote: a.host.addr },
  ];
  for (const [i, e] of ends.entries()) {
    const other = ends[1 - i]!;
    await must([
      'nsenter',
      `--net=/run/netns/${e.host.netns}`,
      'ip',
      'link',
      'add',
      'rvx0',
      'address',
      e.mac,
      'mtu',
      String(mtu),
      'type',
      'vxlan',
      'id',
      '99',
      'local',
      e.host.addr,
      'dstport',
      '4790',
      'nolearning',
      'proxy',
    ]);
    await must(['nsenter', `--net=/run/netns/${e.host.netns}`, 'ip', 'link', 'set', 'rvx0', 'netns', e.sandbox]);
    await must([
      'nsenter',
      `--net=${e.sandbox}`,
      'sh',
      '-ec',
      [
        `ip addr add ${e.ip}/24 dev rvx0`,
        'ip link set rvx0 up',
        `bridge fdb add ${other.mac} dev rvx0 dst ${e.remote} self permanent`,
        `ip neigh add ${other.ip} lladdr ${other.mac} dev rvx0 nud permanent`,
      ].join('\n'),
    ]);
  }
  return [ends[0]!.ip, ends[1]!.ip];
}

async function level(n: number, withThroughput: boolean, log: (s: string) => void): Promise<LevelResult> {
  const loadBefore = loadavg().map(r1);
  const lab = await HostLab.up({ hosts: n, name: 'bov' });
  const stop = () => void lab.down().finally(() => process.exit(130));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const hosts = lab.state.hosts as [LabHost, LabHost, ...LabHost[]];
    const [h1, h2] = hosts;
    const last = hosts[n - 1]!;
    const managers = n >= 5 ? 3 : 1;
    const sw = await timed(() => formSwarm(lab, managers));
    log(`  swarm of ${n} (${managers} managers) in ${Math.round(sw.ms)} ms`);
    const queue = [...hosts];
    await Promise.all(
      [0, 1, 2, 3].map(async () => {
        for (let h = queue.shift(); h; h = queue.shift())
          await loadImage(h.socket, join(REPO, 'build/images/alpine.tar'));
      }),
    );
    await ok(h1.socket, 'POST', '/networks/create', { Name: NET, Driver: 'overlay', Attachable: true });
    await ok(h2.socket, 'POST', '/networks/create', { Name: 'bbr', Driver: 'bridge' });

    // Baseline: what the lab's processes burn when nothing happens (heartbeats, leases, watches).
    await sleep(1000);
    const idle0 = labCpuMs(lab);
    await sleep(3000);
    const idle1 = labCpuMs(lab);
    const idleRate = new Map([...idle1].map(([k, v]) => [k, (v - idle0.get(k)!) / 3000]));
    const idleCpuMsPerS = (sum(idle1) - sum(idle0)) / 3;

    const res: LevelResult = {
      hosts: n,
      managers,
      loadBefore,
      swarmMs: r1(sw.ms),
      joins: [],
      idleCpuMsPerS: r1(idleCpuMsPerS),
      seen: [],
      runOverlayMs: [],
      runBridgeMs: [],
      runPhasesMs: { sandbox: {}, endpoint: {} },
    };
    const ids: string[] = [];
    for (const [k, h] of hosts.entries()) {
      const c0 = labCpuMs(lab);
      const t0 = nowMs();
      const r = await timed(() => runContainer(h, `j-${h.name}`, NET));
      ids.push(r.value);
      // Let every host's watch finish programming the new peer before counting CPU.
      await sleep(1500);
      const c1 = labCpuMs(lab);
      const dt = nowMs() - t0;
      const used = new Map([...c1].map(([name, v]) => [name, v - c0.get(name)! - idleRate.get(name)! * dt]));
      const peers = hosts.slice(0, k).map((p) => used.get(p.name)!);
      const s: JoinSample = {
        host: h.name,
        runMs: r1(r.ms),
        cpuMs: r1(sum(used)),
        joinerCpuMs: r1(used.get(h.name)!),
        perPeerCpuMs: peers.length ? r1(peers.reduce((a, b) => a + b, 0) / peers.length) : NaN,
      };
      res.joins.push(s);
      log(
        `  ${h.name} joined ${NET}: run ${s.runMs} ms; CPU: lab ${s.cpuMs} ms, joiner ${s.joinerCpuMs} ms, each host already on it ${s.perPeerCpuMs} ms`,
      );
    }

    // Visibility: the last host waits for a container run on h1.
    const probeIn = (await inspect(last, ids[n - 1]!)).sandbox;
    for (let i = 0; i < TRIALS; i++) {
      const name = `seen${i}`;
      const probe = await startProbe(probeIn, name);
      const t0 = nowMs();
      await runContainer(h1, name, NET);
      const tRet = nowMs();
      const p = await probe.result;
      const s: SeenSample = {
        runMs: r1(tRet - t0),
        resolvedMs: p.resolvedAt ? r1(p.resolvedAt - tRet) : NaN,
        reachedMs: p.reachedAt ? r1(p.reachedAt - tRet) : NaN,
        ...(p.error ? { error: p.error } : {}),
      };
      res.seen.push(s);
      log(
        `  ${last.name} sees ${name} (run on h1 in ${s.runMs} ms): resolved ${s.resolvedMs} ms, reached ${s.reachedMs} ms after run returned${s.error ? ` (${s.error})` : ''}`,
      );
      await sleep(300);
    }

    // run onto the overlay vs onto a bridge, on h2, alternating.
    for (let i = 0; i < RUNS; i++) {
      for (const [net, into] of (i % 2
        ? [
            ['bbr', res.runBridgeMs],
            [NET, res.runOverlayMs],
          ]
        : [
            [NET, res.runOverlayMs],
            ['bbr', res.runBridgeMs],
          ]) as Array<[string, number[]]>) {
        const r = await timed(() => runContainer(h2, `r${i}-${net}`, net));
        into.push(r1(r.ms));
      }
    }
    res.runPhasesMs = {
      sandbox: loggedPhases(lab, h2, 'sandbox on a swarm network made', RUNS),
      endpoint: loggedPhases(lab, h2, 'swarm endpoint joined', RUNS),
    };
    log(
      `  run on h2: overlay median ${median(res.runOverlayMs)} ms, bridge median ${median(res.runBridgeMs)} ms; ` +
        `overlay phases (median ms): sandbox ${JSON.stringify(res.runPhasesMs.sandbox)}, its overlay endpoint ${JSON.stringify(res.runPhasesMs.endpoint)}`,
    );

    if (withThroughput) {
      const [a, b] = [await inspect(h1, ids[0]!), await inspect(h2, ids[1]!)];
      // The container's overlay interface's MTU (from inside its netns: /sys would be the root namespace's).
      const mtu = Number(
        / mtu (\d+)/.exec(
          (await run('nsenter', [`--net=${a.sandbox}`, 'ip', '-o', 'link', 'show', 'dev', 'eth0'])).stdout,
        )?.[1],
      );
      if (!mtu) throw new Error("no MTU for the container's eth0");
      const [, rawB] = await rawVxlan({ host: h1, sandbox: a.sandbox }, { host: h2, sandbox: b.sandbox }, mtu);
      const t = { overlay: [] as number[], rawVxlan: [] as number[], underlay: [] as number[] };
      for (let i = 0; i < IPERF_RUNS; i++) {
        const order: Array<keyof typeof t> =
          i % 2 ? ['rawVxlan', 'overlay', 'underlay'] : ['overlay', 'rawVxlan', 'underlay'];
        for (const k of order) {
          const g =
            k === 'overlay'
              ? await iperf(b.sandbox, a.sandbox, b.ip)
              : k === 'rawVxlan'
                ? await iperf(b.sandbox, a.sandbox, rawB)
                : await iperf(`/run/netns/${h2.netns}`, `/run/netns/${h1.netns}`, h2.addr);
          t[k].push(Math.round(g * 100) / 100);
        }
      }
      res.throughputGbps = t;
      log(
        `  throughput (Gbit/s): overlay ${t.overlay.join(', ')}; raw VXLAN ${t.rawVxlan.join(', ')}; underlay ${t.underlay.join(', ')} (MTU ${mtu})`,
      );
    }
    return res;
  } finally {
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
    if (process.env.COVE_BENCH_KEEP_LAB) log(`  lab kept (COVE_BENCH_KEEP_LAB): cove lab down --name bov`);
    else await lab.down();
  }
}

function table(rs: LevelResult[]): string {
  const fin = (xs: number[]) => xs.filter((x) => Number.isFinite(x));
  const lines = [
    "| hosts (managers) | load before | B resolves after A's run returned (median, max) | B reaches (median, max) | run onto overlay (median, max) | run onto bridge (median) | first run on a host joining (median; last host) | CPU of a join: whole lab / joiner / each host already on it (medians) |",
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rs) {
    const res = fin(r.seen.map((s) => s.resolvedMs));
    const rea = fin(r.seen.map((s) => s.reachedMs));
    const j = r.joins.slice(1);
    lines.push(
      `| ${r.hosts} (${r.managers}) | ${r.loadBefore[0]} | ${median(res)} ms, ${Math.max(...res)} ms | ${median(rea)} ms, ${Math.max(...rea)} ms | ` +
        `${median(r.runOverlayMs)} ms, ${Math.max(...r.runOverlayMs)} ms | ${median(r.runBridgeMs)} ms | ${median(j.map((x) => x.runMs))} ms; ${j.at(-1)?.runMs} ms | ` +
        `${median(j.map((x) => x.cpuMs))} / ${median(j.map((x) => x.joinerCpuMs))} / ${median(j.map((x) => x.perPeerCpuMs))} ms |`,
    );
  }
  const t = rs.find((r) => r.throughputGbps)?.throughputGbps;
  if (t) {
    const o = median(t.overlay);
    const raw = median(t.rawVxlan);
    lines.push(
      '',
      `Throughput, h1's container -> h2's (iperf3, one TCP stream, ${IPERF_RUNS} x ${IPERF_SECONDS} s, median Gbit/s): overlay ${o}, ` +
        `bare VXLAN between the same namespaces ${raw}, underlay host to host ${median(t.underlay)}; overlay / raw VXLAN = ${Math.round((o / raw) * 100)} %`,
    );
  }
  return lines.join('\n') + '\n';
}

export async function overlayBench(levels: number[], outDir: string): Promise<number> {
  const results: LevelResult[] = [];
  for (const [i, n] of levels.entries()) {
    process.stdout.write(`overlay bench: ${n} hosts\n`);
    results.push(await level(n, i === 0 && n >= 2, (s) => process.stdout.write(s + '\n')));
  }
  const md =
    table(results) + `\nMachine: ${cpus().length} CPUs, load average at the end ${loadavg().map(r1).join(', ')}.\n`;
  process.stdout.write('\n' + md);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'overlay.json'), JSON.stringify(results, null, 2) + '\n');
  writeFileSync(join(outDir, 'overlay.md'), md);
  process.stdout.write(`\nwritten: ${join(outDir, 'overlay.json')}, overlay.md\n`);
  return 0;
}
