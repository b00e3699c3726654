/**
 * The overlay's underlay transport: which address VXLAN sends from on this
 * node, which address it sends to for a peer node, and the MTU of that path.
 * The plain transport uses the nodes' data-path addresses over the underlay
 * as it is. An encrypted transport (wireguard-go) swaps in its tunnel
 * addresses and a smaller MTU: register it with
 * `OverlayDriver.setTransport('encrypted', t)`; networks created with
 * `--opt encrypted` then use it (see index.ts, transportFor).
 */
import type { KernelOps } from '../../../kernel/ops.js';
import type { Store } from '../../../store/store.js';

export interface PeerNode {
  nodeId: string;
  /** The node's data-path address, as the cluster store has it. */
  dataPathAddr: string;
}

export interface UnderlayTransport {
  readonly name: string;
  /**
   * This node's VXLAN source address and the MTU available to VXLAN packets
   * on the path (VXLAN's own 50 bytes are taken off by the driver). Called
   * when a network comes up on this host; may set the transport up.
   */
  local(self: PeerNode): Promise<{ address: string; mtu: number }>;
  /** Where VXLAN packets for a peer node go; undefined: not known yet (see onRemotesChanged). */
  remote(peer: PeerNode): string | undefined;
  /** Calls back when remote() may answer differently for some peer (the driver then re-programs its peers). */
  onRemotesChanged?(cb: () => void): void;
  /** The other nodes with endpoints on a network up here that uses this transport (encryption peers). */
  setNetworkPeers?(net: { id: string; vni: number }, peers: PeerNode[]): Promise<void>;
  /** That network left this host. */
  releaseNetwork?(networkId: string): void;
  /** What `network inspect` shows about the transport on this node. */
  describe?(): Record<string, string>;
  /** Cluster membership (the store, for keys), or undefined when the node leaves or the daemon stops. */
  setCluster?(c: { nodeId: string; dataPathAddr: string; store: Store; isManager: () => boolean } | undefined): void;
}

/** VXLAN straight over the underlay: the data-path addresses, the underlay interface's MTU. */
export class PlainTransport implements UnderlayTransport {
  readonly name = 'plain';
  constructor(
    private readonly kernel: KernelOps,
    private readonly defaultMtu = 1500,
  ) {}

  async local(self: PeerNode): Promise<{ address: string; mtu: number }> {
    const mtu = await this.kernel.mtuOfAddress(self.dataPathAddr).catch(() => undefined);
    return { address: self.dataPathAddr, mtu: mtu ?? this.defaultMtu };
  }

  remote(peer: PeerNode): string {
    return peer.dataPathAddr;
  }
}
