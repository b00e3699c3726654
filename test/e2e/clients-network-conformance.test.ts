/**
 * Where real clients look, Cove answers like Docker: legacy links on a
 * user-defined network (`run --link`, EndpointConfig.Links at create and at
 * `network connect`, the alias resolving inside the linking container only),
 * `--link-local-ip` (on the interface, in inspect), network names (anything
 * not empty), null where Docker sends null, and `network ls`/`inspect`
 * outputs, errors and exit codes. With the real docker CLI and with cove;
 * the checks that matter run inside the containers.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Lab, RunResult } from '../lab/lab.js';
import { api, clientLab, docker, dockerPresent, teardown, DOCKER_BIN } from './clients-helpers.js';
import { compareShapes, describe, referenceInspect } from './engine-spec.js';

const noDocker = dockerPresent() ? false : `the docker CLI is not installed (${DOCKER_BIN} is missing)`;

let lab: Lab | undefined;
before(async () => {
  lab = await clientLab('cove-t-nc');
});
after(async () => {
  await teardown(lab);
});

function L(): Lab {
  assert.ok(lab, 'lab not started');
  return lab;
}

type Cli = { name: string; run: (args: string[]) => Promise<RunResult> };
const clis = (): Cli[] => [
  ...(noDocker ? [] : [{ name: 'docker', run: (a: string[]) => docker(L(), a) }]),
  { name: 'cove', run: (a: string[]) => L().cove(a) },
];
async function ok(cli: Cli, args: string[]): Promise<string> {
  const r = await cli.run(args);
  assert.equal(r.code, 0, `${cli.name} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}
async function resolves(cli: Cli, from: string, name: string): Promise<boolean> {
  for (let i = 0; i < 2; i++)
    if ((await cli.run(['exec', from, 'ping', '-c', '1', '-W', '1', name])).code === 0) return true;
  return false;
}

test('run --link other:alias on a user-defined network: the alias resolves in the linking container only, inspect shows Links', async () => {
  for (const cli of clis()) {
    const p = cli.name;
    await ok(cli, ['network', 'create', `${p}-lnet`]);
    await ok(cli, ['run', '-dit', '--name', `${p}-web`, '--network', `${p}-lnet`, 'alpine', 'ash']);
    await ok(cli, [
      'run',
      '-dit',
      '--name',
      `${p}-app`,
      '--network',
      `${p}-lnet`,
      '--link',
      `${p}-web:db`,
      'alpine',
      'ash',
    ]);
    assert.ok(await resolves(cli, `${p}-app`, 'db'), `${p}: db resolves from the linking container`);
    const webIp = await ok(cli, [
      'inspect',
      '-f',
      `{{(index .NetworkSettings.Networks "${p}-lnet").IPAddress}}`,
      `${p}-web`,
    ]);
    const looked = await cli.run(['exec', `${p}-app`, 'nslookup', 'db', '127.0.0.11']);
    assert.match(looked.stdout, new RegExp(`Address: ${webIp.replace(/\./g, '\\.')}`), looked.stdout);
    assert.equal(await resolves(cli, `${p}-web`, 'db'), false, `${p}: the alias is not seen by other containers`);
    const ep = JSON.parse(
      await ok(cli, ['inspect', '-f', `{{json (index .NetworkSettings.Networks "${p}-lnet")}}`, `${p}-app`]),
    );
    assert.deepEqual(ep.Links, [`${p}-web:db`]);
    // Docker shows only legacy default-bridge links under HostConfig.Links.
    assert.equal(await ok(cli, ['inspect', '-f', '{{json .HostConfig.Links}}', `${p}-app`]), 'null');

    // network connect --link: a second network, the link given at connect.
    await ok(cli, ['network', 'create', `${p}-lnet2`]);
    await ok(cli, ['network', 'connect', `${p}-lnet2`, `${p}-web`]);
    await ok(cli, ['run', '-dit', '--name', `${p}-late`, 'alpine', 'ash']);
    await ok(cli, ['network', 'connect', '--link', `${p}-web:cache`, `${p}-lnet2`, `${p}-late`]);
    assert.ok(await resolves(cli, `${p}-late`, 'cache'), `${p}: cache resolves after network connect --link`);
    const late = JSON.parse(
      await ok(cli, ['inspect', '-f', `{{json (index .NetworkSettings.Networks "${p}-lnet2")}}`, `${p}-late`]),
    );
    assert.deepEqual(late.Links, [`${p}-web:cache`]);
    // The docker CLI refuses it itself (a flag error, 125); cove leaves it to the daemon, which says the same.
    const bad = await cli.run(['network', 'connect', '--link', 'a:b:c', `${p}-lnet`, `${p}-late`]);
    assert.equal(bad.code, p === 'docker' ? 125 : 1, bad.stderr);
    assert.match(bad.stderr, /bad format for links: a:b:c/);
    await ok(cli, ['rm', '-f', `${p}-web`, `${p}-app`, `${p}-late`]);
    await ok(cli, ['network', 'rm', `${p}-lnet`, `${p}-lnet2`]);
  }
});

test('EndpointConfig.Links at create through the API', async () => {
  await api(L(), 'POST', '/networks/create', { Name: 'api-lnet' });
  await L().coveOk(['run', '-dit', '--name', 'api-target', '--network', 'api-lnet', 'alpine', 'ash']);
  const c = await api(L(), 'POST', '/containers/create?name=api-linker', {
    Image: 'alpine',
    Cmd: ['sleep', '300'],
    HostConfig: { NetworkMode: 'api-lnet' },
    NetworkingConfig: { EndpointsConfig: { 'api-lnet': { Links: ['api-target:backend'] } } },
  });
  assert.equal(c.status, 201, c.text);
  assert.equal((await api(L(), 'POST', '/containers/api-linker/start')).status, 204);
  const r = await L().cove(['exec', 'api-linker', 'ping', '-c', '1', '-W', '1', 'backend']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const inspect = (await api(L(), 'GET', '/containers/api-linker/json')).json();
  assert.deepEqual(inspect.NetworkSettings.Networks['api-lnet'].Links, ['api-target:backend']);
  const bad = await api(L(), 'POST', '/containers/create', {
    Image: 'alpine',
    HostConfig: { NetworkMode: 'api-lnet' },
    NetworkingConfig: { EndpointsConfig: { 'api-lnet': { Links: [':x'] } } },
  });
  assert.equal(bad.status, 400);
  assert.equal(bad.json().message, 'bad format for links: :x');
  await L().coveOk(['rm', '-f', 'api-target', 'api-linker']);
  await L().coveOk(['network', 'rm', 'api-lnet']);
});

test("--link-local-ip: the address is on the container's interface and in inspect", async () => {
  for (const cli of clis()) {
    const p = cli.name;
    const ip = p === 'docker' ? '169.254.7.7' : '169.254.8.8';
    await ok(cli, ['network', 'create', `${p}-llnet`]);
    await ok(cli, [
      'run',
      '-dit',
      '--name',
      `${p}-ll`,
      '--network',
      `${p}-llnet`,
      '--link-local-ip',
      ip,
      'alpine',
      'ash',
    ]);
    const addr = await ok(cli, ['exec', `${p}-ll`, 'ip', '-4', 'addr', 'show', 'eth0']);
    assert.match(addr, new RegExp(`inet ${ip.replace(/\./g, '\\.')}/16 `), addr);
    const ep = JSON.parse(
      await ok(cli, ['inspect', '-f', `{{json (index .NetworkSettings.Networks "${p}-llnet")}}`, `${p}-ll`]),
    );
    assert.deepEqual(ep.IPAMConfig, { LinkLocalIPs: [ip] });
    // A second container on the network reaches it there.
    await ok(cli, [
      'run',
      '-dit',
      '--name',
      `${p}-ll2`,
      '--network',
      `${p}-llnet`,
      '--link-local-ip',
      ip.replace(/\d+$/, '9'),
      'alpine',
      'ash',
    ]);
    assert.equal((await cli.run(['exec', `${p}-ll2`, 'ping', '-c', '1', '-W', '2', ip])).code, 0, `${p}: ping ${ip}`);
    const bad = await cli.run([
      'run',
      '-d',
      '--network',
      `${p}-llnet`,
      '--link-local-ip',
      'nonsense',
      'alpine',
      'true',
    ]);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /invalid link-local IP address: nonsense/);
    await ok(cli, ['rm', '-f', `${p}-ll`, `${p}-ll2`]);
    await ok(cli, ['network', 'rm', `${p}-llnet`]);
  }
});

test('network names: anything not empty, spaces and colons included; only container names have a rule', async () => {
  for (const cli of clis()) {
    const name = `${cli.name} net: one`;
    const id = await ok(cli, ['network', 'create', name]);
    assert.match(id, /^[0-9a-f]{64}$/);
    const ls = await ok(cli, ['network', 'ls', '--format', '{{.Name}}']);
    assert.ok(ls.split('\n').includes(name), ls);
    const table = await ok(cli, ['network', 'ls', '--filter', `id=${id}`]);
    assert.match(table, new RegExp(`^${id.slice(0, 12)}\\s+${name}\\s+bridge\\s+local$`, 'm'));
    assert.equal(await ok(cli, ['network', 'inspect', '-f', '{{.Id}}', name]), id);
    // A container joins it by name and gets DNS there.
    await ok(cli, ['run', '-dit', '--name', `${cli.name}-spaced`, '--network', name, 'alpine', 'ash']);
    assert.ok(await resolves(cli, `${cli.name}-spaced`, `${cli.name}-spaced`));
    await ok(cli, ['rm', '-f', `${cli.name}-spaced`]);
    assert.equal(await ok(cli, ['network', 'rm', name]), name);
    const dup = await cli.run(['run', '-d', '--name', 'bad name', 'alpine', 'true']);
    assert.equal(dup.code, 125);
    assert.match(dup.stderr, /Invalid container name \(bad name\), only \[a-zA-Z0-9\]\[a-zA-Z0-9_.-\] are allowed/);
  }
  const empty = await api(L(), 'POST', '/networks/create', { Name: '' });
  assert.equal(empty.status, 400);
});

test('network ls and inspect: outputs, errors and exit codes as Docker', async () => {
  for (const cli of clis()) {
    const missing = await cli.run(['network', 'inspect', 'nosuch']);
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout.trim(), '[]');
    assert.match(missing.stderr, /^Error response from daemon: network nosuch not found$/m);
    const some = await cli.run(['network', 'inspect', '-f', '{{.Name}}', 'bridge', 'nosuch']);
    assert.equal(some.code, 1);
    assert.equal(some.stdout.trim(), 'bridge');
    assert.match(some.stderr, /network nosuch not found/);
    const rm = await cli.run(['network', 'rm', 'nosuch']);
    assert.equal(rm.code, 1);
    assert.match(rm.stderr, /^Error response from daemon: network nosuch not found$/m);
    const filter = await cli.run(['network', 'ls', '--filter', 'foo=bar']);
    assert.equal(filter.code, 1);
    assert.match(filter.stderr, /Error response from daemon: invalid filter 'foo'/);
    const type = await cli.run(['network', 'ls', '-f', 'type=bogus']);
    assert.equal(type.code, 1);
    assert.match(type.stderr, /Error response from daemon: invalid filter: 'type'='bogus'/);
    const pre = await cli.run(['network', 'rm', 'bridge']);
    assert.equal(pre.code, 1);
    assert.match(pre.stderr, /Error response from daemon: bridge is a pre-defined network and cannot be removed/);
    assert.equal(await ok(cli, ['network', 'ls', '-q', '--filter', 'name=^nothing-matches$']), '');
    assert.match(await ok(cli, ['network', 'ls']), /^NETWORK ID\s+NAME\s+DRIVER\s+SCOPE$/m);
  }
});

test("JSON shapes: null where Docker sends null, key by key against Docker's output", async () => {
  // Created through the API with no IPAM options, as compose and the SDKs do: Docker answers null.
  const created = await api(L(), 'POST', '/networks/create', { Name: 'shape-api' });
  assert.equal(created.status, 201, created.text);
  const n = (await api(L(), 'GET', '/networks/shape-api')).json();
  assert.equal(n.IPAM.Options, null);
  assert.deepEqual([n.Options, n.Labels, n.Containers], [{}, {}, {}]);
  // The docker CLI sends an empty map, which Docker shows as {} (its own output on this machine).
  if (!noDocker) {
    await ok(clis()[0]!, ['network', 'create', 'shape-cli']);
    const c = (await api(L(), 'GET', '/networks/shape-cli')).json();
    assert.deepEqual(c.IPAM.Options, {});
    const theirs = referenceInspect('t2-inspect-alpine-net.json')[0]!;
    assert.equal(
      describe(compareShapes(c, theirs, { mapKeys: ['Containers', 'Options', 'Labels'], added: ['EnableIPv4'] })),
      '',
    );
    await ok(clis()[0]!, ['network', 'rm', 'shape-cli']);
  }
  // The predefined bridge, against Docker's (IPAM.Options null there too).
  const bridge = (await api(L(), 'GET', '/networks/bridge')).json();
  const dockerBridge = referenceInspect('t1-inspect-bridge.json')[0]!;
  assert.equal(bridge.IPAM.Options, null);
  assert.equal(
    describe(
      compareShapes(
        { ...bridge, Containers: {} },
        { ...dockerBridge, Containers: {} },
        { mapKeys: ['Containers', 'Options', 'Labels'], added: ['EnableIPv4'] },
      ),
    ),
    '',
  );
  // list entries have the same keys as inspect, Containers empty (moby's list handler).
  const list = (await api(L(), 'GET', '/networks')).json() as Array<Record<string, unknown>>;
  const listed = list.find((x) => x.Name === 'shape-api')!;
  assert.deepEqual(Object.keys(listed).sort(), Object.keys(n).sort());
  assert.equal((listed.IPAM as { Options: unknown }).Options, null);
  assert.equal((await api(L(), 'DELETE', '/networks/shape-api')).status, 204);
});
