/**
 * IP address and prefix arithmetic on BigInt, for both families. ipaddr.js
 * parses and prints; everything else (offsets, containment, overlap, pool
 * carving) is plain integer math so v4 and v6 share one code path.
 */
import ipaddr from 'ipaddr.js';

export type Family = 4 | 6;

export interface Ip {
  family: Family;
  value: bigint;
}

export interface Cidr {
  family: Family;
  /** The network address (host bits zero). */
  base: bigint;
  prefix: number;
}

export function bitsOf(family: Family): number {
  return family === 4 ? 32 : 128;
}

/** Parses an address; v4 must be dotted quad (ipaddr.js alone would accept "10.1" forms). Returns undefined when invalid. */
export function tryParseIp(s: string): Ip | undefined {
  if (typeof s !== 'string' || s.length === 0) return undefined;
  if (ipaddr.IPv4.isValidFourPartDecimal(s)) {
    const bytes = ipaddr.IPv4.parse(s).toByteArray();
    return { family: 4, value: bytesToBig(bytes) };
  }
  if (s.includes(':') && ipaddr.IPv6.isValid(s) && !s.includes('%')) {
    const a = ipaddr.IPv6.parse(s);
    return { family: 6, value: bytesToBig(a.toByteArray()) };
  }
  return undefined;
}

export function parseIp(s: string): Ip {
  const ip = tryParseIp(s);
  if (!ip) throw new Error(`invalid IP address: ${s}`);
  return ip;
}

function bytesToBig(bytes: number[]): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

export function formatIp(family: Family, value: bigint): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String(Number((value >> s) & 0xffn))).join('.');
  }
  const bytes: number[] = [];
  for (let s = 120n; s >= 0n; s -= 8n) bytes.push(Number((value >> s) & 0xffn));
  return ipaddr.fromByteArray(bytes).toString();
}

/** Canonical text of an address ("2001:db8::0001" -> "2001:db8::1"). */
export function canonicalIp(s: string): string {
  const ip = parseIp(s);
  return formatIp(ip.family, ip.value);
}

export function hostMask(family: Family, prefix: number): bigint {
  return (1n << BigInt(bitsOf(family) - prefix)) - 1n;
}

/** Parses "a.b.c.d/n"; `strict` requires host bits to be zero. Returns undefined when invalid. */
export function tryParseCidr(s: string, strict = false): Cidr | undefined {
  if (typeof s !== 'string') return undefined;
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const ip = tryParseIp(s.slice(0, slash));
  const pfx = s.slice(slash + 1);
  if (!ip || !/^\d{1,3}$/.test(pfx)) return undefined;
  const prefix = Number(pfx);
  if (prefix > bitsOf(ip.family)) return undefined;
  const mask = hostMask(ip.family, prefix);
  if (strict && (ip.value & mask) !== 0n) return undefined;
  return { family: ip.family, base: ip.value & ~mask, prefix };
}

export function parseCidr(s: string, strict = false): Cidr {
  const c = tryParseCidr(s, strict);
  if (!c) throw new Error(`invalid CIDR address: ${s}`);
  return c;
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.family, c.base)}/${c.prefix}`;
}

export function cidrSize(c: Cidr): bigint {
  return 1n << BigInt(bitsOf(c.family) - c.prefix);
}

export function lastAddr(c: Cidr): bigint {
  return c.base + cidrSize(c) - 1n;
}

export function cidrContains(c: Cidr, ip: Ip): boolean {
  return c.family === ip.family && ip.value >= c.base && ip.value <= lastAddr(c);
}

/** True when one contains the other (prefixes either overlap completely or not at all). */
export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  return a.base <= lastAddr(b) && b.base <= lastAddr(a);
}

export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  return (
    inner.family === outer.family &&
    inner.prefix >= outer.prefix &&
    inner.base >= outer.base &&
    lastAddr(inner) <= lastAddr(outer)
  );
}

/** "172.18.0.2" + 16 -> "172.18.0.2/16". */
export function withPrefix(ip: string, prefix: number): string {
  return `${ip}/${prefix}`;
}

/** The MAC Docker derives from an IPv4 address: 02:42 followed by the four address bytes. */
export function macFromIpv4(ipv4: string): string {
  const v = parseIp(ipv4).value;
  const bytes = [0x02, 0x42, ...[24n, 16n, 8n, 0n].map((s) => Number((v >> s) & 0xffn))];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Reverse-lookup name of an address (in-addr.arpa / ip6.arpa), without a trailing dot. */
export function reverseName(ip: Ip): string {
  if (ip.family === 4) {
    return `${[0n, 8n, 16n, 24n].map((s) => String(Number((ip.value >> s) & 0xffn))).join('.')}.in-addr.arpa`;
  }
  const nibbles: string[] = [];
  for (let s = 0n; s < 128n; s += 4n) nibbles.push(((ip.value >> s) & 0xfn).toString(16));
  return `${nibbles.join('.')}.ip6.arpa`;
}
