/**
 * The seed's "Use user-defined bridge networks": alpine1, alpine2 and alpine4
 * on alpine-net, alpine3 on the default bridge, alpine4 on both. Every cell of
 * the reachability matrix is checked from inside the containers, by name and
 * by address, in both directions, with Docker's expected outcome.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { skipOffline, type Lab } from '../lab/lab.js';
import { labWithImages, reaches, pings, ipOf, hostLinks, nftRuleset } from './seed-helpers.js';

let lab: Lab;
before(async () => {
  lab = await labWithImages('cove-t-ubr');
});
after(async () => {
  await lab?.destroy();
});

async function expectPing(from: string, target: string, ok: boolean, label: string): Promise<void> {
  const got = ok ? await reaches(lab, from, target) : await pings(lab, from, target);
  assert.equal(got, ok, `${from} -> ${label} (${target}) should ${ok ? 'succeed' : 'fail'}`);
}

test('the tutorial, step by step', async (t) => {
  const linksBefore = await hostLinks(lab);

  await t.test('1-2. create alpine-net; it is listed and has no containers', async () => {
    await lab.coveOk(['network', 'create', '--driver', 'bridge', 'alpine-net']);
    assert.match(await lab.coveOk(['network', 'ls']), /\balpine-net\s+bridge\s+local\b/);
    const net = JSON.parse(await lab.coveOk(['network', 'inspect', 'alpine-net']))[0];
    assert.equal(net.Driver, 'bridge');
    assert.equal(net.IPAM.Config[0].Subnet, '172.18.0.0/16');
    assert.equal(net.IPAM.Config[0].Gateway, '172.18.0.1');
    assert.deepEqual(net.Containers, {});
  });

  await t.test('3. four containers; alpine4 also joins the default bridge', async () => {
    await lab.coveOk(['run', '-dit', '--name', 'alpine1', '--network', 'alpine-net', 'alpine', 'ash']);
    await lab.coveOk(['run', '-dit', '--name', 'alpine2', '--network', 'alpine-net', 'alpine', 'ash']);
    await lab.coveOk(['run', '-dit', '--name', 'alpine3', 'alpine', 'ash']);
    await lab.coveOk(['run', '-dit', '--name', 'alpine4', '--network', 'alpine-net', 'alpine', 'ash']);
    await lab.coveOk(['network', 'connect', 'bridge', 'alpine4']);
    const ps = (await lab.coveOk(['container', 'ls', '--format', '{{.Names}}'])).split('\n').sort();
    assert.deepEqual(ps, ['alpine1', 'alpine2', 'alpine3', 'alpine4']);
  });

  await t.test(
    '4. inspect shows alpine3 and alpine4 on bridge, alpine1, alpine2 and alpine4 on alpine-net',
    async () => {
      const members = async (net: string): Promise<string[]> =>
        Object.values(
          JSON.parse(await lab.coveOk(['network', 'inspect', net]))[0].Containers as Record<string, { Name: string }>,
        )
          .map((c) => c.Name)
          .sort();
      assert.deepEqual(await members('bridge'), ['alpine3', 'alpine4']);
      assert.deepEqual(await members('alpine-net'), ['alpine1', 'alpine2', 'alpine4']);
      const links = await lab.coveOk(['exec', 'alpine4', 'ip', '-o', 'link', 'show']);
      assert.match(links, /eth0@/);
      assert.match(links, /eth1@/);
    },
  );

  const ip: Record<string, string> = {};
  await t.test('5. automatic service discovery on alpine-net: names resolve to their addresses', async () => {
    for (const c of ['alpine1', 'alpine2', 'alpine4']) ip[c] = await ipOf(lab, c, 'alpine-net');
    ip.alpine3 = await ipOf(lab, 'alpine3', 'bridge');
    ip.alpine4bridge = await ipOf(lab, 'alpine4', 'bridge');
    const look = await lab.coveOk(['exec', 'alpine1', 'nslookup', 'alpine2']);
    assert.match(look, /127\.0\.0\.11/);
    assert.ok(look.includes(ip.alpine2!), look);
    assert.match(await lab.coveOk(['exec', 'alpine1', 'cat', '/etc/resolv.conf']), /^nameserver 127\.0\.0\.11$/m);
  });

  await t.test('5-7. the reachability matrix, by name and by address', async () => {
    // from alpine1 (alpine-net only)
    await expectPing('alpine1', 'alpine2', true, 'alpine2 by name');
    await expectPing('alpine1', 'alpine4', true, 'alpine4 by name');
    await expectPing('alpine1', 'alpine1', true, 'itself by name');
    await expectPing('alpine1', ip.alpine2!, true, 'alpine2 by IP');
    await expectPing('alpine1', 'alpine3', false, 'alpine3 by name');
    await expectPing('alpine1', ip.alpine3!, false, 'alpine3 by IP');
    await expectPing('alpine1', ip.alpine4bridge!, false, "alpine4's bridge IP");
    // from alpine2, the same
    await expectPing('alpine2', 'alpine1', true, 'alpine1 by name');
    await expectPing('alpine2', ip.alpine4!, true, 'alpine4 by IP');
    await expectPing('alpine2', ip.alpine3!, false, 'alpine3 by IP');
    // from alpine3 (default bridge only): nothing on alpine-net, no names at all
    await expectPing('alpine3', 'alpine1', false, 'alpine1 by name');
    await expectPing('alpine3', ip.alpine1!, false, 'alpine1 by IP');
    await expectPing('alpine3', ip.alpine4!, false, "alpine4's alpine-net IP");
    await expectPing('alpine3', 'alpine4', false, 'alpine4 by name');
    await expectPing('alpine3', ip.alpine4bridge!, true, "alpine4's bridge IP");
    await expectPing('alpine3', ip.alpine3!, true, 'itself by IP');
    // from alpine4 (both): everything, alpine3 only by IP
    await expectPing('alpine4', 'alpine1', true, 'alpine1 by name');
    await expectPing('alpine4', 'alpine2', true, 'alpine2 by name');
    await expectPing('alpine4', 'alpine3', false, 'alpine3 by name');
    await expectPing('alpine4', ip.alpine3!, true, 'alpine3 by IP');
    await expectPing('alpine4', 'alpine4', true, 'itself by name');
  });

  await t.test('6. detaching from alpine1 with CTRL-p CTRL-q leaves it running', async () => {
    const att = await lab.attach('alpine1', [{ send: 'ping -c 2 alpine2', until: /packet loss/ }]);
    assert.match(att.stdout, /2 packets transmitted, 2 (packets )?received/);
    assert.equal(await lab.coveOk(['inspect', '-f', '{{.State.Status}}', 'alpine1']), 'running');
  });

  await t.test('8. every container reaches the internet stand-in', async (t8) => {
    if (skipOffline(t8, lab)) return;
    for (const c of ['alpine4', 'alpine3', 'alpine1'])
      assert.ok(await reaches(lab, c, 'google.com'), `${c} -> google.com`);
  });

  await t.test('9. stop and remove everything; nothing is left in the kernel', async () => {
    await lab.coveOk(['container', 'stop', '-t', '1', 'alpine1', 'alpine2', 'alpine3', 'alpine4']);
    await lab.coveOk(['container', 'rm', 'alpine1', 'alpine2', 'alpine3', 'alpine4']);
    await lab.coveOk(['network', 'rm', 'alpine-net']);
    assert.doesNotMatch(await lab.coveOk(['network', 'ls']), /alpine-net/);
    assert.deepEqual((await hostLinks(lab)).sort(), linksBefore.sort(), 'no link left behind');
    const rules = await nftRuleset(lab);
    assert.doesNotMatch(rules, /172\.18\./, 'no rule for alpine-net left behind');
  });
});
