/**
 * Loads native/ (cove_netns.node): the few syscalls Node cannot make
 * (unshare/setns/mount of network namespaces, sockets inside a netns, and a
 * SOCK_SEQPACKET unix-socket client for conmon's attach socket, and
 * libnftables run inside a netns without spawning nft).
 * Built by `npm run build:native` (node-gyp, bundled with npm).
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../common/repo-root.js';

export interface NetnsAddon {
  createNetns(path: string, sysctls: Array<[string, string]>): void;
  unmountNetns(path: string): void;
  /** type 1 = UDP bound socket, 2 = listening TCP socket. Returns the fd. */
  socketInNetns(path: string, type: 1 | 2, ip: string, port: number, backlog: number): number;
  writeFilesInNetns(path: string, pairs: Array<[string, string]>): void;
  setnsCurrentThread(path: string): void;
  netnsInode(path: string): number;
  /** Ops [kind, a, b?, c?] run in order on one thread inside the netns; stops at the first failure. */
  configureInNetns(path: string, ops: Array<[string, string, string?, number?]>): void;
  /**
   * Connects a SOCK_SEQPACKET unix socket (throws with code ENOENT, ECONNREFUSED, ...).
   * onEvent gets (null, packet) per packet, (null, null) at end of stream, (message, null)
   * on an error; nothing after those two or after seqpacketClose.
   */
  seqpacketConnect(path: string, onEvent: (err: string | null, packet: Buffer | null) => void): SeqpacketHandle;
  /** Sends one packet (queued in the addon while the socket is full; dropped after the end). */
  seqpacketWrite(h: SeqpacketHandle, data: Buffer): void;
  /** Half-closes (SHUT_WR) once the queue is sent. */
  seqpacketShutdown(h: SeqpacketHandle): void;
  /** Closes; idempotent. */
  seqpacketClose(h: SeqpacketHandle): void;
  /** lgetxattr(2): the value, or null when the attribute is not set (or not supported there). */
  lgetxattr(path: string, name: string): Buffer | null;
  /** null when libnftables could be loaded, else why not (nftRun would fail). */
  nftAvailable(): string | null;
  /**
   * Runs `script` as one nftables transaction (as `nft -f`) with libnftables, inside the netns at `path`
   * (null: the daemon's), on a pool thread. cb(err) when the library or the netns could not be used;
   * else cb(null, rc, output, errors) with nft's own return code and texts. shared: runs beside other shared
   * calls (only the context's creation and release are serialised); at most one per netns at a time.
   */
  nftRun(
    path: string | null,
    script: string,
    cb: (err: string | null, rc: number | null, output: string | null, errors: string | null) => void,
    shared?: boolean,
  ): void;
  /** mount("overlay", target, "overlay", 0, data) on the calling thread (throws with code "E<errno>"). */
  mountOverlay(target: string, data: string): void;
  /** umount2(target, detach ? MNT_DETACH : 0) (throws with code "E<errno>"). */
  unmount(target: string, detach: boolean): void;
  /**
   * posix_spawn (vfork semantics) in a new session; stdio[i] 0 = /dev/null, 1 = a socketpair whose
   * parent end is returned; cwd: the child's working directory. Returns [pid, parent fd per stdio entry or -1];
   * onExit once reaped.
   */
  spawnDetached(
    file: string,
    argv: string[],
    envp: string[],
    stdio: Array<0 | 1>,
    onExit: (code: number, signal: number) => void,
    cwd?: string | null,
  ): number[];
  /** mkfifo(2); an existing FIFO at `path` is fine (throws with code "E<errno>" otherwise). */
  mkfifo(path: string, mode: number): void;
  /**
   * V8's low-memory notification (full collections that compact and release the heap's free pages) and
   * glibc's malloc_trim(0), on the calling thread: tens of ms. src/daemon/idle-memory.ts calls it once the
   * daemon is quiet.
   */
  releaseMemory(): void;
}

/** Opaque handle of a seqpacket connection held by the addon. */
export type SeqpacketHandle = { readonly __seqpacket: unique symbol };

let cached: NetnsAddon | undefined;

export function addon(): NetnsAddon {
  if (cached) return cached;
  const file = join(repoRoot(import.meta.url), 'native/build/Release/cove_netns.node');
  if (!existsSync(file)) {
    throw new Error(`native addon missing: ${file} (run \`npm run build:native\`)`);
  }
  cached = createRequire(import.meta.url)(file) as NetnsAddon;
  return cached;
}
