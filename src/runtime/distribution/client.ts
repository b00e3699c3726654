/**
 * A client of one registry endpoint speaking the Registry HTTP API v2 (the OCI
 * distribution spec): ping and authenticate (Bearer token from the realm the
 * registry names, or Basic), manifests, blobs, uploads (chunked, resumable,
 * cross-repository mounts), tags and the catalog. Every answer that names
 * content is checked against its digest by the callers (pull.ts, push.ts).
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { type AuthConfig, type Challenge, parseChallenges } from './auth.js';
import { discard, readAll, send, type HttpResponse } from './http.js';

export interface Endpoint {
  /** https://host:port or http://host:port (no path). */
  url: URL;
  ca?: Buffer[];
  /** An --insecure-registry: no certificate check, and plain http if https fails. */
  insecure: boolean;
  mirror: boolean;
}

/** An error answer of the registry, with the distribution error code when it gave one. */
export class RegistryError extends Error {
  constructor(
    readonly status: number,
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

export const MANIFEST_TYPES = {
  dockerV2: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
};
const ACCEPT = [
  MANIFEST_TYPES.dockerV2,
  MANIFEST_TYPES.dockerList,
  MANIFEST_TYPES.ociManifest,
  MANIFEST_TYPES.ociIndex,
].join(', ');

export const sha256 = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

async function registryError(res: HttpResponse, what: string): Promise<RegistryError> {
  const body = await readAll(res.body, 1 << 20).catch(() => Buffer.alloc(0));
  try {
    const j = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: string; message?: string }> };
    const e = j.errors?.[0];
    if (e?.code)
      return new RegistryError(res.status, e.code, `${e.code.toLowerCase().replace(/_/g, ' ')}: ${e.message ?? ''}`);
  } catch {
    // not the registry's JSON
  }
  const text = body.toString('utf8').trim().slice(0, 200);
  return new RegistryError(res.status, undefined, `${what}: unexpected status ${res.status}${text ? `: ${text}` : ''}`);
}

export class RegistryClient {
  private authHeader: string | undefined;
  private challenge: Challenge | undefined;
  private pinged = false;

  constructor(
    readonly endpoint: Endpoint,
    private readonly auth: AuthConfig | undefined,
    private readonly timeoutMs: number,
    /** Token scopes, e.g. repository:library/alpine:pull. */
    private readonly scopes: string[],
  ) {}

  get base(): string {
    return this.endpoint.url.origin;
  }

  private url(path: string): URL {
    return new URL(path, this.endpoint.url);
  }

  private async raw(
    method: string,
    url: URL,
    headers: Record<string, string> = {},
    body?: Buffer | Readable,
  ): Promise<HttpResponse> {
    return send({
      method,
      url,
      headers: { ...(this.authHeader ? { Authorization: this.authHeader } : {}), ...headers },
      ...(body !== undefined ? { body } : {}),
      ...(this.endpoint.ca ? { ca: this.endpoint.ca } : {}),
      insecure: this.endpoint.insecure,
      timeoutMs: this.timeoutMs,
    });
  }

  /**
   * GET /v2/: finds out whether and how the registry wants credentials, then
   * gets them (a token for our scopes, or Basic). An insecure registry that
   * does not speak TLS is retried over plain http, as dockerd does.
   */
  async ping(): Promise<void> {
    if (this.pinged) return;
    let res: HttpResponse;
    try {
      res = await this.raw('GET', this.url('/v2/'));
    } catch (e) {
      if (!this.endpoint.insecure || this.endpoint.url.protocol !== 'https:') throw e;
      const plain = new URL(this.endpoint.url.href);
      plain.protocol = 'http:';
      this.endpoint.url = plain;
      res = await this.raw('GET', this.url('/v2/'));
    }
    await discard(res.body);
    if (res.status === 401) {
      const ch = parseChallenges(res.headers['www-authenticate']);
      this.challenge = ch.find((c) => c.scheme === 'bearer') ?? ch.find((c) => c.scheme === 'basic');
      await this.authenticate();
    } else if (res.status !== 200) {
      throw new RegistryError(res.status, undefined, `GET ${this.url('/v2/').href}: unexpected status ${res.status}`);
    }
    this.pinged = true;
  }

  private basicCredentials(): string | undefined {
    if (this.auth?.username === undefined || this.auth.password === undefined) return undefined;
    return 'Basic ' + Buffer.from(`${this.auth.username}:${this.auth.password}`).toString('base64');
  }

  private async authenticate(): Promise<void> {
    const ch = this.challenge;
    if (!ch) throw new RegistryError(401, 'UNAUTHORIZED', 'unauthorized: authentication required');
    if (ch.scheme === 'basic') {
      const basic = this.basicCredentials();
      if (!basic) throw new RegistryError(401, 'UNAUTHORIZED', `no basic auth credentials`);
      this.authHeader = basic;
      return;
    }
    if (this.auth?.registrytoken) {
      this.authHeader = `Bearer ${this.auth.registrytoken}`;
      return;
    }
    const realm = ch.params.realm;
    if (!realm) throw new RegistryError(401, 'UNAUTHORIZED', 'unauthorized: the registry names no token realm');
    const u = new URL(realm);
    if (ch.params.service) u.searchParams.set('service', ch.params.service);
    for (const s of this.scopes) u.searchParams.append('scope', s);
    const basic = this.basicCredentials();
    if (this.auth?.username) u.searchParams.set('account', this.auth.username);
    const res = await send({
      method: 'GET',
      url: u,
      headers: basic ? { Authorization: basic } : {},
      ...(this.endpoint.ca ? { ca: this.endpoint.ca } : {}),
      insecure: this.endpoint.insecure,
      timeoutMs: this.timeoutMs,
    });
    if (res.status === 401 || res.status === 403) {
      await discard(res.body);
      throw new RegistryError(401, 'UNAUTHORIZED', 'unauthorized: incorrect username or password');
    }
    if (res.status !== 200) throw await registryError(res, `token from ${u.origin}${u.pathname}`);
    const j = JSON.parse((await readAll(res.body, 1 << 20)).toString('utf8')) as {
      token?: string;
      access_token?: string;
    };
    const token = j.token ?? j.access_token;
    if (!token) throw new RegistryError(401, 'UNAUTHORIZED', 'unauthorized: the token server answered without a token');
    this.authHeader = `Bearer ${token}`;
  }

  /** A request with a replayable (or no) body; a 401 renews the credentials once. */
  private async request(
    method: string,
    path: string | URL,
    headers: Record<string, string> = {},
    body?: Buffer,
  ): Promise<HttpResponse> {
    await this.ping();
    const url = typeof path === 'string' ? this.url(path) : path;
    let res = await this.raw(method, url, headers, body);
    if (res.status === 401) {
      const ch = parseChallenges(res.headers['www-authenticate']);
      await discard(res.body);
      const next = ch.find((c) => c.scheme === 'bearer') ?? ch.find((c) => c.scheme === 'basic');
      if (next) this.challenge = next;
      if (this.challenge?.scheme === 'bearer' && next?.params.scope) {
        // The registry names the scope it wants; ask for it as well.
        for (const s of next.params.scope.split(' ')) if (!this.scopes.includes(s)) this.scopes.push(s);
      }
      await this.authenticate();
      res = await this.raw(method, url, headers, body);
    }
    return res;
  }

  // ---------- manifests ----------

  async getManifest(repo: string, ref: string): Promise<{ bytes: Buffer; mediaType: string; digest: string }> {
    const res = await this.request('GET', `/v2/${repo}/manifests/${ref}`, { Accept: ACCEPT });
    if (res.status !== 200) throw await registryError(res, `manifest ${repo}:${ref}`);
    const bytes = await readAll(res.body, 4 << 20);
    const digest = sha256(bytes);
    if (ref.startsWith('sha256:') && digest !== ref) {
      throw new RegistryError(400, 'DIGEST_INVALID', `manifest verification failed for digest ${ref}`);
    }
    const said = res.headers['docker-content-digest'];
    if (typeof said === 'string' && said.startsWith('sha256:') && said !== digest) {
      throw new RegistryError(400, 'DIGEST_INVALID', `manifest verification failed for digest ${said}`);
    }
    let mediaType = String(res.headers['content-type'] ?? '')
      .split(';')[0]!
      .trim();
    try {
      const inner = (JSON.parse(bytes.toString('utf8')) as { mediaType?: string }).mediaType;
      if (inner) mediaType = inner;
    } catch {
      throw new RegistryError(400, 'MANIFEST_INVALID', `manifest ${repo}:${ref} is not JSON`);
    }
    return { bytes, mediaType, digest };
  }

  async putManifest(repo: string, ref: string, bytes: Buffer, mediaType: string): Promise<string> {
    const res = await this.request('PUT', `/v2/${repo}/manifests/${ref}`, { 'Content-Type': mediaType }, bytes);
    if (res.status !== 201 && res.status !== 200 && res.status !== 202)
      throw await registryError(res, `put manifest ${repo}:${ref}`);
    await discard(res.body);
    const digest = sha256(bytes);
    const said = res.headers['docker-content-digest'];
    if (typeof said === 'string' && said && said !== digest)
      throw new Error(`the registry stored manifest ${said}, but its bytes hash to ${digest}`);
    return digest;
  }

  // ---------- blobs ----------

  /** The blob's bytes (redirects followed); the caller hashes them. */
  async openBlob(
    repo: string,
    digest: string,
    offset = 0,
  ): Promise<{ body: Readable; size: number | undefined; offset: number }> {
    const range: Record<string, string> = offset > 0 ? { Range: `bytes=${offset}-` } : {};
    let res = await this.request('GET', `/v2/${repo}/blobs/${digest}`, range);
    for (let hops = 0; res.status >= 300 && res.status < 400 && res.headers.location && hops < 5; hops++) {
      await discard(res.body);
      const to = new URL(res.headers.location, this.endpoint.url);
      res = await send({
        method: 'GET',
        url: to,
        headers: range,
        ...(this.endpoint.ca ? { ca: this.endpoint.ca } : {}),
        insecure: this.endpoint.insecure,
        timeoutMs: this.timeoutMs,
      });
    }
    if (res.status !== 200 && res.status !== 206) throw await registryError(res, `blob ${digest}`);
    const len = Number(res.headers['content-length']);
    const start = res.status === 206 ? offset : 0;
    return { body: res.body, size: Number.isFinite(len) ? len + start : undefined, offset: start };
  }

  async blobExists(repo: string, digest: string): Promise<boolean> {
    const res = await this.request('HEAD', `/v2/${repo}/blobs/${digest}`);
    await discard(res.body);
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    // A HEAD answer has no body to carry the registry's error code: these are its words for 401/403.
    if (res.status === 401) throw new RegistryError(401, 'UNAUTHORIZED', 'unauthorized: authentication required');
    if (res.status === 403)
      throw new RegistryError(403, 'DENIED', 'denied: requested access to the resource is denied');
    throw new RegistryError(res.status, undefined, `HEAD blob ${digest}: unexpected status ${res.status}`);
  }

  /** Tries a cross-repository mount; true when mounted, else an upload session to use. */
  async mountOrStart(
    repo: string,
    digest: string,
    from: string | undefined,
  ): Promise<{ mounted: true } | { mounted: false; location: URL }> {
    const q = from ? `?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}` : '';
    const res = await this.request(
      'POST',
      `/v2/${repo}/blobs/uploads/${q}`,
      { 'Content-Length': '0' },
      Buffer.alloc(0),
    );
    await discard(res.body);
    if (res.status === 201) return { mounted: true };
    if (res.status !== 202 || !res.headers.location)
      throw new RegistryError(res.status, undefined, `starting an upload to ${repo}: unexpected status ${res.status}`);
    return { mounted: false, location: new URL(res.headers.location, this.endpoint.url) };
  }

  /** PATCH one chunk at `offset`; returns the next location. */
  async uploadChunk(location: URL, chunk: Buffer, offset: number): Promise<URL> {
    const res = await this.request(
      'PATCH',
      location,
      {
        'Content-Type': 'application/octet-stream',
        'Content-Range': `${offset}-${offset + chunk.length - 1}`,
      },
      chunk,
    );
    await discard(res.body);
    if (res.status !== 202)
      throw new RegistryError(res.status, undefined, `uploading a chunk at ${offset}: unexpected status ${res.status}`);
    return res.headers.location ? new URL(res.headers.location, this.endpoint.url) : location;
  }

  /** How many bytes of an upload session the registry holds (to resume after a failed chunk). */
  async uploadOffset(location: URL): Promise<{ offset: number; location: URL }> {
    const res = await this.request('GET', location);
    await discard(res.body);
    if (res.status !== 204)
      throw new RegistryError(res.status, undefined, `upload status: unexpected status ${res.status}`);
    const m = /^0-(\d+)$/.exec(String(res.headers.range ?? ''));
    return {
      offset: m ? Number(m[1]) + 1 : 0,
      location: res.headers.location ? new URL(res.headers.location, this.endpoint.url) : location,
    };
  }

  async completeUpload(location: URL, digest: string): Promise<void> {
    const u = new URL(location.href);
    u.searchParams.set('digest', digest);
    const res = await this.request('PUT', u, { 'Content-Length': '0' }, Buffer.alloc(0));
    if (res.status !== 201) throw await registryError(res, `completing upload of ${digest}`);
    await discard(res.body);
  }

  // ---------- listings ----------

  async tags(repo: string): Promise<string[]> {
    const res = await this.request('GET', `/v2/${repo}/tags/list`);
    if (res.status !== 200) throw await registryError(res, `tags of ${repo}`);
    return (JSON.parse((await readAll(res.body)).toString('utf8')) as { tags?: string[] | null }).tags ?? [];
  }

  async catalog(n = 1000): Promise<string[]> {
    const res = await this.request('GET', `/v2/_catalog?n=${n}`);
    if (res.status !== 200) throw await registryError(res, 'catalog');
    return (
      (JSON.parse((await readAll(res.body)).toString('utf8')) as { repositories?: string[] | null }).repositories ?? []
    );
  }
}
