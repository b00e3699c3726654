/** Pure logic of container mounts (-v, --mount, --tmpfs, VOLUME) and of paths scoped to a container root. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { ociMounts, parseBind, parseMount, planMounts } from '../../src/runtime/containers/mounts.js';
import { resolveScoped } from '../../src/runtime/containers/scoped-path.js';
import { bundleSpec, processSpec } from '../../src/runtime/containers/oci.js';
import { VolumeStore } from '../../src/runtime/volumes/store.js';

test('-v: binds, named volumes, anonymous volumes and their modes', () => {
  assert.deepEqual(parseBind('/srv/data:/data:ro'), {
    Type: 'bind',
    Source: '/srv/data',
    Destination: '/data',
    Mode: 'ro',
    RW: false,
    Propagation: 'rprivate',
    createSource: true,
  });
  assert.deepEqual(parseBind('cache:/var/cache/'), {
    Type: 'volume',
    Name: 'cache',
    Source: '',
    Destination: '/var/cache',
    Driver: 'local',
    Mode: 'z',
    RW: true,
    Propagation: '',
  });
  assert.equal(parseBind('/scratch').anonymous, true);
  assert.equal(parseBind('v1:/x:nocopy').noCopy, true);
  assert.equal(parseBind('/a:/b:rshared').Propagation, 'rshared');
  assert.throws(() => parseBind('v1:relative'), /mount path must be absolute/);
  assert.throws(() => parseBind('/a:/'), /destination can't be '\/'/);
  assert.throws(() => parseBind('/a:/b:bogus'), /invalid mode: bogus/);
  assert.throws(() => parseBind('a:b:c:d'), /too many colons/);
  assert.throws(() => parseBind('bad$name:/x'), /includes invalid characters for a local volume name/);
});

test("--mount: bind, volume and tmpfs with Docker's field checks", () => {
  assert.equal(parseMount({ Type: 'bind', Source: '/s', Target: '/t', ReadOnly: true }).RW, false);
  assert.throws(
    () => parseMount({ Type: 'bind', Target: '/t' }),
    /invalid mount config for type "bind": field Source must not be empty/,
  );
  assert.throws(() => parseMount({ Type: 'tmpfs', Source: 'x', Target: '/t' }), /field Source must not be specified/);
  assert.throws(
    () => parseMount({ Type: 'nfs', Target: '/t' }),
    /invalid mount config for type "nfs": mount type unknown/,
  );
  assert.throws(() => parseMount({ Type: 'volume', Source: 'v' }), /field Target must not be empty/);
  const v = parseMount({ Type: 'volume', Target: '/t', VolumeOptions: { NoCopy: true, Labels: { a: 'b' } } });
  assert.equal(v.anonymous, true);
  assert.equal(v.noCopy, true);
  assert.deepEqual(v.volumeOptions, { labels: { a: 'b' } });
  assert.deepEqual(
    parseMount({ Type: 'tmpfs', Target: '/t', TmpfsOptions: { SizeBytes: 1 << 20, Mode: 0o700 } }).tmpfsOptions,
    ['size=1024k', 'mode=700'],
  );
});

test('planMounts: explicit mounts override VOLUME and --volumes-from, duplicates are refused', () => {
  const plan = planMounts({
    binds: ['/h:/data'],
    volumes: { '/data': {}, '/logs': {} },
    tmpfs: { '/run': 'size=1m' },
  });
  assert.deepEqual(plan.map((m) => [m.Destination, m.Type]).sort(), [
    ['/data', 'bind'],
    ['/logs', 'volume'],
    ['/run', 'tmpfs'],
  ]);
  assert.throws(
    () => planMounts({ binds: ['/h:/d'], mounts: [{ Type: 'tmpfs', Target: '/d' }] }),
    /Duplicate mount point: \/d/,
  );
  const oci = ociMounts(plan);
  assert.deepEqual(
    oci.find((m) => m.destination === '/run'),
    { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', 'size=1m'] },
  );
  assert.deepEqual(oci.find((m) => m.destination === '/data')?.options, ['rbind', 'rw', 'rprivate']);
});

test('bundleSpec: a volume on /etc comes before /etc/hosts, and a user mount replaces a default one', () => {
  const spec = bundleSpec({
    id: 'x',
    rootfs: '/r',
    hostname: 'h',
    netnsPath: null,
    hostsPath: '/s/hosts',
    hostnamePath: '/s/hostname',
    resolvConfPath: '/s/resolv.conf',
    privileged: false,
    sysctls: {},
    readonlyRootfs: false,
    process: processSpec({
      args: ['sh'],
      env: [],
      cwd: '/',
      tty: false,
      user: { uid: 0, gid: 0, home: '/root' },
      caps: [],
    }),
    userMounts: [
      { destination: '/etc', type: 'bind', source: '/v', options: [] },
      { destination: '/dev/shm', type: 'bind', source: '/shm', options: [] },
    ],
  }) as { mounts: Array<{ destination: string; source: string }> };
  const dests = spec.mounts.map((m) => m.destination);
  assert.ok(dests.indexOf('/etc') < dests.indexOf('/etc/hosts'));
  assert.deepEqual(
    spec.mounts.filter((m) => m.destination === '/dev/shm').map((m) => m.source),
    ['/shm'],
  );
});

test('resolveScoped: symlinks, absolute or relative, never leave the container root', () => {
  const root = mkdtempSync(join(tmpdir(), 'cove-scope-'));
  try {
    mkdirSync(join(root, 'etc'));
    writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0');
    symlinkSync('/etc', join(root, 'abs'));
    symlinkSync('../../../../../../etc', join(root, 'rel'));
    symlinkSync('/', join(root, 'top'));
    symlinkSync('loop2', join(root, 'loop1'));
    symlinkSync('loop1', join(root, 'loop2'));
    assert.equal(resolveScoped(root, '/abs/passwd'), join(root, 'etc/passwd'));
    assert.equal(resolveScoped(root, '/rel/passwd'), join(root, 'etc/passwd'));
    assert.equal(resolveScoped(root, '/top/../../etc'), join(root, 'etc'));
    assert.equal(resolveScoped(root, '../../..'), root);
    assert.equal(resolveScoped(root, '/abs', false), join(root, 'abs'));
    assert.throws(() => resolveScoped(root, '/loop1/x'), /too many levels of symbolic links/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('volume create requests are checked as Docker checks them', () => {
  assert.throws(() => VolumeStore.validate({ Name: 'a' }), /volume name is too short/);
  assert.throws(() => VolumeStore.validate({ Name: 'a/b' }), /includes invalid characters/);
  assert.throws(() => VolumeStore.validate({ Name: 'ok', Driver: 'flocker' }), /plugin "flocker" not found/);
  assert.throws(() => VolumeStore.validate({ Name: 'ok', DriverOpts: { foo: 'x' } }), /invalid option key: "foo"/);
  assert.throws(
    () => VolumeStore.validate({ Name: 'ok', DriverOpts: { type: 'nfs' } }),
    /missing required option: "device"/,
  );
  VolumeStore.validate({ Name: 'ok', DriverOpts: { type: 'tmpfs', device: 'tmpfs', o: 'size=1m' } });
});
