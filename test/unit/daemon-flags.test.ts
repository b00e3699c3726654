import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCommandLine, parseFlags } from '../../src/daemon/main.js';
import { UsageError } from '../../src/common/args.js';
import { probeRuntime } from '../../src/runtime/probe.js';
import { silentLogger } from '../../src/common/log.js';
import { covedCommand } from '../../src/lab/hosts.js';
import { repoRoot } from '../../src/common/repo-root.js';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

test("coved takes dockerd's flags for its places", () => {
  const c = parseFlags([
    '-H',
    'unix:///tmp/x/cove.sock',
    '--data-root',
    '/tmp/x/data',
    '--exec-root',
    '/tmp/x/run',
    '--pidfile',
    '/tmp/x/p.pid',
    '--log-level',
    'debug',
    '--dns',
    '10.0.0.53',
    '--default-address-pool',
    'base=10.10.0.0/16,size=24',
  ]);
  assert.equal(c.socketPath, '/tmp/x/cove.sock');
  assert.equal(c.dataRoot, '/tmp/x/data');
  assert.equal(c.execRoot, '/tmp/x/run');
  assert.equal(c.pidfile, '/tmp/x/p.pid');
  assert.equal(c.logLevel, 'debug');
  assert.deepEqual(c.dns, ['10.0.0.53']);
  assert.deepEqual(c.defaultAddressPools, [{ base: '10.10.0.0/16', size: 24 }]);
});

test('coved defaults: socket and pidfile under the exec root, Docker default pools', () => {
  const c = parseFlags(['--exec-root', '/tmp/y']);
  assert.equal(c.socketPath, '/tmp/y/cove.sock');
  assert.equal(c.pidfile, '/tmp/y/coved.pid');
  assert.equal(c.dataRoot, '/var/lib/cove');
  assert.equal(c.defaultAddressPools[0]?.base, '172.17.0.0/16');
});

test('coved refuses what it cannot serve', () => {
  assert.throws(() => parseFlags(['-H', 'tcp://0.0.0.0:2375']), /only unix:\/\/ sockets/);
  assert.throws(() => parseFlags(['--log-level', 'loud']), /log-level/);
  assert.throws(() => parseFlags(['--default-address-pool', 'base=10.0.0.0/8']), /invalid default address pool/);
});

test('a missing OCI runtime is a clear error', async () => {
  await assert.rejects(probeRuntime('/nonexistent/runc', silentLogger), /no usable OCI runtime found \(install runc/);
});

test('coved: every other flag reaches the configuration (the shared parser of src/common/args.ts)', () => {
  const c = parseFlags([
    '--bridge-name=cove9',
    '--runtime',
    '/usr/sbin/runc',
    '--registry-mirror',
    'https://mirror.example:5000',
    '--registry-mirror=http://m2.example',
    '--insecure-registry',
    '10.0.0.0/8',
    '--insecure-registry=reg.local:5000',
    '--registry-certs-dir',
    '/tmp/certs',
    '--registry-timeout',
    '1.5',
    '--dns=10.0.0.53',
    '--dns',
    '10.0.0.54',
    '-l',
    'warn',
    '-p',
    '/tmp/p2.pid',
  ]);
  assert.equal(c.defaultBridgeName, 'cove9');
  assert.equal(c.runtime, '/usr/sbin/runc');
  assert.deepEqual(c.registryMirrors, ['https://mirror.example:5000', 'http://m2.example']);
  assert.deepEqual(c.insecureRegistries, ['10.0.0.0/8', 'reg.local:5000']);
  assert.equal(c.registryCertsDir, '/tmp/certs');
  assert.equal(c.registryTimeoutMs, 1500);
  assert.deepEqual(c.dns, ['10.0.0.53', '10.0.0.54']);
  assert.equal(c.logLevel, 'warn');
  assert.equal(c.pidfile, '/tmp/p2.pid');
  const d = parseFlags([]);
  assert.equal(d.registryCertsDir, '/etc/docker/certs.d');
  assert.equal(d.registryTimeoutMs, 30_000);
  assert.deepEqual(d.registryMirrors, []);
});

test("coved --help and --version print and start nothing; usage errors are docker's", () => {
  const help = parseCommandLine(['--help']);
  assert.ok('print' in help);
  assert.match(help.print, /^\nUsage: {2}coved \[OPTIONS\]\n/);
  assert.match(help.print, /--data-root <dir> +root directory of persistent state \(default "\/var\/lib\/cove"\)\n/);
  assert.match(help.print, /-l, --log-level <level> +log level \(default "info"\)\n/);
  assert.deepEqual(parseCommandLine(['-v']), { print: 'Cove version 0.1.0\n' });
  assert.ok('config' in parseCommandLine(['--data-root', '/tmp/z']));
  assert.throws(() => parseFlags(['--help']), /help or version/);
  assert.throws(
    () => parseFlags(['--bogus']),
    (e: unknown) =>
      e instanceof UsageError && e.exitCode === 125 && /unknown flag: --bogus\nSee 'coved --help'/.test(e.message),
  );
  assert.throws(
    () => parseFlags(['--log-level=loud']),
    /invalid argument "loud" for "-l, --log-level" flag: not one of trace, debug, info, warn, error, fatal/,
  );
  assert.throws(() => parseFlags(['--data-root']), /flag needs an argument: --data-root/);
  assert.throws(() => parseFlags(['--registry-mirror', 'not a url']), /mirror/i);
});

test("coved's node flags and malloc tunables: in bin/coved's shebang, and labs start node with the same ones", () => {
  const bin = join(repoRoot(import.meta.url), 'bin/coved');
  const cmd = covedCommand(bin);
  // /usr/bin/env GLIBC_TUNABLES=... node FLAGS bin/coved
  assert.equal(cmd[0], '/usr/bin/env');
  const nodeAt = cmd.indexOf(process.execPath);
  const env = cmd.slice(1, nodeAt);
  assert.deepEqual(
    env.map((e) => e.split('=')[0]),
    ['GLIBC_TUNABLES'],
  );
  assert.match(env[0]!, /glibc\.malloc\.arena_max=1(:|$)/);
  assert.equal(cmd.at(-1), bin);
  const flags = cmd.slice(nodeAt + 1, -1);
  assert.ok(
    flags.some((f) => /^--max-semi-space-size=\d+$/.test(f)),
    `flags: ${flags.join(' ')}`,
  );
  // Started as labs start it, node takes the flags and sees the tunables (glibc reads them at exec).
  const seen = JSON.parse(
    execFileSync(
      cmd[0]!,
      [...env, process.execPath, ...flags, '-p', 'JSON.stringify([process.execArgv, process.env.GLIBC_TUNABLES])'],
      { encoding: 'utf8' },
    ),
  ) as [string[], string];
  assert.deepEqual(seen[0].slice(0, flags.length), flags, 'node accepts the flags');
  assert.equal(seen[1], env[0]!.slice('GLIBC_TUNABLES='.length));
  // Started through its shebang, as an installed `coved` is.
  assert.match(execFileSync(bin, ['--version'], { encoding: 'utf8' }), /^Cove version /);

  const dir = mkdtempSync(join(tmpdir(), 'coved-shebang-'));
  try {
    writeFileSync(join(dir, 'plain'), '#!/usr/bin/env node\n');
    assert.deepEqual(covedCommand(join(dir, 'plain')), [process.execPath, join(dir, 'plain')]);
    writeFileSync(join(dir, 'flags'), '#!/usr/bin/env -S node --v8-pool-size=1\n');
    assert.deepEqual(covedCommand(join(dir, 'flags')), [process.execPath, '--v8-pool-size=1', join(dir, 'flags')]);
    writeFileSync(join(dir, 'odd'), '#!/bin/sh\n');
    assert.throws(() => covedCommand(join(dir, 'odd')), /unexpected first line/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
