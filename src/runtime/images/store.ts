/**
 * ImageStore: local images only (no registry). An image is its config JSON
 * (ID = sha256 of those bytes, as Docker computes it) kept under
 * `<dataRoot>/images/configs/`, a chain of layers in the LayerStore, and a
 * record in the Store (repo tags, size, layer chain).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, realpath, rm, writeFile, stat } from 'node:fs/promises';
import { createReadStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';
import { Collection, type Store } from '../../store/store.js';
import { Conflict, InvalidParameter, NotFound } from '../../common/errors.js';
import { silentLogger, type Logger } from '../../common/log.js';
import type { DaemonConfig } from '../../daemon/config.js';
import type { EventBus } from '../../daemon/events.js';
import type { Filters } from '../../network/types.js';
import type { DockerImageSummary, ImageService } from '../types.js';
import { applyChanges, type ImageRunConfig } from './changes.js';
import { LayerStore, spoolTar, chainIdOf } from './layers.js';
import { formatRepoTag, parseRepoTag } from './reference.js';

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
  private readonly log: Logger;
  private readonly events: EventBus | undefined;
  private usage: ContainerUsage = async () => [];
  private lock: Promise<unknown> = Promise.resolve();

  constructor(opts: ImageStoreOptions) {
    this.root = join(opts.config.dataRoot, 'images');
    this.records = new Collection<ImageRecord>(opts.store, 'runtime/images');
    this.layers = new LayerStore(join(this.root, 'layers'));
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

  private async resolveRecord(ref: string): Promise<ImageRecord> {
    const all = await this.records.list();
    const r = ref.trim();
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
    if (/^[0-9a-f]{1,63}$/.test(bare) && (bare.length >= 1)) {
      const hits = all.filter((x) => x.value.id.slice('sha256:'.length).startsWith(bare));
      if (hits.length === 1) return hits[0]!.value;
    }
    throw new NotFound(`No such image: ${ref}`);
  }

  /** The parsed config JSON of an image. */
  async imageConfig(ref: string): Promise<ImageConfig & { id: string }> {
    const rec = await this.resolveRecord(ref);
    const cfg = JSON.parse(await readFile(this.configPath(rec.id), 'utf8')) as ImageConfig;
    return { ...cfg, id: rec.id };
  }

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
        RepoDigests: [],
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
      RepoDigests: [],
      Parent: '',
      Comment: cfg.comment ?? '',
      Created: cfg.created ?? rec.created,
      DockerVersion: cfg.docker_version ?? '',
      Author: cfg.author ?? '',
      Config: {
        Hostname: '', Domainname: '', User: c.User ?? '',
        AttachStdin: false, AttachStdout: false, AttachStderr: false,
        ExposedPorts: c.ExposedPorts ?? undefined,
        Tty: false, OpenStdin: false, StdinOnce: false,
        Env: c.Env ?? null, Cmd: c.Cmd ?? null, Image: '',
        Volumes: c.Volumes ?? null, WorkingDir: c.WorkingDir ?? '', Entrypoint: c.Entrypoint ?? null,
        OnBuild: c.OnBuild ?? null, Labels: c.Labels ?? null,
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
        const id = await this.commit(bytes, [meta.chainId], [diffId], meta.size, target ? [target] : []);
        this.events?.publish('image', 'import', id, target ? { name: target } : {});
        return id;
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
      await pipeline(input, tar.x({ cwd: dir, preserveOwner: false, strict: true }));
      let images: Array<{ configBytes: Buffer; layerFiles: string[]; tags: string[] }>;
      if (existsSync(join(dir, 'manifest.json'))) images = await readDockerArchive(dir);
      else if (existsSync(join(dir, 'index.json'))) images = await readOciLayout(dir);
      else throw new InvalidParameter('invalid archive: neither manifest.json (docker-archive) nor index.json (OCI layout) found');
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
          throw new InvalidParameter(`invalid manifest, layers length mismatch: expected ${diffIds.length}, got ${img.layerFiles.length}`);
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
              if (got !== want) throw new InvalidParameter(`layer ${i} has diff ID ${got}, but the image config says ${want}`);
              onProgress?.(`Loading layer ${shortHex(want)}`);
              meta = await this.layers.add(spooled, want, parent);
              await rm(spooled, { force: true });
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

  /** Records an image (config bytes already validated) and moves the given tags onto it. Caller holds the lock. */
  private async commit(configBytes: Buffer, chain: string[], diffIds: string[], size: number, tags: string[]): Promise<string> {
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
      lastTagTime: tags.length ? now : cur?.lastTagTime ?? '0001-01-01T00:00:00Z',
    }));
    return id;
  }

  private async untagElsewhere(tags: string[], keepId: string): Promise<void> {
    if (!tags.length) return;
    for (const { id, value } of await this.records.list()) {
      if (value.id === keepId) continue;
      if (!value.repoTags.some((t) => tags.includes(t))) continue;
      await this.records.update(id, (cur) => (cur ? { ...cur, repoTags: cur.repoTags.filter((t) => !tags.includes(t)) } : cur));
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
        cur ? { ...cur, repoTags: cur.repoTags.includes(name) ? cur.repoTags : [...cur.repoTags, name], lastTagTime: new Date().toISOString() } : cur,
      );
    });
    this.events?.publish('image', 'tag', rec.id, { name });
  }

  async remove(ref: string, opts: { force?: boolean; noprune?: boolean } = {}): Promise<Array<{ Untagged?: string; Deleted?: string }>> {
    const rec = await this.resolveRecord(ref);
    return this.serial(async () => {
      const cur = (await this.records.get(rec.id.replace(/^sha256:/, '')))?.value;
      if (!cur) throw new NotFound(`No such image: ${ref}`);
      const bare = ref.replace(/^sha256:/, '');
      const byId = /^[0-9a-f]+$/.test(bare) && cur.id.slice(7).startsWith(bare) && !cur.repoTags.includes(formatRepoTag(safeParse(ref)));
      const users = await this.usage(cur.id);
      const out: Array<{ Untagged?: string; Deleted?: string }> = [];
      let untag: string[];
      if (byId) {
        if (cur.repoTags.length > 1 && !opts.force) {
          throw new Conflict(`conflict: unable to delete ${shortHex(cur.id)} (must be forced) - image is referenced in multiple repositories`);
        }
        untag = cur.repoTags;
      } else {
        untag = [formatRepoTag(parseRepoTag(ref))];
      }
      const remainingTags = cur.repoTags.filter((t) => !untag.includes(t));
      const wouldDelete = remainingTags.length === 0;
      if (wouldDelete && users.length) {
        const running = users.find((u) => u.running);
        if (running && opts.force && byId) {
          throw new Conflict(`conflict: unable to delete ${shortHex(cur.id)} (cannot be forced) - image is being used by running container ${shortHex(running.id)}`);
        }
        if (!opts.force) {
          if (byId) throw new Conflict(`conflict: unable to delete ${shortHex(cur.id)} (must be forced) - image is being used by stopped container ${shortHex(users[0]!.id)}`);
          throw new Conflict(`conflict: unable to remove repository reference "${ref}" (must force) - container ${shortHex(users[0]!.id)} is using its referenced image ${shortHex(cur.id)}`);
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

  /** Removes layers no image references any more; returns their chain IDs. */
  private async pruneLayers(): Promise<string[]> {
    const used = new Set<string>();
    for (const { value } of await this.records.list()) for (const c of value.chain) used.add(c);
    const removed: string[] = [];
    for (const chainId of (await this.layers.list()).reverse()) {
      if (used.has(chainId)) continue;
      await this.layers.remove(chainId);
      removed.push(chainId);
    }
    return removed;
  }

  /** Leftovers of interrupted loads/imports (daemon start). */
  async cleanupTemp(): Promise<void> {
    await rm(join(this.root, 'tmp'), { recursive: true, force: true });
    try {
      for (const n of await readdir(this.layers.root)) if (n.startsWith('.tmp-')) await rm(join(this.layers.root, n), { recursive: true, force: true });
    } catch {
      // no layers yet
    }
  }
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
  const re = new RegExp('^' + p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*') + '$');
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

async function readDockerArchive(dir: string): Promise<Array<{ configBytes: Buffer; layerFiles: string[]; tags: string[] }>> {
  let manifest: Array<{ Config: string; RepoTags?: string[] | null; Layers: string[] }>;
  try {
    manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
  } catch (e) {
    throw new InvalidParameter(`invalid archive: manifest.json: ${(e as Error).message}`);
  }
  if (!Array.isArray(manifest)) throw new InvalidParameter('invalid archive: manifest.json is not a list');
  const out = [];
  for (const m of manifest) {
    if (typeof m.Config !== 'string' || !Array.isArray(m.Layers)) throw new InvalidParameter('invalid archive: manifest entry lacks Config or Layers');
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

async function readOciLayout(dir: string): Promise<Array<{ configBytes: Buffer; layerFiles: string[]; tags: string[] }>> {
  const blob = (digest: string): Promise<string> => {
    const [alg, h] = (digest ?? '').split(':');
    if (!alg || !h || !/^[a-z0-9]+$/.test(alg) || !/^[0-9a-f]+$/.test(h)) throw new InvalidParameter(`invalid digest ${digest}`);
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
      const pick = (sub.manifests ?? []).find((m) => (m.platform?.os ?? 'linux') === 'linux' && (m.platform?.architecture ?? 'amd64') === 'amd64');
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
