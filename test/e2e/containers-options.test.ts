/**
 * Container options everyday clients pass, through the real docker CLI and
 * the API, checked from inside the container: `--group-add` (names resolved
 * in the image's /etc/group, numbers as given; also for exec), `--mac-address`
 * (on the container's interface, in inspect, and it talks), `--init` (tini as
 * PID 1 as Docker's docker-init: it forwards `docker stop`'s SIGTERM, so the
 * container ends by it, not by SIGKILL), `--runtime` (runc, in inspect;
 * unknown names refused). --device-cgroup-rule is in containers-resources.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Lab } from '../lab/lab.js';
import { api, clientLab, docker, dockerOk, dockerPresent, teardown, DOCKER_BIN } from './clients-helpers.js';

const skip = dockerPresent()
  ? false
  : `the docker CLI is not installed (${DOCKER_BIN} is missing); these tests need it`;

let lab: Lab | undefined;
before(async () => {
  if (!skip) lab = await clientLab('cove-t-op');
});
after(async () => {
  await teardown(lab);
});

function L(): Lab {
  assert.ok(lab, 'lab not started');
  return lab;
}

test(
  "--group-add: names from the image's /etc/group and numbers, for the container and its execs",
  { skip },
  async () => {
    assert.equal(
      await dockerOk(L(), [
        'run',
        '--rm',
        '--network',
        'none',
        '--group-add',
        'daemon',
        '--group-add',
        '4321',
        'alpine',
        'id',
        '-G',
      ]),
      '0 1 4321',
    );
    assert.equal(
      await dockerOk(L(), [
        'run',
        '--rm',
        '--network',
        'none',
        '-u',
        'nobody',
        '--group-add',
        'nogroup',
        'alpine',
        'id',
        '-G',
      ]),
      '65534',
    );
    await dockerOk(L(), [
      'run',
      '-d',
      '--name',
      'ga',
      '--network',
      'none',
      '--group-add',
      'daemon',
      'alpine',
      'sleep',
      '300',
    ]);
    assert.equal(await dockerOk(L(), ['exec', 'ga', 'id', '-G']), '0 1');
    assert.deepEqual((await api(L(), 'GET', '/containers/ga/json')).json().HostConfig.GroupAdd, ['daemon']);
    await dockerOk(L(), ['rm', '-f', 'ga']);
    // A group the image does not have: Docker's words; the container does not run.
    const bad = await docker(L(), [
      'run',
      '--name',
      'gabad',
      '--network',
      'none',
      '--group-add',
      'wheelz',
      'alpine',
      'true',
    ]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /unable to find group wheelz: no matching entries in group file/);
    assert.equal(await dockerOk(L(), ['inspect', '-f', '{{.State.Running}}', 'gabad']), 'false');
    await dockerOk(L(), ['rm', 'gabad']);
  },
);

test("--mac-address: the container's interface has it, inspect shows it, and it is reachable", { skip }, async () => {
  const mac = '02:42:ac:11:99:01';
  await dockerOk(L(), ['run', '-d', '--name', 'mac1', '--mac-address', mac, 'alpine', 'sleep', '300']);
  assert.equal(await dockerOk(L(), ['exec', 'mac1', 'cat', '/sys/class/net/eth0/address']), mac);
  const ins = (await api(L(), 'GET', '/containers/mac1/json')).json();
  assert.equal(ins.NetworkSettings.Networks.bridge.MacAddress, mac);
  const ip = ins.NetworkSettings.Networks.bridge.IPAddress as string;
  // A neighbour reaches it and learns that MAC for its address.
  const seen = await dockerOk(L(), [
    'run',
    '--rm',
    'alpine',
    'sh',
    '-c',
    `ping -c 1 -W 5 ${ip} >/dev/null && cat /proc/net/arp`,
  ]);
  assert.match(seen, new RegExp(`${ip.replace(/\./g, '\\.')}\\s+\\S+\\s+\\S+\\s+${mac}`));
  // On a user-defined network, and through the API as an endpoint setting.
  await dockerOk(L(), ['network', 'create', 'macnet']);
  const mac2 = '02:42:0a:00:00:42';
  await dockerOk(L(), [
    'run',
    '-d',
    '--name',
    'mac2',
    '--network',
    'macnet',
    '--mac-address',
    mac2,
    'alpine',
    'sleep',
    '300',
  ]);
  assert.equal(await dockerOk(L(), ['exec', 'mac2', 'cat', '/sys/class/net/eth0/address']), mac2);
  assert.equal(await dockerOk(L(), ['inspect', '-f', '{{.NetworkSettings.Networks.macnet.MacAddress}}', 'mac2']), mac2);
  // An old client's Config.MacAddress lands on the NetworkMode's endpoint.
  const old = await api(L(), 'POST', '/v1.43/containers/create?name=mac3', {
    Image: 'alpine',
    Cmd: ['sleep', '300'],
    MacAddress: '02:42:ac:11:99:03',
  });
  assert.equal(old.status, 201, old.text);
  await dockerOk(L(), ['start', 'mac3']);
  assert.equal(await dockerOk(L(), ['exec', 'mac3', 'cat', '/sys/class/net/eth0/address']), '02:42:ac:11:99:03');
  const bad = await docker(L(), ['run', '--rm', '--mac-address', '02:42:zz:00:00:01', 'alpine', 'true']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /not a valid mac address|invalid MAC address/i);
  await dockerOk(L(), ['rm', '-f', 'mac1', 'mac2', 'mac3']);
  await dockerOk(L(), ['network', 'rm', 'macnet']);
});

test(
  "--init: docker-init (tini) is PID 1, forwards docker stop's SIGTERM and stays out of docker diff",
  { skip },
  async () => {
    const ps = await dockerOk(L(), ['run', '--rm', '--network', 'none', '--init', 'alpine', 'ps', '-o', 'pid,args']);
    assert.match(ps, /^\s*1\s+\/sbin\/docker-init -- ps -o pid,args$/m, ps);
    await dockerOk(L(), ['run', '-d', '--name', 'in1', '--network', 'none', '--init', 'alpine', 'sleep', '300']);
    assert.equal(await dockerOk(L(), ['inspect', '-f', '{{.HostConfig.Init}}', 'in1']), 'true');
    const top = await dockerOk(L(), ['top', 'in1']);
    assert.match(top, /docker-init -- sleep 300/);
    assert.ok(
      !(await dockerOk(L(), ['diff', 'in1'])).includes('docker-init'),
      'the init binary mountpoint is no change of the container',
    );
    // sleep as PID 1 ignores SIGTERM (no handler): without an init only SIGKILL after the timeout ends it (137);
    // with tini the SIGTERM reaches sleep (143).
    await dockerOk(L(), ['stop', '-t', '20', 'in1']);
    assert.equal(await dockerOk(L(), ['inspect', '-f', '{{.State.ExitCode}}', 'in1']), '143');
    await dockerOk(L(), ['run', '-d', '--name', 'in0', '--network', 'none', 'alpine', 'sleep', '300']);
    await dockerOk(L(), ['stop', '-t', '2', 'in0']);
    assert.equal(await dockerOk(L(), ['inspect', '-f', '{{.State.ExitCode}}', 'in0']), '137');
    // Zombies are reaped: an orphaned child that exits is gone, not <defunct>.
    const reaped = await dockerOk(L(), [
      'run',
      '--rm',
      '--network',
      'none',
      '--init',
      'alpine',
      'sh',
      '-c',
      '(sh -c "sleep 1 &" ); sleep 2; ps -o stat,args | grep -c "^Z" || true',
    ]);
    assert.equal(reaped, '0');
    await dockerOk(L(), ['rm', 'in1', 'in0']);
  },
);

test('--runtime: runc in inspect; an unknown runtime is refused at create', { skip }, async () => {
  await dockerOk(L(), ['create', '--name', 'rt1', '--network', 'none', 'alpine', 'true']);
  await dockerOk(L(), ['create', '--name', 'rt2', '--runtime', 'runc', '--network', 'none', 'alpine', 'true']);
  for (const n of ['rt1', 'rt2'])
    assert.equal(await dockerOk(L(), ['inspect', '-f', '{{.HostConfig.Runtime}}', n]), 'runc');
  const bad = await docker(L(), ['create', '--name', 'rt3', '--runtime', 'kata', 'alpine', 'true']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /unknown or invalid runtime name: kata/);
  assert.notEqual((await docker(L(), ['inspect', 'rt3'])).code, 0, 'nothing made');
  await dockerOk(L(), ['rm', 'rt1', 'rt2']);
});
