/**
 * Content-addressed blobs under `<images>/blobs/sha256/<hex>`: compressed
 * layers as a registry served them, uncompressed layer tars kept at load
 * and import (their digest is the diff ID), gzip'd layers made for a push.
 * A blob is written to `<images>/blobs/tmp/`, hashed while written, and
 * renamed into place only when its digest matches: an interrupted or
 * corrupted download leaves nothing under its name. A download from a
 * registry goes to `<images>/blobs/partial/<hex>` instead, which outlives an
 * interrupted pull: the next attempt (in this pull, or a later one) hashes
 * what is there and asks the registry for the rest with an HTTP Range.
 *
 * `<images>/diffs/<diffIdHex>.json` says which blobs hold a layer's content
 * (the uncompressed tar, a compressed blob) and in which repositories of
 * which registries that compressed blob is known (for cross-repository mounts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as lazy from '../../common/lazy-builtins.js';
import { InvalidParameter } from '../../common/errors.js';

export interface CompressedBlob {
  digest: string;
  size: number;
  mediaType: string;
}

export interface DiffInfo {
  diffId: string;
  /** The uncompressed tar is stored as blob `diffId`. */
  tar?: boolean;
  compressed?: CompressedBlob;
  /** `registry/path` repositories known to hold `compressed`. */
  sources?: string[];
}

const hexOf = (digest: string): string => {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (!m) throw new InvalidParameter(`invalid digest ${digest}`);
  return m[1]!;
};

/**
 * Chunk size for reading layers and for zlib's output: with node's 64 KiB file
 * reads and zlib's 16 KiB chunks, the per-chunk cost of each stage (hash, tar,
 * progress) dominated a 64 MB layer; 1 MiB made extraction about 3x faster.
 */
export const CHUNK = 1 << 20;

export class DigestMismatch extends Error {
  constructor(
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`filesystem layer verification failed for digest ${expected}`);
  }
}

export class BlobStore {
  /** Temporary files and partial downloads being written right now: a sweep leaves them alone. */
  private readonly busy = new Set<string>();

  constructor(readonly root: string) {}

  /**
   * Removes what interrupted work left behind, so that a crash or an abandoned
   * pull does not hold disk space for ever: temporary files; with `partials`,
   * partial downloads (kept otherwise, for a later pull to resume); with
   * `keep`, every stored blob whose digest is not in it (a pull that died
   * between its download and its extraction) — only when no pull can be
   * running, i.e. at the daemon's start. Files in use are never touched.
   * Returns the bytes freed.
   */
  async sweep(opts: { partials?: boolean; keep?: Set<string> } = {}): Promise<number> {
    let freed = 0;
    const clear = async (dir: string, doomed: (name: string) => boolean): Promise<void> => {
      let names: string[];
      try {
        names = await readdir(join(this.root, 'blobs', dir));
      } catch {
        return; // nothing stored there yet
      }
      for (const name of names) {
        const file = join(this.root, 'blobs', dir, name);
        if (this.busy.has(file) || !doomed(name)) continue;
        freed += await stat(file).then(
          (st) => st.size,
          () => 0,
        );
        await rm(file, { force: true, recursive: true });
      }
    };
    await clear('tmp', () => true);
    if (opts.partials) await clear('partial', () => true);
    const keep = opts.keep;
    if (keep) await clear('sha256', (hex) => !keep.has(`sha256:${hex}`));
    return freed;
  }

  /** Digests of every blob the layer content index names (uncompressed tars and compressed blobs). */
  async indexedBlobs(): Promise<Set<string>> {
    const out = new Set<string>();
    let names: string[] = [];
    try {
      names = (await readdir(join(this.root, 'diffs'))).filter((n) => n.endsWith('.json'));
    } catch {
      return out;
    }
    for (const n of names) {
      try {
        const info = JSON.parse(await readFile(join(this.root, 'diffs', n), 'utf8')) as DiffInfo;
        if (info.tar) out.add(info.diffId);
        if (info.compressed) out.add(info.compressed.digest);
      } catch {
        // a torn index file: its blobs are kept (the sweep must never lose content on a guess)
        out.add(`sha256:${n.slice(0, -'.json'.length)}`);
      }
    }
    return out;
  }

  path(digest: string): string {
    return join(this.root, 'blobs', 'sha256', hexOf(digest));
  }

  has(digest: string): boolean {
    return existsSync(this.path(digest));
  }

  async size(digest: string): Promise<number> {
    return (await stat(this.path(digest))).size;
  }

  tmpPath(): string {
    return join(this.root, 'blobs', 'tmp', randomBytes(8).toString('hex'));
  }

  /**
   * Streams `input` into the store; when `expected` is given the bytes must
   * hash to it (else DigestMismatch and nothing is kept). Returns the digest.
   */
  async write(
    input: Readable,
    expected?: string,
    onBytes?: (n: number) => void,
  ): Promise<{ digest: string; size: number }> {
    if (expected) hexOf(expected);
    await mkdir(join(this.root, 'blobs', 'tmp'), { recursive: true, mode: 0o700 });
    await mkdir(join(this.root, 'blobs', 'sha256'), { recursive: true, mode: 0o700 });
    const tmp = this.tmpPath();
    const hash = createHash('sha256');
    let size = 0;
    this.busy.add(tmp);
    try {
      await pipeline(
        input,
        new Transform({
          transform(chunk: Buffer, _e, cb) {
            hash.update(chunk);
            size += chunk.length;
            onBytes?.(size);
            cb(null, chunk);
          },
        }),
        createWriteStream(tmp),
      );
      const digest = 'sha256:' + hash.digest('hex');
      if (expected && digest !== expected) throw new DigestMismatch(expected, digest);
      await rename(tmp, this.path(digest));
      return { digest, size };
    } finally {
      this.busy.delete(tmp);
      await rm(tmp, { force: true });
    }
  }

  partialPath(digest: string): string {
    return join(this.root, 'blobs', 'partial', hexOf(digest));
  }

  /**
   * Downloads blob `digest` through `open(offset)` (an HTTP GET with
   * `Range: bytes=offset-` when offset > 0; it returns the offset the answer
   * starts at: 0 when the server ignored the range). A connection that breaks
   * or a body that ends short keeps what arrived and tries again from there,
   * `attempts` times (`onRetry` says when); what is kept then waits for the
   * next pull. Verified against `digest` before it takes its name; a mismatch
   * deletes it (DigestMismatch).
   */
  async download(
    digest: string,
    size: number | undefined,
    open: (offset: number) => Promise<{ body: Readable; offset: number }>,
    opts: {
      onBytes?: (n: number) => void;
      onRetry?: (attempt: number, delayMs: number, err: Error) => void;
      attempts?: number;
      retryDelayMs?: number;
    } = {},
  ): Promise<{ digest: string; size: number; resumedFrom: number }> {
    const partial = this.partialPath(digest);
    await mkdir(join(this.root, 'blobs', 'partial'), { recursive: true, mode: 0o700 });
    await mkdir(join(this.root, 'blobs', 'sha256'), { recursive: true, mode: 0o700 });
    await mkdir(join(this.root, 'blobs', 'tmp'), { recursive: true, mode: 0o700 }); // the layer's extraction spools there
    const attempts = opts.attempts ?? 5;
    let resumedFrom = 0;
    this.busy.add(partial);
    try {
      for (let attempt = 1; ; attempt++) {
        let have = await stat(partial).then(
          (st) => st.size,
          () => 0,
        );
        if (size !== undefined && have > size) {
          await rm(partial, { force: true });
          have = 0;
        }
        try {
          // The digest covers the whole file: bytes kept from an earlier attempt are hashed
          // first, the rest while it arrives (one pass over the data, not a second read).
          let hash = createHash('sha256');
          let total = 0;
          if (have > 0) {
            for await (const chunk of createReadStream(partial, { highWaterMark: CHUNK })) {
              hash.update(chunk as Buffer);
              total += (chunk as Buffer).length;
            }
            have = total;
          }
          if (size === undefined || have < size) {
            const res = await open(have);
            if (res.offset !== have) {
              // The server sent the whole blob: start over.
              await truncate(partial, 0).catch(() => undefined);
              have = 0;
              total = 0;
              hash = createHash('sha256');
            } else if (have > 0 && resumedFrom === 0) resumedFrom = have;
            await pipeline(
              res.body,
              new Transform({
                transform(chunk: Buffer, _e, cb) {
                  total += chunk.length;
                  hash.update(chunk);
                  opts.onBytes?.(total);
                  cb(null, chunk);
                },
              }),
              createWriteStream(partial, { flags: have > 0 ? 'a' : 'w', mode: 0o600 }),
            );
            if (size !== undefined && total < size) throw new Error(`unexpected EOF: ${total} of ${size} bytes`);
          }
          const got = 'sha256:' + hash.digest('hex');
          if (got !== digest) {
            await rm(partial, { force: true });
            throw new DigestMismatch(digest, got);
          }
          await rename(partial, this.path(digest));
          return { digest, size: total, resumedFrom };
        } catch (e) {
          if (!isInterruption(e)) {
            // A full disk, a refusal: what is kept would only take space.
            await rm(partial, { force: true });
            const err = e as NodeJS.ErrnoException;
            if (err.code && err.syscall === 'write' && !err.path) err.path = partial;
            throw e;
          }
          if (attempt >= attempts) throw e;
          const delayMs = (opts.retryDelayMs ?? 1000) * attempt;
          opts.onRetry?.(attempt, delayMs, e as Error);
          await new Promise((r) => setTimeout(r, delayMs));
        }
      }
    } finally {
      this.busy.delete(partial);
    }
  }

  /** Moves a file whose digest the caller computed into the store. */
  async adopt(file: string, digest: string): Promise<void> {
    await mkdir(join(this.root, 'blobs', 'sha256'), { recursive: true, mode: 0o700 });
    if (this.has(digest)) await rm(file, { force: true });
    else await rename(file, this.path(digest));
  }

  async remove(digest: string): Promise<void> {
    await rm(this.path(digest), { force: true });
  }

  // ---------- layer content index ----------

  private diffPath(diffId: string): string {
    return join(this.root, 'diffs', hexOf(diffId) + '.json');
  }

  async diffInfo(diffId: string): Promise<DiffInfo> {
    try {
      return JSON.parse(await readFile(this.diffPath(diffId), 'utf8')) as DiffInfo;
    } catch {
      return { diffId, ...(this.has(diffId) ? { tar: true } : {}) };
    }
  }

  async updateDiff(diffId: string, fn: (cur: DiffInfo) => DiffInfo): Promise<void> {
    const next = fn(await this.diffInfo(diffId));
    await mkdir(join(this.root, 'diffs'), { recursive: true, mode: 0o700 });
    const tmp = this.diffPath(diffId) + '.' + randomBytes(4).toString('hex');
    await writeFile(tmp, JSON.stringify(next));
    await rename(tmp, this.diffPath(diffId));
  }

  async forgetDiff(diffId: string): Promise<void> {
    const info = await this.diffInfo(diffId);
    if (info.tar) await this.remove(diffId);
    if (info.compressed) await this.remove(info.compressed.digest);
    await rm(this.diffPath(diffId), { force: true });
  }

  /** The uncompressed layer tar, from the kept tar or by gunzipping the compressed blob. */
  async openTar(diffId: string): Promise<Readable> {
    const info = await this.diffInfo(diffId);
    if (info.tar && this.has(diffId)) return createReadStream(this.path(diffId), { highWaterMark: CHUNK });
    if (info.compressed && this.has(info.compressed.digest)) {
      const src = createReadStream(this.path(info.compressed.digest), { highWaterMark: CHUNK });
      return /gzip/.test(info.compressed.mediaType) ? src.pipe(lazy.zlib().createGunzip({ chunkSize: CHUNK })) : src;
    }
    throw new Error(
      `layer ${diffId} has no content stored (loaded before Cove kept layer content); load or pull the image again`,
    );
  }

  /** A compressed blob for a push: the known one, else gzip the tar once and remember it. */
  async compressedFor(diffId: string): Promise<CompressedBlob> {
    const info = await this.diffInfo(diffId);
    if (info.compressed && this.has(info.compressed.digest)) return info.compressed;
    const tarStream = await this.openTar(diffId);
    const { digest, size } = await this.write(tarStream.pipe(lazy.zlib().createGzip({ level: 6, chunkSize: CHUNK })));
    const blob: CompressedBlob = { digest, size, mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip' };
    await this.updateDiff(diffId, (cur) => ({ ...cur, compressed: blob }));
    return blob;
  }
}

/**
 * Errors of a transfer that another attempt may get past (the connection
 * broke, was refused or went quiet), as opposed to a disk error or a refusal
 * from the registry.
 */
function isInterruption(e: unknown): boolean {
  const err = e as NodeJS.ErrnoException & { name?: string };
  if (
    [
      'ECONNRESET',
      'ECONNREFUSED',
      'ECONNABORTED',
      'EPIPE',
      'ETIMEDOUT',
      'EHOSTUNREACH',
      'ENETUNREACH',
      'ERR_STREAM_PREMATURE_CLOSE',
    ].includes(err?.code ?? '')
  )
    return true;
  return /aborted|socket hang up|unexpected EOF|premature close/i.test(err?.message ?? '');
}
