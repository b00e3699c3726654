/**
 * The etcd client, loaded only when this node takes part in a swarm: etcd3
 * brings grpc-js and protobufjs (~26 MB of RSS), which a single-host daemon
 * never uses. Call loadEtcd() before making a store; code that already holds
 * a store may use etcdLoaded().
 */
export interface EtcdModules {
  etcd3: typeof import('etcd3');
  cockatiel: typeof import('cockatiel');
  store: typeof import('../store/etcd.js');
}

let loaded: EtcdModules | undefined;

export async function loadEtcd(): Promise<EtcdModules> {
  if (!loaded) {
    const [etcd3, cockatiel, store] = await Promise.all([import('etcd3'), import('cockatiel'), import('../store/etcd.js')]);
    loaded = { etcd3, cockatiel, store };
  }
  return loaded;
}

/** The modules, once loadEtcd() ran (any holder of an EtcdStore knows it did). */
export function etcdLoaded(): EtcdModules {
  if (!loaded) throw new Error('the etcd client is not loaded (loadEtcd() first)');
  return loaded;
}
