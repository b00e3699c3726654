/**
 * The benchmark's pure helpers: summaries, ratios and formatting, the option
 * parser's handling of bad input, the ratio columns of the report, the verdicts
 * on Cove's targets, and the hand-written SVG chart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatNumber, formatRatio, ratio, slope, summarize } from '../../bench/stats.js';
import { parseOptions } from '../../bench/options.js';
import { Recorder, type BenchResults } from '../../bench/results.js';
import {
  checkTargets,
  curvesOf,
  renderMarkdown,
  renderScalingSvg,
  renderText,
  rowsOf,
  textTable,
} from '../../bench/report.js';

function emptyResults(): BenchResults {
  return {
    started: '2026-11-28T00:00:00Z',
    quick: true,
    machine: { cpus: 2, kernel: 'test', node: 'v20', load: [0, 0, 0] },
    engines: {},
    targets: { floor: 'floor', 'cove-api': 'cove', 'cove-cli': 'cove', docker: 'docker', podman: 'podman' },
    unavailable: {},
    workloads: [],
  };
}

test('summarize gives min, median (even and odd counts), max and mean, and ignores non-finite values', () => {
  assert.deepEqual(summarize([3, 1, 2]), { n: 3, min: 1, median: 2, max: 3, mean: 2 });
  assert.deepEqual(summarize([4, 1, 3, 2]), { n: 4, min: 1, median: 2.5, max: 4, mean: 2.5 });
  assert.deepEqual(summarize([5, Number.NaN, Infinity]), { n: 1, min: 5, median: 5, max: 5, mean: 5 });
  assert.equal(summarize([]), undefined);
});

test('ratio is undefined when a side is missing or the divisor is zero', () => {
  assert.equal(ratio(6, 3), 2);
  assert.equal(ratio(undefined, 3), undefined);
  assert.equal(ratio(3, undefined), undefined);
  assert.equal(ratio(3, 0), undefined);
});

test('numbers keep three significant digits and never go scientific', () => {
  assert.equal(formatNumber(0.0123456), '0.0123');
  assert.equal(formatNumber(1.23456), '1.23');
  assert.equal(formatNumber(12.3456), '12.3');
  assert.equal(formatNumber(123.456), '123');
  assert.equal(formatNumber(54321.9), '54322');
  assert.equal(formatNumber(0), '0');
  assert.equal(formatNumber(undefined), '–');
  assert.equal(formatRatio(1.234), '1.23×');
  assert.equal(formatRatio(0.5), '0.500×');
  assert.equal(formatRatio(42.4), '42×');
  assert.equal(formatRatio(undefined), '–');
});

test('slope of a flat series is 0 and of a growing one is its growth per step', () => {
  assert.equal(
    slope([
      { x: 1, y: 5 },
      { x: 10, y: 5 },
      { x: 100, y: 5 },
    ]),
    0,
  );
  assert.equal(
    slope([
      { x: 0, y: 1 },
      { x: 1, y: 3 },
      { x: 2, y: 5 },
    ]),
    2,
  );
  assert.equal(slope([{ x: 1, y: 1 }]), undefined);
});

test('options: unknown workloads and peers are reported and dropped, the rest runs', () => {
  const warnings: string[] = [];
  const o = parseOptions(
    ['--quick', '--peers', 'docker,lxd,podman,docker', '--workloads', '2,9,x,1'],
    (m) => warnings.push(m),
    {
      workloads: [1, 2, 3],
      repo: '/repo',
    },
  );
  assert.notEqual(o, 'help');
  if (o === 'help') return;
  assert.equal(o.quick, true);
  assert.deepEqual(o.peers, ['docker', 'podman']);
  assert.deepEqual(o.workloads, [1, 2]);
  assert.match(o.out, /^\/repo\/bench\/results\/\d{8}T\d{6}Z$/);
  assert.equal(warnings.length, 3);
  assert.match(warnings[0]!, /unknown peer 'lxd'/);
  assert.match(warnings[1]!, /unknown workload '9'/);
  assert.equal(
    parseOptions(['--help'], () => undefined, { workloads: [1], repo: '/r' }),
    'help',
  );
  assert.throws(
    () => parseOptions(['--bogus'], () => undefined, { workloads: [1], repo: '/r' }),
    /Unknown option '--bogus'/,
  );
});

test('every row carries its ratio to the floor and to each peer', () => {
  const r = emptyResults();
  const rec = new Recorder(r);
  rec.workload(1, 'network create + rm');
  const def = { key: 'create+rm', label: 'network create + rm', unit: 'ms' as const };
  for (const [t, v] of [
    ['floor', 2],
    ['cove-api', 4],
    ['docker', 40],
    ['podman', 20],
  ] as const)
    rec.add(1, def, t, v);
  const rows = rowsOf(r, r.workloads[0]!);
  const cove = rows.find((x) => x.target === 'cove-api')!;
  assert.equal(cove.ratios.floor, 2);
  assert.equal(cove.ratios.docker, 0.1);
  assert.equal(cove.ratios.podman, 0.2);
  assert.equal(
    rows.find((x) => x.target === 'cove-cli'),
    undefined,
    'no row for a target without samples',
  );
  const text = renderText(r);
  assert.match(
    text,
    /network create \+ rm \[ms\]\s+cove-api\s+1\s+4\.00\s+4\.00\s+4\.00\s+2\.00×\s+0\.100×\s+0\.200×\s+≤ 10\.0 ms: met/,
  );
  assert.doesNotMatch(text, /docker .*: met/, "Cove's goal is printed next to Cove's row only");
});

test("targets: met, missed and not measured are told apart; Cove's misses say so", () => {
  const r = emptyResults();
  const rec = new Recorder(r);
  rec.workload(1, 'w1');
  rec.workload(4, 'w4');
  rec.add(1, { key: 'create+rm', label: 'x', unit: 'ms' }, 'cove-api', 8);
  rec.add(1, { key: 'roundtrip', label: 'x', unit: 'ms' }, 'cove-cli', 200);
  rec.add(1, { key: 'roundtrip', label: 'x', unit: 'ms' }, 'floor', 100);
  rec.add(4, { key: 'qps-node', label: 'x', unit: 'q/s', better: 'higher' }, 'cove-api', 60_000);
  const checks = checkTargets(r);
  const by = (s: string) => checks.find((c) => c.goal.includes(s))!;
  assert.equal(by('network create + rm').met, true);
  assert.equal(by('CLI round trip').met, false);
  assert.match(by('CLI round trip').measured, /2\.00×/);
  assert.equal(by('50k').met, true);
  assert.equal(by('connect + disconnect').met, undefined);
  assert.equal(by('connect + disconnect').measured, 'not measured');
  assert.match(renderMarkdown(r, undefined), /\| CLI round trip .* \| \*\*missed\*\* \|/);
});

test('the scaling chart has one polyline per target and panel, on log axes, and escapes names', () => {
  const r = emptyResults();
  const rec = new Recorder(r);
  rec.workload(5, 'scaling');
  for (const N of [1, 10, 100]) {
    rec.add(
      5,
      { key: `each@${N}`, label: `per container N=${N}`, unit: 'ms', series: 'per container', x: N },
      'floor',
      2,
    );
    rec.add(
      5,
      { key: `each@${N}`, label: `per container N=${N}`, unit: 'ms', series: 'per container', x: N },
      'docker',
      100 * N,
    );
    rec.add(5, { key: `total@${N}`, label: `total N=${N}`, unit: 'ms', series: 'total', x: N }, 'docker', 100 * N * N);
  }
  assert.deepEqual(
    curvesOf(r, 5, 'per container').map((c) => c.target),
    ['floor', 'docker'],
  );
  const svg = renderScalingSvg(r)!;
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.equal((svg.match(/<polyline/g) ?? []).length, 3);
  assert.match(svg, /no data/, 'workload 6 panels say there is no data');
  assert.ok(svg.trimEnd().endsWith('</svg>'));
  // floor is flat at 2 ms: all its points share one y
  const floorYs = [...svg.matchAll(/<circle cx="[\d.]+" cy="([\d.]+)" r="3" fill="#444444"><title>floor/g)].map(
    (m) => m[1],
  );
  assert.equal(floorYs.length, 3);
  assert.equal(new Set(floorYs).size, 1);
  assert.equal(renderScalingSvg(emptyResults()), undefined);
});

test('text tables align columns and right-align numbers', () => {
  const t = textTable(
    ['name', 'value'],
    [
      ['a', '1'],
      ['long', '123'],
    ],
  );
  assert.equal(t, 'name  value\n----  -----\na         1\nlong    123');
});

test('--include merges metric by metric what this run lacks; a re-measured part included first wins', async () => {
  const { mergeEarlier } = await import('../../bench/results.js');
  const earlier = emptyResults();
  earlier.started = 'earlier';
  earlier.targets = { floor: 'floor', docker: 'docker', podman: 'podman' };
  earlier.engines = { floor: 'old floor', docker: 'Docker 20.10', podman: 'Podman 4.3' };
  const e = new Recorder(earlier);
  e.workload(1, 'w1');
  e.workload(9, 'not asked for now');
  e.add(1, { key: 'create+rm', label: 'x', unit: 'ms' }, 'floor', 1);
  e.add(1, { key: 'create+rm', label: 'x', unit: 'ms' }, 'docker', 300);
  e.add(1, { key: 'only-earlier', label: 'y', unit: 'ms' }, 'docker', 50);
  e.add(1, { key: 'at500', label: 'z', unit: 'ms' }, 'docker', 999);
  e.error(1, 'podman', 'boom');
  e.error(1, 'docker', 'ran out of addresses');
  // A later run that re-measured only at500 for docker.
  const redo = emptyResults();
  redo.started = 'redo';
  redo.targets = { docker: 'docker' };
  new Recorder(redo).workload(1, 'w1');
  new Recorder(redo).add(1, { key: 'at500', label: 'z', unit: 'ms' }, 'docker', 400);

  const now = emptyResults();
  now.targets = { floor: 'floor', 'cove-api': 'cove' };
  now.engines = { floor: 'new floor', cove: 'Cove' };
  const n = new Recorder(now);
  n.workload(1, 'w1');
  n.add(1, { key: 'create+rm', label: 'x', unit: 'ms' }, 'floor', 2);
  assert.deepEqual(mergeEarlier(now, redo, 'redo.json'), ['docker']);
  assert.deepEqual(mergeEarlier(now, earlier, 'old.json').sort(), ['docker', 'podman']);
  const metric = (k: string) => now.workloads[0]!.metrics.find((x) => x.key === k)!.samples;
  assert.deepEqual(metric('create+rm'), { floor: [2], docker: [300] }, "this run's floor is kept");
  assert.deepEqual(metric('only-earlier'), { docker: [50] });
  assert.deepEqual(metric('at500'), { docker: [400] }, 'the re-measured samples, included first, win');
  assert.equal(now.workloads.length, 1, 'workloads this run did not ask for stay out');
  assert.equal(now.engines.floor, 'new floor');
  assert.equal(now.engines.docker, 'Docker 20.10');
  assert.equal(now.workloads[0]!.errors.podman, 'boom', 'an error comes along for a target with no samples');
  assert.equal(now.workloads[0]!.errors.docker, undefined, 'not for one that has samples (the redo fixed it)');
  assert.deepEqual(
    now.included?.map((i) => i.file),
    ['redo.json', 'old.json'],
  );
  assert.deepEqual(mergeEarlier(now, earlier, 'old.json'), [], 'a second merge adds nothing');
});
