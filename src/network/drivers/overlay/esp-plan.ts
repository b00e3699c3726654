/**
 * The IPsec (ESP) plan of encrypted overlays, as libnetwork's
 * drivers/overlay/encryption.go builds it, as data: pure functions from
 * (this node's address, the peer nodes' addresses, the managers' key ring,
 * the encrypted VNIs up here) to xfrm states and policies and the nftables
 * rules that mark the VNIs' packets, and the ordered diff between two plans.
 * src/kernel/xfrm.ts renders and applies them; esp.ts drives them.
 *
 * Per pair of nodes (transport mode, ESP, rfc4106(gcm(aes)) with a 64-bit
 * ICV, reqid 0xD0C4E3):
 *   - one INBOUND SA per key of the ring (src peer, dst self), so a peer
 *     sending with any key this node knows is understood;
 *   - one OUTBOUND SA, with the primary key (src self, dst peer);
 *   - one OUT policy: UDP to the peer's port 4789 carrying the mark
 *     0xD0C4E3 goes through that outbound SA.
 * SPI = FNV-1a 32 over (src as 16 bytes, tag big-endian, dst as 16 bytes),
 * so both ends compute the same SPI for a direction and a key without
 * talking. The AEAD key is the ring key followed by the SPI as 4 bytes of salt.
 * Only packets of an encrypted network's VNI get the mark (nftables on the
 * output hook), so plain overlays sharing port 4789 stay plain; on input,
 * VXLAN of those VNIs that did not come through IPsec is dropped.
 *
 * Rotation is make-before-break by ordering alone (libnetwork's "-rSA0,
 * +rSA3, +fSA2, +fSP2/-fSP1, -fSA1"): new inbound SAs first, then the new
 * outbound SA, then the policy switched to it, and only then old SAs deleted.
 * Since the primary is the ring's second newest key, every node has had a
 * key's inbound SA for one whole rotation before any node sends with it.
 *
 * Verified on this machine only as plans (golden unit tests): this kernel has
 * no ESP (the probe in src/kernel/xfrm.ts says so and wireguard-go is used).
 */
import { primaryKey, type DataPathKey } from '../../../cluster/key-rotation.js';
import {
  XFRM_MARK as ESP_MARK,
  XFRM_VXLAN_PORT as VXLAN_PORT,
  type XfrmOp,
  type XfrmPolicy,
  type XfrmState,
} from '../../../kernel/xfrm.js';

export type { XfrmOp, XfrmPolicy, XfrmState };
/** SPI(4) + sequence(4) + IV(8) + pad length(1) + next header(1) + ICV(8), as libnetwork's pktExpansion. */
export const ESP_OVERHEAD = 26;

export interface EspPlan {
  states: XfrmState[];
  policies: XfrmPolicy[];
}

/** An IPv4 address as Go's 16-byte net.IP (::ffff:a.b.c.d), which libnetwork hashes. */
function ip16(addr: string): Buffer {
  const b = Buffer.alloc(16);
  b[10] = 0xff;
  b[11] = 0xff;
  addr.split('.').forEach((o, i) => {
    b[12 + i] = Number(o);
  });
  return b;
}

/** FNV-1a, 32 bits. */
export function fnv1a32(data: Buffer): number {
  let h = 0x811c9dc5;
  for (const byte of data) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** The SPI of the SA carrying src -> dst with the key tagged `tag` (libnetwork's buildSPI). */
export function espSpi(src: string, dst: string, tag: number): number {
  const t = Buffer.alloc(4);
  t.writeUInt32BE(tag >>> 0);
  return fnv1a32(Buffer.concat([ip16(src), t, ip16(dst)]));
}

/** AEAD key material: the ring key (16 bytes) + the SPI as 4 bytes of salt, hex. */
export function espAeadKey(key: DataPathKey, spi: number): string {
  const salt = Buffer.alloc(4);
  salt.writeUInt32BE(spi >>> 0);
  return Buffer.concat([Buffer.from(key.key, 'base64'), salt]).toString('hex');
}

/** MTU inside an ESP-encrypted overlay (libnetwork's maxMTU: VXLAN, ESP expansion, then a multiple of 4). */
export function espOverlayMtu(underlayMtu: number): number {
  const m = underlayMtu - 50 - ESP_OVERHEAD;
  return m - (m % 4);
}

/** What the kernel should hold for `local` talking to `peers` (data-path addresses) with the ring `keys`. */
export function espPlan(local: string, peers: string[], keys: DataPathKey[]): EspPlan {
  const primary = primaryKey(keys);
  const plan: EspPlan = { states: [], policies: [] };
  if (!primary) return plan;
  for (const peer of [...new Set(peers)].filter((p) => p !== local).sort()) {
    for (const k of keys) {
      const spi = espSpi(peer, local, k.tag);
      plan.states.push({ src: peer, dst: local, spi, aeadKey: espAeadKey(k, spi), tag: k.tag, dir: 'in' });
    }
    const spi = espSpi(local, peer, primary.tag);
    plan.states.push({ src: local, dst: peer, spi, aeadKey: espAeadKey(primary, spi), tag: primary.tag, dir: 'out' });
    plan.policies.push({ src: local, dst: peer, spi });
  }
  return plan;
}

const stateId = (s: { src: string; dst: string; spi: number }): string => `${s.src}>${s.dst}#${s.spi}`;

/**
 * Ops taking the kernel from `have` to `want`, make-before-break: inbound
 * SAs added, outbound SAs added, policies pointed at them, policies of gone
 * peers removed, then outbound and inbound SAs no longer wanted deleted.
 */
export function espDiff(have: EspPlan, want: EspPlan): XfrmOp[] {
  const haveStates = new Map(have.states.map((s) => [stateId(s), s]));
  const wantStates = new Map(want.states.map((s) => [stateId(s), s]));
  const havePol = new Map(have.policies.map((p) => [`${p.src}>${p.dst}`, p]));
  const wantPol = new Map(want.policies.map((p) => [`${p.src}>${p.dst}`, p]));
  const ops: XfrmOp[] = [];
  const added = (dir: 'in' | 'out'): void => {
    for (const [id, s] of wantStates) {
      const h = haveStates.get(id);
      if (s.dir === dir && (!h || h.aeadKey !== s.aeadKey)) {
        if (h) ops.push({ kind: 'xfrm-state-del', src: h.src, dst: h.dst, spi: h.spi });
        ops.push({ kind: 'xfrm-state-add', state: s });
      }
    }
  };
  const removed = (dir: 'in' | 'out'): void => {
    for (const [id, s] of haveStates)
      if (s.dir === dir && !wantStates.has(id))
        ops.push({ kind: 'xfrm-state-del', src: s.src, dst: s.dst, spi: s.spi });
  };
  added('in');
  added('out');
  for (const [id, p] of wantPol)
    if (havePol.get(id)?.spi !== p.spi) ops.push({ kind: 'xfrm-policy-update', policy: p });
  for (const [id, p] of havePol) if (!wantPol.has(id)) ops.push({ kind: 'xfrm-policy-del', src: p.src, dst: p.dst });
  removed('out');
  removed('in');
  return ops;
}

/**
 * nftables for the encrypted VNIs (table `inet cove-esp`, replaced whole):
 * outgoing VXLAN of those VNIs gets the mark the policies match; incoming
 * VXLAN of those VNIs without an IPsec security path is dropped (libnetwork's
 * `-m policy --dir in --pol none` DROP), so nothing is accepted in plaintext.
 */
export function espNftScript(vnis: number[]): string {
  const list = [...new Set(vnis)].sort((a, b) => a - b);
  const lines = ['table inet cove-esp', 'delete table inet cove-esp'];
  if (list.length === 0) return lines.join('\n') + '\n';
  const set = `{ ${list.join(', ')} }`;
  lines.push(
    'table inet cove-esp {',
    '  chain mark-out {',
    '    type route hook output priority mangle;',
    `    udp dport ${VXLAN_PORT} @th,96,24 ${set} meta mark set 0x${ESP_MARK.toString(16)}`,
    '  }',
    '  chain plain-in {',
    '    type filter hook input priority filter;',
    `    udp dport ${VXLAN_PORT} @th,96,24 ${set} meta secpath missing drop`,
    '  }',
    '}',
  );
  return lines.join('\n') + '\n';
}
