/**
 * The embedded DNS's answers, from crafted packets (dns-packet encodes the
 * queries and decodes our hand-written responses): names, aliases, short IDs,
 * round robin, AAAA, PTR, scoping by the asker's networks, forwarding of
 * unknown names, and the cost per query.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { Resolver, addressFromReverse, type NameEntry } from '../../src/network/dns/resolver.js';
import { parseQuery } from '../../src/network/dns/packet.js';

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

function query(name: string, type: dnsPacket.RecordType = 'A', id = 4242): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
  });
}

function table(entries: Record<string, NameEntry[]>, reverse: Record<string, string> = {}, networkName = 'alpine-net') {
  return { networkName, names: new Map(Object.entries(entries)), reverse: new Map(Object.entries(reverse)) };
}

function answer(r: Resolver, sb: string, msg: Buffer) {
  const res = r.resolve(sb, msg);
  assert.equal(res.kind, 'answer', 'expected a local answer');
  return decode((res as { response: Buffer }).response);
}

function setup(): Resolver {
  const r = new Resolver(60);
  r.setNetwork(
    'net1',
    table(
      {
        alpine1: [{ ipv4: '172.18.0.2' }],
        alpine2: [{ ipv4: '172.18.0.3', ipv6: 'fd00::3' }],
        web: [{ ipv4: '172.18.0.10' }, { ipv4: '172.18.0.11' }, { ipv4: '172.18.0.12' }],
        '0123456789ab': [{ ipv4: '172.18.0.2' }],
      },
      { '172.18.0.3': 'alpine2.alpine-net', 'fd00::3': 'alpine2.alpine-net' },
    ),
  );
  r.setNetwork('net2', table({ alpine3: [{ ipv4: '10.5.0.2' }], alpine2: [{ ipv4: '10.5.0.9' }] }, {}, 'other'));
  r.setSandbox('sb1', ['net1'], ['10.99.0.1']);
  r.setSandbox('sb4', ['net2', 'net1'], ['10.99.0.1']);
  return r;
}

test('A for a container name on a shared network; ID, TTL and question are kept; case does not matter', () => {
  const r = setup();
  const p = answer(r, 'sb1', query('Alpine2', 'A', 777));
  assert.equal(p.id, 777);
  assert.equal(p.type, 'response');
  assert.equal(p.rcode, 'NOERROR');
  assert.equal(p.questions![0]!.name, 'Alpine2');
  assert.deepEqual(
    p.answers!.map((a) => [a.type, a.data, (a as { ttl?: number }).ttl]),
    [['A', '172.18.0.3', 60]],
  );
  assert.ok(p.flag_rd && p.flag_ra);
});

test("the asker's own name and its short ID resolve", () => {
  const r = setup();
  assert.deepEqual(
    answer(r, 'sb1', query('alpine1')).answers!.map((a) => a.data),
    ['172.18.0.2'],
  );
  assert.deepEqual(
    answer(r, 'sb1', query('0123456789ab')).answers!.map((a) => a.data),
    ['172.18.0.2'],
  );
});

test('AAAA answers IPv6; a known name without IPv6 is an empty NOERROR (not forwarded)', () => {
  const r = setup();
  assert.deepEqual(
    answer(r, 'sb1', query('alpine2', 'AAAA')).answers!.map((a) => a.data),
    ['fd00::3'],
  );
  const p = answer(r, 'sb1', query('alpine1', 'AAAA'));
  assert.equal(p.rcode, 'NOERROR');
  assert.equal(p.answers!.length, 0);
});

test('an alias on several containers returns all their IPs, rotating the order', () => {
  const r = setup();
  const orders = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const ips = answer(r, 'sb1', query('web')).answers!.map((a) => a.data as string);
    assert.deepEqual([...ips].sort(), ['172.18.0.10', '172.18.0.11', '172.18.0.12']);
    orders.add(ips[0]!);
  }
  assert.equal(orders.size, 3, 'each answer starts with another address');
});

test('PTR for a container address answers name.network (v4 and v6)', () => {
  const r = setup();
  const p = answer(r, 'sb1', query('3.0.18.172.in-addr.arpa', 'PTR'));
  assert.deepEqual(
    p.answers!.map((a) => [a.type, a.data]),
    [['PTR', 'alpine2.alpine-net']],
  );
  const rev6 = '3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa';
  assert.equal(addressFromReverse(rev6), 'fd00::3');
  assert.equal(answer(r, 'sb1', query(rev6, 'PTR')).answers![0]!.data, 'alpine2.alpine-net');
});

test('names of networks the asker is not on are not answered: forwarded upstream instead', () => {
  const r = setup();
  assert.deepEqual(r.resolve('sb1', query('alpine3')), { kind: 'forward', servers: ['10.99.0.1'] });
  assert.deepEqual(r.resolve('sb1', query('google.com')), { kind: 'forward', servers: ['10.99.0.1'] });
  assert.deepEqual(r.resolve('sb1', query('1.0.99.10.in-addr.arpa', 'PTR')).kind, 'forward');
});

test('<name>.<network> resolves in that network only (and the PTR target resolves forward)', () => {
  const r = setup();
  assert.deepEqual(
    answer(r, 'sb4', query('alpine2.alpine-net')).answers!.map((a) => a.data),
    ['172.18.0.3'],
  );
  assert.deepEqual(
    answer(r, 'sb4', query('alpine2.other')).answers!.map((a) => a.data),
    ['10.5.0.9'],
  );
  assert.equal(r.resolve('sb1', query('alpine3.other')).kind, 'forward', 'sb1 is not on "other"');
});

test("the first of the asker's networks that knows a name wins (libnetwork's order)", () => {
  const r = setup();
  assert.deepEqual(
    answer(r, 'sb4', query('alpine2')).answers!.map((a) => a.data),
    ['10.5.0.9'],
  );
  assert.deepEqual(
    answer(r, 'sb4', query('alpine1')).answers!.map((a) => a.data),
    ['172.18.0.2'],
  );
});

test('changes apply at once: a network table replaced, a sandbox removed', () => {
  const r = setup();
  r.setNetwork('net1', table({ alpine1: [{ ipv4: '172.18.0.2' }] }));
  assert.equal(r.resolve('sb1', query('alpine2')).kind, 'forward');
  r.deleteSandbox('sb1');
  const p = answer(r, 'sb1', query('alpine1'));
  assert.equal(p.rcode, 'SERVFAIL');
});

test('packets that are not a plain query are never answered from the tables', () => {
  const r = setup();
  const resp = dnsPacket.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'alpine1' }] });
  assert.equal(r.resolve('sb1', resp).kind, 'forward');
  assert.equal(parseQuery(Buffer.from([1, 2, 3])), undefined);
  const two = dnsPacket.encode({
    type: 'query',
    id: 1,
    questions: [
      { type: 'A', name: 'alpine1' },
      { type: 'A', name: 'alpine2' },
    ],
  });
  assert.equal(parseQuery(two), undefined);
});

test('EDNS queries (dig adds an OPT record) are answered too', () => {
  const r = setup();
  const q = dnsPacket.encode({
    type: 'query',
    id: 9,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: 'A', name: 'alpine1' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, flags: 0, options: [] } as never],
  });
  assert.deepEqual(
    answer(r, 'sb1', q).answers!.map((a) => a.data),
    ['172.18.0.2'],
  );
});

test('resolving costs a few microseconds per query', () => {
  const r = setup();
  const q = query('alpine2');
  for (let i = 0; i < 5000; i++) r.resolve('sb1', q);
  const n = 100_000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) r.resolve('sb1', q);
  const us = Number(process.hrtime.bigint() - t0) / 1000 / n;
  console.log(`# resolver: ${us.toFixed(2)} µs per query`);
  assert.ok(us < 20, `resolve took ${us} µs`);
});
