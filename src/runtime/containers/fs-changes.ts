/**
 * What a container changed in its filesystem, read from its overlay upper dir
 * as moby's archive.OverlayChanges does: `docker diff` (Kind 0 modified,
 * 1 added, 2 deleted) and the layer tar of `docker commit` (Docker's layer
 * format: a deleted name is an empty `.wh.<name>` file, an opaque directory
 * holds `.wh..wh..opq`).
 */
import { lstat, readdir } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import type { ReadEntry } from 'tar';
import { loadTar, type Tar } from '../tar.js';
import { addon } from '../../kernel/native.js';

export const CHANGE_MODIFY = 0;
export const CHANGE_ADD = 1;
export const CHANGE_DELETE = 2;

export interface FsChange {
  Path: string;
  Kind: 0 | 1 | 2;
}

/**
 * Paths Docker keeps in a container's init layer, below its writable layer
 * (mountpoints the runtime makes), so that neither diff nor commit shows them.
 */
const INIT_LAYER = new Set([
  '/dev',
  '/dev/pts',
  '/dev/shm',
  '/dev/console',
  '/proc',
  '/sys',
  '/.dockerenv',
  '/etc/resolv.conf',
  '/etc/hosts',
  '/etc/hostname',
  '/etc/mtab',
  '/sbin/docker-init',
]);

function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

function isOpaque(path: string): boolean {
  const v = addon().lgetxattr(path, 'trusted.overlay.opaque');
  return v !== null && v.length === 1 && v[0] === 0x79; // 'y'
}

/** One entry of the upper dir, in lexical walk order (filepath.Walk's). */
interface UpperEntry {
  rel: string;
  st: Stats;
  whiteout: boolean;
  opaque: boolean;
}

async function* walkUpper(upper: string, rel = '/'): AsyncGenerator<UpperEntry> {
  let names: string[];
  try {
    names = (await readdir(join(upper, rel))).sort();
  } catch {
    return;
  }
  for (const name of names) {
    const r = posix.join(rel, name);
    const abs = join(upper, r);
    const st = await lstat(abs).catch(() => undefined);
    if (!st) continue;
    const dir = st.isDirectory();
    yield { rel: r, st, whiteout: isWhiteout(st), opaque: dir && isOpaque(abs) };
    if (dir) yield* walkUpper(upper, r);
  }
}

/** An init-layer path that is only a mountpoint (a file or an empty dir the runtime made). */
async function isInitOnly(e: UpperEntry, upper: string): Promise<boolean> {
  if (!INIT_LAYER.has(e.rel)) return false;
  if (!e.st.isDirectory()) return e.st.size === 0 || e.rel.startsWith('/etc/');
  // A mountpoint dir with content of the container's own is a real change below it.
  return (await readdir(join(upper, e.rel)).catch(() => [] as string[])).every((n) =>
    INIT_LAYER.has(posix.join(e.rel, n)),
  );
}

/**
 * docker diff: every path of the upper dir, Kind by what the image's layers
 * (`lowers`, top first) hold; a directory that exists below with the same
 * size, mode and mtime is left out unless something under it changed (its
 * parent is then reported as modified, as moby does).
 */
export async function containerChanges(upper: string, lowers: string[]): Promise<FsChange[]> {
  const out: FsChange[] = [];
  const changedDirs = new Set<string>();
  const entries: UpperEntry[] = [];
  for await (const e of walkUpper(upper)) entries.push(e);
  // Bottom-up: a directory of the image copied up only to hold init-layer mountpoints (/sbin for
  // /sbin/docker-init, /etc for /etc/hosts) is not a change either: in Docker those live in the init layer.
  const clean = new Set<string>();
  const dirty = new Set<string>();
  for (const e of [...entries].reverse()) {
    const isClean =
      (await isInitOnly(e, upper)) ||
      (e.st.isDirectory() &&
        !e.opaque &&
        !dirty.has(e.rel) &&
        (await readdir(join(upper, e.rel)).catch(() => [])).length > 0 &&
        (await existsBelow(lowers, e.rel)));
    if (isClean) clean.add(e.rel);
    else dirty.add(posix.dirname(e.rel));
  }
  for (const e of entries) {
    if (clean.has(e.rel)) continue;
    let kind: FsChange['Kind'];
    // An opaque directory hides what the layers below had there: moby reports it deleted (its new content added).
    if (e.whiteout || (e.opaque && (await existsBelow(lowers, e.rel)))) kind = CHANGE_DELETE;
    else {
      kind = CHANGE_ADD;
      for (const lower of lowers) {
        const below = await lstat(join(lower, e.rel)).catch(() => undefined);
        if (!below || isWhiteout(below)) continue;
        if (
          below.isDirectory() &&
          e.st.isDirectory() &&
          below.mode === e.st.mode &&
          Math.floor(below.mtimeMs / 1000) === Math.floor(e.st.mtimeMs / 1000)
        ) {
          kind = -1 as FsChange['Kind'];
        } else {
          kind = CHANGE_MODIFY;
        }
        break;
      }
      if ((kind as number) === -1) {
        if (e.st.isDirectory()) changedDirs.add(e.rel);
        continue;
      }
    }
    if (e.st.isDirectory()) changedDirs.add(e.rel);
    if (kind === CHANGE_ADD || kind === CHANGE_DELETE) {
      const parent = posix.dirname(e.rel);
      if (parent !== '/' && !changedDirs.has(parent)) {
        out.push({ Path: parent, Kind: CHANGE_MODIFY });
        changedDirs.add(parent);
      }
    }
    out.push({ Path: e.rel, Kind: kind });
  }
  return out;
}

async function existsBelow(lowers: string[], rel: string): Promise<boolean> {
  for (const lower of lowers) {
    const st = await lstat(join(lower, rel)).catch(() => undefined);
    if (st) return !isWhiteout(st);
  }
  return false;
}

/** A header-only entry of the layer tar (whiteout markers). */
function markerEntry(tar: Tar, path: string, mtime: Date): ReadEntry {
  const header = new tar.Header({ path, type: 'File', size: 0, mode: 0o644, uid: 0, gid: 0, mtime });
  const entry = new tar.ReadEntry(header);
  entry.end();
  return entry;
}

/**
 * docker commit: the container's writable layer as a tar in Docker's layer
 * format (what `LayerStore.add` applies), init-layer mountpoints left out.
 */
export async function upperLayerTar(upper: string): Promise<Readable> {
  const files: string[] = [];
  const markers: string[] = [];
  const skip = new Set<string>();
  for await (const e of walkUpper(upper)) {
    if (await isInitOnly(e, upper)) {
      skip.add(e.rel);
      continue;
    }
    const rel = e.rel.slice(1);
    if (e.whiteout) {
      markers.push(posix.join(posix.dirname(rel), '.wh.' + posix.basename(rel)).replace(/^\.\//, ''));
      continue;
    }
    if (e.opaque) markers.push(posix.join(rel, '.wh..wh..opq'));
    files.push(rel);
  }
  // Entries one by one (no recursion): the walk decided what goes in.
  const tar = await loadTar();
  const pack = new tar.Pack({
    cwd: upper,
    portable: false,
    noDirRecurse: true,
    filter: (p) => !skip.has('/' + p.replace(/^\.\//, '')),
  });
  for (const f of files) pack.write(f);
  const now = new Date();
  for (const m of markers) pack.write(markerEntry(tar, m, now));
  pack.end();
  return pack as unknown as Readable;
}
