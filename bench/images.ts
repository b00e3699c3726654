/**
 * Workload 16 (issue #16): images through a registry.
 *
 * Single host, Cove and Docker side by side: Debian's docker-registry runs
 * inside the engine's own lab namespace on 127.0.0.1:5000 (plain http, which
 * both engines allow for loopback registries without flags), so each engine
 * talks to the same registry program over the same path. Each repetition
 * imports a fresh tar of random bytes (incompressible, so gzip cannot shrink
 * the work), pushes it (timed), removes every local reference so the layer is
 * gone, and pulls it back (timed). Throughput is the image's uncompressed size
 * over the time of the API call, progress stream included.
 *
 * Cove only: five simulated hosts (test/lab/multihost.ts) pull one image at
 * once from a registry on their underlay, against one host pulling alone.
 * Everything is removed afterwards, also on failure.
 */
import { mkdtempSync, openSync, writeSync, closeSync, rmSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, join } from 'node:path';
import { tmpdir } from 'node:os';
import { LabRegistry } from '../test/lab/registry.js';
import { MultiHostLab } from '../test/lab/multihost.js';
import type { MetricDef } from './results.js';
import { EngineApi } from './targets/engine-api.js';
import { run } from './exec.js';
import type { Ctx, Workload } from './workloads.js';

const ID = 16;
const AUTH = Buffer.from('{}').toString('base64'); // docker's API wants X-Registry-Auth on push, even empty

const M = {
  push: { key: 'push', label: "push (random layer, to a registry in the engine's namespace)", unit: 'ms' },
  pull: { key: 'pull', label: 'pull of the same image after removing it', unit: 'ms' },
  pushRate: { key: 'push-rate', label: 'push throughput (uncompressed MB / s)', unit: 'MB/s', better: 'higher' },
  pullRate: { key: 'pull-rate', label: 'pull throughput (uncompressed MB / s)', unit: 'MB/s', better: 'higher' },
  one: { key: 'pull-1-node', label: 'one host pulls alone (5-host lab, registry on the underlay)', unit: 'ms' },
  five: { key: 'pull-5-nodes', label: 'five hosts pull one image at once: until the last has it', unit: 'ms' },
} satisfies Record<string, MetricDef>;

/** A tar of `mb` MB of random bytes in 4 files, written with tar(1). */
async function randomTar(dir: string, mb: number, tag: string): Promise<string> {
  const src = join(dir, `src-${tag}`);
  mkdirSync(src, { recursive: true });
  for (let f = 0; f < 4; f++) {
    const fd = openSync(join(src, `blob${f}`), 'w');
    try {
      for (let i = 0; i < mb / 4; i++) writeSync(fd, randomBytes(1 << 20));
    } finally {
      closeSync(fd);
    }
  }
  const out = join(dir, `${tag}.tar`);
  const r = await run('tar', ['-C', src, '-cf', out, '.']);
  if (r.code !== 0) throw new Error(`tar: ${r.stderr}`);
  rmSync(src, { recursive: true, force: true });
  return out;
}

/** An Engine API call whose streamed JSON lines may carry an error (pull, push, import). */
async function streamOk(
  api: EngineApi,
  method: string,
  path: string,
  opts: { file?: string; headers?: Record<string, string> } = {},
): Promise<void> {
  const r = await api.ok(method, path, undefined, { ...opts, timeoutMs: 600_000 });
  for (const line of r.text.split('\n')) {
    if (!line.trim()) continue;
    let msg: { error?: string; errorDetail?: { message?: string } };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      continue;
    }
    if (msg.error || msg.errorDetail) throw new Error(`${method} ${path}: ${msg.error ?? msg.errorDetail?.message}`);
  }
}

async function removeImage(api: EngineApi, ref: string): Promise<void> {
  const r = await api.request('DELETE', `/images/${encodeURIComponent(ref)}?force=1`);
  if (r.status >= 400 && r.status !== 404) throw new Error(`rmi ${ref}: ${r.status} ${r.text}`);
}

async function pushPull(ctx: Ctx, targetName: string, api: EngineApi, netnsPath: string): Promise<void> {
  const mb = ctx.quick ? 16 : 64;
  const reps = ctx.quick ? 1 : 3;
  const dir = mkdtempSync(join(tmpdir(), 'cvb-img-'));
  let reg: LabRegistry | undefined;
  try {
    reg = await LabRegistry.start({
      netns: basename(netnsPath),
      ip: '127.0.0.1',
      port: 5000,
      dir: join(dir, 'registry'),
    });
    for (let i = 0; i < reps; i++) {
      const tar = await randomTar(dir, mb, `r${i}`);
      const local = `cvb/big:r${i}`;
      const remote = `127.0.0.1:5000/cvb/big:r${i}`;
      await streamOk(api, 'POST', `/images/create?fromSrc=-&repo=cvb/big&tag=r${i}`, { file: tar });
      rmSync(tar, { force: true });
      await api.ok('POST', `/images/${encodeURIComponent(local)}/tag?repo=127.0.0.1:5000/cvb/big&tag=r${i}`);
      let t0 = performance.now();
      await streamOk(api, 'POST', `/images/${encodeURIComponent('127.0.0.1:5000/cvb/big')}/push?tag=r${i}`, {
        headers: { 'X-Registry-Auth': AUTH },
      });
      const push = performance.now() - t0;
      await removeImage(api, remote);
      await removeImage(api, local);
      t0 = performance.now();
      await streamOk(api, 'POST', `/images/create?fromImage=${encodeURIComponent('127.0.0.1:5000/cvb/big')}&tag=r${i}`);
      const pull = performance.now() - t0;
      await removeImage(api, remote);
      ctx.rec.add(ID, M.push, targetName, push);
      ctx.rec.add(ID, M.pull, targetName, pull);
      ctx.rec.add(ID, M.pushRate, targetName, mb / (push / 1000));
      ctx.rec.add(ID, M.pullRate, targetName, mb / (pull / 1000));
      ctx.log(`  ${targetName}: ${mb} MB: push ${push.toFixed(0)} ms, pull ${pull.toFixed(0)} ms`);
    }
  } finally {
    await reg?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  ctx.rec.note(
    ID,
    `${targetName}: ${mb} MB of random bytes in one layer, ${reps} repetition(s); registry = Debian's docker-registry on 127.0.0.1:5000 in the engine's lab namespace`,
  );
}

/** Cove only: 5 hosts pulling at once vs one alone, from a registry on the underlay. */
async function fiveNodes(ctx: Ctx): Promise<void> {
  const mb = ctx.quick ? 16 : 64;
  const REG = '192.0.2.250';
  const repo = `${REG}:5000/cvb/five`;
  const lab = await MultiHostLab.create('bi', 5);
  const dir = mkdtempSync(join(tmpdir(), 'cvb-img5-'));
  let reg: LabRegistry | undefined;
  const apis: EngineApi[] = [];
  try {
    await lab.addUnderlayAddress(REG);
    reg = await LabRegistry.start({ netns: lab.underlayNetns, ip: REG, port: 5000, dir: join(dir, 'registry') });
    for (const h of lab.hosts) {
      await h.startDaemon({ extraArgs: ['--insecure-registry', `${REG}:5000`] });
      apis.push(new EngineApi(h.socket));
    }
    const tar = await randomTar(dir, mb, 'five');
    await streamOk(apis[0]!, 'POST', `/images/create?fromSrc=-&repo=${encodeURIComponent(repo)}&tag=v1`, { file: tar });
    rmSync(tar, { force: true });
    await streamOk(apis[0]!, 'POST', `/images/${encodeURIComponent(repo)}/push?tag=v1`, {
      headers: { 'X-Registry-Auth': AUTH },
    });
    await removeImage(apis[0]!, `${repo}:v1`);
    const pull = (api: EngineApi) =>
      streamOk(api, 'POST', `/images/create?fromImage=${encodeURIComponent(repo)}&tag=v1`);
    let t0 = performance.now();
    await pull(apis[0]!);
    ctx.rec.add(ID, M.one, 'cove-api', performance.now() - t0);
    await removeImage(apis[0]!, `${repo}:v1`);
    t0 = performance.now();
    await Promise.all(apis.map(pull));
    const all = performance.now() - t0;
    ctx.rec.add(ID, M.five, 'cove-api', all);
    ctx.log(`  cove: 5 hosts pulled ${mb} MB at once in ${all.toFixed(0)} ms`);
    ctx.rec.note(
      ID,
      `5 hosts: ${mb} MB image, each host its own coved and data root, the registry on the underlay bridge (${REG}); no Docker counterpart (one dockerd here)`,
    );
  } finally {
    for (const a of apis) a.close();
    await reg?.stop();
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

export const imagesWorkload: Workload = {
  id: ID,
  title: 'images through a registry: push and pull throughput; 5 hosts pulling at once (cove)',
  perEngine: true,
  async run(t, ctx) {
    const api = ctx.engine.engineApi?.();
    if (!api) {
      ctx.rec.note(ID, `${ctx.engine.name}: not measured (no Engine API to drive)`);
      return;
    }
    await pushPull(ctx, t.name, api, ctx.engine.labNetns);
    if (ctx.engine.name === 'cove') await fiveNodes(ctx);
  },
};
