/**
 * The wireguard-go transport's pure parts: device names, tunnel addresses,
 * key pairs, the `wg set` peer diff, `wg show dump` parsing, and the
 * managers' key-rotation record (compare-and-swap on the embedded store).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROTATION_KEY, parseRotation, requestKeyRotation } from '../../src/cluster/key-rotation.js';
import { parseWgDump } from '../../src/kernel/wireguard.js';
import {
  newKeyPair,
  pairPresharedKey,
  parseRecord,
  peerSetArgs,
  wireguardIfName,
} from '../../src/network/drivers/overlay/wireguard.js';
import {
  TUNNEL_CLAIMS,
  claimTunnelAddress,
  tunnelCandidates,
} from '../../src/network/drivers/overlay/tunnel-address.js';
import { EmbeddedStore } from '../../src/store/embedded.js';

test('device names fit IFNAMSIZ and differ per node', () => {
  const a = wireguardIfName('x3kq9zk1y2m3n4b5v6c7x8z9a');
  assert.equal(a, 'cwgx3kq9zk1y2m3');
  assert.ok(a.length <= 15);
  assert.notEqual(a, wireguardIfName('y3kq9zk1y2m3n4b5v6c7x8z9a'));
});

test('tunnel address candidates: stable per node, inside 100.64.0.0/10, never the network or broadcast address', () => {
  const firsts = Array.from({ length: 200 }, (_, i) => tunnelCandidates(`node${i}`, 1)[0]!);
  assert.equal(tunnelCandidates('node7', 1)[0], firsts[7]);
  for (const a of [...firsts, ...tunnelCandidates('x', 300)]) {
    const [o1, o2] = a.split('.').map(Number);
    assert.equal(o1, 100);
    assert.ok(o2! >= 64 && o2! <= 127, a);
    assert.notEqual(a, '100.64.0.0');
    assert.notEqual(a, '100.127.255.255');
  }
  assert.equal(new Set(tunnelCandidates('x', 300)).size, 300);
});

test('tunnel addresses are claimed by compare-and-swap: two nodes whose IDs hash alike never share one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cove-tun-'));
  const store = new EmbeddedStore(dir);
  try {
    const members = new Set(['a', 'b', 'c']);
    const isMember = async (id: string): Promise<boolean> => members.has(id);
    // Force the worst case: every node's hash gives the same first candidates.
    const same = ['100.64.0.5', '100.64.0.6', '100.64.0.7'];
    const [ra, rb] = await Promise.all([
      claimTunnelAddress(store, 'a', isMember, { candidates: same }),
      claimTunnelAddress(store, 'b', isMember, { candidates: same }),
    ]);
    assert.notEqual(ra, rb, 'concurrent claims of one address: one wins, the other takes the next');
    assert.deepEqual([ra, rb].sort(), ['100.64.0.5', '100.64.0.6']);
    // A restart keeps the address (the hint from its record, or its claim among the candidates).
    assert.equal(await claimTunnelAddress(store, 'a', isMember, { hint: ra, candidates: same }), ra);
    assert.equal(await claimTunnelAddress(store, 'b', isMember, { candidates: same }), rb);
    assert.equal(await claimTunnelAddress(store, 'c', isMember, { candidates: same }), '100.64.0.7');
    await assert.rejects(
      claimTunnelAddress(store, 'd', isMember, { candidates: same }),
      /no free WireGuard tunnel address/,
    );
    // A node that left the swarm: its address goes to the next node that needs one.
    members.delete('a');
    members.add('d');
    assert.equal(await claimTunnelAddress(store, 'd', isMember, { candidates: same }), ra);
    assert.equal((await store.get(TUNNEL_CLAIMS + ra))?.value, 'd');
    // With real IDs: 300 nodes, 300 distinct addresses.
    const ids = Array.from({ length: 300 }, (_, i) => `node-${i}`);
    for (const id of ids) members.add(id);
    const addrs = await Promise.all(ids.map((id) => claimTunnelAddress(store, id, isMember)));
    assert.equal(new Set(addrs).size, ids.length);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('key pairs are WireGuard keys: wg pubkey derives the same public key', () => {
  const k = newKeyPair();
  assert.match(k.privateKey, /^[A-Za-z0-9+/]{43}=$/);
  let pub: string;
  try {
    pub = execFileSync('wg', ['pubkey'], { input: k.privateKey }).toString().trim();
  } catch {
    return; // wg missing: covered by scripts/programs.txt and the e2e test
  }
  assert.equal(pub, k.publicKey);
});

test('peer diff: stale keys removed, new or changed peers set, unchanged ones left alone', () => {
  const have = [
    { publicKey: 'OLD', endpoint: '192.0.2.12:51820', allowedIps: ['100.64.0.2/32'] },
    { publicKey: 'SAME', endpoint: '192.0.2.13:51820', allowedIps: ['100.64.0.3/32'] },
  ];
  const want = new Map([
    ['NEW', { endpoint: '192.0.2.12:51820', allowed: '100.64.0.2/32' }],
    ['SAME', { endpoint: '192.0.2.13:51820', allowed: '100.64.0.3/32' }],
  ]);
  assert.deepEqual(peerSetArgs(have, want), [
    'peer',
    'OLD',
    'remove',
    'peer',
    'NEW',
    'endpoint',
    '192.0.2.12:51820',
    'allowed-ips',
    '100.64.0.2/32',
    'persistent-keepalive',
    '25',
  ]);
  assert.deepEqual(peerSetArgs(have.slice(1), new Map([...want].slice(1))), []);
});

test('wg show dump is parsed', () => {
  const d = parseWgDump(
    'PRIV\tPUB\t51820\toff\nPEER1\t(none)\t192.0.2.12:51820\t100.64.0.2/32\t1700000000\t100\t200\t25\nPEER2\t(none)\t(none)\t(none)\t0\t0\t0\toff\n',
  );
  assert.equal(d.publicKey, 'PUB');
  assert.equal(d.listenPort, 51820);
  assert.deepEqual(d.peers[0], {
    publicKey: 'PEER1',
    endpoint: '192.0.2.12:51820',
    allowedIps: ['100.64.0.2/32'],
    latestHandshake: 1700000000,
    rxBytes: 100,
    txBytes: 200,
  });
  assert.deepEqual(d.peers[1]!.allowedIps, []);
  assert.equal(d.peers[1]!.endpoint, undefined);
});

test('key rotation record: the schedule starts the clock, bumps when due, explicit requests always bump', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cove-rot-'));
  const store = new EmbeddedStore(dir);
  try {
    assert.equal(await requestKeyRotation(store, 'schedule', { ifOlderThanMs: 1000, now: 10_000 }), 0);
    assert.equal(await requestKeyRotation(store, 'schedule', { ifOlderThanMs: 1000, now: 10_500 }), 0);
    assert.equal(await requestKeyRotation(store, 'schedule', { ifOlderThanMs: 1000, now: 11_000 }), 1);
    assert.equal(await requestKeyRotation(store, 'node x removed', { now: 11_001 }), 2);
    const r = parseRotation((await store.get(ROTATION_KEY))?.value);
    assert.deepEqual(
      { ...r, keys: r.keys.map((k) => k.tag) },
      { generation: 2, at: 11_001, reason: 'node x removed', keys: [0, 1, 2] },
    );
    // Two managers at once: both bumps land, one after the other.
    const both = await Promise.all([requestKeyRotation(store, 'a'), requestKeyRotation(store, 'b')]);
    assert.deepEqual(both.sort(), [3, 4]);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('node records from the store: malformed ones count as no key (a watch never throws, wg never sees junk)', () => {
  const good = {
    nodeId: 'n1',
    publicKey: 'HOlfvIk8PIl/Ja3X96P8t4C84gCYivTfVJDKN/CWPEg=',
    endpoint: '192.0.2.11:51820',
    tunnelAddr: '100.64.0.9',
    generation: 1,
  };
  assert.deepEqual(parseRecord(JSON.stringify(good)), good);
  assert.equal(parseRecord('{'), undefined);
  assert.equal(parseRecord(JSON.stringify({ ...good, publicKey: 'x remove' })), undefined);
  assert.equal(parseRecord(JSON.stringify({ ...good, endpoint: '192.0.2.11:51820 peer X' })), undefined);
  assert.equal(parseRecord(JSON.stringify({ ...good, tunnelAddr: undefined })), undefined);
});

test('PresharedKeys: the same on both ends of a pair, different per pair and per ring key, a WireGuard key (32 bytes)', () => {
  const k1 = { tag: 1, key: Buffer.alloc(16, 1).toString('base64') };
  const k2 = { tag: 2, key: Buffer.alloc(16, 2).toString('base64') };
  const ab = pairPresharedKey(k1, 'nodeA', 'nodeB');
  assert.equal(pairPresharedKey(k1, 'nodeB', 'nodeA'), ab);
  assert.match(ab, /^[A-Za-z0-9+/]{43}=$/);
  assert.notEqual(pairPresharedKey(k1, 'nodeA', 'nodeC'), ab);
  assert.notEqual(pairPresharedKey(k2, 'nodeA', 'nodeB'), ab);
});

test('peer diff with PresharedKeys: a changed key is set through a file (never on the command line); the same key is left alone', () => {
  const have = [
    { publicKey: 'P', presharedKey: 'OLDPSK', endpoint: '192.0.2.12:51820', allowedIps: ['100.64.0.2/32'] },
  ];
  const same = new Map([['P', { endpoint: '192.0.2.12:51820', allowed: '100.64.0.2/32', psk: 'OLDPSK' }]]);
  assert.deepEqual(
    peerSetArgs(have, same, () => assert.fail('no file for an unchanged key')),
    [],
  );
  const rotated = new Map([['P', { endpoint: '192.0.2.12:51820', allowed: '100.64.0.2/32', psk: 'NEWPSK' }]]);
  assert.deepEqual(
    peerSetArgs(have, rotated, (k) => `/keys/${k}.psk`),
    [
      'peer',
      'P',
      'endpoint',
      '192.0.2.12:51820',
      'allowed-ips',
      '100.64.0.2/32',
      'persistent-keepalive',
      '25',
      'preshared-key',
      '/keys/P.psk',
    ],
  );
  assert.ok(!peerSetArgs(have, rotated, () => '/f').includes('NEWPSK'));
});

test('wg show dump: the preshared key column', () => {
  const d = parseWgDump(
    'PRIV\tPUB\t51820\toff\nPEER\tPSKB64\t192.0.2.12:51820\t100.64.0.2/32\t0\t0\t0\t25\nPEER2\t(none)\t(none)\t(none)\t0\t0\t0\toff\n',
  );
  assert.equal(d.peers[0]!.presharedKey, 'PSKB64');
  assert.equal(d.peers[1]!.presharedKey, undefined);
});
