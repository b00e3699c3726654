/**
 * Userspace WireGuard: `wireguard-go` devices (a TUN interface + a UDP socket,
 * one process each) configured with `wg` from wireguard-tools. Used where the
 * kernel has neither ESP nor WireGuard (this machine: see the overlay's
 * encrypted transport).
 *
 * The process is started in the foreground (`-f`) but detached, in its own
 * process group, with its PID in a file Cove owns: like conmon it outlives the
 * daemon (a restart re-adopts it by that PID file) and Cove ends it by PID,
 * never by name. UAPI sockets (/var/run/wireguard/<if>.sock) are shared by all
 * network namespaces of the machine, so interface names must be unique per
 * machine: callers derive them from the node ID.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { KernelError } from './errors.js';
import { inNetns, runTool } from './exec.js';
import { ifName } from './validate.js';

export const WIREGUARD_GO = '/usr/bin/wireguard-go';
export const WG = 'wg';
export const UAPI_DIR = '/var/run/wireguard';
/** Outer IPv4/IPv6 (40) + UDP (8) + WireGuard header and tag (32): what wg-quick takes off (1500 -> 1420). */
export const WIREGUARD_OVERHEAD = 80;

export function uapiSocket(name: string): string {
  return `${UAPI_DIR}/${ifName(name)}.sock`;
}

/** The PID in the file if that process is alive and is wireguard-go for this interface. */
export function wireguardPid(pidFile: string, name: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 1) return undefined;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.some((a) => a.endsWith('wireguard-go')) && argv.includes(name) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Starts `wireguard-go -f <name>` in `netns` (null: the daemon's own), detached,
 * its output appended to `logFile`, its PID written to `pidFile`; resolves once
 * the UAPI socket answers.
 */
export async function startWireguardGo(opts: {
  binary: string;
  name: string;
  netns: string | null;
  pidFile: string;
  logFile: string;
}): Promise<number> {
  const { binary, name } = opts;
  ifName(name, 'wireguard interface name');
  if (!existsSync(binary)) throw new KernelError(binary, 'not found');
  mkdirSync(dirname(opts.pidFile), { recursive: true, mode: 0o700 });
  const argv = inNetns(opts.netns, [binary, '-f', name]);
  const out = openSync(opts.logFile, 'a', 0o600);
  let child;
  try {
    // LOG_LEVEL=error: wireguard-go's banner and per-handshake lines would fill the log.
    child = spawn(argv[0]!, argv.slice(1), {
      detached: true,
      stdio: ['ignore', out, out],
      env: { ...process.env, LOG_LEVEL: 'error' },
    });
  } catch (e) {
    throw new KernelError(argv.join(' '), (e as Error).message);
  } finally {
    closeSync(out);
  }
  let failed: string | undefined;
  child.on('error', (e) => {
    failed = e.message;
  });
  child.on('exit', (code, sig) => {
    failed ??= `exited (${code ?? sig})`;
  });
  child.unref();
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (failed) throw new KernelError(argv.join(' '), `${failed}: ${tail(opts.logFile)}`);
    if (existsSync(uapiSocket(name)) && (await runTool([WG, 'show', name, 'public-key'])).code === 0) break;
    if (Date.now() > deadline) {
      if (child.pid) process.kill(child.pid, 'SIGKILL');
      throw new KernelError(argv.join(' '), `no UAPI socket after 10 s: ${tail(opts.logFile)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  // nsenter execs wireguard-go, so the child's PID is wireguard-go's.
  writeFileSync(opts.pidFile, `${child.pid}\n`, { mode: 0o600 });
  return child.pid!;
}

/** Ends the device's process (by the PID Cove recorded) and forgets the PID file. */
export async function stopWireguardGo(pidFile: string, name: string): Promise<void> {
  const pid = wireguardPid(pidFile, name);
  if (pid) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone meanwhile */
    }
    for (let i = 0; i < 40 && wireguardPid(pidFile, name); i++) await new Promise((r) => setTimeout(r, 50));
    if (wireguardPid(pidFile, name)) process.kill(pid, 'SIGKILL');
  }
  rmSync(pidFile, { force: true });
  // SIGKILLed (or killed by anyone else), wireguard-go leaves its socket behind.
  rmSync(uapiSocket(name), { force: true });
}

/** `wg set <name> ...`: one call, applied as one UAPI transaction. */
export async function wgSet(name: string, args: string[]): Promise<void> {
  for (const a of args) if (/[\0\n]/.test(a)) throw new KernelError('wg set', `bad argument ${JSON.stringify(a)}`);
  const r = await runTool([WG, 'set', ifName(name), ...args]);
  if (r.code !== 0) throw new KernelError(`wg set ${name} ${args.join(' ')}`, r.stderr || r.stdout);
}

export interface WgPeerState {
  publicKey: string;
  /** Base64, absent when the peer has none. */
  presharedKey?: string;
  endpoint?: string;
  allowedIps: string[];
  /** Unix seconds of the last handshake, 0 = never. */
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
}

export interface WgDeviceState {
  publicKey: string;
  listenPort: number;
  peers: WgPeerState[];
}

/** `wg show <name> dump`, parsed. */
export async function wgShow(name: string): Promise<WgDeviceState> {
  const r = await runTool([WG, 'show', ifName(name), 'dump']);
  if (r.code !== 0) throw new KernelError(`wg show ${name} dump`, r.stderr || r.stdout);
  return parseWgDump(r.stdout);
}

export function parseWgDump(text: string): WgDeviceState {
  const [first, ...rest] = text.split('\n').filter((l) => l !== '');
  if (!first) throw new KernelError('wg show dump', 'empty output');
  const f = first.split('\t');
  const peers = rest.map((l): WgPeerState => {
    const p = l.split('\t');
    return {
      publicKey: p[0]!,
      ...(p[1] && p[1] !== '(none)' ? { presharedKey: p[1] } : {}),
      ...(p[2] && p[2] !== '(none)' ? { endpoint: p[2] } : {}),
      allowedIps: p[3] && p[3] !== '(none)' ? p[3].split(',') : [],
      latestHandshake: Number(p[4] ?? 0),
      rxBytes: Number(p[5] ?? 0),
      txBytes: Number(p[6] ?? 0),
    };
  });
  return { publicKey: f[1]!, listenPort: Number(f[2]), peers };
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-3).join(' | ');
  } catch {
    return '';
  }
}
