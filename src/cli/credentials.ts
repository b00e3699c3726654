/**
 * Registry credentials in docker's config.json ($DOCKER_CONFIG/config.json,
 * else ~/.docker/config.json): `auths[server].auth = base64(user:password)`,
 * Docker Hub under `https://index.docker.io/v1/`. The file is shared with the
 * docker CLI, so other keys are kept as they are, and it is written 0600.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export const HUB_SERVER = 'https://index.docker.io/v1/';

export function configPath(): string {
  return join(process.env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json');
}

type ConfigFile = { auths?: Record<string, { auth?: string; identitytoken?: string }>; [k: string]: unknown };

function readConfig(): ConfigFile {
  try {
    return JSON.parse(readFileSync(configPath(), 'utf8')) as ConfigFile;
  } catch {
    return {};
  }
}

function writeConfig(cfg: ConfigFile): void {
  const p = configPath();
  mkdirSync(dirname(p), { recursive: true, mode: 0o700 });
  const tmp = `${p}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(cfg, null, '\t') + '\n', { mode: 0o600 });
  renameSync(tmp, p);
}

/** The config.json key of a registry: Docker Hub's v1 URL, else host[:port]. */
export function serverKey(domain: string): string {
  return domain === 'docker.io' ? HUB_SERVER : domain;
}

export function storeCredentials(domain: string, username: string, password: string): void {
  const cfg = readConfig();
  cfg.auths ??= {};
  cfg.auths[serverKey(domain)] = { auth: Buffer.from(`${username}:${password}`).toString('base64') };
  writeConfig(cfg);
}

/** Returns false when there was nothing stored for that server. */
export function eraseCredentials(domain: string): boolean {
  const cfg = readConfig();
  const key = serverKey(domain);
  const keys = Object.keys(cfg.auths ?? {}).filter(
    (k) => k === key || k.replace(/^https?:\/\//, '').replace(/\/.*$/, '') === domain,
  );
  if (!keys.length) return false;
  for (const k of keys) delete cfg.auths![k];
  writeConfig(cfg);
  return true;
}

/** X-Registry-Auth for a registry, as the docker CLI sends it (base64url of the AuthConfig JSON), or undefined. */
export function registryAuthHeader(domain: string): string | undefined {
  const auths = readConfig().auths ?? {};
  const key = serverKey(domain);
  const entry =
    auths[key] ??
    Object.entries(auths).find(([k]) => k.replace(/^https?:\/\//, '').replace(/\/.*$/, '') === domain)?.[1];
  if (!entry?.auth) return undefined;
  const plain = Buffer.from(entry.auth, 'base64').toString('utf8');
  const i = plain.indexOf(':');
  if (i < 0) return undefined;
  return Buffer.from(
    JSON.stringify({ username: plain.slice(0, i), password: plain.slice(i + 1), serveraddress: key }),
  ).toString('base64url');
}
