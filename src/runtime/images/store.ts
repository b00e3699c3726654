/**
 * ImageStore: local images only (no registry). An image is its config JSON
 * (ID = sha256 of those bytes, as Docker computes it) kept under
 * `<dataRoot>/images/configs/`, a chain of layers in the LayerStore, and a
 * record in the Store (repo tags, size, layer chain).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, realpath, rm, writeFile, stat } from 'node:fs/promises';
import { createReadStream, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Collection, type Store } from '../../store/store.js';
import { Conflict, InvalidParameter, NotFound } from '../../common/errors.js';
import { silentLogger, type Logger } from '../../common/log.js';
import type { DaemonConfig } from '../../common/config.js';
import type { EventBus } from '../../common/events.js';
import type { Filters } from '../../network/types.js';
import type { DockerImageSummary, ImageService } from '../types.js';
import { applyChanges, type ImageRunConfig } from './changes.js';
import { LayerStore, spoolTar, chainIdOf } from './layers.js';
import { familiarRepo, formatRepoTag, parseNamed, parseRepoTag } from './reference.js';
import { BlobStore } from './blobs.js';
import { loadTar } from '../tar.js';

/** The image config JSON (OCI image config / Docker's v1 image JSON). */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  created?: string;
  author?: string;
  comment?: string;
  docker_version?: string;
  config?: ImageRunConfig;
  rootfs: { type: string; diff_ids: string[] };
  history?: unknown[];
  variant?: string;
}

export interface ImageRecord {
  id: string;
  repoTags: string[];
  /** Chain IDs, bottom layer first. */
  chain: string[];
  diffIds: string[];
  size: number;
  created: string;
  lastTagTime: string;
  /** `repo@sha256:...` of the manifests this image was pulled from or pushed as. */
  repoDigests?: string[];
}

/** Who uses an image: the container layer answers (registered by the ContainerManager). */
export type ContainerUsage = (imageId: string) => Promise<Array<{ id: string; running: boolean }>>;

export interface ImageStoreOptions {
  config: DaemonConfig;
  store: Store;
  events?: EventBus;
  log?: Logger;
}

const shortHex = (id: string): string => id.replace(/^sha256:/, '').slice(0, 12);

export class ImageStore implements ImageService {
  private readonly records: Collection<ImageRecord>;
  private readonly root: string;
  readonly layers: LayerStore;
  readonly blobs: BlobStore;
  private readonly log: Logger;
  private readonly events: EventBus | undefined;
  private usage: ContainerUsage = async () => [];
  private lock: Promise<unknown> = Promise.resolve();

  constructor(opts: ImageStoreOptions) {
    this.root = join(opts.config.dataRoot, 'images');
    this.records = new Collection<ImageRecord>(opts.store, 'runtime/images');
    this.layers = new LayerStore(join(this.root, 'layers'));
    this.blobs = new BlobStore(this.root);
    this.log = opts.log ?? silentLogger;
    this.events = opts.events;
  }

  /** The container layer tells us which containers use an image (for rmi and Containers counts). */
  setContainerUsage(fn: ContainerUsage): void {
    this.usage = fn;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lock.then(fn, fn);
    this.lock = next.catch(() => undefined);
    return next;
  }

  private configPath(id: string): string {
    return join(this.root, 'configs', id.replace(/^sha256:/, '') + '.json');
  }

  private tmpDir(): string {
    return join(this.root, 'tmp', randomBytes(8).toString('hex'));
  }

  // ---------- queries ----------

  async resolve(ref: string): Promise<string> {
    return (await this.resolveRecord(ref)).id;
  }

  async resolveRecord(ref: string): Promise<ImageRecord> {
    const all = await this.records.list();
    const r = ref.trim();
    if (r.includes('@')) {
      // name@sha256:... — an image pulled or pushed under that manifest digest.
      let wantDigest: string | undefined;
      try {
        const n = parseNamed(r);
        wantDigest = n.digest ? `${familiarRepo(n)}@${n.digest}` : undefined;
      } catch {
        wantDigest = undefined;
      }
      const hit = wantDigest && all.find((x) => (x.value.repoDigests ?? []).includes(wantDigest!));
      if (hit) return hit.value;
      throw new NotFound(`No such image: ${ref}`);
    }
    const bare = r.replace(/^sha256:/, '');
    if (/^[0-9a-f]{64}$/.test(bare)) {
      const hit = all.find((x) => x.value.id === 'sha256:' + bare);
      if (hit) return hit.value;
    }
    let wanted: string | undefined;
    try {
      wanted = formatRepoTag(parseRepoTag(r));
    } catch {
      wanted = undefined;
    }
    if (wanted) {
      const hit = all.find((x) => x.value.repoTags.includes(wanted!));
      if (hit) return hit.value;
    }
    if (/^[0-9a-f]{1,63}$/.test(bare) && bare.length >= 1) {
      const hits = all.filter((x) => x.value.id.slice('sha256:'.length).startsWith(bare));
      if (hits.length === 1) return hits[0]!.value;
    }
    throw new NotFound(`No such image: ${ref}`);
  }

  /** The parsed config JSON of an image. */
  async imageConfig(ref: string): Promise<ImageConfig & { id: string }> {
    const rec = await this.resolveRecord(ref);
    let cfg = this.configs.get(rec.id);
    if (!cfg) {
      cfg = JSON.parse(await readFile(this.configPath(rec.id), 'utf8')) as ImageConfig;
      // The ID is the config's digest, so what is kept never goes stale; a few recent ones are enough.
      if (this.configs.size >= 32) this.configs.delete(this.configs.keys().next().value!);
      this.configs.set(rec.id, cfg);
    }
    return { ...structuredClone(cfg), id: rec.id };
  }

  /** Parsed configs of images used lately (by ID), so a container create reads no file. */
  private readonly configs = new Map<string, ImageConfig>();

  /** overlayfs lowerdirs of an image, top layer first. */
  async lowerDirs(ref: string): Promise<string[]> {
    const rec = await this.resolveRecord(ref);
    if (!rec.chain.length) return [];
    return this.layers.lowerDirs(rec.chain[rec.chain.length - 1]!);
  }

  /** The repo:tag to show for an image in container listings (first tag, else the ID). */
  async displayName(id: string): Promise<string | undefined> {
    const rec = await this.records.get(id.replace(/^sha256:/, ''));
    return rec?.value.repoTags[0];
  }

  async list(opts: { all?: boolean; filters?: Filters } = {}): Promise<DockerImageSummary[]> {
    const f = opts.filters ?? {};
    const out: DockerImageSummary[] = [];
    for (const { value: rec } of await this.records.list()) {
      const cfg = await this.imageConfig(rec.id).catch(() => undefined);
      if (!cfg) continue;
      const labels = cfg.config?.Labels ?? null;
      if (f.dangling?.length) {
        const want = f.dangling[0] === 'true' || f.dangling[0] === '1';
        if (want !== (rec.repoTags.length === 0)) continue;
      }
      if (f.reference?.length && !rec.repoTags.some((t) => f.reference!.some((p) => refMatches(p, t)))) continue;
      if (f.label?.length && !f.label.every((l) => labelMatches(labels ?? {}, l))) continue;
      const users = await this.usage(rec.id);
      out.push({
        Id: rec.id,
        ParentId: '',
        RepoTags: rec.repoTags,
        RepoDigests: rec.repoDigests ?? [],
        Created: Math.floor(Date.parse(rec.created) / 1000) || 0,
        Size: rec.size,
        SharedSize: -1,
        VirtualSize: rec.size,
        Labels: labels,
        Containers: users.length,
      });
    }
    return out.sort((a, b) => b.Created - a.Created || a.Id.localeCompare(b.Id));
  }

  async inspect(ref: string): Promise<Record<string, unknown>> {
    const rec = await this.resolveRecord(ref);
    const cfg = await this.imageConfig(rec.id);
    const c = cfg.config ?? {};
    const lowers = rec.chain.length ? await this.layers.lowerDirs(rec.chain[rec.chain.length - 1]!) : [];
    return {
      Id: rec.id,
      RepoTags: rec.repoTags,
      RepoDigests: rec.repoDigests ?? [],
      Parent: (cfg as { parent?: string }).parent ?? '',
      Comment: cfg.comment ?? '',
      Created: cfg.created ?? rec.created,
      DockerVersion: cfg.docker_version ?? '',
      Author: cfg.author ?? '',
      Config: {
        Hostname: '',
        Domainname: '',
        User: c.User ?? '',
        AttachStdin: false,
        AttachStdout: false,
        AttachStderr: false,
        ExposedPorts: c.ExposedPorts ?? undefined,
        Tty: false,
        OpenStdin: false,
        StdinOnce: false,
        Env: c.Env ?? null,
        Cmd: c.Cmd ?? null,
        Image: '',
        Volumes: c.Volumes ?? null,
        WorkingDir: c.WorkingDir ?? '',
        Entrypoint: c.Entrypoint ?? null,
        OnBuild: c.OnBuild ?? null,
        Labels: c.Labels ?? null,
        ...(c.StopSignal ? { StopSignal: c.StopSignal } : {}),
      },
      Architecture: cfg.architecture ?? 'amd64',
      ...(cfg.variant ? { Variant: cfg.variant } : {}),
      Os: cfg.os ?? 'linux',
      Size: rec.size,
      GraphDriver: {
        Name: 'overlay2',
        Data: lowers.length ? { LowerDir: lowers.slice(1).join(':') || undefined, UpperDir: lowers[0] } : null,
      },
      RootFS: { Type: 'layers', Layers: rec.diffIds },
      Metadata: { LastTagTime: rec.lastTagTime },
    };
  }

  // ---------- changes ----------

  async importTar(
    input: Readable,
    opts: { repo?: string; tag?: string; changes?: string[]; message?: string; onProgress?: (msg: string) => void },
  ): Promise<string> {
    // Validate everything the caller gave before touching the disk.
    let target: string | undefined;
    if (opts.repo) {
      const rt = opts.tag ? { ...parseRepoTag(opts.repo), tag: opts.tag } : parseRepoTag(opts.repo);
      if (opts.tag) parseRepoTag(`${rt.repo}:${opts.tag}`);
      target = formatRepoTag(rt);
    }
    const now = new Date().toISOString();
    const runCfg = applyChanges({}, opts.changes ?? []);
    const tmp = this.tmpDir();
    await mkdir(tmp, { recursive: true, mode: 0o700 });
    try {
      const layerTar = join(tmp, 'layer.tar');
      const diffId = await spoolTar(input, layerTar);
      const cfg: ImageConfig = {
        architecture: 'amd64',
        os: 'linux',
        created: now,
        ...(opts.message ? { comment: opts.message } : {}),
        config: runCfg,
        rootfs: { type: 'layers', diff_ids: [diffId] },
        history: [{ created: now, created_by: 'cove import', ...(opts.message ? { comment: opts.message } : {}) }],
      };
      const bytes = Buffer.from(JSON.stringify(cfg));
      return await this.serial(async () => {
        const meta = await this.layers.add(layerTar, diffId, null);
        await this.keepLayerTar(layerTar, diffId);
        const id = await this.commit(bytes, [meta.chainId], [diffId], meta.size, target ? [target] : []);
        this.events?.publish('image', 'import', id, target ? { name: target } : {});
        return id;
      });
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /**
   * docker commit: a new image from `base` plus one layer (the container's
   * changes as a layer tar) and the run config it should carry; tagged
   * `repo[:tag]` when given.
   */
  async commitLayer(opts: {
    base: string;
    layer: Readable;
    config: ImageRunConfig;
    repo?: string;
    tag?: string;
    comment?: string;
    author?: string;
    createdBy: string;
    containerId: string;
  }): Promise<string> {
    let target: string | undefined;
    if (opts.repo) {
      const rt = opts.tag ? { ...parseRepoTag(opts.repo), tag: opts.tag } : parseRepoTag(opts.repo);
      if (opts.tag) parseRepoTag(`${rt.repo}:${opts.tag}`);
      target = formatRepoTag(rt);
    }
    const baseRec = await this.resolveRecord(opts.base);
    const baseCfg = await this.imageConfig(baseRec.id);
    const tmp = this.tmpDir();
    await mkdir(tmp, { recursive: true, mode: 0o700 });
    try {
      const layerTar = join(tmp, 'layer.tar');
      const diffId = await spoolTar(opts.layer, layerTar);
      const now = new Date().toISOString();
      const cfg: ImageConfig & { container?: string; parent?: string } = {
        architecture: baseCfg.architecture ?? 'amd64',
        os: baseCfg.os ?? 'linux',
        created: now,
        ...(opts.author ? { author: opts.author } : {}),
        ...(opts.comment ? { comment: opts.comment } : {}),
        container: opts.containerId,
        parent: baseRec.id,
        config: opts.config,
        rootfs: { type: 'layers', diff_ids: [...baseRec.diffIds, diffId] },
        history: [
          ...((baseCfg.history ?? []) as unknown[]),
          {
            created: now,
            created_by: opts.createdBy,
            ...(opts.author ? { author: opts.author } : {}),
            ...(opts.comment ? { comment: opts.comment } : {}),
          },
        ],
      };
      const bytes = Buffer.from(JSON.stringify(cfg));
      return await this.serial(async () => {
        const parent = baseRec.chain.length ? baseRec.chain[baseRec.chain.length - 1]! : null;
        const meta = await this.layers.add(layerTar, diffId, parent);
        await this.keepLayerTar(layerTar, diffId);
        let size = meta.size;
        for (const c of baseRec.chain) size += (await this.layers.meta(c))?.size ?? 0;
        return this.commit(
          bytes,
          [...baseRec.chain, meta.chainId],
          [...baseRec.diffIds, diffId],
          size,
          target ? [target] : [],
        );
      });
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  async load(input: Readable, onProgress?: (msg: string) => void): Promise<string[]> {
    const tmp = this.tmpDir();
    const dir = join(tmp, 'archive');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    try {
      const tar = await loadTar();
      await pipeline(input, tar.x({ cwd: dir, preserveOwner: false, strict: true }));
      let images: Array<{ configBytes: Buffer; layerFiles: string[]; tags: string[] }>;
      if (existsSync(join(dir, 'manifest.json'))) images = await readDockerArchive(dir);
      else if (existsSync(join(dir, 'index.json'))) images = await readOciLayout(dir);
      else
        throw new InvalidParameter(
          'invalid archive: neither manifest.json (docker-archive) nor index.json (OCI layout) found',
        );
      const loaded: string[] = [];
      for (const img of images) {
        let cfg: ImageConfig;
        try {
          cfg = JSON.parse(img.configBytes.toString('utf8')) as ImageConfig;
        } catch (e) {
          throw new InvalidParameter(`invalid image config in archive: ${(e as Error).message}`);
        }
        const diffIds = cfg.rootfs?.diff_ids ?? [];
        if (diffIds.length !== img.layerFiles.length) {
          throw new InvalidParameter(
            `invalid manifest, layers length mismatch: expected ${diffIds.length}, got ${img.layerFiles.length}`,
          );
        }
        const tags = img.tags.map((t) => formatRepoTag(parseRepoTag(t)));
        const chain: string[] = [];
        let size = 0;
        await this.serial(async () => {
          let parent: string | null = null;
          for (let i = 0; i < img.layerFiles.length; i++) {
            const want = diffIds[i]!;
            const existing = await this.layers.meta(chainIdOf(parent, want));
            let meta = existing;
            if (!meta) {
              const spooled = join(tmp, `layer-${i}.tar`);
              const got = await spoolTar(createReadStream(img.layerFiles[i]!), spooled);
              if (got !== want)
                throw new InvalidParameter(`layer ${i} has diff ID ${got}, but the image config says ${want}`);
              onProgress?.(`Loading layer ${shortHex(want)}`);
              meta = await this.layers.add(spooled, want, parent);
              await this.keepLayerTar(spooled, want);
            }
            chain.push(meta.chainId);
            size += meta.size;
            parent = meta.chainId;
          }
          const id = await this.commit(img.configBytes, chain, diffIds, size, tags);
          this.events?.publish('image', 'load', id, {});
          if (tags.length) loaded.push(...tags);
          else loaded.push(id);
        });
      }
      this.log.info({ loaded }, 'images loaded');
      return loaded;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /** Keeps a verified uncompressed layer tar as blob `diffId` (for push and save). */
  private async keepLayerTar(tarPath: string, diffId: string): Promise<void> {
    const info = await this.blobs.diffInfo(diffId);
    if (info.tar || info.compressed) {
      await rm(tarPath, { force: true });
      return;
    }
    await this.blobs.adopt(tarPath, diffId);
    await this.blobs.updateDiff(diffId, (cur) => ({ ...cur, tar: true }));
  }

  /** The stored config bytes of an image (its ID is their digest). */
  async configBytes(id: string): Promise<Buffer> {
    return readFile(this.configPath(id));
  }

  /** The image a tag (familiar `repo:tag`) points at, if any. */
  async idForTag(name: string): Promise<string | undefined> {
    for (const { value } of await this.records.list()) if (value.repoTags.includes(name)) return value.id;
    return undefined;
  }

  /**
   * Records a pulled image whose layers are in the layer store: moves `tag`
   * onto it and remembers the manifest digest it came from.
   */
  async registerPulled(
    configBytes: Buffer,
    chain: string[],
    diffIds: string[],
    size: number,
    tag: string | undefined,
    repoDigest: string,
  ): Promise<string> {
    return this.serial(async () => {
      const id = await this.commit(configBytes, chain, diffIds, size, tag ? [tag] : []);
      await this.addRepoDigestLocked(id, repoDigest);
      this.events?.publish('image', 'pull', id, { name: tag ?? repoDigest });
      return id;
    });
  }

  async addRepoDigest(id: string, repoDigest: string): Promise<void> {
    await this.serial(() => this.addRepoDigestLocked(id, repoDigest));
  }

  private async addRepoDigestLocked(id: string, repoDigest: string): Promise<void> {
    const repo = repoDigest.slice(0, repoDigest.indexOf('@'));
    // One digest per repository, as docker keeps it: the newest pull or push wins.
    for (const { id: key, value } of await this.records.list()) {
      if (value.id === id) continue;
      if ((value.repoDigests ?? []).includes(repoDigest)) {
        await this.records.update(key, (c) =>
          c ? { ...c, repoDigests: (c.repoDigests ?? []).filter((d) => d !== repoDigest) } : c,
        );
      }
    }
    await this.records.update(id.replace(/^sha256:/, ''), (c) =>
      c ? { ...c, repoDigests: [...(c.repoDigests ?? []).filter((d) => !d.startsWith(repo + '@')), repoDigest] } : c,
    );
  }

  /** Records an image (config bytes already validated) and moves the given tags onto it. Caller holds the lock. */
  private async commit(
    configBytes: Buffer,
    chain: string[],
    diffIds: string[],
    size: number,
    tags: string[],
  ): Promise<string> {
    const hexId = createHash('sha256').update(configBytes).digest('hex');
    const id = 'sha256:' + hexId;
    await mkdir(join(this.root, 'configs'), { recursive: true, mode: 0o700 });
    if (!existsSync(this.configPath(id))) await writeFile(this.configPath(id), configBytes, { mode: 0o600 });
    const cfg = JSON.parse(configBytes.toString('utf8')) as ImageConfig;
    const now = new Date().toISOString();
    await this.untagElsewhere(tags, id);
    await this.records.update(hexId, (cur) => ({
      id,
      repoTags: [...new Set([...(cur?.repoTags ?? []), ...tags])],
      chain,
      diffIds,
      size,
      created: cfg.created ?? now,
      lastTagTime: tags.length ? now : (cur?.lastTagTime ?? '0001-01-01T00:00:00Z'),
      ...(cur?.repoDigests?.length ? { repoDigests: cur.repoDigests } : {}),
    }));
    return id;
  }

  private async untagElsewhere(tags: string[], keepId: string): Promise<void> {
    if (!tags.length) return;
    for (const { id, value } of await this.records.list()) {
      if (value.id === keepId) continue;
      if (!value.repoTags.some((t) => tags.includes(t))) continue;
      await this.records.update(id, (cur) =>
        cur ? { ...cur, repoTags: cur.repoTags.filter((t) => !tags.includes(t)) } : cur,
      );
    }
  }

  async tag(ref: string, repo: string, tag?: string): Promise<void> {
    const rec = await this.resolveRecord(ref);
    const rt = parseRepoTag(repo);
    if (tag) {
      parseRepoTag(`${rt.repo}:${tag}`);
      rt.tag = tag;
    }
    const name = formatRepoTag(rt);
    await this.serial(async () => {
      await this.untagElsewhere([name], rec.id);
      await this.records.update(rec.id.replace(/^sha256:/, ''), (cur) =>
        cur
          ? {
              ...cur,
              repoTags: cur.repoTags.includes(name) ? cur.repoTags : [...cur.repoTags, name],
              lastTagTime: new Date().toISOString(),
            }
          : cur,
      );
    });
    this.events?.publish('image', 'tag', rec.id, { name });
  }

  async remove(
    ref: string,
    opts: { force?: boolean; noprune?: boolean } = {},
  ): Promise<Array<{ Untagged?: string; Deleted?: string }>> {
    const rec = await this.resolveRecord(ref);
    return this.serial(async () => {
      const cur = (await this.records.get(rec.id.replace(/^sha256:/, '')))?.value;
      if (!cur) throw new NotFound(`No such image: ${ref}`);
      const bare = ref.replace(/^sha256:/, '');
      if (ref.includes('@')) return this.removeDigestRef(ref, cur, Boolean(opts.noprune));
      const byId =
        /^[0-9a-f]+$/.test(bare) &&
        cur.id.slice(7).startsWith(bare) &&
        !cur.repoTags.includes(formatRepoTag(safeParse(ref)));
      const users = await this.usage(cur.id);
      const out: Array<{ Untagged?: string; Deleted?: string }> = [];
      let untag: string[];
      if (byId) {
        if (cur.repoTags.length > 1 && !opts.force) {
          throw new Conflict(
            `conflict: unable to delete ${shortHex(cur.id)} (must be forced) - image is referenced in multiple repositories`,
          );
        }
        untag = cur.repoTags;
      } else {
        untag = [formatRepoTag(parseRepoTag(ref))];
      }
      const remainingTags = cur.repoTags.filter((t) => !untag.includes(t));
      const wouldDelete = remainingTags.length === 0;
      if (byId) for (const d of cur.repoDigests ?? []) out.push({ Untagged: d });
      if (wouldDelete && users.length) {
        const running = users.find((u) => u.running);
        if (running && opts.force && byId) {
          throw new Conflict(
            `conflict: unable to delete ${shortHex(cur.id)} (cannot be forced) - image is being used by running container ${shortHex(running.id)}`,
          );
        }
        if (!opts.force) {
          if (byId)
            throw new Conflict(
              `conflict: unable to delete ${shortHex(cur.id)} (must be forced) - image is being used by stopped container ${shortHex(users[0]!.id)}`,
            );
          throw new Conflict(
            `conflict: unable to remove repository reference "${ref}" (must force) - container ${shortHex(users[0]!.id)} is using its referenced image ${shortHex(cur.id)}`,
          );
        }
      }
      for (const t of untag) {
        out.push({ Untagged: t });
        this.events?.publish('image', 'untag', cur.id, { name: t });
      }
      if (wouldDelete && !users.length) {
        await this.records.delete(cur.id.replace(/^sha256:/, ''));
        await rm(this.configPath(cur.id), { force: true });
        out.push({ Deleted: cur.id });
        this.events?.publish('image', 'delete', cur.id, {});
        if (!opts.noprune) for (const d of await this.pruneLayers()) out.push({ Deleted: d });
      } else {
        await this.records.update(cur.id.replace(/^sha256:/, ''), (c) => (c ? { ...c, repoTags: remainingTags } : c));
      }
      return out;
    });
  }

  /** `rmi name@sha256:...`: drops that digest reference; the image goes when nothing names it any more. */
  private async removeDigestRef(
    ref: string,
    cur: ImageRecord,
    noprune: boolean,
  ): Promise<Array<{ Untagged?: string; Deleted?: string }>> {
    const n = parseNamed(ref);
    const rd = `${familiarRepo(n)}@${n.digest}`;
    const digests = (cur.repoDigests ?? []).filter((d) => d !== rd);
    const out: Array<{ Untagged?: string; Deleted?: string }> = [{ Untagged: rd }];
    if (!cur.repoTags.length && !digests.length && !(await this.usage(cur.id)).length) {
      await this.records.delete(cur.id.replace(/^sha256:/, ''));
      await rm(this.configPath(cur.id), { force: true });
      out.push({ Deleted: cur.id });
      this.events?.publish('image', 'delete', cur.id, {});
      if (!noprune) for (const d of await this.pruneLayers()) out.push({ Deleted: d });
    } else {
      await this.records.update(cur.id.replace(/^sha256:/, ''), (c) => (c ? { ...c, repoDigests: digests } : c));
    }
    return out;
  }

  /** Removes layers no image references any more (and their stored content); returns their chain IDs. */
  private async pruneLayers(): Promise<string[]> {
    const used = new Set<string>();
    const usedDiffs = new Set<string>();
    for (const { value } of await this.records.list()) {
      for (const c of value.chain) used.add(c);
      for (const d of value.diffIds) usedDiffs.add(d);
    }
    const removed: string[] = [];
    for (const chainId of (await this.layers.list()).reverse()) {
      if (used.has(chainId)) continue;
      const meta = await this.layers.meta(chainId);
      await this.layers.remove(chainId);
      if (meta && !usedDiffs.has(meta.diffId)) await this.blobs.forgetDiff(meta.diffId);
      removed.push(chainId);
    }
    return removed;
  }

  /** `docker image prune [-a]`: dangling images, or (all) every image no container uses. */
  async prune(
    opts: { all?: boolean; filters?: Filters } = {},
  ): Promise<{ ImagesDeleted: Array<{ Untagged?: string; Deleted?: string }> | null; SpaceReclaimed: number }> {
    const f = opts.filters ?? {};
    const danglingOnly = f.dangling?.length ? !(f.dangling[0] === 'false' || f.dangling[0] === '0') : !opts.all;
    const until = f.until?.[0] ? parseUntil(f.until[0]) : undefined;
    return this.serial(async () => {
      const deleted: Array<{ Untagged?: string; Deleted?: string }> = [];
      let reclaimed = 0;
      for (const { value: rec } of await this.records.list()) {
        if (danglingOnly && rec.repoTags.length) continue;
        if ((await this.usage(rec.id)).length) continue;
        if (until !== undefined && Date.parse(rec.created) / 1000 >= until) continue;
        if (f.label?.length) {
          const cfg = await this.imageConfig(rec.id).catch(() => undefined);
          if (!f.label.every((l) => labelMatches(cfg?.config?.Labels ?? {}, l))) continue;
        }
        for (const t of rec.repoTags) deleted.push({ Untagged: t });
        for (const d of rec.repoDigests ?? []) deleted.push({ Untagged: d });
        await this.records.delete(rec.id.replace(/^sha256:/, ''));
        await rm(this.configPath(rec.id), { force: true });
        deleted.push({ Deleted: rec.id });
        this.events?.publish('image', 'delete', rec.id, {});
      }
      if (deleted.length) {
        const before = new Map<string, number>();
        for (const c of await this.layers.list()) before.set(c, (await this.layers.meta(c))?.size ?? 0);
        for (const c of await this.pruneLayers()) {
          deleted.push({ Deleted: c });
          reclaimed += before.get(c) ?? 0;
        }
      }
      // Partial downloads of abandoned pulls and temporary files no write holds any more.
      reclaimed += await this.blobs.sweep({ partials: true });
      this.events?.publish('image', 'prune', '', { reclaimed: String(reclaimed) });
      return { ImagesDeleted: deleted.length ? deleted : null, SpaceReclaimed: reclaimed };
    });
  }

  /** `docker history`: the config's history, newest first, with the size of each layer-making step. */
  async history(
    ref: string,
  ): Promise<
    Array<{ Id: string; Created: number; CreatedBy: string; Tags: string[] | null; Size: number; Comment: string }>
  > {
    const rec = await this.resolveRecord(ref);
    const cfg = await this.imageConfig(rec.id);
    type H = { created?: string; created_by?: string; comment?: string; empty_layer?: boolean };
    const hist = (cfg.history ?? []) as H[];
    const sizes: number[] = [];
    for (const c of rec.chain) sizes.push((await this.layers.meta(c))?.size ?? 0);
    let layer = 0;
    const rows = hist.map((h) => {
      const size = h.empty_layer ? 0 : (sizes[layer++] ?? 0);
      return {
        Id: '<missing>',
        Created: Math.floor(Date.parse(h.created ?? '') / 1000) || 0,
        CreatedBy: h.created_by ?? '',
        Tags: null as string[] | null,
        Size: size,
        Comment: h.comment ?? '',
      };
    });
    if (!rows.length)
      rows.push({
        Id: '<missing>',
        Created: Math.floor(Date.parse(rec.created) / 1000) || 0,
        CreatedBy: '',
        Tags: null,
        Size: rec.size,
        Comment: '',
      });
    rows.reverse();
    rows[0]!.Id = rec.id;
    rows[0]!.Tags = rec.repoTags.length ? rec.repoTags : null;
    return rows;
  }

  /**
   * `docker save`: a docker-archive that is also an OCI layout, as Docker 25+
   * writes it: blobs/sha256/<config>, blobs/sha256/<diffID> (uncompressed
   * layer tars), manifest.json, index.json, oci-layout, repositories.
   */
  async save(refs: string[]): Promise<Readable> {
    const picked: Array<{ rec: ImageRecord; tags: string[] }> = [];
    for (const ref of refs) {
      const rec = await this.resolveRecord(ref);
      let tags: string[] = [];
      const bare = ref.replace(/^sha256:/, '');
      if (!(/^[0-9a-f]+$/.test(bare) && rec.id.slice(7).startsWith(bare)) && !ref.includes('@')) {
        const p = parseRepoTag(ref);
        tags =
          ref.includes(':') && ref.lastIndexOf(':') > ref.lastIndexOf('/')
            ? [formatRepoTag(p)]
            : rec.repoTags.filter((t) => t.startsWith(p.repo + ':'));
      }
      const seen = picked.find((x) => x.rec.id === rec.id);
      if (seen) seen.tags.push(...tags.filter((t) => !seen.tags.includes(t)));
      else picked.push({ rec, tags });
    }
    const dir = join(this.tmpDir(), 'save');
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    const manifest: Array<{ Config: string; RepoTags: string[] | null; Layers: string[] }> = [];
    const repositories: Record<string, Record<string, string>> = {};
    const index: { schemaVersion: number; mediaType: string; manifests: unknown[] } = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [],
    };
    const writeBlob = async (bytes: Buffer): Promise<{ digest: string; size: number }> => {
      const digest = 'sha256:' + createHash('sha256').update(bytes).digest('hex');
      await writeFile(join(dir, 'blobs', 'sha256', digest.slice(7)), bytes);
      return { digest, size: bytes.length };
    };
    try {
      for (const { rec, tags } of picked) {
        const cfgBytes = await this.configBytes(rec.id);
        await writeFile(join(dir, 'blobs', 'sha256', rec.id.slice(7)), cfgBytes);
        const layerDescs = [];
        for (const diffId of rec.diffIds) {
          const file = join(dir, 'blobs', 'sha256', diffId.slice(7));
          if (!existsSync(file))
            await pipeline(await this.blobs.openTar(diffId), (await import('node:fs')).createWriteStream(file));
          layerDescs.push({
            mediaType: 'application/vnd.oci.image.layer.v1.tar',
            digest: diffId,
            size: (await stat(file)).size,
          });
        }
        const m = await writeBlob(
          Buffer.from(
            JSON.stringify({
              schemaVersion: 2,
              mediaType: 'application/vnd.oci.image.manifest.v1+json',
              config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: rec.id, size: cfgBytes.length },
              layers: layerDescs,
            }),
          ),
        );
        const fullTags = tags.map((t) => {
          const n = parseNamed(t);
          return `${n.domain}/${n.path}:${n.tag}`;
        });
        if (fullTags.length) {
          for (let i = 0; i < tags.length; i++) {
            index.manifests.push({
              mediaType: 'application/vnd.oci.image.manifest.v1+json',
              ...m,
              annotations: {
                'io.containerd.image.name': fullTags[i],
                'org.opencontainers.image.ref.name': parseRepoTag(tags[i]!).tag,
              },
            });
          }
        } else {
          index.manifests.push({ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...m });
        }
        manifest.push({
          Config: `blobs/sha256/${rec.id.slice(7)}`,
          RepoTags: tags.length ? tags : null,
          Layers: rec.diffIds.map((d) => `blobs/sha256/${d.slice(7)}`),
        });
        for (const t of tags) {
          const { repo, tag } = parseRepoTag(t);
          (repositories[repo] ??= {})[tag] = rec.id.slice(7);
        }
      }
      await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest));
      await writeFile(join(dir, 'index.json'), JSON.stringify(index));
      await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
      if (Object.keys(repositories).length) await writeFile(join(dir, 'repositories'), JSON.stringify(repositories));
    } catch (e) {
      await rm(dirname(dir), { recursive: true, force: true });
      throw e;
    }
    const entries = await readdir(dir);
    const tar = await loadTar();
    const stream = tar.c({ cwd: dir, portable: true, noMtime: true }, entries) as unknown as Readable;
    const cleanup = (): void => {
      void rm(dirname(dir), { recursive: true, force: true });
    };
    stream.on('end', cleanup);
    stream.on('close', cleanup);
    stream.on('error', cleanup);
    return stream;
  }

  /**
   * At the daemon's start, when no pull, load or import can be running: drops
   * what a crash left half-made (temporary files, layer directories still being
   * filled) and stored blobs no layer names (a pull that died between a
   * layer's download and its extraction). Partial downloads stay, for the next
   * pull of that layer to resume; `image prune` removes them.
   */
  async cleanupTemp(): Promise<void> {
    await rm(join(this.root, 'tmp'), { recursive: true, force: true });
    try {
      for (const n of await readdir(this.layers.root))
        if (n.startsWith('.tmp-')) await rm(join(this.layers.root, n), { recursive: true, force: true });
    } catch {
      // no layers yet
    }
    const keep = await this.blobs.indexedBlobs();
    for (const c of await this.layers.list()) {
      const meta = await this.layers.meta(c);
      if (meta) keep.add(meta.diffId); // a tar kept before the index existed is named by its diff ID
    }
    const freed = await this.blobs.sweep({ keep });
    if (freed) this.log.info({ freedBytes: freed }, 'removed what interrupted pulls and loads left');
  }
}

/** `until` as docker takes it: a Unix time or an RFC 3339 date; a duration (10m) counts back from now. */
export function parseUntil(v: string): number {
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v);
  const d = /^(\d+)(s|m|h)$/.exec(v);
  if (d) return Date.now() / 1000 - Number(d[1]) * ({ s: 1, m: 60, h: 3600 } as Record<string, number>)[d[2]!]!;
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new InvalidParameter(`invalid filter 'until=${v}'`);
  return t / 1000;
}

function safeParse(ref: string): { repo: string; tag: string } {
  try {
    return parseRepoTag(ref);
  } catch {
    return { repo: '', tag: '' };
  }
}

function refMatches(pattern: string, repoTag: string): boolean {
  const p = pattern.includes(':') ? pattern : `${pattern}:*`;
  const re = new RegExp(
    '^' +
      p
        .split('*')
        .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
        .join('[^/]*') +
      '$',
  );
  return re.test(repoTag);
}

function labelMatches(labels: Record<string, string>, filter: string): boolean {
  const eq = filter.indexOf('=');
  if (eq < 0) return filter in labels;
  return labels[filter.slice(0, eq)] === filter.slice(eq + 1);
}

/**
 * A regular file inside an extracted archive, refusing paths (or symlinks,
 * which docker save uses for repeated layers) that lead out of it.
 */
async function inside(dir: string, rel: string): Promise<string> {
  const p = join(dir, rel);
  if (!p.startsWith(dir + '/')) throw new InvalidParameter(`invalid archive: path ${rel} leaves the archive`);
  let real: string;
  try {
    real = await realpath(p);
  } catch {
    throw new InvalidParameter(`invalid archive: ${rel} is missing`);
  }
  const realDir = await realpath(dir);
  if (!real.startsWith(realDir + '/')) throw new InvalidParameter(`invalid archive: path ${rel} leaves the archive`);
  if (!(await stat(real)).isFile()) throw new InvalidParameter(`invalid archive: ${rel} is not a regular file`);
  return real;
}

async function readDockerArchive(
  dir: string,
): Promise<Array<{ configBytes: Buffer; layerFiles: string[]; tags: string[] }>> {
  let manifest: Array<{ Config: string; RepoTags?: string[] | null; Layers: string[] }>;
  try {
    manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
  } catch (e) {
    throw new InvalidParameter(`invalid archive: manifest.json: ${(e as Error).message}`);
  }
  if (!Array.isArray(manifest)) throw new InvalidParameter('invalid archive: manifest.json is not a list');
  const out = [];
  for (const m of manifest) {
    if (typeof m.Config !== 'string' || !Array.isArray(m.Layers))
      throw new InvalidParameter('invalid archive: manifest entry lacks Config or Layers');
    const configBytes = await readFile(await inside(dir, m.Config));
    const layerFiles: string[] = [];
    for (const l of m.Layers) layerFiles.push(await inside(dir, l));
    out.push({ configBytes, layerFiles, tags: m.RepoTags ?? [] });
  }
  return out;
}

interface OciDescriptor {
  mediaType?: string;
  digest: string;
  size?: number;
  annotations?: Record<string, string>;
  platform?: { architecture?: string; os?: string };
}

async function readOciLayout(
  dir: string,
): Promise<Array<{ configBytes: Buffer; layerFiles: string[]; tags: string[] }>> {
  const blob = (digest: string): Promise<string> => {
    const [alg, h] = (digest ?? '').split(':');
    if (!alg || !h || !/^[a-z0-9]+$/.test(alg) || !/^[0-9a-f]+$/.test(h))
      throw new InvalidParameter(`invalid digest ${digest}`);
    return inside(dir, `blobs/${alg}/${h}`);
  };
  const readJson = async <T>(digest: string): Promise<T> => JSON.parse(await readFile(await blob(digest), 'utf8')) as T;
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests?: OciDescriptor[] };
  const out = [];
  for (const desc of index.manifests ?? []) {
    let manifestDesc = desc;
    const isIndex = (d: OciDescriptor): boolean => /image\.index|manifest\.list/.test(d.mediaType ?? '');
    if (isIndex(desc)) {
      const sub = await readJson<{ manifests?: OciDescriptor[] }>(desc.digest);
      const pick = (sub.manifests ?? []).find(
        (m) => (m.platform?.os ?? 'linux') === 'linux' && (m.platform?.architecture ?? 'amd64') === 'amd64',
      );
      if (!pick) continue;
      manifestDesc = { ...pick, annotations: { ...(pick.annotations ?? {}), ...(desc.annotations ?? {}) } };
    }
    const manifest = await readJson<{ config: OciDescriptor; layers: OciDescriptor[] }>(manifestDesc.digest);
    const configBytes = await readFile(await blob(manifest.config.digest));
    const layerFiles: string[] = [];
    for (const l of manifest.layers ?? []) layerFiles.push(await blob(l.digest));
    const a = { ...(desc.annotations ?? {}), ...(manifestDesc.annotations ?? {}) };
    const tags: string[] = [];
    const full = a['io.containerd.image.name'];
    const refName = a['org.opencontainers.image.ref.name'];
    if (full) tags.push(full);
    else if (refName && /[/:]/.test(refName)) tags.push(refName);
    out.push({ configBytes, layerFiles, tags });
  }
  if (!out.length) throw new InvalidParameter('invalid archive: index.json lists no image for linux/amd64');
  return out;
}
