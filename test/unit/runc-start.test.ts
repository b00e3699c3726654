import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXEC_FIFO, execFifoOf, startThroughFifo, untilExecuted } from '../../src/runtime/containers/runc-start.js';

/** A stand-in for runc's init: blocks opening the fifo for writing, writes one byte, then "execs" (exits 0). */
function fakeInit(fifo: string) {
  const p = spawn('sh', ['-c', `printf 0 > '${fifo}'; sleep 0.2`], { stdio: 'ignore' });
  return { pid: p.pid!, done: new Promise<number | null>((r) => p.once('exit', r)) };
}

test("start through runc's exec fifo: the waiting init gets its byte, the fifo is removed (runc's Running)", async () => {
  const root = mkdtempSync(join(tmpdir(), 'cove-fifo-'));
  try {
    assert.equal(execFifoOf(root, 'c1'), undefined, 'no fifo: the caller falls back to runc start');
    mkdirSync(join(root, 'c1'));
    execFileSync('mkfifo', [join(root, 'c1', EXEC_FIFO)]);
    const fifo = execFifoOf(root, 'c1')!;
    const init = fakeInit(fifo);
    await startThroughFifo(fifo, init.pid, 10_000);
    assert.equal(await init.done, 0, 'the init wrote its byte and went on');
    assert.ok(!existsSync(fifo));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('start through the fifo: a dead init is an error, not a hang', async () => {
  const root = mkdtempSync(join(tmpdir(), 'cove-fifo-'));
  try {
    const fifo = join(root, EXEC_FIFO);
    execFileSync('mkfifo', [fifo]);
    const gone = spawn('true');
    await new Promise((r) => gone.once('exit', r));
    await assert.rejects(startThroughFifo(fifo, gone.pid!, 10_000), /container process is already dead/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('start through the fifo: an init that wrote its byte and ended between a read and the check started (a quick echo)', async () => {
  const root = mkdtempSync(join(tmpdir(), 'cove-fifo-'));
  try {
    const fifo = join(root, EXEC_FIFO);
    execFileSync('mkfifo', [fifo]);
    let checks = 0;
    // The race made exact: the first read finds nothing; by the liveness check the init has written its
    // byte, exec'd the command and the command has already exited.
    const endedAfterWriting = (): boolean => {
      checks++;
      const w = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
      writeSync(w, '0');
      closeSync(w);
      return false;
    };
    await startThroughFifo(fifo, 1, 10_000, endedAfterWriting);
    assert.equal(checks, 1);
    assert.ok(!existsSync(fifo), 'started: the fifo is removed');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("a signal waits until runc init has exec'd the process (Go's SIGTERM would end the init with 2), but not for ever", async () => {
  let polls = 0;
  // Still runc init for the first three looks, then the container's own process.
  await untilExecuted(1, 5_000, () => ++polls <= 3);
  assert.equal(polls, 4);
  const t0 = Date.now();
  await untilExecuted(1, 100, () => true);
  const waited = Date.now() - t0;
  assert.ok(waited >= 100 && waited < 2_000, `gave up after ${waited} ms`);
  // A process that is gone is no init to wait for.
  await untilExecuted(2 ** 22 + 12345);
});
