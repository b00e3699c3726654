/** Command-line options of `npm run bench` (pure: no side effects, for the unit test). */
import { parseArgs } from 'node:util';
import { join } from 'node:path';

export const KNOWN_PEERS = ['docker', 'podman'];

export interface Options {
  quick: boolean;
  peers: string[];
  workloads: number[];
  out: string;
  cove: boolean;
  floor: boolean;
  /** --targets: run only these targets (e.g. docker-api,podman); empty = all. */
  targets: string[];
  /** --n: N values for workloads 5 and 6 (and the levels of 8 above 20). */
  ns: number[];
  /** results.json files of earlier runs whose other targets are merged into this report. */
  include: string[];
}

/** Parses argv; unknown workload or peer names are reported and dropped, the rest runs. */
export function parseOptions(
  argv: string[],
  warn: (m: string) => void,
  known: { workloads: number[]; repo: string },
): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      peers: { type: 'string', default: '' },
      workloads: { type: 'string', default: '' },
      out: { type: 'string' },
      'no-cove': { type: 'boolean', default: false },
      'no-floor': { type: 'boolean', default: false },
      include: { type: 'string', multiple: true, default: [] },
      targets: { type: 'string', default: '' },
      n: { type: 'string', default: '' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return 'help';
  const peers: string[] = [];
  for (const p of (values.peers ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean)) {
    if (KNOWN_PEERS.includes(p)) {
      if (!peers.includes(p)) peers.push(p);
    } else warn(`bench: unknown peer '${p}' (known: ${KNOWN_PEERS.join(', ')}); running without it`);
  }
  let workloads = known.workloads;
  if (values.workloads) {
    workloads = [];
    for (const s of values.workloads
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean)) {
      const n = Number(s);
      if (/^\d+$/.test(s) && known.workloads.includes(n)) {
        if (!workloads.includes(n)) workloads.push(n);
      } else warn(`bench: unknown workload '${s}' (known: ${known.workloads.join(', ')}); skipping it`);
    }
    workloads.sort((a, b) => a - b);
  }
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, 'Z');
  return {
    quick: values.quick ?? false,
    peers,
    workloads,
    out: values.out ?? join(known.repo, 'bench/results', stamp),
    cove: !values['no-cove'],
    floor: !values['no-floor'],
    include: values.include ?? [],
    targets: (values.targets ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    ns: parseNs(values.n ?? '', warn),
  };
}

function parseNs(text: string, warn: (m: string) => void): number[] {
  const out: number[] = [];
  for (const s of text
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    if (/^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= 2000) out.push(Number(s));
    else warn(`bench: ignoring --n value '${s}' (a whole number from 1 to 2000)`);
  }
  return out.sort((a, b) => a - b);
}
