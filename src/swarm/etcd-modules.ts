/**
 * What loadEtcd() (./etcd-client.ts) hands out: the etcd client packages and
 * Cove's etcd store, in one module. `npm run build` also bundles this module
 * into one file (scripts/bundle-etcd.mjs), which loads much faster.
 */
export * as etcd3 from 'etcd3';
export * as cockatiel from 'cockatiel';
export * as store from '../store/etcd.js';
