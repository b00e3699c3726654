/**
 * Content-addressed blobs under `<images>/blobs/sha256/<hex>`: compressed
 * layers as a registry served them, uncompressed layer tars kept at load
 * and import (their digest is the diff ID), gzip'd layers made for a push.
 * A blob is written to `<images>/blobs/tmp/`, hashed while written, and
 * renamed into place only when its digest matches: an interrupted or
 * corrupted download leaves nothing under its name.
 *
 * `<images>/diffs/<diffIdHex>.json` says which blobs hold a layer's content
 * (the uncompressed tar, a compressed blob) and in which repositories of
 * which registries that compressed blob is known (for cross-repository mounts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, createGunzip } from 'node:zlib';
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

export class DigestMismatch extends Error {
  constructor(readonly expected: string, readonly actual: string) {
    super(`filesystem layer verification failed for digest ${expected}`);
  }
}

export class BlobStore {
  constructor(readonly root: string) {}

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
  async write(input: Readable, expected?: string, onBytes?: (n: number) => void): Promise<{ digest: string; size: number }> {
    if (expected) hexOf(expected);
    await mkdir(join(this.root, 'blobs', 'tmp'), { recursive: true, mode: 0o700 });
    await mkdir(join(this.root, 'blobs', 'sha256'), { recursive: true, mode: 0o700 });
    const tmp = this.tmpPath();
    const hash = createHash('sha256');
    let size = 0;
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
      await rm(tmp, { force: true });
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
    if (info.tar && this.has(diffId)) return createReadStream(this.path(diffId));
    if (info.compressed && this.has(info.compressed.digest)) {
      const src = createReadStream(this.path(info.compressed.digest));
      return /gzip/.test(info.compressed.mediaType) ? src.pipe(createGunzip()) : src;
    }
    throw new Error(`layer ${diffId} has no content stored (loaded before Cove kept layer content); load or pull the image again`);
  }

  /** A compressed blob for a push: the known one, else gzip the tar once and remember it. */
  async compressedFor(diffId: string): Promise<CompressedBlob> {
    const info = await this.diffInfo(diffId);
    if (info.compressed && this.has(info.compressed.digest)) return info.compressed;
    const tarStream = await this.openTar(diffId);
    const { digest, size } = await this.write(tarStream.pipe(createGzip({ level: 6 })));
    const blob: CompressedBlob = { digest, size, mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip' };
    await this.updateDiff(diffId, (cur) => ({ ...cur, compressed: blob }));
    return blob;
  }
}
