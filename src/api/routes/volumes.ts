/** /volumes: create, list, inspect, remove, prune (local driver). */
import type { Route } from '../route.js';
import { boolQuery, filtersQuery, jsonBody, param, type Ctx } from '../request.js';
import { volumeCreateShape } from '../shapes.js';
import type { VolumeCreate } from '../../runtime/volumes/store.js';

async function list(ctx: Ctx): Promise<void> {
  ctx.reply.json(200, await ctx.engine.volumes.list(filtersQuery(ctx.query)));
}

async function create(ctx: Ctx): Promise<void> {
  const body = await jsonBody<VolumeCreate>(ctx, volumeCreateShape, { optional: true });
  ctx.reply.json(201, await ctx.engine.volumes.create(body ?? {}));
}

async function inspect(ctx: Ctx): Promise<void> {
  ctx.reply.json(200, await ctx.engine.volumes.inspect(param(ctx, 'name')));
}

async function remove(ctx: Ctx): Promise<void> {
  await ctx.engine.volumes.remove(param(ctx, 'name'), { force: boolQuery(ctx.query, 'force') });
  ctx.reply.empty(204);
}

async function prune(ctx: Ctx): Promise<void> {
  ctx.reply.json(200, await ctx.engine.volumes.prune(filtersQuery(ctx.query)));
}

export const volumeRoutes: Route[] = [
  { method: 'GET', path: '/volumes', handler: list },
  { method: 'POST', path: '/volumes/create', handler: create },
  { method: 'POST', path: '/volumes/prune', handler: prune },
  { method: 'GET', path: '/volumes/:name', handler: inspect },
  { method: 'DELETE', path: '/volumes/:name', handler: remove },
];
