/**
 * The json-file writer (native/cove-logger.c) fed as conmon feeds it, through
 * a FIFO, and the reader on what it wrote: Docker's line shape and escapes,
 * joined partial lines, UTC times, rotation, `logs --tail` across files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLogWriter, waitLogWriter } from '../../src/runtime/containers/json-log-writer.js';
import { fastJsonLine, parseJsonLine, readLogs } from '../../src/runtime/containers/logs.js';
import type { LogOptions } from '../../src/runtime/types.js';

/** Starts the writer, writes conmon's records into its FIFO as conmon would, waits for it to finish. */
async function feed(dir: string, records: string[], maxSize = 0, maxFile = 1): Promise<string> {
  const fifo = join(dir, 'log.fifo');
  const log = join(dir, 'c-json.log');
  const pid = await startLogWriter(fifo, log, { maxSize, maxFile });
  const fh = await open(fifo, 'w');
  for (let i = 0; i < records.length; i += 50) await fh.write(Buffer.from(records.slice(i, i + 50).join(''), 'latin1')); // bytes as given
  await fh.close();
  assert.ok(await waitLogWriter(pid, log, 10_000), 'the writer ends when conmon closes the FIFO');
  return log;
}

async function read(path: string, o: Partial<LogOptions> = {}): Promise<string[]> {
  const out: string[] = [];
  for await (const e of readLogs(path, {
    follow: false,
    stdout: true,
    stderr: true,
    timestamps: false,
    tail: 'all',
    ...o,
  }))
    out.push(`${e.stream}:${e.data.toString()}`);
  return out;
}

test("conmon's records become Docker's json-file lines", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cvjl-'));
  try {
    const log = await feed(dir, [
      // é in UTF-8, then a byte that is not UTF-8
      '2026-12-03T20:30:00.123456700+01:00 stdout F say "hi" <b>&\t\x01 \xc3\xa9 \xff\n',
      '2026-12-03T19:30:01.000000000+00:00 stderr P to be \n',
      '2026-12-03T19:30:02.500000000+00:00 stdout F out\n',
      '2026-12-03T19:30:03.000000000+00:00 stderr F continued\n',
      '2026-12-03T19:30:04.000000000+00:00 stdout F \n',
      '2026-12-03T19:30:05.000000000+00:00 stdout P no end\n',
    ]);
    const lines = readFileSync(log, 'utf8').trimEnd().split('\n');
    assert.equal(
      lines[0],
      '{"log":"say \\"hi\\" \\u003cb\\u003e\\u0026\\t\\u0001 é \\ufffd\\n","stream":"stdout","time":"2026-12-03T19:30:00.1234567Z"}',
    );
    assert.deepEqual(
      lines.slice(1).map((l) => JSON.parse(l)),
      [
        { log: 'out\n', stream: 'stdout', time: '2026-12-03T19:30:02.5Z' },
        { log: 'to be continued\n', stream: 'stderr', time: '2026-12-03T19:30:03Z' },
        { log: '\n', stream: 'stdout', time: '2026-12-03T19:30:04Z' },
        { log: 'no end', stream: 'stdout', time: '2026-12-03T19:30:05Z' },
      ],
    );
    assert.deepEqual(await read(log), [
      'stdout:say "hi" <b>&\t\x01 é \ufffd\n',
      'stdout:out\n',
      'stderr:to be continued\n',
      'stdout:\n',
      'stdout:no end',
    ]);
    const t = Date.parse('2026-12-03T19:30:02Z') / 1000;
    assert.deepEqual(await read(log, { since: t, until: t + 1.2 }), ['stdout:out\n', 'stderr:to be continued\n']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the writer rotates by max-size/max-file; reading and tail go across the files', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cvjl-'));
  try {
    const records = Array.from({ length: 300 }, (_, i) => `2026-12-03T19:30:00.000000001+00:00 stdout F line ${i}\n`);
    const log = await feed(dir, records, 2000, 3);
    const files = readdirSync(dir).filter((f) => f.startsWith('c-json.log'));
    assert.deepEqual(files.sort(), ['c-json.log', 'c-json.log.1', 'c-json.log.2']);
    const all = await read(log);
    const first = Number(/line (\d+)/.exec(all[0]!)![1]);
    assert.ok(first > 0, 'the oldest file was dropped');
    assert.deepEqual(
      all,
      records.slice(first).map((_, i) => `stdout:line ${first + i}\n`),
    );
    assert.deepEqual(await read(log, { tail: '3' }), ['stdout:line 297\n', 'stdout:line 298\n', 'stdout:line 299\n']);
    const fromOlder = await read(log, { tail: String(all.length - 2) });
    assert.equal(fromOlder[0], `stdout:line ${first + 2}\n`, 'tail reaching into the oldest file');
    assert.deepEqual(await read(log, { tail: '0' }), []);
    // max-file 1: one file, truncated in place.
    rmSync(dir, { recursive: true, force: true });
    const dir1 = mkdtempSync(join(tmpdir(), 'cvjl-'));
    const one = await feed(dir1, records, 2000, 1);
    assert.deepEqual(
      readdirSync(dir1).filter((f) => f.startsWith('c-json.log')),
      ['c-json.log'],
    );
    assert.equal((await read(one, { tail: '1' }))[0], 'stdout:line 299\n');
    rmSync(dir1, { recursive: true, force: true });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the fast path reads plain json-file lines as JSON.parse would, and leaves escaped ones to it', () => {
  const plain = '{"log":"hello world\\n","stream":"stderr","time":"2026-12-03T19:30:00.5Z"}';
  const b = Buffer.from(plain);
  const p = fastJsonLine(b, 0, b.length)!;
  const slow = parseJsonLine(plain)!;
  assert.deepEqual({ time: p.time, stream: p.stream, partial: p.partial, text: p.data!.toString().slice(0, -1) }, slow);
  const part = Buffer.from('{"log":"no end yet","stream":"stdout","time":"2026-12-03T19:30:00.5Z"}');
  assert.deepEqual(fastJsonLine(part, 0, part.length), parseJsonLine(part.toString()));
  const escaped = Buffer.from('{"log":"say \\"hi\\"\\n","stream":"stdout","time":"2026-12-03T19:30:00.5Z"}');
  assert.equal(fastJsonLine(escaped, 0, escaped.length), undefined);
  const attrs = Buffer.from('{"log":"x\\n","stream":"stdout","attrs":{"a":"b"},"time":"2026-12-03T19:30:00.5Z"}');
  assert.equal(fastJsonLine(attrs, 0, attrs.length), undefined);
});
