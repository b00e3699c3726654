/**
 * Issue 8 §1: no input may kill, freeze or starve the daemon. Always in a lab
 * WITHOUT any uplink (the daemon's --dns points at an address with no route:
 * every forward fails with ENETUNREACH), whatever COVE_LAB_OFFLINE says.
 * Hostile DNS traffic is sent from inside a container's netns (127.0.0.11),
 * hostile requests from the lab onto the API socket; after each, /_ping
 * answers within 50 ms, and the daemon's RSS and open fds are back near
 * where they were.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:net';
import { request } from 'node:http';
import { Lab, REPO, run } from '../lab/lab.js';
import { DNS_LIMITS } from '../../src/network/dns/server.js';
import { fuzzApi } from '../support/api-fuzz.js';

let lab: Lab;
let baseline: { rss: number; fds: number };
const probe = join(REPO, 'dist/test/lab/dns-probe.js');

before(async () => {
  lab = await Lab.create('cove-t-hos', { internet: false });
  try {
    await lab.startDaemon({ extraArgs: ['--log-level', 'info'] });
    await lab.coveOk(['load', '-q', '-i', join(REPO, 'build/images/alpine.tar')]);
    await lab.coveOk(['network', 'create', 'hnet']);
    await lab.coveOk(['run', '-dit', '--name', 'c1', '--network', 'hnet', 'alpine', 'ash']);
    await lab.coveOk(['run', '-dit', '--name', 'c2', '--network', 'hnet', 'alpine', 'ash']);
  } catch (e) {
    await lab.destroy();
    throw e;
  }
  baseline = usage();
});
after(async () => {
  await lab?.destroy();
});

function daemonPid(): number {
  return Number(readFileSync(join(lab.execRoot, 'coved.pid'), 'utf8').trim());
}

function usage(): { rss: number; fds: number } {
  const pid = daemonPid();
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
  return { rss, fds: readdirSync(`/proc/${pid}/fd`).length };
}

function pingMs(): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = request({ socketPath: lab.socket, path: '/_ping', timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () =>
        res.statusCode === 200 ? resolve(performance.now() - t0) : reject(new Error(`ping ${res.statusCode}`)),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/** The daemon is up, quick, and holds about what it held before (fds within 20, RSS within 64 MiB). */
async function stillHealthy(what: string): Promise<void> {
  // Give closed sockets and timers a moment to be counted out.
  let u = usage();
  for (let i = 0; i < 40 && u.fds > baseline.fds + 20; i++) {
    await new Promise((r) => setTimeout(r, 250));
    u = usage();
  }
  let best = Infinity;
  for (let i = 0; i < 3; i++) best = Math.min(best, await pingMs());
  assert.ok(best < 50, `${what}: /_ping took ${best.toFixed(1)} ms`);
  assert.ok(u.fds <= baseline.fds + 20, `${what}: fds ${u.fds} vs ${baseline.fds} before`);
  assert.ok(u.rss <= baseline.rss + 64 * 1024 * 1024, `${what}: RSS ${u.rss} vs ${baseline.rss} before`);
  assert.equal(lab.daemon?.exitCode, null, `${what}: coved still runs`);
}

async function inContainer(name: string, args: string[], timeoutMs = 60_000): Promise<unknown> {
  const pid = (await lab.coveOk(['inspect', '-f', '{{.State.Pid}}', name])).trim();
  const r = await run('nsenter', [`--net=/proc/${pid}/ns/net`, process.execPath, probe, ...args], { timeoutMs });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test('no upstream reachable: nslookup of an unknown name gets an answer, names still resolve, coved lives', async () => {
  const r = await lab.cove(['exec', 'c1', 'nslookup', 'nosuchname']);
  assert.notEqual(r.code, 0);
  assert.doesNotMatch(r.stdout + r.stderr, /timed out/i, 'an answer (SERVFAIL), not silence');
  const p = await lab.cove(['exec', 'c1', 'ping', '-c', '1', '-W', '2', 'c2']);
  assert.equal(p.code, 0, p.stdout + p.stderr);
  await stillHealthy('nslookup with no route out');
});

test("hostile datagrams from inside a container: Docker's answers, nothing relayed", async () => {
  const got = (await inContainer('c1', ['hostile'])) as Record<string, string>;
  assert.deepEqual(got, {
    'empty datagram': 'silence',
    '1 byte': 'silence',
    '11 bytes': 'silence',
    'bare header, no question': 'FORMERR',
    'header claiming a question it lacks': 'FORMERR',
    '64 random bytes': 'FORMERR',
    'two questions': 'FORMERR',
    'compression loop (pointer to itself)': 'FORMERR',
    'compression forward pointer': 'FORMERR',
    'name over 255 bytes': 'FORMERR',
    'label type 0x40 (reserved)': 'FORMERR',
    'answer record cut short': 'FORMERR',
    'a response (QR=1)': 'silence',
    'opcode UPDATE': 'NOTIMP',
  });
  await stillHealthy('hostile datagrams');
});

test('TCP with broken length prefixes is closed by the server', async () => {
  const got = (await inContainer('c1', ['badtcp'])) as Record<string, string>;
  for (const [k, v] of Object.entries(got)) assert.equal(v, 'closed by server', k);
  await stillHealthy('bad TCP framing');
});

test('20,000 queries in a burst: local names answered, forwards capped, nothing held after', async () => {
  const local = (await inContainer('c1', ['burst', '20000', 'c2'])) as { byRcode: Record<string, number> };
  // UDP drops what the socket buffers cannot hold; the point is that what is answered is answered right and nothing lingers.
  assert.ok((local.byRcode['0'] ?? 0) > 1000, `local answers: ${JSON.stringify(local.byRcode)}`);
  await stillHealthy('20,000 local queries');
  const fwd = (await inContainer('c1', ['burst', '20000', 'n#.example'])) as { byRcode: Record<string, number> };
  assert.ok((fwd.byRcode['2'] ?? 0) > 1000, `SERVFAILs: ${JSON.stringify(fwd.byRcode)}`);
  assert.deepEqual(
    Object.keys(fwd.byRcode),
    ['2'],
    'every forwarded query that was answered got SERVFAIL (no route out)',
  );
  await stillHealthy('20,000 forwarded queries');
  const p = await lab.cove(['exec', 'c1', 'ping', '-c', '1', '-W', '2', 'c2']);
  assert.equal(p.code, 0, 'names resolve right after the bursts');
});

test(`held TCP connections: ${DNS_LIMITS.tcpPerSandbox} per sandbox, the rest closed; the other container still resolves`, async () => {
  const n = DNS_LIMITS.tcpPerSandbox * 4;
  const [held, other] = await Promise.all([
    inContainer('c1', ['hold', String(n), '3000']) as Promise<{ openAfter: number; closedByServer: number }>,
    (async () => {
      await new Promise((r) => setTimeout(r, 1500));
      return lab.cove(['exec', 'c2', 'ping', '-c', '1', '-W', '2', 'c1']);
    })(),
  ]);
  assert.equal(held.openAfter, DNS_LIMITS.tcpPerSandbox, JSON.stringify(held));
  assert.equal(held.closedByServer, n - DNS_LIMITS.tcpPerSandbox);
  assert.equal(other.code, 0, 'c2 resolves c1 while c1 holds its cap');
  await stillHealthy('held TCP connections');
});

/** One raw request on the API socket; the status code, or 0 when the connection closed without one. */
function rawApi(text: string): Promise<number> {
  return new Promise((resolve) => {
    const c = connect(lab.socket, () => c.write(text));
    let buf = '';
    c.on('data', (d) => {
      buf += d.toString();
      const m = /^HTTP\/1\.1 (\d{3})/.exec(buf);
      if (m) {
        c.destroy();
        resolve(Number(m[1]));
      }
    });
    c.on('error', () => undefined);
    c.on('close', () => resolve(0));
    setTimeout(() => {
      c.destroy();
      resolve(-1);
    }, 3000);
  });
}

test('API: targets that used to end coved, deep JSON, ReDoS, names that could not be addressed, values that failed only at start', async () => {
  assert.equal(await rawApi('GET // HTTP/1.1\r\nHost: x\r\n\r\n'), 404);
  assert.equal(await rawApi('GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n'), 400);
  assert.equal(
    await rawApi('POST // HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n'),
    404,
  );
  await stillHealthy('request targets');

  const api = async (method: string, path: string, body?: unknown) => {
    const r = await run('curl', [
      '-s',
      '-o',
      '-',
      '-w',
      '\n%{http_code}',
      '--unix-socket',
      lab.socket,
      '-X',
      method,
      '-H',
      'Content-Type: application/json',
      ...(body === undefined ? [] : ['--data-binary', typeof body === 'string' ? body : JSON.stringify(body)]),
      `http://x${path}`,
    ]);
    const lines = r.stdout.trimEnd().split('\n');
    const status = Number(lines.pop());
    return { status, message: (JSON.parse(lines.join('\n') || '{}') as { message?: string }).message };
  };
  const deep = await api('POST', '/networks/create', '['.repeat(50_000) + ']'.repeat(50_000));
  assert.deepEqual(deep, { status: 400, message: 'invalid JSON: exceeded max depth' });

  await lab.coveOk(['run', '-d', '--name', 'a'.repeat(27), 'alpine', 'sleep', '600']);
  const t0 = performance.now();
  const redos = await api(
    'GET',
    `/containers/json?all=1&filters=${encodeURIComponent(JSON.stringify({ name: ['^(a*)*$'] }))}`,
  );
  assert.equal(redos.status, 200);
  assert.ok(performance.now() - t0 < 1000, `name filter took ${performance.now() - t0} ms`);
  const bad = await api('GET', `/containers/json?filters=${encodeURIComponent(JSON.stringify({ name: ['['] }))}`);
  assert.deepEqual(bad, { status: 400, message: 'error parsing regexp: missing closing ]: `[`' });
  const ps = await lab.cove(['ps', '--filter', 'name=^(a*)*$', '--format', '{{.Names}}']);
  assert.equal(ps.stdout.trim(), 'a'.repeat(27));
  await stillHealthy('filters');

  const longName = await api('POST', `/containers/create?name=${'x'.repeat(5000)}`, { Image: 'alpine' });
  assert.equal(longName.status, 400);
  assert.match(longName.message ?? '', /^Invalid container name \(x+\.\.\.\): longer than 255 characters$/);
  for (const name of ['..', '.', 'a\u0000b']) {
    const r = await api('POST', '/networks/create', { Name: name });
    assert.equal(r.status, 400, JSON.stringify(name));
  }
  const hostIp = await api('POST', '/containers/create', {
    Image: 'alpine',
    HostConfig: { PortBindings: { '80/tcp': [{ HostIp: '1.2.3.4.5', HostPort: '8080' }] } },
  });
  assert.deepEqual(hostIp, { status: 400, message: 'invalid IP address: 1.2.3.4.5' });
  const mem = await api('POST', '/containers/create', { Image: 'alpine', HostConfig: { Memory: -5 } });
  assert.deepEqual(mem, { status: 400, message: 'Minimum memory limit allowed is 6MB' });
  const left = await lab.coveOk(['ps', '-a', '--format', '{{.Names}}']);
  assert.deepEqual(left.split('\n').sort(), ['a'.repeat(27), 'c1', 'c2'], 'nothing half-made');
  await stillHealthy('create-time checks');
});

test('API fuzzing (fast-check) against the real daemon: never a 5xx, a stall or a death; every 4xx in Docker\'s {"message"} shape', async () => {
  // Batches of random routes, path parameters, version prefixes, query filters and malformed bodies
  // (test/support/api-fuzz.ts, the same generators the unit test runs on the fake engine). After each
  // batch: /_ping within 50 ms, fds and RSS back near the baseline, coved alive, nothing created.
  const seed = Number(process.env.COVE_FUZZ_SEED ?? Date.now() % 1_000_000);
  const runs = Number(process.env.COVE_FUZZ_RUNS ?? 200);
  const c1 = await lab.coveOk(['inspect', '-f', '{{.Id}}', 'c1']);
  const hnet = await lab.coveOk(['network', 'inspect', '-f', '{{.Id}}', 'hnet']);
  const names = async () => (await lab.coveOk(['ps', '-a', '--format', '{{.Names}}'])).split('\n').sort();
  const networks = async () => (await lab.coveOk(['network', 'ls', '--format', '{{.Name}}'])).split('\n').sort();
  const [namesBefore, networksBefore] = [await names(), await networks()];
  const known = [
    'c1',
    c1,
    c1.slice(0, 12),
    'hnet',
    hnet,
    hnet.slice(0, 5),
    'alpine',
    'alpine:latest',
    'bridge',
    'host',
    'none',
  ];
  for (let batch = 0; batch < 6; batch++) {
    await assert.doesNotReject(
      fuzzApi(lab.socket, runs, seed + batch, known),
      `fuzz batch ${batch} (COVE_FUZZ_SEED=${seed})`,
    );
    await stillHealthy(`fuzz batch ${batch} (COVE_FUZZ_SEED=${seed})`);
  }
  assert.deepEqual(await names(), namesBefore, 'malformed creates made no container');
  assert.deepEqual(await networks(), networksBefore, 'malformed creates made no network');
});

test('restart right after kill -9: no "pid file found" while the old daemon is unreaped', async () => {
  const pid = daemonPid();
  process.kill(pid, 'SIGKILL');
  // Our ChildProcess handle reaps it; start at once, before or after that happens.
  await lab.startDaemon({ extraArgs: ['--log-level', 'info'] });
  assert.notEqual(daemonPid(), pid);
  const p = await lab.cove(['exec', 'c1', 'ping', '-c', '1', '-W', '2', 'c2']);
  assert.equal(p.code, 0, 'containers keep their networking and DNS');
});
