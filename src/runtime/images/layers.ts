/**
 * The layer store: each layer is a directory `<root>/<chainID>/diff` in the
 * form overlayfs wants as a lowerdir (whiteouts as 0/0 character devices), plus
 * `<root>/<chainID>/meta.json`. Layers are keyed by chain ID, as Docker's layer
 * store does, because the meaning of an opaque-directory marker depends on the
 * layers beneath: we turn each `.wh..wh..opq` into explicit whiteouts of what
 * the lower layers hold there (so no trusted.* xattrs are needed).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import {
  mkdir,
  readFile,
  readdir,
  rename,
  rm,
  writeFile,
  lstat,
  chown,
  chmod,
  lutimes,
  lchown,
  symlink,
} from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as lazy from '../../common/lazy-builtins.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { ReadEntry, Unpack } from 'tar';
import { loadTar } from '../tar.js';
import { InvalidParameter } from '../../common/errors.js';

const run = promisify(execFile);

export interface LayerMeta {
  chainId: string;
  diffId: string;
  parent: string | null;
  /** Bytes of regular files in this layer. */
  size: number;
}

export function chainIdOf(parentChainId: string | null, diffId: string): string {
  if (!parentChainId) return diffId;
  return 'sha256:' + createHash('sha256').update(`${parentChainId} ${diffId}`).digest('hex');
}

const hex = (digest: string): string => digest.replace(/^sha256:/, '');

/** Peeks at the first bytes and gunzips when the stream is gzip'd; refuses other compressions. */
export async function decompressed(source: Readable): Promise<Readable> {
  // Sniff the first chunk through the async iterator and hand on a stream
  // that yields it again: read()+unshift() lost an HTTP request body that had
  // fully arrived (an import through the API found no tar at all).
  const it = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const head = await it.next();
  const first: Buffer = head.done ? Buffer.alloc(0) : Buffer.from(head.value);
  async function* again(): AsyncGenerator<Buffer> {
    if (first.length) yield first;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    }
  }
  const input = Readable.from(again(), { objectMode: false });
  if (first[0] === 0x1f && first[1] === 0x8b) {
    // pipe() does not pass errors on: a source that fails must fail the gunzip's readers too, not stall them.
    // 1 MiB output chunks: with zlib's 16 KiB default, the per-chunk cost of the hash and tar
    // stages downstream made a pull's extraction about 3x slower (measured on a 64 MB layer).
    const gunzip = lazy.zlib().createGunzip({ chunkSize: 1 << 20 });
    input.on('error', (e) => gunzip.destroy(e));
    return input.pipe(gunzip);
  }
  if (first.subarray(0, 3).toString('latin1') === 'BZh')
    throw new InvalidParameter('bzip2-compressed layers are not supported');
  if (first[0] === 0xfd && first.subarray(1, 6).toString('latin1') === '7zXZ\0')
    throw new InvalidParameter('xz-compressed layers are not supported');
  if (first[0] === 0x28 && first[1] === 0xb5 && first[2] === 0x2f && first[3] === 0xfd)
    throw new InvalidParameter('zstd-compressed layers are not supported');
  return input;
}

/** Writes a (possibly compressed) tar stream to `dest` uncompressed and returns its diff ID. */
export async function spoolTar(input: Readable, dest: string): Promise<string> {
  const hash = createHash('sha256');
  const plain = await decompressed(input);
  await pipeline(
    plain,
    new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        cb(null, chunk);
      },
    }),
    createWriteStream(dest),
  );
  return 'sha256:' + hash.digest('hex');
}

interface SpecialEntry {
  path: string;
  type: 'CharacterDevice' | 'BlockDevice' | 'FIFO';
  major: number;
  minor: number;
  mode: number;
  uid: number;
  gid: number;
  mtime?: Date;
}

/** A layer's uncompressed bytes do not hash to the diff ID its image config names. */
export class LayerDigestMismatch extends Error {
  constructor(
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`layer has diff ID ${actual}, but the image config says ${expected}`);
  }
}

export class LayerStore {
  /** meta.json of each layer read so far: a chain ID names fixed content, so it never changes (forgotten at remove). */
  private readonly metas = new Map<string, LayerMeta>();

  constructor(readonly root: string) {}

  dir(chainId: string): string {
    return join(this.root, hex(chainId));
  }

  diffDir(chainId: string): string {
    return join(this.dir(chainId), 'diff');
  }

  async meta(chainId: string): Promise<LayerMeta | undefined> {
    const known = this.metas.get(chainId);
    if (known) return known;
    try {
      const m = JSON.parse(await readFile(join(this.dir(chainId), 'meta.json'), 'utf8')) as LayerMeta;
      this.metas.set(chainId, m);
      return m;
    } catch {
      return undefined;
    }
  }

  /** The diff dirs of a chain, top layer first (overlayfs lowerdir order). */
  async lowerDirs(topChainId: string): Promise<string[]> {
    const dirs: string[] = [];
    let cur: string | null = topChainId;
    while (cur) {
      const m = await this.meta(cur);
      if (!m) throw new Error(`layer ${cur} is missing from the layer store`);
      dirs.push(this.diffDir(cur));
      cur = m.parent;
    }
    return dirs;
  }

  /**
   * Adds the uncompressed layer tar at `tarPath` (diff ID `diffId`) on top of
   * `parent`; a no-op when that chain already exists. Extraction happens in a
   * temporary directory renamed into place, so no half-made layer is left.
   */
  async add(tarPath: string, diffId: string, parent: string | null): Promise<LayerMeta> {
    return this.commit(diffId, parent, (diff) => this.extract(tarPath, diff, parent));
  }

  /**
   * Extracts a (possibly gzip'd) tar stream straight into a new layer, hashing
   * the uncompressed bytes on the way: the layer takes its name only when they
   * hash to `diffId` (else LayerDigestMismatch and nothing is kept). A pull uses
   * this, so a layer is not spooled to a tar file and read a second time.
   */
  async addStream(input: Readable, diffId: string, parent: string | null): Promise<LayerMeta> {
    return this.commit(diffId, parent, async (diff) => {
      const hash = createHash('sha256');
      const plain = await decompressed(input);
      const hashing = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          hash.update(chunk);
          cb(null, chunk);
        },
      });
      const size = await this.extract([plain, hashing], diff, parent);
      const got = 'sha256:' + hash.digest('hex');
      if (got !== diffId) throw new LayerDigestMismatch(diffId, got);
      return size;
    });
  }

  private async commit(
    diffId: string,
    parent: string | null,
    fill: (diffDir: string) => Promise<number>,
  ): Promise<LayerMeta> {
    const chainId = chainIdOf(parent, diffId);
    const existing = await this.meta(chainId);
    if (existing) return existing;
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    const tmp = join(this.root, `.tmp-${randomBytes(6).toString('hex')}`);
    const diff = join(tmp, 'diff');
    try {
      await mkdir(diff, { recursive: true });
      const size = await fill(diff);
      const meta: LayerMeta = { chainId, diffId, parent, size };
      await writeFile(join(tmp, 'meta.json'), JSON.stringify(meta));
      if (existsSync(this.dir(chainId))) {
        // Another load made it meanwhile.
        await rm(tmp, { recursive: true, force: true });
      } else {
        await rename(tmp, this.dir(chainId));
      }
      return meta;
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
  }

  async remove(chainId: string): Promise<void> {
    this.metas.delete(chainId);
    await rm(this.dir(chainId), { recursive: true, force: true });
  }

  async list(): Promise<string[]> {
    try {
      return (await readdir(this.root)).filter((n) => /^[0-9a-f]{64}$/.test(n)).map((n) => 'sha256:' + n);
    } catch {
      return [];
    }
  }

  /** source: a tar file, or a chain of streams (a tar stream first) piped into the extractor. */
  private async extract(source: string | Readable[], dest: string, parent: string | null): Promise<number> {
    const whiteouts: string[] = [];
    const opaque: string[] = [];
    const specials: SpecialEntry[] = [];
    // node-tar strips the leading '/' of symlink targets (/bin/busybox would
    // become bin/busybox), so symlinks are made here, after extraction.
    const symlinks: Array<{ path: string; target: string; uid: number; gid: number; mtime?: Date }> = [];
    // Modes node-tar may not leave exact (sticky/setuid bits, dirs made as parents first).
    const modes: Array<{ path: string; mode: number }> = [];
    // Directory times as the tar has them, set last: every entry made inside a directory (by node-tar, or the
    // symlinks and whiteouts below) moves its mtime to now, and `docker diff` tells a directory the container
    // changed from one it did not by its mtime, as Docker's layers keep the tar's.
    const dirTimes: Array<{ path: string; mtime: Date }> = [];
    let size = 0;
    const tar = await loadTar();
    const options: ConstructorParameters<typeof Unpack>[0] & object = {
      cwd: dest,
      preserveOwner: process.getuid?.() === 0,
      chmod: true,
      processUmask: 0,
      strict: false,
      filter: (path, entry) => {
        const p = posix
          .normalize(path)
          .replace(/^\.?\/+/, '')
          .replace(/\/+$/, '');
        const base = posix.basename(p);
        if (base === '.wh..wh..opq') {
          opaque.push(posix.dirname(p));
          return false;
        }
        if (base.startsWith('.wh.')) {
          whiteouts.push(posix.join(posix.dirname(p), base.slice(4)));
          return false;
        }
        const e = entry as ReadEntry;
        if (e.type === 'CharacterDevice' || e.type === 'BlockDevice' || e.type === 'FIFO') {
          specials.push({
            path: p,
            type: e.type,
            major: e.header.devmaj ?? 0,
            minor: e.header.devmin ?? 0,
            mode: (e.mode ?? 0o644) & 0o7777,
            uid: e.uid ?? 0,
            gid: e.gid ?? 0,
            mtime: e.mtime,
          });
          return false;
        }
        if (e.type === 'Directory' || (e.mode ?? 0) & 0o7000) modes.push({ path: p, mode: (e.mode ?? 0o755) & 0o7777 });
        if (e.type === 'Directory' && e.mtime) dirTimes.push({ path: p, mtime: e.mtime });
        if (e.type === 'SymbolicLink') {
          symlinks.push({ path: p, target: e.linkpath ?? '', uid: e.uid ?? 0, gid: e.gid ?? 0, mtime: e.mtime });
          return false;
        }
        if (e.type === 'File' || e.type === 'OldFile' || e.type === 'ContiguousFile') size += e.size ?? 0;
        return true;
      },
    };
    if (typeof source === 'string') await tar.x({ ...options, file: source });
    else await pipeline([...source, new tar.Unpack(options)]);
    // Order matters for safety: until the symlinks are made (last), the layer
    // dir holds no symlink, so nothing below can be led outside of it.
    for (const m of modes.reverse()) await chmod(join(dest, m.path), m.mode).catch(() => undefined);
    for (const s of specials) {
      const target = join(dest, s.path);
      await mkdir(dirname(target), { recursive: true });
      await rm(target, { force: true, recursive: true });
      const kind = s.type === 'CharacterDevice' ? 'c' : s.type === 'BlockDevice' ? 'b' : 'p';
      const args = ['-m', (s.mode & 0o7777).toString(8), target, kind];
      if (kind !== 'p') args.push(String(s.major), String(s.minor));
      await run('mknod', args);
      await chown(target, s.uid, s.gid).catch(() => undefined);
      if (s.mtime) await lutimes(target, s.mtime, s.mtime).catch(() => undefined);
    }
    for (const w of whiteouts) await this.makeWhiteout(join(dest, w));
    if (opaque.length) {
      const lowers = parent ? await this.lowerDirs(parent) : [];
      for (const dir of opaque) {
        const names = new Set<string>();
        for (const lower of lowers) {
          try {
            for (const n of await readdir(join(lower, dir))) names.add(n);
          } catch {
            // this lower layer has nothing there
          }
        }
        let present: Set<string>;
        try {
          present = new Set(await readdir(join(dest, dir)));
        } catch {
          await mkdir(join(dest, dir), { recursive: true });
          present = new Set();
        }
        for (const n of names) if (!present.has(n)) await this.makeWhiteout(join(dest, dir, n));
      }
    }
    for (const l of symlinks) {
      if (!l.path || l.path.split('/').includes('..')) continue;
      const target = join(dest, l.path);
      // A symlink made earlier must not be followed (a -> /etc, then a/b).
      if (!(await parentsAreRealDirs(dest, l.path))) {
        throw new InvalidParameter(`invalid layer: ${l.path} lies under a symbolic link`);
      }
      await mkdir(dirname(target), { recursive: true });
      await rm(target, { force: true, recursive: true });
      await symlink(l.target, target);
      await lchown(target, l.uid, l.gid).catch(() => undefined);
      if (l.mtime) await lutimes(target, l.mtime, l.mtime).catch(() => undefined);
    }
    // Deepest first (setting a directory's times does not touch its parent's); never through a symlink.
    dirTimes.sort((a, b) => b.path.split('/').length - a.path.split('/').length);
    for (const d of dirTimes) {
      if (!(await parentsAreRealDirs(dest, d.path))) continue;
      await lutimes(join(dest, d.path), d.mtime, d.mtime).catch(() => undefined);
    }
    return size;
  }

  /** overlayfs's whiteout: a 0/0 character device where the deleted name was. */
  private async makeWhiteout(path: string): Promise<void> {
    await mkdir(dirname(path), { recursive: true });
    const st = await lstat(path).catch(() => undefined);
    if (st) await rm(path, { recursive: true, force: true });
    await run('mknod', [path, 'c', '0', '0']);
    await chmod(path, 0o600).catch(() => undefined);
  }
}

/** True when no parent of `rel` inside `root` is a symlink (missing parents are fine: they become dirs). */
async function parentsAreRealDirs(root: string, rel: string): Promise<boolean> {
  const parts = rel.split('/').filter(Boolean);
  let cur = root;
  for (const part of parts.slice(0, -1)) {
    cur = join(cur, part);
    const st = await lstat(cur).catch(() => undefined);
    if (!st) return true;
    if (st.isSymbolicLink() || !st.isDirectory()) return false;
  }
  return true;
}

/** Streams a file for re-reading a spooled tar. */
export function openTar(path: string): Readable {
  return createReadStream(path);
}
