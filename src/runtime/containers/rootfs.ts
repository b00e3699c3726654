/**
 * A container's root filesystem: an overlay mount of the image's layers
 * (lowerdir, read-only, shared) under a per-container upperdir/workdir.
 * Mounted at start, unmounted at stop; a failed mount leaves nothing behind.
 * The mount itself is a syscall from the daemon (src/kernel/mount.ts).
 */
import { mkdirSync, statSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { mountOverlay, unmount } from '../../kernel/mount.js';

export interface RootfsPaths {
  upper: string;
  work: string;
  merged: string;
  /** Stands in as the lowerdir of an image without layers. */
  empty: string;
}

export function rootfsPaths(containerDir: string): RootfsPaths {
  return {
    upper: join(containerDir, 'diff'),
    work: join(containerDir, 'work'),
    merged: join(containerDir, 'merged'),
    empty: join(containerDir, 'empty'),
  };
}

/** Is something mounted exactly at `path`? (from /proc/self/mountinfo, octal escapes decoded) */
export async function isMounted(path: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  for (const line of info.split('\n')) {
    const mp = line.split(' ')[4];
    if (mp && mp.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))) === path) return true;
  }
  return false;
}

/**
 * Is some filesystem mounted on `dir` (a directory we made)? A mount shows as another device than
 * the directory's parent: two stats instead of reading every line of mountinfo.
 */
function hasMountOn(dir: string): boolean {
  return statSync(dir).dev !== statSync(dirname(dir)).dev;
}

export async function mountRootfs(p: RootfsPaths, lowerDirs: string[]): Promise<void> {
  // Synchronous, like the mount itself: microseconds each, not a thread-pool round trip each.
  mkdirSync(p.upper, { recursive: true, mode: 0o755 });
  mkdirSync(p.work, { recursive: true, mode: 0o700 });
  mkdirSync(p.merged, { recursive: true, mode: 0o755 });
  if (hasMountOn(p.merged)) return;
  let lowers = lowerDirs;
  if (!lowers.length) {
    await mkdir(p.empty, { recursive: true });
    lowers = [p.empty];
  }
  for (const d of [...lowers, p.upper, p.work]) {
    if (/[,:]/.test(d)) throw new Error(`cannot use ${d} in an overlay mount (it contains ',' or ':')`);
  }
  const opts = `lowerdir=${lowers.join(':')},upperdir=${p.upper},workdir=${p.work}`;
  try {
    mountOverlay(p.merged, opts);
  } catch (e) {
    throw new Error(`mounting the container's root filesystem failed: ${(e as Error).message}`);
  }
}

/** hasMountOn, with a missing directory (a container torn down already) as nothing mounted. */
function overlayMounted(dir: string): boolean {
  try {
    return hasMountOn(dir);
  } catch {
    return false;
  }
}

/**
 * Unmounts the overlay mountRootfs made. Whether it is still mounted is known from the directory itself (an
 * overlay is its own device), not from /proc/self/mountinfo: with 1000 containers that file has 1000+ lines,
 * and rm read it twice per container.
 */
export async function unmountRootfs(p: RootfsPaths): Promise<void> {
  for (let i = 0; i < 5 && overlayMounted(p.merged); i++) {
    try {
      unmount(p.merged);
    } catch {
      // Busy (a process still holds it): detach lazily, the kernel finishes when free.
      try {
        unmount(p.merged, true);
      } catch {
        // gone meanwhile, or not a mount point: the loop's check decides
      }
    }
  }
}
