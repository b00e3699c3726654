import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  KEYSPACES,
  StoreScopes,
  parseClusterStore,
  parseLocalStore,
  describeLocalStore,
} from '../../src/store/scopes.js';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { openLocalStore } from '../../src/daemon/stores.js';
import { parseFlags } from '../../src/daemon/main.js';
import { SwarmController } from '../../src/swarm/controller.js';
import { defaultConfig } from '../../src/common/config.js';
import { silentLogger } from '../../src/common/log.js';

test('store scopes: --local-store and --cluster-store choose the stores; the defaults are the embedded store and swarm', () => {
  const d = parseFlags([]);
  assert.deepEqual(d.localStore, { driver: 'embedded' });
  assert.equal(d.clusterStore, 'swarm');
  const c = parseFlags(['--local-store', 'etcd://10.0.0.1:2379,etcd-b:2379/lab/n1', '--cluster-store=none']);
  assert.deepEqual(c.localStore, {
    driver: 'etcd',
    endpoints: ['http://10.0.0.1:2379', 'http://etcd-b:2379'],
    prefix: 'lab/n1/',
  });
  assert.equal(c.clusterStore, 'none');
  assert.throws(
    () => parseFlags(['--cluster-store', 'consul']),
    /invalid argument "consul" for "--cluster-store" flag/,
  );
  assert.throws(() => parseFlags(['--local-store', 'boltdb:///x']), /invalid --local-store "boltdb:\/\/\/x"/);
});

test('store scopes: the --local-store forms', () => {
  assert.deepEqual(parseLocalStore('embedded'), { driver: 'embedded' });
  assert.deepEqual(parseLocalStore('etcd://127.0.0.1:2379'), { driver: 'etcd', endpoints: ['http://127.0.0.1:2379'] });
  assert.deepEqual(parseLocalStore('etcd://[fd00::1]:2379/'), { driver: 'etcd', endpoints: ['http://[fd00::1]:2379'] });
  assert.deepEqual(parseLocalStore('etcd+unix:///run/etcd/c.sock/'), {
    driver: 'etcd',
    endpoints: ['unix:///run/etcd/c.sock:0'],
  });
  assert.throws(() => parseLocalStore('etcd://no-port'), /endpoint "no-port": HOST:PORT/);
  assert.throws(() => parseLocalStore('etcd://a:1,'), /endpoint "": HOST:PORT/);
  assert.throws(() => parseLocalStore(''), /invalid --local-store/);
  assert.equal(parseClusterStore('swarm'), 'swarm');
  assert.throws(() => parseClusterStore('etcd://x:1'), /use swarm or none/);
  assert.equal(describeLocalStore(parseLocalStore('etcd://h:1/p')), 'etcd http://h:1 prefix p/');
});

test("store scopes: no keyspace of one scope overlaps the other's, so a key tells its scope", () => {
  const local = Object.keys(KEYSPACES.local);
  const cluster = Object.keys(KEYSPACES.cluster);
  for (const l of local)
    for (const c of cluster) assert.ok(!l.startsWith(c) && !c.startsWith(l), `${l} and ${c} overlap`);
  for (const k of [...local, ...cluster]) assert.match(k, /^[a-z-]+\/([a-z-]+\/)?$/);
});

test('store scopes: the embedded local store lives under the data root; one face serves both scopes', async () => {
  const root = mkdtempSync(join(tmpdir(), 'cove-scopes-'));
  try {
    const local = await openLocalStore({ driver: 'embedded' }, root, 'e1');
    assert.ok(local instanceof EmbeddedStore);
    await local.put('runtime/containers/x', '{}');
    assert.ok(existsSync(join(root, 'store')));
    let cluster: EmbeddedStore | undefined;
    const scopes = new StoreScopes(local, () => cluster, { local: { driver: 'embedded' }, cluster: 'swarm' });
    assert.equal(scopes.of('local'), local);
    assert.equal(scopes.of('cluster'), undefined, 'outside a swarm there is no cluster store');
    cluster = new EmbeddedStore(join(root, 'cluster'));
    assert.equal(scopes.of('cluster'), cluster);
    const off = new StoreScopes(local, () => cluster, { local: { driver: 'embedded' }, cluster: 'none' });
    assert.equal(off.cluster(), undefined, '--cluster-store none: never a cluster store');
    await cluster.close();
    await local.close();
    // Reopened from the same flags, the local records are still there.
    const again = await openLocalStore({ driver: 'embedded' }, root, 'e1');
    assert.equal((await again.get('runtime/containers/x'))?.value, '{}');
    await again.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('store scopes: an etcd local store that does not answer stops the start with a clear error', async () => {
  const root = mkdtempSync(join(tmpdir(), 'cove-scopes-'));
  try {
    await assert.rejects(
      openLocalStore(parseLocalStore(`etcd+unix://${root}/absent.sock`), root, 'e1'),
      /local store etcd unix:\/\/.*absent\.sock:0 unreachable: cluster store unreachable/,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('store scopes: --cluster-store none refuses swarm init and join with 503 and changes nothing', async () => {
  const root = mkdtempSync(join(tmpdir(), 'cove-scopes-'));
  try {
    const swarm = new SwarmController({
      config: defaultConfig({ dataRoot: root, clusterStore: 'none' }),
      log: silentLogger,
      clusterAware: () => [],
      engineVersion: 'test',
    });
    const off = (e: unknown) =>
      (e as { status?: number }).status === 503 && /--cluster-store none/.test((e as Error).message);
    await assert.rejects(swarm.init({ AdvertiseAddr: '192.0.2.10' }), off);
    await assert.rejects(swarm.join({ RemoteAddrs: ['192.0.2.11:2377'], JoinToken: 'x' }), off);
    assert.equal(swarm.local, undefined);
    assert.ok(!existsSync(join(root, 'swarm')));
    await swarm.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
