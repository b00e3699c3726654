/**
 * Mounts of a container's root filesystem, made by the daemon itself through
 * the addon (native/mount.c) rather than by spawning `mount`/`umount`: one
 * syscall instead of a fork + exec + libmount per container start and stop
 * (5-40 ms of a start here under load).
 */
import { addon } from './native.js';
import { KernelError } from './errors.js';

/** Mounts an overlay on `target` with these options (`lowerdir=...,upperdir=...,workdir=...`). */
export function mountOverlay(target: string, options: string): void {
  try {
    addon().mountOverlay(target, options);
  } catch (e) {
    throw new KernelError('mount overlay', (e as Error).message);
  }
}

/** Unmounts `target`; `detach` (MNT_DETACH) leaves a busy mount to the kernel to finish once it is free. */
export function unmount(target: string, detach = false): void {
  try {
    addon().unmount(target, detach);
  } catch (e) {
    throw new KernelError(detach ? 'umount -l' : 'umount', (e as Error).message);
  }
}
