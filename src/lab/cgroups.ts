/**
 * Cgroups of containers that were never removed through their daemon: a lab
 * whose daemon was down or killed when it ended SIGKILLs the containers'
 * processes, and runc never deletes their cgroups, which stay as empty
 * /sys/fs/cgroup/<controller>/cove/<id> directories (the path Cove gives
 * runc: src/runtime/containers/oci.ts). Used by `cove lab down` and the test
 * labs (test/lab/lab.ts).
 */
import { existsSync, readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';

const CGROUP_ROOT = '/sys/fs/cgroup';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** rmdir of every cgroup of the containers whose records are in `containersDir` (their processes are gone by now). */
export async function removeContainerCgroups(containersDir: string): Promise<void> {
  if (!existsSync(containersDir)) return;
  const ids = readdirSync(containersDir).filter((f) => /^[0-9a-f]{64}$/.test(f));
  if (!ids.length) return;
  let hierarchies: string[] = [];
  try {
    hierarchies = readdirSync(CGROUP_ROOT);
  } catch {
    return;
  }
  for (const id of ids) {
    for (const h of hierarchies) {
      const cg = join(CGROUP_ROOT, h, 'cove', id);
      // A killed process may take a moment to leave its cgroup (EBUSY until it is reaped).
      for (let i = 0; i < 10 && existsSync(cg); i++) {
        try {
          rmdirSync(cg);
        } catch {
          await sleep(100);
        }
      }
    }
  }
}
