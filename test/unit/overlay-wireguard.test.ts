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
  tunnelClaimPrefix,
} from '../../src/network/drivers/overlay/tunnel-address.js';
import { EmbeddedStore } from '../../src/store/embedded.js';
import type { Store, TxnOp } from '../../src/store/store.js';
import { workerGrants } from '../../src/swarm/controller.js';

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

async function tunnelStore(nodes: string[]): Promise<{ store: EmbeddedStore; done: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'cove-tun-'));
  const store = new EmbeddedStore(dir);
  for (const n of nodes) await store.put(`nodes/${n}`, JSON.stringify({ ID: n }));
  return {
    store,
    done: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Every tunnel claim in the store: "holder/address". */
async function tunnelClaims(store: Store): Promise<string[]> {
  return (await store.list(TUNNEL_CLAIMS)).map((kv) => kv.key.slice(TUNNEL_CLAIMS.length));
}

// Force the worst case: every node's hash gives the same first candidates.
const SAME = ['100.64.0.5', '100.64.0.6', '100.64.0.7'];

test('tunnel addresses: two nodes racing for one address never share it; each claim is under its own node ID', async () => {
  const { store, done } = await tunnelStore(['a', 'b', 'c', 'd']);
  try {
    const [ra, rb] = await Promise.all([
      claimTunnelAddress(store, 'a', { candidates: SAME }),
      claimTunnelAddress(store, 'b', { candidates: SAME }),
    ]);
    assert.notEqual(ra, rb, 'concurrent claims of one address: one wins, the other takes the next');
    assert.deepEqual([ra, rb].sort(), ['100.64.0.5', '100.64.0.6']);
    assert.deepEqual((await tunnelClaims(store)).sort(), [`a/${ra}`, `b/${rb}`].sort());
    assert.equal((await store.get(tunnelClaimPrefix('a') + ra))?.value, 'a');
    // A restart keeps the address (the hint from its record, or its claim among the candidates).
    assert.equal(await claimTunnelAddress(store, 'a', { hint: ra, candidates: SAME }), ra);
    assert.equal(await claimTunnelAddress(store, 'b', { candidates: SAME }), rb);
    assert.equal(await claimTunnelAddress(store, 'c', { candidates: SAME }), '100.64.0.7');
    await assert.rejects(claimTunnelAddress(store, 'd', { candidates: SAME }), /no free WireGuard tunnel address/);
    assert.equal((await tunnelClaims(store)).length, 3, 'a refused claim leaves nothing');
    // A node racing itself (two calls at once) ends with one claim, the same for both.
    const [e1, e2] = await Promise.all([
      claimTunnelAddress(store, 'e', { candidates: ['100.64.1.1', '100.64.1.2'] }),
      claimTunnelAddress(store, 'e', { candidates: ['100.64.1.1', '100.64.1.2'] }),
    ]);
    assert.equal(e1, '100.64.1.1');
    assert.equal(e2, e1);
  } finally {
    await done();
  }
});

test("tunnel addresses: a claim whose node left the swarm is free (never deleted by another node); the hashed address stays a node's", async () => {
  const { store, done } = await tunnelStore(['a', 'b', 'c']);
  try {
    const ra = await claimTunnelAddress(store, 'a', { candidates: SAME });
    const rb = await claimTunnelAddress(store, 'b', { candidates: SAME });
    assert.equal(await claimTunnelAddress(store, 'c', { candidates: SAME }), '100.64.0.7');
    // a is removed from the swarm (nodes/a gone) but its claim is still there (node rm failed to delete it).
    await store.delete('nodes/a');
    await store.put('nodes/d', JSON.stringify({ ID: 'd' }));
    assert.equal(await claimTunnelAddress(store, 'd', { candidates: SAME }), ra, "d takes over a's address");
    assert.equal((await store.get(tunnelClaimPrefix('a') + ra))?.value, 'a', "d never touches a's key");
    assert.equal((await store.get(tunnelClaimPrefix('d') + ra))?.value, 'd');
    // b restarts: its address is still its own.
    assert.equal(await claimTunnelAddress(store, 'b', { hint: rb, candidates: SAME }), rb);
    // With real IDs: 300 nodes at once, 300 distinct addresses, each its hashed one unless another had it.
    const ids = Array.from({ length: 300 }, (_, i) => `node-${i}`);
    for (const id of ids) await store.put(`nodes/${id}`, JSON.stringify({ ID: id }));
    const addrs = await Promise.all(ids.map((id) => claimTunnelAddress(store, id)));
    assert.equal(new Set(addrs).size, ids.length);
    const hashed = addrs.filter((a, i) => a === tunnelCandidates(ids[i]!, 1)[0]).length;
    assert.ok(hashed >= 295, `${hashed} of 300 got their hashed address`);
    // Restarted, every one of them keeps its address.
    assert.deepEqual(await Promise.all(ids.map((id) => claimTunnelAddress(store, id))), addrs);
  } finally {
    await done();
  }
});

test('tunnel addresses: a node admitted between the node list and the claim fails the guard; a stale own claim is let go', async () => {
  const { store, done } = await tunnelStore(['a']);
  try {
    // x joins and claims .5 right after a has read the node list and the claims (a's view has neither).
    let joined = false;
    const racing = new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === 'txn')
          return async (ops: TxnOp[]) => {
            if (!joined) {
              joined = true;
              await store.put('nodes/x', JSON.stringify({ ID: 'x' }));
              await store.put(tunnelClaimPrefix('x') + SAME[0], 'x');
            }
            return target.txn(ops);
          };
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    assert.equal(await claimTunnelAddress(racing, 'a', { candidates: SAME }), SAME[1]);
    assert.deepEqual((await tunnelClaims(store)).sort(), [`a/${SAME[1]}`, `x/${SAME[0]}`]);
    // A claim of a's made while y was not a member, for the address y holds: a lets it go and claims another.
    await store.put(tunnelClaimPrefix('a') + SAME[2], 'a');
    await store.put('nodes/y', JSON.stringify({ ID: 'y' }));
    await store.put(tunnelClaimPrefix('y') + SAME[2], 'y');
    await store.delete(tunnelClaimPrefix('a') + SAME[1]);
    assert.equal(await claimTunnelAddress(store, 'a', { hint: SAME[2], candidates: SAME }), SAME[1]);
    assert.deepEqual((await tunnelClaims(store)).sort(), [`a/${SAME[1]}`, `x/${SAME[0]}`, `y/${SAME[2]}`]);
  } finally {
    await done();
  }
});

test("a worker's etcd role writes its own tunnel claims only, as every record it writes: under its node ID", () => {
  const g = workerGrants('w1');
  const writable = (key: string) => g.readwrite.some((p) => key.startsWith(p));
  assert.ok(writable(tunnelClaimPrefix('w1') + '100.64.0.5'));
  assert.ok(!writable(tunnelClaimPrefix('w2') + '100.64.0.5'), "another node's tunnel claim");
  assert.ok(!writable(TUNNEL_CLAIMS + '100.64.0.5'), 'the shared layout of before');
  for (const p of g.readwrite) assert.ok(p.includes('w1/') || p === 'alive/w1', p);
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
