/**
 * Sandboxes against the controller with fake drivers and a fake kernel:
 * container start on the default bridge, a user-defined network, host and
 * none; the files a container reads; NetworkSettings; connect/disconnect and
 * their errors; published ports; the embedded DNS's answers following every
 * change; undo on failure; restore after a restart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, existsSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import dnsPacket from 'dns-packet';
import { CoveError } from '../../src/common/errors.js';
import type { NetworkController } from '../../src/network/controller.js';
import { harness, cid } from './fakes/controller-setup.js';

async function rejects(p: Promise<unknown>, status: number, message: string | RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof CoveError, `not a CoveError: ${String(e)}`);
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    assert.equal(e.status, status, `status for "${e.message}"`);
    return true;
  });
}

/** Asks the sandbox's embedded DNS (bound on 127.0.0.1 by the fake kernel) for a name; returns the A records or the rcode. */
async function lookup(
  ctl: NetworkController,
  sandboxId: string,
  name: string,
  type: 'A' | 'AAAA' | 'PTR' = 'A',
): Promise<string[] | string> {
  const addr = ctl.dnsServer?.addressOf(sandboxId);
  if (!addr) return 'no dns';
  const s = createSocket('udp4');
  const msg = dnsPacket.encode({
    type: 'query',
    id: 99,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name }],
  });
  const reply = await new Promise<Buffer>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('dns timeout')), 4000);
    s.on('message', (m) => {
      clearTimeout(timer);
      resolve(m);
    });
    s.send(msg, addr.udp.port, '127.0.0.1');
  });
  s.close();
  const p = dnsPacket.decode(reply) as unknown as { rcode: string; answers: Array<{ data: string }> };
  return p.rcode === 'NOERROR' ? p.answers.map((a) => a.data) : p.rcode;
}

test('docker run --network alpine-net: netns, eth0 172.18.0.2/16, files, NetworkSettings', async (t) => {
  const h = await harness(t);
  const { Id: netId } = await h.ctl.createNetwork({ Name: 'alpine-net' });
  const spec = h.spec(cid(1), 'alpine1', {
    networkMode: 'alpine-net',
    endpoints: [{ network: 'alpine-net', aliases: ['db'] }],
  });
  const sb = await h.ctl.createSandbox(spec);
  assert.match(sb.id, /^[0-9a-f]{64}$/);
  assert.equal(sb.netnsPath, `${h.config.execRoot}/netns/${sb.id.slice(0, 12)}`);
  assert.ok(h.kernel.netns.has(sb.netnsPath!));
  assert.equal(readFileSync(sb.resolvConfPath, 'utf8'), 'nameserver 127.0.0.11\nsearch lab.example\noptions ndots:0\n');
  assert.match(
    readFileSync(sb.hostsPath, 'utf8'),
    /^127\.0\.0\.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n/,
  );
  assert.match(readFileSync(sb.hostsPath, 'utf8'), /\n172\.18\.0\.2\t010101010101\n$/);
  assert.equal(readFileSync(sb.hostnamePath, 'utf8'), '010101010101\n');
  const join = [...h.bridge.joined.values()][0]!;
  assert.deepEqual(
    [join.ifName, join.defaultGateway, join.netnsPath, join.endpoint.ipv4, join.endpoint.mac],
    ['eth0', true, sb.netnsPath, '172.18.0.2/16', '02:42:ac:12:00:02'],
  );
  const ns = (await h.ctl.networkSettings(cid(1)))!;
  assert.equal(ns.SandboxID, sb.id);
  assert.equal(ns.SandboxKey, sb.netnsPath);
  assert.deepEqual(
    [ns.IPAddress, ns.IPPrefixLen, ns.Gateway, ns.MacAddress],
    ['172.18.0.2', 16, '172.18.0.1', '02:42:ac:12:00:02'],
  );
  const ep = ns.Networks['alpine-net']!;
  assert.deepEqual(
    { ...ep, EndpointID: 'x' },
    {
      IPAMConfig: null,
      Links: null,
      Aliases: ['db'],
      MacAddress: '02:42:ac:12:00:02',
      DriverOpts: null,
      GwPriority: 0,
      NetworkID: netId,
      EndpointID: 'x',
      Gateway: '172.18.0.1',
      IPAddress: '172.18.0.2',
      IPPrefixLen: 16,
      IPv6Gateway: '',
      GlobalIPv6Address: '',
      GlobalIPv6PrefixLen: 0,
      DNSNames: ['alpine1', '010101010101', 'db'],
    },
  );
  assert.equal(ns.EndpointID, ep.EndpointID);
  const inspect = await h.ctl.inspectNetwork('alpine-net');
  assert.deepEqual(inspect.Containers[cid(1)], {
    Name: 'alpine1',
    EndpointID: ep.EndpointID,
    MacAddress: '02:42:ac:12:00:02',
    IPv4Address: '172.18.0.2/16',
    IPv6Address: '',
  });
  assert.ok(
    h.seen.some((e) => e.Action === 'connect' && e.Actor.ID === netId && e.Actor.Attributes.container === cid(1)),
  );
});

test("default bridge: 172.17.0.2, the daemon's --dns in resolv.conf, no embedded DNS, no --ip", async (t) => {
  const h = await harness(t);
  const sb = await h.ctl.createSandbox(h.spec(cid(1), 'alpine3'));
  assert.equal(
    readFileSync(sb.resolvConfPath, 'utf8'),
    '# no usable nameserver: the configured DNS servers are loopback addresses of the daemon, unreachable from this container\nsearch lab.example\noptions timeout:2\n',
  );
  const ns = (await h.ctl.networkSettings(cid(1)))!;
  assert.deepEqual([ns.IPAddress, ns.Gateway, ns.Networks.bridge!.DNSNames], ['172.17.0.2', '172.17.0.1', null]);
  assert.equal(h.ctl.dnsServer?.addressOf(sb.id), undefined, 'no DNS sockets on the default bridge');
  await rejects(
    h.ctl.createSandbox(h.spec(cid(2), 'fixed', { endpoints: [{ network: 'bridge', ipv4Address: '172.17.0.50' }] })),
    400,
    'user specified IP address is supported on user defined networks only',
  );
  await rejects(
    h.ctl.createSandbox(h.spec(cid(3), 'aliased', { endpoints: [{ network: 'bridge', aliases: ['x'] }] })),
    400,
    'network-scoped alias is supported only for containers in user defined networks',
  );
});

test('the daemon --dns is written for the default bridge when it is a plain address', async (t) => {
  const h = await harness(t, { dns: ['10.99.0.1'] });
  const sb = await h.ctl.createSandbox(h.spec(cid(1), 'a'));
  assert.equal(
    readFileSync(sb.resolvConfPath, 'utf8'),
    'nameserver 10.99.0.1\nsearch lab.example\noptions timeout:2\n',
  );
  const sb2 = await h.ctl.createSandbox(
    h.spec(cid(2), 'b', { dns: ['10.1.1.1'], dnsSearch: ['corp'], dnsOptions: ['ndots:2'] }),
  );
  assert.equal(readFileSync(sb2.resolvConfPath, 'utf8'), 'nameserver 10.1.1.1\nsearch corp\noptions ndots:2\n');
});

test("--network host: no netns, the host's resolv.conf and hosts; ports discarded; listed in network inspect host", async (t) => {
  const h = await harness(t, { dns: undefined });
  const sb = await h.ctl.createSandbox(
    h.spec(cid(1), 'my_nginx', {
      networkMode: 'host',
      hostname: 'labhost',
      portBindings: [
        { containerPort: 80, containerPortEnd: 80, protocol: 'tcp', hostIp: '', hostPort: 9999, hostPortEnd: 9999 },
      ],
    }),
  );
  assert.equal(sb.netnsPath, null);
  assert.equal(readFileSync(sb.resolvConfPath, 'utf8'), readFileSync(`${h.dir}/resolv.conf`, 'utf8'));
  assert.equal(readFileSync(sb.hostsPath, 'utf8'), '127.0.0.1\tlocalhost\n10.99.0.1\tlabhost\n');
  assert.deepEqual(h.ctl.ports.list(), []);
  const inspect = await h.ctl.inspectNetwork('host');
  assert.deepEqual(inspect.Containers[cid(1)]!.IPv4Address, '');
  const ns = (await h.ctl.networkSettings(cid(1)))!;
  assert.equal(ns.SandboxKey, '');
  assert.deepEqual(Object.keys(ns.Networks), ['host']);
  await rejects(
    h.ctl.connect(cid(1), { network: 'bridge' }),
    400,
    'container sharing network namespace with another container or host cannot join any other network',
  );
});

test('--network none: a netns with only lo, no addresses; cannot connect elsewhere', async (t) => {
  const h = await harness(t);
  const sb = await h.ctl.createSandbox(h.spec(cid(1), 'no-net-alpine', { networkMode: 'none' }));
  assert.ok(sb.netnsPath && h.kernel.netns.has(sb.netnsPath));
  assert.deepEqual(h.bridge.joined.size, 0);
  const ns = (await h.ctl.networkSettings(cid(1)))!;
  assert.deepEqual([Object.keys(ns.Networks), ns.IPAddress], [['none'], '']);
  await rejects(
    h.ctl.connect(cid(1), { network: 'bridge' }),
    400,
    'container cannot be connected to multiple networks with one of the networks in private (none) mode',
  );
  await h.ctl.deleteSandbox(cid(1));
  assert.equal(h.kernel.netns.size, 0);
});

test('names resolve on user-defined networks only, and follow connect, disconnect, rename and removal at once', async (t) => {
  const h = await harness(t);
  await h.ctl.createNetwork({ Name: 'alpine-net' });
  const a1 = await h.ctl.createSandbox(h.spec(cid(1), 'alpine1', { networkMode: 'alpine-net' }));
  await h.ctl.createSandbox(h.spec(cid(2), 'alpine2', { networkMode: 'alpine-net' }));
  const a3 = await h.ctl.createSandbox(h.spec(cid(3), 'alpine3'));
  const a4 = await h.ctl.createSandbox(h.spec(cid(4), 'alpine4', { networkMode: 'alpine-net' }));
  await h.ctl.connect(cid(4), { network: 'bridge' });
  assert.deepEqual(await lookup(h.ctl, a1.id, 'alpine2'), ['172.18.0.3']);
  assert.deepEqual(await lookup(h.ctl, a1.id, 'alpine1'), ['172.18.0.2'], 'its own name');
  assert.deepEqual(await lookup(h.ctl, a1.id, cid(2).slice(0, 12)), ['172.18.0.3'], 'short ID');
  assert.equal(
    await lookup(h.ctl, a1.id, 'alpine3'),
    'SERVFAIL',
    'alpine3 is only on the default bridge: forwarded, upstream down',
  );
  assert.equal(await lookup(h.ctl, a3.id, 'alpine1'), 'no dns', 'no embedded DNS on the default bridge');
  assert.deepEqual(await lookup(h.ctl, a4.id, 'alpine1'), ['172.18.0.2']);
  const ns4 = (await h.ctl.networkSettings(cid(4)))!;
  assert.deepEqual(Object.keys(ns4.Networks).sort(), ['alpine-net', 'bridge']);
  assert.equal(ns4.Networks.bridge!.IPAddress, '172.17.0.3');
  assert.deepEqual(
    [...h.bridge.joined.values()]
      .filter((j) => j.netnsPath === a4.netnsPath)
      .map((j) => [j.ifName, j.defaultGateway])
      .sort(),
    [
      ['eth0', true],
      ['eth1', false],
    ],
  );
  // Connect alpine3 to alpine-net: it gets the embedded DNS, answers change at once, files rewritten in place.
  const inode = statSync(a3.hostsPath).ino;
  await h.ctl.connect(cid(3), { network: 'alpine-net', aliases: ['web'] });
  assert.equal(statSync(a3.hostsPath).ino, inode, 'hosts rewritten in place (bind-mounted)');
  assert.match(readFileSync(a3.hostsPath, 'utf8'), /172\.17\.0\.2\t\w+\n172\.18\.0\.5\t/);
  assert.equal(readFileSync(a3.resolvConfPath, 'utf8'), 'nameserver 127.0.0.11\nsearch lab.example\noptions ndots:0\n');
  assert.deepEqual(await lookup(h.ctl, a1.id, 'alpine3'), ['172.18.0.5']);
  assert.deepEqual(await lookup(h.ctl, a1.id, 'web'), ['172.18.0.5']);
  assert.deepEqual(await lookup(h.ctl, a3.id, 'alpine2'), ['172.18.0.3']);
  assert.deepEqual(await lookup(h.ctl, a1.id, '5.0.18.172.in-addr.arpa', 'PTR'), ['alpine3.alpine-net']);
  // Disconnect: gone at once.
  await h.ctl.disconnect(cid(3), 'alpine-net', false);
  assert.equal(await lookup(h.ctl, a1.id, 'alpine3'), 'SERVFAIL');
  assert.equal(await lookup(h.ctl, a3.id, 'alpine2'), 'no dns', 'its DNS sockets are closed');
  assert.match(
    readFileSync(a3.resolvConfPath, 'utf8'),
    /^# no usable nameserver.*\nsearch lab.example\noptions timeout:2\n$/,
  );
  // Rename and removal.
  await h.ctl.renameContainer(cid(2), 'renamed');
  assert.deepEqual(await lookup(h.ctl, a1.id, 'renamed'), ['172.18.0.3']);
  assert.equal(await lookup(h.ctl, a1.id, 'alpine2'), 'SERVFAIL');
  await h.ctl.deleteSandbox(cid(2));
  assert.equal(await lookup(h.ctl, a1.id, 'renamed'), 'SERVFAIL');
});

test("Docker's connect/disconnect errors", async (t) => {
  const h = await harness(t);
  await h.ctl.createNetwork({ Name: 'my-net' });
  await h.ctl.createNetwork({ Name: 'auto' });
  await h.ctl.createNetwork({ Name: 'fixed', IPAM: { Config: [{ Subnet: '10.11.0.0/16' }] } });
  await h.ctl.createSandbox(h.spec(cid(1), 'my-nginx', { networkMode: 'my-net' }));
  await rejects(
    h.ctl.connect(cid(1), { network: 'my-net' }),
    403,
    'endpoint with name my-nginx already exists in network my-net',
  );
  await rejects(
    h.ctl.disconnect(cid(1), 'bridge', false),
    403,
    `container ${cid(1)} is not connected to network bridge`,
  );
  await rejects(h.ctl.connect(cid(1), { network: 'nope' }), 404, 'network nope not found');
  await rejects(
    h.ctl.connect(cid(1), { network: 'host' }),
    400,
    'container cannot be disconnected from host network or connected to host network',
  );
  await rejects(
    h.ctl.connect(cid(1), { network: 'auto', ipv4Address: '172.19.0.9' }),
    400,
    'user specified IP address is supported only when connecting to networks with user configured subnets',
  );
  await rejects(
    h.ctl.connect(cid(1), { network: 'fixed', ipv4Address: '10.12.0.9' }),
    400,
    'invalid config for network fixed: invalid endpoint settings:\nno configured subnet or ip-range contain the IP address 10.12.0.9',
  );
  await h.ctl.connect(cid(1), { network: 'fixed', ipv4Address: '10.11.0.50' });
  assert.equal((await h.ctl.networkSettings(cid(1)))!.Networks.fixed!.IPAddress, '10.11.0.50');
  assert.deepEqual((await h.ctl.networkSettings(cid(1)))!.Networks.fixed!.IPAMConfig, { IPv4Address: '10.11.0.50' });
  await h.ctl.createSandbox(h.spec(cid(2), 'other', { networkMode: 'my-net' }));
  await rejects(h.ctl.connect(cid(2), { network: 'fixed', ipv4Address: '10.11.0.50' }), 403, 'Address already in use');
  await rejects(
    h.ctl.createSandbox(h.spec(cid(3), 'my-nginx', { networkMode: 'my-net' })),
    403,
    'endpoint with name my-nginx already exists in network my-net',
  );
  await rejects(h.ctl.connect(cid(9), { network: 'my-net' }), 409, `container ${cid(9)} is not running`);
  // The failed attempts left nothing: the third container's netns is gone.
  assert.equal(h.kernel.netns.size, 2);
});

test('a failing driver step undoes everything: no endpoint, address, netns or sandbox left', async (t) => {
  const h = await harness(t);
  await h.ctl.createNetwork({ Name: 'n' });
  for (const step of ['createEndpoint', 'join', 'programExternalConnectivity']) {
    h.bridge.failOnce = step;
    await assert.rejects(
      h.ctl.createSandbox(
        h.spec(cid(1), 'c', {
          networkMode: 'n',
          portBindings: [
            {
              containerPort: 80,
              containerPortEnd: 80,
              protocol: 'tcp',
              hostIp: '127.0.0.1',
              hostPort: 0,
              hostPortEnd: 0,
            },
          ],
        }),
      ),
      new RegExp(`fake ${step} failed`),
    );
    assert.equal(h.kernel.netns.size, 0, `netns left after ${step}`);
    assert.equal(h.bridge.joined.size + h.bridge.endpoints.size, 0, `driver objects left after ${step}`);
    assert.deepEqual(h.ctl.ports.list(), [], `port reservation left after ${step}`);
    assert.equal(await h.ctl.networkSettings(cid(1)), undefined);
    assert.deepEqual((await h.ctl.inspectNetwork('n')).Containers, {});
  }
  // Second network fails: the first one's endpoint is undone too.
  await h.ctl.createNetwork({ Name: 'm' });
  h.bridge.failOnce = 'createEndpoint';
  h.bridge.failSkip = 1;
  h.bridge.calls.length = 0;
  await assert.rejects(
    h.ctl.createSandbox(h.spec(cid(2), 'd', { networkMode: 'n', endpoints: [{ network: 'n' }, { network: 'm' }] })),
  );
  assert.ok(h.bridge.calls.includes('leave') && h.bridge.calls.includes('deleteEndpoint'));
  const sb = await h.ctl.createSandbox(h.spec(cid(3), 'e', { networkMode: 'n' }));
  assert.equal((await h.ctl.networkSettings(cid(3)))!.IPAddress, '172.18.0.2', 'addresses were given back');
  assert.ok(sb);
});

test("published ports: reserved by a listening socket, conflicts refused with Docker's words, -P, released on stop", async (t) => {
  const h = await harness(t);
  await h.ctl.createNetwork({ Name: 'my-net' });
  const pb = (hostPort: number, containerPort = 80) => ({
    containerPort,
    containerPortEnd: containerPort,
    protocol: 'tcp' as const,
    hostIp: '127.0.0.1',
    hostPort,
    hostPortEnd: hostPort,
  });
  await h.ctl.createSandbox(
    h.spec(cid(1), 'my-nginx', {
      networkMode: 'my-net',
      portBindings: [pb(42100)],
      exposedPorts: [
        { port: 80, protocol: 'tcp' },
        { port: 443, protocol: 'tcp' },
      ],
      publishAllPorts: true,
    }),
  );
  const ep = [...h.bridge.published.values()][0]!;
  assert.deepEqual(ep, [
    {
      proto: 'tcp',
      containerIp: '172.18.0.2',
      containerPort: 80,
      containerPortEnd: 80,
      hostIp: '127.0.0.1',
      hostPort: 42100,
      hostPortEnd: 42100,
    },
    {
      proto: 'tcp',
      containerIp: '172.18.0.2',
      containerPort: 443,
      containerPortEnd: 443,
      hostIp: '127.0.0.1',
      hostPort: 42101,
      hostPortEnd: 42101,
    },
  ]);
  // The daemon holds the port: a connect succeeds (someone listens).
  await new Promise<void>((resolve, reject) => {
    const c = connect(42100, '127.0.0.1', () => {
      c.destroy();
      resolve();
    });
    c.on('error', reject);
  });
  const ns = (await h.ctl.networkSettings(cid(1)))!;
  assert.deepEqual(ns.Ports, {
    '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '42100' }],
    '443/tcp': [{ HostIp: '127.0.0.1', HostPort: '42101' }],
  });
  await rejects(
    h.ctl.createSandbox(h.spec(cid(2), 'my-nginx2', { networkMode: 'my-net', portBindings: [pb(42100)] })),
    500,
    /^driver failed programming external connectivity on endpoint my-nginx2 \([0-9a-f]{64}\): Bind for 127\.0\.0\.1:42100 failed: port is already allocated$/,
  );
  await rejects(
    h.ctl.createSandbox(
      h.spec(cid(2), 'my-nginx2', { networkMode: 'my-net', portBindings: [{ ...pb(42101), hostIp: '' }] }),
    ),
    500,
    /Bind for 127\.0\.0\.1:42101 failed: port is already allocated$/,
  );
  // Disconnect drops the publish, connect brings it back on the same port.
  await h.ctl.disconnect(cid(1), 'my-net', false);
  assert.deepEqual(h.ctl.ports.list(), []);
  await h.ctl.connect(cid(1), { network: 'my-net' });
  assert.deepEqual(
    h.ctl.ports
      .list()
      .map((p) => p.port)
      .sort(),
    [42100, 42101],
  );
  await h.ctl.deleteSandbox(cid(1));
  assert.deepEqual(h.ctl.ports.list(), []);
  await rejects(
    h.ctl.createSandbox(
      h.spec(cid(3), 'bad', { networkMode: 'my-net', portBindings: [{ ...pb(80), containerPort: 0 }] }),
    ),
    400,
    /invalid port specification/,
  );
});

test('20 containers started in parallel on one network get 20 distinct addresses', async (t) => {
  const h = await harness(t);
  await h.ctl.createNetwork({ Name: 'n' });
  await Promise.all(
    Array.from({ length: 20 }, (_, i) => h.ctl.createSandbox(h.spec(cid(i + 1), `c${i}`, { networkMode: 'n' }))),
  );
  const ips = await Promise.all(
    Array.from({ length: 20 }, async (_, i) => (await h.ctl.networkSettings(cid(i + 1)))!.IPAddress),
  );
  assert.equal(new Set(ips).size, 20);
  await Promise.all(Array.from({ length: 20 }, (_, i) => h.ctl.deleteSandbox(cid(i + 1))));
  assert.deepEqual((await h.ctl.inspectNetwork('n')).Containers, {});
  assert.equal(h.kernel.netns.size, 0);
});

test('IPv6 network: the container gets both families, AAAA answers, the netns gets IPv6 enabled', async (t) => {
  const h = await harness(t);
  await h.ctl.createNetwork({ Name: 'v6net', EnableIPv6: true, IPAM: { Config: [{ Subnet: '2001:db8:1::/64' }] } });
  const s1 = await h.ctl.createSandbox(h.spec(cid(1), 'v61', { networkMode: 'v6net' }));
  await h.ctl.createSandbox(h.spec(cid(2), 'v62', { networkMode: 'v6net' }));
  const ns = (await h.ctl.networkSettings(cid(2)))!;
  assert.deepEqual(
    [ns.GlobalIPv6Address, ns.GlobalIPv6PrefixLen, ns.IPv6Gateway],
    ['2001:db8:1::3', 64, '2001:db8:1::1'],
  );
  assert.deepEqual(await lookup(h.ctl, s1.id, 'v62', 'AAAA'), ['2001:db8:1::3']);
  assert.deepEqual(await lookup(h.ctl, s1.id, 'v62', 'A'), ['172.18.0.3']);
});

test('restore after a restart: dead containers lose their sandbox, live ones get DNS and ports back', async (t) => {
  const h = await harness(t);
  await h.ctl.createNetwork({ Name: 'alpine-net' });
  const a1 = await h.ctl.createSandbox(
    h.spec(cid(1), 'alpine1', {
      networkMode: 'alpine-net',
      portBindings: [
        {
          containerPort: 80,
          containerPortEnd: 80,
          protocol: 'tcp',
          hostIp: '127.0.0.1',
          hostPort: 42105,
          hostPortEnd: 42105,
        },
      ],
    }),
  );
  const a2 = await h.ctl.createSandbox(h.spec(cid(2), 'alpine2', { networkMode: 'alpine-net' }));
  const ctl2 = await h.restart();
  assert.deepEqual(h.ctl.ports.list(), [], 'the old daemon let go of its sockets');
  await ctl2.restore(new Set([cid(1)]));
  assert.equal(await ctl2.networkSettings(cid(2)), undefined);
  assert.ok(!existsSync(a2.netnsPath!), "the dead container's netns is gone");
  assert.deepEqual(
    ctl2.ports.list().map((p) => p.port),
    [42105],
  );
  assert.deepEqual(await lookup(ctl2, a1.id, 'alpine1'), ['172.18.0.2']);
  assert.equal(await lookup(ctl2, a1.id, 'alpine2'), 'SERVFAIL');
  // alpine2's address is free again.
  await ctl2.createSandbox(h.spec(cid(3), 'alpine3', { networkMode: 'alpine-net' }));
  assert.equal((await ctl2.networkSettings(cid(3)))!.IPAddress, '172.18.0.3');
});

test('a container only on --internal networks resolves its neighbours but gets nothing forwarded outside', async (t) => {
  const h = await harness(t);
  await h.ctl.createNetwork({ Name: 'int-net', Internal: true });
  await h.ctl.createNetwork({ Name: 'open' });
  const a = await h.ctl.createSandbox(h.spec(cid(1), 'i1', { networkMode: 'int-net' }));
  await h.ctl.createSandbox(h.spec(cid(2), 'i2', { networkMode: 'int-net' }));
  assert.deepEqual(await lookup(h.ctl, a.id, 'i2'), ['172.18.0.3']);
  assert.deepEqual(h.ctl.resolver.upstreamOf(a.id), []);
  await h.ctl.connect(cid(1), { network: 'open' });
  assert.deepEqual(h.ctl.resolver.upstreamOf(a.id), ['127.0.0.1:9'], 'with a non-internal network it forwards again');
});

test('disconnecting the network of the default route moves the route and the published ports to the next network', async (t) => {
  const h = await harness(t);
  await h.ctl.createNetwork({ Name: 'front' });
  await h.ctl.createNetwork({ Name: 'back' });
  const sb = await h.ctl.createSandbox(
    h.spec(cid(1), 'app', {
      networkMode: 'front',
      endpoints: [{ network: 'front' }, { network: 'back' }],
      portBindings: [
        {
          containerPort: 80,
          containerPortEnd: 80,
          protocol: 'tcp',
          hostIp: '127.0.0.1',
          hostPort: 42107,
          hostPortEnd: 42107,
        },
      ],
    }),
  );
  await h.ctl.disconnect(cid(1), 'front', false);
  assert.deepEqual(h.kernel.routes, [{ path: sb.netnsPath, ifName: 'eth1', gateways: { v4: '172.19.0.1' } }]);
  const ns = (await h.ctl.networkSettings(cid(1)))!;
  assert.deepEqual(ns.Ports['80/tcp'], [{ HostIp: '127.0.0.1', HostPort: '42107' }]);
  assert.equal([...h.bridge.published.values()][0]![0]!.containerIp, '172.19.0.2');
});

test('--add-host name:host-gateway points at the default bridge gateway; extra hosts come before the own address', async (t) => {
  const h = await harness(t);
  const sb = await h.ctl.createSandbox(
    h.spec(cid(1), 'x', { extraHosts: ['host.docker.internal:host-gateway', 'db:10.0.0.5'] }),
  );
  assert.match(
    readFileSync(sb.hostsPath, 'utf8'),
    /\n172\.17\.0\.1\thost\.docker\.internal\n10\.0\.0\.5\tdb\n172\.17\.0\.2\t/,
  );
});
