#!/usr/bin/env node
// Container create + start through the Engine API, two builds side by side (A/B), runs alternated, with the
// daemon's own per-phase times: each build's coved runs in a lab of its own (prefix COVE_LAB_PREFIX) at debug
// level, and its 'container started' / 'sandbox made' log lines give the phases (medians printed).
//
//   npm run build   (in both checkouts)
//   COVE_LAB_PREFIX=x node scripts/ab-start-phases.mjs N /path/to/checkout-A /path/to/checkout-B
//
// Each round runs a container on a user-defined bridge and one on none in A, then in B (the order flips every
// round), each removed again untimed. Debug logging costs both sides the same; for absolute numbers use the
// bench (`npm run bench -- --workloads 2`), which runs the engine at warn.
import { readFileSync } from 'node:fs';

const [n, a, b] = [Number(process.argv[2] ?? 15), process.argv[3], process.argv[4]];
if (!a || !b || !process.env.COVE_LAB_PREFIX) {
  console.error('usage: COVE_LAB_PREFIX=x node scripts/ab-start-phases.mjs N CHECKOUT_A CHECKOUT_B');
  process.exit(2);
}
process.env.COVE_TEST_LOG_LEVEL = 'debug';
const image = `${a}/build/images/alpine.tar`;
const sides = [];
try {
  for (const [tag, dir, pool] of [
    ['a', a, 140],
    ['b', b, 141],
  ]) {
    const { Lab } = await import(`${dir}/dist/test/lab/lab.js`);
    const { EngineApi } = await import(`${dir}/dist/bench/targets/engine-api.js`);
    await Lab.existing(`ab${tag}`).destroy();
    const lab = await Lab.create(`ab${tag}`, { internet: false });
    const side = { tag, lab, api: undefined, ms: { bridge: [], none: [] } };
    sides.push(side);
    await lab.startDaemon({ extraArgs: ['--default-address-pool', `base=10.${pool}.0.0/16,size=24`] });
    side.api = new EngineApi(lab.socket);
    const r = await side.api.request('POST', '/images/load?quiet=1', undefined, { file: image });
    if (r.status !== 200) throw new Error(`image load: ${r.status} ${r.text}`);
    await side.api.ok('POST', '/networks/create', { Name: 'abnet', Driver: 'bridge' });
  }
  let k = 0;
  const one = async (side, network, keep) => {
    const t0 = performance.now();
    const c = await side.api.ok('POST', `/containers/create?name=ab${k++}`, {
      Image: 'alpine:latest',
      Cmd: ['sleep', '1000000'],
      HostConfig: { NetworkMode: network },
    });
    await side.api.ok('POST', `/containers/${c.body.Id}/start`);
    const ms = performance.now() - t0;
    await side.api.ok('DELETE', `/containers/${c.body.Id}?force=true`);
    if (keep) side.ms[network === 'none' ? 'none' : 'bridge'].push(ms);
  };
  for (const s of sides) for (const net of ['abnet', 'none']) await one(s, net, false); // warm-up
  for (let i = 0; i < n; i++)
    for (const s of i % 2 ? [...sides].reverse() : sides) for (const net of ['abnet', 'none']) await one(s, net, true);
  const median = (x) => [...x].sort((p, q) => p - q)[Math.floor(x.length / 2)];
  for (const s of sides) {
    const phases = {};
    for (const line of s.lab.daemonLog().split('\n')) {
      if (!line.includes('"phases"')) continue;
      try {
        const j = JSON.parse(line);
        for (const [name, v] of Object.entries(j.phases)) (phases[`${j.msg}: ${name}`] ??= []).push(v);
      } catch {
        // not a log line of ours
      }
    }
    console.log(
      `${s.tag} (${s.tag === 'a' ? a : b}): create+start on a bridge ${median(s.ms.bridge).toFixed(1)} ms, ` +
        `on none ${median(s.ms.none).toFixed(1)} ms (n=${s.ms.bridge.length})`,
    );
    for (const [name, v] of Object.entries(phases)) console.log(`  ${name} ${median(v).toFixed(1)}`);
  }
  console.log(`load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
} finally {
  for (const s of sides) {
    await s.api?.request('DELETE', '/networks/abnet').catch(() => undefined);
    await s.lab.destroy();
  }
}
