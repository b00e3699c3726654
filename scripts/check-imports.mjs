#!/usr/bin/env node
// Import structure of src/, checked in `npm run lint`:
//  1. no import circles (madge; `import type` is erased at compile time, so only imports that load a module count);
//  2. layers import downwards only: src/network and src/runtime (the CNM and the container runtime) never import
//     src/daemon, src/api or src/cli (type imports included), so they can be used and tested without the daemon.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import madge from 'madge';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const src = join(root, 'src');
let failed = false;

const graph = await madge(src, {
  fileExtensions: ['ts'],
  tsConfig: join(root, 'tsconfig.json'),
  detectiveOptions: { ts: { skipTypeImports: true }, tsx: { skipTypeImports: true } },
});
const circles = graph.circular();
if (circles.length > 0) {
  failed = true;
  console.error(`import circles in src/ (${circles.length}):`);
  for (const c of circles) console.error(`  ${[...c, c[0]].join(' -> ')}`);
}

const LOWER = ['network', 'runtime'];
const UPPER = ['daemon', 'api', 'cli'];
const files = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
for (const layer of LOWER) {
  for (const f of files(join(src, layer))) {
    const text = readFileSync(f, 'utf8');
    for (const m of text.matchAll(
      /(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g,
    )) {
      const spec = m[1] ?? m[2];
      if (!spec.startsWith('.')) continue;
      const target = relative(src, resolve(dirname(f), spec)).split('/')[0];
      if (UPPER.includes(target)) {
        failed = true;
        console.error(`${relative(root, f)}: src/${layer} must not import src/${target} ('${spec}')`);
      }
    }
  }
}
if (failed) process.exit(1);
console.log(
  `imports: ${Object.keys(graph.obj()).length} modules, no circles; src/{${LOWER}} import nothing from src/{${UPPER}}`,
);
