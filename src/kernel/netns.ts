/**
 * Network namespaces as files: a netns is made on a throwaway pthread
 * (unshare) and bind-mounted on a path of Cove's choosing, so it lives until
 * deleteNetns unmounts it. Sockets and sysctls inside a netns go through the
 * same throwaway-thread trick: no JS thread ever changes namespace.
 */
import { mkdirSync, closeSync, openSync, unlinkSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { addon } from './native.js';
import { KernelError } from './errors.js';

const SYSCTL_KEY = /^[a-z0-9_]+(\.[A-Za-z0-9_@:-]+)+$/;
const SYSCTL_VALUE = /^[A-Za-z0-9_ .:/-]{1,100}$/;

/** 'net.ipv6.conf.all.disable_ipv6' -> /proc/sys/net/ipv6/conf/all/disable_ipv6 (so interface names with dots are not supported). */
export function sysctlPath(key: string): string {
  if (!SYSCTL_KEY.test(key) || key.includes('..'))
    throw new KernelError('sysctl', `invalid key ${JSON.stringify(key)}`);
  if (!key.startsWith('net.')) throw new KernelError('sysctl', `only net.* keys are per namespace: ${key}`);
  return '/proc/sys/' + key.split('.').join('/');
}

function sysctlPairs(values: Record<string, string>): Array<[string, string]> {
  return Object.entries(values).map(([k, v]) => {
    if (!SYSCTL_VALUE.test(v)) throw new KernelError('sysctl', `invalid value ${JSON.stringify(v)} for ${k}`);
    return [sysctlPath(k), v];
  });
}

function wrap<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw new KernelError(what, (e as Error).message);
  }
}

export interface CreateNetnsOptions {
  /** Sysctls written inside the new netns before anything else (e.g. disable IPv6 before links exist). */
  sysctls?: Record<string, string>;
}

/** IPv6 off for every interface made later in the netns (Docker does this when no network has IPv6). */
export const DISABLE_IPV6: Record<string, string> = {
  'net.ipv6.conf.all.disable_ipv6': '1',
  'net.ipv6.conf.default.disable_ipv6': '1',
};

/** New network namespace bind-mounted at `path` (parent dir created). lo stays as the kernel made it (down). */
export async function createNetns(path: string, opts: CreateNetnsOptions = {}): Promise<void> {
  const pairs = sysctlPairs(opts.sysctls ?? {});
  mkdirSync(dirname(path), { recursive: true });
  if (existsSync(path)) throw new KernelError(`create netns ${path}`, 'File exists');
  closeSync(openSync(path, 'wx', 0o444));
  try {
    wrap(`create netns ${path}`, () => addon().createNetns(path, pairs));
  } catch (e) {
    try {
      addon().unmountNetns(path);
    } catch {
      /* not mounted */
    }
    try {
      unlinkSync(path);
    } catch {
      /* gone */
    }
    throw e;
  }
}

/** Unmounts (detached) and unlinks the netns file; no error if it is absent. */
export async function deleteNetns(path: string): Promise<void> {
  if (!existsSync(path)) return;
  wrap(`umount ${path}`, () => addon().unmountNetns(path));
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new KernelError(`unlink ${path}`, (e as Error).message);
  }
}

/** True when `path` is a mounted network namespace (not just a leftover empty file). */
export function isNetns(path: string): boolean {
  try {
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
    return mounts.split('\n').some((l) => l.split(' ')[4] === path && / - nsfs /.test(l));
  } catch {
    return false;
  }
}

function checkIpPort(ip: string, port: number): void {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(ip) || ip.split('.').some((o) => Number(o) > 255))
    throw new KernelError('socket', `invalid IPv4 address ${ip}`);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new KernelError('socket', `invalid port ${port}`);
}

/** fd of a UDP socket bound to ip:port inside the netns (non-blocking; hand it to dgram's bind({fd})). */
export function udpSocketInNetns(path: string, ip: string, port: number): number {
  checkIpPort(ip, port);
  return wrap(`udp socket ${ip}:${port} in ${path}`, () => addon().socketInNetns(path, 1, ip, port, 0));
}

/** fd of a listening TCP socket inside the netns (net.Server.listen({fd})). */
export function tcpListenSocketInNetns(path: string, ip: string, port: number, backlog = 511): number {
  checkIpPort(ip, port);
  return wrap(`tcp socket ${ip}:${port} in ${path}`, () => addon().socketInNetns(path, 2, ip, port, backlog));
}

/**
 * Writes net.* sysctls inside a netns; null = the daemon's own netns.
 * For null this writes synchronously on the calling (main) thread on purpose:
 * /proc/sys/net resolves to the opener's netns, and libuv pool threads may sit
 * in another namespace than the main thread.
 */
export async function writeSysctls(netnsPath: string | null, values: Record<string, string>): Promise<void> {
  const pairs = sysctlPairs(values);
  if (pairs.length === 0) return;
  if (netnsPath === null) {
    for (const [file, value] of pairs) {
      try {
        writeFileSync(file, value);
      } catch (e) {
        throw new KernelError(`sysctl ${file}`, (e as Error).message);
      }
    }
    return;
  }
  wrap(`sysctl in ${netnsPath}`, () => addon().writeFilesInNetns(netnsPath, pairs));
}

/** Reads a net.* sysctl of the daemon's own netns (sync, main thread, see writeSysctls). */
export function readSysctl(key: string): string {
  return readFileSync(sysctlPath(key), 'utf8').trim();
}

/** Moves the calling thread into a netns. Tests use it to put their main thread in a lab netns. */
export function enterNetnsForThisThread(path: string): void {
  wrap(`setns ${path}`, () => addon().setnsCurrentThread(path));
}

/** Inode of a netns file or /proc/.../ns/net link, to compare namespaces. */
export function netnsInode(path: string): number {
  return wrap(`stat ${path}`, () => addon().netnsInode(path));
}
