/**
 * Store scopes chosen by coved's flags, as an operator meets them: a daemon
 * started with --local-store on a real etcd keeps its networks and containers
 * there (nothing in the embedded store's directory), a container it ran keeps
 * running and networking through a daemon restart, and --cluster-store none
 * refuses swarm mode with Docker's 503 while everything single-host works.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, Lab } from '../lab/lab.js';
import { EtcdLab } from './etcd-lab.js';
import { reaches } from './seed-helpers.js';
import { EtcdStore } from '../../src/store/etcd.js';

let lab: Lab | undefined;
let etcd: EtcdLab | undefined;
before(async () => {
  etcd = new EtcdLab('scope');
  await etcd.startCluster(1);
  lab = await Lab.create('cove-t-scope');
});
after(async () => {
  await lab?.destroy();
  await etcd?.destroy();
});

/** The etcd member's unix socket path, as --local-store etcd+unix:// takes it. */
const socketOf = (endpoint: string): string => endpoint.replace(/^unix:\/\//, '').replace(/:0$/, '');

test('--local-store etcd+unix://: networks and containers live in etcd and survive a daemon restart', async () => {
  const l = lab!;
  const flags = ['--local-store', `etcd+unix://${socketOf(etcd!.endpoints[0]!)}`];
  await l.startDaemon({ extraArgs: flags });
  await l.coveOk(['load', '-q', '-i', join(REPO, 'build/images/alpine.tar')]);
  await l.coveOk(['network', 'create', 'scoped']);
  await l.coveOk(['run', '-d', '--name', 'a1', '--network', 'scoped', 'alpine', 'sleep', '600']);
  await l.coveOk(['run', '-d', '--name', 'a2', '--network', 'scoped', 'alpine', 'sleep', '600']);
  assert.ok(await reaches(l, 'a1', 'a2'), 'a1 pings a2 by name');

  // The records are in etcd under this engine's prefix, and not in the embedded store's files.
  const store = new EtcdStore({ endpoints: etcd!.endpoints, prefix: '' });
  try {
    const keys = (await store.list('cove-local/')).map((kv) => kv.key);
    assert.ok(
      keys.some((k) => /^cove-local\/[0-9a-f-]+\/network\/networks\//.test(k)),
      keys.join('\n'),
    );
    assert.ok(
      keys.some((k) => /\/runtime\/containers\//.test(k)),
      keys.join('\n'),
    );
    assert.ok(
      keys.some((k) => /\/network\/sandboxes\//.test(k)),
      keys.join('\n'),
    );
  } finally {
    await store.close();
  }
  const embedded = join(l.dataRoot, 'store');
  assert.deepEqual(existsSync(embedded) ? readdirSync(embedded) : [], [], 'the embedded store holds nothing');

  await l.stopDaemon();
  await l.startDaemon({ extraArgs: flags });
  assert.match(await l.coveOk(['network', 'ls', '--format', '{{.Name}}']), /^scoped$/m);
  assert.match(await l.coveOk(['ps', '--format', '{{.Names}}']), /^a1$/m);
  assert.ok(await reaches(l, 'a2', 'a1'), 'after the restart a2 still pings a1 by name');
  await l.coveOk(['rm', '-f', 'a1', 'a2']);
  await l.coveOk(['network', 'rm', 'scoped']);
  await l.stopDaemon();
});

test('--cluster-store none: swarm init is refused (503) and the engine works single-host', async () => {
  const l = lab!;
  await l.startDaemon({ extraArgs: ['--cluster-store', 'none'] });
  const r = await l.cove(['swarm', 'init', '--advertise-addr', '127.0.0.1']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /swarm mode is off on this node: coved was started with --cluster-store none/);
  assert.match(await l.coveOk(['info', '--format', '{{.Swarm.LocalNodeState}}']), /^inactive$/m);
  await l.coveOk(['network', 'create', 'solo']);
  await l.coveOk(['network', 'rm', 'solo']);
  await l.stopDaemon();
});
