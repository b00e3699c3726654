/**
 * A container's files: docker cp (stat, read and write paths in its root filesystem, mounted for the time it
 * takes), docker diff (its writable layer's changes), export and commit.
 */
import { readdir } from 'node:fs/promises';
import { Conflict } from '../../../common/errors.js';
import type { DockerContainerConfig } from '../../types.js';
import { isMounted, mountRootfs, rootfsPaths, unmountRootfs } from '../rootfs.js';
import { containerChanges, upperLayerTar, type FsChange } from '../fs-changes.js';
import { applyChanges, type ImageRunConfig } from '../../images/changes.js';
import { encodeStat, extractInto, locate, statPath, tarOf, type PathStat } from '../archive.js';
import type { Readable } from 'node:stream';
import { ContainerCore, type ContainerRecord } from './core.js';
import { loadTar } from '../../tar.js';

/** The container config keys a committed image keeps (its run config). */
const COMMIT_CONFIG_KEYS = [
  'User',
  'ExposedPorts',
  'Env',
  'Cmd',
  'Healthcheck',
  'Volumes',
  'WorkingDir',
  'Entrypoint',
  'OnBuild',
  'Labels',
  'StopSignal',
  'Shell',
] as const;

export class FileOps {
  constructor(private readonly core: ContainerCore) {}

  /**
   * Runs `fn` with the container's rootfs mounted: as it is while running; for
   * a stopped container mounted for the call (under the container's lock, so a
   * start waits) and unmounted after.
   */
  async withRootfs<T>(idOrName: string, fn: (r: ContainerRecord, merged: string) => Promise<T>): Promise<T> {
    const r0 = await this.core.get(idOrName);
    const rootfs = rootfsPaths(this.core.containerDir(r0.Id));
    if (r0.State.Running && (await isMounted(rootfs.merged))) return fn(r0, rootfs.merged);
    return this.core.withLock(r0.Id, async () => {
      const r = await this.core.get(r0.Id);
      if (r.State.Running) return fn(r, rootfs.merged);
      await mountRootfs(rootfs, await this.core.images.lowerDirs(r.ImageID));
      try {
        return await fn(r, rootfs.merged);
      } finally {
        await unmountRootfs(rootfs).catch((e) =>
          this.core.log.warn({ id: r.Id, err: (e as Error).message }, 'unmount after archive failed'),
        );
      }
    });
  }

  async archiveStat(idOrName: string, path: string): Promise<PathStat> {
    return this.withRootfs(idOrName, async (r, merged) =>
      statPath(locate(merged, r.MountPoints ?? [], path, !!r.HostConfig.ReadonlyRootfs, false), path, idOrName),
    );
  }

  /** GET archive: the stat header value and a tar; the rootfs stays mounted until the tar has been read. */
  async archiveGet(
    idOrName: string,
    path: string,
    consume: (statHeader: string, tar: Readable) => Promise<void>,
  ): Promise<void> {
    await this.withRootfs(idOrName, async (r, merged) => {
      const loc = locate(merged, r.MountPoints ?? [], path, !!r.HostConfig.ReadonlyRootfs, false);
      const st = await statPath(loc, path, idOrName);
      await consume(encodeStat(st), await tarOf(loc, path));
    });
  }

  async archivePut(idOrName: string, path: string, input: Readable, opts: { copyUIDGID?: boolean }): Promise<void> {
    await this.withRootfs(idOrName, async (r, merged) => {
      const loc = locate(merged, r.MountPoints ?? [], path, !!r.HostConfig.ReadonlyRootfs, true);
      await extractInto(loc, path, idOrName, input, opts);
    });
  }

  /** docker diff: the writable layer's changes against the image (fs-changes.ts). */
  async changes(idOrName: string): Promise<FsChange[] | null> {
    const r = await this.core.get(idOrName);
    const lowers = await this.core.images.lowerDirs(r.ImageID).catch(() => [] as string[]);
    const list = await containerChanges(rootfsPaths(this.core.containerDir(r.Id)).upper, lowers);
    return list.length ? list : null;
  }

  /** docker export: a tar of the container's root filesystem (its volumes not included). */
  async exportRootfs(idOrName: string, consume: (tar: Readable) => Promise<void>): Promise<void> {
    await this.withRootfs(idOrName, async (r, merged) => {
      const names = (await readdir(merged)).sort();
      this.core.publish(r, 'export');
      const tar = await loadTar();
      await consume(tar.c({ cwd: merged, portable: false, follow: false }, names) as unknown as Readable);
    });
  }

  /**
   * docker commit: the container's writable layer on top of its image, with
   * its run config (the body's keys over the container's) and the `changes`
   * (Dockerfile instructions) applied. A running container is paused meanwhile
   * unless `pause` is false, as Docker does.
   */
  async commit(
    idOrName: string,
    opts: {
      repo?: string;
      tag?: string;
      comment?: string;
      author?: string;
      changes?: string[];
      pause?: boolean;
      config?: Partial<DockerContainerConfig>;
    },
  ): Promise<{ Id: string }> {
    const r = await this.core.get(idOrName);
    if (r.State.Status === 'removing') throw new Conflict(`You cannot commit container ${r.Id} which is being removed`);
    if (r.State.Dead) throw new Conflict(`You cannot commit container ${r.Id} which is dead`);
    const base: ImageRunConfig = {};
    for (const k of COMMIT_CONFIG_KEYS) {
      const v = (opts.config as Record<string, unknown> | undefined)?.[k] ?? (r.Config as Record<string, unknown>)[k];
      if (v !== undefined && v !== null && v !== '') (base as Record<string, unknown>)[k] = structuredClone(v);
    }
    // Validate the instructions before pausing anything.
    const config = applyChanges(base, opts.changes ?? []);
    const pauseIt = opts.pause !== false && r.State.Running && !r.State.Paused;
    if (pauseIt) await this.core.lifecycleOps.pause(r.Id);
    let id: string;
    try {
      id = await this.core.images.commitLayer({
        base: r.ImageID,
        layer: await upperLayerTar(rootfsPaths(this.core.containerDir(r.Id)).upper),
        config,
        ...(opts.repo ? { repo: opts.repo } : {}),
        ...(opts.tag ? { tag: opts.tag } : {}),
        ...(opts.comment ? { comment: opts.comment } : {}),
        ...(opts.author ? { author: opts.author } : {}),
        createdBy: (r.Config.Cmd ?? []).join(' '),
        containerId: r.Id,
      });
    } finally {
      if (pauseIt)
        await this.core.lifecycleOps
          .unpause(r.Id)
          .catch((e) => this.core.log.warn({ id: r.Id, err: (e as Error).message }, 'unpause after commit failed'));
    }
    const ref = opts.repo ? `${opts.repo}${opts.tag ? ':' + opts.tag : ''}` : '';
    this.core.publish(await this.core.get(r.Id), 'commit', { comment: opts.comment ?? '', imageID: id, imageRef: ref });
    return { Id: id };
  }
}
