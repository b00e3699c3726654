/**
 * The cove CLI (bin/cove, spawned) and the real docker CLI against the API
 * server with the fake engine, on a temp unix socket.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { startApi, type Harness } from '../support/api-harness.js';

const COVE = fileURLToPath(new URL('../../../bin/cove', import.meta.url));
const DOCKER = '/usr/local/bin/docker';
const hasDocker = existsSync(DOCKER);

let h: Harness;
before(async () => {
  h = await startApi();
});
after(async () => {
  await h.close();
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCmd(
  bin: string,
  args: string[],
  opts: { input?: string; env?: Record<string, string> } = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const env = {
      ...process.env,
      COVE_HOST: `unix://${h.socket}`,
      DOCKER_HOST: `unix://${h.socket}`,
      DOCKER_CONFIG: '/tmp/cva-docker-config',
      ...opts.env,
    };
    const child = spawn(bin, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

const cove = (...args: string[]) => runCmd(COVE, args);

test("cove network ls prints docker's table", async () => {
  const r = await cove('network', 'ls');
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  assert.equal(lines[0], 'NETWORK ID     NAME      DRIVER    SCOPE');
  assert.match(lines[1]!, /^[0-9a-f]{12} {3}bridge {4}bridge {4}local$/);
  assert.match(lines[3]!, /^[0-9a-f]{12} {3}none {6}null {6}local$/);
  const q = await cove('network', 'ls', '-q');
  assert.equal(q.stdout.trim().split('\n').length, 3);
});

test('network create, --format json, inspect -f, rm of several continues after errors (exit 1)', async () => {
  const c = await cove(
    'network',
    'create',
    '--driver',
    'bridge',
    '--subnet',
    '10.11.0.0/16',
    '--gateway',
    '10.11.0.2',
    '--label',
    'team=blue',
    '-o',
    'com.docker.network.driver.mtu=1200',
    'alpine-net',
  );
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stdout, /^[0-9a-f]{64}\n$/);
  const dup = await cove('network', 'create', 'alpine-net');
  assert.equal(dup.code, 1);
  assert.equal(dup.stderr, 'Error response from daemon: network with name alpine-net already exists\n');
  const gw = await cove('network', 'create', '--subnet', '10.12.0.0/16', '--gateway', '10.13.0.1', 'x');
  assert.equal(gw.code, 1);
  assert.equal(gw.stderr, 'no matching subnet for gateway 10.13.0.1\n');
  const js = await cove('network', 'ls', '--filter', 'name=alpine', '--format', '{{json .}}');
  const row = JSON.parse(js.stdout);
  assert.deepEqual(Object.keys(row), [
    'CreatedAt',
    'Driver',
    'ID',
    'IPv4',
    'IPv6',
    'Internal',
    'Labels',
    'Name',
    'Scope',
  ]);
  assert.equal(row.Name, 'alpine-net');
  assert.equal(row.Labels, 'team=blue');
  const f = await cove(
    'network',
    'inspect',
    '-f',
    '{{range .IPAM.Config}}{{.Subnet}} via {{.Gateway}}{{end}} {{index .Options "com.docker.network.driver.mtu"}}',
    'alpine-net',
  );
  assert.equal(f.stdout, '10.11.0.0/16 via 10.11.0.2 1200\n');
  const full = await cove('network', 'inspect', 'alpine-net');
  assert.equal(JSON.parse(full.stdout)[0].Name, 'alpine-net');
  assert.match(full.stdout, /^\[\n {4}\{\n {8}"Name": "alpine-net",/);
  const rm = await cove('network', 'rm', 'bridge', 'alpine-net', 'nope');
  assert.equal(rm.code, 1);
  assert.equal(rm.stdout, 'alpine-net\n');
  assert.equal(
    rm.stderr,
    'Error response from daemon: bridge is a pre-defined network and cannot be removed\nError response from daemon: network nope not found\n',
  );
});

test("run: -d prints the ID; attached run relays output and exits with the container's code", async () => {
  const d = await cove('run', '-dit', '--name', 'alpine1', 'alpine', 'ash');
  assert.equal(d.code, 0, d.stderr);
  assert.match(d.stdout, /^[0-9a-f]{64}\n$/);
  const echo = await cove('run', '--rm', 'alpine', 'echo', 'hello', 'world');
  assert.equal(echo.code, 0, echo.stderr);
  assert.equal(echo.stdout, 'hello world\n');
  const fail = await cove('run', 'alpine', 'fail', '3');
  assert.equal(fail.code, 3);
  assert.equal(fail.stderr, 'failing\n');
  const cat = await runCmd(COVE, ['run', '-i', 'alpine', 'cat'], { input: 'piped in\n' });
  assert.equal(cat.code, 0, cat.stderr);
  assert.equal(cat.stdout, 'piped in\n');
  const missing = await cove('run', 'nosuch');
  assert.equal(missing.code, 125);
  assert.match(
    missing.stderr,
    /^Unable to find image 'nosuch:latest' locally\ncove: Error response from daemon: pull access denied for nosuch, repository does not exist/,
  );
  const badNet = await cove('run', '--network', 'nonet', 'alpine');
  assert.equal(badNet.code, 125);
  assert.match(badNet.stderr, /cove: Error response from daemon: network nonet not found/);
  const noStart = await cove('run', 'alpine', 'nostart');
  assert.equal(noStart.code, 125);
  assert.match(
    noStart.stderr,
    /^cove: Error response from daemon: failed to create the ipvlan port: operation not supported\n/,
  );
  const dupName = await cove('run', '-d', '--name', 'alpine1', 'alpine', 'ash');
  assert.equal(dupName.code, 125);
  assert.match(
    dupName.stderr,
    /^cove: Error response from daemon: Conflict\. The container name "\/alpine1" is already in use/,
  );
});

test("ps, exec, logs, network connect, stop/rm with docker's outputs", async () => {
  const ps = await cove('ps');
  assert.equal(ps.code, 0, ps.stderr);
  const lines = ps.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^CONTAINER ID   IMAGE     COMMAND   CREATED +STATUS +PORTS     NAMES$/);
  assert.match(lines[1]!, /^[0-9a-f]{12} {3}alpine {4}"ash" {5}\d+ seconds? ago|Less than a second ago/);
  assert.match(lines[1]!, /alpine1$/);
  const names = await cove('container', 'ls', '-a', '--format', '{{.Names}}\t{{.Status}}');
  assert.match(names.stdout, /alpine1\tUp /);
  const ex = await cove('exec', 'alpine1', 'echo', 'from', 'exec');
  assert.equal(ex.stdout, 'from exec\n');
  assert.equal(ex.code, 0);
  const exFail = await cove('exec', 'alpine1', 'fail', '4');
  assert.equal(exFail.code, 4);
  const exIn = await runCmd(COVE, ['exec', '-i', 'alpine1', 'cat'], { input: 'abc\n' });
  assert.equal(exIn.stdout, 'abc\n');
  const con = await cove('network', 'connect', '--alias', 'db', 'bridge', 'alpine1');
  assert.equal(con.code, 1);
  assert.equal(con.stderr, 'Error response from daemon: endpoint with name alpine1 already exists in network bridge\n');
  const insp = await cove('inspect', '-f', '{{.Name}} {{.State.Status}}', 'alpine1');
  assert.equal(insp.stdout, '/alpine1 running\n');
  const inspNet = await cove('inspect', '--format', '{{.Driver}}', 'bridge');
  assert.equal(inspNet.stdout, 'bridge\n');
  const none = await cove('inspect', 'nothing-here');
  assert.equal(none.code, 1);
  assert.equal(none.stdout, '[]\n');
  assert.equal(none.stderr, 'Error: No such object: nothing-here\n');
  const stop = await cove('container', 'stop', 'alpine1', 'ghost');
  assert.equal(stop.code, 1);
  assert.equal(stop.stdout, 'alpine1\n');
  assert.equal(stop.stderr, 'Error response from daemon: No such container: ghost\n');
  const logs = await cove('logs', 'alpine1');
  assert.equal(logs.code, 0);
  const rm = await cove('rm', 'alpine1');
  assert.equal(rm.stdout, 'alpine1\n');
  const attachGone = await cove('attach', 'alpine1');
  assert.equal(attachGone.code, 1);
  assert.equal(attachGone.stderr, 'Error response from daemon: No such container: alpine1\n');
});

test('images: import from stdin, tag, ls, rmi; load; version; unreachable socket', async () => {
  const imp = await runCmd(COVE, ['image', 'import', '-c', 'CMD ["/bin/sh"]', '-', 'mybox:1.0'], {
    input: 'not really a tar',
  });
  assert.equal(imp.code, 0, imp.stderr);
  assert.match(imp.stdout, /^sha256:[0-9a-f]{64}\n$/);
  assert.equal((await cove('tag', 'mybox:1.0', 'mybox:2.0')).code, 0);
  const ls = await cove('images');
  const lines = ls.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^REPOSITORY   TAG       IMAGE ID       CREATED +SIZE$/);
  assert.ok(
    lines.some((l) => /^mybox {8}2\.0 {7}[0-9a-f]{12} {3}(Less than a second|\d seconds?) ago +16B$/.test(l)),
    ls.stdout,
  );
  const rmi = await cove('rmi', 'mybox:2.0');
  assert.equal(rmi.stdout, 'Untagged: mybox:2.0\n');
  const load = await runCmd(COVE, ['load', '-q'], { input: 'busybox:latest\n' });
  assert.equal(load.stdout, 'Loaded image: busybox:latest\n');
  const v = await cove('version', '--format', '{{.Server.ApiVersion}}');
  assert.equal(v.stdout, '1.51\n');
  // -H wins over the environment.
  const viaH = await runCmd(COVE, ['-H', `unix://${h.socket}`, 'network', 'ls', '-q'], {
    env: { COVE_HOST: 'unix:///tmp/cva-no-such.sock' },
  });
  assert.equal(viaH.code, 0, viaH.stderr);
  const since = String(Math.floor(Date.now() / 1000) - 60);
  const ev = await cove(
    'events',
    '--since',
    since,
    '--until',
    String(Math.ceil(Date.now() / 1000)),
    '--filter',
    'type=image',
    '--format',
    '{{.Type}} {{.Action}}',
  );
  assert.equal(ev.code, 0, ev.stderr);
  assert.match(ev.stdout, /^image import\n/);
  const usage = await cove('network', 'create');
  assert.equal(usage.code, 1);
  assert.match(usage.stderr, /^"cove network create" requires exactly 1 argument\./);
  const flag = await cove('run', '--bogus', 'alpine');
  assert.equal(flag.code, 125);
  assert.match(flag.stderr, /^unknown flag: --bogus/);
  const gone = await runCmd(COVE, ['network', 'ls'], { env: { COVE_HOST: 'unix:///tmp/cva-no-such.sock' } });
  assert.equal(gone.code, 1);
  assert.equal(
    gone.stderr,
    'Cannot connect to the Cove daemon at unix:///tmp/cva-no-such.sock. Is the cove daemon running?\n',
  );
});

test(
  'the real docker CLI negotiates with the server and reads its shapes',
  { skip: !hasDocker && 'docker CLI not installed' },
  async () => {
    const v = await runCmd(DOCKER, ['version', '--format', '{{.Server.APIVersion}} {{.Client.APIVersion}}']);
    assert.equal(v.code, 0, v.stderr);
    // The 28.2 CLI speaks 1.50; the server says 1.51, so the client stays at its own.
    assert.equal(v.stdout, '1.51 1.50\n');
    const dn = await runCmd(DOCKER, ['network', 'ls']);
    const cn = await cove('network', 'ls');
    assert.equal(dn.code, 0, dn.stderr);
    assert.equal(cn.stdout, dn.stdout);
    const dj = await runCmd(DOCKER, ['network', 'ls', '--format', '{{json .}}']);
    const cj = await cove('network', 'ls', '--format', '{{json .}}');
    assert.equal(cj.stdout, dj.stdout);
    const dnew = await runCmd(DOCKER, ['network', 'create', 'from-docker']);
    assert.equal(dnew.code, 0, dnew.stderr);
    const drm = await runCmd(DOCKER, ['network', 'rm', 'bridge']);
    assert.equal(drm.code, 1);
    assert.match(drm.stderr, /Error response from daemon: bridge is a pre-defined network and cannot be removed/);
    const run = await runCmd(DOCKER, ['run', '--rm', 'alpine', 'echo', 'via', 'docker']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'via docker\n');
    const d = await runCmd(DOCKER, ['run', '-d', '--name', 'dk1', 'alpine', 'sleep']);
    assert.equal(d.code, 0, d.stderr);
    const dps = await runCmd(DOCKER, ['ps', '-a', '--format', '{{json .}}']);
    const cps = await cove('ps', '-a', '--format', '{{json .}}');
    // RunningFor may tick between the two calls; compare the keys and the rest.
    const strip = (s: string) =>
      s
        .trim()
        .split('\n')
        .map((l) => {
          const o = JSON.parse(l);
          delete o.RunningFor;
          delete o.Status;
          return o;
        });
    assert.deepEqual(strip(cps.stdout), strip(dps.stdout));
    const dex = await runCmd(DOCKER, ['exec', 'dk1', 'fail', '5']);
    assert.equal(dex.code, 5);
    assert.equal(dex.stderr, 'failing\n');
    const dimg = await runCmd(DOCKER, ['images', '--format', '{{json .}}']);
    const cimg = await cove('images', '--format', '{{json .}}');
    const stripImg = (s: string) =>
      s
        .trim()
        .split('\n')
        .map((l) => {
          const o = JSON.parse(l);
          delete o.CreatedSince;
          return o;
        })
        .sort((a, b) => a.ID.localeCompare(b.ID) || a.Tag.localeCompare(b.Tag));
    assert.deepEqual(stripImg(cimg.stdout), stripImg(dimg.stdout));
    assert.equal((await runCmd(DOCKER, ['rm', '-f', 'dk1'])).code, 0);
    const swarm = await runCmd(DOCKER, ['node', 'ls']);
    assert.equal(swarm.code, 1);
    assert.match(swarm.stderr, /This node is not a swarm manager/);
  },
);
