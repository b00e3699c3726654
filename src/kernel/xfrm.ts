/**
 * IPsec (xfrm) for the overlay's ESP transport: typed SA/policy ops rendered
 * to `ip xfrm` lines (applied through KernelOps, i.e. the `ip -batch`
 * co-process: the keys travel on its stdin, never on a command line), the
 * listing of what the kernel holds (for adoption after a restart), the
 * nftables table that marks the encrypted VNIs, and the probe that says
 * whether this kernel can do ESP at all.
 *
 * The probe and the policy rendering were run on this machine; ESP states
 * could not be (this kernel has no esp4: `ip xfrm state add ... proto esp`
 * answers "Requested type not found"), so state lines and their parsing are
 * verified against iproute2's documented syntax and unit tests only.
 */
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KernelError } from './errors.js';
import { inNetns, runTool } from './exec.js';
import { createNetns, deleteNetns } from './netns.js';
import { nftApply } from './nft.js';
import { ipv4, netnsPath as checkNetnsPath } from './validate.js';

/** libnetwork's reqid and mark (`r = 0xD0C4E3`). */
export const XFRM_REQID = 0xd0c4e3;
export const XFRM_MARK = 0xd0c4e3;
export const XFRM_AEAD = 'rfc4106(gcm(aes))';
export const XFRM_ICV_BITS = 64;
export const XFRM_VXLAN_PORT = 4789;

export interface XfrmState {
  src: string;
  dst: string;
  spi: number;
  /** Hex of key + 4 bytes of salt. */
  aeadKey: string;
  /** The ring key's tag (not part of the kernel's identity of the SA). */
  tag: number;
  dir: 'in' | 'out';
}

export interface XfrmPolicy {
  src: string;
  dst: string;
  /** The outbound SA's SPI in the template. */
  spi: number;
}

export type XfrmOp =
  | { kind: 'xfrm-state-add'; state: XfrmState }
  | { kind: 'xfrm-state-del'; src: string; dst: string; spi: number }
  | { kind: 'xfrm-policy-update'; policy: XfrmPolicy }
  | { kind: 'xfrm-policy-del'; src: string; dst: string };

function spiHex(spi: number): string {
  if (!Number.isInteger(spi) || spi < 0x100 || spi > 0xffffffff) throw new KernelError('xfrm', `invalid SPI ${spi}`);
  return `0x${spi.toString(16).padStart(8, '0')}`;
}

const MARK = `mark 0x${XFRM_MARK.toString(16)} mask 0xffffffff`;
const SELECTOR = (src: string, dst: string): string =>
  `src ${ipv4(src, 'xfrm source')}/32 dst ${ipv4(dst, 'xfrm destination')}/32 proto udp dport ${XFRM_VXLAN_PORT} dir out ${MARK}`;

/** One `ip` batch line (without the leading `ip`). */
export function renderXfrm(op: XfrmOp): string {
  switch (op.kind) {
    case 'xfrm-state-add': {
      const s = op.state;
      if (!/^[0-9a-f]{40}$/.test(s.aeadKey))
        throw new KernelError('xfrm', 'AEAD key must be 20 bytes (16 key + 4 salt), hex');
      return `xfrm state add src ${ipv4(s.src)} dst ${ipv4(s.dst)} proto esp spi ${spiHex(s.spi)} reqid ${XFRM_REQID} mode transport aead ${XFRM_AEAD} 0x${s.aeadKey} ${XFRM_ICV_BITS}`;
    }
    case 'xfrm-state-del':
      return `xfrm state delete src ${ipv4(op.src)} dst ${ipv4(op.dst)} proto esp spi ${spiHex(op.spi)}`;
    case 'xfrm-policy-update': {
      const p = op.policy;
      return `xfrm policy update ${SELECTOR(p.src, p.dst)} tmpl src ${ipv4(p.src)} dst ${ipv4(p.dst)} proto esp spi ${spiHex(p.spi)} reqid ${XFRM_REQID} mode transport`;
    }
    case 'xfrm-policy-del':
      return `xfrm policy delete ${SELECTOR(op.src, op.dst)}`;
  }
}

/**
 * `ip xfrm state list reqid R` output -> Cove's SAs (dir from `local`).
 * Blocks start with `src A dst B`; the `proto esp spi 0x.. reqid ..` line
 * and the `aead NAME 0xKEY ICV` line follow, indented.
 */
export function parseXfrmStates(text: string, local: string): XfrmState[] {
  const out: XfrmState[] = [];
  let cur: Partial<XfrmState> | undefined;
  const flush = (): void => {
    if (cur?.src && cur.dst && cur.spi !== undefined && cur.aeadKey)
      out.push({ tag: -1, dir: cur.src === local ? 'out' : 'in', ...cur } as XfrmState);
    cur = undefined;
  };
  for (const line of text.split('\n')) {
    let m = /^src (\S+) dst (\S+)/.exec(line);
    if (m) {
      flush();
      cur = { src: m[1]!, dst: m[2]! };
      continue;
    }
    if (!cur) continue;
    m = /proto esp spi (0x[0-9a-f]+) reqid (\d+)/.exec(line);
    if (m) {
      if (Number(m[2]) !== XFRM_REQID) cur = undefined;
      else cur.spi = Number(m[1]);
      continue;
    }
    m = /aead \S+ 0x([0-9a-f]+) \d+/.exec(line);
    if (m) cur.aeadKey = m[1]!;
  }
  flush();
  return out;
}

/** `ip xfrm policy list dir out` output -> Cove's policies (those with the mark and an ESP template). */
export function parseXfrmPolicies(text: string): XfrmPolicy[] {
  const out: XfrmPolicy[] = [];
  for (const block of text.split(/\n(?=src )/)) {
    const sel = /^src (\S+)\/32 dst (\S+)\/32 proto udp dport (\d+)/.exec(block);
    const mark = /mark (0x[0-9a-f]+)\//.exec(block);
    const spi = /proto esp spi (0x[0-9a-f]+) reqid (\d+)/.exec(block);
    if (
      !sel ||
      !mark ||
      !spi ||
      Number(mark[1]) !== XFRM_MARK ||
      Number(spi[2]) !== XFRM_REQID ||
      Number(sel[3]) !== XFRM_VXLAN_PORT
    )
      continue;
    out.push({ src: sel[1]!, dst: sel[2]!, spi: Number(spi[1]) });
  }
  return out;
}

/** What the kernel holds of Cove's ESP (reqid/mark 0xD0C4E3) in `netns` (null: the daemon's own). */
export async function listXfrm(
  netns: string | null,
  local: string,
): Promise<{ states: XfrmState[]; policies: XfrmPolicy[] }> {
  const st = await runTool(inNetns(netns, ['ip', 'xfrm', 'state', 'list', 'reqid', String(XFRM_REQID)]));
  if (st.code !== 0) throw new KernelError('ip xfrm state list', st.stderr || st.stdout);
  const sp = await runTool(inNetns(netns, ['ip', 'xfrm', 'policy', 'list', 'dir', 'out']));
  if (sp.code !== 0) throw new KernelError('ip xfrm policy list', sp.stderr || sp.stdout);
  return { states: parseXfrmStates(st.stdout, local), policies: parseXfrmPolicies(sp.stdout) };
}

/** Applies the ESP nftables script (see esp-plan.ts espNftScript) as one transaction. */
export async function applyEspFilter(netns: string | null, script: string): Promise<void> {
  if (netns !== null) checkNetnsPath(netns);
  await nftApply(script, netns);
}

export type EspProbe = { available: true } | { available: false; reason: string };

let probed: Promise<EspProbe> | undefined;

/**
 * Can this kernel carry ESP? Asked for real, in a scratch namespace made
 * for the question (nothing in any other namespace is touched): add a
 * transport-mode ESP SA with the AEAD Cove uses. Without xfrm, esp4 or
 * gcm(aes) the kernel refuses and the refusal is the reason. Cached per process.
 */
export function probeEsp(): Promise<EspProbe> {
  probed ??= (async (): Promise<EspProbe> => {
    const ns = join(tmpdir(), `cove-esp-probe-${process.pid}-${randomBytes(3).toString('hex')}`);
    try {
      await createNetns(ns);
    } catch (e) {
      return { available: false, reason: `cannot make a namespace to probe: ${(e as Error).message}` };
    }
    try {
      const line = renderXfrm({
        kind: 'xfrm-state-add',
        state: { src: '192.0.2.1', dst: '192.0.2.2', spi: 0x100, aeadKey: '00'.repeat(20), tag: 0, dir: 'out' },
      });
      const r = await runTool(inNetns(ns, ['ip', 'xfrm', ...line.split(' ').slice(1)]));
      if (r.code === 0) return { available: true };
      return {
        available: false,
        reason: `the kernel refuses an ESP state (${(r.stderr || r.stdout).trim().replace(/\s+/g, ' ')})`,
      };
    } catch (e) {
      return { available: false, reason: (e as Error).message };
    } finally {
      await deleteNetns(ns).catch(() => undefined);
    }
  })();
  return probed;
}

/** Tests: forget the cached answer. */
export function resetEspProbe(): void {
  probed = undefined;
}
