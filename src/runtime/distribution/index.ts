/**
 * Distribution: the daemon's side of registries. pull, push, login, search
 * and `GET /distribution/{name}/json`, for the API routes, the swarm agent
 * (pull a service's image by digest: `pull('nginx:latest@sha256:...', {auth})`)
 * and the manager (`resolveDigest` pins a service's image to a digest).
 */
import { CoveError, InvalidParameter } from '../../common/errors.js';
import { silentLogger, type Logger } from '../../common/log.js';
import { familiarRepo, familiarString, parseNamed, withDefaultTag, type NamedRef } from '../images/reference.js';
import type { ImageStore } from '../images/store.js';
import { normalizeAuth, type AuthConfig } from './auth.js';
import { RegistryClient, RegistryError } from './client.js';
import { HttpTimeout } from './http.js';
import {
  fetchConfig,
  isIndex,
  pullImage,
  translateManifestError,
  type ImageManifest,
  type InFlight,
  type PullResult,
} from './pull.js';
import { pushImage } from './push.js';
import type { ProgressSink } from './progress.js';
import { Registries, registryDomain, type RegistryOptions } from './registries.js';

export { type AuthConfig, decodeAuthHeader, encodeAuthHeader } from './auth.js';
export type { JsonMessage, ProgressSink } from './progress.js';
export { type RegistryOptions, registryDomain } from './registries.js';

export interface DistributionOptions extends RegistryOptions {
  /** Bytes per PATCH on push (default 8 MiB). */
  pushChunkBytes?: number;
  log?: Logger;
}

class Unauthorized extends CoveError {
  constructor(message: string) {
    super(message, 401);
  }
}

const NET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
]);

/** Errors of the network (refused, unreachable, timeout) in the words dockerd uses. */
function networkError(e: unknown, what: string): unknown {
  if (e instanceof CoveError || e instanceof RegistryError) return e;
  const err = e as NodeJS.ErrnoException;
  if (e instanceof HttpTimeout) return new CoveError(`${what}: ${err.message}`, 500);
  // Local file errors (a full disk) in Go's words: "write /path: no space left on device".
  if (err?.code && err.syscall && !NET_CODES.has(err.code)) {
    const why = err.message.replace(/^[A-Z]+: /, '').replace(/, \w+.*$/, '');
    return new CoveError(`${err.syscall}${err.path ? ' ' + err.path : ''}: ${why}`, 500);
  }
  if (err?.code) return new CoveError(`${what}: dial tcp: ${err.message}`, 500);
  return e;
}

/** How long a registry host's unanswered name lookup (EAI_AGAIN) is remembered. */
const UNRESOLVED_MS = 30_000;

/** What the API and the swarm agent use of the registry client. */
export type DistributionService = Pick<
  Distribution,
  'pull' | 'push' | 'login' | 'search' | 'inspect' | 'resolveDigest' | 'ensure'
>;

export class Distribution {
  readonly registries: Registries;
  private readonly inflight: InFlight = { downloads: new Map(), extractions: new Map() };
  /** Registry hosts whose name the resolver failed to resolve a moment ago (EAI_AGAIN), see onEndpoints. */
  private readonly unresolved = new Map<string, { until: number; err: unknown }>();
  private readonly log: Logger;

  constructor(
    private readonly images: ImageStore,
    private readonly opts: DistributionOptions,
  ) {
    this.registries = new Registries(opts);
    this.log = opts.log ?? silentLogger;
  }

  private client(n: NamedRef, purpose: 'pull' | 'push', auth: AuthConfig | undefined, extraScopes: string[] = []) {
    const scope = `repository:${n.path}:${purpose === 'push' ? 'pull,push' : 'pull'}`;
    return this.registries
      .endpoints(n.domain, purpose)
      .map((ep) => new RegistryClient(ep, normalizeAuth(auth), this.opts.timeoutMs, [scope, ...extraScopes]));
  }

  /**
   * Tries each endpoint (mirrors first). The last error wins, as dockerd
   * reports it, except that a definite answer (not found, denied) from a
   * mirror beats Docker Hub being unreachable: it is the more useful one.
   */
  private async onEndpoints<T>(
    n: NamedRef,
    purpose: 'pull' | 'push',
    auth: AuthConfig | undefined,
    fn: (c: RegistryClient) => Promise<T>,
  ): Promise<T> {
    let last: unknown;
    let definite: unknown;
    const clients = this.client(n, purpose, auth);
    for (const c of clients) {
      const host = new URL(c.base).host;
      try {
        const unresolved = this.unresolved.get(host);
        if (unresolved && unresolved.until > Date.now()) throw unresolved.err;
        this.unresolved.delete(host);
        return await fn(c);
      } catch (e) {
        // The resolver did not answer (EAI_AGAIN: on a host without a reachable DNS server that takes its full
        // timeout, 10 s here): the next request within a short while fails at once with the same error, so a
        // burst of `service create`s on an offline host does not pay 10 s each to learn that no digest is to be had.
        if ((e as NodeJS.ErrnoException)?.code === 'EAI_AGAIN' && !this.unresolved.has(host))
          this.unresolved.set(host, { until: Date.now() + UNRESOLVED_MS, err: e });
        last = networkError(e, `Get "${c.base}/v2/"`);
        const isDefinite = e instanceof RegistryError || (e instanceof CoveError && e.status !== 500);
        if (isDefinite) definite ??= e;
        this.log.info({ endpoint: c.base, err: (e as Error).message }, 'registry endpoint failed');
        if (!c.endpoint.mirror && isDefinite) break;
      }
    }
    let err = last;
    if (definite && !(last instanceof RegistryError || (last instanceof CoveError && last.status !== 500)))
      err = definite;
    if (err instanceof RegistryError) {
      if (err.status === 401 || err.code === 'UNAUTHORIZED') throw new Unauthorized(err.message);
      throw new CoveError(err.message, err.status >= 400 && err.status < 600 ? err.status : 500);
    }
    throw err;
  }

  /** POST /images/create?fromImage=: pulls `ref` (tag defaults to latest) with progress. */
  async pull(ref: string, opts: { auth?: AuthConfig; progress?: ProgressSink } = {}): Promise<PullResult> {
    const n = withDefaultTag(parseNamed(ref));
    const sink = opts.progress ?? (() => undefined);
    return this.onEndpoints(n, 'pull', opts.auth, (c) => pullImage(this.images, c, this.inflight, n, sink));
  }

  /**
   * What a swarm node calls before it creates a task's container: the image
   * ID of `ref` (as the manager pinned it, `nginx:latest@sha256:...`), from
   * the local store when held, else pulled now with the service's
   * credentials (`--with-registry-auth`). Concurrent calls share downloads.
   */
  async ensure(ref: string, opts: { auth?: AuthConfig; progress?: ProgressSink } = {}): Promise<string> {
    const held = await this.images.resolve(ref).catch(() => undefined);
    if (held) return held;
    return (await this.pull(ref, opts)).id;
  }

  /** POST /images/{name}/push. */
  async push(
    name: string,
    tag: string | undefined,
    opts: { auth?: AuthConfig; progress?: ProgressSink } = {},
  ): Promise<{ digest: string; size: number }> {
    const n = parseNamed(name);
    if (n.digest) throw new InvalidParameter(`cannot push a digest reference`);
    const t = tag || n.tag || 'latest';
    const sink = opts.progress ?? (() => undefined);
    return this.onEndpoints(n, 'push', opts.auth, (c) =>
      pushImage(this.images, c, n, t, sink, { chunkBytes: this.opts.pushChunkBytes ?? 8 << 20, concurrency: 3 }),
    );
  }

  /**
   * `service create`'s pinning: the reference with the digest the registry
   * has for it now (`nginx:latest@sha256:...`).
   */
  async resolveDigest(ref: string, auth?: AuthConfig): Promise<string> {
    const n = withDefaultTag(parseNamed(ref));
    if (n.digest) return familiarString(n);
    const d = await this.inspect(ref, auth);
    return `${familiarRepo(n)}:${n.tag}@${d.Descriptor.digest}`;
  }

  /** GET /distribution/{name}/json. */
  async inspect(
    ref: string,
    auth?: AuthConfig,
  ): Promise<{
    Descriptor: { mediaType: string; digest: string; size: number };
    Platforms: Array<Record<string, string>>;
  }> {
    const n = withDefaultTag(parseNamed(ref));
    return this.onEndpoints(n, 'pull', auth, async (c) => {
      let top;
      try {
        top = await c.getManifest(n.path, n.digest ?? n.tag!);
      } catch (e) {
        throw await translateManifestError(e, n, c);
      }
      const parsed = JSON.parse(top.bytes.toString('utf8')) as ImageManifest;
      let platforms: Array<Record<string, string>>;
      if (isIndex(top.mediaType, parsed)) {
        platforms = (parsed.manifests ?? [])
          .filter((m) => m.platform)
          .map((m) => ({
            architecture: m.platform!.architecture ?? '',
            os: m.platform!.os ?? '',
            ...(m.platform!.variant ? { variant: m.platform!.variant } : {}),
          }));
      } else {
        const cfg = JSON.parse((await fetchConfig(c, n.path, parsed.config)).toString('utf8')) as {
          os?: string;
          architecture?: string;
          variant?: string;
        };
        platforms = [
          { architecture: cfg.architecture ?? '', os: cfg.os ?? '', ...(cfg.variant ? { variant: cfg.variant } : {}) },
        ];
      }
      return {
        Descriptor: { mediaType: top.mediaType, digest: top.digest, size: top.bytes.length },
        Platforms: platforms,
      };
    });
  }

  /** POST /auth: checks the credentials against the registry. */
  async login(auth: AuthConfig): Promise<{ Status: string; IdentityToken: string }> {
    const a = normalizeAuth(auth);
    if (!a?.username) throw new InvalidParameter('Username cannot be empty');
    const domain = registryDomain(a.serveraddress ?? '');
    const ep = this.registries.endpoints(domain, 'push')[0]!;
    const c = new RegistryClient(ep, a, this.opts.timeoutMs, []);
    try {
      await c.ping();
      await c.catalog(1).catch((e: unknown) => {
        // A registry may refuse the catalog to a valid user; only a 401 means bad credentials.
        if (e instanceof RegistryError && e.status === 401) throw e;
      });
    } catch (e) {
      if (e instanceof RegistryError && (e.status === 401 || e.code === 'UNAUTHORIZED')) {
        const msg = /incorrect/.test(e.message)
          ? e.message
          : `login attempt to ${c.base}/v2/ failed with status: 401 Unauthorized`;
        throw new Unauthorized(msg);
      }
      throw networkError(e, `Get "${c.base}/v2/"`);
    }
    return { Status: 'Login Succeeded', IdentityToken: '' };
  }

  /** GET /images/search: the registry's catalog, filtered by the term (registry 2.x has no search API). */
  async search(
    term: string,
    opts: { limit?: number; auth?: AuthConfig } = {},
  ): Promise<
    Array<{ name: string; description: string; star_count: number; is_official: boolean; is_automated: boolean }>
  > {
    let domain = 'docker.io';
    let words = term;
    const i = term.indexOf('/');
    if (i > 0 && /[.:]|^localhost$/.test(term.slice(0, i))) {
      domain = term.slice(0, i);
      words = term.slice(i + 1);
    }
    const n: NamedRef = { domain, path: 'library/search' };
    const repos = await this.onEndpoints(n, 'pull', opts.auth, (c) => c.catalog(1000));
    const hits = repos.filter((r) => r.includes(words.toLowerCase())).slice(0, opts.limit ?? 25);
    return hits.map((r) => {
      const f = familiarRepo({ domain, path: r });
      return {
        name: f,
        description: '',
        star_count: 0,
        is_official: domain === 'docker.io' && r.startsWith('library/'),
        is_automated: false,
      };
    });
  }
}
