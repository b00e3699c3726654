/**
 * The seam between cluster membership (swarm mode: src/swarm, src/cluster) and
 * everything that works across hosts (the overlay driver, swarm-scoped
 * networks and their IPAM, services, the ingress mesh, encryption).
 *
 * A node outside a swarm has no Membership. After `swarm init` or
 * `swarm join` the daemon builds one and hands it to the components that
 * need it (`attachCluster`); after `swarm leave` it takes it back
 * (`detachCluster`). Components keep no cluster state of their own outside
 * the cluster store: everything they need to rebuild their kernel state after
 * a restart is in `store` (desired state) or in the local store.
 *
 * Keyspace of the cluster store (keys are relative: the store is already
 * scoped to the cluster):
 *   swarm/...            cluster spec, join tokens, CA        (src/swarm)
 *   nodes/<id>           node records: role, availability     (src/swarm)
 *   alive/<id>           leased liveness keys                 (src/swarm)
 *   networks/<id>        swarm-scoped network records         (src/network)
 *   netnames/<name>      swarm network names (unique)         (src/network)
 *   ipam/...             swarm-scoped address allocation      (src/network, see swarm-scope.ts)
 *   endpoints/<node>/<nid>/<eid> endpoints of swarm networks, under the node
 *                        that hosts them (overlay peers, DNS across hosts)
 *   services/<id>, tasks/<id>                                 (src/services)
 *   node-local/<id>/wireguard  a node's WireGuard public key, endpoint, tunnel
 *                        address (encrypted overlays, src/network/drivers/overlay)
 *   tunnels/wireguard/<id>/<addr>  a node's claim of its tunnel address (tunnel-address.ts)
 *   swarm/encryption-rotation  key rotation generation (managers bump it)
 */
import type { Store } from '../store/store.js';

export type NodeRole = 'manager' | 'worker';

export interface ClusterNode {
  /** Docker-style node ID (25 lowercase base-36 characters). */
  id: string;
  hostname: string;
  role: NodeRole;
  /** Address other nodes reach this node's daemon at (--advertise-addr). */
  addr: string;
  /** Underlay address for data traffic: VXLAN, WireGuard (--data-path-addr, else addr). */
  dataPathAddr: string;
  availability: 'active' | 'pause' | 'drain';
  /** Liveness from the node's lease: 'ready' while it holds one. */
  state: 'ready' | 'down' | 'unknown';
}

/** This node's view of the cluster it belongs to. */
export interface Membership {
  readonly self: ClusterNode;
  /** The cluster store (etcd over mutual TLS), keys relative to the cluster. */
  readonly store: Store;
  isManager(): boolean;
  /** Every node of the cluster, with liveness. */
  nodes(): Promise<ClusterNode[]>;
}

/** Implemented by components that work across hosts (the network controller, services). */
export interface ClusterAware {
  attachCluster(m: Membership): Promise<void>;
  detachCluster(): Promise<void>;
}
