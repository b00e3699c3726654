/**
 * The engine's foundation, as a user meets it: run/exec/attach/logs/stop/rm
 * through the CLI, the seed's "Disable networking for a container" and
 * "Networking using the host network", bad input, and a daemon killed with
 * kill -9 whose containers keep running and are adopted again.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, type Lab } from '../lab/lab.js';
import { labWithImages, hostLinks, reaches, wget } from './seed-helpers.js';

let lab: Lab;
before(async () => {
  lab = await labWithImages('cove-t-eng');
});
after(async () => {
  await lab?.destroy();
});

function api(method: string, path: string, body?: string): Promise<{ status: number; json: { message?: string } }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath: lab.socket, method, path, headers: { 'Content-Type': 'application/json' } },
      (res) => {
        let data = '';
        res.on('data', (c) => (data += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: data ? JSON.parse(data) : {} }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

test('Disable networking: a --network none container has only lo and no route, and --rm removes it on stop', async () => {
  await lab.coveOk(['run', '--rm', '-dit', '--network', 'none', '--name', 'no-net-alpine', 'alpine:latest', 'ash']);
  const links = await lab.coveOk(['exec', 'no-net-alpine', 'ip', 'link', 'show']);
  assert.match(links, /^1: lo: /m);
  assert.doesNotMatch(links, /eth0/);
  assert.equal(await lab.coveOk(['exec', 'no-net-alpine', 'ip', 'route']), '');
  await lab.coveOk(['stop', '-t', '1', 'no-net-alpine']);
  for (let i = 0; i < 50 && (await lab.coveOk(['ps', '-aq', '--filter', 'name=no-net-alpine'])) !== ''; i++)
    await new Promise((r) => setTimeout(r, 100));
  assert.equal(await lab.coveOk(['ps', '-aq', '--filter', 'name=no-net-alpine']), '');
});

test("Host network: the nginx stand-in binds the host's port 80 and no interface is added", async () => {
  const before = await hostLinks(lab);
  await lab.coveOk(['run', '--rm', '-d', '--network', 'host', '--name', 'my_nginx', 'nginx']);
  let page: string | undefined;
  for (let i = 0; i < 50 && !page; i++) {
    page = await wget(lab, 'http://localhost:80/');
    if (!page) await new Promise((r) => setTimeout(r, 100));
  }
  assert.match(page ?? '', /stand-in/i);
  assert.deepEqual(await hostLinks(lab), before);
  const netstat = await lab.sh('netstat -tlnp | grep ":80 "');
  assert.match(netstat.stdout, /busybox|httpd/);
  await lab.coveOk(['container', 'stop', 'my_nginx']);
});

test('run, exec, attach and detach with CTRL-p CTRL-q, logs, stop, rm', async () => {
  await lab.coveOk(['run', '-dit', '--name', 'box', 'alpine', 'ash']);
  // attach, type a command, detach: the container keeps running.
  const att = await lab.attach('box', [{ send: 'echo hello-from-attach', until: /^hello-from-attach/m }]);
  assert.equal(att.code, 0, att.stderr);
  assert.match(att.stdout, /hello-from-attach/);
  assert.equal(await lab.coveOk(['inspect', '-f', '{{.State.Running}}', 'box']), 'true');
  assert.match(await lab.coveOk(['logs', 'box']), /hello-from-attach/);

  const ex = await lab.cove(['exec', 'box', 'sh', '-c', 'echo to-stdout; echo to-stderr >&2; exit 3']);
  assert.equal(ex.code, 3);
  assert.equal(ex.stdout.trim(), 'to-stdout');
  assert.equal(ex.stderr.trim(), 'to-stderr');
  assert.equal(
    await lab.coveOk(['exec', 'box', 'hostname']),
    (await lab.coveOk(['inspect', '-f', '{{.Id}}', 'box'])).slice(0, 12),
  );

  await lab.coveOk(['stop', '-t', '1', 'box']);
  assert.match(await lab.coveOk(['ps', '-a', '--filter', 'name=box', '--format', '{{.Status}}']), /^Exited \(\d+\)/);
  await lab.coveOk(['rm', 'box']);
  assert.equal(await lab.coveOk(['ps', '-aq', '--filter', 'name=box']), '');
});

test('run in the foreground prints the output and exits with the container exit code', async () => {
  const r = await lab.cove(['run', '--rm', 'alpine', 'sh', '-c', 'echo hi there; exit 7']);
  assert.equal(r.code, 7);
  assert.equal(r.stdout.trim(), 'hi there');
});

test('bad input gets a clear error and changes nothing', async () => {
  const psBefore = await lab.coveOk(['ps', '-aq']);
  const netnsDir = join(lab.execRoot, 'netns');
  const nsBefore = existsSync(netnsDir) ? readdirSync(netnsDir).length : 0;

  const noImage = await lab.cove(['run', '-d', 'nosuchimage']);
  assert.notEqual(noImage.code, 0);
  assert.match(noImage.stderr, /nosuchimage/);

  const noNet = await lab.cove(['run', '-d', '--network', 'nosuchnet', 'alpine', 'ash']);
  assert.equal(noNet.code, 125);
  assert.match(noNet.stderr, /network nosuchnet not found/);

  await lab.coveOk(['run', '-d', '--name', 'dup', 'alpine', 'sleep', '300']);
  const dup = await lab.cove(['run', '-d', '--name', 'dup', 'alpine', 'sleep', '300']);
  assert.equal(dup.code, 125);
  assert.match(dup.stderr, /The container name "\/dup" is already in use/);
  await lab.coveOk(['rm', '-f', 'dup']);

  const noCtr = await lab.cove(['stop', 'nosuch']);
  assert.notEqual(noCtr.code, 0);
  assert.match(noCtr.stderr, /No such container: nosuch/);

  const badFlag = await lab.cove(['run', '--no-such-flag', 'alpine']);
  assert.notEqual(badFlag.code, 0);

  const malformed = await api('POST', '/networks/create', '{"Name": ');
  assert.equal(malformed.status, 400);
  assert.ok(malformed.json.message);

  const missing = await api('GET', '/v1.51/containers/nosuch/json');
  assert.equal(missing.status, 404);
  assert.equal(missing.json.message, 'No such container: nosuch');

  assert.equal(await lab.coveOk(['ps', '-aq']), psBefore);
  assert.equal(existsSync(netnsDir) ? readdirSync(netnsDir).length : 0, nsBefore);
});

test('kill -9 of the daemon: containers keep running and networking, and are adopted at restart', async () => {
  await lab.coveOk(['network', 'create', 'survive-net']);
  await lab.coveOk(['run', '-d', '--name', 'survivor', '--network', 'survive-net', '-p', '8081:80', 'nginx']);
  await lab.coveOk(['run', '-dit', '--name', 'peer', '--network', 'survive-net', 'alpine', 'ash']);
  await lab.coveOk(['run', '-dit', '--name', 'old-bridge', 'alpine', 'ash']);
  const ip = await lab.coveOk([
    'inspect',
    '-f',
    '{{(index .NetworkSettings.Networks "survive-net").IPAddress}}',
    'survivor',
  ]);
  const bridgeIp = await lab.coveOk(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', 'old-bridge']);
  assert.ok(await reaches(lab, 'peer', 'survivor'));
  assert.match((await wget(lab, 'http://127.0.0.1:8081/')) ?? '', /stand-in/i);
  const pid = Number(await lab.coveOk(['inspect', '-f', '{{.State.Pid}}', 'survivor']));

  await lab.stopDaemon('SIGKILL');
  process.kill(pid, 0); // still alive without the daemon
  const linksWhileDown = await hostLinks(lab);
  await lab.startDaemon();

  const running = (await lab.coveOk(['ps', '--format', '{{.Names}}'])).split('\n').sort();
  assert.deepEqual(running, ['old-bridge', 'peer', 'survivor']);
  assert.equal(Number(await lab.coveOk(['inspect', '-f', '{{.State.Pid}}', 'survivor'])), pid);
  assert.equal(
    await lab.coveOk(['inspect', '-f', '{{(index .NetworkSettings.Networks "survive-net").IPAddress}}', 'survivor']),
    ip,
  );
  // Names, addresses and the published port all work again.
  assert.ok(await reaches(lab, 'peer', 'survivor'), 'name resolution after restart');
  assert.ok(await reaches(lab, 'peer', ip));
  assert.match((await wget(lab, 'http://127.0.0.1:8081/')) ?? '', /stand-in/i, 'published port after restart');
  assert.deepEqual((await hostLinks(lab)).sort(), linksWhileDown.sort(), 'restart neither adds nor drops links');
  // New containers get fresh addresses: the allocations survived the crash.
  await lab.coveOk(['run', '-dit', '--name', 'newcomer', 'alpine', 'ash']);
  assert.notEqual(await lab.coveOk(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', 'newcomer']), bridgeIp);
  assert.ok(await reaches(lab, 'newcomer', bridgeIp));
  await lab.coveOk(['rm', '-f', 'survivor', 'peer', 'old-bridge', 'newcomer']);
  await lab.coveOk(['network', 'rm', 'survive-net']);
  const netnsDir = join(lab.execRoot, 'netns');
  assert.equal(existsSync(netnsDir) ? readdirSync(netnsDir).length : 0, 0, 'no namespace left after rm');
});

test('images: import a rootfs tar, tag, list, run it, remove it; logs -f follows to the end', async () => {
  // A rootfs tar: the alpine image's single layer.
  const rootfs = join(lab.dir, 'rootfs.tar');
  const layer = (await lab.sh(`tar -tf ${REPO}/build/images/alpine.tar | grep layer.tar`)).stdout.trim();
  await lab.sh(`tar -xOf ${REPO}/build/images/alpine.tar ${layer} > ${rootfs}`);
  const id = await lab.coveOk(['image', 'import', '-c', 'CMD ["/bin/sh"]', rootfs, 'mybox:1.0']);
  assert.match(id, /^sha256:[0-9a-f]{64}$/);
  await lab.coveOk(['tag', 'mybox:1.0', 'mybox:latest']);
  const rows = await lab.coveOk(['images', '--format', '{{.Repository}}:{{.Tag}}']);
  assert.ok(rows.split('\n').includes('mybox:1.0') && rows.split('\n').includes('mybox:latest'), rows);
  assert.equal(await lab.coveOk(['run', '--rm', 'mybox', 'echo', 'imported']), 'imported');

  await lab.coveOk([
    'run',
    '-d',
    '--name',
    'counter',
    'mybox',
    'sh',
    '-c',
    'for i in 1 2 3; do echo line$i; sleep 0.2; done',
  ]);
  const follow = await lab.coveOk(['logs', '-f', 'counter'], { timeoutMs: 20_000 });
  assert.deepEqual(follow.split('\n'), ['line1', 'line2', 'line3']);
  assert.equal(await lab.coveOk(['logs', '--tail', '1', 'counter']), 'line3');
  assert.equal(await lab.coveOk(['wait', 'counter']), '0');

  // As in Docker: one of several tags just goes; the last reference of an image in use stays.
  const inUse = await lab.cove(['image', 'rm', 'mybox:1.0', 'mybox:latest']);
  assert.notEqual(inUse.code, 0, 'an image in use by a container is not removed');
  assert.match(inUse.stdout, /Untagged: mybox:1.0/);
  assert.match(
    inUse.stderr,
    /unable to remove repository reference "mybox:latest" \(must force\) - container [0-9a-f]{12} is using its referenced image/,
  );
  await lab.coveOk(['rm', 'counter']);
  await lab.coveOk(['image', 'rm', 'mybox:latest']);
  assert.doesNotMatch(await lab.coveOk(['images']), /mybox/);
  const gone = await lab.cove(['run', '--rm', 'mybox']);
  assert.notEqual(gone.code, 0);
});
