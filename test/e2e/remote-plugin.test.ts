/**
 * Third-party network plugins, as a user meets them: a plugin process puts
 * its socket in the plugin directory, `cove network create -d myplugin` finds
 * it there, containers on its network get the interfaces it makes (moved into
 * their namespaces by the daemon), reach each other by address and by name,
 * and removing them hands everything back to the plugin. A plugin that says
 * "boom" or never answers makes `network create` fail clearly, leaving nothing.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, REPO } from '../lab/lab.js';
import { hostLinks, ipOf, reaches } from './seed-helpers.js';

const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), 'fixtures/net-plugin.js');

interface PluginCall {
  method: string;
  accept?: string;
  body: Record<string, any>;
  note?: Record<string, unknown>;
}

interface RunningPlugin {
  pid: number;
  calls(): PluginCall[];
  stop(): void;
}

let lab: Lab;
let pluginDir: string;
const plugins: ChildProcess[] = [];

/** A lab whose daemon looks for plugins in the lab's own plugin directory (2 s per plugin call). */
const daemonArgs = () => ['--plugin-dir', pluginDir, '--plugin-timeout', '2'];

async function labWithPluginDir(name: string): Promise<Lab> {
  const l = await Lab.create(name);
  try {
    pluginDir = join(l.dir, 'plugins');
    mkdirSync(pluginDir, { recursive: true });
    await l.startDaemon({ extraArgs: daemonArgs() });
    await l.coveOk(['load', '-q', '-i', join(REPO, 'build/images', 'alpine.tar')]);
  } catch (e) {
    await l.destroy();
    throw e;
  }
  return l;
}

/** Starts the test plugin inside the lab namespace (its links live there, next to the daemon's). */
async function startPlugin(
  name: string,
  mode: 'normal' | 'boom' | 'hang' | 'badjoin' = 'normal',
  sock = join(pluginDir, `${name}.sock`),
): Promise<RunningPlugin> {
  mkdirSync(dirname(sock), { recursive: true });
  const log = join(lab.dir, `${name}.calls`);
  const child = spawn('nsenter', [`--net=${lab.netnsPath}`, process.execPath, FIXTURE, sock, log, mode], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  plugins.push(child);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`plugin ${name} did not start`)), 10_000);
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`plugin ${name} exited ${code}`)));
  });
  return {
    pid: child.pid!,
    calls: () =>
      existsSync(log)
        ? readFileSync(log, 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l) as PluginCall)
        : [],
    stop: () => stopPlugin(child),
  };
}

function stopPlugin(child: ChildProcess): void {
  // nsenter execs node, so this PID is the plugin's own.
  if (child.pid && child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
}

before(async () => {
  lab = await labWithPluginDir('cove-t-plg');
});
after(async () => {
  for (const p of plugins) stopPlugin(p);
  await lab?.destroy();
});

test('a network plugin, from create to rm', async (t) => {
  const plugin = await startPlugin('myplugin');
  const linksBefore = await hostLinks(lab);
  const methods = () => plugin.calls().map((c) => c.method);

  let netId = '';
  await t.test('network create -d myplugin -o foo=bar pnet: the plugin is activated and sees the option', async () => {
    netId = await lab.coveOk(['network', 'create', '-d', 'myplugin', '-o', 'foo=bar', 'pnet']);
    const calls = plugin.calls();
    assert.deepEqual(
      calls.slice(0, 3).map((c) => c.method),
      ['Plugin.Activate', 'NetworkDriver.GetCapabilities', 'NetworkDriver.CreateNetwork'],
    );
    assert.equal(calls[0]!.accept, 'application/vnd.docker.plugins.v1.2+json');
    const create = calls[2]!.body;
    assert.equal(create.NetworkID, netId);
    assert.deepEqual(create.Options['com.docker.network.generic'], { foo: 'bar' });
    assert.equal(create.IPv4Data[0].Pool, '172.18.0.0/16');
    assert.equal(create.IPv4Data[0].Gateway, '172.18.0.1/16');
    // The plugin's bridge exists in the daemon's namespace.
    assert.ok((await hostLinks(lab)).includes(`pb${netId.slice(0, 10)}`));
  });

  await t.test('network ls and inspect show Driver myplugin', async () => {
    assert.match(await lab.coveOk(['network', 'ls']), /\bpnet\s+myplugin\s+local\b/);
    const net = JSON.parse(await lab.coveOk(['network', 'inspect', 'pnet']))[0];
    assert.equal(net.Driver, 'myplugin');
    assert.equal(net.Scope, 'local');
    assert.deepEqual(net.Options, { foo: 'bar' });
    assert.equal(net.IPAM.Config[0].Subnet, '172.18.0.0/16');
  });

  const ip: Record<string, string> = {};
  await t.test("two containers on pnet get the plugin's interface as eth0, with their addresses", async () => {
    await lab.coveOk(['run', '-dit', '--name', 'p1', '--network', 'pnet', 'alpine', 'ash']);
    await lab.coveOk(['run', '-dit', '--name', 'p2', '--network', 'pnet', 'alpine', 'ash']);
    for (const c of ['p1', 'p2']) {
      ip[c] = await ipOf(lab, c, 'pnet');
      assert.match(ip[c]!, /^172\.18\.0\.\d+$/);
      const addr = await lab.coveOk(['exec', c, 'ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0']);
      assert.ok(addr.includes(`${ip[c]}/16`), addr);
      // The default route goes through the gateway the plugin gave at Join.
      assert.match(await lab.coveOk(['exec', c, 'ip', 'route']), /default via 172\.18\.0\.1 dev eth0/);
    }
    const joins = plugin.calls().filter((c) => c.method === 'NetworkDriver.Join');
    assert.equal(joins.length, 2);
    assert.ok(
      joins.every(
        (j) => j.body.NetworkID === netId && typeof j.body.SandboxKey === 'string' && j.body.SandboxKey.startsWith('/'),
      ),
    );
    const eps = plugin.calls().filter((c) => c.method === 'NetworkDriver.CreateEndpoint');
    assert.deepEqual(eps.map((e) => e.body.Interface.Address).sort(), [`${ip.p1}/16`, `${ip.p2}/16`].sort());
  });

  await t.test('they reach each other by address and by name (embedded DNS on plugin networks)', async () => {
    assert.ok(await reaches(lab, 'p1', ip.p2!), 'p1 -> p2 by IP');
    assert.ok(await reaches(lab, 'p2', ip.p1!), 'p2 -> p1 by IP');
    assert.ok(await reaches(lab, 'p1', 'p2'), 'p1 -> p2 by name');
    assert.ok(await reaches(lab, 'p2', 'p1'), 'p2 -> p1 by name');
    assert.match(await lab.coveOk(['exec', 'p1', 'cat', '/etc/resolv.conf']), /nameserver 127\.0\.0\.11/);
  });

  await t.test('inspect lists both containers on pnet', async () => {
    const net = JSON.parse(await lab.coveOk(['network', 'inspect', 'pnet']))[0];
    assert.deepEqual(
      Object.values(net.Containers as Record<string, { Name: string }>)
        .map((c) => c.Name)
        .sort(),
      ['p1', 'p2'],
    );
  });

  await t.test(
    'network connect pnet to a container on the default bridge: eth1 from the plugin; disconnect gives it back',
    async () => {
      await lab.coveOk(['run', '-dit', '--name', 'p3', 'alpine', 'ash']);
      await lab.coveOk(['network', 'connect', 'pnet', 'p3']);
      const addr = await lab.coveOk(['exec', 'p3', 'ip', '-o', '-4', 'addr', 'show', 'dev', 'eth1']);
      assert.ok(addr.includes(`${await ipOf(lab, 'p3', 'pnet')}/16`), addr);
      assert.ok(await reaches(lab, 'p3', 'p1'), 'p3 -> p1 by name over pnet');
      await lab.coveOk(['network', 'disconnect', 'pnet', 'p3']);
      assert.doesNotMatch(await lab.coveOk(['exec', 'p3', 'ip', '-o', 'link', 'show']), /eth1/);
      const leave = plugin
        .calls()
        .filter((c) => c.method === 'NetworkDriver.Leave')
        .at(-1)!;
      assert.deepEqual(
        leave.note,
        { sandboxEndBack: true },
        "the interface is back in the daemon's namespace at Leave",
      );
      assert.equal(plugin.calls().at(-1)!.method, 'NetworkDriver.DeleteEndpoint');
      await lab.coveOk(['rm', '-f', 'p3']);
    },
  );

  await t.test('-p 8080:80 on pnet: the plugin is asked to program the port map, and to revoke it at rm', async () => {
    await lab.coveOk(['run', '-dit', '--name', 'p5', '-p', '8080:80', '--network', 'pnet', 'alpine', 'ash']);
    const ip5 = await ipOf(lab, 'p5', 'pnet');
    const prog = plugin
      .calls()
      .filter((c) => c.method === 'NetworkDriver.ProgramExternalConnectivity')
      .at(-1)!;
    assert.deepEqual(prog.body.Options['com.docker.network.portmap'], [
      { Proto: 6, IP: ip5, Port: 80, HostIP: '0.0.0.0', HostPort: 8080, HostPortEnd: 8080 },
    ]);
    await lab.coveOk(['rm', '-f', 'p5']);
    const revoke = plugin
      .calls()
      .filter((c) => c.method === 'NetworkDriver.RevokeExternalConnectivity')
      .at(-1);
    assert.equal(revoke?.body.EndpointID, prog.body.EndpointID);
  });

  await t.test(
    'a daemon restart activates the plugin again: running containers keep their names, new ones join',
    async () => {
      const activations = () => plugin.calls().filter((c) => c.method === 'Plugin.Activate').length;
      assert.equal(activations(), 1);
      await lab.stopDaemon();
      await lab.startDaemon({ extraArgs: daemonArgs() });
      assert.equal(activations(), 2);
      assert.ok(await reaches(lab, 'p1', 'p2'), 'p1 -> p2 by name after the restart');
      await lab.coveOk(['run', '-dit', '--name', 'p4', '--network', 'pnet', 'alpine', 'ash']);
      assert.ok(await reaches(lab, 'p4', 'p1'), 'p4 -> p1 by name');
    },
  );

  await t.test("rm of the containers: Leave and DeleteEndpoint for each; the plugin's links are gone", async () => {
    await lab.coveOk(['rm', '-f', 'p1', 'p2', 'p4']);
    const epIds = plugin
      .calls()
      .filter((c) => c.method === 'NetworkDriver.CreateEndpoint')
      .map((c) => c.body.EndpointID as string)
      .sort();
    assert.equal(epIds.length, 5);
    const leaves = plugin.calls().filter((c) => c.method === 'NetworkDriver.Leave');
    assert.ok(leaves.every((c) => c.note?.sandboxEndBack === true));
    const left = leaves.map((c) => c.body.EndpointID as string).sort();
    const deleted = plugin
      .calls()
      .filter((c) => c.method === 'NetworkDriver.DeleteEndpoint')
      .map((c) => c.body.EndpointID as string)
      .sort();
    assert.deepEqual(left, epIds);
    assert.deepEqual(deleted, epIds);
    const links = await hostLinks(lab);
    assert.deepEqual(
      links.filter((l) => l.startsWith('pv') || l.startsWith('pc')),
      [],
    );
  });

  await t.test('network rm pnet: DeleteNetwork; the host has the links it had before', async () => {
    await lab.coveOk(['network', 'rm', 'pnet']);
    assert.equal(methods().at(-1), 'NetworkDriver.DeleteNetwork');
    assert.equal(plugin.calls().at(-1)!.body.NetworkID, netId);
    assert.deepEqual((await hostLinks(lab)).sort(), linksBefore.sort());
  });
  plugin.stop();
});

test('a plugin answering {"Err": "boom"} to CreateNetwork: create fails with that message, nothing is left', async () => {
  const plugin = await startPlugin('boomer', 'boom');
  const r = await lab.cove(['network', 'create', '-d', 'boomer', 'bnet']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /Error response from daemon: .*boom/);
  assert.ok(plugin.calls().some((c) => c.method === 'NetworkDriver.CreateNetwork'));
  assert.doesNotMatch(await lab.coveOk(['network', 'ls']), /\bbnet\b/);
  // The subnet went back to the pool: the next network gets it again.
  await lab.coveOk(['network', 'create', 'after-boom']);
  const net = JSON.parse(await lab.coveOk(['network', 'inspect', 'after-boom']))[0];
  assert.equal(net.IPAM.Config[0].Subnet, '172.18.0.0/16');
  await lab.coveOk(['network', 'rm', 'after-boom']);
  plugin.stop();
});

test('a plugin socket that never answers: a clear timeout error, nothing is left', async () => {
  const plugin = await startPlugin('sleepy', 'hang');
  const t0 = Date.now();
  const r = await lab.cove(['network', 'create', '-d', 'sleepy', 'hnet'], { timeoutMs: 20_000 });
  const took = Date.now() - t0;
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /Plugin\.Activate: plugin sleepy did not answer within 2s \(unix:\/\/.*sleepy\.sock\)/);
  assert.ok(took < 10_000, `took ${took} ms`);
  assert.doesNotMatch(await lab.coveOk(['network', 'ls']), /\bhnet\b/);
  plugin.stop();
});

test('a Join naming an interface that does not exist: run fails clearly, the endpoint is rolled back in the plugin', async () => {
  const plugin = await startPlugin('badjoin', 'badjoin');
  const linksBefore = await hostLinks(lab);
  await lab.coveOk(['network', 'create', '-d', 'badjoin', 'bjnet']);
  const r = await lab.cove(['run', '-dit', '--name', 'bj1', '--network', 'bjnet', 'alpine', 'ash']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /failed to move plugin interface nosuchlink0 into the sandbox/);
  const methods = plugin.calls().map((c) => c.method);
  assert.deepEqual(methods.slice(-4), [
    'NetworkDriver.CreateEndpoint',
    'NetworkDriver.Join',
    'NetworkDriver.Leave',
    'NetworkDriver.DeleteEndpoint',
  ]);
  const net = JSON.parse(await lab.coveOk(['network', 'inspect', 'bjnet']))[0];
  assert.deepEqual(net.Containers, {});
  await lab.cove(['rm', '-f', 'bj1']);
  await lab.coveOk(['network', 'rm', 'bjnet']);
  assert.deepEqual((await hostLinks(lab)).sort(), linksBefore.sort());
  plugin.stop();
});

test('a plugin found through a spec file (/etc/docker/plugins/NAME.spec style) naming its socket elsewhere', async () => {
  const plugin = await startPlugin('specplug', 'normal', join(lab.dir, 'elsewhere', 'specplug.sock'));
  writeFileSync(join(pluginDir, 'specplug.spec'), `unix://${join(lab.dir, 'elsewhere', 'specplug.sock')}\n`);
  await lab.coveOk(['network', 'create', '-d', 'specplug', 'snet']);
  assert.deepEqual(
    plugin.calls().map((c) => c.method),
    ['Plugin.Activate', 'NetworkDriver.GetCapabilities', 'NetworkDriver.CreateNetwork'],
  );
  await lab.coveOk(['network', 'rm', 'snet']);
  assert.equal(plugin.calls().at(-1)!.method, 'NetworkDriver.DeleteNetwork');
  plugin.stop();
});

test('a plugin that is down when the daemon starts: rm waits for it; once it is back, containers join and rm works', async () => {
  let plugin = await startPlugin('late');
  await lab.coveOk(['network', 'create', '-d', 'late', 'lnet']);
  await lab.stopDaemon();
  plugin.stop();
  await lab.startDaemon({ extraArgs: daemonArgs() });
  assert.match(lab.daemonLog(), /network plugin of existing networks not available/);
  const r = await lab.cove(['network', 'rm', 'lnet']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /plugin late \(unix:\/\/.*late\.sock\): not listening/);
  assert.match(await lab.coveOk(['network', 'ls']), /\blnet\s+late\b/);
  plugin = await startPlugin('late');
  await lab.coveOk(['run', '-dit', '--name', 'l1', '--network', 'lnet', 'alpine', 'ash']);
  assert.match(
    await lab.coveOk(['exec', 'l1', 'ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0']),
    /inet 172\.18\.0\.2\/16/,
  );
  await lab.coveOk(['rm', '-f', 'l1']);
  await lab.coveOk(['network', 'rm', 'lnet']);
  assert.equal(plugin.calls().at(-1)!.method, 'NetworkDriver.DeleteNetwork');
  plugin.stop();
});

test('--ipam-driver: the plugin picks the pool and every address, and gets them back at rm', async () => {
  const plugin = await startPlugin('myipam');
  const ipamCalls = () => plugin.calls().filter((c) => c.method.startsWith('IpamDriver.'));
  await lab.coveOk(['network', 'create', '-d', 'myipam', '--ipam-driver', 'myipam', 'inet1']);
  const net = JSON.parse(await lab.coveOk(['network', 'inspect', 'inet1']))[0];
  assert.equal(net.IPAM.Driver, 'myipam');
  assert.deepEqual(net.IPAM.Config, [{ Subnet: '10.77.0.0/24', Gateway: '10.77.0.1' }]);
  const pool = ipamCalls().find((c) => c.method === 'IpamDriver.RequestPool')!;
  assert.equal(pool.body.AddressSpace, 'plg-local');
  assert.equal(pool.body.V6, false);
  assert.deepEqual(ipamCalls().find((c) => c.method === 'IpamDriver.RequestAddress')!.body.Options, {
    RequestAddressType: 'com.docker.network.gateway',
  });
  const create = plugin.calls().find((c) => c.method === 'NetworkDriver.CreateNetwork')!;
  assert.deepEqual(
    create.body.IPv4Data.map((d: { Pool: string; Gateway: string }) => [d.Pool, d.Gateway]),
    [['10.77.0.0/24', '10.77.0.1/24']],
  );

  await lab.coveOk(['run', '-dit', '--name', 'i1', '--network', 'inet1', 'alpine', 'ash']);
  await lab.coveOk(['run', '-dit', '--name', 'i2', '--network', 'inet1', 'alpine', 'ash']);
  assert.equal(await ipOf(lab, 'i1', 'inet1'), '10.77.0.100');
  assert.equal(await ipOf(lab, 'i2', 'inet1'), '10.77.0.101');
  assert.ok(await reaches(lab, 'i1', 'i2'), 'i1 -> i2 by name');

  await lab.coveOk(['rm', '-f', 'i1', 'i2']);
  const released = ipamCalls()
    .filter((c) => c.method === 'IpamDriver.ReleaseAddress')
    .map((c) => c.body.Address)
    .sort();
  assert.deepEqual(released, ['10.77.0.100', '10.77.0.101']);
  await lab.coveOk(['network', 'rm', 'inet1']);
  assert.deepEqual(
    ipamCalls()
      .slice(-2)
      .map((c) => [c.method, c.body.Address ?? c.body.PoolID]),
    [
      ['IpamDriver.ReleaseAddress', '10.77.0.1'],
      ['IpamDriver.ReleasePool', 'plg-10.77.0.0/24'],
    ],
  );

  // A built-in driver with the plugin's IPAM: the bridge gets the plugin's pool and addresses.
  await lab.coveOk(['network', 'create', '--ipam-driver', 'myipam', '--subnet', '10.78.0.0/24', 'ibr']);
  await lab.coveOk(['run', '-dit', '--name', 'i3', '--network', 'ibr', 'alpine', 'ash']);
  assert.equal(await ipOf(lab, 'i3', 'ibr'), '10.78.0.100');
  assert.match(await lab.coveOk(['exec', 'i3', 'ip', 'route']), /default via 10\.78\.0\.1/);
  await lab.coveOk(['rm', '-f', 'i3']);
  await lab.coveOk(['network', 'rm', 'ibr']);
  assert.equal(ipamCalls().at(-1)!.method, 'IpamDriver.ReleasePool');
  plugin.stop();
});

test('--ipam-driver whose plugin refuses the pool: create fails with its message, nothing is left', async () => {
  const plugin = await startPlugin('ipam6');
  const r = await lab.cove(['network', 'create', '--ipam-driver', 'ipam6', '--ipv6', 'v6net']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /IpamDriver\.RequestPool: this plugin has no IPv6 pools/);
  // The IPv4 pool it had already handed out went back.
  const calls = plugin.calls().map((c) => c.method);
  assert.deepEqual(
    calls.filter((m) => m.startsWith('IpamDriver.') && m.includes('Pool')),
    ['IpamDriver.RequestPool', 'IpamDriver.RequestPool', 'IpamDriver.ReleasePool'],
  );
  assert.doesNotMatch(await lab.coveOk(['network', 'ls']), /\bv6net\b/);
  plugin.stop();
});

test('a driver that is neither built in nor a plugin: plugin "X" not found', async () => {
  const r = await lab.cove(['network', 'create', '-d', 'nosuchplugin', 'xnet']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /plugin "nosuchplugin" not found/);
});
