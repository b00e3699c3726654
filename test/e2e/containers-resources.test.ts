/**
 * Resource limits as Docker users set them, through the real docker CLI and
 * the API: `--memory/--cpus/--pids-limit/--device-cgroup-rule` written into
 * the container's cgroups (read back from /sys/fs/cgroup) and enforced (a
 * process over its memory is OOM-killed), shown in inspect; `docker update`
 * changing a running container's cgroups and restart policy; Docker's refusals.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Lab } from '../lab/lab.js';
import { api, clientLab, docker, dockerOk, dockerPresent, teardown, DOCKER_BIN } from './clients-helpers.js';

const skip = dockerPresent()
  ? false
  : `the docker CLI is not installed (${DOCKER_BIN} is missing); these tests need it`;

let lab: Lab | undefined;
before(async () => {
  if (!skip) lab = await clientLab('cove-t-rs');
});
after(async () => {
  await teardown(lab);
});

function L(): Lab {
  assert.ok(lab, 'lab not started');
  return lab;
}

function cg(controller: string, id: string, file: string): string {
  return readFileSync(`/sys/fs/cgroup/${controller}/cove/${id}/${file}`, 'utf8').trim();
}

test(
  '--memory/--cpus/--pids-limit/--device-cgroup-rule land in the cgroups, show in inspect, and docker update changes them live',
  { skip },
  async () => {
    await dockerOk(L(), [
      'run',
      '-d',
      '--name',
      'rs',
      '--network',
      'none',
      '--memory',
      '64m',
      '--cpus',
      '0.5',
      '--pids-limit',
      '50',
      '--device-cgroup-rule',
      'c 10:229 rw',
      'alpine',
      'sleep',
      '300',
    ]);
    const ins = (await api(L(), 'GET', '/containers/rs/json')).json();
    const id = ins.Id as string;
    assert.equal(ins.HostConfig.Memory, 64 * 1024 * 1024);
    assert.equal(ins.HostConfig.MemorySwap, 128 * 1024 * 1024, 'swap defaults to twice the memory, as Docker sets it');
    assert.equal(ins.HostConfig.NanoCpus, 500_000_000);
    assert.equal(ins.HostConfig.PidsLimit, 50);
    assert.deepEqual(ins.HostConfig.DeviceCgroupRules, ['c 10:229 rw']);
    assert.equal(cg('memory', id, 'memory.limit_in_bytes'), String(64 * 1024 * 1024));
    assert.equal(cg('cpu', id, 'cpu.cfs_quota_us'), '50000');
    assert.equal(cg('cpu', id, 'cpu.cfs_period_us'), '100000');
    assert.equal(cg('pids', id, 'pids.max'), '50');
    assert.match(cg('devices', id, 'devices.list'), /^c 10:229 rw$/m);
    // A user sees the pids limit: forking past it fails inside.
    const forks = await docker(L(), ['exec', 'rs', 'sh', '-c', 'for i in $(seq 1 60); do sleep 5 & done 2>&1; wait']);
    assert.match(forks.stdout + forks.stderr, /can't fork|Resource temporarily unavailable|Cannot allocate|fork/i);

    // docker update: live cgroups, inspect, restart policy.
    const upd = await dockerOk(L(), [
      'update',
      '--memory',
      '96m',
      '--memory-swap',
      '192m',
      '--cpus',
      '1.5',
      '--pids-limit',
      '200',
      '--restart',
      'unless-stopped',
      'rs',
    ]);
    assert.equal(upd, 'rs');
    assert.equal(cg('memory', id, 'memory.limit_in_bytes'), String(96 * 1024 * 1024));
    assert.equal(cg('cpu', id, 'cpu.cfs_quota_us'), '150000');
    assert.equal(cg('pids', id, 'pids.max'), '200');
    const after = (await api(L(), 'GET', '/containers/rs/json')).json();
    assert.equal(after.HostConfig.Memory, 96 * 1024 * 1024);
    assert.equal(after.HostConfig.MemorySwap, 192 * 1024 * 1024);
    assert.equal(after.HostConfig.NanoCpus, 1_500_000_000);
    assert.equal(after.HostConfig.PidsLimit, 200);
    assert.deepEqual(after.HostConfig.RestartPolicy, { Name: 'unless-stopped', MaximumRetryCount: 0 });
    // The API answer's shape.
    const viaApi = await api(L(), 'POST', '/containers/rs/update', { CpuShares: 512 });
    assert.equal(viaApi.status, 200, viaApi.text);
    assert.deepEqual(viaApi.json(), { Warnings: [] });
    assert.equal(cg('cpu', id, 'cpu.shares'), '512');

    // Refusals: Docker's words, nothing changed.
    const tooSmall = await docker(L(), ['update', '--memory', '1m', 'rs']);
    assert.match(tooSmall.stderr, /Minimum memory limit allowed is 6MB/);
    const badType = await api(L(), 'POST', '/containers/rs/update', { Memory: 'lots' });
    assert.equal(badType.status, 400);
    assert.equal(cg('memory', id, 'memory.limit_in_bytes'), String(96 * 1024 * 1024));
    const tooMany = await docker(L(), ['run', '--cpus', '64', 'alpine', 'true']);
    assert.match(tooMany.stderr, /Range of CPUs is from 0\.01 to \d+\.00, as there are only \d+ CPUs available/);
    const badRule = await docker(L(), ['run', '--device-cgroup-rule', 'x 1:2 q', 'alpine', 'true']);
    assert.notEqual(badRule.code, 0);
    assert.match((await docker(L(), ['update', '--memory', '1m', 'nosuch'])).stderr, /No such container: nosuch/);
    await dockerOk(L(), ['rm', '-f', 'rs']);
  },
);

test('a process over its memory limit is OOM-killed: exit 137', { skip }, async () => {
  // The shell holds a 100 MB string against 16 MB (+16 MB swap).
  const r = await docker(
    L(),
    [
      'run',
      '--name',
      'rs-oom',
      '--network',
      'none',
      '--memory',
      '16m',
      'alpine',
      'sh',
      '-c',
      'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo survived',
    ],
    { timeoutMs: 120_000 },
  );
  assert.doesNotMatch(r.stdout, /survived/);
  assert.equal(r.code, 137, r.stderr);
  // Without the limit the same command lives: the limit, not the command, killed it.
  const free = await docker(
    L(),
    [
      'run',
      '--rm',
      '--network',
      'none',
      'alpine',
      'sh',
      '-c',
      'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo survived',
    ],
    { timeoutMs: 120_000 },
  );
  assert.match(free.stdout, /survived/);
  await dockerOk(L(), ['rm', '-f', 'rs-oom']);
});
