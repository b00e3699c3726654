/**
 * Resolving a path inside a container's root filesystem the way the kernel
 * would from inside the container: every symlink (absolute or relative, at any
 * depth) is followed relative to the container root and `..` stops at that
 * root. What comes back is always under `root`, so a symlink planted in an
 * image or by a container (`/x -> /etc` on the host's side, `../../..`) can
 * never make the daemon read or write host files (Docker's CVE-2018-15664 and
 * CVE-2019-14271 class).
 *
 * There is a window between resolving and using the path (a container can
 * swap a directory for a symlink meanwhile); callers that write re-check what
 * they open (lstat, no following of the last component) and operate on the
 * stopped container's rootfs or with O_NOFOLLOW where it matters.
 */
import { lstatSync, readlinkSync } from 'node:fs';
import { posix, join } from 'node:path';

const MAX_LINKS = 255;

export class ScopeError extends Error {}

/**
 * The host path of `ctrPath` inside `root`. With `followLast` false the last
 * component is not followed when it is a symlink (lstat semantics), as cp
 * does for a source that is a link.
 */
export function resolveScoped(root: string, ctrPath: string, followLast = true): string {
  const todo = posix
    .normalize('/' + ctrPath)
    .split('/')
    .filter(Boolean);
  const done: string[] = [];
  let links = 0;
  while (todo.length) {
    const part = todo.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const host = join(root, ...done, part);
    let isLink = false;
    try {
      isLink = lstatSync(host).isSymbolicLink();
    } catch {
      isLink = false;
    }
    if (isLink && (todo.length > 0 || followLast)) {
      if (++links > MAX_LINKS) throw new ScopeError(`too many levels of symbolic links: ${ctrPath}`);
      const target = readlinkSync(host);
      const parts = target.split('/').filter(Boolean);
      if (target.startsWith('/')) done.length = 0;
      todo.unshift(...parts);
      continue;
    }
    done.push(part);
  }
  return join(root, ...done);
}

/** `p` (a path under root) as the container sees it. */
export function containerView(root: string, p: string): string {
  const rel = posix.relative(root, p);
  return '/' + (rel === '' ? '' : rel);
}
