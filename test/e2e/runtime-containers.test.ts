/**
 * Containers for real: busybox images built by scripts/build-images.sh run by
 * runc under conmon, on overlay root filesystems, in network sandboxes from a
 * test double (none: a fresh netns; host: this test's lab namespace `cvrt-*`,
 * never the root namespace). Follows the tutorial's moves: run, exec, attach
 * and detach, logs, stop, rm, and a daemon restart that finds its containers.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream, mkdtempSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { defaultConfig, type DaemonConfig } from '../../src/common/config.js';
import { EventBus, type DockerEvent } from '../../src/common/events.js';
import { ImageStore } from '../../src/runtime/images/store.js';
import { ContainerManager } from '../../src/runtime/containers/manager.js';
import { enterNetnsForThisThread, netnsInode } from '../../src/kernel/netns.js';
import type { IoSession } from '../../src/runtime/types.js';
import { FakeNetworks } from './runtime-fake-network.js';

const repoRoot = join(import.meta.dirname, '..', '..', '..');
const LAB = `cvrt-e2e${process.pid % 10000}`;
const work = mkdtempSync('/tmp/cvrt-ctr-');
const config: DaemonConfig = defaultConfig({
  dataRoot: join(work, 'data'),
  execRoot: join(work, 'run'),
  runtime: '/usr/sbin/runc',
});
const events = new EventBus();
const seen: DockerEvent[] = [];
events.subscribe((e) => seen.push(e));
let store: EmbeddedStore;
let images: ImageStore;
let networks: FakeNetworks;
let containers: ContainerManager;
const rootNetns = netnsInode('/proc/thread-self/ns/net');

function collect(stream: Readable | null): { text: () => string } {
  let buf = '';
  stream?.on('data', (c: Buffer) => {
    buf += c.toString('utf8');
  });
  return { text: () => buf };
}

async function until(cond: () => boolean | Promise<boolean>, ms = 10_000, what = 'condition'): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** docker exec, non-interactive: stdout, stderr and the exit code. */
async function exec(id: string, cmd: string[], tty = false): Promise<{ out: string; err: string; code: number }> {
  const { Id } = await containers.execCreate(id, { Cmd: cmd, AttachStdout: true, AttachStderr: true, Tty: tty });
  const s = (await containers.execStart(Id, { Tty: tty })) as IoSession;
  const out = collect(s.stdout);
  const err = collect(s.stderr);
  assert.equal(await s.done, 'exited');
  const ins = await containers.execInspect(Id);
  return { out: out.text(), err: err.text(), code: ins.ExitCode as number };
}

before(async () => {
  // The test's main thread (and every runc/conmon it spawns) moves into a lab netns.
  execFileSync('ip', ['netns', 'add', LAB]);
  enterNetnsForThisThread(`/run/netns/${LAB}`);
  assert.notEqual(netnsInode('/proc/thread-self/ns/net'), rootNetns, 'left the root namespace');
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  execFileSync('bash', [join(repoRoot, 'scripts', 'build-images.sh'), join(work, 'images')], { stdio: 'ignore' });
  store = new EmbeddedStore(join(config.dataRoot, 'store'));
  images = new ImageStore({ config, store });
  await images.load(createReadStream(join(work, 'images', 'alpine.tar')));
  networks = new FakeNetworks(join(work, 'netns'));
  containers = new ContainerManager({ config, store, images, networks, events, pollMs: 300 });
  await containers.restore();
  containers.resumeRestarts();
});

after(async () => {
  for (const c of await containers.list({ all: true }))
    await containers.remove(c.Id, { force: true }).catch(() => undefined);
  await containers.close();
  await networks.close();
  await store.close();
  // Anything still mounted under our dirs (a failed test) goes too.
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mp = line.split(' ')[4];
    if (mp?.startsWith(work)) execFileSync('umount', ['-l', mp]);
  }
  rmSync(work, { recursive: true, force: true });
  execFileSync('ip', ['netns', 'del', LAB]);
});

test('run a busybox container with --network none: exec sees only lo and its hostname', async () => {
  const { Id } = await containers.create('none1', {
    Image: 'alpine',
    Cmd: ['sleep', '1000'],
    HostConfig: { NetworkMode: 'none' },
  });
  await containers.start('none1');
  const ins = await containers.inspect('none1');
  assert.equal(ins.State.Status, 'running');
  assert.ok(ins.State.Pid > 0);
  assert.equal(ins.Name, '/none1');
  assert.equal(ins.Config.Hostname, Id.slice(0, 12));

  const links = await exec(Id, ['ip', '-o', 'link']);
  assert.equal(links.code, 0);
  assert.match(links.out, /^1: lo: <LOOPBACK,UP,LOWER_UP>/);
  assert.equal(links.out.trim().split('\n').length, 1, 'only lo');
  assert.equal((await exec(Id, ['cat', '/etc/hostname'])).out.trim(), Id.slice(0, 12));
  assert.equal((await exec(Id, ['hostname'])).out.trim(), Id.slice(0, 12));

  // Separate stdout and stderr, and the exit code in exec inspect.
  const r = await exec(Id, ['sh', '-c', 'echo out; echo err >&2; exit 3']);
  assert.deepEqual(r, { out: 'out\n', err: 'err\n', code: 3 });
  // A command that does not exist: the runtime's error and 126/127, as docker exec shows.
  const missing = await exec(Id, ['nosuchcmd']);
  assert.ok(missing.code === 127 || missing.code === 126, `exit ${missing.code}`);
  assert.match(missing.err + missing.out, /nosuchcmd/);
  // With a TTY everything comes on stdout.
  const t = await exec(Id, ['sh', '-c', 'echo out; echo err >&2; tty'], true);
  assert.equal(t.code, 0);
  assert.match(t.out, /out\r\nerr\r\n\/dev\/pts\/\d+/);

  const list = await containers.list();
  const row = list.find((c) => c.Id === Id)!;
  assert.deepEqual(row.Names, ['/none1']);
  assert.match(row.Status, /^Up (Less than a second|\d+ seconds?)$/);
  assert.equal(row.State, 'running');
  assert.equal(row.Command, 'sleep 1000');
  assert.equal(row.HostConfig.NetworkMode, 'none');
  assert.ok(existsSync(ins.GraphDriver.Data!.MergedDir!));

  await containers.stop('none1', { timeout: 1 });
  const after1 = await containers.inspect('none1');
  assert.equal(after1.State.Status, 'exited');
  assert.equal(after1.State.ExitCode, 137, 'sleep as PID 1 ignores SIGTERM, so SIGKILL after 1 s');
  assert.equal(networks.sandboxes.has(Id), false, 'sandbox deleted at stop');
  assert.equal(
    readFileSync('/proc/self/mountinfo', 'utf8').includes(after1.GraphDriver.Data!.MergedDir!),
    false,
    'rootfs unmounted',
  );
  const row2 = (await containers.list({ all: true })).find((c) => c.Id === Id)!;
  assert.match(row2.Status, /^Exited \(137\) (Less than a second|\d+ seconds?) ago$/);
  assert.equal(
    (await containers.list()).some((c) => c.Id === Id),
    false,
  );
  const actions = seen.filter((e) => e.Actor.ID === Id).map((e) => e.Action);
  for (const a of ['create', 'start', 'exec_create', 'exec_start', 'kill', 'die', 'stop'])
    assert.ok(actions.includes(a), `event ${a}`);
  assert.equal(seen.find((e) => e.Actor.ID === Id && e.Action === 'start')!.Actor.Attributes.name, 'none1');
  assert.equal(seen.find((e) => e.Actor.ID === Id && e.Action === 'start')!.Actor.Attributes.image, 'alpine');
  await containers.remove('none1');
  await assert.rejects(containers.inspect('none1'), /No such container: none1/);
});

test('--network host joins the lab namespace (never the root one)', async () => {
  const { Id, Warnings } = await containers.create('hostnet', {
    Image: 'alpine',
    Cmd: ['sleep', '1000'],
    HostConfig: { NetworkMode: 'host', PortBindings: { '80/tcp': [{ HostPort: '8080' }] } },
  });
  assert.deepEqual(Warnings, ['Published ports are discarded when using host network mode']);
  await containers.start(Id);
  const ns = (await exec(Id, ['readlink', '/proc/self/ns/net'])).out.trim();
  assert.equal(ns, `net:[${netnsInode(`/run/netns/${LAB}`)}]`);
  assert.notEqual(ns, `net:[${rootNetns}]`);
  await assert.rejects(
    containers.connectNetwork(Id, 'none', {}),
    /container cannot be disconnected from host network or connected to host network/,
  );
  await containers.remove(Id, { force: true });
});

test('attach with pipes, detach with ctrl-p ctrl-q, reattach; logs with stream filters, tail, timestamps', async () => {
  const { Id } = await containers.create('echoer', {
    Image: 'alpine',
    OpenStdin: true,
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    Cmd: ['sh', '-c', 'while read l; do echo "got:$l"; echo "err:$l" >&2; done'],
    HostConfig: { NetworkMode: 'none' },
  });
  // Attach before start, as docker run does.
  const s1 = await containers.attach(Id, { stdin: true, stdout: true, stderr: true, logs: false, stream: true });
  const out1 = collect(s1.stdout);
  const err1 = collect(s1.stderr);
  await containers.start(Id);
  s1.stdin!.write('abc\n');
  await until(() => out1.text().includes('got:abc') && err1.text().includes('err:abc'), 5000, 'echo');
  s1.stdin!.write('\x10\x11');
  assert.equal(await s1.done, 'detached');
  assert.equal((await containers.inspect(Id)).State.Running, true, 'still running after detach');

  const s2 = await containers.attach(Id, {
    stdin: true,
    stdout: true,
    stderr: false,
    logs: false,
    stream: true,
    detachKeys: 'ctrl-x',
  });
  const out2 = collect(s2.stdout);
  s2.stdin!.write('second\n');
  await until(() => out2.text().includes('got:second'), 5000, 'echo 2');
  assert.equal(s2.stderr, null);
  s2.stdin!.write('\x18');
  assert.equal(await s2.done, 'detached');

  const lines = async (
    o: Partial<{ stdout: boolean; stderr: boolean; tail: string; timestamps: boolean }>,
  ): Promise<string[]> => {
    const got: string[] = [];
    for await (const e of containers.logs(Id, {
      follow: false,
      stdout: true,
      stderr: true,
      timestamps: false,
      tail: 'all',
      ...o,
    }))
      got.push(`${e.stream}:${e.data.toString()}`);
    return got;
  };
  assert.deepEqual(await lines({ stderr: false }), ['stdout:got:abc\n', 'stdout:got:second\n']);
  assert.deepEqual(await lines({ stdout: false }), ['stderr:err:abc\n', 'stderr:err:second\n']);
  assert.deepEqual(await lines({ tail: '1' }), ['stderr:err:second\n']);
  for await (const e of containers.logs(Id, {
    follow: false,
    stdout: true,
    stderr: false,
    timestamps: true,
    tail: '1',
  })) {
    assert.match(e.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+/);
  }
  await containers.kill(Id);
  const ins = await containers.inspect(Id);
  assert.equal(ins.State.ExitCode, 137);
  await containers.remove(Id);
});

test('logs -f follows until the container stops', async () => {
  const { Id } = await containers.create(undefined, {
    Image: 'alpine',
    Cmd: ['sh', '-c', 'i=0; while [ $i -lt 50 ]; do echo tick$i; i=$((i+1)); sleep 0.1; done'],
    HostConfig: { NetworkMode: 'none' },
  });
  const ins = await containers.inspect(Id);
  assert.match(ins.Name, /^\/[a-z]+_[a-z]+\d?$/, 'generated name');
  await containers.start(Id);
  const got: string[] = [];
  for await (const e of containers.logs(Id, {
    follow: true,
    stdout: true,
    stderr: true,
    timestamps: false,
    tail: 'all',
  })) {
    got.push(e.data.toString().trim());
  }
  assert.equal(got.length, 50);
  assert.equal(got[49], 'tick49');
  const w = await containers.wait(Id);
  assert.equal(w.StatusCode, 0);
  await containers.remove(Id);
});

test('exec -it with a TTY reads stdin; wait, AutoRemove, name conflicts, rm of a running container', async () => {
  const { Id } = await containers.create('tty1', {
    Image: 'alpine',
    Tty: true,
    OpenStdin: true,
    Cmd: ['/bin/sh'],
    HostConfig: { NetworkMode: 'none' },
  });
  await containers.start(Id);
  const e = await containers.execCreate(Id, {
    Cmd: ['/bin/sh'],
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    Tty: true,
  });
  const s = (await containers.execStart(e.Id, { Tty: true }))!;
  const out = collect(s.stdout);
  await s.resize(40, 100);
  s.stdin!.write('stty size; echo marker$((40+2)); exit 5\n');
  assert.equal(await s.done, 'exited');
  assert.match(out.text(), /40 100/);
  assert.match(out.text(), /marker42/);
  assert.equal((await containers.execInspect(e.Id)).ExitCode, 5);

  // docker attach to the TTY container: its shell answers, resize reaches the TTY, ctrl-p ctrl-q detaches.
  const a = await containers.attach(Id, { stdin: true, stdout: true, stderr: true, logs: false, stream: true });
  assert.equal(a.tty, true);
  const aout = collect(a.stdout);
  await a.resize(33, 77);
  a.stdin!.write('stty size; echo tty-$((6*7))\n');
  await until(() => /33 77/.test(aout.text()) && aout.text().includes('tty-42'), 5000, 'tty shell answer');
  a.stdin!.write('\x10\x11');
  assert.equal(await a.done, 'detached');
  assert.equal((await containers.inspect(Id)).State.Running, true);

  await assert.rejects(
    containers.create('tty1', { Image: 'alpine', HostConfig: { NetworkMode: 'none' } }),
    (err: Error & { status?: number }) =>
      err.status === 409 &&
      err.message ===
        `Conflict. The container name "/tty1" is already in use by container "${Id}". You have to remove (or rename) that container to be able to reuse that name.`,
  );
  await assert.rejects(
    containers.remove(Id),
    (err: Error & { status?: number }) =>
      err.status === 409 &&
      err.message ===
        `You cannot remove a running container ${Id}. Stop the container before attempting removal or force remove`,
  );
  await assert.rejects(containers.start(Id), (err: Error & { status?: number }) => err.status === 304);
  await containers.rename('tty1', 'tty2');
  assert.equal((await containers.inspect(Id)).Name, '/tty2');
  assert.ok(networks.calls.includes(`rename ${Id.slice(0, 12)} tty2`));
  await containers.remove('tty2', { force: true });

  const rm = await containers.create('autorm', {
    Image: 'alpine',
    Cmd: ['sh', '-c', 'exit 7'],
    HostConfig: { NetworkMode: 'none', AutoRemove: true },
  });
  const waiting = containers.wait(rm.Id, 'removed');
  await containers.start(rm.Id);
  assert.equal((await waiting).StatusCode, 7);
  await assert.rejects(containers.inspect('autorm'), /No such container/);
  await assert.rejects(containers.kill('nosuch'), /No such container: nosuch/);
});

test('a start that fails leaves the container created with State.Error and nothing behind', async () => {
  const { Id } = await containers.create('broken', {
    Image: 'alpine',
    Cmd: ['/nonexistent'],
    HostConfig: { NetworkMode: 'none' },
  });
  await assert.rejects(containers.start(Id), /nonexistent/);
  const ins = await containers.inspect(Id);
  assert.equal(ins.State.Status, 'created');
  assert.match(ins.State.Error, /nonexistent/);
  assert.equal(networks.sandboxes.has(Id), false);
  assert.equal(readFileSync('/proc/self/mountinfo', 'utf8').includes(join(config.dataRoot, 'containers', Id)), false);
  const runcList =
    JSON.parse(
      execFileSync('runc', ['--root', join(config.execRoot, 'runc'), 'list', '--format', 'json'], {
        encoding: 'utf8',
      }) || '[]',
    ) ?? [];
  assert.equal(
    runcList.some((c: { id: string }) => c.id === Id),
    false,
  );
  await containers.remove(Id);
});

test('a daemon restart adopts running containers and marks the ones that died as exited', async () => {
  const a = await containers.create('survivor', {
    Image: 'alpine',
    OpenStdin: true,
    Cmd: ['sh', '-c', 'while read l; do echo "re:$l"; done'],
    HostConfig: { NetworkMode: 'none' },
  });
  const b = await containers.create('victim', {
    Image: 'alpine',
    Cmd: ['sleep', '1000'],
    HostConfig: { NetworkMode: 'none' },
  });
  await containers.start(a.Id);
  await containers.start(b.Id);
  const victimPid = (await containers.inspect(b.Id)).State.Pid;
  // The daemon goes away (its monitors stay).
  await containers.close();
  process.kill(victimPid, 'SIGKILL');
  await until(() => existsSync(join(config.execRoot, 'exits', b.Id)), 5000, 'victim exit file');

  containers = new ContainerManager({ config, store, images, networks, events, pollMs: 300 });
  await containers.restore();
  containers.resumeRestarts();
  const sa = await containers.inspect(a.Id);
  assert.equal(sa.State.Status, 'running');
  const sb = await containers.inspect(b.Id);
  assert.equal(sb.State.Status, 'exited');
  assert.equal(sb.State.ExitCode, 137);
  assert.equal(networks.sandboxes.has(b.Id), false, 'dead one lost its sandbox');
  assert.equal(readFileSync('/proc/self/mountinfo', 'utf8').includes(join(config.dataRoot, 'containers', b.Id)), false);

  // The adopted one still answers on its attach socket, and its exit is noticed.
  const s = await containers.attach(a.Id, { stdin: true, stdout: true, stderr: true, logs: false, stream: true });
  const out = collect(s.stdout);
  s.stdin!.write('again\n');
  await until(() => out.text().includes('re:again'), 5000, 'reattached echo');
  s.close();
  assert.equal(await s.done, 'closed');
  await containers.stop(a.Id, { timeout: 2 });
  assert.equal((await containers.inspect(a.Id)).State.Status, 'exited');
  await containers.remove(a.Id);
  await containers.remove(b.Id);
});

test("network connect/disconnect of stopped containers is recorded, with Docker's refusals", async () => {
  const { Id } = await containers.create('netrec', { Image: 'alpine', HostConfig: { NetworkMode: 'cvrtnet1' } });
  let ins = await containers.inspect(Id);
  assert.deepEqual(Object.keys(ins.NetworkSettings.Networks), ['cvrtnet1']);
  assert.equal(ins.NetworkSettings.Networks.cvrtnet1!.NetworkID, 'c1'.repeat(32));
  assert.equal(ins.NetworkSettings.Networks.cvrtnet1!.IPAddress, '');
  await containers.connectNetwork('netrec', 'cvrtnet2', { Aliases: ['db'] });
  ins = await containers.inspect(Id);
  assert.deepEqual(Object.keys(ins.NetworkSettings.Networks).sort(), ['cvrtnet1', 'cvrtnet2']);
  assert.deepEqual(ins.NetworkSettings.Networks.cvrtnet2!.Aliases, ['db']);
  await assert.rejects(
    containers.connectNetwork('netrec', 'cvrtnet2', {}),
    (e: Error & { status?: number }) =>
      e.status === 403 && e.message === 'endpoint with name netrec already exists in network cvrtnet2',
  );
  await assert.rejects(containers.connectNetwork('netrec', 'nosuchnet', {}), /network nosuchnet not found/);
  await assert.rejects(
    containers.connectNetwork('netrec', 'host', {}),
    /container cannot be disconnected from host network or connected to host network/,
  );
  await containers.disconnectNetwork('netrec', 'cvrtnet2', false);
  await assert.rejects(
    containers.disconnectNetwork('netrec', 'cvrtnet2', false),
    (e: Error) => e.message === `container ${Id} is not connected to network cvrtnet2`,
  );
  assert.deepEqual(Object.keys((await containers.inspect(Id)).NetworkSettings.Networks), ['cvrtnet1']);
  assert.deepEqual(
    (await containers.list({ all: true, filters: { network: ['cvrtnet1'] } })).map((c) => c.Id),
    [Id],
  );
  assert.deepEqual(
    (await containers.list({ all: true, filters: { network: ['cvrtnet2'] } })).map((c) => c.Id),
    [],
  );

  const none = await containers.create('netnone', { Image: 'alpine', HostConfig: { NetworkMode: 'none' } });
  await assert.rejects(
    containers.connectNetwork(none.Id, 'cvrtnet1', {}),
    /container sharing network namespace with another container or host cannot be connected to any other network/,
  );
  await assert.rejects(
    containers.create('bad', { Image: 'alpine', HostConfig: { NetworkMode: 'nosuchnet' } }),
    /network nosuchnet not found/,
  );
  await assert.rejects(containers.create('bad', { Image: 'nosuchimage' }), /No such image: nosuchimage/);
  assert.deepEqual(
    (await containers.list({ all: true, filters: { name: ['netrec'] } })).map((c) => c.Names[0]),
    ['/netrec'],
  );
  assert.equal((await containers.list({ all: true, filters: { status: ['created'] } })).length, 2);
  await assert.rejects(containers.list({ filters: { status: ['sleepy'] } }), /Invalid filter 'status=sleepy'/);
  await assert.rejects(containers.list({ filters: { color: ['red'] } }), /Invalid filter 'color'/);
  await containers.remove(Id);
  await containers.remove(none.Id);
});

test('restart policy on-failure brings a failing container back until the retry limit', async () => {
  const { Id } = await containers.create('flaky', {
    Image: 'alpine',
    Cmd: ['sh', '-c', 'exit 3'],
    HostConfig: { NetworkMode: 'none', RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 2 } },
  });
  await containers.start(Id);
  await until(
    async () => (await containers.inspect(Id)).RestartCount === 2 && !(await containers.inspect(Id)).State.Running,
    15_000,
    'two restarts',
  );
  await new Promise((r) => setTimeout(r, 1000));
  const ins = await containers.inspect(Id);
  assert.equal(ins.RestartCount, 2);
  assert.equal(ins.State.ExitCode, 3);
  assert.equal(ins.State.Status, 'exited');
  await containers.remove(Id);
});
