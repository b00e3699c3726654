#!/usr/bin/env node
// Runs the unit tests, then the end-to-end tests one file at a time (they
// make lab namespaces and daemons), then checks that nothing was left behind.
import { spawnSync } from 'node:child_process';
import { readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const only = process.argv.slice(2);
const files = (dir) =>
  existsSync(join(root, dir))
    ? readdirSync(join(root, dir))
        .filter((f) => f.endsWith('.test.js'))
        .map((f) => join(dir, f))
    : [];
const unit = files('dist/test/unit');
const e2e = files('dist/test/e2e');
const pick = (list) => (only.length ? list.filter((f) => only.some((o) => f.includes(o))) : list);
const selected = [...pick(unit), ...pick(e2e)];
if (selected.length === 0) {
  console.error('no test files found (did `npm run build` run?)');
  process.exit(1);
}
// The whole suite also runs the static checks (`npm run lint`: import circles and layers; see package.json).
const lint = only.length ? { status: 0 } : spawnSync('npm', ['run', '-s', 'lint'], { cwd: root, stdio: 'inherit' });
if (lint.status !== 0) console.error('npm run lint failed (the tests run anyway)');
const format = only.length
  ? { status: 0 }
  : spawnSync('npm', ['run', '-s', 'format:check'], { cwd: root, stdio: 'inherit' });
if (format.status !== 0) console.error('npm run format:check failed: run `npm run format` (the tests run anyway)');
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...selected], {
  cwd: root,
  stdio: 'inherit',
});
// The leak check lives in the repository (not beside it), so every clone runs it.
const l = spawnSync('bash', [join(root, 'scripts/leaks.sh')], { stdio: 'inherit' });
if (l.status !== 0) {
  console.error('the test suite left kernel objects or processes behind');
  process.exit(r.status || 1);
}
process.exit(r.status !== 0 ? (r.status ?? 1) : lint.status === 0 && format.status === 0 ? 0 : 1);
