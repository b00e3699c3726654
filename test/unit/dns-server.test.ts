/**
 * The embedded DNS's sockets and forwarder, on 127.0.0.1 in the test's own
 * namespace (the e2e tests bind 127.0.0.11 inside real sandboxes): local
 * answers over UDP and TCP, unknown names relayed raw (same ID) to an
 * upstream, and SERVFAIL within the time budget when the upstream is silent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { connect, createServer } from 'node:net';
import dnsPacket from 'dns-packet';
import { Resolver } from '../../src/network/dns/resolver.js';
import { DnsServer } from '../../src/network/dns/server.js';
import { silentLogger } from '../../src/common/log.js';

/** dns-packet's decoded shape, loosely typed (its typings lack rcode and answer data). */
interface Pkt {
  id: number;
  type: string;
  rcode: string;
  flag_rd: boolean;
  flag_ra: boolean;
  questions: Array<{ name: string; type: string }>;
  answers: Array<{ type: string; data: unknown; ttl?: number }>;
}
const decode = (b: Buffer): Pkt => dnsPacket.decode(b) as unknown as Pkt;

function query(name: string, id: number, type: dnsPacket.RecordType = 'A'): Buffer {
  return dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });
}

function udpAsk(port: number, msg: Buffer, timeoutMs = 4000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      reject(new Error('no answer'));
    }, timeoutMs);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m);
    });
    s.send(msg, port, '127.0.0.1');
  });
}

function tcpAsk(port: number, msg: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const c = connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    c.on('connect', () => {
      const l = Buffer.alloc(2);
      l.writeUInt16BE(msg.length);
      c.write(Buffer.concat([l, msg]));
    });
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        c.destroy();
        resolve(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      }
    });
    c.on('error', reject);
  });
}

/** A stand-in upstream (UDP and TCP on one port): answers every A query with 198.51.100.7 and records the IDs it saw. */
async function fakeUpstream(): Promise<{ port: number; seen: number[]; close: () => void }> {
  const seen: number[] = [];
  const reply = (m: Buffer): Buffer => {
    const q = decode(m);
    seen.push(q.id);
    return dnsPacket.encode({
      type: 'response',
      id: q.id,
      flags: dnsPacket.RECURSION_AVAILABLE,
      questions: q.questions as never,
      answers: [{ type: 'A', name: q.questions[0]!.name, ttl: 5, data: '198.51.100.7' }],
    });
  };
  // UDP on a free port, then TCP on the same number: that port may be some other process's TCP port (a
  // connection's ephemeral port on this busy machine), so on EADDRINUSE both go and another port is tried.
  for (let attempt = 0; ; attempt++) {
    const s = createSocket('udp4');
    s.on('message', (m, r) => s.send(reply(m), r.port, r.address));
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    const port = s.address().port;
    const srv = createServer((c) => {
      let buf = Buffer.alloc(0);
      c.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const out = reply(buf.subarray(2, 2 + buf.readUInt16BE(0)));
          const l = Buffer.alloc(2);
          l.writeUInt16BE(out.length);
          c.end(Buffer.concat([l, out]));
        }
      });
    });
    try {
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(port, '127.0.0.1', () => resolve());
      });
    } catch (e) {
      s.close();
      if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempt < 20) continue;
      throw e;
    }
    return {
      port,
      seen,
      close: () => {
        s.close();
        srv.close();
      },
    };
  }
}

async function setup(t: { after: (fn: () => unknown) => void }, upstream: string[]) {
  const resolver = new Resolver();
  resolver.setNetwork('n', {
    networkName: 'alpine-net',
    names: new Map([['alpine2', [{ ipv4: '172.18.0.3' }]]]),
    reverse: new Map(),
  });
  resolver.setSandbox('sb', ['n'], upstream);
  const server = new DnsServer({
    resolver,
    log: silentLogger,
    upstreamTimeoutMs: 300,
    totalTimeoutMs: 700,
    sockets: { udp: () => ({ address: '127.0.0.1', port: 0 }), tcp: () => ({ address: '127.0.0.1', port: 0 }) },
  });
  await server.attach('sb', '/nonexistent');
  t.after(() => server.close());
  return { server, addr: server.addressOf('sb')! };
}

test('local names over UDP and over TCP', async (t) => {
  const { addr } = await setup(t, []);
  const u = decode(await udpAsk(addr.udp.port, query('alpine2', 11)));
  assert.deepEqual([u.id, u.answers![0]!.data], [11, '172.18.0.3']);
  const c = decode(await tcpAsk(addr.tcp.port, query('alpine2', 12)));
  assert.deepEqual([c.id, c.answers![0]!.data], [12, '172.18.0.3']);
});

test('unknown names are relayed to the upstream with the original ID', async (t) => {
  const up = await fakeUpstream();
  t.after(up.close);
  const { addr, server } = await setup(t, [`127.0.0.1:${up.port}`]);
  const p = decode(await udpAsk(addr.udp.port, query('google.com', 0xbeef)));
  assert.equal(p.id, 0xbeef);
  assert.deepEqual(up.seen, [0xbeef], "the upstream saw the client's own query ID");
  assert.equal(p.answers![0]!.data, '198.51.100.7');
  const viaTcp = decode(await tcpAsk(addr.tcp.port, query('www.google.com', 0x1234)));
  assert.equal(viaTcp.answers![0]!.data, '198.51.100.7', 'TCP queries are forwarded over TCP');
  assert.deepEqual(up.seen, [0xbeef, 0x1234]);
  assert.ok(server.stats.forwarded >= 1);
});

test('an upstream that refuses or stays silent gives SERVFAIL quickly, not silence', async (t) => {
  // A bound socket that never answers, and a closed port (ECONNREFUSED).
  const silent = createSocket('udp4');
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', () => r()));
  t.after(() => silent.close());
  const { addr } = await setup(t, ['127.0.0.1:9', `127.0.0.1:${silent.address().port}`]);
  const t0 = Date.now();
  const p = decode(await udpAsk(addr.udp.port, query('nowhere.example', 77)));
  const ms = Date.now() - t0;
  assert.equal(p.rcode, 'SERVFAIL');
  assert.equal(p.id, 77);
  assert.ok(ms < 1500, `took ${ms} ms`);
});

test('throughput over real UDP sockets (50 in flight)', async (t) => {
  const { addr } = await setup(t, []);
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const total = 20_000;
  let got = 0;
  let sent = 0;
  const q = query('alpine2', 1);
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve) => {
    s.on('message', () => {
      got++;
      if (sent < total) {
        sent++;
        s.send(q, addr.udp.port, '127.0.0.1');
      }
      if (got === total) resolve();
    });
    for (let i = 0; i < 50; i++) {
      sent++;
      s.send(q, addr.udp.port, '127.0.0.1');
    }
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  s.close();
  console.log(`# dns over udp: ${Math.round(total / secs)} queries/s (client and server in one process)`);
  // Every query answered; the rate is printed (the machine is shared, so only a loose floor is asserted).
  assert.equal(got, total);
  assert.ok(total / secs > 1_000);
});
