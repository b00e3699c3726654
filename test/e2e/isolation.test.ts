/**
 * What may reach what (ARCHITECTURE.md, "Reachability"), each cell probed from
 * the sending side: from containers (cove exec, or the container's own
 * network namespace for packets a container with CAP_NET_RAW can craft),
 * from the daemon's host, and from a neighbour on the same segment (the lab's
 * stand-in internet, which routes the container subnets and even 127.0.0.0/8
 * to the Cove host, as an attacker next to it can).
 *
 * Also: a refused or failed `network create` leaves the kernel as it was;
 * state files are not readable by other users; the firewall heals after
 * `nft flush ruleset` within a second.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { INTERNET_IP, LAB_IP, run, skipOffline, type Lab, type RunResult } from '../lab/lab.js';
import { labWithImages } from './seed-helpers.js';

let lab: Lab;
before(async () => {
  lab = await labWithImages('cove-t-iso');
  // The neighbour routes the container subnets to the Cove host (any machine on the segment can).
  if (!lab.online) return;
  const r = await lab.inet(`ip route add 172.29.0.0/16 via ${LAB_IP}`);
  assert.equal(r.code, 0, r.stderr);
});
after(async () => {
  await lab?.destroy();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** wget once (a refusal must not answer at all), or a few tries when it should answer. */
async function page(sh: () => Promise<RunResult>, tries: number): Promise<string | undefined> {
  for (let i = 0; i < tries; i++) {
    const r = await sh();
    if (r.code === 0 && r.stdout) return r.stdout;
    if (i + 1 < tries) await sleep(300);
  }
  return undefined;
}
const wgetCmd = (url: string) => `timeout 4 busybox wget -q -O - ${url}`;
const fromNeighbour = (url: string, tries = 1) => page(() => lab.inet(wgetCmd(url)), tries);
const fromHost = (url: string, tries = 1) => page(() => lab.sh(wgetCmd(url)), tries);
const fromContainer = (c: string, url: string, tries = 1) =>
  page(() => lab.cove(['exec', c, 'timeout', '4', 'wget', '-q', '-O', '-', url]), tries);

/**
 * Sends to a 127.0.0.0/8 address through `gateway` from the netns at
 * `netnsPath`, as a neighbour or a container with raw sockets could: the
 * sender's own loopback routes are moved aside for the duration (and put
 * back), and the packet leaves by its ethernet interface to the gateway.
 */
function viaLoopbackRoute(netns: string, gateway: string, url: string): Promise<RunResult> {
  const script = [
    'for f in /proc/sys/net/ipv4/conf/*/route_localnet; do echo 1 > $f; done',
    // Without its own 127.0.0.1 the sender neither delivers locally nor drops the answer (source 127.0.0.1) as its own address.
    'ip addr del 127.0.0.1/8 dev lo',
    `ip route add 127.0.0.0/8 via ${gateway}`,
    `${wgetCmd(url)}; rc=$?`,
    `ip route del 127.0.0.0/8 via ${gateway}`,
    'ip addr add 127.0.0.1/8 dev lo',
    'exit $rc',
  ].join('\n');
  return run('nsenter', [`--net=${netns}`, 'sh', '-c', script], { timeoutMs: 20_000 });
}

async function sandboxOf(c: string): Promise<string> {
  return lab.coveOk(['inspect', '-f', '{{.NetworkSettings.SandboxKey}}', c]);
}

async function ip(c: string, net: string): Promise<string> {
  return lab.coveOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, c]);
}

/** A page server on the daemon's host, bound to `addr`, until the test ends. */
async function hostServer(addr: string, port: number, text: string): Promise<void> {
  const dir = `${lab.dir}/www-${port}`;
  await lab.sh(`mkdir -p ${dir} && echo ${text} > ${dir}/index.html`);
  const r = await lab.sh(`busybox httpd -p ${addr}:${port} -h ${dir}`);
  assert.equal(r.code, 0, r.stderr);
}

test('reachability, cell by cell, from the sending side', async (t) => {
  // The neighbour that sends from outside is the stand-in internet's namespace.
  if (skipOffline(t, lab)) return;
  await lab.coveOk(['network', 'create', '--subnet', '172.29.1.0/24', 'neta']);
  await lab.coveOk(['network', 'create', '--subnet', '172.29.2.0/24', 'netb']);
  await lab.coveOk(['run', '-d', '--name', 'pubweb', '--network', 'neta', '-p', '8080:80', 'nginx']);
  await lab.coveOk(['run', '-d', '--name', 'privweb', '--network', 'neta', 'nginx']);
  await lab.coveOk(['run', '-d', '--name', 'localweb', '--network', 'netb', '-p', '127.0.0.1:8081:80', 'nginx']);
  await lab.coveOk(['run', '-dit', '--name', 'a1', '--network', 'neta', 'alpine', 'ash']);
  await lab.coveOk(['run', '-dit', '--name', 'b1', '--network', 'netb', 'alpine', 'ash']);
  const pubweb = await ip('pubweb', 'neta');
  const privweb = await ip('privweb', 'neta');
  const localweb = await ip('localweb', 'netb');
  await hostServer('127.0.0.53', 53, 'host-loopback-service');
  await hostServer('0.0.0.0', 8090, 'host-service');

  await t.test('container -> container, same network: reached (address and name)', async () => {
    assert.match((await fromContainer('a1', `http://${privweb}/`, 3)) ?? '', /stand-in/i);
    assert.match((await fromContainer('a1', 'http://privweb/', 3)) ?? '', /stand-in/i);
  });
  await t.test('container -> container of another network, by its address: not reached', async () => {
    assert.equal(await fromContainer('b1', `http://${privweb}/`), undefined);
    assert.equal(await fromContainer('a1', `http://${localweb}/`), undefined);
  });
  await t.test(
    'container -> published port of another network via a host address: reached (like docker-proxy)',
    async () => {
      assert.match((await fromContainer('b1', `http://${LAB_IP}:8080/`, 3)) ?? '', /stand-in/i);
    },
  );
  await t.test('container -> the host (gateway, host address): reached', async () => {
    assert.match((await fromContainer('a1', 'http://172.29.1.1:8090/', 3)) ?? '', /host-service/);
    assert.match((await fromContainer('a1', `http://${LAB_IP}:8090/`, 3)) ?? '', /host-service/);
  });
  await t.test(
    'host -> container address, published or not; host -> published ports on 127.0.0.1 and its address: reached',
    async () => {
      assert.match((await fromHost(`http://${privweb}/`, 3)) ?? '', /stand-in/i);
      assert.match((await fromHost('http://127.0.0.1:8081/', 3)) ?? '', /stand-in/i);
      assert.match((await fromHost(`http://${LAB_IP}:8080/`, 3)) ?? '', /stand-in/i);
    },
  );
  await t.test('other host -> published port: reached', async () => {
    assert.match((await fromNeighbour(`http://${LAB_IP}:8080/`, 3)) ?? '', /stand-in/i);
  });
  await t.test(
    'other host -> container address, unpublished or published: not reached (only through the host port)',
    async () => {
      assert.equal(await fromNeighbour(`http://${privweb}/`), undefined, 'unpublished');
      assert.equal(
        await fromNeighbour(`http://${pubweb}/`),
        undefined,
        'the published container port at the container address',
      );
    },
  );
  await t.test('other host -> 127.0.0.1-published port (routing 127.0.0.0/8 to the host): not reached', async () => {
    const r = await viaLoopbackRoute(`/run/netns/${lab.inetNetns}`, LAB_IP, 'http://127.0.0.1:8081/');
    assert.notEqual(r.code, 0, `got: ${r.stdout}`);
    assert.equal(await fromNeighbour(`http://${LAB_IP}:8081/`), undefined, 'nor on the host address');
  });
  await t.test('other host -> host loopback service: not reached', async () => {
    const r = await viaLoopbackRoute(`/run/netns/${lab.inetNetns}`, LAB_IP, 'http://127.0.0.53:53/');
    assert.notEqual(r.code, 0, `got: ${r.stdout}`);
  });
  await t.test('container -> host loopback service (frame to the gateway for 127.0.0.53): not reached', async () => {
    await lab.coveOk(['run', '-dit', '--name', 'prober', '--network', 'neta', 'alpine', 'ash']);
    const r = await viaLoopbackRoute(await sandboxOf('prober'), '172.29.1.1', 'http://127.0.0.53:53/');
    assert.notEqual(r.code, 0, `got: ${r.stdout}`);
  });
  await t.test(
    'container -> 127.0.0.1-published port of another network (frame to the gateway): not reached',
    async () => {
      const r = await viaLoopbackRoute(await sandboxOf('prober'), '172.29.1.1', 'http://127.0.0.1:8081/');
      assert.notEqual(r.code, 0, `got: ${r.stdout}`);
    },
  );
  await t.test('--internal: nothing in or out, containers of the network reach each other', async () => {
    await lab.coveOk(['network', 'create', '--internal', '--subnet', '172.29.3.0/24', 'neti']);
    await lab.coveOk(['run', '-d', '--name', 'iweb', '--network', 'neti', 'nginx']);
    await lab.coveOk(['run', '-dit', '--name', 'i1', '--network', 'neti', 'alpine', 'ash']);
    const iweb = await ip('iweb', 'neti');
    assert.match((await fromContainer('i1', `http://${iweb}/`, 3)) ?? '', /stand-in/i);
    assert.notEqual(
      (await lab.cove(['exec', 'i1', 'ping', '-c', '1', '-W', '2', INTERNET_IP])).code,
      0,
      'out to another host',
    );
    assert.equal(await fromNeighbour(`http://${iweb}/`), undefined, 'in from another host');
    assert.equal(await fromContainer('a1', `http://${iweb}/`), undefined, 'in from another network');
  });
  await t.test(
    'gateway_mode_ipv4=routed: published container ports and ping reachable at the container address, others not',
    async () => {
      await lab.coveOk([
        'network',
        'create',
        '--subnet',
        '172.29.4.0/24',
        '-o',
        'com.docker.network.bridge.gateway_mode_ipv4=routed',
        'netr',
      ]);
      await lab.coveOk(['run', '-d', '--name', 'rweb', '--network', 'netr', '-p', '8084:80', 'nginx']);
      await lab.coveOk(['run', '-d', '--name', 'rpriv', '--network', 'netr', 'nginx']);
      assert.match((await fromNeighbour(`http://${await ip('rweb', 'netr')}/`, 3)) ?? '', /stand-in/i);
      assert.equal(await fromNeighbour(`http://${await ip('rpriv', 'netr')}/`), undefined);
      assert.equal((await lab.inet(`busybox ping -c 1 -W 2 ${await ip('rpriv', 'netr')}`)).code, 0, 'ping');
    },
  );
  await t.test('gateway_mode_ipv4=nat-unprotected: every port reachable at the container address', async () => {
    await lab.coveOk([
      'network',
      'create',
      '--subnet',
      '172.29.5.0/24',
      '-o',
      'com.docker.network.bridge.gateway_mode_ipv4=nat-unprotected',
      'netu',
    ]);
    await lab.coveOk(['run', '-d', '--name', 'uweb', '--network', 'netu', 'nginx']);
    assert.match((await fromNeighbour(`http://${await ip('uweb', 'netu')}/`, 3)) ?? '', /stand-in/i);
    assert.equal(
      await fromContainer('a1', `http://${await ip('uweb', 'netu')}/`),
      undefined,
      'still isolated from other networks',
    );
  });
});

test('a refused or failed network create leaves the kernel as it was', async (t) => {
  const kernelState = async () => {
    // An IPv6 link-local address stays "tentative" until DAD ends (about a second after the link came up): not a change.
    const links = (await lab.sh('ip -o addr show')).stdout
      .split('\n')
      .map((l) =>
        l
          .replace(/^\d+:\s+/, '')
          .replace(/\s+valid_lft.*$/, '')
          .replace(/ tentative\b/, ''),
      )
      .sort()
      .join('\n');
    return links;
  };
  await t.test('IPv6 subnet ::/0: an error, no bridge or address left; the next network works', async () => {
    const before = await kernelState();
    const r = await lab.cove(['network', 'create', '--ipv6', '--subnet', '172.29.9.0/24', '--subnet', '::/0', 'badv6']);
    assert.notEqual(r.code, 0);
    assert.equal(await kernelState(), before);
    await lab.coveOk(['network', 'create', '--subnet', '172.29.9.0/24', 'goodv4']);
    await lab.coveOk(['run', '-d', '--name', 'gweb', '--network', 'goodv4', 'nginx']);
    assert.match((await fromHost(`http://${await ip('gweb', 'goodv4')}/`, 3)) ?? '', /stand-in/i);
    await lab.coveOk(['rm', '-f', 'gweb']);
    await lab.coveOk(['network', 'rm', 'goodv4']);
  });
  await t.test('bridge name of an existing non-bridge interface: refused, that interface untouched', async () => {
    await lab.sh('ip link add cvdummy0 type veth peer name cvdummy1');
    const before = await kernelState();
    const r = await lab.cove([
      'network',
      'create',
      '--subnet',
      '172.29.10.0/24',
      '-o',
      'com.docker.network.bridge.name=cvdummy0',
      'badbr',
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /not a bridge/);
    assert.equal(await kernelState(), before);
    await lab.sh('ip link del cvdummy0');
  });
});

test('state files are not readable by other users (checked as nobody)', async () => {
  await lab.coveOk(['run', '-d', '--name', 'secret', '-e', 'DB_PASSWORD=hunter2', 'alpine', 'sleep', '600']);
  const asNobody = (cmd: string) =>
    run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'sh', '-c', cmd]);
  // The lab directory itself is open to everyone: only the daemon's own modes protect the files.
  await run('chmod', ['0755', lab.dir]);
  const leak = await asNobody(
    `grep -rl hunter2 ${lab.dataRoot} 2>/dev/null; cat ${lab.dataRoot}/store/* 2>/dev/null | grep -c hunter2`,
  );
  assert.doesNotMatch(leak.stdout, /hunter2|store|[1-9]/, `nobody can read: ${leak.stdout}`);
  const d = lab.dataRoot;
  const open = await run('find', [
    `${d}/store`,
    `${d}/images`,
    `${d}/images/configs`,
    '-maxdepth',
    '1',
    '-perm',
    '/o+rwx',
    '-print',
  ]);
  assert.equal(open.stdout.trim(), '', 'store and image directories and files have no bits for others');
  const modes = await run('stat', ['-c', '%a %n', `${d}/store`, `${d}/store/store.log`, `${d}/images`]);
  assert.deepEqual(
    modes.stdout
      .trim()
      .split('\n')
      .map((l) => l.split(' ')[0]),
    ['700', '600', '700'],
  );
  await lab.coveOk(['rm', '-f', 'secret']);
});

test('the firewall heals after nft flush ruleset within a second; run -p works right after', async (t) => {
  if (skipOffline(t, lab)) return; // published ports are checked from the neighbour on the stand-in internet
  await lab.coveOk(['network', 'create', '--subnet', '172.29.20.0/24', 'healnet']);
  await lab.coveOk(['run', '-d', '--name', 'hweb', '--network', 'healnet', '-p', '8070:80', 'nginx']);
  await lab.coveOk(['run', '-dit', '--name', 'h1', '--network', 'healnet', 'alpine', 'ash']);
  assert.match((await fromNeighbour(`http://${LAB_IP}:8070/`, 3)) ?? '', /stand-in/i);
  const flushed = await lab.sh('nft flush ruleset');
  assert.equal(flushed.code, 0);
  const t0 = Date.now();
  let healedMs = -1;
  while (Date.now() - t0 < 3000) {
    if (
      (await lab.sh('nft list chain inet cove forward')).code === 0 &&
      /8070/.test((await lab.sh('nft list map inet cove pub4')).stdout)
    ) {
      healedMs = Date.now() - t0;
      break;
    }
    await sleep(50);
  }
  assert.ok(healedMs >= 0 && healedMs <= 1000, `healed after ${healedMs} ms`);
  t.diagnostic(`firewall restored ${healedMs} ms after nft flush ruleset`);
  assert.match((await fromNeighbour(`http://${LAB_IP}:8070/`, 3)) ?? '', /stand-in/i, 'published port back');
  assert.equal(await fromNeighbour(`http://${await ip('hweb', 'healnet')}/`), undefined, 'isolation back');
  // Flush again and publish at once: the run must not fail.
  await lab.sh('nft flush ruleset');
  await lab.coveOk(['run', '-d', '--name', 'hweb2', '--network', 'healnet', '-p', '8071:80', 'nginx']);
  assert.match((await fromNeighbour(`http://${LAB_IP}:8071/`, 3)) ?? '', /stand-in/i);
  assert.match((await fromContainer('h1', 'http://hweb/', 3)) ?? '', /stand-in/i);
});
