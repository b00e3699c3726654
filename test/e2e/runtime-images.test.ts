/**
 * Images, for real on this machine's disk: build the busybox images with
 * scripts/build-images.sh, load them, import a rootfs tar, tag, resolve,
 * inspect, remove; multi-layer whiteouts become overlayfs whiteouts.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  createReadStream,
  mkdtempSync,
  rmSync,
  writeFileSync,
  mkdirSync,
  statSync,
  readdirSync,
  existsSync,
  symlinkSync,
  utimesSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { defaultConfig } from '../../src/common/config.js';
import { ImageStore } from '../../src/runtime/images/store.js';
import { NotFound } from '../../src/common/errors.js';

const repoRoot = join(import.meta.dirname, '..', '..', '..');
const work = mkdtempSync(join(tmpdir(), 'cvrt-images-'));
after(() => rmSync(work, { recursive: true, force: true }));

const imagesDir = join(work, 'built');
execFileSync('bash', [join(repoRoot, 'scripts', 'build-images.sh'), imagesDir], { stdio: 'ignore' });

function newImageStore(name: string): ImageStore {
  const config = defaultConfig({ dataRoot: join(work, name), execRoot: join(work, name + '-run') });
  return new ImageStore({ config, store: new EmbeddedStore(join(config.dataRoot, 'store')) });
}

test('cove load of the built docker-archive tars gives alpine, busybox and nginx', async () => {
  const images = newImageStore('load');
  const out = await images.load(createReadStream(join(imagesDir, 'alpine.tar')));
  assert.deepEqual(out, ['alpine:latest', 'busybox:latest']);
  assert.deepEqual(await images.load(createReadStream(join(imagesDir, 'nginx.tar'))), ['nginx:latest']);

  const alpineId = await images.resolve('alpine');
  assert.match(alpineId, /^sha256:[0-9a-f]{64}$/);
  assert.equal(await images.resolve('busybox:latest'), alpineId);
  assert.equal(await images.resolve(alpineId.slice(7, 19)), alpineId);
  assert.equal(await images.resolve(alpineId), alpineId);
  assert.equal(await images.resolve(alpineId.slice(7)), alpineId);
  await assert.rejects(
    images.resolve('nosuch'),
    (e: unknown) => e instanceof NotFound && e.message === 'No such image: nosuch',
  );

  // The ID is the sha256 of the config JSON in the archive, as with docker.
  const manifest = JSON.parse(
    execFileSync('tar', ['xOf', join(imagesDir, 'alpine.tar'), 'manifest.json'], { encoding: 'utf8' }),
  );
  const cfgBytes = execFileSync('tar', ['xOf', join(imagesDir, 'alpine.tar'), manifest[0].Config]);
  assert.equal(alpineId, 'sha256:' + createHash('sha256').update(cfgBytes).digest('hex'));

  const nginx = await images.inspect('nginx');
  assert.deepEqual((nginx.Config as any).Cmd, ['busybox', 'httpd', '-f', '-p', '80', '-h', '/www']);
  assert.deepEqual((nginx.Config as any).ExposedPorts, { '80/tcp': {} });
  assert.equal((nginx.RootFS as any).Type, 'layers');
  assert.equal((nginx.RootFS as any).Layers.length, 1);
  assert.equal(nginx.Os, 'linux');
  assert.ok((nginx.Size as number) > 1_000_000);

  const list = await images.list();
  assert.equal(list.length, 2);
  const row = list.find((i) => i.Id === alpineId)!;
  assert.deepEqual(row.RepoTags.sort(), ['alpine:latest', 'busybox:latest']);

  // The layer keeps symlinks and modes.
  const lower = (await images.lowerDirs('alpine'))[0]!;
  assert.ok(statSync(join(lower, 'bin', 'busybox')).mode & 0o111);
  assert.equal(execFileSync('readlink', [join(lower, 'bin', 'sh')], { encoding: 'utf8' }).trim(), '/bin/busybox');
  assert.equal(statSync(join(lower, 'tmp')).mode & 0o7777, 0o1777);

  // Loading again is idempotent.
  assert.deepEqual(await images.load(createReadStream(join(imagesDir, 'alpine.tar'))), [
    'alpine:latest',
    'busybox:latest',
  ]);
  assert.equal((await images.list()).length, 2);
});

test('tag, untag and remove like docker rmi', async () => {
  const images = newImageStore('rmi');
  await images.load(createReadStream(join(imagesDir, 'alpine.tar')));
  const id = await images.resolve('alpine');
  await images.tag('alpine', 'myrepo/thing', 'v1');
  assert.equal(await images.resolve('myrepo/thing:v1'), id);
  await assert.rejects(images.resolve('myrepo/thing'), /No such image: myrepo\/thing/);

  // By ID with several tags: refused unless forced.
  await assert.rejects(
    images.remove(id.slice(7, 19)),
    /conflict: unable to delete [0-9a-f]{12} \(must be forced\) - image is referenced in multiple repositories/,
  );
  assert.deepEqual(await images.remove('myrepo/thing:v1'), [{ Untagged: 'myrepo/thing:v1' }]);

  // A container using it blocks the last tag's removal.
  images.setContainerUsage(async (img) => (img === id ? [{ id: 'c'.repeat(64), running: false }] : []));
  await images.remove('busybox');
  await assert.rejects(
    images.remove('alpine'),
    (e: Error) =>
      e.message ===
      `conflict: unable to remove repository reference "alpine" (must force) - container cccccccccccc is using its referenced image ${id.slice(7, 19)}`,
  );
  images.setContainerUsage(async () => []);
  const res = await images.remove('alpine');
  assert.deepEqual(res[0], { Untagged: 'alpine:latest' });
  assert.deepEqual(res[1], { Deleted: id });
  assert.deepEqual(await images.list(), []);
  assert.deepEqual(
    readdirSync(images.layers.root).filter((n) => !n.startsWith('.')),
    [],
  );
});

test('import a gzip rootfs tar with changes, and a two-layer image with whiteouts', async () => {
  const images = newImageStore('import');
  const root = join(work, 'rootfs');
  mkdirSync(join(root, 'etc'), { recursive: true });
  mkdirSync(join(root, 'data', 'sub'), { recursive: true });
  writeFileSync(join(root, 'etc', 'motd'), 'hello\n');
  writeFileSync(join(root, 'data', 'a'), 'a');
  writeFileSync(join(root, 'data', 'sub', 'b'), 'b');
  const tgz = join(work, 'root.tgz');
  execFileSync('tar', ['-C', root, '-czf', tgz, '.']);
  const id = await images.importTar(createReadStream(tgz), {
    repo: 'imported',
    tag: 'v2',
    changes: [
      'CMD ["/bin/sh"]',
      'EXPOSE 80 53/udp',
      'ENV A=1 B="two words"',
      'WORKDIR /data',
      'ENTRYPOINT ["/bin/echo"]',
    ],
    message: 'made here',
  });
  const ins = await images.inspect('imported:v2');
  assert.equal(ins.Id, id);
  assert.equal(ins.Comment, 'made here');
  const c = ins.Config as any;
  assert.deepEqual(c.Cmd, ['/bin/sh']);
  assert.deepEqual(c.Entrypoint, ['/bin/echo']);
  assert.deepEqual(c.ExposedPorts, { '80/tcp': {}, '53/udp': {} });
  assert.deepEqual(c.Env, ['A=1', 'B=two words']);
  assert.equal(c.WorkingDir, '/data');
  await assert.rejects(
    images.importTar(Readable.from([Buffer.alloc(0)]), { changes: ['RUN echo'] }),
    /RUN is not a valid change command/,
  );

  // docker-archive with two layers: the second deletes /etc/motd and makes /data opaque.
  const l2 = join(work, 'l2');
  mkdirSync(join(l2, 'etc'), { recursive: true });
  mkdirSync(join(l2, 'data'), { recursive: true });
  writeFileSync(join(l2, 'etc', '.wh.motd'), '');
  writeFileSync(join(l2, 'data', '.wh..wh..opq'), '');
  writeFileSync(join(l2, 'data', 'new'), 'n');
  const arch = join(work, 'arch');
  mkdirSync(arch, { recursive: true });
  // Directories keep the tar's times, also those that get a symlink or a whiteout at extraction (docker diff
  // tells a directory the container changed by its mtime).
  symlinkSync('/etc/motd', join(root, 'etc', 'issue'));
  const OLD = new Date('2001-02-03T04:05:06Z');
  for (const d of [join(root, 'etc'), join(root, 'data', 'sub'), join(root, 'data'), join(l2, 'etc'), join(l2, 'data')])
    utimesSync(d, OLD, OLD);
  execFileSync('tar', ['-C', root, '-cf', join(arch, 'l1.tar'), '.']);
  execFileSync('tar', ['-C', l2, '-cf', join(arch, 'l2.tar'), '.']);
  const sha = (f: string): string =>
    'sha256:' +
    createHash('sha256')
      .update(execFileSync('cat', [f]))
      .digest('hex');
  const cfg = JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config: { Cmd: ['/bin/true'] },
    rootfs: { type: 'layers', diff_ids: [sha(join(arch, 'l1.tar')), sha(join(arch, 'l2.tar'))] },
  });
  writeFileSync(join(arch, 'cfg.json'), cfg);
  writeFileSync(
    join(arch, 'manifest.json'),
    JSON.stringify([{ Config: 'cfg.json', RepoTags: ['two:layers'], Layers: ['l1.tar', 'l2.tar'] }]),
  );
  execFileSync('tar', ['-C', arch, '-cf', join(work, 'two.tar'), 'manifest.json', 'cfg.json', 'l1.tar', 'l2.tar']);
  await images.load(createReadStream(join(work, 'two.tar')));
  const lowers = await images.lowerDirs('two:layers');
  assert.equal(lowers.length, 2);
  const wh = statSync(join(lowers[0]!, 'etc', 'motd'));
  assert.ok(wh.isCharacterDevice() && wh.rdev === 0, 'motd is an overlay whiteout');
  assert.ok(statSync(join(lowers[0]!, 'data', 'a')).isCharacterDevice(), 'opaque dir hides a');
  assert.ok(statSync(join(lowers[0]!, 'data', 'sub')).isCharacterDevice(), 'opaque dir hides sub');
  assert.ok(existsSync(join(lowers[0]!, 'data', 'new')));
  for (const [lower, dir] of [
    [lowers[1]!, 'etc'],
    [lowers[1]!, 'data'],
    [lowers[1]!, 'data/sub'],
    [lowers[0]!, 'etc'],
    [lowers[0]!, 'data'],
  ] as const)
    assert.equal(statSync(join(lower, dir)).mtime.toISOString(), OLD.toISOString(), `${dir}: the tar's mtime`);

  // OCI layout: index.json -> manifest -> config + gzip layer.
  const oci = join(work, 'oci');
  mkdirSync(join(oci, 'blobs', 'sha256'), { recursive: true });
  const put = (buf: Buffer): string => {
    const h = createHash('sha256').update(buf).digest('hex');
    writeFileSync(join(oci, 'blobs', 'sha256', h), buf);
    return 'sha256:' + h;
  };
  const layerGz = execFileSync('gzip', ['-c', join(arch, 'l1.tar')]);
  const layerDigest = put(layerGz);
  const ociCfg = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/x'] },
      rootfs: { type: 'layers', diff_ids: [sha(join(arch, 'l1.tar'))] },
    }),
  );
  const cfgDigest = put(ociCfg);
  const man = put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cfgDigest, size: ociCfg.length },
        layers: [
          { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: layerGz.length },
        ],
      }),
    ),
  );
  writeFileSync(join(oci, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(
    join(oci, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: man,
          size: 1,
          annotations: {
            'io.containerd.image.name': 'docker.io/library/ocitest:1.0',
            'org.opencontainers.image.ref.name': '1.0',
          },
        },
      ],
    }),
  );
  execFileSync('tar', ['-C', oci, '-cf', join(work, 'oci.tar'), '.']);
  assert.deepEqual(await images.load(createReadStream(join(work, 'oci.tar'))), ['ocitest:1.0']);
  assert.equal(await images.resolve('ocitest:1.0'), cfgDigest);
});

test('a layer cannot write through its own symlinks (a -> /outside, then a/b)', async () => {
  const images = newImageStore('escape');
  const victim = join(work, 'victim');
  mkdirSync(victim, { recursive: true });
  const src1 = join(work, 'esc1');
  const src2 = join(work, 'esc2');
  mkdirSync(src1, { recursive: true });
  mkdirSync(join(src2, 'a'), { recursive: true });
  execFileSync('ln', ['-s', victim, join(src1, 'a')]);
  execFileSync('ln', ['-s', 'x', join(src2, 'a', 'b')]);
  writeFileSync(join(src2, 'a', '.wh.gone'), '');
  const t = join(work, 'escape.tar');
  execFileSync('tar', ['-cf', t, '-C', src1, 'a', '-C', src2, 'a/b', 'a/.wh.gone']);
  await assert.rejects(images.importTar(createReadStream(t), { repo: 'escape' }), /lies under a symbolic link/);
  assert.deepEqual(readdirSync(victim), [], 'nothing written outside the layer');
  await assert.rejects(images.resolve('escape'), /No such image/);
  assert.deepEqual(
    readdirSync(images.layers.root).filter((n) => !n.startsWith('.')),
    [],
    'no half-made layer',
  );
});
