/**
 * node-tar, loaded on the first archive the daemon reads or writes (image
 * load, save, pull and commit, `docker cp`, export) instead of at start: a
 * daemon that never touches an archive does not carry it (about 2 MB of RSS).
 * Every caller is already asynchronous, so the first use only waits for the
 * import once; later calls get the cached module.
 */
import type * as TarModule from 'tar';

export type Tar = typeof TarModule;

export function loadTar(): Promise<Tar> {
  return import('tar');
}
