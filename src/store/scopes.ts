/**
 * Store scopes: which store holds which records, chosen by coved's flags.
 *
 * Records live in one of two scopes (libnetwork's LocalScope/GlobalScope):
 * - `local`: what only this node needs (its containers, sandboxes, local
 *   networks, images, volumes). Default: the embedded store under the data
 *   root; `--local-store etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` (or
 *   `etcd+unix:///PATH/SOCKET`) keeps them in an etcd of the operator's
 *   instead, under a prefix of this engine's own.
 * - `cluster`: what every node of a swarm shares (swarm networks and their
 *   IPAM, services, tasks, nodes, liveness). `--cluster-store swarm` (default):
 *   the etcd members that swarm init/join run on the managers, reached over
 *   mutual TLS once the node is in a swarm; `--cluster-store none`: no cluster
 *   scope, swarm init/join are refused.
 *
 * Both scopes speak the one `Store` interface; keys are relative to their
 * store. KEYSPACES names each scope's prefixes for readers (and a unit test
 * checks that the two never share one, so a record's key tells its scope).
 */
import type { Store } from './store.js';

export type StoreScope = 'local' | 'cluster';

/** Each scope's key prefixes and what they hold (the keys writers use; a reader's map, not enforced). */
export const KEYSPACES: Readonly<Record<StoreScope, Readonly<Record<string, string>>>> = {
  local: {
    'network/networks/': 'networks of local scope (bridge, macvlan, host, null, remote plugins)',
    'network/ipam/': "local networks' subnets and address maps",
    'network/endpoints/': 'endpoints on local networks',
    'network/sandboxes/': "containers' network sandboxes",
    'network/names/': 'network names (unique per daemon)',
    'network/doomed/': 'bridges whose removal finishes in the background (crash-safe)',
    'runtime/containers/': 'container records',
    'runtime/execs/': 'exec records',
    'runtime/images/': 'image records',
    'runtime/volumes/': 'named volumes',
  },
  cluster: {
    'swarm/': 'the swarm object',
    'secret/': 'the cluster CA key and join tokens (managers only)',
    'nodes/': 'nodes',
    'alive/': "nodes' liveness, each on its node's lease",
    'networks/': 'swarm-scope networks (overlay, the ingress)',
    'netnames/': 'swarm network names',
    'ipam/': "swarm networks' subnets, VNIs and address maps",
    'tunnels/': "WireGuard tunnel address claims of encrypted overlays, under their node's ID",
    'logs/': "log requests to a node and its answers (service logs), under the node's ID",
    'endpoints/': "endpoints on swarm networks, under their node's ID",
    'services/': 'services',
    'tasks/': 'tasks',
    'node-local/': "records a node writes about itself (task reports, WireGuard key), under its node's ID",
  },
};

/** Where node-local records are kept. */
export type LocalStoreChoice =
  | { driver: 'embedded' }
  | {
      driver: 'etcd';
      endpoints: string[];
      /** Key prefix in etcd; default `cove-local/<engine id>/` so daemons sharing one etcd do not meet. */
      prefix?: string;
    };

/** Where cluster-wide records are kept. */
export type ClusterStoreChoice = 'swarm' | 'none';

export const DEFAULT_LOCAL_STORE = 'embedded';
export const DEFAULT_CLUSTER_STORE = 'swarm';

/** `--local-store`: `embedded`, `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` (plain http) or `etcd+unix:///PATH`. */
export function parseLocalStore(value: string): LocalStoreChoice {
  if (value === 'embedded') return { driver: 'embedded' };
  if (value.startsWith('etcd+unix:///')) {
    const path = value.slice('etcd+unix://'.length).replace(/\/+$/, '');
    if (/[\s,]/.test(path)) throw new Error(`invalid --local-store socket path ${JSON.stringify(path)}`);
    return { driver: 'etcd', endpoints: [`unix://${path}:0`] };
  }
  const m = /^etcd:\/\/([^/]+)(\/.*)?$/.exec(value);
  if (!m)
    throw new Error(
      `invalid --local-store ${JSON.stringify(value)}: use embedded, etcd://HOST:PORT[,...][/PREFIX] or etcd+unix:///PATH`,
    );
  const endpoints = m[1]!.split(',').map((hp) => {
    if (!/^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9A-Fa-f:.]+\]:\d{1,5}$/.test(hp))
      throw new Error(`invalid --local-store endpoint ${JSON.stringify(hp)}: HOST:PORT`);
    return `http://${hp}`;
  });
  const path = m[2]?.replace(/^\/+|\/+$/g, '');
  if (!path) return { driver: 'etcd', endpoints };
  return { driver: 'etcd', endpoints, prefix: `${path}/` };
}

/** `--cluster-store`: `swarm` or `none`. */
export function parseClusterStore(value: string): ClusterStoreChoice {
  if (value === 'swarm' || value === 'none') return value;
  throw new Error(`invalid --cluster-store ${JSON.stringify(value)}: use swarm or none`);
}

/** How a choice reads in logs and `coved --help`. */
export function describeLocalStore(c: LocalStoreChoice): string {
  return c.driver === 'embedded' ? 'embedded' : `etcd ${c.endpoints.join(',')}${c.prefix ? ` prefix ${c.prefix}` : ''}`;
}

/**
 * The stores of both scopes behind one face. The local store is there from
 * the start; the cluster store only while this node is in a swarm (it comes
 * and goes with init/join/leave, so it is asked for each time).
 */
export class StoreScopes {
  constructor(
    readonly local: Store,
    private readonly clusterStore: () => Store | undefined,
    readonly choice: { local: LocalStoreChoice; cluster: ClusterStoreChoice },
  ) {}

  /** The cluster store, or undefined outside a swarm (and always with --cluster-store none). */
  cluster(): Store | undefined {
    return this.choice.cluster === 'none' ? undefined : this.clusterStore();
  }

  of(scope: StoreScope): Store | undefined {
    return scope === 'local' ? this.local : this.cluster();
  }
}
