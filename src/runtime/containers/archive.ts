/**
 * The archive API behind `docker cp`: stat a path in a container (HEAD, the
 * X-Docker-Container-Path-Stat header), read it as a tar (GET) and extract a
 * tar into a directory (PUT).
 *
 * Paths are resolved as the container sees them: inside its rootfs with
 * symlinks followed relative to that root (scoped-path.ts), and a path under
 * one of its volumes or binds goes to that mount's source. Nothing reaches a
 * host path through a symlink (CVE-2018-15664 / CVE-2019-14271 class): reads
 * never follow links below the resolved path (tar stores them as links), and
 * extraction refuses entries with `..`, absolute paths are made relative, and
 * node-tar refuses to write through a symlink that is already there.
 */
import { lstat, readlink } from 'node:fs/promises';
import { basename, dirname, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CoveError, Forbidden, InvalidParameter, NotFound } from '../../common/errors.js';
import type { MountPoint } from './mounts.js';
import { resolveScoped, ScopeError } from './scoped-path.js';
import { loadTar } from '../tar.js';

export interface PathStat {
  name: string;
  size: number;
  mode: number;
  mtime: string;
  linkTarget: string;
}

export interface Located {
  /** The host path. */
  host: string;
  /** The path as the container sees it (symlinks resolved). */
  ctr: string;
  /** False when it lies on a read-only mount or rootfs. */
  writable: boolean;
}

/** Go's os.FileMode bits for what lstat says (ModeDir, ModeSymlink, ...). */
function goMode(st: {
  mode: number;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
  isFIFO(): boolean;
  isSocket(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
}): number {
  let m = st.mode & 0o777;
  if (st.mode & 0o4000) m |= 1 << 23; // setuid
  if (st.mode & 0o2000) m |= 1 << 22; // setgid
  if (st.mode & 0o1000) m |= 1 << 20; // sticky
  if (st.isDirectory()) m |= 1 << 31;
  else if (st.isSymbolicLink()) m |= 1 << 27;
  else if (st.isFIFO()) m |= 1 << 25;
  else if (st.isSocket()) m |= 1 << 24;
  else if (st.isCharacterDevice()) m |= (1 << 26) | (1 << 21);
  else if (st.isBlockDevice()) m |= 1 << 26;
  // Go's uint32 bits as JSON: unsigned.
  return m >>> 0;
}

/**
 * Where `path` of the container lives on the host. `followLast` false keeps a
 * final symlink as itself (what `docker cp` copies out).
 */
export function locate(
  rootfs: string,
  mounts: MountPoint[],
  path: string,
  readonlyRootfs: boolean,
  followLast: boolean,
): Located {
  if (!path) throw new InvalidParameter('Could not find the file  in container');
  let host: string;
  try {
    host = resolveScoped(rootfs, path, followLast);
  } catch (e) {
    if (e instanceof ScopeError) throw new InvalidParameter(e.message);
    throw e;
  }
  let ctr = '/' + posix.relative(rootfs, host);
  if (ctr === '/.') ctr = '/';
  // The deepest mount whose destination holds the path: resolve the rest inside its source.
  const mount = [...mounts]
    .filter((m) => m.Type !== 'tmpfs' && m.Source && (ctr === m.Destination || ctr.startsWith(m.Destination + '/')))
    .sort((a, b) => b.Destination.length - a.Destination.length)[0];
  if (mount) {
    const rest = ctr.slice(mount.Destination.length) || '/';
    try {
      host = resolveScoped(mount.Source, rest, followLast);
    } catch (e) {
      if (e instanceof ScopeError) throw new InvalidParameter(e.message);
      throw e;
    }
    return { host, ctr, writable: mount.RW };
  }
  return { host, ctr, writable: !readonlyRootfs };
}

export async function statPath(loc: Located, asked: string, containerId: string): Promise<PathStat> {
  const st = await lstat(loc.host).catch(() => undefined);
  if (!st) throw new NotFound(`Could not find the file ${asked} in container ${containerId}`);
  let linkTarget = '';
  if (st.isSymbolicLink()) {
    const t = await readlink(loc.host);
    linkTarget = t.startsWith('/') ? t : posix.join(posix.dirname(loc.ctr), t);
  }
  return {
    name: basename(asked.replace(/\/+$/, '')) || '/',
    size: st.size,
    mode: goMode(st),
    mtime: st.mtime.toISOString(),
    linkTarget,
  };
}

export function encodeStat(s: PathStat): string {
  return Buffer.from(JSON.stringify(s)).toString('base64');
}

/**
 * A tar of the path: its base name as the top entry, as Docker's archive
 * (`path/.` = the directory's content without the directory itself).
 */
export async function tarOf(loc: Located, asked: string): Promise<Readable> {
  const contentOnly = /\/\.$/.test(asked);
  const cwd = contentOnly ? loc.host : dirname(loc.host);
  const entry = contentOnly ? '.' : basename(loc.host);
  const tar = await loadTar();
  return tar.c({ cwd, portable: false, follow: false, noDirRecurse: false, preservePaths: false }, [
    entry,
  ]) as unknown as Readable;
}

/** Extracts a tar into the directory `loc` (which must exist and be one). */
export async function extractInto(
  loc: Located,
  asked: string,
  containerId: string,
  input: Readable,
  opts: { copyUIDGID?: boolean },
): Promise<void> {
  const st = await lstat(loc.host).catch(() => undefined);
  if (!st) throw new NotFound(`Could not find the file ${asked} in container ${containerId}`);
  if (!st.isDirectory()) throw new InvalidParameter('extraction point is not a directory');
  if (!loc.writable) throw new Forbidden('container rootfs is marked read-only');
  let failure: Error | undefined;
  const tar = await loadTar();
  const x = tar.x({
    cwd: loc.host,
    preservePaths: false,
    // Owners as in the archive when asked (docker cp -a), else root's, as Docker does.
    preserveOwner: !!opts.copyUIDGID,
    ...(opts.copyUIDGID ? {} : { uid: 0, gid: 0 }),
    // Never follow or replace a symlink already in the container with a directory path through it.
    unlink: false,
    strict: false,
    onwarn: (code: string, message: string) => {
      if (code === 'TAR_ENTRY_ERROR' || code === 'TAR_SYMLINK_ERROR' || /symbolic link/i.test(message))
        failure ??= new Forbidden(`cannot extract through a symbolic link: ${message}`);
    },
    filter: (p: string) => !p.split('/').includes('..'),
  });
  try {
    await pipeline(input, x as unknown as NodeJS.WritableStream);
  } catch (e) {
    throw new CoveError(`extracting the archive failed: ${(e as Error).message}`, 400);
  }
  if (failure) throw failure;
}
