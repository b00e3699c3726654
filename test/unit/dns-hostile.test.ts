/**
 * Hostile input to the embedded DNS (issue 8 §1), on 127.0.0.1 in the test's
 * own process: whatever arrives, the server answers what Docker answers
 * (FORMERR for garbage, nothing for responses and runts), holds no more than
 * its caps, and the process lives on. The same packets are sent from inside a
 * real container in test/e2e/hostile-input.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import dnsPacket from 'dns-packet';
import { Resolver } from '../../src/network/dns/resolver.js';
import { DnsServer, type DnsLimits } from '../../src/network/dns/server.js';
import { screenQuery } from '../../src/network/dns/packet.js';
import { silentLogger } from '../../src/common/log.js';
import { hostilePackets } from '../lab/hostile-dns.js';

const rcodeOf = (b: Buffer) => b.readUInt16BE(2) & 0xf;

async function setup(t: { after: (fn: () => unknown) => void }, upstream: string[], limits?: Partial<DnsLimits>) {
  const resolver = new Resolver();
  resolver.setNetwork('n', {
    networkName: 'net',
    names: new Map([['alpine2', [{ ipv4: '172.18.0.3' }]]]),
    reverse: new Map(),
  });
  resolver.setSandbox('sb', ['n'], upstream);
  const server = new DnsServer({
    resolver,
    log: silentLogger,
    upstreamTimeoutMs: 300,
    totalTimeoutMs: 700,
    ...(limits ? { limits } : {}),
    sockets: { udp: () => ({ address: '127.0.0.1', port: 0 }), tcp: () => ({ address: '127.0.0.1', port: 0 }) },
  });
  await server.attach('sb', '/nonexistent');
  t.after(() => server.close());
  return { server, addr: server.addressOf('sb')! };
}

async function udpClient(t: { after: (fn: () => unknown) => void }): Promise<UdpSocket> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  t.after(() => s.close());
  return s;
}

/** Sends one datagram; the reply, or undefined after `waitMs` of silence. */
function ask(s: UdpSocket, port: number, msg: Buffer, waitMs = 400): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      s.off('message', on);
      resolve(undefined);
    }, waitMs);
    const on = (m: Buffer) => {
      clearTimeout(timer);
      s.off('message', on);
      resolve(m);
    };
    s.on('message', on);
    s.send(msg, port, '127.0.0.1');
  });
}

const query = (name: string, id: number) =>
  dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });

test('every hostile datagram gets what Docker gives it, and the server still answers', async (t) => {
  const { addr, server } = await setup(t, ['127.0.0.1:9']);
  const s = await udpClient(t);
  for (const p of hostilePackets()) {
    const reply = await ask(s, addr.udp.port, p.bytes);
    if (p.expect === 'silence') assert.equal(reply, undefined, `${p.name}: expected no reply`);
    else {
      assert.ok(reply, `${p.name}: expected ${p.expect}`);
      assert.equal(rcodeOf(reply), p.expect === 'FORMERR' ? 1 : 4, `${p.name}: rcode`);
      assert.equal(reply.readUInt16BE(0), p.bytes.readUInt16BE(0), `${p.name}: same ID`);
    }
    const ok = await ask(s, addr.udp.port, query('alpine2', 7));
    assert.ok(ok && rcodeOf(ok) === 0, `after ${p.name} the server still answers`);
  }
  assert.equal(server.stats.forwarded, 0, 'no garbage was relayed upstream');
  assert.equal(server.stats.handlerErrors, 0);
});

test('screenQuery is linear: a 64 KiB chain of backward pointers is refused fast', () => {
  const b = Buffer.alloc(65535);
  b.writeUInt16BE(1, 4);
  // Each two bytes point to the two before: a long chain, never a loop.
  b.writeUInt16BE(0xc000 | 12, 14);
  for (let off = 16; off + 2 <= b.length; off += 2) b.writeUInt16BE(0xc000 | (off - 2), off);
  const t0 = performance.now();
  for (let i = 0; i < 100; i++) screenQuery(b);
  assert.ok(performance.now() - t0 < 200);
});

test('an upstream that cannot be sent to (bad port) gives SERVFAIL, the process lives', async (t) => {
  const { addr } = await setup(t, ['127.0.0.1:0', '127.0.0.1:99999']);
  const s = await udpClient(t);
  const r = await ask(s, addr.udp.port, query('nosuchname', 5), 2000);
  assert.ok(r);
  assert.equal(rcodeOf(r), 2);
});

test('TCP: a length prefix too short for a header closes the connection; a huge one waits; both leave the server answering', async (t) => {
  const { addr, server } = await setup(t, []);
  for (const bytes of [Buffer.from([0, 0]), Buffer.from([0, 1, 0xff]), Buffer.from([0, 5, 1, 2, 3, 4, 5])]) {
    const closed = await new Promise<boolean>((resolve) => {
      const c = connect({ host: '127.0.0.1', port: addr.tcp.port }, () => c.write(bytes));
      c.on('error', () => undefined);
      c.on('close', () => resolve(true));
      setTimeout(() => {
        c.destroy();
        resolve(false);
      }, 1000);
    });
    assert.ok(closed, `server closed the connection after ${bytes.toString('hex')}`);
  }
  const s = await udpClient(t);
  assert.ok(await ask(s, addr.udp.port, query('alpine2', 3)));
  assert.ok(server.stats.dropped >= 3);
});

test('TCP connections past the per-sandbox cap are closed at once; the ones under it still work', async (t) => {
  const cap = 20;
  const { addr, server } = await setup(t, [], { tcpPerSandbox: cap });
  const held: Socket[] = [];
  t.after(() => held.forEach((c) => c.destroy()));
  const closedEarly: number[] = [];
  for (let i = 0; i < cap + 30; i++) {
    const c = connect({ host: '127.0.0.1', port: addr.tcp.port });
    c.on('error', () => undefined);
    c.on('close', () => closedEarly.push(i));
    held.push(c);
    await new Promise<void>((r) => c.once('connect', () => r()));
  }
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(server.load.tcp, cap);
  assert.equal(closedEarly.length, 30);
  assert.ok(
    closedEarly.every((i) => i >= cap),
    'only the ones over the cap were closed',
  );
  held.forEach((c) => c.destroy());
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(server.load.tcp, 0, 'every connection is counted out again');
});

test('forwards past the cap get SERVFAIL at once; 20,000 queries in a burst leave nothing held', async (t) => {
  const silent = createSocket('udp4');
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', () => r()));
  t.after(() => silent.close());
  const { addr, server } = await setup(t, [`127.0.0.1:${silent.address().port}`], { forwardsPerSandbox: 50 });
  const s = await udpClient(t);
  let servfail = 0;
  s.on('message', (m) => {
    if (rcodeOf(m) === 2) servfail++;
  });
  for (let i = 0; i < 20_000; i++) {
    s.send(query(`n${i}.example`, i & 0xffff), addr.udp.port, '127.0.0.1');
    if (i % 500 === 0) await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(server.load.forwards <= 50, `held ${server.load.forwards}`);
  assert.ok(server.stats.refusedOverCap > 0);
  await new Promise((r) => setTimeout(r, 1200));
  assert.equal(server.load.forwards, 0);
  assert.ok(servfail > 1000, `SERVFAILs ${servfail}`);
  const ok = await ask(s, addr.udp.port, query('alpine2', 9));
  assert.ok(ok && rcodeOf(ok) === 0);
});
