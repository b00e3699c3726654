/**
 * The repository (or installed package) root: the nearest directory above a
 * module that holds Cove's package.json. Found by walking up rather than by a
 * fixed number of `..`, so that it holds from src/, from dist/src/ and from the
 * bundled CLI (dist/cli/bundle.js, whose import.meta.url bin/cove sets) alike.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function repoRoot(moduleUrl: string): string {
  let dir = dirname(fileURLToPath(moduleUrl));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bin/coved'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`cove: no repository root above ${fileURLToPath(moduleUrl)}`);
    dir = up;
  }
}
