/**
 * `docker stats` (streamed and --no-stream), `docker top`, `docker
 * pause/unpause` through the real docker CLI and the API: the numbers come
 * from the container's cgroups and its sandbox's interfaces (traffic sent from
 * inside shows up), the shapes are Docker's StatsJSON.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { Lab } from '../lab/lab.js';
import { api, clientLab, docker, dockerOk, dockerPresent, teardown, DOCKER_BIN } from './clients-helpers.js';

const skip = dockerPresent()
  ? false
  : `the docker CLI is not installed (${DOCKER_BIN} is missing); these tests need it`;

let lab: Lab | undefined;
before(async () => {
  if (!skip) lab = await clientLab('cove-t-st');
});
after(async () => {
  await teardown(lab);
});

function L(): Lab {
  assert.ok(lab, 'lab not started');
  return lab;
}

/** The first `n` JSON lines of a streamed GET. */
function streamLines(path: string, n: number): Promise<Array<Record<string, any>>> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: L().socket, path, method: 'GET', timeout: 20_000 }, (res) => {
      let buf = '';
      const got: Array<Record<string, any>> = [];
      res.on('data', (c: Buffer) => {
        buf += c.toString();
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          got.push(JSON.parse(buf.slice(0, i)));
          buf = buf.slice(i + 1);
          if (got.length === n) {
            req.destroy();
            resolve(got);
            return;
          }
        }
      });
      res.on('end', () => resolve(got));
    });
    req.on('timeout', () => req.destroy(new Error('stats stream timed out')));
    req.on('error', (e) => (e.message === 'socket hang up' ? undefined : reject(e)));
    req.end();
  });
}

test("stats: traffic sent from inside, CPU, memory and pids from the cgroup, Docker's shape", { skip }, async () => {
  await dockerOk(L(), ['run', '-d', '--name', 'st-target', 'alpine', 'sleep', '300']);
  await dockerOk(L(), ['run', '-d', '--name', 'st-src', 'alpine', 'sleep', '300']);
  const ip = await dockerOk(L(), ['inspect', '--format', '{{.NetworkSettings.IPAddress}}', 'st-target']);
  const before = (await api(L(), 'GET', '/containers/st-src/stats?stream=false&one-shot=true')).json();
  // 20 pings of 1000 bytes from inside: >= 20 kB leave st-src's eth0.
  await dockerOk(L(), ['exec', 'st-src', 'ping', '-c', '20', '-i', '0.05', '-s', '1000', '-W', '2', ip]);
  const s = (await api(L(), 'GET', '/containers/st-src/stats?stream=false')).json();
  assert.deepEqual(Object.keys(s).sort(), [
    'blkio_stats',
    'cpu_stats',
    'id',
    'memory_stats',
    'name',
    'networks',
    'num_procs',
    'pids_stats',
    'precpu_stats',
    'preread',
    'read',
    'storage_stats',
  ]);
  assert.equal(s.name, '/st-src');
  assert.ok(s.networks.eth0.tx_bytes - before.networks.eth0.tx_bytes >= 20 * 1000, JSON.stringify(s.networks));
  assert.ok(s.networks.eth0.rx_packets - before.networks.eth0.rx_packets >= 20);
  assert.ok(!('lo' in s.networks));
  assert.ok(s.cpu_stats.cpu_usage.total_usage > 0);
  assert.ok(s.cpu_stats.system_cpu_usage > 0);
  assert.ok(s.precpu_stats.system_cpu_usage > 0, 'stream=false without one-shot fills precpu_stats');
  assert.notEqual(s.preread, '0001-01-01T00:00:00Z');
  assert.ok(s.memory_stats.usage > 0 && s.memory_stats.limit > s.memory_stats.usage);
  assert.equal(s.pids_stats.current, 1);
  // docker stats --no-stream prints the table with the traffic.
  const table = await dockerOk(L(), ['stats', '--no-stream', '--format', '{{.Name}} {{.NetIO}} {{.PIDs}}', 'st-src']);
  assert.match(table, /^st-src \d+(\.\d+)?[kM]B \/ \d+(\.\d+)?[kM]B 1$/);
  const all = await dockerOk(L(), ['stats', '--no-stream', '--format', '{{.Name}}']);
  assert.deepEqual(all.split('\n').sort(), ['st-src', 'st-target']);
  // Streamed: one sample a second, precpu from the one before.
  const lines = await streamLines('/containers/st-target/stats', 2);
  assert.equal(lines.length, 2);
  assert.equal(lines[1]!.preread, lines[0]!.read);
  // Unknown container: a JSON 404.
  assert.equal((await api(L(), 'GET', '/containers/nosuch/stats?stream=false')).status, 404);
  // top: the container's processes only, docker's table.
  const top = await dockerOk(L(), ['top', 'st-src']);
  assert.match(top, /^UID\s+PID\s+PPID\s+C\s+STIME\s+TTY\s+TIME\s+CMD$/m);
  assert.match(top, /sleep 300$/m);
  assert.equal(top.trim().split('\n').length, 2);
  const topAux = (await api(L(), 'GET', '/containers/st-src/top?ps_args=aux')).json();
  assert.ok(topAux.Titles.includes('%CPU'));
  await dockerOk(L(), ['rm', '-f', 'st-src', 'st-target']);
});

test('pause/unpause freeze the container; errors as Docker words them', { skip }, async () => {
  await dockerOk(L(), [
    'run',
    '-d',
    '--name',
    'pz',
    'alpine',
    'sh',
    '-c',
    'while true; do date +%s%N > /tmp/tick; sleep 0.1; done',
  ]);
  await dockerOk(L(), ['pause', 'pz']);
  assert.equal(
    await dockerOk(L(), ['inspect', '--format', '{{.State.Status}} {{.State.Paused}}', 'pz']),
    'paused true',
  );
  assert.match(await dockerOk(L(), ['ps', '--format', '{{.Status}}', '--filter', 'name=pz']), /\(Paused\)$/);
  const again = await docker(L(), ['pause', 'pz']);
  assert.match(again.stderr, /Container [0-9a-f]{64} is already paused/);
  // Frozen: the ticks stop (read from the host through the rootfs).
  const merged = await dockerOk(L(), ['inspect', '--format', '{{.GraphDriver.Data.MergedDir}}', 'pz']);
  const { readFileSync } = await import('node:fs');
  const t1 = readFileSync(`${merged}/tmp/tick`, 'utf8');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(readFileSync(`${merged}/tmp/tick`, 'utf8'), t1);
  await dockerOk(L(), ['unpause', 'pz']);
  await new Promise((r) => setTimeout(r, 500));
  assert.notEqual(readFileSync(`${merged}/tmp/tick`, 'utf8'), t1);
  const notPaused = await docker(L(), ['unpause', 'pz']);
  assert.match(notPaused.stderr, /Container [0-9a-f]{64} is not paused/);
  // A paused container stops (and is removed) like any other.
  await dockerOk(L(), ['pause', 'pz']);
  await dockerOk(L(), ['stop', '-t', '1', 'pz']);
  assert.equal(
    await dockerOk(L(), ['inspect', '--format', '{{.State.Status}} {{.State.Paused}}', 'pz']),
    'exited false',
  );
  const stopped = await docker(L(), ['pause', 'pz']);
  assert.notEqual(stopped.code, 0);
  assert.match(stopped.stderr, /Container [0-9a-f]{64} is not running/);
  const stoppedTop = await api(L(), 'GET', '/containers/pz/top');
  assert.equal(stoppedTop.status, 409);
  await dockerOk(L(), ['rm', 'pz']);
});

test('the cove CLI: pause, unpause, top', { skip }, async () => {
  await dockerOk(L(), ['run', '-d', '--name', 'cz', 'alpine', 'sleep', '300']);
  assert.equal(await L().coveOk(['pause', 'cz']), 'cz');
  assert.equal(await dockerOk(L(), ['inspect', '--format', '{{.State.Status}}', 'cz']), 'paused');
  assert.equal(await L().coveOk(['unpause', 'cz']), 'cz');
  const top = await L().coveOk(['top', 'cz']);
  assert.match(top, /^UID\s+PID\s+PPID/);
  assert.match(top, /sleep 300$/m);
  await dockerOk(L(), ['rm', '-f', 'cz']);
});
