#!/usr/bin/env node
// `npm run build` step: coved as one esbuild bundle, dist/coved/ (bin/coved runs dist/coved/coved.mjs). Node
// then loads and links one file instead of ~210 modules (fewer module records, no per-file loader work) and
// a single-host daemon never loads what only swarm mode uses: code splitting (ESM chunks in dist/coved/chunks/)
// puts the etcd client (etcd3, grpc-js, protobufjs; with the edits of scripts/etcd-esbuild.mjs) and the
// services layer's working parts (src/services/parts.ts) in chunks imported on entering a swarm, and each
// network driver in a chunk of its own (src/network/drivers/registry.ts imports them by fixed path).
//
// Whitespace is kept: esbuild then writes a `// dist/src/<path>.js` line before each module's code, so a stack
// frame's bundle line tells its module. The daemon's last resort (src/daemon/last-resort.ts) reads those lines
// to tell an API or DNS frame from any other, and people reading a stack can too.
import { build } from 'esbuild';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NODE_ESM, etcdLoadEdits } from './etcd-esbuild.mjs';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(repo, 'dist/coved');
rmSync(outdir, { recursive: true, force: true });

const result = await build({
  ...NODE_ESM,
  minifyWhitespace: false,
  absWorkingDir: repo,
  entryPoints: { coved: join(repo, 'dist/src/daemon/main.js') },
  outdir,
  outExtension: { '.js': '.mjs' },
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  // src/swarm/etcd-client.ts: in this bundle the etcd client is a chunk, not dist/src/swarm/etcd-modules.bundle.mjs.
  define: { COVE_BUNDLE: 'true' },
  metafile: true,
  plugins: [{ name: 'cove-etcd', setup: (b) => etcdLoadEdits(repo, b) }],
});

// What is in which output file (for checking that a single-host daemon loads no swarm code): dist/coved/meta.json.
writeFileSync(join(outdir, 'meta.json'), JSON.stringify(result.metafile));

// Every output file in ASCII: V8 holds a module's source text for as long as its functions may still be
// compiled (lazily, on first call), and one character above U+00FF anywhere in the file (an arrow or a dash
// in a comment esbuild kept) makes the whole source a two-byte string: coved.mjs then took 1.76 MB of the
// idle daemon's heap instead of 0.88. esbuild escapes strings itself (charset ascii) but not comments; a
// \uXXXX escape means the same character in a string, template, regular expression or identifier, and in
// a comment it is only text.
for (const file of Object.keys(result.metafile.outputs).filter((f) => f.endsWith('.mjs'))) {
  const path = join(repo, file);
  const text = readFileSync(path, 'utf8');
  if (!/[^\x00-\x7f]/.test(text)) continue;
  writeFileSync(
    path,
    text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`),
  );
}
