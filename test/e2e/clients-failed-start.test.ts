/**
 * What a user sees when a `run --rm` cannot start, with the real docker CLI
 * and with cove: Docker's error, Docker's exit code (127 when the command is
 * not there, 125 for a daemon refusal), no hang (the CLI waits for
 * condition=removed, so the daemon must remove the container after a failed
 * start), and nothing left behind. Also `docker version` against Cove: the
 * server's components with their versions, as Docker lists its own.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { Lab, RunResult } from '../lab/lab.js';
import { api, clientLab, docker, dockerOk, dockerPresent, teardown, DOCKER_BIN } from './clients-helpers.js';

const noDocker = dockerPresent() ? false : `the docker CLI is not installed (${DOCKER_BIN} is missing)`;

let lab: Lab | undefined;
before(async () => {
  lab = await clientLab('cove-t-fs');
});
after(async () => {
  await teardown(lab);
});

function L(): Lab {
  assert.ok(lab, 'lab not started');
  return lab;
}

/** Every container the daemon knows, by the API (not by either CLI). */
async function containerNames(): Promise<string[]> {
  const cs = (await api(L(), 'GET', '/containers/json?all=1')).json() as Array<{ Names: string[] }>;
  return cs.map((c) => c.Names[0] ?? '');
}

type Cli = { name: string; run: (args: string[]) => Promise<RunResult>; prefix: RegExp };
const clis = (): Cli[] => [
  ...(noDocker
    ? []
    : [
        {
          name: 'docker',
          run: (a: string[]) => docker(L(), a, { timeoutMs: 20_000 }),
          prefix: /^docker: Error response from daemon: /,
        },
      ]),
  {
    name: 'cove',
    run: (a: string[]) => L().cove(a, { timeoutMs: 20_000 }),
    prefix: /^cove: Error response from daemon: /,
  },
];

/** The failing starts a user meets, with the exit code and message Docker gives for each. */
const CASES: Array<{ what: string; args: (cli: string) => string[]; code: number; message: RegExp }> = [
  {
    what: 'a command that does not exist',
    args: (c) => ['run', '--rm', '--name', `${c}-nosuch`, 'alpine', 'nosuchcommand'],
    code: 127,
    message: /exec: "nosuchcommand": executable file not found in \$PATH/,
  },
  {
    what: 'a command path that does not exist',
    args: (c) => ['run', '--rm', '--name', `${c}-nopath`, 'alpine', '/no/such/file'],
    code: 127,
    message: /no such file or directory/,
  },
  {
    what: 'a command that is not executable',
    args: (c) => ['run', '--rm', '--name', `${c}-noexec`, 'alpine', '/etc/passwd'],
    code: 126,
    message: /permission denied/,
  },
  {
    what: 'a detached run of a command that does not exist',
    args: (c) => ['run', '-d', '--rm', '--name', `${c}-detached`, 'alpine', 'nosuchcommand'],
    code: 127,
    message: /executable file not found/,
  },
  {
    what: 'an interactive tty run of a command that does not exist',
    args: (c) => ['run', '-i', '--rm', '--name', `${c}-it`, 'alpine', 'nosuchcommand'],
    code: 127,
    message: /executable file not found/,
  },
  {
    what: '--ip on the default bridge',
    args: (c) => ['run', '--rm', '--name', `${c}-ip`, '--ip', '172.17.0.50', 'alpine', 'true'],
    code: 125,
    message: /user specified IP address is supported on user defined networks only/,
  },
];

for (const k of CASES) {
  test(`run --rm with ${k.what}: Docker's error and exit code, no hang, nothing left`, async () => {
    for (const cli of clis()) {
      const t0 = Date.now();
      const r = await cli.run(k.args(cli.name));
      const ms = Date.now() - t0;
      assert.ok(ms < 15_000, `${cli.name} took ${ms} ms (the CLI waits for the removal)`);
      assert.equal(r.code, k.code, `${cli.name} ${k.args(cli.name).join(' ')}: exit ${r.code}, stderr ${r.stderr}`);
      assert.match(r.stderr, cli.prefix, `${cli.name}: ${r.stderr}`);
      assert.match(r.stderr, k.message, `${cli.name}: ${r.stderr}`);
      assert.equal(r.stdout.replace(/^[0-9a-f]{64}\n?$/, ''), '', `${cli.name} printed ${r.stdout}`);
      const left = (await containerNames()).filter((n) => n.startsWith(`/${cli.name}-`));
      assert.deepEqual(left, [], `${cli.name} left ${left.join(', ')}`);
    }
  });
}

test("a failed start without --rm leaves the container Created with Docker's exit code and error", async () => {
  const r = await L().cove(['run', '--name', 'kept', 'alpine', 'nosuchcommand']);
  assert.equal(r.code, 127, r.stderr);
  const st = JSON.parse(await L().coveOk(['inspect', 'kept']))[0].State;
  assert.equal(st.Status, 'created');
  assert.equal(st.ExitCode, 127);
  assert.match(st.Error, /executable file not found/);
  // It can be started again after a fix elsewhere is impossible (same command), but rm works as usual.
  await L().coveOk(['rm', 'kept']);
  assert.deepEqual(await containerNames(), []);
});

test('the daemon is up and serves after every failed start', async () => {
  assert.ok(await L().ping());
  const out = await L().coveOk(['run', '--rm', 'alpine', 'echo', 'still here']);
  assert.equal(out, 'still here');
  assert.deepEqual(await containerNames(), []);
});

test("docker version shows the server's components with versions, as Docker does", { skip: noDocker }, async () => {
  const text = await dockerOk(L(), ['version']);
  const server = text.slice(text.indexOf('Server:'));
  assert.match(server, /^Server: Cove Engine$/m);
  assert.match(
    server,
    /^ Engine:\n  Version:\s+\d+\.\d+\.\d+\n  API version:\s+1\.51 \(minimum version 1\.24\)\n  Go version:\s+node\d+\.\d+\.\d+\n  Git commit:\s+\S+\n  Built:\s+\S.*\n  OS\/Arch:\s+linux\/\w+\n  Experimental:\s+false$/m,
  );
  // The programs the engine runs, with the versions those programs report themselves.
  const runc = /runc version (\S+)/.exec(execFileSync('runc', ['--version'], { encoding: 'utf8' }))![1]!;
  assert.match(
    server,
    new RegExp(`^ runc:\\n  Version:\\s+${runc.replace(/[.+]/g, '\\$&')}\\n  GitCommit:\\s+\\S+$`, 'm'),
  );
  const conmon = /conmon version (\S+)/.exec(execFileSync('conmon', ['--version'], { encoding: 'utf8' }))![1]!;
  assert.match(server, new RegExp(`^ conmon:\\n  Version:\\s+${conmon.replace(/[.+]/g, '\\$&')}$`, 'm'));
  const etcd = /etcd Version: (\S+)/.exec(execFileSync('etcd', ['--version'], { encoding: 'utf8' }))![1]!;
  assert.match(server, new RegExp(`^ etcd:\\n  Version:\\s+${etcd.replace(/[.+]/g, '\\$&')}$`, 'm'));
  assert.doesNotMatch(server, /Version:\s*$/m, 'no empty Version line');
  // The JSON form carries the same components.
  const v = JSON.parse(await dockerOk(L(), ['version', '--format', '{{json .Server.Components}}'])) as Array<{
    Name: string;
    Version: string;
  }>;
  assert.deepEqual(
    v.map((c) => c.Name),
    ['Engine', 'runc', 'conmon', 'etcd'],
  );
  for (const c of v) assert.notEqual(c.Version, '', c.Name);
});

test('cove version lists the same components', async () => {
  const text = await L().coveOk(['version']);
  for (const name of ['Engine', 'runc', 'conmon', 'etcd'])
    assert.match(text, new RegExp(`^ ${name}:\\n  Version:\\s+\\S+`, 'm'), text);
});

test("the start API answers a missing command with 400 and Docker's words", async () => {
  const created = await api(L(), 'POST', '/containers/create?name=apistart', {
    Image: 'alpine',
    Cmd: ['nosuchcommand'],
  });
  assert.equal(created.status, 201, created.text);
  const r = await api(L(), 'POST', '/containers/apistart/start');
  assert.equal(r.status, 400, r.text);
  assert.equal(
    r.json().message,
    'failed to create task for container: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: "nosuchcommand": executable file not found in $PATH: unknown',
  );
  const w = await api(L(), 'POST', '/containers/apistart/wait');
  assert.equal(w.json().StatusCode, 127);
  assert.equal((await api(L(), 'DELETE', '/containers/apistart')).status, 204);
});
