import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import type { Logger } from '../common/log.js';

const run = promisify(execFile);

/** Hybrid cgroups: v1 controllers on a tmpfs /sys/fs/cgroup with a v2 mount at `unified`. */
export function hybridCgroups(): boolean {
  try {
    const mounts = readFileSync('/proc/self/mounts', 'utf8');
    const root = mounts.split('\n').find((l) => l.split(' ')[1] === '/sys/fs/cgroup');
    return !!root && root.split(' ')[2] === 'tmpfs' && existsSync('/sys/fs/cgroup/unified');
  } catch {
    return false;
  }
}

/**
 * Picks the OCI runtime: the one asked for, else runc, else crun. Both speak
 * the same OCI command line; crun is passed over on hosts with hybrid cgroups,
 * where it refuses every container ("cgroups in hybrid mode not supported").
 */
export async function probeRuntime(wanted: string, log: Logger): Promise<string> {
  const candidates = wanted
    ? [wanted]
    : ['/usr/sbin/runc', '/usr/bin/runc', '/usr/local/sbin/runc', '/usr/bin/crun', '/usr/local/bin/crun'];
  const tried: string[] = [];
  for (const path of candidates) {
    if (path.endsWith('crun') && hybridCgroups()) {
      tried.push(`${path}: crun cannot run containers on hybrid cgroups (v1 controllers with a v2 'unified' mount)`);
      continue;
    }
    try {
      const { stdout } = await run(path, ['--version']);
      log.debug({ runtime: path, version: stdout.split('\n')[0] }, 'OCI runtime found');
      return path;
    } catch (e) {
      tried.push(`${path}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  throw new Error(`no usable OCI runtime found (install runc: apt-get install runc); tried ${tried.join('; ')}`);
}
