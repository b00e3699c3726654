/**
 * Log drivers as Docker users meet them, through the real docker CLI and the
 * API: json-file (the default) with `--log-opt max-size/max-file` rotation
 * while the container writes, `logs` (tail, follow, timestamps) reading
 * across the rotated files without gaps, `none`, and Docker's refusals.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Lab } from '../lab/lab.js';
import { api, clientLab, docker, dockerOk, dockerPresent, teardown, sleep, DOCKER_BIN } from './clients-helpers.js';

const skip = dockerPresent()
  ? false
  : `the docker CLI is not installed (${DOCKER_BIN} is missing); these tests need it`;

let lab: Lab | undefined;
before(async () => {
  if (!skip) lab = await clientLab('cove-t-lg');
});
after(async () => {
  await teardown(lab);
});

function L(): Lab {
  assert.ok(lab, 'lab not started');
  return lab;
}

/** A shell loop printing `line 0` .. `line n-1`, 20 lines every 50 ms (a chatty but not instant writer). */
function writer(n: number): string {
  return `i=0; while [ $i -lt ${n} ]; do echo "line $i padding-padding-padding-padding"; i=$((i+1)); [ $((i % 20)) = 0 ] && sleep 0.05; done`;
}

function numbers(out: string): number[] {
  return out
    .split('\n')
    .filter(Boolean)
    .map((l) => Number(/line (\d+)/.exec(l)?.[1] ?? NaN));
}

function assertConsecutive(ns: number[], last: number): void {
  assert.ok(ns.length > 0, 'no lines');
  assert.ok(!ns.some(Number.isNaN), 'a line that is not ours');
  assert.equal(ns[ns.length - 1], last);
  for (let i = 1; i < ns.length; i++) assert.equal(ns[i], ns[i - 1]! + 1, `gap after line ${ns[i - 1]}`);
}

/** The lines of a json-file log, each checked to be Docker's shape: exactly log, stream, time (RFC3339Nano, UTC). */
function dockerJsonLines(file: string): Array<{ log: string; stream: string; time: string }> {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const o = JSON.parse(l) as { log: string; stream: string; time: string };
      assert.deepEqual(Object.keys(o), ['log', 'stream', 'time'], l);
      assert.ok(o.stream === 'stdout' || o.stream === 'stderr', l);
      assert.match(o.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/, l);
      assert.ok(Math.abs(Date.parse(o.time) - Date.now()) < 3_600_000, `a time of now: ${l}`);
      return o;
    });
}

test(
  'json-file is the default; max-size/max-file rotate while the container writes; logs reads across the files without gaps',
  { skip },
  async () => {
    await dockerOk(L(), [
      'run',
      '-d',
      '--name',
      'lg-rot',
      '--network',
      'none',
      '--log-opt',
      'max-size=10k',
      '--log-opt',
      'max-file=3',
      'alpine',
      'sh',
      '-c',
      `${writer(1000)}; sleep 300`,
    ]);
    await dockerOk(L(), ['run', '-d', '--name', 'lg-plain', '--network', 'none', 'alpine', 'echo', 'hello']);
    const plain = (await api(L(), 'GET', '/containers/lg-plain/json')).json();
    assert.deepEqual(plain.HostConfig.LogConfig, { Type: 'json-file', Config: {} });
    const ins = (await api(L(), 'GET', '/containers/lg-rot/json')).json();
    assert.deepEqual(ins.HostConfig.LogConfig, { Type: 'json-file', Config: { 'max-size': '10k', 'max-file': '3' } });
    // Wait for the writer to finish.
    for (let i = 0; i < 120; i++) {
      if ((await dockerOk(L(), ['logs', '--tail', '1', 'lg-rot'])).includes('line 999')) break;
      await sleep(250);
    }
    await sleep(1000);
    const dir = dirname(ins.LogPath);
    assert.equal(ins.LogPath, join(dir, `${ins.Id}-json.log`), "Docker's file name");
    const files = readdirSync(dir).filter((f) => f.startsWith(`${ins.Id}-json.log`));
    assert.ok(files.length >= 2 && files.length <= 3, `rotated files: ${files.join(' ')}`);
    for (const f of files)
      assert.ok(statSync(join(dir, f)).size < 24 * 1024, `${f} is ${statSync(join(dir, f)).size} bytes`);
    // What fluentd or promtail tailing the files read: one Docker JSON object per line, oldest file .2.
    const onDisk = files
      .sort()
      .reverse()
      .flatMap((f) => dockerJsonLines(join(dir, f)));
    assertConsecutive(numbers(onDisk.map((l) => l.log).join('')), 999);
    const all = numbers(await dockerOk(L(), ['logs', 'lg-rot']));
    assertConsecutive(all, 999);
    assert.ok(all[0]! > 0, 'the oldest lines were rotated away');
    assert.deepEqual(numbers(await dockerOk(L(), ['logs', '--tail', '5', 'lg-rot'])), [995, 996, 997, 998, 999]);
    const stamped = (await dockerOk(L(), ['logs', '-t', '--tail', '2', 'lg-rot'])).split('\n');
    for (const l of stamped) assert.match(l, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z line \d+ /);
    const later = await dockerOk(L(), [
      'logs',
      '--since',
      '2000-01-01T00:00:00Z',
      '--until',
      '2000-01-02T00:00:00Z',
      'lg-rot',
    ]);
    assert.equal(later, '', 'nothing in a window before the container existed');
    await dockerOk(L(), ['rm', '-f', 'lg-rot', 'lg-plain']);
  },
);

test(
  'a chatty container: 400k lines past the default rotation (20 MiB) are all read back by logs',
  { skip },
  async () => {
    // bench:containers found `logs` failing with "Maximum call stack size exceeded" on such a log.
    const lines = 400_000;
    await dockerOk(L(), [
      'run',
      '--name',
      'lg-chatty',
      '--network',
      'none',
      '-d',
      'alpine',
      'sh',
      '-c',
      `yes ${'x'.repeat(63)} | head -n ${lines}`,
    ]);
    assert.equal(await dockerOk(L(), ['wait', 'lg-chatty'], { timeoutMs: 300_000 }), '0');
    const ins = (await api(L(), 'GET', '/containers/lg-chatty/json')).json();
    const files = readdirSync(dirname(ins.LogPath)).filter((f) => f.startsWith(`${ins.Id}-json.log`));
    assert.ok(files.length >= 2, `the default max-size rotated the log: ${files.join(' ')}`);
    const all = await docker(L(), ['logs', 'lg-chatty'], { timeoutMs: 300_000 });
    assert.equal(all.code, 0, all.stderr);
    assert.equal(all.stdout.length, lines * 64, 'every line, once');
    assert.equal(await dockerOk(L(), ['logs', '--tail', '2', 'lg-chatty']), `${'x'.repeat(63)}\n${'x'.repeat(63)}`);
    await dockerOk(L(), ['rm', 'lg-chatty']);
  },
);

test('logs -f follows across rotations: every line, in order, until the container exits', { skip }, async () => {
  await dockerOk(L(), [
    'run',
    '-d',
    '--name',
    'lg-follow',
    '--network',
    'none',
    // ~170 lines a file, 3 kept: a file lives ~1.3 s at this writer's pace, so a follower polling at 50-250 ms
    // sees each one (a log rotated away before any reader looked at it is lost, in Docker as here).
    '--log-opt',
    'max-size=16k',
    '--log-opt',
    'max-file=3',
    'alpine',
    'sh',
    '-c',
    `sleep 2; ${writer(800)}`,
  ]);
  const followed = await docker(L(), ['logs', '-f', 'lg-follow'], { timeoutMs: 60_000 });
  assert.equal(followed.code, 0, followed.stderr);
  const ns = numbers(followed.stdout);
  assert.equal(ns[0], 0, 'the follower saw the first line');
  assertConsecutive(ns, 799);
  const path = (await api(L(), 'GET', '/containers/lg-follow/json')).json().LogPath as string;
  const files = readdirSync(dirname(path)).filter((f) => f.startsWith(basename(path)));
  assert.equal(files.length, 3, `rotated: ${files.join(' ')}`);
  await dockerOk(L(), ['rm', 'lg-follow']);
});

test(
  "the none driver keeps nothing; unknown drivers and options are refused with Docker's words",
  { skip },
  async () => {
    await dockerOk(L(), [
      'run',
      '--name',
      'lg-none',
      '--network',
      'none',
      '--log-driver',
      'none',
      'alpine',
      'echo',
      'unseen',
    ]);
    assert.equal(await dockerOk(L(), ['inspect', '-f', '{{.HostConfig.LogConfig.Type}}', 'lg-none']), 'none');
    const r = await docker(L(), ['logs', 'lg-none']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /configured logging driver does not support reading/);
    assert.equal((await api(L(), 'GET', '/containers/lg-none/logs?stdout=1')).status, 501);
    await dockerOk(L(), ['rm', 'lg-none']);

    const before = (await dockerOk(L(), ['ps', '-aq'])).split('\n').filter(Boolean).length;
    const badDriver = await docker(L(), ['run', '--log-driver', 'carrier-pigeon', 'alpine', 'true']);
    assert.notEqual(badDriver.code, 0);
    assert.match(badDriver.stderr, /logger: no log driver named 'carrier-pigeon' is registered/);
    const badOpt = await docker(L(), ['run', '--log-opt', 'colour=blue', 'alpine', 'true']);
    assert.match(badOpt.stderr, /unknown log opt 'colour' for json-file log driver/);
    const badSize = await api(L(), 'POST', '/containers/create', {
      Image: 'alpine',
      HostConfig: { LogConfig: { Type: 'json-file', Config: { 'max-size': 'lots' } } },
    });
    assert.equal(badSize.status, 400);
    assert.match(badSize.json().message, /invalid size: 'lots'/);
    assert.equal(
      (await dockerOk(L(), ['ps', '-aq'])).split('\n').filter(Boolean).length,
      before,
      'nothing was created',
    );
  },
);

test(
  "json-file on disk is Docker's: stdout and stderr, escapes, partial lines, in the file LogPath names",
  { skip },
  async () => {
    await dockerOk(L(), [
      'run',
      '--name',
      'lg-shape',
      '--network',
      'none',
      'alpine',
      'sh',
      '-c',
      `echo 'out "quoted" <tag> & tab\there'; echo err 1>&2; printf 'no newline'`,
    ]);
    const ins = (await api(L(), 'GET', '/containers/lg-shape/json')).json();
    const lines = dockerJsonLines(ins.LogPath);
    const byStream = (s: string): string[] => lines.filter((l) => l.stream === s).map((l) => l.log);
    assert.deepEqual(byStream('stdout'), ['out "quoted" <tag> & tab\there\n', 'no newline']);
    assert.deepEqual(byStream('stderr'), ['err\n']);
    // moby's jsonlog escapes <, > and & as \u003c, \u003e, \u0026.
    assert.match(readFileSync(ins.LogPath, 'utf8'), /\\"quoted\\" \\u003ctag\\u003e \\u0026 tab\\there\\n/);
    const back = await docker(L(), ['logs', 'lg-shape']);
    assert.equal(back.stdout, 'out "quoted" <tag> & tab\there\nno newline');
    assert.equal(back.stderr, 'err\n');
    await dockerOk(L(), ['rm', 'lg-shape']);
  },
);

test(
  'a daemon crash and restart loses no line: the writer outlives the daemon; logs -f follows to the end',
  { skip },
  async () => {
    await dockerOk(L(), [
      'run',
      '-d',
      '--name',
      'lg-crash',
      '--network',
      'none',
      '--log-opt',
      'max-size=8k',
      '--log-opt',
      'max-file=100',
      'alpine',
      'sh',
      '-c',
      `sleep 1; ${writer(1500)}`,
    ]);
    const ins = (await api(L(), 'GET', '/containers/lg-crash/json')).json();
    await sleep(1500);
    await L().stopDaemon('SIGKILL');
    await sleep(1000);
    await L().startDaemon();
    const followed = await docker(L(), ['logs', '-f', 'lg-crash'], { timeoutMs: 90_000 });
    assert.equal(followed.code, 0, followed.stderr);
    const ns = numbers(followed.stdout);
    assert.equal(ns[0], 0);
    assertConsecutive(ns, 1499);
    const dir = dirname(ins.LogPath);
    const files = readdirSync(dir).filter((f) => f.startsWith(basename(ins.LogPath)));
    assert.ok(files.length > 3, `rotated by the writer while the daemon was away: ${files.join(' ')}`);
    await dockerOk(L(), ['rm', 'lg-crash']);
  },
);

test('a json-file writer found dead at restore is started again on the same stream', { skip }, async () => {
  await dockerOk(L(), [
    'run',
    '-d',
    '--name',
    'lg-rewrite',
    '--network',
    'none',
    'alpine',
    'sh',
    '-c',
    'i=0; while true; do echo "line $i"; i=$((i+1)); sleep 0.1; done',
  ]);
  const ins = (await api(L(), 'GET', '/containers/lg-rewrite/json')).json();
  await sleep(1000);
  await L().stopDaemon('SIGKILL');
  // The writer is ours (this lab's container); find it by its command line naming this log.
  const pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  let killed = 0;
  for (const p of pids) {
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmd.includes('cove-logger') && cmd.includes(ins.LogPath)) {
      process.kill(Number(p), 'SIGKILL');
      killed++;
    }
  }
  assert.equal(killed, 1, 'one writer per running container');
  await L().startDaemon();
  const before = numbers(await dockerOk(L(), ['logs', 'lg-rewrite'])).pop()!;
  await sleep(2000);
  const after = numbers(await dockerOk(L(), ['logs', 'lg-rewrite']));
  assert.ok(after[after.length - 1]! > before + 5, `new lines after the restore: ${before} then ${after.at(-1)}`);
  await dockerOk(L(), ['rm', '-f', 'lg-rewrite']);
});

test('the local driver keeps its own file and reads back as before', { skip }, async () => {
  await dockerOk(L(), [
    'run',
    '--name',
    'lg-local',
    '--network',
    'none',
    '--log-driver',
    'local',
    'alpine',
    'sh',
    '-c',
    'echo one; echo two',
  ]);
  const ins = (await api(L(), 'GET', '/containers/lg-local/json')).json();
  assert.equal(basename(ins.LogPath), 'ctr.log');
  assert.equal(await dockerOk(L(), ['logs', 'lg-local']), 'one\ntwo');
  assert.equal(await dockerOk(L(), ['logs', '--tail', '1', 'lg-local']), 'two');
  await dockerOk(L(), ['rm', 'lg-local']);
});
