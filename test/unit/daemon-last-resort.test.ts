/**
 * The daemon's last resort (src/daemon/last-resort.ts) and its pid file
 * check: a failure confined to one request or DNS message is contained, one
 * elsewhere ends the process for a clean restart; a zombie is not a live daemon.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { annotateStack, isContained } from '../../src/daemon/last-resort.js';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

test('contained, in the coved bundle: frames placed by the `// path` line above them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cove-lr-'));
  try {
    mkdirSync(join(dir, 'dist/coved/chunks'), { recursive: true });
    const file = join(dir, 'dist/coved/coved.mjs');
    const lines = ['import x from "y";', '', '// node_modules/pino/pino.js', 'a();', '', '// dist/src/api/server.js'];
    lines.push(
      'b();',
      'c();',
      '',
      '// dist/src/network/controller.js',
      'd();',
      '',
      '// dist/src/network/dns/server.js',
      'e();',
    );
    writeFileSync(file, lines.join('\n'));
    const at = (line: number) => `f (file://${file}:${line}:3)`;
    assert.equal(isContained(errWithStack(at(8), at(14), at(4), 'Socket.emit (node:events:519:28)')), true);
    assert.equal(isContained(errWithStack(at(8), at(11))), false, 'network controller frame: not an edge');
    assert.equal(isContained(errWithStack(`g (file://${dir}/dist/coved/chunks/gone.mjs:5:1)`)), false, 'unplaceable');
    assert.match(annotateStack(errWithStack(at(7)).stack!), /coved\.mjs:7:3\) \[dist\/src\/api\/server\.js\]$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
