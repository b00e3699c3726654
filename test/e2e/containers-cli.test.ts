/**
 * The cove CLI's container verbs as a docker user types them, against a lab
 * daemon: resource and log flags on run (read back from inspect and the
 * cgroups), `cove update`, `cove stats --no-stream` (docker's table; traffic
 * sent from inside shows), top, pause/unpause, `cove cp` both ways, `cove diff`,
 * `cove commit -c` (the image runs) and `cove export`.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tar from 'tar';
import type { Lab } from '../lab/lab.js';
import { api, clientLab, teardown } from './clients-helpers.js';

let lab: Lab | undefined;
let work = '';
before(async () => {
  lab = await clientLab('cove-t-cli');
  work = join(lab.dir, 'cli-work');
  mkdirSync(work, { recursive: true });
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

test('cove run with --memory/--cpus/--pids-limit/--log-driver/--log-opt/--group-add, then cove update', async () => {
  await L().coveOk([
    'run',
    '-d',
    '--name',
    'cl1',
    '--memory',
    '64m',
    '--cpus',
    '0.5',
    '--pids-limit',
    '50',
    '--log-driver',
    'json-file',
    '--log-opt',
    'max-size=1m',
    '--log-opt',
    'max-file=2',
    '--group-add',
    'daemon',
    '--runtime',
    'runc',
    'alpine',
    'sleep',
    '300',
  ]);
  const ins = (await api(L(), 'GET', '/containers/cl1/json')).json();
  assert.equal(ins.HostConfig.Memory, 64 * 1024 * 1024);
  assert.equal(ins.HostConfig.NanoCpus, 500_000_000);
  assert.equal(ins.HostConfig.PidsLimit, 50);
  assert.deepEqual(ins.HostConfig.LogConfig, { Type: 'json-file', Config: { 'max-size': '1m', 'max-file': '2' } });
  assert.deepEqual(ins.HostConfig.GroupAdd, ['daemon']);
  assert.equal(ins.HostConfig.Runtime, 'runc');
  assert.equal(cg('memory', ins.Id, 'memory.limit_in_bytes'), String(64 * 1024 * 1024));
  assert.equal(cg('pids', ins.Id, 'pids.max'), '50');
  assert.equal(await L().coveOk(['exec', 'cl1', 'id', '-G']), '0 1');
  assert.equal(
    await L().coveOk([
      'update',
      '--memory',
      '96m',
      '--memory-swap',
      '192m',
      '--cpus',
      '1',
      '--pids-limit',
      '80',
      '--restart',
      'on-failure:3',
      'cl1',
    ]),
    'cl1',
  );
  assert.equal(cg('memory', ins.Id, 'memory.limit_in_bytes'), String(96 * 1024 * 1024));
  assert.equal(cg('cpu', ins.Id, 'cpu.cfs_quota_us'), '100000');
  assert.equal(cg('pids', ins.Id, 'pids.max'), '80');
  assert.deepEqual((await api(L(), 'GET', '/containers/cl1/json')).json().HostConfig.RestartPolicy, {
    Name: 'on-failure',
    MaximumRetryCount: 3,
  });
  const none = await L().cove(['update', 'cl1']);
  assert.notEqual(none.code, 0);
  assert.match(none.stderr, /you must provide one or more flags/);
  const missing = await L().cove(['update', '--memory', '96m', 'nosuch']);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /No such container: nosuch/);
  const badSize = await L().cove(['run', '--memory', 'lots', 'alpine', 'true']);
  assert.notEqual(badSize.code, 0);
  assert.match(badSize.stderr, /invalid argument "lots" for "--memory" flag/);
  const badDriver = await L().cove(['run', '--log-driver', 'nosuch', 'alpine', 'true']);
  assert.match(badDriver.stderr, /no log driver named 'nosuch' is registered/);
  await L().coveOk(['rm', '-f', 'cl1']);
});

test("cove stats --no-stream (docker's table, traffic from inside), top, pause/unpause", async () => {
  await L().coveOk(['run', '-d', '--name', 'cl2', '--memory', '32m', 'alpine', 'sleep', '300']);
  const gw = (await api(L(), 'GET', '/containers/cl2/json')).json().NetworkSettings.Networks.bridge.Gateway as string;
  await L().coveOk(['exec', 'cl2', 'ping', '-c', '3', '-s', '1000', '-W', '5', gw]);
  const table = (await L().coveOk(['stats', '--no-stream'])).split('\n');
  assert.match(table[0]!, /^CONTAINER ID\s+NAME\s+CPU %\s+MEM USAGE \/ LIMIT\s+MEM %\s+NET I\/O\s+BLOCK I\/O\s+PIDS$/);
  const row = table.find((l) => /\scl2\s/.test(l));
  assert.ok(row, table.join('\n'));
  assert.match(
    row,
    /^[0-9a-f]{12}\s+cl2\s+\d+\.\d\d%\s+[\d.]+[KMG]?i?B \/ 32MiB\s+\d+\.\d\d%\s+[\d.]+[kMG]?B \/ [\d.]+[kMG]?B\s+\S+ \/ \S+\s+1$/,
  );
  const net = await L().coveOk(['stats', '--no-stream', '--format', '{{.Name}} {{.NetIO}}', 'cl2']);
  const [, rx, tx] = /^cl2 ([\d.]+\S*B) \/ ([\d.]+\S*B)$/.exec(net) ?? [];
  assert.ok(rx && tx, net);
  assert.ok(!/^0B$/.test(rx) && !/^0B$/.test(tx), `the pings show as traffic: ${net}`);
  assert.match(await L().coveOk(['top', 'cl2']), /sleep 300/);
  assert.equal(await L().coveOk(['pause', 'cl2']), 'cl2');
  assert.equal(await L().coveOk(['inspect', '-f', '{{.State.Status}}', 'cl2']), 'paused');
  assert.equal(await L().coveOk(['unpause', 'cl2']), 'cl2');
  assert.equal(await L().coveOk(['inspect', '-f', '{{.State.Status}}', 'cl2']), 'running');
  const stopped = await L().cove(['stats', '--no-stream', 'nosuch']);
  assert.match(stopped.stderr, /No such container: nosuch/);
  await L().coveOk(['rm', '-f', 'cl2']);
});

test('cove cp both ways, cove diff, cove commit -c and cove export', async () => {
  await L().coveOk(['run', '-d', '--name', 'cl3', '--network', 'none', 'alpine', 'sleep', '300']);
  writeFileSync(join(work, 'a.txt'), 'from the host\n');
  mkdirSync(join(work, 'tree/sub'), { recursive: true });
  writeFileSync(join(work, 'tree/sub/deep.txt'), 'deep\n');
  await L().coveOk(['cp', join(work, 'a.txt'), 'cl3:/tmp/']);
  await L().coveOk(['cp', join(work, 'a.txt'), 'cl3:/tmp/renamed.txt']);
  await L().coveOk(['cp', join(work, 'tree'), 'cl3:/srv']);
  assert.equal(
    await L().coveOk(['exec', 'cl3', 'cat', '/tmp/a.txt', '/tmp/renamed.txt', '/srv/sub/deep.txt']),
    'from the host\nfrom the host\ndeep',
  );
  await L().coveOk(['exec', 'cl3', 'sh', '-c', 'mkdir -p /out/d && echo made inside > /out/d/f']);
  await L().coveOk(['cp', 'cl3:/out/d/f', join(work, 'f-copy')]);
  assert.equal(readFileSync(join(work, 'f-copy'), 'utf8'), 'made inside\n');
  mkdirSync(join(work, 'into'));
  await L().coveOk(['cp', 'cl3:/out', join(work, 'into')]);
  assert.equal(readFileSync(join(work, 'into/out/d/f'), 'utf8'), 'made inside\n');
  const diff = (await L().coveOk(['diff', 'cl3'])).split('\n');
  for (const want of ['C /tmp', 'A /tmp/a.txt', 'A /srv', 'A /srv/sub/deep.txt', 'A /out/d/f'])
    assert.ok(diff.includes(want), `${want} in ${diff.join(' | ')}`);
  const id = await L().coveOk([
    'commit',
    '-c',
    'CMD ["cat", "/tmp/renamed.txt"]',
    '-m',
    'cli commit',
    'cl3',
    'clicommit:v1',
  ]);
  assert.match(id, /^sha256:[0-9a-f]{64}$/);
  assert.equal(await L().coveOk(['run', '--rm', '--network', 'none', 'clicommit:v1']), 'from the host');
  const out = join(work, 'cl3.tar');
  await L().coveOk(['export', '-o', out, 'cl3']);
  const names: string[] = [];
  await tar.t({ file: out, onReadEntry: (e) => names.push(e.path) });
  assert.ok(names.includes('srv/sub/deep.txt') && names.includes('bin/busybox'), names.slice(0, 20).join(' '));
  const bad = await L().cove(['cp', join(work, 'a.txt'), 'nosuch:/tmp/']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /No such container: nosuch/);
  await L().coveOk(['rm', '-f', 'cl3']);
  await L().coveOk(['rmi', 'clicommit:v1']);
});
