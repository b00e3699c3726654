/**
 * The encrypted overlay transport where the kernel has neither ESP nor
 * WireGuard: VXLAN of `--opt encrypted` networks runs through a wireguard-go
 * device of this node, so only WireGuard (UDP 51820) crosses the underlay.
 *
 *   node A                                   node B
 *   vxlan0 local 100.x.a ─► wg device ══ UDP 51820 ══► wg device ─► vxlan0 local 100.x.b
 *
 * - One device per node, named `cwg<12 of the node ID>` (unique per machine:
 *   UAPI sockets are shared by every netns). Its tunnel address
 *   (100.64.0.0/10) is claimed in the cluster store, unique by
 *   compare-and-swap (tunnel-address.ts); peers learn it from the node's
 *   record, and a peer whose record is not known yet gets no VXLAN entries
 *   until it is (the driver is told when records change).
 * - The node makes its own key pair; the private key stays in its data root
 *   (0600), the public key, WireGuard endpoint and tunnel address go to the
 *   cluster store at `node-local/<node id>/wireguard`.
 * - WireGuard peers: the nodes that have an endpoint on an encrypted network
 *   up here (the driver reports them), that are still swarm members
 *   (`nodes/<id>`: a removed node is dropped at once, its key no longer
 *   accepted) and have published a key.
 * - Keys rotate make-before-break: the node's key pair is its identity and
 *   stays; what the managers rotate (src/cluster/key-rotation.ts, their key
 *   ring) is each pair's WireGuard PresharedKey, derived from the ring's
 *   primary key and the two node IDs (both ends compute the same one without
 *   talking). A PresharedKey change does not touch the session in use
 *   (wireguard-go mixes it in at the next handshake only), so traffic keeps
 *   flowing on the current session while every node installs the new key;
 *   the next handshake (every 2 minutes, or on demand) uses it. A handshake
 *   that falls into the milliseconds when two nodes disagree fails and is
 *   retried 5 s later, still on the current session (valid for 180 s). The
 *   former way, a new key pair per rotation, forced a handshake that could
 *   only succeed once the peer had the new public key: that was a break.
 * - wireguard-go runs detached with its PID in `<exec-root>/wireguard/`, so a
 *   daemon restart re-adopts it; a check every few seconds restarts it if it
 *   died. It ends when the last encrypted network leaves this host.
 */
import { createHmac, generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Unavailable } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import {
  DEFAULT_ROTATION_MS,
  ROTATION_KEY,
  parseRotation,
  primaryKey,
  requestKeyRotation,
  type DataPathKey,
} from '../../../cluster/key-rotation.js';
import type { KernelOps } from '../../../kernel/ops.js';
import {
  WIREGUARD_GO,
  WIREGUARD_OVERHEAD,
  startWireguardGo,
  stopWireguardGo,
  wgSet,
  wgShow,
  wireguardPid,
} from '../../../kernel/wireguard.js';
import type { Store } from '../../../store/store.js';
import type { PeerNode, UnderlayTransport } from './transport.js';
import { claimTunnelAddress } from './tunnel-address.js';

export const WG_PORT = 51820;
const TUNNEL_PREFIX = 10;
const SUPERVISE_MS = 3000;
const STOP_GRACE_MS = 5000;

export interface WireguardCluster {
  nodeId: string;
  dataPathAddr: string;
  store: Store;
  isManager: () => boolean;
}

export interface WireguardRecord {
  nodeId: string;
  publicKey: string;
  /** host:port other nodes send WireGuard to. */
  endpoint: string;
  tunnelAddr: string;
  generation: number;
}

interface KeyFile {
  privateKey: string;
  publicKey: string;
  generation: number;
}

/** The device name for a node: unique per machine, within IFNAMSIZ. */
export function wireguardIfName(nodeId: string): string {
  return `cwg${nodeId.replace(/[^a-z0-9]/gi, '').slice(0, 12)}`;
}

export function newKeyPair(): { privateKey: string; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const b64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64url').toString('base64');
  return {
    privateKey: b64(privateKey.export({ format: 'jwk' }).d),
    publicKey: b64(publicKey.export({ format: 'jwk' }).x),
  };
}

/**
 * The PresharedKey of the pair (a, b) under ring key `key`: HMAC-SHA256 of
 * the sorted node IDs, so it is the same on both ends and differs per pair
 * (one pair's key says nothing about another's).
 */
export function pairPresharedKey(key: DataPathKey, a: string, b: string): string {
  const [x, y] = [a, b].sort();
  return createHmac('sha256', Buffer.from(key.key, 'base64'))
    .update(`cove wireguard psk\n${key.tag}\n${x}\n${y}`)
    .digest('base64');
}

export interface WantedPeer {
  endpoint: string;
  allowed: string;
  /** Base64 PresharedKey (none before the managers' key ring exists). */
  psk?: string;
}

/**
 * `wg set` arguments taking the device's peers from `have` to `want` (public
 * key -> peer). `pskFile(k)` names the file `wg` reads peer k's PresharedKey
 * from (wg takes keys only from files: never on a command line).
 */
export function peerSetArgs(
  have: Array<{ publicKey: string; presharedKey?: string; endpoint?: string; allowedIps: string[] }>,
  want: Map<string, WantedPeer>,
  pskFile: (publicKey: string) => string = () => '/dev/null',
): string[] {
  const args: string[] = [];
  for (const p of have) if (!want.has(p.publicKey)) args.push('peer', p.publicKey, 'remove');
  for (const [key, w] of want) {
    const h = have.find((p) => p.publicKey === key);
    const pskSame = !w.psk || h?.presharedKey === w.psk;
    if (h && pskSame && h.endpoint === w.endpoint && h.allowedIps.length === 1 && h.allowedIps[0] === w.allowed)
      continue;
    args.push('peer', key, 'endpoint', w.endpoint, 'allowed-ips', w.allowed, 'persistent-keepalive', '25');
    if (w.psk && !pskSame) args.push('preshared-key', pskFile(key));
  }
  return args;
}

/** A node's record from the store; anything malformed counts as no key (never throws in a watch). */
export function parseRecord(value: string): WireguardRecord | undefined {
  try {
    const r = JSON.parse(value) as Partial<WireguardRecord>;
    const ok =
      typeof r.nodeId === 'string' &&
      typeof r.publicKey === 'string' &&
      /^[A-Za-z0-9+/]{43}=$/.test(r.publicKey) &&
      typeof r.endpoint === 'string' &&
      /^[0-9a-fA-F.:[\]]+:\d+$/.test(r.endpoint) &&
      typeof r.tunnelAddr === 'string' &&
      /^[\d.]+$/.test(r.tunnelAddr);
    return ok ? (r as WireguardRecord) : undefined;
  } catch {
    return undefined;
  }
}

export interface WireguardTransportOptions {
  kernel: KernelOps;
  dataRoot: string;
  execRoot: string;
  log?: Logger | undefined;
  /** The wireguard-go binary (COVE_WIREGUARD_GO overrides it, e.g. to test a node without it). */
  binary?: string;
  port?: number;
  /** How often managers rotate keys (COVE_ENCRYPTION_ROTATE_MS overrides it). */
  rotateMs?: number;
}

export class WireguardTransport implements UnderlayTransport {
  readonly name = 'wireguard-go';
  private readonly binary: string;
  private readonly port: number;
  private readonly rotateMs: number;
  private cluster: WireguardCluster | undefined;
  private ready: Promise<void> = Promise.resolve();
  private stops: Array<() => void> = [];
  private readonly records = new Map<string, WireguardRecord>();
  private readonly members = new Set<string>();
  private readonly netPeers = new Map<string, Set<string>>();
  /** The managers' key ring (oldest first). */
  private keys: DataPathKey[] = [];
  /** The device is up and configured in this daemon's life. */
  private up = false;
  private chain: Promise<unknown> = Promise.resolve();
  private reconcilePending = false;
  private stopTimer: NodeJS.Timeout | undefined;
  /** This node's claimed tunnel address (once a network came up here). */
  private tunnelAddr: string | undefined;
  private remotesChanged: (() => void) | undefined;

  constructor(private readonly opts: WireguardTransportOptions) {
    this.binary = opts.binary ?? WIREGUARD_GO;
    this.port = opts.port ?? WG_PORT;
    this.rotateMs = opts.rotateMs ?? DEFAULT_ROTATION_MS;
  }

  private get ifName(): string {
    return wireguardIfName(this.cluster!.nodeId);
  }

  private get pidFile(): string {
    return join(this.opts.execRoot, 'wireguard', `${this.ifName}.pid`);
  }

  private get keyDir(): string {
    return join(this.opts.dataRoot, 'wireguard');
  }

  /** Follows the cluster store (undefined: stop following; the device keeps running). */
  setCluster(c: WireguardCluster | undefined): void {
    for (const s of this.stops) s();
    this.stops = [];
    this.cluster = c;
    this.records.clear();
    this.members.clear();
    this.up = false;
    if (!c) return;
    const st = c.store;
    this.stops.push(
      st.watch('node-local/', (ev) => {
        if (!ev.kv.key.endsWith('/wireguard')) return;
        const id = ev.kv.key.split('/')[1]!;
        const rec = ev.type === 'put' ? parseRecord(ev.kv.value) : undefined;
        const before = this.records.get(id)?.tunnelAddr;
        if (rec) this.records.set(id, rec);
        else this.records.delete(id);
        this.scheduleReconcile();
        // A peer's tunnel address appeared or moved: the driver re-points its VXLAN entries.
        if (id !== this.cluster?.nodeId && rec?.tunnelAddr !== before) this.remotesChanged?.();
      }),
    );
    this.stops.push(
      st.watch('nodes/', (ev) => {
        const id = ev.kv.key.slice('nodes/'.length);
        if (ev.type === 'delete') this.members.delete(id);
        else this.members.add(id);
        this.scheduleReconcile();
      }),
    );
    this.stops.push(
      st.watch(ROTATION_KEY, (ev) => {
        if (ev.type !== 'put') return;
        this.keys = parseRotation(ev.kv.value).keys;
        this.scheduleReconcile();
      }),
    );
    this.ready = (async () => {
      for (const kv of await st.list('node-local/')) {
        const rec = kv.key.endsWith('/wireguard') ? parseRecord(kv.value) : undefined;
        if (rec) this.records.set(kv.key.split('/')[1]!, rec);
      }
      for (const kv of await st.list('nodes/')) this.members.add(kv.key.slice('nodes/'.length));
      this.keys = parseRotation((await st.get(ROTATION_KEY))?.value).keys;
    })().catch((e: Error) => this.opts.log?.warn({ err: e.message }, 'wireguard: reading the cluster store failed'));
    const timer = setInterval(() => void this.tick(), SUPERVISE_MS);
    timer.unref();
    this.stops.push(() => clearInterval(timer));
  }

  async local(self: PeerNode): Promise<{ address: string; mtu: number }> {
    if (!this.cluster) throw new Unavailable('This node is not part of a swarm');
    if (!existsSync(this.binary)) {
      throw new Unavailable(
        `encrypted overlay networks need wireguard-go on this node (${this.binary} not found; this kernel has no IPsec ESP either): refusing to carry the network unencrypted`,
      );
    }
    await this.ready;
    const underlay = (await this.opts.kernel.mtuOfAddress(self.dataPathAddr).catch(() => undefined)) ?? 1500;
    await this.serial(() => this.ensureDevice());
    return { address: this.tunnelAddr!, mtu: underlay - WIREGUARD_OVERHEAD };
  }

  /** The peer's claimed tunnel address, from its record; undefined until it has published one. */
  remote(peer: PeerNode): string | undefined {
    return this.records.get(peer.nodeId)?.tunnelAddr;
  }

  onRemotesChanged(cb: () => void): void {
    this.remotesChanged = cb;
  }

  /** The driver: which other nodes have endpoints on an encrypted network up here. */
  async setNetworkPeers(net: { id: string }, peers: PeerNode[]): Promise<void> {
    if (this.stopTimer) clearTimeout(this.stopTimer);
    this.stopTimer = undefined;
    this.netPeers.set(net.id, new Set(peers.map((p) => p.nodeId)));
    await this.serial(() => this.reconcile());
  }

  /** The driver: an encrypted network left this host; the device goes with the last one (after a grace period: a restart restores networks one by one). */
  releaseNetwork(networkId: string): void {
    this.netPeers.delete(networkId);
    this.scheduleReconcile();
    if (this.netPeers.size > 0 || !this.cluster || this.stopTimer) return;
    // Captured: on `swarm leave` the cluster is detached before the timer fires.
    const c = this.cluster;
    const name = this.ifName;
    const pidFile = this.pidFile;
    this.stopTimer = setTimeout(() => {
      this.stopTimer = undefined;
      if (this.netPeers.size > 0) return;
      void this.serial(async () => {
        if (this.netPeers.size > 0) return;
        this.up = false;
        await stopWireguardGo(pidFile, name);
        await c.store.delete(`node-local/${c.nodeId}/wireguard`).catch(() => undefined);
        this.opts.log?.info({ device: name }, 'wireguard: device stopped (no encrypted network here)');
      }).catch(() => undefined);
    }, STOP_GRACE_MS);
    this.stopTimer.unref();
  }

  describe(): Record<string, string> {
    if (!this.cluster) return {};
    return {
      'com.cove.network.encryption': 'wireguard-go',
      'com.cove.network.encryption.interface': this.ifName,
      ...(this.tunnelAddr ? { 'com.cove.network.encryption.tunnel': this.tunnelAddr } : {}),
      ...(primaryKey(this.keys) ? { 'com.cove.network.encryption.key-tag': String(primaryKey(this.keys)!.tag) } : {}),
    };
  }

  // ---------------------------------------------------------------- internals

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private scheduleReconcile(): void {
    if (this.reconcilePending) return;
    this.reconcilePending = true;
    void this.serial(async () => {
      this.reconcilePending = false;
      await this.reconcile();
    }).catch((e: Error) => this.opts.log?.warn({ err: e.message }, 'wireguard: peer update failed'));
  }

  private loadKey(): KeyFile | undefined {
    try {
      return JSON.parse(readFileSync(join(this.keyDir, `${this.ifName}.json`), 'utf8')) as KeyFile;
    } catch {
      return undefined;
    }
  }

  /** Writes the key pair (JSON, and the private key alone for `wg set private-key`), 0600. */
  private saveKey(k: KeyFile): string {
    mkdirSync(this.keyDir, { recursive: true, mode: 0o700 });
    const keyPath = join(this.keyDir, `${this.ifName}.key`);
    writeFileSync(keyPath, k.privateKey + '\n', { mode: 0o600 });
    writeFileSync(join(this.keyDir, `${this.ifName}.json`), JSON.stringify(k), { mode: 0o600 });
    return keyPath;
  }

  /** Starts or adopts the device, gives it this node's key, address and port, publishes the record. */
  private async ensureDevice(): Promise<void> {
    const c = this.cluster!;
    const name = this.ifName;
    let key = this.loadKey();
    if (!key) key = { ...newKeyPair(), generation: 0 };
    const keyPath = this.saveKey(key);
    if (!wireguardPid(this.pidFile, name)) {
      // A device left without its process (or a stale socket) goes first.
      await this.opts.kernel.apply(null, [{ kind: 'link-del', name }]).catch(() => undefined);
      const pid = await startWireguardGo({
        binary: this.binary,
        name,
        netns: null,
        pidFile: this.pidFile,
        logFile: join(this.opts.execRoot, 'wireguard', `${name}.log`),
      });
      this.opts.log?.info({ device: name, pid }, 'wireguard: device started');
    }
    // Same key again is a no-op in wireguard-go (sessions are kept): safe on adoption.
    await wgSet(name, ['listen-port', String(this.port), 'private-key', keyPath]);
    const mtu =
      ((await this.opts.kernel.mtuOfAddress(c.dataPathAddr).catch(() => undefined)) ?? 1500) - WIREGUARD_OVERHEAD;
    this.tunnelAddr = await claimTunnelAddress(c.store, c.nodeId, { hint: this.records.get(c.nodeId)?.tunnelAddr });
    await this.opts.kernel.apply(null, [
      { kind: 'addr', dev: name, cidr: `${this.tunnelAddr}/${TUNNEL_PREFIX}` },
      { kind: 'link-set', name, mtu, up: true },
    ]);
    await this.publish(key);
    this.up = true;
    await this.reconcile();
  }

  private async publish(key: KeyFile): Promise<void> {
    const c = this.cluster!;
    const rec: WireguardRecord = {
      nodeId: c.nodeId,
      publicKey: key.publicKey,
      endpoint: `${c.dataPathAddr}:${this.port}`,
      tunnelAddr: this.tunnelAddr!,
      generation: key.generation,
    };
    const have = this.records.get(c.nodeId);
    if (have && JSON.stringify(have) === JSON.stringify(rec)) return;
    await c.store.put(`node-local/${c.nodeId}/wireguard`, JSON.stringify(rec));
    this.records.set(c.nodeId, rec);
  }

  /** Device peers = nodes of the encrypted networks up here that are members and have a key. */
  private async reconcile(): Promise<void> {
    const c = this.cluster;
    if (!c || !this.up) return;
    const want = new Map<string, WantedPeer>();
    const primary = primaryKey(this.keys);
    const nodes = new Set<string>();
    for (const s of this.netPeers.values()) for (const n of s) nodes.add(n);
    for (const n of nodes) {
      const r = this.records.get(n);
      if (n === c.nodeId || !r || !this.members.has(n)) continue;
      want.set(r.publicKey, {
        endpoint: r.endpoint,
        allowed: `${r.tunnelAddr}/32`,
        ...(primary ? { psk: pairPresharedKey(primary, c.nodeId, n) } : {}),
      });
    }
    const have = await wgShow(this.ifName);
    // PresharedKeys go to wg through files (0600, in the key directory, removed right after).
    const files: string[] = [];
    const args = peerSetArgs(have.peers, want, (k) => {
      const f = join(this.keyDir, `${this.ifName}.psk${files.length}`);
      writeFileSync(f, `${want.get(k)!.psk}\n`, { mode: 0o600 });
      files.push(f);
      return f;
    });
    try {
      if (args.length === 0) return;
      await wgSet(this.ifName, args);
    } finally {
      for (const f of files) rmSync(f, { force: true });
    }
    this.opts.log?.debug(
      { device: this.ifName, peers: [...want.values()].map((w) => w.allowed), keyTag: primary?.tag },
      'wireguard: peers updated',
    );
  }

  /** Supervision (the device's process is alive, or restarted) and, on managers, the rotation schedule. */
  private async tick(): Promise<void> {
    const c = this.cluster;
    if (!c) return;
    // The device first: a dead wireguard-go cuts the network, so its restart must not wait behind
    // a rotation request to a slow store.
    if (this.up && !wireguardPid(this.pidFile, this.ifName)) {
      this.opts.log?.warn({ device: this.ifName }, 'wireguard: device process gone; restarting it');
      this.up = false;
      void this.serial(() => this.ensureDevice()).catch((e: Error) =>
        this.opts.log?.error({ err: e.message }, 'wireguard: restarting the device failed'),
      );
    }
    if (c.isManager())
      await requestKeyRotation(c.store, 'schedule', { ifOlderThanMs: this.rotateMs }).catch(() => undefined);
  }
}
