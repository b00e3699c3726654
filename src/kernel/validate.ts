/**
 * Checks for every value written into an `ip -batch` co-process or an nft
 * script: an argument-syntax error kills `ip` (losing the commands queued
 * after it), and a bad value in an nft script fails a whole transaction.
 * All return the canonical text or throw InvalidParameter.
 */
import ipaddr from 'ipaddr.js';
import { InvalidParameter } from '../common/errors.js';

export function ipv4(s: string, what = 'IPv4 address'): string {
  if (
    typeof s !== 'string' ||
    !/^\d{1,3}(\.\d{1,3}){3}$/.test(s) ||
    s.split('.').some((o) => Number(o) > 255 || (o.length > 1 && o.startsWith('0')))
  ) {
    throw new InvalidParameter(`invalid ${what}: ${JSON.stringify(s)}`);
  }
  return s;
}

export function ipv6(s: string, what = 'IPv6 address'): string {
  if (typeof s !== 'string' || !s.includes(':') || !ipaddr.IPv6.isValid(s) || s.includes('%'))
    throw new InvalidParameter(`invalid ${what}: ${JSON.stringify(s)}`);
  return ipaddr.IPv6.parse(s).toString();
}

export function isIPv4(s: string): boolean {
  try {
    ipv4(s);
    return true;
  } catch {
    return false;
  }
}

export function isIPv6(s: string): boolean {
  try {
    ipv6(s);
    return true;
  } catch {
    return false;
  }
}

export interface Cidr {
  family: 4 | 6;
  /** The address as written (host part kept), canonical text. */
  address: string;
  prefix: number;
  /** The network (host bits cleared) as CIDR text. */
  network: string;
}

export function cidr(s: string, what = 'CIDR'): Cidr {
  if (typeof s !== 'string') throw new InvalidParameter(`invalid ${what}: ${JSON.stringify(s)}`);
  const slash = s.indexOf('/');
  if (slash < 0 || !/^\d{1,3}$/.test(s.slice(slash + 1)))
    throw new InvalidParameter(`invalid ${what}: ${JSON.stringify(s)}`);
  const addr = s.slice(0, slash);
  const prefix = Number(s.slice(slash + 1));
  if (isIPv4(addr)) {
    if (prefix > 32) throw new InvalidParameter(`invalid ${what}: ${JSON.stringify(s)}`);
    const n = addr.split('.').reduce((a, o) => a * 256 + Number(o), 0);
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    const net = (n & mask) >>> 0;
    const netText = [24, 16, 8, 0].map((b) => (net >>> b) & 255).join('.');
    return { family: 4, address: addr, prefix, network: `${netText}/${prefix}` };
  }
  if (isIPv6(addr)) {
    if (prefix > 128) throw new InvalidParameter(`invalid ${what}: ${JSON.stringify(s)}`);
    const net = ipaddr.IPv6.networkAddressFromCIDR(`${addr}/${prefix}`).toString();
    return { family: 6, address: ipv6(addr), prefix, network: `${net}/${prefix}` };
  }
  throw new InvalidParameter(`invalid ${what}: ${JSON.stringify(s)}`);
}

/** Linux interface names: 1-15 chars, no '/', ':', whitespace; we also refuse dots (sysctl paths) and quotes (nft). */
export function ifName(s: string, what = 'interface name'): string {
  if (typeof s !== 'string' || !/^[A-Za-z0-9_-]{1,15}$/.test(s))
    throw new InvalidParameter(`invalid ${what}: ${JSON.stringify(s)}`);
  return s;
}

/** Like ifName but allows a dot (a VLAN sub-interface such as eth0.10 as a macvlan parent). */
export function parentIfName(s: string, what = 'parent interface'): string {
  if (typeof s !== 'string' || !/^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,14}$/.test(s))
    throw new InvalidParameter(`invalid ${what}: ${JSON.stringify(s)}`);
  return s;
}

export function mac(s: string): string {
  if (typeof s !== 'string' || !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(s))
    throw new InvalidParameter(`invalid MAC address: ${JSON.stringify(s)}`);
  return s.toLowerCase();
}

export function mtu(s: string | number, what = 'MTU'): number {
  const n = typeof s === 'number' ? s : /^\d{1,6}$/.test(String(s).trim()) ? Number(String(s).trim()) : NaN;
  if (!Number.isInteger(n) || n < 68 || n > 65535) throw new InvalidParameter(`invalid ${what}: ${JSON.stringify(s)}`);
  return n;
}

export function port(n: number, what = 'port'): number {
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidParameter(`invalid ${what}: ${JSON.stringify(n)}`);
  return n;
}

/** An absolute path safe for `netns PATH` in ip batch lines (no spaces, quotes, newlines). */
export function netnsPath(s: string): string {
  if (typeof s !== 'string' || !/^\/[A-Za-z0-9_.:@+=\/-]+$/.test(s) || s.includes('..'))
    throw new InvalidParameter(`invalid netns path: ${JSON.stringify(s)}`);
  return s;
}
