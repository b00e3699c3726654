/**
 * Checks JSON that Cove answers against the Docker Engine API spec (v1.51,
 * /work/shared/reference/docker-engine-api.yaml) and against real Docker's
 * output (peers/docker/inspect/*.json): every key Cove sends is one the spec
 * defines, with the spec's type; every key Docker always sends (the spec's
 * properties minus the ones moby's Go structs mark `omitempty`) is there; and
 * values that have a well-known format (IDs, timestamps, MACs, CIDRs) have it.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

export const REFERENCE = '/work/shared/reference';

type Schema = {
  $ref?: string;
  type?: string;
  format?: string;
  properties?: Record<string, Schema>;
  additionalProperties?: Schema | boolean;
  items?: Schema;
  allOf?: Schema[];
  enum?: unknown[];
  'x-nullable'?: boolean;
};

let definitions: Record<string, Schema> | undefined;
function defs(): Record<string, Schema> {
  definitions ??= (
    parse(readFileSync(`${REFERENCE}/docker-engine-api.yaml`, 'utf8')) as { definitions: Record<string, Schema> }
  ).definitions;
  return definitions;
}

/**
 * Fields moby leaves out when empty (`json:",omitempty"` in the Go types the
 * daemon marshals, v28.5). A key listed here may be absent; any other key the
 * spec defines for that object must be present, as Docker always sends it.
 */
const OMITEMPTY: Record<string, string[]> = {
  ContainerInspectResponse: ['Node', 'SizeRw', 'SizeRootFs', 'ImageManifestDescriptor', 'Storage'],
  ContainerState: ['Health'],
  ContainerConfig: [
    'ExposedPorts',
    'Healthcheck',
    'ArgsEscaped',
    'NetworkDisabled',
    'MacAddress',
    'StopSignal',
    'StopTimeout',
    'Shell',
  ],
  HostConfig: [
    'Annotations',
    'Mounts',
    'Init',
    'Runtime',
    'Sysctls',
    'StorageOpt',
    'Tmpfs',
    'KernelMemoryTCP',
    'CpuCount',
    'CpuPercent',
    'IOMaximumIOps',
    'IOMaximumBandwidth',
    'PidsLimit',
    'MemorySwappiness',
    'OomKillDisable',
    'Capabilities',
    'CgroupnsMode',
    'MaskedPaths',
    'ReadonlyPaths',
    'ConsoleSize',
  ],
  LogConfig: [],
  NetworkSettings: [],
  EndpointSettings: [],
  Network: ['Peers', 'Services', 'Status'],
  IPAMConfig: ['Subnet', 'IPRange', 'Gateway', 'AuxiliaryAddresses'],
  SystemVersion: ['Platform', 'Components', 'Experimental', 'BuildTime'],
  ContainerSummary: ['SizeRw', 'SizeRootFs', 'ImageManifestDescriptor', 'Health'],
  Port: ['IP', 'PublicPort'],
  ImageSummary: ['Manifests', 'Descriptor'],
  EventMessage: ['Type', 'Action', 'Actor', 'scope', 'time', 'timeNano'],
  DriverData: [],
};

/** Go pointer fields (*int64, *bool) the spec does not mark x-nullable but Docker sends as null when unset. */
const GO_POINTERS = ['MemorySwappiness', 'PidsLimit', 'OomKillDisable', 'StopTimeout', 'Init'];

/** Keys Docker 28 still sends at API 1.51 that the spec no longer lists (deprecated, removed in 1.52). */
const LEGACY_KEYS: Record<string, string[]> = {
  EventMessage: ['status', 'id', 'from'],
};

export interface Problem {
  path: string;
  problem: string;
}

function resolve(s: Schema): { schema: Schema; name?: string } {
  let name: string | undefined;
  while (s.$ref) {
    name = s.$ref.replace('#/definitions/', '');
    s = defs()[name]!;
    if (!s) throw new Error(`spec has no definition ${name}`);
  }
  if (s.allOf) {
    // Merge the parts (moby uses allOf for embedded structs).
    const merged: Schema = { type: 'object', properties: {} };
    for (const part of s.allOf) {
      const r = resolve(part).schema;
      Object.assign(merged.properties!, r.properties ?? {});
      if (r.additionalProperties) merged.additionalProperties = r.additionalProperties;
    }
    if (s.properties) Object.assign(merged.properties!, s.properties);
    return { schema: merged, ...(name ? { name } : {}) };
  }
  return { schema: s, ...(name ? { name } : {}) };
}

const RFC3339NANO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  if (typeof v === 'boolean') return 'boolean';
  return typeof v;
}

/**
 * Checks `value` against the spec definition `def` (a definition name or a
 * schema). `ignoreRequired` lists dotted paths whose missing keys are
 * tolerated for a reason given by the caller.
 */
export function checkSpec(value: unknown, def: string | Schema): Problem[] {
  const problems: Problem[] = [];
  walk(value, typeof def === 'string' ? { $ref: `#/definitions/${def}` } : def, '$', problems);
  return problems;
}

function walk(v: unknown, raw: Schema, path: string, out: Problem[]): void {
  const { schema: s, name } = resolve(raw);
  const type = s.type ?? (s.properties || s.additionalProperties ? 'object' : undefined);
  if (v === null) {
    // Go marshals nil maps, slices and pointers as null.
    if (type === 'object' || type === 'array' || s['x-nullable'] || raw.$ref || type === undefined) return;
    if (GO_POINTERS.includes(path.split('.').pop()!)) return;
    out.push({ path, problem: `null where the spec has ${type}` });
    return;
  }
  const k = kindOf(v);
  if (type === 'integer' && k !== 'integer') out.push({ path, problem: `${k} where the spec has integer` });
  else if (type === 'number' && k !== 'integer' && k !== 'number')
    out.push({ path, problem: `${k} where the spec has number` });
  else if (type === 'string' && k !== 'string') out.push({ path, problem: `${k} where the spec has string` });
  else if (type === 'boolean' && k !== 'boolean') out.push({ path, problem: `${k} where the spec has boolean` });
  else if (type === 'array' && k !== 'array') out.push({ path, problem: `${k} where the spec has array` });
  else if (type === 'object' && k !== 'object') out.push({ path, problem: `${k} where the spec has object` });
  if (type === 'string' && k === 'string' && s.format === 'dateTime' && v !== '' && !RFC3339NANO.test(v as string)) {
    out.push({ path, problem: `${JSON.stringify(v)} is not RFC 3339` });
  }
  if (type === 'array' && k === 'array' && s.items)
    (v as unknown[]).forEach((x, i) => walk(x, s.items!, `${path}[${i}]`, out));
  if (type === 'object' && k === 'object') {
    const obj = v as Record<string, unknown>;
    if (s.properties) {
      for (const [key, val] of Object.entries(obj)) {
        const ps = s.properties[key];
        if (ps) walk(val, ps, `${path}.${key}`, out);
        else if (s.additionalProperties && typeof s.additionalProperties === 'object')
          walk(val, s.additionalProperties, `${path}.${key}`, out);
        else if (!(name && LEGACY_KEYS[name]?.includes(key)))
          out.push({ path: `${path}.${key}`, problem: `key not in the spec${name ? ` (${name})` : ''}` });
      }
      if (name && OMITEMPTY[name]) {
        for (const key of Object.keys(s.properties)) {
          if (!(key in obj) && !OMITEMPTY[name]!.includes(key))
            out.push({ path: `${path}.${key}`, problem: `missing (Docker always sends it, ${name})` });
        }
      }
    } else if (s.additionalProperties && typeof s.additionalProperties === 'object') {
      for (const [key, val] of Object.entries(obj)) walk(val, s.additionalProperties, `${path}.${key}`, out);
    }
  }
}

/**
 * Recursively compares the shape of `ours` with real Docker's `theirs`: same
 * keys, same JSON types. Keys inside maps keyed by IDs or names (Containers,
 * Options, Labels) are compared by their values' shapes, not by key. `added`
 * lists keys Docker gained after the reference (20.10, API 1.41) that a 1.51
 * daemon sends (they must still be in the spec, which checkSpec verifies).
 */
export function compareShapes(
  ours: unknown,
  theirs: unknown,
  opts: { mapKeys?: string[]; added?: string[] } = {},
  path = '$',
): Problem[] {
  const out: Problem[] = [];
  const ko = kindOf(ours);
  const kt = kindOf(theirs);
  const loose = (k: string) => (k === 'integer' || k === 'number' ? 'number' : k);
  if (loose(ko) !== loose(kt)) {
    out.push({ path, problem: `${ko} where Docker has ${kt}` });
    return out;
  }
  const last = path.split('.').pop()!;
  if (ko === 'array') {
    const a = ours as unknown[];
    const b = theirs as unknown[];
    if (a.length && b.length) for (const x of a) out.push(...compareShapes(x, b[0], opts, `${path}[]`));
  } else if (ko === 'object') {
    const a = ours as Record<string, unknown>;
    const b = theirs as Record<string, unknown>;
    if (opts.mapKeys?.includes(last)) {
      const sample = Object.values(b)[0];
      if (sample !== undefined)
        for (const [k, v] of Object.entries(a)) out.push(...compareShapes(v, sample, opts, `${path}.${k}`));
      return out;
    }
    for (const k of Object.keys(b))
      if (!(k in a)) out.push({ path: `${path}.${k}`, problem: 'missing (Docker has it)' });
    for (const k of Object.keys(a)) {
      if (!(k in b)) {
        if (!opts.added?.includes(k)) out.push({ path: `${path}.${k}`, problem: 'extra key (Docker has none)' });
        continue;
      }
      out.push(...compareShapes(a[k], b[k], opts, `${path}.${k}`));
    }
  }
  return out;
}

export function referenceInspect(file: string): Record<string, unknown>[] {
  return JSON.parse(readFileSync(`${REFERENCE}/peers/docker/inspect/${file}`, 'utf8')) as Record<string, unknown>[];
}

export const FORMAT = {
  id64: /^[0-9a-f]{64}$/,
  rfc3339nano: RFC3339NANO,
  mac: /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/,
  cidr4: /^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/,
  ipv4: /^(\d{1,3}\.){3}\d{1,3}$/,
  imageId: /^sha256:[0-9a-f]{64}$/,
};

export function describe(problems: Problem[]): string {
  return problems.map((p) => `${p.path}: ${p.problem}`).join('\n');
}
