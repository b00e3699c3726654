/**
 * Request targets and bodies that used to end the daemon (issue 8 §1), sent
 * raw on the socket: each gets a 4xx in Docker's words and the server still
 * answers /_ping.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { goRegexp } from '../../src/common/goregexp.js';
import { InvalidParameter } from '../../src/common/errors.js';
import { startApi, request, json, type Harness } from '../support/api-harness.js';

let h: Harness;
before(async () => {
  h = await startApi();
});
after(async () => {
  await h.close();
});

/** One raw HTTP/1.1 exchange; resolves with the status line's code and the body text. */
function raw(socket: string, text: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const c = connect(socket, () => c.write(text));
    let buf = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      buf += d;
      const m = /^HTTP\/1\.1 (\d{3})/.exec(buf);
      const end = buf.indexOf('\r\n\r\n');
      if (!m || end < 0) return;
      const len = /content-length: (\d+)/i.exec(buf.slice(0, end));
      const body = buf.slice(end + 4);
      if (!len || body.length >= Number(len[1])) {
        c.destroy();
        resolve({ status: Number(m[1]), body });
      }
    });
    c.on('error', reject);
    c.on('close', () => reject(new Error(`closed without an answer: ${buf}`)));
    setTimeout(() => {
      c.destroy();
      reject(new Error('no answer in 3 s'));
    }, 3000);
  });
}

/** /_ping answers within 50 ms (best of three: one slow answer on a busy 2-core machine proves nothing). */
async function pingFast(): Promise<void> {
  let best = Infinity;
  for (let i = 0; i < 3 && best >= 50; i++) {
    const t0 = performance.now();
    const r = await request(h.socket, 'GET', '/_ping');
    assert.equal(r.status, 200);
    best = Math.min(best, performance.now() - t0);
  }
  assert.ok(best < 50, `ping took ${best} ms`);
}

test('request targets that throw in URL parsing: 4xx, daemon up', async () => {
  const cases: Array<[string, number]> = [
    ['GET // HTTP/1.1\r\nHost: x\r\n\r\n', 404],
    ['GET //x//y HTTP/1.1\r\nHost: x\r\n\r\n', 404],
    ['GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n', 400],
    ['GET http://x/_ping HTTP/1.1\r\nHost: x\r\n\r\n', 200],
    ['POST // HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n', 404],
    ['POST http://[ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n', 400],
  ];
  for (const [req, status] of cases) {
    const r = await raw(h.socket, req);
    assert.equal(r.status, status, req.split('\r\n')[0]);
    await pingFast();
  }
});

test('a 50,000-deep JSON body is a 400 (Go: exceeded max depth), not a 500', async () => {
  const deep = '['.repeat(50_000) + ']'.repeat(50_000);
  const r = await request(h.socket, 'POST', '/networks/create', deep, { 'Content-Type': 'application/json' });
  assert.equal(r.status, 400);
  assert.equal(json(r).message, 'invalid JSON: exceeded max depth');
  const obj = '{"a":'.repeat(50_000) + '1' + '}'.repeat(50_000);
  const r2 = await request(h.socket, 'POST', '/containers/create', obj, { 'Content-Type': 'application/json' });
  assert.equal(r2.status, 400);
  await pingFast();
});

test("goRegexp (the name filter): a catastrophic pattern runs in linear time; an invalid one is a 400 in Go's words", async () => {
  const catastrophic = await goRegexp('^(a*)*$'); // the first call also loads re2js: not part of the timing
  const t0 = performance.now();
  assert.equal(catastrophic('a'.repeat(5000) + 'b'), false);
  assert.ok(performance.now() - t0 < 500, `took ${performance.now() - t0} ms`);
  assert.equal((await goRegexp('web'))('my-web-1'), true, 'unanchored, like regexp.MatchString');
  await assert.rejects(
    () => goRegexp('['),
    (e: unknown) => e instanceof InvalidParameter && e.message === 'error parsing regexp: missing closing ]: `[`',
  );
  await assert.rejects(
    () => goRegexp('(?<=a)b'),
    (e: unknown) => e instanceof InvalidParameter && /^error parsing regexp: invalid named capture/.test(e.message),
  );
});
