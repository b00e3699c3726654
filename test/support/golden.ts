/**
 * Golden files (moby's testdata/*.golden): a test compares text it made with
 * a file under test/golden/. `UPDATE_GOLDEN=1 node --test ...` rewrites the
 * files instead (review the diff before committing it).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(here, here.includes('/dist/') ? '../../..' : '../..');

export function assertGolden(name: string, actual: string): void {
  const path = join(REPO, 'test/golden', name);
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(path)) {
    if (process.env.UPDATE_GOLDEN !== '1') assert.fail(`no golden file ${path} (run with UPDATE_GOLDEN=1 to write it)`);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, actual);
    return;
  }
  assert.equal(actual, readFileSync(path, 'utf8'), `differs from golden file test/golden/${name}`);
}
