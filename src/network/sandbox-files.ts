/**
 * The three files a container's resolver reads: hosts, hostname, resolv.conf.
 * They are bind-mounted into the running container, so they are always
 * rewritten in place (open with O_TRUNC and write: same inode), never renamed.
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

export const EMBEDDED_DNS_IP = '127.0.0.11';

export interface HostsInput {
  hostname: string;
  domainname: string;
  /** Own addresses (no prefix), in endpoint order. */
  addresses: string[];
  extraHosts: string[];
  /** For --network host: the host's /etc/hosts instead of the defaults. */
  hostFile?: string;
  ipv6: boolean;
}

const DEFAULT_HOSTS_V4 = '127.0.0.1\tlocalhost\n';
const DEFAULT_HOSTS_V6 =
  [
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'ff00::0\tip6-mcastprefix',
    'ff02::1\tip6-allnodes',
    'ff02::2\tip6-allrouters',
  ].join('\n') + '\n';

/** "name:ip" (also "name=ip", Docker's newer form) -> "ip\tname". */
function extraHostLine(entry: string): string | undefined {
  const m = /^([^:=]+)[:=](.+)$/.exec(entry);
  if (!m) return undefined;
  let ip = m[2]!.trim();
  if (ip.startsWith('[') && ip.endsWith(']')) ip = ip.slice(1, -1);
  return `${ip}\t${m[1]!.trim()}`;
}

export function renderHosts(h: HostsInput): string {
  let out =
    h.hostFile !== undefined
      ? h.hostFile.endsWith('\n') || h.hostFile === ''
        ? h.hostFile
        : `${h.hostFile}\n`
      : DEFAULT_HOSTS_V4 + DEFAULT_HOSTS_V6;
  for (const e of h.extraHosts) {
    const line = extraHostLine(e);
    if (line) out += `${line}\n`;
  }
  const names = h.domainname ? `${h.hostname}.${h.domainname} ${h.hostname}` : h.hostname;
  if (h.hostFile !== undefined) {
    // Host networking: the host's file already names the host; add the container's hostname if it differs.
    if (h.hostname && !new RegExp(`\\s${h.hostname.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(\\s|$)`, 'm').test(out))
      out += `127.0.1.1\t${names}\n`;
    return out;
  }
  for (const a of h.addresses) out += `${a}\t${names}\n`;
  return out;
}

export interface ResolvInput {
  /** Nameservers to write (used when not embedded). */
  nameservers: string[];
  search: string[];
  options: string[];
  /** Point at the embedded DNS (user-defined networks). */
  embedded: boolean;
  /** Verbatim host resolv.conf (host networking without overrides). */
  verbatim?: string;
}

export function renderResolvConf(r: ResolvInput): string {
  if (r.verbatim !== undefined) return r.verbatim;
  const lines: string[] = [];
  if (r.embedded) lines.push(`nameserver ${EMBEDDED_DNS_IP}`);
  else if (r.nameservers.length === 0) {
    // Docker would silently write Google's servers here; Cove says why there is none instead.
    lines.push(
      '# no usable nameserver: the configured DNS servers are loopback addresses of the daemon, unreachable from this container',
    );
  } else for (const ns of r.nameservers) lines.push(`nameserver ${ns}`);
  if (r.search.length > 0) lines.push(`search ${r.search.join(' ')}`);
  const opts = r.embedded ? ['ndots:0', ...r.options.filter((o) => !o.startsWith('ndots:'))] : r.options;
  // A user's ndots wins over the embedded default.
  const userNdots = r.options.find((o) => o.startsWith('ndots:'));
  if (r.embedded && userNdots) opts[0] = userNdots;
  if (opts.length > 0) lines.push(`options ${opts.join(' ')}`);
  return lines.join('\n') + '\n';
}

export interface HostResolv {
  raw: string;
  nameservers: string[];
  search: string[];
  options: string[];
}

export function parseResolvConf(text: string): HostResolv {
  const out: HostResolv = { raw: text, nameservers: [], search: [], options: [] };
  for (const line of text.split('\n')) {
    const t = line
      .replace(/[#;].*$/, '')
      .trim()
      .split(/\s+/);
    if (t[0] === 'nameserver' && t[1]) out.nameservers.push(t[1]);
    else if ((t[0] === 'search' || t[0] === 'domain') && t.length > 1) out.search = t.slice(1);
    else if (t[0] === 'options' && t.length > 1) out.options.push(...t.slice(1));
  }
  return out;
}

export function readHostResolv(path = '/etc/resolv.conf'): HostResolv {
  try {
    return parseResolvConf(readFileSync(path, 'utf8'));
  } catch {
    return { raw: '', nameservers: [], search: [], options: [] };
  }
}

export function isLoopback(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1';
}

/** Rewrites a file in place (O_TRUNC on the same inode), so bind mounts of it see the change. */
export function writeInPlace(path: string, content: string): void {
  writeFileSync(path, content, { flag: 'w' });
}

export function sandboxFilePaths(dir: string): { hostsPath: string; resolvConfPath: string; hostnamePath: string } {
  mkdirSync(dir, { recursive: true });
  return {
    hostsPath: join(dir, 'hosts'),
    resolvConfPath: join(dir, 'resolv.conf'),
    hostnamePath: join(dir, 'hostname'),
  };
}
