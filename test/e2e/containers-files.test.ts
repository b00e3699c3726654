/**
 * A container's filesystem as Docker users look at it, through the real docker
 * CLI and the API: `docker diff` (GET /containers/{id}/changes, Kind 0/1/2
 * from the overlay's upper dir: added, changed, deleted files and a directory
 * replaced whole), `docker commit` with `--change` (the new image runs with
 * the container's files, deletions and the changed CMD/ENV/EXPOSE/LABEL),
 * `docker export` (a tar of the root filesystem that `docker import` turns
 * back into a runnable image); Docker's refusals.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tar from 'tar';
import type { Lab } from '../lab/lab.js';
import { api, clientLab, docker, dockerOk, dockerPresent, teardown, DOCKER_BIN } from './clients-helpers.js';

const skip = dockerPresent()
  ? false
  : `the docker CLI is not installed (${DOCKER_BIN} is missing); these tests need it`;

let lab: Lab | undefined;
let work = '';
before(async () => {
  if (skip) return;
  lab = await clientLab('cove-t-fs');
  work = join(lab.dir, 'fs-work');
  mkdirSync(work, { recursive: true });
});
after(async () => {
  await teardown(lab);
});

function L(): Lab {
  assert.ok(lab, 'lab not started');
  return lab;
}

/** What the container changes: a new file, an appended file, a deleted one, a directory replaced whole. */
const CHANGES = [
  'echo new > /tmp/new.txt',
  'echo "extra:x:1234:1234::/:/bin/sh" >> /etc/passwd',
  'rm /etc/group',
  'rm -rf /usr/local && mkdir /usr/local && echo only > /usr/local/only.txt',
  'mkdir -p /data && echo "hello from the committed layer" > /data/msg',
].join(' && ');

test('docker diff: added, changed and deleted paths as Docker lists them, also through the API', { skip }, async () => {
  await dockerOk(L(), ['run', '-d', '--name', 'fsd', '--network', 'none', 'alpine', 'sleep', '300']);
  assert.equal(await dockerOk(L(), ['diff', 'fsd']), '', 'a fresh container has no changes');
  const none = await api(L(), 'GET', '/containers/fsd/changes');
  assert.equal(none.status, 200);
  assert.equal(none.json(), null, 'Docker answers null when nothing changed');
  await dockerOk(L(), ['exec', 'fsd', 'sh', '-c', CHANGES]);
  const lines = (await dockerOk(L(), ['diff', 'fsd'])).split('\n');
  for (const want of [
    'C /tmp',
    'A /tmp/new.txt',
    'C /etc',
    'C /etc/passwd',
    'D /etc/group',
    'C /usr',
    'D /usr/local',
    'A /usr/local/only.txt',
    'A /data',
    'A /data/msg',
  ]) {
    assert.ok(lines.includes(want), `docker diff shows ${want}: ${lines.join(' | ')}`);
  }
  // Mountpoints the runtime makes (Docker's init layer) are not the container's changes.
  assert.ok(
    !lines.some((l) => /^\w \/(proc|sys|dev)$|\/etc\/(hosts|hostname|resolv\.conf)$/.test(l)),
    lines.join(' | '),
  );
  const viaApi = (await api(L(), 'GET', '/containers/fsd/changes')).json() as Array<{ Path: string; Kind: number }>;
  assert.deepEqual(
    viaApi.find((c) => c.Path === '/tmp/new.txt'),
    { Path: '/tmp/new.txt', Kind: 1 },
  );
  assert.deepEqual(
    viaApi.find((c) => c.Path === '/etc/passwd'),
    { Path: '/etc/passwd', Kind: 0 },
  );
  assert.deepEqual(
    viaApi.find((c) => c.Path === '/etc/group'),
    { Path: '/etc/group', Kind: 2 },
  );
  assert.equal(viaApi.length, lines.length, 'the CLI prints one line per change');
  // A stopped container keeps its changes.
  await dockerOk(L(), ['stop', '-t', '1', 'fsd']);
  assert.deepEqual((await dockerOk(L(), ['diff', 'fsd'])).split('\n'), lines);
  const missing = await docker(L(), ['diff', 'nosuch']);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /No such container: nosuch/);
  await dockerOk(L(), ['rm', 'fsd']);
});

test(
  "docker commit --change: the new image holds the container's files and deletions and runs with the changed config",
  { skip },
  async () => {
    await dockerOk(L(), ['run', '-d', '--name', 'fsc', '--network', 'none', 'alpine', 'sleep', '300']);
    await dockerOk(L(), ['exec', 'fsc', 'sh', '-c', CHANGES]);
    const id = await dockerOk(L(), [
      'commit',
      '--change',
      'CMD ["cat", "/data/msg"]',
      '--change',
      'ENV GREETING=hi',
      '--change',
      'EXPOSE 8080',
      '--change',
      'LABEL team=net',
      '-m',
      'made by a test',
      '-a',
      'tester',
      'fsc',
      'committed:v1',
    ]);
    assert.match(id, /^sha256:[0-9a-f]{64}$/);
    // The committed container was paused for the commit and runs on.
    assert.equal(await dockerOk(L(), ['inspect', '-f', '{{.State.Status}}', 'fsc']), 'running');
    // The new image runs its new CMD with the committed file.
    assert.equal(
      await dockerOk(L(), ['run', '--rm', '--network', 'none', 'committed:v1']),
      'hello from the committed layer',
    );
    const inside = await dockerOk(L(), [
      'run',
      '--rm',
      '--network',
      'none',
      'committed:v1',
      'sh',
      '-c',
      'echo "$GREETING"; cat /tmp/new.txt; grep -c extra /etc/passwd; test -e /etc/group && echo group-present || echo group-gone; ls /usr/local',
    ]);
    assert.deepEqual(
      inside.split('\n'),
      ['hi', 'new', '1', 'group-gone', 'only.txt'],
      'files, the deletion and the replaced directory are in the image',
    );
    const img = (await api(L(), 'GET', '/images/committed:v1/json')).json();
    assert.equal(img.Id, id);
    assert.deepEqual(img.Config.Cmd, ['cat', '/data/msg']);
    assert.ok(img.Config.Env.includes('GREETING=hi'));
    assert.deepEqual(img.Config.ExposedPorts, { '8080/tcp': {} });
    assert.equal(img.Config.Labels.team, 'net');
    assert.equal(img.Comment, 'made by a test');
    assert.equal(img.Author, 'tester');
    const base = (await api(L(), 'GET', '/images/alpine/json')).json();
    assert.equal(img.Parent, base.Id);
    assert.equal(img.RootFS.Layers.length, base.RootFS.Layers.length + 1, 'one layer more than its base');
    const hist = (await dockerOk(L(), ['history', '--format', '{{.Comment}}', 'committed:v1'])).split('\n');
    assert.equal(hist[0], 'made by a test');
    // The API: POST /commit with a config body and no pause; an untagged image.
    const viaApi = await api(
      L(),
      'POST',
      '/commit?container=fsc&pause=0&changes=' + encodeURIComponent('WORKDIR /data'),
      { Cmd: ['cat', 'msg'] },
    );
    assert.equal(viaApi.status, 201, viaApi.text);
    const newId = viaApi.json().Id as string;
    assert.equal(await dockerOk(L(), ['run', '--rm', '--network', 'none', newId]), 'hello from the committed layer');
    // Refusals: Docker's words, no image made.
    const before = (await api(L(), 'GET', '/images/json')).json().length;
    const bad = await docker(L(), ['commit', '--change', 'FROB x', 'fsc', 'committed:bad']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /FROB is not a valid change command/);
    const nosuch = await docker(L(), ['commit', 'nosuch', 'committed:bad']);
    assert.match(nosuch.stderr, /No such container: nosuch/);
    assert.equal((await api(L(), 'GET', '/images/json')).json().length, before);
    await dockerOk(L(), ['rm', '-f', 'fsc']);
    await dockerOk(L(), ['rmi', 'committed:v1', newId]);
  },
);

test(
  'docker export: a tar of the root filesystem (running and stopped) that docker import runs again',
  { skip },
  async () => {
    await dockerOk(L(), [
      'run',
      '-d',
      '--name',
      'fse',
      '--network',
      'none',
      '-v',
      'fsevol:/vol',
      'alpine',
      'sleep',
      '300',
    ]);
    await dockerOk(L(), ['exec', 'fse', 'sh', '-c', CHANGES + ' && echo in-volume > /vol/f']);
    const out = join(work, 'fse.tar');
    await dockerOk(L(), ['export', '-o', out, 'fse']);
    const names: string[] = [];
    await tar.t({ file: out, onReadEntry: (e) => names.push(e.path.replace(/\/$/, '')) });
    for (const want of ['bin/busybox', 'etc/passwd', 'tmp/new.txt', 'data/msg', 'usr/local/only.txt'])
      assert.ok(names.includes(want), `export holds ${want}`);
    for (const gone of ['etc/group', 'usr/local/bin', 'vol/f'])
      assert.ok(!names.includes(gone), `export lacks ${gone}`);
    // A stopped container exports too; the tar imports into an image that runs.
    await dockerOk(L(), ['stop', '-t', '1', 'fse']);
    const again = join(work, 'fse-stopped.tar');
    await dockerOk(L(), ['export', '--output', again, 'fse']);
    await dockerOk(L(), ['import', '--change', 'CMD ["cat", "/data/msg"]', again, 'exported:v1']);
    assert.equal(
      await dockerOk(L(), ['run', '--rm', '--network', 'none', 'exported:v1']),
      'hello from the committed layer',
    );
    // The raw API: a tar stream.
    const raw = await api(L(), 'GET', '/containers/fse/export');
    assert.equal(raw.status, 200);
    assert.match(String(raw.headers['content-type']), /application\/x-tar/);
    const nosuch = await docker(L(), ['export', '-o', join(work, 'x.tar'), 'nosuch']);
    assert.match(nosuch.stderr, /No such container: nosuch/);
    await dockerOk(L(), ['rm', '-v', 'fse']);
    await dockerOk(L(), ['volume', 'rm', 'fsevol']);
    await dockerOk(L(), ['rmi', 'exported:v1']);
  },
);
