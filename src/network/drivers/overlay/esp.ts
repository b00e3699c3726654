/**
 * The encrypted overlay transport where the kernel has IPsec ESP, as Docker's
 * libnetwork does it: VXLAN keeps using the nodes' data-path addresses, and
 * transport-mode ESP SAs between each pair of nodes carry the encrypted VNIs'
 * packets (the plan, its golden tests and the make-before-break order are in
 * esp-plan.ts; the kernel side in src/kernel/xfrm.ts). Keys: the managers' key
 * ring in the cluster store (src/cluster/key-rotation.ts); every key is
 * installed for receiving, the primary for sending.
 *
 * Selected by encrypted-transport.ts only when probeEsp() finds ESP. This
 * machine's kernel has none, so this path is verified here by its plans
 * (unit tests), not by packets.
 */
import { Unavailable } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import { ROTATION_KEY, parseRotation, primaryKey, type DataPathKey } from '../../../cluster/key-rotation.js';
import type { KernelOps } from '../../../kernel/ops.js';
import { applyEspFilter, listXfrm } from '../../../kernel/xfrm.js';
import type { Store } from '../../../store/store.js';
import { espDiff, espNftScript, espOverlayMtu, espPlan, type EspPlan } from './esp-plan.js';
import type { PeerNode, UnderlayTransport } from './transport.js';

export interface EspCluster {
  nodeId: string;
  dataPathAddr: string;
  store: Store;
  isManager: () => boolean;
}

export class EspTransport implements UnderlayTransport {
  readonly name = 'esp';
  private cluster: EspCluster | undefined;
  private stops: Array<() => void> = [];
  private keys: DataPathKey[] = [];
  private ready: Promise<void> = Promise.resolve();
  /** network id -> its VNI and the data-path addresses of its other nodes. */
  private readonly nets = new Map<string, { vni: number; peers: string[] }>();
  /** What the kernel holds (undefined: not read yet). */
  private have: EspPlan | undefined;
  private haveVnis = '';
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: { kernel: KernelOps; log?: Logger | undefined }) {}

  setCluster(c: EspCluster | undefined): void {
    for (const s of this.stops) s();
    this.stops = [];
    this.cluster = c;
    this.keys = [];
    if (!c) return;
    this.stops.push(
      c.store.watch(ROTATION_KEY, (ev) => {
        if (ev.type !== 'put') return;
        this.keys = parseRotation(ev.kv.value).keys;
        void this.serial(() => this.reconcile()).catch((e: Error) =>
          this.opts.log?.warn({ err: e.message }, 'esp: key update failed'),
        );
      }),
    );
    this.ready = (async () => {
      this.keys = parseRotation((await c.store.get(ROTATION_KEY))?.value).keys;
    })().catch((e: Error) => this.opts.log?.warn({ err: e.message }, 'esp: reading the key ring failed'));
  }

  async local(self: PeerNode): Promise<{ address: string; mtu: number }> {
    if (!this.cluster) throw new Unavailable('This node is not part of a swarm');
    await this.ready;
    // libnetwork: "encryption key is not present".
    if (this.keys.length === 0) throw new Unavailable('encryption key is not present');
    const underlay = (await this.opts.kernel.mtuOfAddress(self.dataPathAddr).catch(() => undefined)) ?? 1500;
    // The driver takes VXLAN's 50 off; ESP's expansion and the multiple of 4 are taken here.
    return { address: self.dataPathAddr, mtu: espOverlayMtu(underlay) + 50 };
  }

  remote(peer: PeerNode): string {
    return peer.dataPathAddr;
  }

  async setNetworkPeers(net: { id: string; vni: number }, peers: PeerNode[]): Promise<void> {
    this.nets.set(net.id, { vni: net.vni, peers: peers.map((p) => p.dataPathAddr) });
    await this.serial(() => this.reconcile());
  }

  releaseNetwork(networkId: string): void {
    this.nets.delete(networkId);
    void this.serial(() => this.reconcile()).catch((e: Error) =>
      this.opts.log?.warn({ err: e.message }, 'esp: removing SAs failed'),
    );
  }

  describe(): Record<string, string> {
    const p = primaryKey(this.keys);
    return {
      'com.cove.network.encryption': 'esp',
      ...(p ? { 'com.cove.network.encryption.key-tag': String(p.tag) } : {}),
    };
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** Brings the node's SAs, policies and VNI marks to the plan, in make-before-break order. */
  private async reconcile(): Promise<void> {
    const c = this.cluster;
    if (!c) return;
    // After a restart, what an earlier life installed is the starting point (adopted, not flushed: traffic keeps flowing).
    this.have ??= await listXfrm(null, c.dataPathAddr);
    const peers = [...this.nets.values()].flatMap((n) => n.peers);
    const want = espPlan(c.dataPathAddr, peers, this.keys);
    const ops = espDiff(this.have, want);
    if (ops.length > 0) {
      try {
        await this.opts.kernel.apply(null, ops);
      } catch (e) {
        this.have = undefined; // read the kernel again next time
        throw e;
      }
      this.opts.log?.info({ ops: ops.length, peers: want.policies.length }, 'esp: SAs and policies updated');
    }
    this.have = want;
    const vnis = [...this.nets.values()].map((n) => n.vni);
    const script = espNftScript(vnis);
    if (script !== this.haveVnis) {
      await applyEspFilter(null, script);
      this.haveVnis = script;
    }
  }
}
