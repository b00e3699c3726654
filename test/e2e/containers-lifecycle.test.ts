/**
 * Container lifecycle as Docker users rely on it, through the real docker CLI,
 * the API and the cove CLI: restart policies honoured when the daemon starts
 * (an `always` container comes back with working networking, an
 * `unless-stopped` one a user stopped stays down), on-failure restarts,
 * `container prune` with filters, exec sessions that outlive a daemon restart
 * (inspectable, exit codes kept), and exec's 126/127.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Lab } from '../lab/lab.js';
import { api, clientLab, docker, dockerOk, dockerPresent, teardown, sleep, DOCKER_BIN } from './clients-helpers.js';

const skip = dockerPresent()
  ? false
  : `the docker CLI is not installed (${DOCKER_BIN} is missing); these tests need it`;

let lab: Lab | undefined;
before(async () => {
  if (!skip) lab = await clientLab('cove-t-lc');
});
after(async () => {
  await teardown(lab);
});

function L(): Lab {
  assert.ok(lab, 'lab not started');
  return lab;
}

async function state(
  name: string,
): Promise<{ Status: string; Running: boolean; Pid: number; ExitCode: number; RestartCount: number }> {
  const ins = (await api(L(), 'GET', `/containers/${name}/json`)).json();
  return { ...ins.State, RestartCount: ins.RestartCount };
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 30_000): Promise<T> {
  const t0 = Date.now();
  let last: unknown;
  while (Date.now() - t0 < ms) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

test(
  "restart policies at daemon start: always (even after a user's stop) and unless-stopped come back with networking; no and a stopped unless-stopped stay down",
  { skip },
  async () => {
    await dockerOk(L(), ['network', 'create', 'lc-net']);
    await dockerOk(L(), ['run', '-d', '--name', 'lc-peer', '--network', 'lc-net', 'alpine', 'sleep', '600']);
    await dockerOk(L(), ['run', '-d', '--name', 'lc-always', '--network', 'lc-net', '--restart', 'always', 'nginx']);
    await dockerOk(L(), [
      'run',
      '-d',
      '--name',
      'lc-unless',
      '--network',
      'lc-net',
      '--restart',
      'unless-stopped',
      'alpine',
      'sleep',
      '600',
    ]);
    await dockerOk(L(), [
      'run',
      '-d',
      '--name',
      'lc-unless-stopped',
      '--restart',
      'unless-stopped',
      'alpine',
      'sleep',
      '600',
    ]);
    await dockerOk(L(), ['run', '-d', '--name', 'lc-no', '--restart', 'no', 'alpine', 'sleep', '600']);
    // A user's stop: `always` stays down until the daemon restarts, unless-stopped stays down for good.
    await dockerOk(L(), ['stop', '-t', '1', 'lc-always', 'lc-unless-stopped']);
    await sleep(1500);
    assert.equal((await state('lc-always')).Status, 'exited', "a user's stop keeps always down while the daemon runs");
    // The daemon goes away, and (as after a reboot) so do the processes of lc-unless and lc-no.
    const victims = [(await state('lc-unless')).Pid, (await state('lc-no')).Pid];
    await L().stopDaemon('SIGKILL');
    for (const pid of victims) killPid(pid);
    await sleep(500);
    await L().startDaemon();

    await until('lc-always running again', async () => (await state('lc-always')).Running);
    await until('lc-unless running again', async () => (await state('lc-unless')).Running);
    const always = await state('lc-always');
    assert.equal(always.RestartCount, 0, 'a daemon-start restart is a fresh start, as in Docker');
    assert.equal((await state('lc-unless-stopped')).Status, 'exited');
    assert.equal((await state('lc-no')).Status, 'exited');
    // Networking of the restarted container: name, address and a TCP service, from a peer.
    let lastTry = '';
    const web = await until('nginx answering by name', async () => {
      const r = await docker(L(), ['exec', 'lc-peer', 'wget', '-qO-', 'http://lc-always/']);
      lastTry = `${r.code} ${r.stdout} ${r.stderr}`;
      return r.code === 0 && r.stdout;
    }).catch((e) => {
      throw new Error(`${(e as Error).message}; last try: ${lastTry}`);
    });
    assert.match(web, /Welcome to nginx/i);
    const ping = await docker(L(), ['exec', 'lc-always', 'ping', '-c', '1', '-W', '2', 'lc-unless']);
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);
    const ps = (await dockerOk(L(), ['ps', '--format', '{{.Names}} {{.Status}}']))
      .split('\n')
      .map((l) => l.split(' ')[0])
      .sort();
    assert.deepEqual(ps, ['lc-always', 'lc-peer', 'lc-unless']);
    await dockerOk(L(), ['rm', '-f', 'lc-always', 'lc-unless', 'lc-unless-stopped', 'lc-no', 'lc-peer']);
    await dockerOk(L(), ['network', 'rm', 'lc-net']);
  },
);

test(
  "on-failure:N restarts a failing container N times (docker CLI), a user's start resets the count",
  { skip },
  async () => {
    await dockerOk(L(), [
      'run',
      '-d',
      '--name',
      'lc-flaky',
      '--network',
      'none',
      '--restart',
      'on-failure:2',
      'alpine',
      'sh',
      '-c',
      'exit 3',
    ]);
    await until('two restarts then exited', async () => {
      const s = await state('lc-flaky');
      return s.RestartCount === 2 && s.Status === 'exited';
    });
    await sleep(1000);
    const s = await state('lc-flaky');
    assert.deepEqual([s.RestartCount, s.ExitCode, s.Status], [2, 3, 'exited']);
    assert.equal(
      await dockerOk(L(), [
        'inspect',
        '-f',
        '{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}',
        'lc-flaky',
      ]),
      'on-failure:2',
    );
    await dockerOk(L(), ['start', 'lc-flaky']);
    await until('two more restarts after a user start', async () => {
      const x = await state('lc-flaky');
      return x.RestartCount === 2 && x.Status === 'exited';
    });
    // A policy that succeeds is not restarted.
    await dockerOk(L(), [
      'run',
      '-d',
      '--name',
      'lc-ok',
      '--network',
      'none',
      '--restart',
      'on-failure',
      'alpine',
      'true',
    ]);
    await until('lc-ok exited', async () => (await state('lc-ok')).Status === 'exited');
    await sleep(1000);
    assert.equal((await state('lc-ok')).RestartCount, 0);
    // Bad policies: docker's words.
    const bad = await docker(L(), ['run', '-d', '--restart', 'always:3', 'alpine', 'true']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /maximum retry count can only be used with 'on-failure'/);
    await dockerOk(L(), ['rm', '-f', 'lc-flaky', 'lc-ok']);
  },
);

test(
  "container prune: stopped containers only, label filters, Docker's output and errors (docker CLI, cove CLI, API)",
  { skip },
  async () => {
    await dockerOk(L(), ['run', '-d', '--name', 'pr-running', '--label', 'pr', 'alpine', 'sleep', '600']);
    await dockerOk(L(), ['create', '--name', 'pr-created', '--label', 'pr', 'alpine', 'true']);
    await dockerOk(L(), [
      'run',
      '--name',
      'pr-exited',
      '--label',
      'pr',
      '--network',
      'none',
      'alpine',
      'sh',
      '-c',
      'head -c 300000 /dev/zero > /big',
    ]);
    await dockerOk(L(), [
      'run',
      '--name',
      'pr-keep',
      '--label',
      'pr',
      '--label',
      'keep=yes',
      '--network',
      'none',
      'alpine',
      'true',
    ]);
    const ids = Object.fromEntries(
      await Promise.all(
        ['pr-created', 'pr-exited', 'pr-keep', 'pr-running'].map(async (n) => [
          n,
          await dockerOk(L(), ['inspect', '-f', '{{.Id}}', n]),
        ]),
      ),
    );

    const badFilter = await docker(L(), ['container', 'prune', '-f', '--filter', 'color=red']);
    assert.notEqual(badFilter.code, 0);
    assert.match(badFilter.stderr, /invalid filter 'color'/);

    const out = await dockerOk(L(), [
      'container',
      'prune',
      '-f',
      '--filter',
      'label=pr',
      '--filter',
      'label!=keep=yes',
    ]);
    const deleted = out
      .split('\n')
      .filter((l) => /^[0-9a-f]{64}$/.test(l))
      .sort();
    assert.deepEqual(deleted, [ids['pr-created'], ids['pr-exited']].sort());
    assert.match(out, /^Deleted Containers:\n/);
    // The writable layer held the 300 kB file.
    const space = /Total reclaimed space: ([\d.]+)kB/.exec(out);
    assert.ok(space && Number(space[1]) >= 300, out);
    const left = (await dockerOk(L(), ['ps', '-a', '--filter', 'label=pr', '--format', '{{.Names}}']))
      .split('\n')
      .sort();
    assert.deepEqual(left, ['pr-keep', 'pr-running']);

    // The API's shape, and nothing to do: ContainersDeleted null.
    const again = await api(
      L(),
      'POST',
      '/containers/prune?filters=' + encodeURIComponent(JSON.stringify({ label: ['keep=no'] })),
    );
    assert.equal(again.status, 200);
    assert.deepEqual(again.json(), { ContainersDeleted: null, SpaceReclaimed: 0 });
    // The cove CLI removes the rest of the stopped ones.
    const cove = await L().coveOk(['container', 'prune', '-f', '--filter', 'label=pr']);
    assert.match(cove, new RegExp(`Deleted Containers:\\n${ids['pr-keep']}\\n`));
    assert.match(cove, /Total reclaimed space: /);
    assert.equal((await state('pr-running')).Running, true, 'a running container is never pruned');
    await dockerOk(L(), ['rm', '-f', 'pr-running']);
  },
);

test(
  'exec sessions outlive a daemon restart: inspectable, exit codes kept (finished before, during and after the restart); exec 126/127',
  { skip },
  async () => {
    await dockerOk(L(), ['run', '-d', '--name', 'ex-host', '--network', 'none', 'alpine', 'sleep', '600']);
    const execOf = async (script: string): Promise<string> => {
      const c = await api(L(), 'POST', '/containers/ex-host/exec', { Cmd: ['sh', '-c', script] });
      assert.equal(c.status, 201, c.text);
      const id = c.json().Id as string;
      const s = await api(L(), 'POST', `/exec/${id}/start`, { Detach: true });
      assert.equal(s.status, 200, s.text);
      return id;
    };
    const inspectExec = async (
      id: string,
    ): Promise<{ Running: boolean; ExitCode: number | null; ContainerID: string }> => {
      const r = await api(L(), 'GET', `/exec/${id}/json`);
      assert.equal(r.status, 200, r.text);
      return r.json();
    };
    const before = await execOf('exit 5');
    await until('the first exec finished', async () => !(await inspectExec(before)).Running);
    const during = await execOf('sleep 1; exit 9');
    const after = await execOf('sleep 8; exit 7');
    await until('the long exec runs', async () => (await inspectExec(after)).Running);

    await L().stopDaemon('SIGKILL');
    await sleep(2000); // `during` ends while no daemon runs
    await L().startDaemon();

    assert.deepEqual(await inspectExec(before).then((e) => [e.Running, e.ExitCode]), [false, 5]);
    assert.deepEqual(
      await until('during settled', async () => {
        const e = await inspectExec(during);
        return !e.Running && [e.Running, e.ExitCode];
      }),
      [false, 9],
    );
    const mid = await inspectExec(after);
    assert.equal(mid.Running, true, 'the long exec still runs after the restart');
    const ins = (await api(L(), 'GET', '/containers/ex-host/json')).json();
    assert.ok((ins.ExecIDs ?? []).includes(after), 'inspect lists the running exec');
    assert.deepEqual(
      await until(
        'after settled',
        async () => {
          const e = await inspectExec(after);
          return !e.Running && [e.Running, e.ExitCode];
        },
        20_000,
      ),
      [false, 7],
    );
    assert.equal((await inspectExec(after)).ContainerID, ins.Id);

    // Docker's exit codes for an exec that cannot run.
    assert.equal((await docker(L(), ['exec', 'ex-host', 'nosuchcommand'])).code, 127);
    assert.equal((await docker(L(), ['exec', 'ex-host', '/etc/passwd'])).code, 126);
    // Sessions go with their container.
    await dockerOk(L(), ['rm', '-f', 'ex-host']);
    assert.equal((await api(L(), 'GET', `/exec/${before}/json`)).status, 404);
  },
);
