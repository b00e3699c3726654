/**
 * The daemon's last resort (src/daemon/last-resort.ts) and its pid file
 * check: a failure confined to one request or DNS message is contained, one
 * elsewhere ends the process for a clean restart; a zombie is not a live daemon.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { isContained } from '../../src/daemon/last-resort.js';
import { isAlive } from '../../src/daemon/main.js';

function errWithStack(...frames: string[]): Error {
  const e = new Error('boom');
  e.stack = ['Error: boom', ...frames.map((f) => `    at ${f}`)].join('\n');
  return e;
}

test('contained: only edge modules or Node internals on the stack', () => {
  assert.equal(
    isContained(
      errWithStack(
        'DnsServer.onUdp (file:///work/main/dist/src/network/dns/server.js:10:5)',
        'Socket.emit (node:events:519:28)',
      ),
    ),
    true,
  );
  assert.equal(
    isContained(
      errWithStack(
        'dispatch (file:///x/dist/src/api/server.js:1:1)',
        'processTicksAndRejections (node:internal/process/task_queues:95:5)',
      ),
    ),
    true,
  );
  assert.equal(
    isContained(
      errWithStack(
        'Socket.send (node:dgram:650:5)',
        'process.processTicksAndRejections (node:internal/process/task_queues:85:11)',
      ),
    ),
    true,
  );
  assert.equal(
    isContained(
      errWithStack(
        'ContainerManager.handleExit (file:///x/dist/src/runtime/containers/manager.js:5:5)',
        'dispatch (file:///x/dist/src/api/server.js:1:1)',
      ),
    ),
    false,
  );
  assert.equal(
    isContained(errWithStack('NetworkController.connect (file:///x/dist/src/network/controller.js:5:5)')),
    false,
  );
  assert.equal(isContained('a string rejection'), false, 'no stack: cannot tell, so not contained');
});

test('isAlive: a live process yes, a zombie no, a gone pid no', async () => {
  assert.equal(isAlive(process.pid), true);
  // sh forks a child that exits at once, then becomes `sleep`, which never reaps it: a zombie for 3 s.
  const sh = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 3'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const zombie = Number(
    await new Promise<string>((r) => sh.stdout.once('data', (d: Buffer) => r(d.toString().trim()))),
  );
  await new Promise((r) => setTimeout(r, 300));
  try {
    assert.equal(isAlive(zombie), false, `pid ${zombie} is a zombie`);
    assert.equal(isAlive(sh.pid!), true);
  } finally {
    sh.kill('SIGKILL');
  }
  await new Promise((r) => sh.once('exit', r));
  assert.equal(isAlive(sh.pid!), false);
});
