import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFlags } from '../../src/daemon/main.js';
import { probeRuntime } from '../../src/runtime/probe.js';
import { silentLogger } from '../../src/common/log.js';

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
