/** HEALTHCHECK rules (src/runtime/containers/health.ts), as Docker's daemon/health.go applies them. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyResult,
  initialHealth,
  mergeHealthcheck,
  nextDelayMs,
  probeOf,
  timeoutMessage,
  validateHealthcheck,
} from '../../src/runtime/containers/health.js';

const ms = 1e6;
const r = (code: number, out = ''): { Start: string; End: string; ExitCode: number; Output: string } => ({
  Start: 's',
  End: 'e',
  ExitCode: code,
  Output: out,
});

test("probe: CMD runs as given, CMD-SHELL under the shell, NONE and an empty test run nothing; Docker's defaults", () => {
  assert.deepEqual(probeOf({ Test: ['CMD', 'curl', '-f', 'x'] })!.cmd, ['curl', '-f', 'x']);
  assert.deepEqual(probeOf({ Test: ['CMD-SHELL', 'test -f /ok'] })!.cmd, ['/bin/sh', '-c', 'test -f /ok']);
  assert.deepEqual(probeOf({ Test: ['CMD-SHELL', 'true'] }, ['/bin/bash', '-c'])!.cmd, ['/bin/bash', '-c', 'true']);
  assert.equal(probeOf({ Test: ['NONE'] }), undefined);
  assert.equal(probeOf({ Test: [] }), undefined);
  assert.equal(probeOf(undefined), undefined);
  const p = probeOf({ Test: ['CMD', 'true'] })!;
  assert.deepEqual(
    [p.intervalMs, p.timeoutMs, p.startPeriodMs, p.startIntervalMs, p.retries],
    [30_000, 30_000, 0, 5_000, 3],
  );
  const q = probeOf({ Test: ['CMD', 'true'], Interval: 300 * ms, Timeout: 2000 * ms, Retries: 1 })!;
  assert.deepEqual([q.intervalMs, q.timeoutMs, q.retries], [300, 2000, 1]);
  assert.equal(timeoutMessage(q), 'Health check exceeded timeout (2s)');
});

test('status: healthy on a success, unhealthy after Retries failures in a row, a success resets the streak; 5 results kept', () => {
  const p = probeOf({ Test: ['CMD', 'x'], Retries: 2 })!;
  let h = initialHealth();
  h = applyResult(p, h, r(1), 10_000);
  assert.deepEqual([h.Status, h.FailingStreak], ['starting', 1]);
  h = applyResult(p, h, r(1), 10_000);
  assert.deepEqual([h.Status, h.FailingStreak], ['unhealthy', 2]);
  h = applyResult(p, h, r(0, 'ok\n'), 10_000);
  assert.deepEqual([h.Status, h.FailingStreak], ['healthy', 0]);
  h = applyResult(p, h, r(1), 10_000);
  assert.deepEqual([h.Status, h.FailingStreak], ['healthy', 1]);
  for (let i = 0; i < 5; i++) h = applyResult(p, h, r(0), 10_000);
  assert.equal(h.Log.length, 5);
  assert.equal(applyResult(p, h, r(0, 'x'.repeat(10_000)), 0).Log.at(-1)!.Output.length, 4096);
});

test('start period: failures do not count until a first success; probes run at StartInterval meanwhile', () => {
  const p = probeOf({
    Test: ['CMD', 'x'],
    Retries: 1,
    StartPeriod: 60_000 * ms,
    StartInterval: 500 * ms,
    Interval: 10_000 * ms,
  })!;
  let h = applyResult(p, initialHealth(), r(1), 1000);
  assert.deepEqual([h.Status, h.FailingStreak], ['starting', 0]);
  assert.equal(nextDelayMs(p, h, 1000), 500);
  h = applyResult(p, h, r(0), 2000);
  assert.equal(nextDelayMs(p, h, 2000), 10_000);
  h = applyResult(p, h, r(1), 3000);
  assert.equal(h.Status, 'unhealthy', 'once healthy, failures count even within the start period');
  assert.equal(applyResult(p, initialHealth(), r(1), 61_000).Status, 'unhealthy', 'after the start period they count');
});

test("merge with the image's HEALTHCHECK field by field; Docker's errors for bad durations", () => {
  const image = { Test: ['CMD', 'img'], Interval: 5000 * ms, Retries: 4 };
  assert.deepEqual(mergeHealthcheck(undefined, image), image);
  assert.deepEqual(mergeHealthcheck({ Interval: 1000 * ms }, image), {
    Test: ['CMD', 'img'],
    Interval: 1000 * ms,
    Timeout: 0,
    StartPeriod: 0,
    StartInterval: 0,
    Retries: 4,
  });
  assert.deepEqual(mergeHealthcheck({ Test: ['NONE'] }, image)!.Test, ['NONE']);
  assert.equal(mergeHealthcheck(undefined, undefined), undefined);
  assert.throws(() => validateHealthcheck({ Interval: 1000 }), /Interval in Healthcheck cannot be less than 1ms$/);
  assert.throws(() => validateHealthcheck({ Timeout: 10 }), /Timeout in Healthcheck cannot be less than 1ms/);
  assert.throws(() => validateHealthcheck({ Retries: -1 }), /Retries in Healthcheck cannot be negative/);
  validateHealthcheck({ Interval: 0, Retries: 0 });
});
