/**
 * The seed's "Manage a user-defined bridge": my-nginx created on my-net with
 * --publish 8080:80, reached from another machine, from the host itself
 * (including 127.0.0.1) and from containers (hairpin); connect and disconnect
 * of the running container; errors with Docker's wording; and nothing left in
 * the kernel once it is gone.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { LAB_IP, type Lab } from '../lab/lab.js';
import { labWithImages, hostLinks, nftRuleset, wget, ipOf } from './seed-helpers.js';

let lab: Lab;
before(async () => {
  lab = await labWithImages('cove-t-mbr');
});
after(async () => {
  await lab?.destroy();
});

async function eventually(fn: () => Promise<string | undefined>, tries = 30): Promise<string | undefined> {
  for (let i = 0; i < tries; i++) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  return undefined;
}

test('manage a user-defined bridge', async (t) => {
  // Offline the remote host hangs straight off the lab (its router link is in the lab's namespace): count it in.
  const remote = await lab.addRemoteHost('far', 1);
  const linksBefore = await hostLinks(lab);

  await t.test('1. create my-net', async () => {
    await lab.coveOk(['network', 'create', 'my-net']);
  });

  await t.test('3. create my-nginx on my-net publishing 8080:80; start it; the page is served everywhere', async () => {
    await lab.coveOk(['create', '--name', 'my-nginx', '--network', 'my-net', '--publish', '8080:80', 'nginx:latest']);
    await lab.coveOk(['start', 'my-nginx']);
    assert.equal(await lab.coveOk(['port', 'my-nginx']), '80/tcp -> 0.0.0.0:8080');
    // from another machine, through the host's address
    const far = await eventually(async () => {
      const r = await remote.sh(`timeout 5 busybox wget -q -O - http://${LAB_IP}:8080/`);
      return r.code === 0 ? r.stdout : undefined;
    });
    assert.match(far ?? '', /stand-in/i, 'reachable from a remote host');
    // from the host itself, by its address and by loopback
    assert.match((await wget(lab, `http://${LAB_IP}:8080/`)) ?? '', /stand-in/i);
    assert.match((await wget(lab, 'http://127.0.0.1:8080/')) ?? '', /stand-in/i);
    // from a container on the same network (hairpin through the host port) and by name
    await lab.coveOk(['run', '-dit', '--name', 'client', '--network', 'my-net', 'alpine', 'ash']);
    const hairpin = await lab.cove([
      'exec',
      'client',
      'timeout',
      '5',
      'wget',
      '-q',
      '-O',
      '-',
      `http://${LAB_IP}:8080/`,
    ]);
    assert.match(hairpin.stdout, /stand-in/i);
    const byName = await lab.cove(['exec', 'client', 'timeout', '5', 'wget', '-q', '-O', '-', 'http://my-nginx/']);
    assert.match(byName.stdout, /stand-in/i);
    // from a container on the default bridge, through the published port
    await lab.coveOk(['run', '-dit', '--name', 'outsider', 'alpine', 'ash']);
    const other = await lab.cove([
      'exec',
      'outsider',
      'timeout',
      '5',
      'wget',
      '-q',
      '-O',
      '-',
      `http://${LAB_IP}:8080/`,
    ]);
    assert.match(other.stdout, /stand-in/i);
    // the host port is held, so nothing else can take it
    assert.match((await lab.sh('netstat -tln | grep ":8080 "')).stdout, /LISTEN/);
    const taken = await lab.cove(['run', '-d', '--name', 'second', '-p', '8080:80', 'nginx']);
    assert.notEqual(taken.code, 0);
    assert.match(taken.stderr, /port is already allocated/);
    await lab.cove(['rm', '-f', 'second']);
  });

  await t.test('4. connect the running container to the default bridge', async () => {
    await lab.coveOk(['network', 'connect', 'bridge', 'my-nginx']);
    const ip = await ipOf(lab, 'my-nginx', 'bridge');
    assert.match(ip, /^172\.17\./);
    const page = await lab.cove(['exec', 'outsider', 'timeout', '5', 'wget', '-q', '-O', '-', `http://${ip}/`]);
    assert.match(page.stdout, /stand-in/i);
    const again = await lab.cove(['network', 'connect', 'bridge', 'my-nginx']);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /endpoint with name my-nginx already exists in network bridge/);
  });

  await t.test('5. disconnect it again', async () => {
    await lab.coveOk(['network', 'disconnect', 'bridge', 'my-nginx']);
    const links = await lab.coveOk(['exec', 'my-nginx', 'ip', '-o', 'link', 'show']);
    assert.doesNotMatch(links, /eth1/);
    const again = await lab.cove(['network', 'disconnect', 'bridge', 'my-nginx']);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /is not connected to network bridge/);
  });

  await t.test('disconnecting from my-net takes the published port away; connecting brings it back', async () => {
    await lab.coveOk(['network', 'disconnect', 'my-net', 'my-nginx']);
    assert.equal(await wget(lab, 'http://127.0.0.1:8080/'), undefined);
    await lab.coveOk(['network', 'connect', 'my-net', 'my-nginx']);
    assert.match((await eventually(() => wget(lab, 'http://127.0.0.1:8080/'))) ?? '', /stand-in/i);
  });

  await t.test('2. rm refuses while containers are attached, then removes my-net', async () => {
    const busy = await lab.cove(['network', 'rm', 'my-net']);
    assert.notEqual(busy.code, 0);
    assert.match(busy.stderr, /has active endpoints/);
    assert.match(await lab.coveOk(['network', 'ls']), /my-net/);
    const pre = await lab.cove(['network', 'rm', 'bridge']);
    assert.match(pre.stderr, /bridge is a pre-defined network and cannot be removed/);
    await lab.coveOk(['rm', '-f', 'my-nginx', 'client', 'outsider']);
    assert.equal(await wget(lab, 'http://127.0.0.1:8080/'), undefined, 'port gone with the container');
    await lab.coveOk(['network', 'rm', 'my-net']);
    assert.deepEqual((await hostLinks(lab)).sort(), linksBefore.sort(), 'no link left behind');
    const rules = await nftRuleset(lab);
    assert.doesNotMatch(rules, /8080/, 'no port rule left behind');
    assert.doesNotMatch((await lab.sh('netstat -tln')).stdout, /:8080 /, 'port released');
  });
});
