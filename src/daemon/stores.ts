/**
 * Opens the stores coved's flags chose (src/store/scopes.ts): the local store
 * at start, the embedded one unless --local-store names an etcd. The etcd
 * client is loaded only then (it costs ~26 MB of RSS a single-host daemon
 * with the embedded store never pays).
 */
import { join } from 'node:path';
import { EmbeddedStore } from '../store/embedded.js';
import type { Store } from '../store/store.js';
import { describeLocalStore, type LocalStoreChoice } from '../store/scopes.js';
import { loadEtcd } from '../swarm/etcd-client.js';

export async function openLocalStore(choice: LocalStoreChoice, dataRoot: string, engineId: string): Promise<Store> {
  if (choice.driver === 'embedded') return new EmbeddedStore(join(dataRoot, 'store'));
  const { store } = await loadEtcd();
  const s = new store.EtcdStore({
    endpoints: choice.endpoints,
    prefix: choice.prefix ?? `cove-local/${engineId}/`,
    dialTimeoutMs: 2000,
    requestTimeoutMs: 5000,
  });
  try {
    // Refuse to start on a store that does not answer (the restore right after would fail less clearly).
    await s.get('runtime/containers/');
  } catch (e) {
    await s.close().catch(() => undefined);
    throw new Error(`local store ${describeLocalStore(choice)} unreachable: ${(e as Error).message}`);
  }
  return s;
}
