/**
 * The side effects of a container's mount points, kept out of the manager:
 *  - at create (`materialize`): named volumes are created when missing (as
 *    Docker does), anonymous ones made; `-v` bind sources that do not exist are
 *    created as directories, `--mount` ones are refused with Docker's error. A
 *    failure removes the volumes this create made: nothing half-made.
 *  - at start (`prepare`): device-backed volumes mounted, and an empty volume
 *    gets a copy of what the image has at its destination (Docker's copy-up,
 *    unless `nocopy`).
 *  - at stop (`release`) and rm (`removeAnonymous`).
 */
import { execFile } from 'node:child_process';
import { lstat, mkdir, readdir, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { CoveError, InvalidParameter } from '../../common/errors.js';
import type { VolumeStore } from '../volumes/store.js';
import type { MountPoint } from './mounts.js';
import { resolveScoped } from './scoped-path.js';

const run = promisify(execFile);

export async function materialize(volumes: VolumeStore, list: MountPoint[]): Promise<MountPoint[]> {
  const made: string[] = [];
  const out: MountPoint[] = [];
  try {
    for (const m0 of list) {
      const m = structuredClone(m0);
      if (m.Type === 'bind') {
        const st = await stat(m.Source).catch(() => undefined);
        if (!st) {
          if (!m.createSource)
            throw new InvalidParameter(
              `invalid mount config for type "bind": bind source path does not exist: ${m.Source}`,
            );
          await mkdir(m.Source, { recursive: true, mode: 0o755 }).catch((e) => {
            throw new InvalidParameter(`error while creating mount source path '${m.Source}': ${(e as Error).message}`);
          });
        }
        delete m.createSource;
      } else if (m.Type === 'volume') {
        if (m.Source && m.Name) {
          // Inherited through --volumes-from: the volume must still be there.
          await volumes.inspect(m.Name);
        } else {
          const existed = m.Name ? await volumes.get(m.Name) : undefined;
          const v = await volumes.create(
            {
              ...(m.Name ? { Name: m.Name } : {}),
              Driver: m.volumeOptions?.driver ?? 'local',
              ...(m.volumeOptions?.driverOpts ? { DriverOpts: m.volumeOptions.driverOpts } : {}),
              ...(m.volumeOptions?.labels ? { Labels: m.volumeOptions.labels } : {}),
            },
            { anonymous: !!m.anonymous },
          );
          if (!existed) made.push(v.Name);
          m.Name = v.Name;
          m.Source = v.Mountpoint;
        }
        delete m.volumeOptions;
      }
      out.push(m);
    }
  } catch (e) {
    for (const n of made) await volumes.remove(n, { force: true }).catch(() => undefined);
    throw e;
  }
  return out;
}

async function isEmptyDir(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length === 0;
  } catch {
    return false;
  }
}

/** Mounts device volumes and copies the image's content into empty volumes (before runc create). */
export async function prepare(volumes: VolumeStore, list: MountPoint[], rootfs: string): Promise<void> {
  for (const m of list) {
    if (m.Type === 'bind') {
      if (!(await stat(m.Source).catch(() => undefined))) {
        throw new CoveError(
          `error while mounting volume '${m.Destination}': bind source path does not exist: ${m.Source}`,
          500,
        );
      }
      continue;
    }
    if (m.Type !== 'volume' || !m.Name) continue;
    const dir = await volumes.mount(m.Name);
    if (m.noCopy || !(await isEmptyDir(dir))) continue;
    // The path as the container would see it; never a host path through a planted symlink.
    const src = resolveScoped(rootfs, m.Destination);
    const st = await lstat(src).catch(() => undefined);
    if (!st?.isDirectory() || (await isEmptyDir(src))) continue;
    try {
      await run('cp', ['-a', '--no-dereference', `${src}/.`, `${dir}/`]);
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      throw new CoveError(
        `copying the image's ${m.Destination} into volume ${m.Name} failed: ${(err.stderr || err.message).trim()}`,
        500,
      );
    }
  }
}

export async function release(volumes: VolumeStore, list: MountPoint[] | undefined): Promise<void> {
  for (const m of list ?? []) if (m.Type === 'volume' && m.Name) await volumes.release(m.Name).catch(() => undefined);
}

/** rm -v and --rm: the container's anonymous volumes go with it (kept while another container uses one). */
export async function removeAnonymous(volumes: VolumeStore, list: MountPoint[] | undefined): Promise<void> {
  for (const m of list ?? []) {
    if (m.Type === 'volume' && m.Name && m.anonymous) await volumes.remove(m.Name).catch(() => undefined);
  }
}
