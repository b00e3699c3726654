/**
 * /images: list, inspect, tag, remove, import (create?fromSrc=-), load, pull
 * (create?fromImage=), push, save (get), search, prune, history. Pull and push
 * answer with Docker's JSON progress stream; an error before the first line is
 * a proper HTTP status (so `docker pull` shows "Error response from daemon"),
 * after it an in-band errorDetail line, as dockerd does.
 */
import type { Route } from '../route.js';
import { boolQuery, filtersQuery, param, type Ctx } from '../request.js';
import { InvalidParameter, NotFound, Unavailable } from '../../common/errors.js';
import { decodeAuthHeader, type DistributionService } from '../../runtime/distribution/index.js';

/** `name/with/slashes:tag/json` → name and the action after it. */
function splitImagePath(rest: string, actions: string[]): { name: string; action: string } {
  for (const a of actions) {
    if (rest.endsWith('/' + a)) return { name: rest.slice(0, -a.length - 1), action: a };
  }
  return { name: rest, action: '' };
}

/** Container-only keys an image's Config carried before API 1.50 (always empty); 1.50 dropped them. */
const CONTAINER_ONLY_CONFIG_KEYS = [
  'Hostname',
  'Domainname',
  'AttachStdin',
  'AttachStdout',
  'AttachStderr',
  'Tty',
  'OpenStdin',
  'StdinOnce',
  'Image',
  'NetworkDisabled',
  'MacAddress',
  'StopTimeout',
];

function apiAtLeast(v: string, min: string): boolean {
  const [a1, a2] = v.split('.').map(Number);
  const [b1, b2] = min.split('.').map(Number);
  return a1! > b1! || (a1 === b1 && a2! >= b2!);
}

/** GET /images/{name}/json as the client's API version has it. */
export function imageInspectFor(apiVersion: string, img: Record<string, unknown>): Record<string, unknown> {
  const config = img.Config as Record<string, unknown> | undefined;
  if (!config || !apiAtLeast(apiVersion, '1.50')) return img;
  const trimmed = { ...config };
  for (const k of CONTAINER_ONLY_CONFIG_KEYS) delete trimmed[k];
  return { ...img, Config: trimmed };
}

/** Keys `GET /images/json` accepts in filters (moby daemon/images/images.go). */
const IMAGE_LIST_FILTERS = ['dangling', 'label', 'label!', 'before', 'since', 'reference', 'until'];

async function list(ctx: Ctx): Promise<void> {
  const filters = filtersQuery(ctx.query);
  for (const k of Object.keys(filters))
    if (!IMAGE_LIST_FILTERS.includes(k)) throw new InvalidParameter(`invalid filter '${k}'`);
  const images = await ctx.engine.images.list({ all: boolQuery(ctx.query, 'all'), filters });
  // VirtualSize left the summary in API 1.44.
  const current = apiAtLeast(ctx.apiVersion, '1.44');
  ctx.reply.json(
    200,
    current
      ? images.map((i) => {
          const { VirtualSize: _v, ...rest } = i as unknown as Record<string, unknown>;
          return rest;
        })
      : images,
  );
}

/** Runs a long image job, answering with Docker's JSON progress stream. */
async function progressStream(ctx: Ctx, job: (progress: (line: object) => void) => Promise<object[]>): Promise<void> {
  let out: NodeJS.WritableStream | undefined;
  const emit = (line: object) => {
    out ??= ctx.reply.stream(200, 'application/json');
    out.write(JSON.stringify(line) + '\n');
  };
  try {
    const finalLines = await job(emit);
    for (const l of finalLines) emit(l);
    if (!out) out = ctx.reply.stream(200, 'application/json');
    out.end();
  } catch (e) {
    // Before the first byte, a proper status; after, Docker's in-band error.
    if (!out) throw e;
    const message = (e as Error).message;
    out.end(JSON.stringify({ errorDetail: { message }, error: message }) + '\n');
  }
}

function distributionOf(ctx: Ctx): DistributionService {
  if (!ctx.engine.distribution) throw new Unavailable('this engine has no registry client');
  return ctx.engine.distribution;
}

function registryAuth(ctx: Ctx) {
  const h = ctx.req.headers['x-registry-auth'];
  return decodeAuthHeader(Array.isArray(h) ? h[0] : h);
}

async function create(ctx: Ctx): Promise<void> {
  const q = ctx.query;
  const fromSrc = q.get('fromSrc');
  const fromImage = q.get('fromImage');
  if (fromSrc !== null) {
    if (fromSrc !== '-')
      throw new InvalidParameter(
        `importing from a URL is not supported (fromSrc=${fromSrc}); send the tar as the body with fromSrc=-`,
      );
    let repo = q.get('repo') ?? '';
    let tag = q.get('tag') ?? '';
    // docker import FILE repo:tag sends repo=name:tag with an empty tag.
    if (!tag) {
      const m = /^(.*[^/]):([\w][\w.-]{0,127})$/.exec(repo);
      if (m) {
        repo = m[1]!;
        tag = m[2]!;
      }
    }
    const opts: {
      repo?: string;
      tag?: string;
      changes?: string[];
      message?: string;
      onProgress?: (msg: string) => void;
    } = {
      changes: q.getAll('changes').filter((c) => c !== ''),
    };
    if (repo) opts.repo = repo;
    if (tag) opts.tag = tag;
    if (q.get('message')) opts.message = q.get('message')!;
    await progressStream(ctx, async (emit) => {
      opts.onProgress = (msg) => emit({ status: msg });
      const id = await ctx.engine.images.importTar(ctx.body, opts);
      return [{ status: id }];
    });
    return;
  }
  if (fromImage) {
    const tag = q.get('tag');
    // docker pull name@sha256:... sends the digest as the tag.
    const ref = tag && !fromImage.includes('@') ? `${fromImage}${/^sha256:/.test(tag) ? '@' : ':'}${tag}` : fromImage;
    // Drain the (empty) body so keep-alive connections stay usable.
    ctx.body.resume();
    const platform = q.get('platform');
    if (platform && !/^linux\/amd64(\/.*)?$|^linux$/.test(platform)) {
      throw new NotFound(`no matching manifest for ${platform} in the manifest list entries`);
    }
    const dist = distributionOf(ctx);
    const auth = registryAuth(ctx);
    await progressStream(ctx, async (emit) => {
      await dist.pull(ref, { ...(auth ? { auth } : {}), progress: emit });
      return [];
    });
    return;
  }
  throw new InvalidParameter('either fromSrc or fromImage must be given');
}

async function load(ctx: Ctx): Promise<void> {
  await progressStream(ctx, async (emit) => {
    const loaded = await ctx.engine.images.load(ctx.body, (msg) =>
      emit({ stream: msg.endsWith('\n') ? msg : msg + '\n' }),
    );
    return loaded.map((ref) => ({
      stream: ref.startsWith('sha256:') ? `Loaded image ID: ${ref}\n` : `Loaded image: ${ref}\n`,
    }));
  });
}

async function byName(ctx: Ctx): Promise<void> {
  const rest = param(ctx, '*');
  const method = ctx.req.method;
  if (method === 'DELETE') {
    const deleted = await ctx.engine.images.remove(rest, {
      force: boolQuery(ctx.query, 'force'),
      noprune: boolQuery(ctx.query, 'noprune'),
    });
    ctx.reply.json(200, deleted);
    return;
  }
  const { name, action } = splitImagePath(rest, method === 'GET' ? ['json', 'history', 'get'] : ['tag', 'push']);
  if (method === 'GET' && action === 'history') {
    ctx.reply.json(200, await ctx.engine.images.history(name));
    return;
  }
  if (method === 'GET' && action === 'get') {
    await sendSave(ctx, [name]);
    return;
  }
  if (method === 'POST' && action === 'push') {
    ctx.body.resume();
    const dist = distributionOf(ctx);
    const auth = registryAuth(ctx);
    const tag = ctx.query.get('tag') || undefined;
    await progressStream(ctx, async (emit) => {
      await dist.push(name, tag, { ...(auth ? { auth } : {}), progress: emit });
      return [];
    });
    return;
  }
  if (method === 'GET' && action === 'json') {
    ctx.reply.json(200, imageInspectFor(ctx.apiVersion, await ctx.engine.images.inspect(name)));
    return;
  }
  if (method === 'POST' && action === 'tag') {
    const repo = ctx.query.get('repo');
    if (!repo) throw new InvalidParameter('repository name must have at least one component');
    await ctx.engine.images.tag(name, repo, ctx.query.get('tag') || undefined);
    ctx.reply.empty(201);
    return;
  }
  throw new NotFound('page not found');
}

async function sendSave(ctx: Ctx, names: string[]): Promise<void> {
  if (!names.length) throw new InvalidParameter('no image names given');
  const stream = await ctx.engine.images.save(names);
  const out = ctx.reply.stream(200, 'application/x-tar');
  stream.on('error', (e) => (out as unknown as { destroy(e: Error): void }).destroy(e));
  stream.pipe(out);
}

async function saveMany(ctx: Ctx): Promise<void> {
  await sendSave(
    ctx,
    ctx.query
      .getAll('names')
      .flatMap((n) => n.split(','))
      .filter(Boolean),
  );
}

async function search(ctx: Ctx): Promise<void> {
  const term = ctx.query.get('term');
  if (!term) throw new InvalidParameter('term is required');
  const limit = Number(ctx.query.get('limit') || 25);
  const filters = filtersQuery(ctx.query);
  let hits = await distributionOf(ctx).search(term, {
    limit: Number.isFinite(limit) && limit > 0 ? limit : 25,
    ...(registryAuth(ctx) ? { auth: registryAuth(ctx)! } : {}),
  });
  if (filters['is-official']?.length) hits = hits.filter((h) => String(h.is_official) === filters['is-official']![0]);
  if (filters['stars']?.length) hits = hits.filter((h) => h.star_count >= Number(filters['stars']![0]));
  ctx.reply.json(200, hits);
}

async function prune(ctx: Ctx): Promise<void> {
  const filters = filtersQuery(ctx.query);
  for (const k of Object.keys(filters))
    if (!['dangling', 'label', 'label!', 'until'].includes(k)) throw new InvalidParameter(`invalid filter '${k}'`);
  ctx.reply.json(200, await ctx.engine.images.prune({ filters }));
}

export const imageRoutes: Route[] = [
  { method: 'GET', path: '/images/search', handler: search },
  { method: 'GET', path: '/images/get', handler: saveMany },
  { method: 'POST', path: '/images/prune', handler: prune },
  { method: 'GET', path: '/images/json', handler: list },
  { method: 'POST', path: '/images/create', handler: create },
  { method: 'POST', path: '/images/load', handler: load },
  { method: 'GET', path: '/images/*', handler: byName },
  { method: 'POST', path: '/images/*', handler: byName },
  { method: 'DELETE', path: '/images/*', handler: byName },
];
