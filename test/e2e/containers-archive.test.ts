/**
 * `docker cp` both ways and the archive API (HEAD/GET/PUT
 * /containers/{id}/archive with X-Docker-Container-Path-Stat), for running and
 * stopped containers and into volumes; symlinks planted in the container
 * (absolute, relative, in an uploaded tar) never reach host paths
 * (CVE-2018-15664 / CVE-2019-14271 class).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
  symlinkSync,
} from 'node:fs';
import { join } from 'node:path';
import * as tar from 'tar';
import type { Lab } from '../lab/lab.js';
import { api, clientLab, docker, dockerOk, dockerPresent, teardown, DOCKER_BIN } from './clients-helpers.js';

const skip = dockerPresent()
  ? false
  : `the docker CLI is not installed (${DOCKER_BIN} is missing); these tests need it`;

let lab: Lab | undefined;
let work: string;
before(async () => {
  if (skip) return;
  lab = await clientLab('cove-t-cp');
  work = join(lab.dir, 'cp-work');
  mkdirSync(work, { recursive: true });
});
after(async () => {
  if (lab && (await lab.ping())) {
    const vs = (await api(lab, 'GET', '/volumes')).json() as { Volumes: Array<{ Name: string }> };
    const cs = (await api(lab, 'GET', '/containers/json?all=1')).json() as Array<{ Id: string }>;
    for (const c of cs)
      await api(lab, 'DELETE', `/containers/${c.Id}?force=1`, undefined, {}, 60_000).catch(() => undefined);
    for (const v of vs.Volumes ?? []) await api(lab, 'DELETE', `/volumes/${v.Name}?force=1`).catch(() => undefined);
  }
  await teardown(lab);
});

function L(): Lab {
  assert.ok(lab, 'lab not started');
  return lab;
}

test('docker cp: files and directories both ways, running and stopped, into a volume', { skip }, async () => {
  await dockerOk(L(), ['run', '-d', '--name', 'cpa', '-v', 'cpvol:/vol', 'alpine', 'sleep', '300']);
  writeFileSync(join(work, 'hello.txt'), 'hello from the host\n');
  mkdirSync(join(work, 'tree/sub'), { recursive: true });
  writeFileSync(join(work, 'tree/sub/deep.txt'), 'deep\n');
  await dockerOk(L(), ['cp', join(work, 'hello.txt'), 'cpa:/tmp/']);
  assert.equal(await dockerOk(L(), ['exec', 'cpa', 'cat', '/tmp/hello.txt']), 'hello from the host');
  await dockerOk(L(), ['cp', join(work, 'tree'), 'cpa:/tmp/tree']);
  assert.equal(await dockerOk(L(), ['exec', 'cpa', 'cat', '/tmp/tree/sub/deep.txt']), 'deep');
  // Into the volume: seen by another container through it.
  await dockerOk(L(), ['cp', join(work, 'hello.txt'), 'cpa:/vol/in-volume.txt']);
  assert.equal(
    await dockerOk(L(), ['run', '--rm', '-v', 'cpvol:/v', 'alpine', 'cat', '/v/in-volume.txt']),
    'hello from the host',
  );
  // Out: a file and a directory.
  await dockerOk(L(), [
    'exec',
    'cpa',
    'sh',
    '-c',
    'mkdir -p /data/d && echo made inside > /data/d/f && echo x > /data/top',
  ]);
  await dockerOk(L(), ['cp', 'cpa:/data', join(work, 'out')]);
  assert.equal(readFileSync(join(work, 'out/d/f'), 'utf8'), 'made inside\n');
  await dockerOk(L(), ['cp', 'cpa:/data/top', join(work, 'top.txt')]);
  assert.equal(readFileSync(join(work, 'top.txt'), 'utf8'), 'x\n');
  // To stdout as a tar.
  const t = await docker(L(), ['cp', 'cpa:/data/top', '-']);
  assert.equal(t.code, 0);
  assert.match(t.stdout, /^top\0/);
  // A stopped container: both ways, its rootfs unmounted again after.
  await dockerOk(L(), ['stop', '-t', '0', 'cpa']);
  await dockerOk(L(), ['cp', join(work, 'hello.txt'), 'cpa:/root/while-stopped.txt']);
  await dockerOk(L(), ['cp', 'cpa:/tmp/tree/sub/deep.txt', join(work, 'deep-stopped.txt')]);
  assert.equal(readFileSync(join(work, 'deep-stopped.txt'), 'utf8'), 'deep\n');
  const merged = JSON.parse(
    await dockerOk(L(), ['inspect', '--format', '{{json .GraphDriver.Data.MergedDir}}', 'cpa']),
  );
  assert.ok(
    !readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${merged} `),
    "the stopped container's rootfs stayed mounted",
  );
  await dockerOk(L(), ['start', 'cpa']);
  assert.equal(await dockerOk(L(), ['exec', 'cpa', 'cat', '/root/while-stopped.txt']), 'hello from the host');
  // Missing paths: Docker's words.
  const missing = await docker(L(), ['cp', 'cpa:/no/such', join(work, 'x')]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /Could not find the file \/no\/such in container cpa/);
  await dockerOk(L(), ['rm', '-f', 'cpa']);
});

test('archive API: HEAD and GET carry X-Docker-Container-Path-Stat; PUT needs a directory', { skip }, async () => {
  await dockerOk(L(), [
    'run',
    '-d',
    '--name',
    'cpb',
    'alpine',
    'sh',
    '-c',
    'mkdir /d; echo 12345 > /d/f; ln -s /d/f /d/link; sleep 300',
  ]);
  const head = await api(L(), 'HEAD', '/containers/cpb/archive?path=/d/f');
  assert.equal(head.status, 200);
  const st = JSON.parse(Buffer.from(String(head.headers['x-docker-container-path-stat']), 'base64').toString());
  assert.deepEqual(Object.keys(st), ['name', 'size', 'mode', 'mtime', 'linkTarget']);
  assert.equal(st.name, 'f');
  assert.equal(st.size, 6);
  assert.equal(st.mode, 0o644);
  assert.equal(st.linkTarget, '');
  const dir = JSON.parse(
    Buffer.from(
      String((await api(L(), 'HEAD', '/containers/cpb/archive?path=/d')).headers['x-docker-container-path-stat']),
      'base64',
    ).toString(),
  );
  assert.equal(dir.mode, 2 ** 31 + 0o755);
  const link = JSON.parse(
    Buffer.from(
      String((await api(L(), 'HEAD', '/containers/cpb/archive?path=/d/link')).headers['x-docker-container-path-stat']),
      'base64',
    ).toString(),
  );
  assert.equal(link.mode, 2 ** 27 + 0o777);
  assert.equal(link.linkTarget, '/d/f');
  const get = await api(L(), 'GET', '/containers/cpb/archive?path=/d');
  assert.equal(get.status, 200);
  assert.equal(get.headers['content-type'], 'application/x-tar');
  assert.ok(get.headers['x-docker-container-path-stat']);
  const notFound = await api(L(), 'GET', '/containers/cpb/archive?path=/nope');
  assert.equal(notFound.status, 404);
  assert.match(notFound.json().message, /^Could not find the file \/nope in container cpb$/);
  const noPath = await api(L(), 'HEAD', '/containers/cpb/archive');
  assert.equal(noPath.status, 400);
  const ontoFile = await api(L(), 'PUT', '/containers/cpb/archive?path=/d/f', Buffer.alloc(1024), {
    'Content-Type': 'application/x-tar',
  });
  assert.equal(ontoFile.status, 400);
  assert.equal(ontoFile.json().message, 'extraction point is not a directory');
  assert.equal((await api(L(), 'HEAD', '/containers/nosuchctr/archive?path=/')).status, 404);
  await dockerOk(L(), ['rm', '-f', 'cpb']);
});

test(
  'symlinks in the container never lead docker cp to host paths (CVE-2018-15664 / CVE-2019-14271 class)',
  { skip },
  async () => {
    const marker = `cove-cp-escape-${process.pid}-${Date.now()}`;
    await dockerOk(L(), [
      'run',
      '-d',
      '--name',
      'evil',
      'alpine',
      'sh',
      '-c',
      'ln -s / /escape; ln -s ../../../../../../.. /rel; ln -s /tmp /tmplink; echo inside > /etc/marker; sleep 300',
    ]);
    writeFileSync(join(work, marker), 'payload\n');
    // Writes through an absolute and a relative link land inside the container.
    await dockerOk(L(), ['cp', join(work, marker), 'evil:/escape/tmp/']);
    await dockerOk(L(), ['cp', join(work, marker), 'evil:/rel/root/']);
    assert.ok(!existsSync(join('/tmp', marker)), 'docker cp wrote to the host /tmp through /escape');
    assert.ok(!existsSync(join('/root', marker)), 'docker cp wrote to the host /root through /rel');
    assert.equal(await dockerOk(L(), ['exec', 'evil', 'cat', `/tmp/${marker}`]), 'payload');
    assert.equal(await dockerOk(L(), ['exec', 'evil', 'cat', `/root/${marker}`]), 'payload');
    // Reads through links read the container's files, not the host's.
    await dockerOk(L(), ['cp', 'evil:/escape/etc/marker', join(work, 'read-marker')]);
    assert.equal(readFileSync(join(work, 'read-marker'), 'utf8'), 'inside\n');
    await dockerOk(L(), ['cp', 'evil:/rel/etc/passwd', join(work, 'read-passwd')]);
    assert.equal(
      readFileSync(join(work, 'read-passwd'), 'utf8'),
      await dockerOk(L(), ['exec', 'evil', 'cat', '/etc/passwd']).then((s) => s + '\n'),
    );
    // Copying a link out gives the link itself.
    await dockerOk(L(), ['cp', 'evil:/escape', join(work, 'the-link')]);
    assert.ok(lstatSync(join(work, 'the-link')).isSymbolicLink());
    assert.equal(readlinkSync(join(work, 'the-link')), '/');
    // An uploaded tar that plants a link and then writes through it.
    const src = join(work, 'evil-tar');
    mkdirSync(join(src, 'sub'), { recursive: true });
    symlinkSync('/tmp', join(src, 'hop'));
    const tarFile = join(work, 'evil.tar');
    await tar.c({ cwd: src, file: tarFile, portable: true }, ['hop']);
    // A second entry "hop/<marker>" (a file through the link), appended by hand.
    writeFileSync(join(src, 'sub', marker), 'through the link\n');
    await tar.r({ cwd: src, file: tarFile, portable: true, transform: undefined }, [`sub/${marker}`]);
    const buf = readFileSync(tarFile);
    // Rename the second entry's path sub/<marker> → hop/<marker> in its header (same length, checksum fixed).
    const evil = rewriteTarPath(buf, `sub/${marker}`, `hop/${marker}`);
    const put = await api(L(), 'PUT', '/containers/evil/archive?path=/', evil, { 'Content-Type': 'application/x-tar' });
    assert.ok(
      !existsSync(join('/tmp', marker + '-x')) && !existsSync(join('/tmp', marker)),
      'extraction wrote through a planted link to the host',
    );
    assert.ok(put.status === 200 || put.status === 403 || put.status === 400, `PUT answered ${put.status} ${put.text}`);
    // And the existing /tmplink in the container is a link to the container's /tmp only.
    await api(L(), 'PUT', '/containers/evil/archive?path=/tmplink', await tarOfFile(work, marker), {
      'Content-Type': 'application/x-tar',
    });
    assert.ok(!existsSync(join('/tmp', marker)), 'PUT into a link dir reached the host /tmp');
    await dockerOk(L(), ['rm', '-f', 'evil']);
    rmSync(src, { recursive: true, force: true });
  },
);

async function tarOfFile(dir: string, name: string): Promise<Buffer> {
  const out = join(dir, `${name}.single.tar`);
  await tar.c({ cwd: dir, file: out, portable: true }, [name]);
  const b = readFileSync(out);
  rmSync(out);
  return b;
}

/** Renames one entry of a ustar archive (same path length), fixing the header checksum. */
function rewriteTarPath(buf: Buffer, from: string, to: string): Buffer {
  assert.equal(from.length, to.length);
  const out = Buffer.from(buf);
  for (let off = 0; off + 512 <= out.length; off += 512) {
    const name = out
      .subarray(off, off + 100)
      .toString('utf8')
      .replace(/\0.*$/s, '');
    if (name === from) {
      out.write(to, off, 'utf8');
      out.fill(' ', off + 148, off + 156);
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += out[off + i]!;
      out.write(sum.toString(8).padStart(6, '0') + '\0 ', off + 148, 'ascii');
      return out;
    }
  }
  throw new Error(`entry ${from} not found`);
}
