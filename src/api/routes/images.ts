/**
 * /images: list, inspect, tag, remove, import (create?fromSrc=-), load.
 * Pulling (create?fromImage=) is refused with a clear message: Cove's
 * daemons reach no registry. The refusal is a 404 worded like Docker's
 * "pull access denied" so `docker run` of a missing image ends with it.
 */
import type { Route } from '../server.js';
import { boolQuery, filtersQuery, param, type Ctx } from '../request.js';
import { CoveError, InvalidParameter, NotFound } from '../../common/errors.js';

/** `name/with/slashes:tag/json` → name and the action after it. */
function splitImagePath(rest: string, actions: string[]): { name: string; action: string } {
  for (const a of actions) {
    if (rest.endsWith('/' + a)) return { name: rest.slice(0, -a.length - 1), action: a };
  }
  return { name: rest, action: '' };
}

/** Container-only keys an image's Config carried before API 1.50 (always empty); 1.50 dropped them. */
const CONTAINER_ONLY_CONFIG_KEYS = ['Hostname', 'Domainname', 'AttachStdin', 'AttachStdout', 'AttachStderr', 'Tty', 'OpenStdin', 'StdinOnce', 'Image', 'NetworkDisabled', 'MacAddress', 'StopTimeout'];

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
  for (const k of Object.keys(filters)) if (!IMAGE_LIST_FILTERS.includes(k)) throw new InvalidParameter(`invalid filter '${k}'`);
  const images = await ctx.engine.images.list({ all: boolQuery(ctx.query, 'all'), filters });
  // VirtualSize left the summary in API 1.44.
  const current = apiAtLeast(ctx.apiVersion, '1.44');
  ctx.reply.json(200, current ? images.map((i) => { const { VirtualSize: _v, ...rest } = i as unknown as Record<string, unknown>; return rest; }) : images);
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

function pullRefusal(ref: string): CoveError {
  const repo = ref.replace(/^(docker\.io\/)?(library\/)?/, '').replace(/[:@].*$/, '');
  return new NotFound(`pull access denied for ${repo}, repository does not exist or may require 'docker login': `
    + `this Cove daemon reaches no registry; add the image with 'cove image import' or 'cove load'`);
}

async function create(ctx: Ctx): Promise<void> {
  const q = ctx.query;
  const fromSrc = q.get('fromSrc');
  const fromImage = q.get('fromImage');
  if (fromSrc !== null) {
    if (fromSrc !== '-') throw new InvalidParameter(`importing from a URL is not supported (fromSrc=${fromSrc}); send the tar as the body with fromSrc=-`);
    let repo = q.get('repo') ?? '';
    let tag = q.get('tag') ?? '';
    // docker import FILE repo:tag sends repo=name:tag with an empty tag.
    if (!tag) {
      const m = /^(.*[^/]):([\w][\w.-]{0,127})$/.exec(repo);
      if (m) { repo = m[1]!; tag = m[2]!; }
    }
    const opts: { repo?: string; tag?: string; changes?: string[]; message?: string; onProgress?: (msg: string) => void } = {
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
    const ref = tag && !fromImage.includes('@') ? `${fromImage}:${tag}` : fromImage;
    // Drain the (empty) body so keep-alive connections stay usable.
    ctx.body.resume();
    // The docker CLI pulls after ANY 404 from container create (an unknown
    // network too) and then retries the create. An image we already hold is
    // "up to date", so that retry shows the real error.
    const local = ref.replace(/^docker\.io\/(library\/)?/, '');
    const held = await ctx.engine.images.resolve(local).then(() => true, () => false);
    if (!held) throw pullRefusal(ref);
    const out = ctx.reply.stream(200, 'application/json');
    out.end(JSON.stringify({ status: `Status: Image is up to date for ${local}` }) + '\n');
    return;
  }
  throw new InvalidParameter('either fromSrc or fromImage must be given');
}

async function load(ctx: Ctx): Promise<void> {
  await progressStream(ctx, async (emit) => {
    const loaded = await ctx.engine.images.load(ctx.body, (msg) => emit({ stream: msg.endsWith('\n') ? msg : msg + '\n' }));
    return loaded.map((ref) => ({ stream: ref.startsWith('sha256:') ? `Loaded image ID: ${ref}\n` : `Loaded image: ${ref}\n` }));
  });
}

async function byName(ctx: Ctx): Promise<void> {
  const rest = param(ctx, '*');
  const method = ctx.req.method;
  if (method === 'DELETE') {
    const deleted = await ctx.engine.images.remove(rest, { force: boolQuery(ctx.query, 'force'), noprune: boolQuery(ctx.query, 'noprune') });
    ctx.reply.json(200, deleted);
    return;
  }
  const { name, action } = splitImagePath(rest, method === 'GET' ? ['json'] : ['tag']);
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

export const imageRoutes: Route[] = [
  { method: 'GET', path: '/images/json', handler: list },
  { method: 'POST', path: '/images/create', handler: create },
  { method: 'POST', path: '/images/load', handler: load },
  { method: 'GET', path: '/images/*', handler: byName },
  { method: 'POST', path: '/images/*', handler: byName },
  { method: 'DELETE', path: '/images/*', handler: byName },
];
