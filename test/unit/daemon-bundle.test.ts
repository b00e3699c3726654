/**
 * What the daemon's bundle (`npm run build`, scripts/bundle-coved.mjs) loads when a single-host daemon
 * starts, read from esbuild's metafile: the entry file and the chunks it imports statically, not those
 * loaded on demand (swarm mode, each network driver). Issue #10, engine RSS idle.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../../src/common/repo-root.js';

interface Meta {
  inputs: Record<string, unknown>;
  outputs: Record<
    string,
    { imports: Array<{ path: string; kind: string; external?: boolean }>; inputs: Record<string, unknown> }
  >;
}

const root = repoRoot(import.meta.url);
const meta = JSON.parse(readFileSync(join(root, 'dist/coved/meta.json'), 'utf8')) as Meta;
const ENTRY = 'dist/coved/coved.mjs';

/** The output files a daemon start loads: the entry and, transitively, its static imports. */
function loadedAtStart(): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const i of meta.outputs[file]!.imports) if (!i.external && i.kind === 'import-statement') visit(i.path);
  };
  visit(ENTRY);
  return seen;
}

test('bundle: every output file is ASCII (one character above U+00FF makes V8 keep the whole source at two bytes a character)', () => {
  for (const file of Object.keys(meta.outputs).filter((f) => f.endsWith('.mjs'))) {
    const text = readFileSync(join(root, file), 'utf8');
    const at = text.search(/[^\x00-\x7f]/);
    assert.equal(at, -1, `${file}: non-ASCII at ${at}: ${JSON.stringify(text.slice(at - 40, at + 10))}`);
  }
});

test('bundle: a single-host daemon start loads no swarm code and none of zlib, https, tls', () => {
  const files = loadedAtStart();
  assert.ok(files.size > 1, 'the entry imports shared chunks');
  const inputs = [...files].flatMap((f) => Object.keys(meta.outputs[f]!.inputs));
  for (const pkg of ['etcd3', '@grpc/grpc-js', 'protobufjs', 'tar'])
    assert.deepEqual(
      inputs.filter((i) => i.includes(`node_modules/${pkg}/`)),
      [],
      `${pkg} is in what a start loads`,
    );
  const builtins = [...files].flatMap((f) =>
    meta.outputs[f]!.imports.filter((i) => i.external).map((i) => i.path.replace(/^node:/, '')),
  );
  for (const name of ['zlib', 'https', 'tls'])
    assert.ok(!builtins.includes(name), `${name} is imported by what a start loads`);
  // The check sees what it is meant to see: node's http and the daemon's own modules are there.
  assert.ok(builtins.includes('http'));
  assert.ok(inputs.includes('dist/src/daemon/main.js'));
});
