/**
 * Options of `network create` for the bridge driver, checked the way a user
 * would: through the cove CLI, from inside containers and with `ip link` on
 * the host. Subnet, gateway and MTU; --ip; --ip-range with an aux address;
 * --internal; IPv6; enable_icc=false; a named bridge; labels, ls filters and
 * prune; several subnets on one network; many concurrent `run`s on one
 * network. Then bad input: Docker's wording, a non-zero exit, and nothing
 * changed (the network list and the host's links are the same as before).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { INTERNET_IP, type Lab, type RunResult } from '../lab/lab.js';
import { labWithImages, reaches, pings, ipOf, hostLinks } from './seed-helpers.js';

let lab: Lab;
before(async () => {
  lab = await labWithImages('cove-t-opt');
});
after(async () => {
  await lab?.destroy();
});

async function networkIds(): Promise<string[]> {
  return (await lab.coveOk(['network', 'ls', '-q', '--no-trunc'])).split('\n').filter(Boolean).sort();
}

/** Runs a command that must fail with `wording`; the networks and the host's links stay as they were. */
async function refused(args: string[], wording: RegExp): Promise<RunResult> {
  const netsBefore = await networkIds();
  const linksBefore = (await hostLinks(lab)).sort();
  const r = await lab.cove(args);
  assert.notEqual(r.code, 0, `cove ${args.join(' ')} should fail`);
  assert.match(r.stderr, wording, `cove ${args.join(' ')}`);
  assert.deepEqual(await networkIds(), netsBefore, `cove ${args.join(' ')} changed the network list`);
  assert.deepEqual((await hostLinks(lab)).sort(), linksBefore, `cove ${args.join(' ')} left a link behind`);
  return r;
}

async function inspectNet(name: string): Promise<any> {
  return JSON.parse(await lab.coveOk(['network', 'inspect', name]))[0];
}

test('bridge network options', async (t) => {
  await t.test('--subnet, --gateway and the mtu option: the container sees them', async () => {
    await lab.coveOk([
      'network',
      'create',
      '--subnet',
      '10.11.0.0/16',
      '--gateway',
      '10.11.0.2',
      '--opt',
      'com.docker.network.driver.mtu=1200',
      'net-opts',
    ]);
    await lab.coveOk(['run', '-dit', '--name', 'o1', '--network', 'net-opts', 'alpine', 'ash']);
    assert.equal(await ipOf(lab, 'o1', 'net-opts'), '10.11.0.1', 'the first free address, the gateway holds .2');
    assert.match(await lab.coveOk(['exec', 'o1', 'ip', 'link', 'show', 'eth0']), /\bmtu 1200\b/);
    assert.match(await lab.coveOk(['exec', 'o1', 'ip', 'route']), /^default via 10\.11\.0\.2 dev eth0/m);
    const net = await inspectNet('net-opts');
    assert.equal(net.IPAM.Config[0].Gateway, '10.11.0.2');
    assert.equal(net.Options['com.docker.network.driver.mtu'], '1200');
  });

  await t.test('--ip picks the address; another container reaches it', async () => {
    await lab.coveOk(['run', '-dit', '--name', 'o2', '--network', 'net-opts', '--ip', '10.11.0.50', 'alpine', 'ash']);
    assert.equal(await ipOf(lab, 'o2', 'net-opts'), '10.11.0.50');
    assert.match(await lab.coveOk(['exec', 'o2', 'ip', '-o', '-4', 'addr', 'show', 'eth0']), /inet 10\.11\.0\.50\/16/);
    assert.ok(await reaches(lab, 'o1', '10.11.0.50'));
    assert.ok(await reaches(lab, 'o2', 'o1'));
  });

  await t.test('--ip already in use: Address already in use, the container does not run', async () => {
    const linksBefore = (await hostLinks(lab)).sort();
    const r = await lab.cove([
      'run',
      '-dit',
      '--name',
      'o3',
      '--network',
      'net-opts',
      '--ip',
      '10.11.0.50',
      'alpine',
      'ash',
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Address already in use/);
    const state = await lab.cove(['inspect', '-f', '{{.State.Running}}', 'o3']);
    if (state.code === 0) assert.equal(state.stdout.trim(), 'false');
    assert.deepEqual((await hostLinks(lab)).sort(), linksBefore, 'no veth left behind');
    assert.equal(await ipOf(lab, 'o2', 'net-opts'), '10.11.0.50', 'the owner keeps its address');
    await lab.cove(['rm', '-f', 'o3']);
  });

  await t.test('--ip on the default bridge is refused', async () => {
    const r = await lab.cove(['run', '-dit', '--name', 'o4', '--ip', '172.17.0.50', 'alpine', 'ash']);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /user specified IP address is supported on user defined networks only/);
    await lab.cove(['rm', '-f', 'o4']);
  });

  await t.test('--ip-range with an --aux-address: the first container gets 10.12.5.2', async () => {
    await lab.coveOk([
      'network',
      'create',
      '--subnet',
      '10.12.0.0/16',
      '--ip-range',
      '10.12.5.0/24',
      '--aux-address',
      'host1=10.12.5.1',
      'net-range',
    ]);
    await lab.coveOk(['run', '-dit', '--name', 'r1', '--network', 'net-range', 'alpine', 'ash']);
    assert.equal(await ipOf(lab, 'r1', 'net-range'), '10.12.5.2');
    assert.match(await lab.coveOk(['exec', 'r1', 'ip', '-o', '-4', 'addr', 'show', 'eth0']), /inet 10\.12\.5\.2\/16/);
    const cfg = (await inspectNet('net-range')).IPAM.Config[0];
    assert.equal(cfg.IPRange, '10.12.5.0/24');
    assert.deepEqual(cfg.AuxiliaryAddresses, { host1: '10.12.5.1' });
  });

  await t.test('--internal: members talk, nothing leaves, nothing outside gets in', async () => {
    await lab.coveOk(['network', 'create', '--internal', 'net-int']);
    await lab.coveOk(['run', '-dit', '--name', 'i1', '--network', 'net-int', 'alpine', 'ash']);
    await lab.coveOk(['run', '-dit', '--name', 'i2', '--network', 'net-int', 'alpine', 'ash']);
    await lab.coveOk(['run', '-dit', '--name', 'outside', 'alpine', 'ash']);
    assert.ok(await reaches(lab, 'i1', 'i2'), 'i1 -> i2 by name');
    assert.ok(await reaches(lab, 'i2', 'i1'), 'i2 -> i1 by name');
    if (lab.online) {
      assert.equal(await pings(lab, 'i1', INTERNET_IP), false, 'the internet stand-in by address');
      assert.equal(await pings(lab, 'i1', 'google.com'), false, 'the internet stand-in by name');
      assert.ok(
        await reaches(lab, 'outside', INTERNET_IP),
        'a container on the default bridge still reaches it (control)',
      );
    }
    const i1 = await ipOf(lab, 'i1', 'net-int');
    assert.equal(await pings(lab, 'outside', i1), false, 'outside -> internal member');
    assert.equal((await inspectNet('net-int')).Internal, true);
  });

  await t.test('--ipv6 with a v6 subnet: ping6 between containers and AAAA by name', async () => {
    await lab.coveOk(['network', 'create', '--ipv6', '--subnet', 'fd00:db8:1::/64', 'net-v6']);
    await lab.coveOk(['run', '-dit', '--name', 'v61', '--network', 'net-v6', 'alpine', 'ash']);
    await lab.coveOk(['run', '-dit', '--name', 'v62', '--network', 'net-v6', 'alpine', 'ash']);
    const v62 = await lab.coveOk([
      'inspect',
      '-f',
      '{{(index .NetworkSettings.Networks "net-v6").GlobalIPv6Address}}',
      'v62',
    ]);
    assert.match(v62, /^fd00:db8:1::/);
    assert.match(
      await lab.coveOk(['exec', 'v62', 'ip', '-o', '-6', 'addr', 'show', 'eth0']),
      new RegExp(`inet6 ${v62}/64`),
    );
    const ping6 = async () => (await lab.cove(['exec', 'v61', 'ping6', '-c', '1', '-W', '2', v62])).code === 0;
    assert.ok((await ping6()) || (await ping6()), 'ping6 v61 -> v62');
    const aaaa = await lab.coveOk(['exec', 'v61', 'nslookup', '-type=AAAA', 'v62']);
    assert.ok(aaaa.includes(v62), aaaa);
  });

  await t.test('enable_icc=false: members cannot ping each other, names still resolve', async () => {
    await lab.coveOk(['network', 'create', '-o', 'com.docker.network.bridge.enable_icc=false', 'net-noicc']);
    await lab.coveOk(['run', '-dit', '--name', 'n1', '--network', 'net-noicc', 'alpine', 'ash']);
    await lab.coveOk(['run', '-dit', '--name', 'n2', '--network', 'net-noicc', 'alpine', 'ash']);
    const n2 = await ipOf(lab, 'n2', 'net-noicc');
    const look = await lab.coveOk(['exec', 'n1', 'nslookup', 'n2']);
    assert.ok(look.includes(n2), look);
    assert.equal(await pings(lab, 'n1', n2), false, 'n1 -> n2 by address');
    assert.equal(await pings(lab, 'n2', 'n1'), false, 'n2 -> n1 by name');
  });

  await t.test('com.docker.network.bridge.name names the bridge on the host', async () => {
    await lab.coveOk(['network', 'create', '-o', 'com.docker.network.bridge.name=br-custom', 'net-named']);
    assert.ok((await hostLinks(lab)).includes('br-custom'), 'ip link shows br-custom');
    await lab.coveOk(['network', 'rm', 'net-named']);
    assert.ok(!(await hostLinks(lab)).includes('br-custom'), 'br-custom is gone with the network');
  });

  await t.test('several subnets (v4 and v6) on one network', async () => {
    await lab.coveOk([
      'network',
      'create',
      '--ipv6',
      '--subnet',
      '10.20.0.0/24',
      '--subnet',
      'fd00:20::/64',
      'net-dual',
    ]);
    const cfg = (await inspectNet('net-dual')).IPAM.Config.map((c: { Subnet: string }) => c.Subnet).sort();
    assert.deepEqual(cfg, ['10.20.0.0/24', 'fd00:20::/64']);
    await lab.coveOk(['run', '-dit', '--name', 'd1', '--network', 'net-dual', 'alpine', 'ash']);
    const addrs = await lab.coveOk(['exec', 'd1', 'ip', '-o', 'addr', 'show', 'eth0']);
    assert.match(addrs, /inet 10\.20\.0\.\d+\/24/);
    assert.match(addrs, /inet6 fd00:20::[0-9a-f:]+\/64/);
  });

  await t.test('20 concurrent runs on one network get 20 distinct addresses', async () => {
    await lab.coveOk(['network', 'create', '--subnet', '10.30.0.0/24', 'net-conc']);
    const names = Array.from({ length: 20 }, (_, i) => `c${i}`);
    const runs = await Promise.all(
      names.map((n) =>
        lab.cove(['run', '-d', '--name', n, '--network', 'net-conc', 'alpine', 'sleep', '600'], { timeoutMs: 300_000 }),
      ),
    );
    runs.forEach((r, i) => assert.equal(r.code, 0, `run c${i}: ${r.stderr}`));
    const ips = await Promise.all(names.map((n) => ipOf(lab, n, 'net-conc')));
    for (const ip of ips) assert.match(ip, /^10\.30\.0\.\d+$/);
    assert.equal(new Set(ips).size, 20, `distinct: ${ips.join(' ')}`);
    const members = Object.keys((await inspectNet('net-conc')).Containers);
    assert.equal(members.length, 20);
    await lab.coveOk(['rm', '-f', ...names], { timeoutMs: 300_000 });
  });

  await t.test('racing creates: one name, one overlapping subnet: exactly one wins', async () => {
    const byName = await Promise.all(Array.from({ length: 5 }, () => lab.cove(['network', 'create', 'net-race'])));
    assert.equal(byName.filter((r) => r.code === 0).length, 1);
    for (const r of byName.filter((x) => x.code !== 0))
      assert.match(r.stderr, /network with name net-race already exists/);
    const bySubnet = await Promise.all(
      Array.from({ length: 4 }, (_, i) => lab.cove(['network', 'create', '--subnet', '10.70.0.0/24', `net-race${i}`])),
    );
    assert.equal(bySubnet.filter((r) => r.code === 0).length, 1);
    for (const r of bySubnet.filter((x) => x.code !== 0))
      assert.match(r.stderr, /Pool overlaps with other one on this address space/);
    const names = (await lab.coveOk(['network', 'ls', '--format', '{{.Name}}']))
      .split('\n')
      .filter((n) => n.startsWith('net-race'));
    assert.equal(names.length, 2);
    await lab.coveOk(['network', 'rm', ...names]);
  });

  await t.test('labels, ls filters, -q, and prune removes unused networks only', async () => {
    const blue = await lab.coveOk(['network', 'create', '--label', 'team=blue', 'net-blue']);
    const red = await lab.coveOk(['network', 'create', '--label', 'team=red', '--label', 'tier=db', 'net-red']);
    assert.deepEqual((await inspectNet('net-red')).Labels, { team: 'red', tier: 'db' });
    assert.equal(await lab.coveOk(['network', 'ls', '-q', '--no-trunc', '--filter', 'label=team=blue']), blue);
    const anyTeam = (await lab.coveOk(['network', 'ls', '-q', '--no-trunc', '--filter', 'label=team']))
      .split('\n')
      .sort();
    assert.deepEqual(anyTeam, [blue, red].sort());
    const quiet = (await lab.coveOk(['network', 'ls', '-q'])).split('\n');
    for (const id of quiet) assert.match(id, /^[0-9a-f]{12}$/);
    const bridges = await lab.coveOk([
      'network',
      'ls',
      '--filter',
      'driver=bridge',
      '--format',
      '{{.Name}} {{.Driver}}',
    ]);
    for (const line of bridges.split('\n')) assert.match(line, / bridge$/);
    assert.match(bridges, /^bridge bridge$/m);
    assert.match(bridges, /^net-blue bridge$/m);
    assert.doesNotMatch(bridges, /^(host|none) /m);

    // In use: net-opts (o1, o2), net-range, net-int, net-v6, net-noicc, net-dual. Unused: net-blue, net-red, net-conc.
    const pruned = await lab.coveOk(['network', 'prune', '-f']);
    assert.match(pruned, /^Deleted Networks:/);
    assert.deepEqual(pruned.split('\n').slice(1).filter(Boolean).sort(), ['net-blue', 'net-conc', 'net-red']);
    const left = (await lab.coveOk(['network', 'ls', '--format', '{{.Name}}'])).split('\n').sort();
    assert.deepEqual(left, [
      'bridge',
      'host',
      'net-dual',
      'net-int',
      'net-noicc',
      'net-opts',
      'net-range',
      'net-v6',
      'none',
    ]);
    assert.match(await lab.coveOk(['network', 'prune', '-f']), /^$/, 'a second prune has nothing to do');
  });

  await t.test("bad input: Docker's wording, non-zero exit, nothing changed", async () => {
    await refused(
      ['network', 'create', '--subnet', '10.11.0.0/24', 'net-overlap'],
      /Pool overlaps with other one on this address space/,
    );
    await refused(
      ['network', 'create', '--subnet', '10.13.0.0/16', '--gateway', '10.14.0.1', 'net-gw'],
      /no matching subnet for gateway 10\.14\.0\.1/,
    );
    await refused(
      ['network', 'create', '--subnet', '10.13.0.0/24', '--gateway', '10.13.0.0', 'net-gw'],
      /failed to allocate gateway \(10\.13\.0\.0\): Address already in use/,
    );
    await refused(
      ['network', 'create', '--subnet', '10.13.0.0/24', '--gateway', '10.13.0.255', 'net-gw'],
      /failed to allocate gateway \(10\.13\.0\.255\): Address already in use/,
    );
    await refused(
      ['network', 'create', '--ipv6', 'net-v6-nosubnet'],
      /could not find an available, non-overlapping IPv6 address pool among the defaults to assign to the network/,
    );
    await refused(
      ['network', 'create', '--subnet', '10.13.0.0/33', 'net-cidr'],
      /invalid CIDR address: 10\.13\.0\.0\/33/,
    );
    await refused(['network', 'create', '--subnet', 'banana', 'net-cidr'], /invalid CIDR address: banana/);
    await refused(['network', 'create', 'net-opts'], /network with name net-opts already exists/);
    for (const predefined of ['bridge', 'host', 'none']) {
      await refused(
        ['network', 'rm', predefined],
        new RegExp(`${predefined} is a pre-defined network and cannot be removed`),
      );
    }
    await refused(['network', 'create', '-d', 'macvlan', 'net-mv'], /operation not supported/);
    await refused(
      ['network', 'create', '-d', 'macvlan', '-o', 'parent=uplink0.10', 'net-mv'],
      /failed to create uplink0\.10 vlan link: operation not supported/,
    );
    await refused(
      ['network', 'create', '-d', 'ipvlan', '-o', 'parent=uplink0', 'net-ipv'],
      /ipvlan is not supported by this kernel: \S/,
    );
    await refused(['network', 'create', '-d', 'nosuchdriver', 'net-nope'], /plugin "nosuchdriver" not found/);
  });

  await t.test('the kernel really lacks ipvlan (so the error above is the truth)', async () => {
    const r = await lab.sh('ip link add cove-t-ipv link uplink0 type ipvlan mode l2');
    if (r.code === 0) await lab.sh('ip link del cove-t-ipv');
    assert.notEqual(r.code, 0, 'this kernel made an ipvlan link: the driver should not refuse');
  });
});
