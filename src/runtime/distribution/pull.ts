/**
 * Pull: manifest (an index is narrowed to linux/amd64), config and layers,
 * each checked against its digest before it is kept; layers already in the
 * layer store are not fetched; a layer being fetched by another pull is
 * awaited, not fetched twice. Progress goes out as docker's JSON messages.
 */
import { createReadStream } from 'node:fs';
import { Transform } from 'node:stream';
import { NotFound, InvalidParameter } from '../../common/errors.js';
import { CHUNK, DigestMismatch } from '../images/blobs.js';
import { chainIdOf, LayerDigestMismatch } from '../images/layers.js';
import { familiarRepo, familiarString, type NamedRef } from '../images/reference.js';
import type { ImageStore, ImageConfig } from '../images/store.js';
import { MANIFEST_TYPES, RegistryClient, RegistryError, sha256 } from './client.js';
import { readAll } from './http.js';
import { layerProgress, shortId, throttled, type ProgressSink } from './progress.js';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { architecture?: string; os?: string; variant?: string };
  urls?: string[];
}

export interface ImageManifest {
  schemaVersion: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  manifests?: Descriptor[];
}

export const PLATFORM = { os: 'linux', architecture: 'amd64' };

/** Shared across pulls of one daemon: what is being downloaded or extracted now. */
export interface InFlight {
  downloads: Map<string, Promise<void>>;
  extractions: Map<string, Promise<number>>;
}

export function isIndex(mediaType: string, parsed: { manifests?: unknown }): boolean {
  return (
    mediaType === MANIFEST_TYPES.dockerList ||
    mediaType === MANIFEST_TYPES.ociIndex ||
    (!mediaType && Array.isArray(parsed.manifests))
  );
}

/** Docker's words for a manifest the registry will not give us (moby distribution/errors.go). */
export async function translateManifestError(e: unknown, n: NamedRef, client: RegistryClient): Promise<unknown> {
  if (!(e instanceof RegistryError)) return e;
  const denied = (cause: string): NotFound =>
    new NotFound(
      `pull access denied for ${familiarRepo(n)}, repository does not exist or may require 'docker login': ${cause}`,
    );
  if (
    e.code === 'DENIED' ||
    e.code === 'UNAUTHORIZED' ||
    e.code === 'NAME_UNKNOWN' ||
    e.status === 401 ||
    e.status === 403
  ) {
    return denied(
      e.code === 'NAME_UNKNOWN' || !e.code ? 'denied: requested access to the resource is denied' : e.message,
    );
  }
  if (e.code === 'MANIFEST_UNKNOWN' || e.status === 404) {
    // distribution answers MANIFEST_UNKNOWN for a repository it has never seen, too.
    const repoExists = await client.tags(n.path).then(
      (t) => t.length > 0,
      () => false,
    );
    if (!repoExists) return denied('denied: requested access to the resource is denied');
    return new NotFound(
      `manifest for ${familiarString(n)} not found: manifest unknown: ${e.message.replace(/^manifest unknown: /, '')}`,
    );
  }
  return e;
}

/** Fetches and checks the manifest of `n`, narrowing an index to linux/amd64. */
export async function resolveManifest(
  client: RegistryClient,
  n: NamedRef,
): Promise<{
  top: { digest: string; mediaType: string; size: number; bytes: Buffer };
  manifest: ImageManifest;
  manifestDigest: string;
  platforms: Array<Record<string, string>>;
}> {
  const ref = n.digest ?? n.tag ?? 'latest';
  let top;
  try {
    top = await client.getManifest(n.path, ref);
  } catch (e) {
    throw await translateManifestError(e, n, client);
  }
  let parsed = JSON.parse(top.bytes.toString('utf8')) as ImageManifest;
  let manifestDigest = top.digest;
  const platforms: Array<Record<string, string>> = [];
  if (isIndex(top.mediaType, parsed)) {
    const entries = parsed.manifests ?? [];
    for (const m of entries)
      if (m.platform)
        platforms.push({
          architecture: m.platform.architecture ?? '',
          os: m.platform.os ?? '',
          ...(m.platform.variant ? { variant: m.platform.variant } : {}),
        });
    const pick = entries.find(
      (m) => m.platform?.os === PLATFORM.os && m.platform?.architecture === PLATFORM.architecture,
    );
    if (!pick)
      throw new NotFound(
        `no matching manifest for ${PLATFORM.os}/${PLATFORM.architecture} in the manifest list entries`,
      );
    const sub = await client.getManifest(n.path, pick.digest);
    parsed = JSON.parse(sub.bytes.toString('utf8')) as ImageManifest;
    manifestDigest = sub.digest;
  }
  if (parsed.schemaVersion !== 2 || !parsed.config?.digest || !Array.isArray(parsed.layers)) {
    throw new InvalidParameter(
      `unsupported manifest format for ${familiarString(n)}: ${top.mediaType || 'schema ' + parsed.schemaVersion}`,
    );
  }
  return {
    top: { digest: top.digest, mediaType: top.mediaType, size: top.bytes.length, bytes: top.bytes },
    manifest: parsed,
    manifestDigest,
    platforms,
  };
}

export async function fetchConfig(client: RegistryClient, repo: string, desc: Descriptor): Promise<Buffer> {
  const { body } = await client.openBlob(repo, desc.digest);
  const bytes = await readAll(body, 8 << 20);
  if (sha256(bytes) !== desc.digest)
    throw new InvalidParameter(`image config verification failed for digest ${desc.digest}`);
  return bytes;
}

export interface PullResult {
  id: string;
  /** Digest of what the reference points at (the index, when there is one). */
  digest: string;
  /** `alpine:latest` or `alpine@sha256:...`. */
  name: string;
}

export async function pullImage(
  images: ImageStore,
  client: RegistryClient,
  inflight: InFlight,
  n: NamedRef,
  sink: ProgressSink,
  downloadConcurrency = 3,
  retry?: { attempts?: number; retryDelayMs?: number },
): Promise<PullResult> {
  const { top, manifest } = await resolveManifest(client, n);
  sink({ status: `Pulling from ${n.path}`, id: n.tag ?? n.digest! });
  const configBytes = await fetchConfig(client, n.path, manifest.config);
  let cfg: ImageConfig;
  try {
    cfg = JSON.parse(configBytes.toString('utf8')) as ImageConfig;
  } catch {
    throw new InvalidParameter(`invalid image config ${manifest.config.digest}`);
  }
  const diffIds = cfg.rootfs?.diff_ids ?? [];
  if (diffIds.length !== manifest.layers.length) {
    throw new InvalidParameter(
      `invalid manifest ${top.digest}: ${manifest.layers.length} layers, but the config lists ${diffIds.length} diff IDs`,
    );
  }
  if (cfg.os && cfg.os !== PLATFORM.os)
    throw new InvalidParameter(`image operating system "${cfg.os}" cannot be used on this platform`);

  const progress = throttled(sink);
  const chain: string[] = [];
  const missing: number[] = [];
  let parent: string | null = null;
  for (let i = 0; i < diffIds.length; i++) {
    const c = chainIdOf(parent, diffIds[i]!);
    chain.push(c);
    parent = c;
    const id = shortId(manifest.layers[i]!.digest);
    if (await images.layers.meta(c)) sink({ status: 'Already exists', progressDetail: {}, id });
    else {
      missing.push(i);
      sink({ status: 'Pulling fs layer', progressDetail: {}, id });
    }
  }

  // Downloads, a few at a time; each blob once per daemon.
  const downloads = new Map<number, Promise<void>>();
  const start = Math.floor(Date.now() / 1000);
  const download = async (i: number): Promise<void> => {
    const desc = manifest.layers[i]!;
    const id = shortId(desc.digest);
    if (desc.urls?.length) throw new InvalidParameter(`foreign layers are not supported (${desc.digest})`);
    if (!images.blobs.has(desc.digest)) {
      let job = inflight.downloads.get(desc.digest);
      if (!job) {
        job = (async () => {
          try {
            // Resumable: a broken connection (or an earlier pull cut short) continues with a Range request.
            await images.blobs.download(
              desc.digest,
              desc.size,
              (offset) => client.openBlob(n.path, desc.digest, offset),
              {
                onBytes: (got) => progress(layerProgress(id, 'Downloading', got, desc.size, start)),
                onRetry: (_attempt, delayMs) =>
                  sink({
                    status: `Retrying in ${Math.round(delayMs / 1000)} second${delayMs === 1000 ? '' : 's'}`,
                    progressDetail: {},
                    id,
                  }),
                ...(retry ?? {}),
              },
            );
          } catch (e) {
            if (e instanceof DigestMismatch) throw new InvalidParameter(e.message);
            throw e;
          }
        })().finally(() => inflight.downloads.delete(desc.digest));
        inflight.downloads.set(desc.digest, job);
      } else {
        sink({ status: 'Waiting', progressDetail: {}, id });
      }
      await job;
      sink({ status: 'Verifying Checksum', progressDetail: {}, id });
    }
    sink({ status: 'Download complete', progressDetail: {}, id });
  };
  const limit = limiter(downloadConcurrency);
  for (const i of missing) {
    const p = limit(() => download(i));
    p.catch(() => undefined); // awaited below, in order
    downloads.set(i, p);
  }

  // Extraction, bottom layer first, as soon as each download is done.
  let size = 0;
  for (let i = 0; i < diffIds.length; i++) {
    const meta = await images.layers.meta(chain[i]!);
    if (meta) {
      size += meta.size;
      continue;
    }
    await downloads.get(i);
    size += await extractLayer(
      images,
      inflight,
      n,
      manifest.layers[i]!,
      diffIds[i]!,
      i ? chain[i - 1]! : null,
      chain[i]!,
      progress,
      start,
    );
    sink({ status: 'Pull complete', progressDetail: {}, id: shortId(manifest.layers[i]!.digest) });
  }
  // A reference with a digest names that manifest only; its tag, if any, is not moved (as moby: AddDigest, no AddTag).
  const tag = n.tag && !n.digest ? `${familiarRepo(n)}:${n.tag}` : undefined;
  const name = tag ?? familiarString(n);
  const before = tag ? await images.idForTag(tag) : undefined;
  const hadDigest = await images.resolve(`${familiarRepo(n)}@${top.digest}`).then(
    () => true,
    () => false,
  );
  const id = await images.registerPulled(configBytes, chain, diffIds, size, tag, `${familiarRepo(n)}@${top.digest}`);
  sink({ status: `Digest: ${top.digest}` });
  const upToDate = missing.length === 0 && (tag ? before === id : hadDigest);
  sink({ status: upToDate ? `Status: Image is up to date for ${name}` : `Status: Downloaded newer image for ${name}` });
  return { id, digest: top.digest, name };
}

async function extractLayer(
  images: ImageStore,
  inflight: InFlight,
  n: NamedRef,
  desc: Descriptor,
  diffId: string,
  parent: string | null,
  chainId: string,
  progress: ReturnType<typeof throttled>,
  start: number,
): Promise<number> {
  let job = inflight.extractions.get(chainId);
  if (!job) {
    job = (async () => {
      const id = shortId(desc.digest);
      let read = 0;
      const counting = new Transform({
        transform(chunk: Buffer, _e, cb) {
          read += chunk.length;
          progress(layerProgress(id, 'Extracting', read, desc.size, start));
          cb(null, chunk);
        },
      });
      // Decompressed, hashed and unpacked in one pass; the layer is kept only if its diff ID matches.
      const compressed = createReadStream(images.blobs.path(desc.digest), { highWaterMark: CHUNK });
      compressed.on('error', (e) => counting.destroy(e));
      let meta;
      try {
        meta = await images.layers.addStream(compressed.pipe(counting), diffId, parent);
      } catch (e) {
        if (!(e instanceof LayerDigestMismatch)) throw e;
        await images.blobs.remove(desc.digest);
        throw new InvalidParameter(`layer ${desc.digest} has diff ID ${e.actual}, but the image config says ${diffId}`);
      }
      await images.blobs.updateDiff(diffId, (cur) => ({
        ...cur,
        compressed:
          cur.compressed && images.blobs.has(cur.compressed.digest)
            ? cur.compressed
            : { digest: desc.digest, size: desc.size, mediaType: desc.mediaType },
        sources: [...new Set([...(cur.sources ?? []), `${n.domain}/${n.path}`])],
      }));
      return meta.size;
    })().finally(() => inflight.extractions.delete(chainId));
    inflight.extractions.set(chainId, job);
  }
  return job;
}

/** Runs at most `n` of the given jobs at once. */
export function limiter(n: number): <T>(job: () => Promise<T>) => Promise<T> {
  let running = 0;
  const queue: Array<() => void> = [];
  return <T>(job: () => Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const go = (): void => {
        running++;
        job()
          .then(resolve, reject)
          .finally(() => {
            running--;
            queue.shift()?.();
          });
      };
      if (running < n) go();
      else queue.push(go);
    });
}
