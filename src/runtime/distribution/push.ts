/**
 * Push: each layer as a compressed blob (the one it was pulled as, else the
 * kept tar gzip'd once), skipped when the registry has it, mounted when
 * another repository of that registry is known to hold it, else uploaded in
 * chunks (PATCH with Content-Range), resuming from the registry's offset when
 * a chunk fails; then the config and a schema 2 manifest.
 */
import { open } from 'node:fs/promises';
import { NotFound } from '../../common/errors.js';
import { familiarRepo, type NamedRef } from '../images/reference.js';
import type { ImageStore } from '../images/store.js';
import { MANIFEST_TYPES, RegistryClient } from './client.js';
import { limiter } from './pull.js';
import { layerProgress, shortId, throttled, type ProgressSink } from './progress.js';

export interface PushOptions {
  chunkBytes: number;
  concurrency: number;
}

async function uploadFile(
  client: RegistryClient,
  repo: string,
  path: string,
  size: number,
  digest: string,
  start: { location: URL },
  chunkBytes: number,
  onBytes: (n: number) => void,
): Promise<void> {
  const fh = await open(path, 'r');
  try {
    let location = start.location;
    let offset = 0;
    let failures = 0;
    while (offset < size) {
      const len = Math.min(chunkBytes, size - offset);
      const buf = Buffer.alloc(len);
      await fh.read(buf, 0, len, offset);
      try {
        location = await client.uploadChunk(location, buf, offset);
        offset += len;
        onBytes(offset);
      } catch (e) {
        // Resumable upload: ask the registry how much it holds and go on from there.
        if (++failures > 3) throw e;
        const st = await client.uploadOffset(location);
        location = st.location;
        offset = st.offset;
      }
    }
    await client.completeUpload(location, digest);
  } finally {
    await fh.close();
  }
}

export async function pushImage(
  images: ImageStore,
  client: RegistryClient,
  n: NamedRef,
  tag: string,
  sink: ProgressSink,
  opts: PushOptions,
): Promise<{ digest: string; size: number }> {
  const local = `${familiarRepo(n)}:${tag}`;
  const rec = await images.resolveRecord(local).catch(() => {
    throw new NotFound(`An image does not exist locally with the tag: ${familiarRepo(n)}`);
  });
  sink({ status: `The push refers to repository [${n.domain}/${n.path}]` });
  const progress = throttled(sink);
  const order = [...rec.diffIds.keys()].reverse();
  for (const i of order) sink({ status: 'Preparing', progressDetail: {}, id: shortId(rec.diffIds[i]!) });
  for (const i of order) sink({ status: 'Waiting', progressDetail: {}, id: shortId(rec.diffIds[i]!) });
  const start = Math.floor(Date.now() / 1000);
  const layers: Array<{ mediaType: string; size: number; digest: string }> = new Array(rec.diffIds.length);
  const limit = limiter(opts.concurrency);
  await Promise.all(
    order.map((i) =>
      limit(async () => {
        const diffId = rec.diffIds[i]!;
        const id = shortId(diffId);
        const blob = await images.blobs.compressedFor(diffId);
        layers[i] = { mediaType: blob.mediaType, size: blob.size, digest: blob.digest };
        const here = `${n.domain}/${n.path}`;
        if (await client.blobExists(n.path, blob.digest)) {
          sink({ status: 'Layer already exists', progressDetail: {}, id });
        } else {
          const info = await images.blobs.diffInfo(diffId);
          const from = (info.sources ?? []).find((s) => s.startsWith(n.domain + '/') && s !== here);
          const fromPath = from?.slice(n.domain.length + 1);
          const res = await client.mountOrStart(n.path, blob.digest, fromPath);
          if (res.mounted) {
            sink({ status: `Mounted from ${fromPath!}`, progressDetail: {}, id });
          } else {
            await uploadFile(
              client,
              n.path,
              images.blobs.path(blob.digest),
              blob.size,
              blob.digest,
              res,
              opts.chunkBytes,
              (done) => progress(layerProgress(id, 'Pushing', done, blob.size, start)),
            );
            sink({ status: 'Pushed', progressDetail: {}, id });
          }
        }
        await images.blobs.updateDiff(diffId, (cur) => ({
          ...cur,
          sources: [...new Set([...(cur.sources ?? []), here])],
        }));
      }),
    ),
  );

  const configBytes = await images.configBytes(rec.id);
  if (!(await client.blobExists(n.path, rec.id))) {
    const res = await client.mountOrStart(n.path, rec.id, undefined);
    if (!res.mounted) {
      let location = await client.uploadChunk(res.location, configBytes, 0);
      await client.completeUpload(location, rec.id);
      location = res.location;
    }
  }
  const manifest = Buffer.from(
    JSON.stringify(
      {
        schemaVersion: 2,
        mediaType: MANIFEST_TYPES.dockerV2,
        config: {
          mediaType: 'application/vnd.docker.container.image.v1+json',
          size: configBytes.length,
          digest: rec.id,
        },
        layers,
      },
      null,
      3,
    ),
  );
  const digest = await client.putManifest(n.path, tag, manifest, MANIFEST_TYPES.dockerV2);
  await images.addRepoDigest(rec.id, `${familiarRepo(n)}@${digest}`);
  sink({ status: `${tag}: digest: ${digest} size: ${manifest.length}` });
  sink({ progressDetail: {}, aux: { Tag: tag, Digest: digest, Size: manifest.length } });
  return { digest, size: manifest.length };
}
