import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Logger } from '../common/log.js';

const run = promisify(execFile);

/**
 * Picks the OCI runtime: the one asked for, else runc, else crun. crun is only
 * taken when it can really start containers: on hybrid cgroup hosts (like
 * this project's machines) it fails with "cgroups in hybrid mode not
 * supported", so runc wins there.
 */
export async function probeRuntime(wanted: string, log: Logger): Promise<string> {
  const candidates = wanted ? [wanted] : ['/usr/sbin/runc', '/usr/bin/runc', '/usr/local/sbin/runc', '/usr/bin/crun'];
  const tried: string[] = [];
  for (const path of candidates) {
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
