/**
 * dockerode, the Node.js Docker client, drives Cove with nothing but the
 * socket path: it creates a network, runs two containers on it (one with an
 * alias), resolves one from the other by name and alias, reads the output
 * through exec and attach (docker's multiplexed framing, and raw with a TTY),
 * inspects, and cleans up. Once with unversioned paths (dockerode's default)
 * and once pinned to an older API version.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import Docker from 'dockerode';
import type { Lab } from '../lab/lab.js';
import { clientLab, teardown, sleep } from './clients-helpers.js';
import { checkSpec, describe, FORMAT } from './engine-spec.js';

let lab: Lab;
let docker: Docker;
before(async () => {
  lab = await clientLab('cove-t-cl2');
  docker = new Docker({ socketPath: lab.socket });
});
after(async () => {
  await teardown(lab);
});

/** Runs a command in a container through exec; stdout and stderr demultiplexed. */
async function execIn(c: Docker.Container, cmd: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const exec = await c.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  err.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  docker.modem.demuxStream(stream, out, err);
  await new Promise<void>((resolve) => stream.on('end', () => resolve()));
  const info = await exec.inspect();
  return { code: info.ExitCode ?? -1, stdout, stderr };
}

test('dockerode: a network, two containers on it, one resolves the other', async (t) => {
  let net: Docker.Network;
  let web: Docker.Container;
  let client: Docker.Container;

  await t.test('ping and version', async () => {
    assert.equal(String(await docker.ping()), 'OK');
    const v = await docker.version();
    assert.equal(v.ApiVersion, '1.51');
    assert.equal(describe(checkSpec(v, 'SystemVersion')), '');
  });

  await t.test('createNetwork with IPAM config and labels', async () => {
    net = await docker.createNetwork({
      Name: 'node-net',
      Driver: 'bridge',
      IPAM: { Driver: 'default', Config: [{ Subnet: '10.55.0.0/24', Gateway: '10.55.0.1' }] },
      Labels: { 'made-by': 'dockerode' },
    });
    assert.match(net.id, FORMAT.id64);
    const info = await net.inspect();
    assert.equal(describe(checkSpec(info, 'Network')), '');
    assert.equal(info.Name, 'node-net');
    assert.deepEqual(info.IPAM?.Config, [{ Subnet: '10.55.0.0/24', Gateway: '10.55.0.1' }]);
    assert.deepEqual(info.Labels, { 'made-by': 'dockerode' });
    const listed = await docker.listNetworks({ filters: { label: ['made-by=dockerode'] } });
    assert.deepEqual(
      listed.map((n) => n.Name),
      ['node-net'],
    );
  });

  await t.test('createContainer with NetworkingConfig (alias, fixed address) and start', async () => {
    web = await docker.createContainer({
      name: 'node-web',
      Image: 'nginx',
      HostConfig: { NetworkMode: 'node-net' },
      NetworkingConfig: {
        EndpointsConfig: { 'node-net': { Aliases: ['www'], IPAMConfig: { IPv4Address: '10.55.0.10' } } },
      },
    });
    client = await docker.createContainer({
      name: 'node-client',
      Image: 'alpine',
      Cmd: ['sleep', '600'],
      HostConfig: { NetworkMode: 'node-net' },
    });
    await web.start();
    await client.start();
    const w = await web.inspect();
    assert.equal(w.State.Running, true);
    assert.equal(w.NetworkSettings.Networks['node-net']!.IPAddress, '10.55.0.10');
    assert.ok(w.NetworkSettings.Networks['node-net']!.Aliases!.includes('www'));
    assert.equal(describe(checkSpec(w, 'ContainerInspectResponse')), '');
    const n = await net.inspect();
    assert.deepEqual(
      Object.values(n.Containers as Record<string, { Name: string }>)
        .map((c) => c.Name)
        .sort(),
      ['node-client', 'node-web'],
    );
    assert.equal(n.Containers?.[w.Id]?.IPv4Address, '10.55.0.10/24');
  });

  await t.test('the client resolves and reaches the server by name and by alias', async () => {
    const byName = await execIn(client, ['nslookup', 'node-web']);
    assert.equal(byName.code, 0, byName.stderr);
    assert.match(byName.stdout, /Address: 10\.55\.0\.10/);
    const byAlias = await execIn(client, ['ping', '-c', '1', '-W', '2', 'www']);
    assert.equal(byAlias.code, 0, byAlias.stdout + byAlias.stderr);
    assert.match(byAlias.stdout, /1 packets received/);
    let page = { code: 1, stdout: '', stderr: '' };
    for (let i = 0; i < 20 && page.code !== 0; i++) {
      page = await execIn(client, ['timeout', '5', 'wget', '-q', '-O', '-', 'http://www/']);
      if (page.code !== 0) await sleep(200);
    }
    assert.match(page.stdout, /Welcome to nginx/);
    const both = await execIn(client, ['sh', '-c', 'echo to-out; echo to-err >&2; exit 4']);
    assert.deepEqual(both, { code: 4, stdout: 'to-out\n', stderr: 'to-err\n' });
  });

  await t.test('listContainers with filters', async () => {
    const onNet = await docker.listContainers({ filters: { network: ['node-net'] } });
    assert.deepEqual(onNet.map((c) => c.Names[0]).sort(), ['/node-client', '/node-web']);
    for (const c of onNet) assert.equal(describe(checkSpec(c, 'ContainerSummary')), '');
    const byName = await docker.listContainers({ filters: { name: ['node-web'] } });
    assert.equal(byName.length, 1);
    assert.equal(byName[0]!.NetworkSettings.Networks['node-net']!.IPAddress, '10.55.0.10');
  });

  await t.test('attach to a non-TTY container: stdin in, multiplexed stdout out', async () => {
    const cat = await docker.createContainer({
      name: 'node-cat',
      Image: 'alpine',
      Cmd: ['cat'],
      OpenStdin: true,
      StdinOnce: true,
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      HostConfig: { NetworkMode: 'node-net' },
    });
    const stream = await cat.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true });
    const out = new PassThrough();
    let got = '';
    out.on('data', (d: Buffer) => {
      got += d.toString();
    });
    docker.modem.demuxStream(stream, out, new PassThrough());
    await cat.start();
    stream.write('hello through attach\n');
    stream.end();
    const res = await cat.wait();
    assert.equal(res.StatusCode, 0);
    for (let i = 0; i < 20 && !got; i++) await sleep(50);
    assert.equal(got, 'hello through attach\n');
    const logs = await cat.logs({ stdout: true, stderr: true, follow: false });
    assert.match(logs.toString(), /hello through attach/);
    await cat.remove();
  });

  await t.test('exec with a TTY: the stream is raw, not multiplexed', async () => {
    const exec = await client.exec({ Cmd: ['echo', 'raw'], AttachStdout: true, AttachStderr: true, Tty: true });
    const stream = await exec.start({ hijack: true, stdin: false, Tty: true });
    const chunks: Buffer[] = [];
    stream.on('data', (d: Buffer) => chunks.push(d));
    await new Promise<void>((resolve) => stream.on('end', () => resolve()));
    assert.equal(Buffer.concat(chunks).toString(), 'raw\r\n');
  });

  await t.test('disconnect, stop, remove; the network goes last', async () => {
    await net.disconnect({ Container: 'node-client' });
    assert.deepEqual(Object.keys((await client.inspect()).NetworkSettings.Networks), []);
    await client.stop({ t: 1 });
    await web.stop({ t: 1 });
    assert.equal((await web.inspect()).State.Status, 'exited');
    await client.remove();
    await web.remove();
    await net.remove();
    await assert.rejects(
      net.inspect(),
      (e: { statusCode?: number; json?: { message?: string } }) =>
        e.statusCode === 404 && /not found/.test(e.json?.message ?? ''),
    );
    await assert.rejects(web.inspect(), (e: { statusCode?: number }) => e.statusCode === 404);
    assert.deepEqual((await docker.listNetworks()).map((n) => n.Name).sort(), ['bridge', 'host', 'none']);
  });
});

test('dockerode pinned to API v1.41 (Docker 20.10) works the same', async () => {
  const old = new Docker({ socketPath: lab.socket, version: 'v1.41' });
  const net = await old.createNetwork({ Name: 'old-net' });
  const c = await old.createContainer({
    name: 'old-c',
    Image: 'alpine',
    Cmd: ['sleep', '600'],
    HostConfig: { NetworkMode: 'old-net' },
  });
  await c.start();
  const info = await c.inspect();
  assert.match(info.NetworkSettings.Networks['old-net']!.IPAddress, FORMAT.ipv4);
  await c.remove({ force: true });
  await net.remove();
  const tooNew = new Docker({ socketPath: lab.socket, version: 'v1.99' });
  await assert.rejects(
    tooNew.listNetworks(),
    (e: { statusCode?: number; json?: { message?: string } }) =>
      e.statusCode === 400 && /client version 1\.99 is too new/.test(e.json?.message ?? ''),
  );
});
