/**
 * Registry credentials as Docker passes them: the X-Registry-Auth header is
 * base64url(JSON AuthConfig); the CLI's config.json stores base64(user:pass).
 * And the WWW-Authenticate challenges of the distribution protocol.
 */
export interface AuthConfig {
  username?: string;
  password?: string;
  /** base64(username:password), as config.json stores it. */
  auth?: string;
  email?: string;
  serveraddress?: string;
  identitytoken?: string;
  registrytoken?: string;
}

/** Decodes X-Registry-Auth (base64url or std base64 of JSON); an empty or bad header is no credentials. */
export function decodeAuthHeader(header: string | undefined | null): AuthConfig | undefined {
  if (!header) return undefined;
  try {
    const json = Buffer.from(header.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8');
    const cfg = JSON.parse(json) as AuthConfig;
    return normalizeAuth(cfg);
  } catch {
    return undefined;
  }
}

export function encodeAuthHeader(cfg: AuthConfig): string {
  return Buffer.from(JSON.stringify(cfg)).toString('base64url');
}

/** Fills username/password from `auth` when only that was given. */
export function normalizeAuth(cfg: AuthConfig | undefined): AuthConfig | undefined {
  if (!cfg || typeof cfg !== 'object') return undefined;
  const out = { ...cfg };
  if (!out.username && out.auth) {
    const plain = Buffer.from(out.auth, 'base64').toString('utf8');
    const i = plain.indexOf(':');
    if (i > 0) {
      out.username = plain.slice(0, i);
      out.password = plain.slice(i + 1);
    }
  }
  if (!out.username && !out.password && !out.identitytoken && !out.registrytoken) return undefined;
  return out;
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="...",service="...",scope="..."` (several challenges may be comma-joined). */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  const values = Array.isArray(header) ? header : header ? [header] : [];
  const out: Challenge[] = [];
  for (const v of values) {
    const re = /([A-Za-z]+)\s+((?:[a-zA-Z_]+="[^"]*"\s*,?\s*)*)/g;
    let m: RegExpExecArray | null;
    while ((m = re.exec(v))) {
      const params: Record<string, string> = {};
      const pr = /([a-zA-Z_]+)="([^"]*)"/g;
      let p: RegExpExecArray | null;
      while ((p = pr.exec(m[2]!))) params[p[1]!.toLowerCase()] = p[2]!;
      out.push({ scheme: m[1]!.toLowerCase(), params });
      if (!m[0]) break;
    }
  }
  return out;
}
