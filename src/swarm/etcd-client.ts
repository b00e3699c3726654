/**
 * The etcd client, loaded only when this node takes part in a swarm: etcd3
 * brings grpc-js and protobufjs (~26 MB of RSS), which a single-host daemon
 * never uses. Call loadEtcd() before making a store; code that already holds
 * a store may use etcdLoaded().
 *
 * In the coved bundle (dist/coved/, scripts/bundle-coved.mjs) it is a chunk
 * of that bundle. Run from the tsc output, it loads from the bundle `npm run
 * build` makes (etcd-modules.bundle.mjs, scripts/bundle-etcd.mjs) when that is
 * at least as new as the tsc output, else from the module graph (a plain tsc
 * build keeps working).
 */
import { statSync } from 'node:fs';

/** true in the coved bundle (esbuild's define, scripts/bundle-coved.mjs); not defined elsewhere. */
declare const COVE_BUNDLE: boolean | undefined;

export type EtcdModules = typeof import('./etcd-modules.js');

let loading: Promise<EtcdModules> | undefined;
let loaded: EtcdModules | undefined;

function bundleIsFresh(bundle: URL, modular: URL): boolean {
  try {
    return (
      statSync(bundle).mtimeMs >= statSync(modular).mtimeMs &&
      statSync(bundle).mtimeMs >= statSync(new URL('../store/etcd.js', import.meta.url)).mtimeMs
    );
  } catch {
    return false;
  }
}

/** Loads the client once; callers at the same time share one load. */
export function loadEtcd(): Promise<EtcdModules> {
  if (loaded) return Promise.resolve(loaded);
  if (!loading) {
    const bundle = new URL('./etcd-modules.bundle.mjs', import.meta.url);
    const modular = new URL('./etcd-modules.js', import.meta.url);
    const p = (
      typeof COVE_BUNDLE !== 'undefined' && COVE_BUNDLE
        ? import('./etcd-modules.js')
        : bundleIsFresh(bundle, modular)
          ? import(bundle.href)
          : import(modular.href)
    ) as Promise<EtcdModules>;
    loading = p.then(
      (m) => (loaded = m),
      (e: unknown) => {
        loading = undefined;
        throw e;
      },
    );
  }
  return loading;
}

/** The modules, once loadEtcd() ran (any holder of an EtcdStore knows it did). */
export function etcdLoaded(): EtcdModules {
  if (!loaded) throw new Error('the etcd client is not loaded (loadEtcd() first)');
  return loaded;
}
