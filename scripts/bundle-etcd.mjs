#!/usr/bin/env node
// `npm run build` step: the etcd client (etcd3, grpc-js, protobufjs, cockatiel) and Cove's etcd store in one
// ESM file, dist/src/swarm/etcd-modules.bundle.mjs, which src/swarm/etcd-client.ts loads when a node enters a
// swarm and coved runs from the tsc output (dist/src/daemon/main.js; the coved bundle, scripts/bundle-coved.mjs,
// has its own etcd chunk). Loading the module graph took 1.8-2.5 s on this loaded machine and sat on the path of
// every `swarm join`; one file links faster (settings in scripts/etcd-esbuild.mjs). Cove's own modules
// other than the store stay outside the bundle (imported by relative path), so error classes such as
// CasError are the same objects for the bundled store and for the code that catches them.
import { build } from 'esbuild';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NODE_ESM, etcdLoadEdits } from './etcd-esbuild.mjs';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(repo, 'dist/src/swarm/etcd-modules.js');
const outfile = join(repo, 'dist/src/swarm/etcd-modules.bundle.mjs');
const inside = new Set([entry, join(repo, 'dist/src/store/etcd.js')]);

await build({
  ...NODE_ESM,
  entryPoints: [entry],
  outfile,
  plugins: [
    {
      name: 'cove-etcd',
      setup(b) {
        // Cove's modules other than the store: left outside, by their path from the bundle.
        b.onResolve({ filter: /^\.\.?\// }, (args) => {
          const abs = resolve(args.resolveDir, args.path);
          if (!abs.startsWith(join(repo, 'dist/src/')) || inside.has(abs)) return undefined;
          let rel = relative(dirname(outfile), abs);
          if (!rel.startsWith('.')) rel = './' + rel;
          return { path: rel, external: true };
        });
        etcdLoadEdits(repo, b);
      },
    },
  ],
});
