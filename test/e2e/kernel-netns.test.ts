/**
 * The kernel API on the real kernel: namespaces as files, ip co-processes,
 * nft transactions, sysctls, and sockets made inside a container's netns
 * (the embedded DNS answers on 127.0.0.11:53 there).
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { existsSync } from 'node:fs';
import { KernelLab, sh, shTry, inNs } from './kernel-lab.js';
import {
  createNetns,
  deleteNetns,
  udpSocketInNetns,
  tcpListenSocketInNetns,
  writeSysctls,
  readSysctl,
  isNetns,
  netnsInode,
  DISABLE_IPV6,
} from '../../src/kernel/netns.js';
import { IpBatch, ipBatchOnce, ipJson } from '../../src/kernel/ip.js';
import { nftApply, nftListJson, NftSession } from '../../src/kernel/nft.js';
import { KernelError } from '../../src/kernel/errors.js';
import { configureInNetns } from '../../src/kernel/rtnl.js';

const lab = new KernelLab('cvk-kn');
before(() => lab.enter());
after(() => lab.destroy());

test('a netns is a file: created, used, deleted; deleting twice is fine', async () => {
  const p = lab.ns('c1');
  await createNetns(p);
  assert.ok(isNetns(p));
  assert.notEqual(netnsInode(p), netnsInode('/proc/thread-self/ns/net'));
  const links = await ipJson<Array<{ ifname: string; operstate: string }>>(p, ['link', 'show']);
  assert.deepEqual(
    links.map((l) => l.ifname),
    ['lo'],
  );
  await assert.rejects(createNetns(p), KernelError);
  await deleteNetns(p);
  assert.equal(existsSync(p), false);
  await deleteNetns(p);
});

test('sysctls inside a netns and in the daemon netns', async () => {
  const p = lab.ns('c2');
  await createNetns(p, { sysctls: DISABLE_IPV6 });
  try {
    const out = sh(...inNs(p, ['cat', '/proc/sys/net/ipv6/conf/default/disable_ipv6']));
    assert.equal(out.trim(), '1');
    await writeSysctls(p, { 'net.ipv4.ip_forward': '1' });
    assert.equal(sh(...inNs(p, ['cat', '/proc/sys/net/ipv4/ip_forward'])).trim(), '1');
    await writeSysctls(null, { 'net.ipv4.ip_forward': '1' });
    assert.equal(readSysctl('net.ipv4.ip_forward'), '1');
    await assert.rejects(writeSysctls(p, { 'net.ipv4.no_such_thing': '1' }), KernelError);
    await assert.rejects(writeSysctls(p, { 'kernel.hostname': 'x' }), /only net/);
  } finally {
    await deleteNetns(p);
  }
});

test('IpBatch: commands run in order, a failure names its command, the co-process survives it and a syntax error', async () => {
  const ip = new IpBatch(null);
  try {
    await ip.run(['link add cvkbr0 type bridge', 'link set cvkbr0 up']);
    await assert.rejects(
      ip.run(['link add cvkbr0 type bridge']),
      (e: Error) => e instanceof KernelError && /ip link add cvkbr0 type bridge: .*File exists/.test(e.message),
    );
    await assert.rejects(ip.run(['addr add 10.1.2.300/24 dev cvkbr0']), KernelError); // kills ip
    await ip.run(['addr add 10.1.2.1/24 dev cvkbr0']); // restarted
    const addrs = await ipJson<Array<{ addr_info: Array<{ local: string }> }>>(null, ['addr', 'show', 'dev', 'cvkbr0']);
    assert.equal(addrs[0]!.addr_info[0]!.local, '10.1.2.1');
    // many groups in flight at once; each failure lands on its own group, with its own command named
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, (_, i) =>
        ip.run(
          i % 7 === 3
            ? [`link set cvkbr0 mtu ${1400 + i}`, `link set nosuch${i} up`]
            : [`link set cvkbr0 mtu ${1400 + i}`],
        ),
      ),
    );
    results.forEach((r, i) => {
      if (i % 7 === 3)
        assert.ok(
          r.status === 'rejected' && (r.reason as Error).message.startsWith(`ip link set nosuch${i} up: `),
          `group ${i}`,
        );
      else assert.equal(r.status, 'fulfilled', `group ${i}`);
    });
    const [br] = await ipJson<Array<{ mtu: number }>>(null, ['link', 'show', 'dev', 'cvkbr0']);
    assert.equal(br!.mtu, 1449, 'ran in order');
    await ip.run(['link del cvkbr0']);
  } finally {
    await ip.close();
  }
});

test('ipBatchOnce inside a container netns; a veth peer made directly in it', async () => {
  const p = lab.ns('c3');
  await createNetns(p);
  try {
    await ipBatchOnce(null, [`link add cvkv0 type veth peer name eth0 netns ${p}`]);
    await ipBatchOnce(p, ['link set lo up', 'addr add 10.9.0.2/24 dev eth0', 'link set eth0 up']);
    const links = await ipJson<Array<{ ifname: string }>>(p, ['link', 'show']);
    assert.deepEqual(links.map((l) => l.ifname).sort(), ['eth0', 'lo']);
    await assert.rejects(ipBatchOnce(p, ['link set lo up', 'link set nosuch up']), /ip link set nosuch up/);
  } finally {
    await ipBatchOnce(null, ['link del cvkv0']);
    await deleteNetns(p);
  }
});

test('nft: one transaction applies or not; nft -i session; JSON listing', async () => {
  await nftApply('table inet cvkt {\n chain c { type filter hook forward priority 0; policy accept; }\n}\n');
  try {
    await assert.rejects(
      nftApply('add rule inet cvkt c ip daddr 1.2.3.4 drop\nadd rule inet cvkt nochain drop\n'),
      /nochain|No such file/,
    );
    const j = (await nftListJson(['list', 'table', 'inet', 'cvkt'])) as { nftables: Array<Record<string, unknown>> };
    assert.equal(j.nftables.filter((x) => 'rule' in x).length, 0, 'failed transaction applied nothing');
    // In-process (libnftables on a pool thread): the transaction went to the calling thread's netns (the lab), never
    // to the namespace a pool thread may have been started in (the test runner's, our parent's: only read there).
    const root = sh('nsenter', [`--net=/proc/${process.ppid}/ns/net`, '--', 'nft', 'list', 'tables']);
    assert.doesNotMatch(root, /cvkt/);
    const s = new NftSession(null);
    try {
      await s.run(['add set inet cvkt s { type ipv4_addr; }', 'add element inet cvkt s { 10.0.0.1 }']);
      await assert.rejects(s.run(['add element inet cvkt nosuch { 10.0.0.2 }']), KernelError);
      const out = await s.run(['list set inet cvkt s']);
      assert.match(out, /10\.0\.0\.1/);
    } finally {
      await s.close();
    }
  } finally {
    await nftApply('delete table inet cvkt\n');
  }
});

test('nft into another netns by path: applied there only; a netns that is gone is ENOENT', async () => {
  const p = lab.ns('c5');
  await createNetns(p);
  try {
    await nftApply('table ip cvkn {\n set s { type ipv4_addr; elements = { 10.9.0.1 } }\n}\n', p);
    assert.match(sh(...inNs(p, ['nft', 'list', 'set', 'ip', 'cvkn', 's'])), /10\.9\.0\.1/);
    assert.doesNotMatch(sh('nft', ['list', 'tables']), /cvkn/);
    await assert.rejects(nftApply('add element ip cvkn nosuch { 10.9.0.2 }\n', p), /nosuch|No such file/);
  } finally {
    await deleteNetns(p);
  }
  await assert.rejects(
    nftApply('add table ip cvkn\n', p),
    (e: unknown) => e instanceof KernelError && e.code === 'ENOENT',
  );
});

test('UDP socket on 127.0.0.11:53 inside a container netns answers a query sent from inside it', async () => {
  const p = lab.ns('c4');
  await createNetns(p);
  await ipBatchOnce(p, ['link set lo up']);
  const fd = udpSocketInNetns(p, '127.0.0.11', 53);
  const sock = createSocket('udp4');
  try {
    await new Promise<void>((r) => sock.bind({ fd }, () => r()));
    sock.on('message', (msg, rinfo) => {
      // Answer as a DNS server would: flip QR, echo the rest (enough for nslookup to print the error)
      const reply = Buffer.from(msg);
      reply[2] = reply[2]! | 0x80;
      reply[3] = (reply[3]! & 0xf0) | 3; // NXDOMAIN
      sock.send(reply, rinfo.port, rinfo.address);
    });
    // 127.0.0.11:53 is free in the lab netns: the socket lives only in the container's
    const free = createSocket('udp4');
    await new Promise<void>((r, j) => {
      free.once('error', j);
      free.bind(53, '127.0.0.11', () => r());
    }).catch(() => undefined);
    free.close();
    const r = await new Promise<{ code: number; out: string }>((resolve) => {
      // async spawn: the server runs on this event loop
      void import('node:child_process').then(({ execFile }) => {
        const [c, a] = inNs(p, ['busybox', 'nslookup', 'web', '127.0.0.11']);
        execFile(c, a, { timeout: 8000 }, (err, stdout, stderr) =>
          resolve({ code: err ? 1 : 0, out: stdout + stderr }),
        );
      });
    });
    assert.match(r.out, /NXDOMAIN|can't find/i, r.out);
    assert.doesNotMatch(r.out, /timed out|no servers|connection refused/i);
  } finally {
    sock.close();
    await deleteNetns(p);
  }
});

test('TCP listening socket inside a netns accepts a connection made inside it', async () => {
  const p = lab.ns('c5');
  await createNetns(p);
  await ipBatchOnce(p, ['link set lo up']);
  const fd = tcpListenSocketInNetns(p, '127.0.0.1', 8080);
  const server = createServer((c) => c.end('hello from inside\n'));
  try {
    await new Promise<void>((r) => server.listen({ fd }, () => r()));
    const out = await new Promise<string>((resolve) => {
      void import('node:child_process').then(({ execFile }) => {
        const [c, a] = inNs(p, ['busybox', 'nc', '127.0.0.1', '8080']);
        execFile(c, a, { timeout: 8000 }, (_e, stdout) => resolve(stdout));
      });
    });
    assert.equal(out, 'hello from inside\n');
    assert.notEqual(shTry('busybox', ['nc', '-w', '1', '127.0.0.1', '8080']).out, 'hello from inside\n');
  } finally {
    await new Promise((r) => server.close(r));
    await deleteNetns(p);
  }
});

test('configureInNetns: rtnetlink inside a netns from a throwaway thread; the failed op is named, later ones do not run', async () => {
  const p = lab.ns('c6');
  await createNetns(p);
  try {
    await ipBatchOnce(null, [`link add cvkv1 type veth peer name eth0 netns ${p}`]);
    await configureInNetns(p, [
      { op: 'sysctl', key: 'net.ipv6.conf.eth0.disable_ipv6', value: '1' },
      { op: 'up', dev: 'lo' },
      { op: 'addr', dev: 'eth0', address: '10.9.1.2', prefix: 24 },
      { op: 'up', dev: 'eth0' },
      { op: 'route', dev: 'eth0', via: '10.9.1.1' },
    ]);
    const addrs = await ipJson<
      Array<{ ifname: string; addr_info: Array<{ local: string; prefixlen: number; family: string }> }>
    >(p, ['addr', 'show']);
    assert.deepEqual(
      addrs.map((a) => [a.ifname, a.addr_info.map((i) => `${i.local}/${i.prefixlen}`)]),
      [
        ['lo', ['127.0.0.1/8', '::1/128']],
        ['eth0', ['10.9.1.2/24']],
      ],
    );
    const routes = await ipJson<Array<{ dst: string; gateway?: string; dev: string }>>(p, ['route', 'show']);
    assert.equal(routes.find((r) => r.dst === 'default')?.gateway, '10.9.1.1');
    await assert.rejects(
      configureInNetns(p, [
        { op: 'up', dev: 'nosuch0' },
        { op: 'down', dev: 'eth0' },
      ]),
      (e: Error) =>
        e instanceof KernelError &&
        e.message.startsWith(`link set nosuch0 up (in ${p}): `) &&
        /No such device/.test(e.message),
    );
    const [eth0] = await ipJson<Array<{ flags: string[] }>>(p, ['link', 'show', 'dev', 'eth0']);
    assert.ok(eth0!.flags.includes('UP'), 'the op after the failure did not run');
    await configureInNetns(p, [
      { op: 'down', dev: 'eth0' },
      { op: 'rename', dev: 'eth0', to: 'gone0' },
      { op: 'del', dev: 'gone0' },
    ]);
    const links = await ipJson<Array<{ ifname: string }>>(p, ['link', 'show']);
    assert.deepEqual(
      links.map((l) => l.ifname),
      ['lo'],
    );
    await assert.rejects(configureInNetns(lab.ns('nonexistent'), [{ op: 'up', dev: 'lo' }]), /No such file/);
  } finally {
    await deleteNetns(p);
  }
});
