#!/usr/bin/env node
// `npm run build` step: the cove CLI as one script, dist/cli/bundle.js, and V8's code cache for it,
// dist/cli/bundle.cache (bin/cove reads both). Why a script and not an ES module: Node 20 keeps no code
// cache for ES modules, so each `cove` call would parse and compile ~290 KB of JavaScript again (~14 ms of
// a ~70 ms start above bare node); a script compiled through node:vm with the cache skips that. The bundle
// is the body of a function that bin/cove calls with (require, importMetaUrl): esbuild's CommonJS output
// would need a module object, and an IIFE has no require for node's builtins.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(repo, 'dist/cli');
rmSync(outdir, { recursive: true, force: true });

await build({
  absWorkingDir: repo,
  entryPoints: [join(repo, 'dist/src/cli/bin.js')],
  outfile: join(outdir, 'bundle.js'),
  bundle: true,
  platform: 'node',
  format: 'iife',
  target: 'node20',
  minifySyntax: true,
  minifyWhitespace: true,
  // import.meta.url of every module is the bundle's URL, passed in by bin/cove (repoRoot walks up from it).
  define: { 'import.meta.url': '__coveBundleUrl' },
  logLevel: 'warning',
});

// The code cache: bin/cove writes it when it finds none (or V8 rejects it: another node, other flags). One
// run here, through bin/cove itself so that its node flags are the ones the cache is checked against; --help
// builds every command's options, the start-up work every call repeats.
execFileSync(join(repo, 'bin/cove'), ['--help'], { stdio: 'ignore' });
