/**
 * Networks as Docker shows them: the inspect JSON, list filters, prune
 * filters, and the create-request checks that need no state.
 */
import { InvalidParameter } from '../common/errors.js';
import type { DockerNetwork, DockerNetworkContainer, Filters } from './types.js';
import type { EndpointRecord, NetworkRecord } from './records.js';

export const PREDEFINED = new Set(['bridge', 'host', 'none']);
export const DEFAULT_BRIDGE_OPTIONS = (bridgeName: string): Record<string, string> => ({
  'com.docker.network.bridge.default_bridge': 'true',
  'com.docker.network.bridge.enable_icc': 'true',
  'com.docker.network.bridge.enable_ip_masquerade': 'true',
  'com.docker.network.bridge.host_binding_ipv4': '0.0.0.0',
  'com.docker.network.bridge.name': bridgeName,
  'com.docker.network.driver.mtu': '1500',
});

/** Built-in drivers whose networks get the embedded DNS (Docker: every user-defined network of these). */
export const DNS_DRIVERS = new Set(['bridge', 'macvlan', 'ipvlan', 'overlay']);
/** Drivers without it; any other driver is a third-party plugin, whose networks get it too, like Docker. */
const NO_DNS_DRIVERS = new Set(['host', 'null']);

export function hasEmbeddedDns(n: NetworkRecord): boolean {
  return !n.defaultBridge && !n.predefined && !NO_DNS_DRIVERS.has(n.driver);
}

/** Docker's RFC 3339 timestamp with nanoseconds. */
export function nowRfc3339Nano(): string {
  const iso = new Date().toISOString(); // ...T04:00:16.046Z
  const sub = String(process.hrtime.bigint() % 1_000_000n).padStart(6, '0');
  return iso.replace(/Z$/, `${sub}Z`);
}

export function toDockerNetwork(n: NetworkRecord, endpoints: EndpointRecord[]): DockerNetwork {
  const containers: Record<string, DockerNetworkContainer> = {};
  for (const ep of endpoints) {
    containers[ep.containerId] = {
      Name: ep.name,
      EndpointID: ep.id,
      MacAddress: ep.mac ?? '',
      IPv4Address: ep.ipv4 ?? '',
      IPv6Address: ep.ipv6 ?? '',
    };
  }
  return {
    Name: n.name,
    Id: n.id,
    Created: n.created,
    Scope: n.scope,
    Driver: n.driver,
    EnableIPv4: n.enableIPv4,
    EnableIPv6: n.enableIPv6,
    IPAM: {
      Driver: n.ipamDriver,
      Options: n.ipamOptions === null ? null : { ...n.ipamOptions },
      Config: n.ipamConfig.map((c) => ({ ...c })),
    },
    Internal: n.internal,
    Attachable: n.attachable,
    Ingress: n.ingress,
    ConfigFrom: { Network: n.configFrom },
    ConfigOnly: n.configOnly,
    Containers: containers,
    Options: { ...n.options },
    Labels: { ...n.labels },
  };
}

const LIST_FILTERS = new Set(['dangling', 'driver', 'id', 'label', 'name', 'scope', 'type']);

function parseBool(key: string, v: string): boolean {
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new InvalidParameter(`invalid filter '${key}=${v}'`);
}

/** `label=k` or `label=k=v` against a label map. */
function labelMatches(labels: Record<string, string>, spec: string): boolean {
  const eq = spec.indexOf('=');
  if (eq < 0) return spec in labels;
  return labels[spec.slice(0, eq)] === spec.slice(eq + 1);
}

/**
 * GET /networks filters: values of one key are OR'ed, keys are AND'ed (moby
 * filters.Args). name matches part of the name, id a prefix of the ID.
 */
export function checkListFilters(filters: Filters): void {
  for (const [k, vals] of Object.entries(filters)) {
    if (!LIST_FILTERS.has(k)) throw new InvalidParameter(`invalid filter '${k}'`);
    if (k === 'type')
      for (const v of vals)
        if (v !== 'custom' && v !== 'builtin') throw new InvalidParameter(`invalid filter: 'type'='${v}'`);
    if (k === 'dangling') for (const v of vals) parseBool(k, v);
  }
}

export function matchesListFilters(n: NetworkRecord, endpointCount: number, filters: Filters): boolean {
  for (const [k, vals] of Object.entries(filters)) {
    if (vals.length === 0) continue;
    const any = (pred: (v: string) => boolean) => vals.some(pred);
    switch (k) {
      case 'dangling':
        // Dangling = custom networks no container uses (moby: predefined ones are never dangling).
        if (!any((v) => (parseBool(k, v) ? !n.predefined && endpointCount === 0 : n.predefined || endpointCount > 0)))
          return false;
        break;
      case 'driver':
        if (!any((v) => v === n.driver)) return false;
        break;
      case 'id':
        if (!any((v) => n.id.startsWith(v))) return false;
        break;
      case 'name':
        if (!any((v) => n.name.includes(v))) return false;
        break;
      case 'label':
        // Every label filter must match (moby MatchKVList).
        if (!vals.every((v) => labelMatches(n.labels, v))) return false;
        break;
      case 'scope':
        if (!any((v) => v === n.scope)) return false;
        break;
      case 'type':
        if (!any((v) => (v === 'builtin' ? n.predefined : !n.predefined))) return false;
        break;
    }
  }
  return true;
}

const PRUNE_FILTERS = new Set(['until', 'label', 'label!']);

/** Docker's `until`: a Unix timestamp (with fraction), an RFC 3339 date, or a duration like 10m/24h before now. */
export function parseUntil(v: string, now = Date.now()): number {
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v) * 1000;
  const dur = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)$/.exec(v);
  if (dur) {
    const mult: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
    return now - Number(dur[1]) * mult[dur[2]!]!;
  }
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new InvalidParameter(`failed to parse value as time or duration: "${v}"`);
  return t;
}

export function checkPruneFilters(filters: Filters): void {
  for (const [k, vals] of Object.entries(filters)) {
    if (!PRUNE_FILTERS.has(k)) throw new InvalidParameter(`invalid filter '${k}'`);
    if (k === 'until') for (const v of vals) parseUntil(v);
  }
}

export function matchesPruneFilters(n: NetworkRecord, filters: Filters, now = Date.now()): boolean {
  const until = filters.until ?? [];
  if (until.length > 0) {
    const created = Date.parse(n.created);
    if (!until.every((v) => created < parseUntil(v, now))) return false;
  }
  for (const v of filters.label ?? []) if (!labelMatches(n.labels, v)) return false;
  for (const v of filters['label!'] ?? []) if (labelMatches(n.labels, v)) return false;
  return true;
}
