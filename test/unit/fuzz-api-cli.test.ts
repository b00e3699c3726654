/**
 * Property-based fuzzing (fast-check) of the Engine API routes and their
 * query filters (on the API server with the fake engine) and of the cove CLI's
 * parsers: malformed input is a 4xx in Docker's words or a clear CLI error,
 * never a 5xx, a stall, a crash or a TypeError. The same API fuzzing runs
 * against the real daemon in test/e2e/hostile-input.test.ts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { startApi, request, type Harness } from '../support/api-harness.js';
import { fuzzApi } from '../support/api-fuzz.js';
import { filtersFrom } from '../../src/cli/util.js';
import { detachKeyBytes } from '../../src/cli/stdio.js';
import { parsePublish, parseMountFlag } from '../../src/cli/commands/run.js';
import { parseDuration, parsePublish as parseServicePublish } from '../../src/cli/commands/service.js';
import { renderTemplate } from '../../src/cli/template.js';

let h: Harness;
before(async () => {
  h = await startApi();
});
after(async () => {
  await h.close();
});

test('API routes, filters and bodies: never a 5xx or a stall; 4xx with a message; /_ping fast after', async () => {
  await fuzzApi(h.socket, 400);
  let best = Infinity;
  for (let i = 0; i < 3 && best >= 50; i++) {
    const t0 = performance.now();
    assert.equal((await request(h.socket, 'GET', '/_ping')).status, 200);
    best = Math.min(best, performance.now() - t0);
  }
  assert.ok(best < 50, `ping took ${best} ms`);
});

/** A parser may return or throw an Error with a message; a TypeError/RangeError is a bug, as is a hang. */
function wellBehaved(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof Error, `threw a non-Error: ${String(e)}`);
    assert.ok(!(e instanceof TypeError) && !(e instanceof RangeError), `bug: ${e.stack}`);
    assert.ok(e.message.length > 0);
  }
}

const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom(
    '',
    ':',
    '::',
    ':::',
    '-',
    '0-',
    '1-0',
    '65536:80',
    '[::1]:80:80',
    'a=b=c',
    '{{',
    '{{.',
    '{{end}}',
    '{{range}}',
    '{{json .}}',
    '}}',
    'ctrl-',
    'ctrl-@,',
    ',',
    'type=bind',
    '1e9h',
    '-5s',
  ),
);

test('CLI parsers: --filter, --detach-keys, -p, --mount, service --publish, durations, --format templates', () => {
  fc.assert(fc.property(fc.array(text, { maxLength: 4 }), (list) => wellBehaved(() => filtersFrom(list))));
  fc.assert(fc.property(text, (s) => wellBehaved(() => detachKeyBytes(s))));
  fc.assert(fc.property(fc.array(text, { maxLength: 3 }), (list) => wellBehaved(() => parsePublish(list))));
  fc.assert(fc.property(text, (s) => wellBehaved(() => parseMountFlag(s))));
  fc.assert(fc.property(text, (s) => wellBehaved(() => parseServicePublish(s))));
  fc.assert(fc.property(text, (s) => wellBehaved(() => parseDuration(s, '--update-delay'))));
  fc.assert(fc.property(text, fc.jsonValue(), (s, v) => wellBehaved(() => renderTemplate(s, v))));
});
