/**
 * Which endpoints serve a registry name, as dockerd decides it: Docker Hub
 * (docker.io) is tried through each --registry-mirror first (pulls only);
 * other registries are https, with an --insecure-registry (and localhost,
 * 127.0.0.0/8, as dockerd) allowed an unverified certificate or plain http.
 * A registry's own CA: `<certsDir>/<host:port>/*.crt` (dockerd's certs.d).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { InvalidParameter } from '../../common/errors.js';
import type { Endpoint } from './client.js';

export interface RegistryOptions {
  mirrors: string[];
  insecure: string[];
  certsDir: string;
  timeoutMs: number;
}

export const HUB_ENDPOINT = 'https://registry-1.docker.io';

export function parseMirror(url: string): URL {
  let u: URL;
  try {
    u = new URL(url.includes('://') ? url : `https://${url}`);
  } catch {
    throw new InvalidParameter(`invalid mirror: "${url}" is not a valid URI`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new InvalidParameter(`invalid mirror: unsupported scheme "${u.protocol.replace(':', '')}" in "${url}"`);
  if (u.pathname !== '/' && u.pathname !== '')
    throw new InvalidParameter(`invalid mirror: path is not supported: "${url}"`);
  return new URL(u.origin);
}

function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((a, p) => (a << 8) + Number(p), 0) >>> 0;
}

function inCidr(ip: string, cidr: string): boolean {
  const [base, bits] = cidr.split('/');
  if (!base || bits === undefined || isIP(base) !== 4 || isIP(ip) !== 4) return false;
  const n = Number(bits);
  const mask = n === 0 ? 0 : (~0 << (32 - n)) >>> 0;
  return (ipv4ToInt(ip) & mask) === (ipv4ToInt(base) & mask);
}

export class Registries {
  constructor(readonly opts: RegistryOptions) {}

  isInsecure(domain: string): boolean {
    const host = domain.replace(/:\d+$/, '');
    if (host === 'localhost' || inCidr(host, '127.0.0.0/8')) return true;
    return this.opts.insecure.some((e) => {
      const entry = e.replace(/^https?:\/\//, '').replace(/\/$/, '');
      if (entry.includes('/')) return inCidr(host, entry);
      return entry === domain || entry === host;
    });
  }

  private caFor(hostPort: string): Buffer[] | undefined {
    const dir = join(this.opts.certsDir, hostPort);
    try {
      const certs = readdirSync(dir)
        .filter((f) => f.endsWith('.crt'))
        .map((f) => readFileSync(join(dir, f)));
      return certs.length ? certs : undefined;
    } catch {
      return undefined;
    }
  }

  private endpoint(url: URL, mirror: boolean): Endpoint {
    const ca = this.caFor(url.host);
    return { url, insecure: this.isInsecure(url.host), mirror, ...(ca ? { ca } : {}) };
  }

  /** Endpoints to try in order. */
  endpoints(domain: string, purpose: 'pull' | 'push'): Endpoint[] {
    if (domain === 'docker.io') {
      const hub = this.endpoint(new URL(HUB_ENDPOINT), false);
      if (purpose === 'push') return [hub];
      return [...this.opts.mirrors.map((m) => this.endpoint(parseMirror(m), true)), hub];
    }
    return [this.endpoint(new URL(`https://${domain}`), false)];
  }
}

/** `docker login` server names: empty or Docker Hub's URLs → docker.io; a URL → its host. */
export function registryDomain(server: string): string {
  const s = server.trim();
  if (!s || /^(https?:\/\/)?(index\.|registry-1\.)?docker\.io(\/v1\/?|\/)?$/.test(s)) return 'docker.io';
  try {
    return new URL(s.includes('://') ? s : `https://${s}`).host;
  } catch {
    throw new InvalidParameter(`invalid registry address ${server}`);
  }
}
