/**
 * Network plugins without root: discovery in plugin directories (sockets,
 * .spec and .json files), the wire client (Docker's error shapes, deadlines),
 * the remote driver's requests, and what the daemon does after a Join (as a plan).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  findPlugin,
  parsePluginUrl,
  PluginClient,
  PluginMethodNotFound,
  PLUGIN_MIME,
} from '../../src/network/plugins.js';
import { activateRemoteDriver, remoteJoinPlan, RemoteDriver } from '../../src/network/drivers/remote/index.js';
import { DriverRegistry } from '../../src/network/drivers/registry.js';
import { render, type KernelOp } from '../../src/kernel/ops.js';

/** Plans as the ip lines src/kernel/ops.ts renders them. */
const lines = (ops: KernelOp[]): string[] =>
  ops.map((o) => {
    const r = render(o);
    return r.tool === 'rtnl' ? 'rtnl' : r.line;
  });
import { CoveError, InvalidParameter, NotFound } from '../../src/common/errors.js';
import { defaultConfig } from '../../src/common/config.js';
import { silentLogger } from '../../src/common/log.js';
import type { DriverNetwork, JoinRequest } from '../../src/network/driver.js';

const tmp = mkdtempSync(join(tmpdir(), 'cove-plugins-'));
const servers: Server[] = [];
after(() => {
  for (const s of servers) s.close();
  rmSync(tmp, { recursive: true, force: true });
});

type Handler = (method: string, body: any) => { status?: number; body: unknown } | 'hang';

/** A fake plugin on a unix socket; records every call. */
async function fakePlugin(
  sock: string,
  handler: Handler,
): Promise<Array<{ method: string; body: any; headers: Record<string, unknown> }>> {
  const calls: Array<{ method: string; body: any; headers: Record<string, unknown> }> = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const method = req.url!.slice(1);
      const body = JSON.parse(Buffer.concat(chunks).toString() || '{}');
      calls.push({ method, body, headers: req.headers });
      const r = handler(method, body);
      if (r === 'hang') return;
      res.writeHead(r.status ?? 200, { 'Content-Type': PLUGIN_MIME });
      res.end(typeof r.body === 'string' ? r.body : JSON.stringify(r.body));
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  return calls;
}

test('discovery: <name>.sock, <name>/<name>.sock, then .spec and .json files; sockets first', async () => {
  const sockets = join(tmp, 'run');
  const specs = join(tmp, 'etc');
  mkdirSync(join(sockets, 'nested'), { recursive: true });
  mkdirSync(specs, { recursive: true });
  await fakePlugin(join(sockets, 'flat.sock'), () => ({ body: {} }));
  await fakePlugin(join(sockets, 'nested', 'nested.sock'), () => ({ body: {} }));
  writeFileSync(join(specs, 'byspec.spec'), 'unix:///run/other/byspec.sock\n');
  writeFileSync(join(specs, 'tcpspec.spec'), 'tcp://127.0.0.1:9999');
  writeFileSync(join(specs, 'byjson.json'), JSON.stringify({ Name: 'byjson', Addr: 'unix:///run/x.sock' }));
  writeFileSync(join(specs, 'flat.spec'), 'tcp://127.0.0.1:1');
  const dirs = [sockets, specs];
  assert.deepEqual(findPlugin('flat', dirs)?.addr, { kind: 'unix', path: join(sockets, 'flat.sock') });
  assert.deepEqual(findPlugin('nested', dirs)?.addr, { kind: 'unix', path: join(sockets, 'nested', 'nested.sock') });
  assert.deepEqual(findPlugin('byspec', dirs)?.addr, { kind: 'unix', path: '/run/other/byspec.sock' });
  assert.deepEqual(findPlugin('tcpspec', dirs)?.addr, { kind: 'tcp', host: '127.0.0.1', port: 9999 });
  assert.deepEqual(findPlugin('byjson', dirs)?.addr, { kind: 'unix', path: '/run/x.sock' });
  assert.equal(findPlugin('missing', dirs), undefined);
  // Names that cannot be file names are never looked up.
  assert.equal(findPlugin('../etc/flat', dirs), undefined);
  assert.equal(findPlugin('', dirs), undefined);
  // A regular file named .sock is not a socket.
  writeFileSync(join(sockets, 'notasock.sock'), '');
  assert.equal(findPlugin('notasock', dirs), undefined);
  writeFileSync(join(specs, 'broken.spec'), 'ftp://x');
  assert.throws(() => findPlugin('broken', dirs), /unknown protocol ftp/);
  assert.throws(() => parsePluginUrl('not a url', 'x.spec'), InvalidParameter);
});

test("client: JSON over POST with the plugin MIME type; Docker's error shapes", async () => {
  const sock = join(tmp, 'client.sock');
  const calls = await fakePlugin(sock, (method) => {
    switch (method) {
      case 'Ok':
        return { body: { Value: 1 } };
      case 'Fail500':
        return { status: 500, body: { Err: 'boom' } };
      case 'Fail400':
        return { status: 400, body: { Err: 'bad option' } };
      case 'FailText':
        return { status: 500, body: 'plain failure' };
      case 'Err200':
        return { body: { Err: 'soft failure' } };
      case 'Garbage':
        return { body: 'not json' };
      default:
        return { status: 404, body: { Err: 'no such method' } };
    }
  });
  const c = new PluginClient('p', { kind: 'unix', path: sock }, 2000);
  assert.deepEqual(await c.call('Ok', { A: 1 }), { Value: 1 });
  assert.deepEqual(calls[0]!.body, { A: 1 });
  assert.equal(calls[0]!.headers.accept, PLUGIN_MIME);
  assert.equal(calls[0]!.headers['content-type'], PLUGIN_MIME);
  await assert.rejects(c.call('Fail500'), (e: CoveError) => e.status === 500 && e.message === 'Fail500: boom');
  await assert.rejects(c.call('Fail400'), (e: CoveError) => e.status === 400 && e.message === 'Fail400: bad option');
  await assert.rejects(c.call('FailText'), /FailText: plain failure/);
  await assert.rejects(c.call('Err200'), (e: Error) => e.message === 'remote: soft failure');
  await assert.rejects(c.call('Garbage'), /invalid JSON/);
  await assert.rejects(c.call('Nope'), PluginMethodNotFound);
});

test('client: a plugin that never answers fails at the deadline; one not listening says so', async () => {
  const sock = join(tmp, 'hang.sock');
  await fakePlugin(sock, () => 'hang');
  const c = new PluginClient('sleepy', { kind: 'unix', path: sock }, 300);
  const t0 = Date.now();
  await assert.rejects(
    c.call('Plugin.Activate'),
    (e: Error) => e.message === `Plugin.Activate: plugin sleepy did not answer within 300ms (unix://${sock})`,
  );
  assert.ok(Date.now() - t0 < 2000);
  const gone = new PluginClient('gone', { kind: 'unix', path: join(tmp, 'nobody.sock') }, 1000);
  await assert.rejects(
    gone.call('Plugin.Activate'),
    /Plugin\.Activate: plugin gone \(unix:\/\/.*nobody\.sock\): not listening/,
  );
});

test('activation: Implements must list NetworkDriver; the scope comes from GetCapabilities', async () => {
  const ok = join(tmp, 'act-ok.sock');
  await fakePlugin(ok, (m) =>
    m === 'Plugin.Activate' ? { body: { Implements: ['NetworkDriver'] } } : { body: { Scope: 'global' } },
  );
  const d = await activateRemoteDriver(
    { name: 'ok', addr: { kind: 'unix', path: ok }, source: ok },
    1000,
    silentLogger,
  );
  assert.equal(d.scope, 'global');
  assert.equal(d.connectivityScope, 'global');
  const vol = join(tmp, 'act-vol.sock');
  await fakePlugin(vol, () => ({ body: { Implements: ['VolumeDriver'] } }));
  await assert.rejects(
    activateRemoteDriver({ name: 'vol', addr: { kind: 'unix', path: vol }, source: vol }, 1000, silentLogger),
    /plugin "vol" at unix:\/\/.* does not implement NetworkDriver \(it implements: VolumeDriver\)/,
  );
  const bad = join(tmp, 'act-bad.sock');
  await fakePlugin(bad, (m) =>
    m === 'Plugin.Activate' ? { body: { Implements: ['NetworkDriver'] } } : { body: { Scope: 'planet' } },
  );
  await assert.rejects(
    activateRemoteDriver({ name: 'bad', addr: { kind: 'unix', path: bad }, source: bad }, 1000, silentLogger),
    /invalid capability: expecting 'local' or 'global', got planet/,
  );
});

test('registry: unknown names are plugins from the configured dirs, activated once; else plugin "X" not found', async () => {
  const dir = join(tmp, 'reg');
  mkdirSync(dir);
  const calls = await fakePlugin(join(dir, 'regplug.sock'), (m) =>
    m === 'Plugin.Activate' ? { body: { Implements: ['NetworkDriver'] } } : { body: { Scope: 'local' } },
  );
  const reg = new DriverRegistry();
  const ctx = { config: defaultConfig({ pluginDirs: [dir], pluginTimeoutMs: 1000 }), log: silentLogger };
  const [a, b] = await Promise.all([reg.lookup('regplug', ctx), reg.lookup('regplug', ctx)]);
  assert.equal(a, b);
  assert.equal(a.name, 'regplug');
  assert.equal(reg.get('regplug'), a);
  assert.equal(calls.filter((c) => c.method === 'Plugin.Activate').length, 1);
  await assert.rejects(
    reg.lookup('nothere', ctx),
    (e: Error) => e instanceof NotFound && e.message === 'plugin "nothere" not found',
  );
  // A built-in name is never taken from the plugin directory.
  await assert.rejects(reg.lookup('bridge', ctx), /plugin "bridge" not found/);
});

const NET: DriverNetwork = {
  id: 'n'.repeat(64),
  name: 'pnet',
  options: { foo: 'bar' },
  internal: false,
  enableIPv6: false,
  ipv4: [{ pool: '172.18.0.0/16', gateway: '172.18.0.1/16', auxAddresses: { r: '172.18.0.9' } }],
  ipv6: [],
};
const EP = { id: 'e'.repeat(64), networkId: NET.id, ipv4: '172.18.0.2/16', mac: '02:42:ac:12:00:02', options: {} };

test("remote driver: Docker's request bodies; MAC from the plugin is taken, a changed address is refused and rolled back", async () => {
  const sock = join(tmp, 'drv.sock');
  let iface: unknown = {};
  const calls = await fakePlugin(sock, (m) => {
    if (m === 'NetworkDriver.CreateEndpoint') return { body: { Interface: iface } };
    if (m === 'NetworkDriver.ProgramExternalConnectivity') return { status: 404, body: { Err: 'not implemented' } };
    return { body: {} };
  });
  const d = new RemoteDriver(
    'drv',
    new PluginClient('drv', { kind: 'unix', path: sock }, 1000),
    'local',
    'local',
    silentLogger,
  );
  await d.createNetwork(NET);
  assert.deepEqual(calls.at(-1), {
    method: 'NetworkDriver.CreateNetwork',
    headers: calls.at(-1)!.headers,
    body: {
      NetworkID: NET.id,
      Options: { 'com.docker.network.generic': { foo: 'bar' }, 'com.docker.network.enable_ipv6': false },
      IPv4Data: [
        {
          AddressSpace: 'LocalDefault',
          Pool: '172.18.0.0/16',
          Gateway: '172.18.0.1/16',
          AuxAddresses: { r: '172.18.0.9' },
        },
      ],
      IPv6Data: [],
    },
  });
  iface = { MacAddress: '02:00:00:00:00:AA' };
  const made = await d.createEndpoint(NET, EP);
  assert.equal(made.mac, '02:00:00:00:00:aa');
  assert.deepEqual(calls.at(-1)!.body.Interface, {
    Address: '172.18.0.2/16',
    AddressIPv6: '',
    MacAddress: '02:42:ac:12:00:02',
  });
  iface = { Address: '172.18.0.77/16' };
  await assert.rejects(d.createEndpoint(NET, EP), /driver modified interface address: 172\.18\.0\.77\/16/);
  assert.equal(calls.at(-1)!.method, 'NetworkDriver.DeleteEndpoint');
  // ProgramExternalConnectivity is optional: a 404 is fine.
  await d.programExternalConnectivity(NET, EP, []);
  await d.deleteNetwork(NET);
  assert.deepEqual(calls.at(-1)!.body, { NetworkID: NET.id });
});

function joinReq(extra: Partial<JoinRequest> = {}): JoinRequest {
  return {
    endpoint: EP,
    network: NET,
    netnsPath: '/run/cove/netns/abc',
    ifName: 'eth1',
    defaultGateway: true,
    ...extra,
  };
}

test('join plan: SrcName moves into the sandbox, is renamed DstPrefix+N and configured; gateway and static routes', () => {
  const p = remoteJoinPlan(
    {
      InterfaceName: { SrcName: 'pc123', DstPrefix: 'eth' },
      Gateway: '172.18.0.1',
      StaticRoutes: [
        { Destination: '10.5.0.0/16', RouteType: 0, NextHop: '172.18.0.254' },
        { Destination: '10.6.0.0/24', RouteType: 1 },
      ],
    },
    joinReq(),
  );
  assert.deepEqual(lines(p.host), [
    'link set dev pc123 address 02:42:ac:12:00:02',
    'link set dev pc123 netns /run/cove/netns/abc',
  ]);
  assert.deepEqual(p.sandbox, [
    { op: 'rename', dev: 'pc123', to: 'eth1' },
    { op: 'sysctl', key: 'net.ipv6.conf.eth1.disable_ipv6', value: '1' },
    { op: 'up', dev: 'lo' },
    { op: 'addr', dev: 'eth1', address: '172.18.0.2', prefix: 16 },
    { op: 'up', dev: 'eth1' },
    { op: 'route', dev: 'eth1', via: '172.18.0.1' },
  ]);
  assert.deepEqual(lines(p.routes), [
    'route replace 10.5.0.0/16 via 172.18.0.254 dev eth1',
    'route replace 10.6.0.0/24 dev eth1',
  ]);
  assert.equal(p.info.ipv4Gateway, '172.18.0.1');
  assert.deepEqual(p.info.driverState, { srcName: 'pc123', ifName: 'eth1' });

  // Another prefix keeps the controller's index; no default route when not the gateway endpoint or when disabled.
  const q = remoteJoinPlan(
    { InterfaceName: { SrcName: 'pc9', DstPrefix: 'net' }, Gateway: '172.18.0.1', DisableGatewayService: true },
    joinReq({ ifName: 'eth0' }),
  );
  assert.equal(q.dstName, 'net0');
  assert.ok(!q.sandbox.some((o) => o.op === 'route'));
  assert.equal(q.info.disableGatewayService, true);
  const r = remoteJoinPlan({ InterfaceName: { SrcName: 'pc9', DstPrefix: 'eth' } }, joinReq({ defaultGateway: true }));
  assert.ok(!r.sandbox.some((o) => o.op === 'route'), 'no Gateway from the plugin, no default route');

  assert.throws(() => remoteJoinPlan({}, joinReq()), /Join returned no InterfaceName\.SrcName/);
  assert.throws(() => remoteJoinPlan({ InterfaceName: { SrcName: 'bad name' } }, joinReq()), InvalidParameter);
  assert.throws(
    () => remoteJoinPlan({ InterfaceName: { SrcName: 'ok' }, Gateway: 'nope' }, joinReq()),
    InvalidParameter,
  );
  assert.throws(
    () =>
      remoteJoinPlan(
        { InterfaceName: { SrcName: 'ok' }, StaticRoutes: [{ Destination: '10.0.0.0/8', RouteType: 0, NextHop: 'x' }] },
        joinReq(),
      ),
    InvalidParameter,
  );
});

test("coved --plugin-dir (repeatable) and --plugin-timeout; defaults are Docker's directories and 30 s", async () => {
  const { parseFlags } = await import('../../src/daemon/main.js');
  const c = parseFlags(['--plugin-dir', '/tmp/a', '--plugin-dir', '/tmp/b', '--plugin-timeout', '2.5']);
  assert.deepEqual(c.pluginDirs, ['/tmp/a', '/tmp/b']);
  assert.equal(c.pluginTimeoutMs, 2500);
  const d = parseFlags([]);
  assert.equal(d.pluginDirs, undefined);
  assert.equal(d.pluginTimeoutMs, 30_000);
  assert.throws(() => parseFlags(['--plugin-timeout', '0']), /invalid --plugin-timeout: 0/);
  assert.throws(() => parseFlags(['--plugin-timeout', 'soon']), /invalid --plugin-timeout: soon/);
});

test('remote IPAM: pools and gateway from the plugin; a failing second pool releases the first', async () => {
  const { IpamPlugins } = await import('../../src/network/ipam/remote.js');
  const dir = join(tmp, 'ipam');
  mkdirSync(dir);
  let v6Fails = true;
  const calls = await fakePlugin(join(dir, 'ip1.sock'), (m, b) => {
    switch (m) {
      case 'Plugin.Activate':
        return { body: { Implements: ['IpamDriver'] } };
      case 'IpamDriver.GetCapabilities':
        return { status: 404, body: { Err: 'old plugin' } };
      case 'IpamDriver.GetDefaultAddressSpaces':
        return { body: { LocalDefaultAddressSpace: 'mine' } };
      case 'IpamDriver.RequestPool':
        if (b.V6 && v6Fails) return { status: 500, body: { Err: 'no v6' } };
        return {
          body: {
            PoolID: b.V6 ? 'p6' : 'p4',
            Pool: b.V6 ? 'fd00:1::/64' : b.Pool || '10.9.0.0/24',
            Data: b.V6 ? { 'com.docker.network.gateway': 'fd00:1::fe/64' } : {},
          },
        };
      case 'IpamDriver.RequestAddress':
        return { body: { Address: b.Address ? `${b.Address}/24` : '10.9.0.1/24' } };
      default:
        return { body: {} };
    }
  });
  const ipam = await new IpamPlugins().lookup(
    'ip1',
    defaultConfig({ pluginDirs: [dir], pluginTimeoutMs: 1000 }),
    silentLogger,
  );
  assert.equal(ipam.addressSpace, 'mine');
  assert.equal(ipam.requiresMac, false);
  await assert.rejects(
    ipam.planNetwork({ configs: [], enableIPv4: true, enableIPv6: true, options: {} }),
    /IpamDriver\.RequestPool: no v6/,
  );
  assert.deepEqual(
    calls.slice(-2).map((c) => [c.method, c.body]),
    [
      ['IpamDriver.ReleaseAddress', { PoolID: 'p4', Address: '10.9.0.1' }],
      ['IpamDriver.ReleasePool', { PoolID: 'p4' }],
    ],
  );
  v6Fails = false;
  const plan = await ipam.planNetwork({
    configs: [{ Subnet: '10.9.0.0/24', Gateway: '10.9.0.254' }],
    enableIPv4: true,
    enableIPv6: true,
    options: { o: '1' },
  });
  assert.deepEqual(plan.pools, [
    { family: 4, poolId: 'p4', subnet: '10.9.0.0/24', gateway: '10.9.0.254' },
    { family: 6, poolId: 'p6', subnet: 'fd00:1::/64', gateway: 'fd00:1::fe' },
  ]);
  assert.deepEqual(plan.display, [
    { Subnet: '10.9.0.0/24', Gateway: '10.9.0.254' },
    { Subnet: 'fd00:1::/64', Gateway: 'fd00:1::fe' },
  ]);
  assert.equal(plan.subnets[0]!.userSubnet, true);
  assert.deepEqual(calls.find((c) => c.method === 'IpamDriver.RequestPool' && c.body.Pool === '10.9.0.0/24')!.body, {
    AddressSpace: 'mine',
    Pool: '10.9.0.0/24',
    SubPool: '',
    Options: { o: '1' },
    V6: false,
  });
  assert.deepEqual(await ipam.requestAddress('p4', '10.9.0.7', {}), { address: '10.9.0.7', cidr: '10.9.0.7/24' });
});

test('remote IPAM: a plugin that is not an IpamDriver, or answers a bad address, is a clear error', async () => {
  const { IpamPlugins } = await import('../../src/network/ipam/remote.js');
  const dir = join(tmp, 'ipam2');
  mkdirSync(dir);
  await fakePlugin(join(dir, 'netonly.sock'), () => ({ body: { Implements: ['NetworkDriver'] } }));
  const cfg = defaultConfig({ pluginDirs: [dir], pluginTimeoutMs: 1000 });
  await assert.rejects(
    new IpamPlugins().lookup('netonly', cfg, silentLogger),
    /does not implement IpamDriver \(it implements: NetworkDriver\)/,
  );
  await assert.rejects(new IpamPlugins().lookup('absent', cfg, silentLogger), /plugin "absent" not found/);
  await fakePlugin(join(dir, 'badaddr.sock'), (m) =>
    m === 'Plugin.Activate'
      ? { body: { Implements: ['IpamDriver'] } }
      : m === 'IpamDriver.RequestAddress'
        ? { body: { Address: '10.0.0.5' } }
        : { body: {} },
  );
  const bad = await new IpamPlugins().lookup('badaddr', cfg, silentLogger);
  assert.equal(bad.addressSpace, 'LocalDefault');
  await assert.rejects(
    bad.requestAddress('p', '', {}),
    /IpamDriver\.RequestAddress: plugin badaddr answered an invalid address "10\.0\.0\.5"/,
  );
});
