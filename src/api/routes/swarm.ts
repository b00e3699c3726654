/**
 * Swarm-mode endpoints: /swarm..., /nodes... served by the SwarmController
 * (src/swarm). Services, tasks, secrets and configs answer as a Docker engine
 * that is not a manager until their own handlers exist.
 */
import type { Route, Method } from '../route.js';
import { boolQuery, filtersQuery, jsonBody, param, type Ctx } from '../request.js';
import { InvalidParameter, Unavailable } from '../../common/errors.js';
import type { SwarmController } from '../../swarm/controller.js';

export const NOT_A_MANAGER =
  'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.';
export const NO_SWARM = 'This node is not part of a swarm';

/**
 * The swarm controller; an engine without one (API tests with fakes) answers
 * as a Docker engine outside a swarm.
 */
function swarmOf(ctx: Ctx, outside = NOT_A_MANAGER): SwarmController {
  const s = ctx.engine.swarm;
  if (!s) throw new Unavailable(outside);
  return s;
}

/** Managers answer; everyone else gets the 503 Docker gives. */
const managerOnlyStub = async (ctx: Ctx): Promise<void> => {
  swarmOf(ctx).requireManager();
  throw new Unavailable('this endpoint is not implemented by this Cove daemon yet');
};

const stubs: Array<[Method, string]> = [
  ['GET', '/secrets'],
  ['POST', '/secrets/create'],
  ['GET', '/secrets/:id'],
  ['DELETE', '/secrets/:id'],
  ['POST', '/secrets/:id/update'],
  ['GET', '/configs'],
  ['POST', '/configs/create'],
  ['GET', '/configs/:id'],
  ['DELETE', '/configs/:id'],
  ['POST', '/configs/:id/update'],
  ['POST', '/swarm/unlock'],
];

function versionOf(ctx: Ctx): number | undefined {
  const v = ctx.query.get('version');
  if (v === null) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidParameter(`invalid version: ${v}`);
  return n;
}

async function init(ctx: Ctx): Promise<void> {
  const body = await jsonBody<Parameters<SwarmController['init']>[0]>(ctx, undefined, { optional: true });
  const id = await swarmOf(ctx, 'swarm mode is not available in this Cove daemon').init(body ?? {});
  ctx.reply.json(200, id);
}

async function join(ctx: Ctx): Promise<void> {
  const body = await jsonBody<Parameters<SwarmController['join']>[0]>(ctx, undefined, { optional: true });
  await swarmOf(ctx, 'swarm mode is not available in this Cove daemon').join(body ?? {});
  ctx.reply.empty(200);
}

async function leave(ctx: Ctx): Promise<void> {
  await swarmOf(ctx, NO_SWARM).leave(boolQuery(ctx.query, 'force'));
  ctx.reply.empty(200);
}

async function inspect(ctx: Ctx): Promise<void> {
  ctx.reply.json(200, await swarmOf(ctx).inspect());
}

async function update(ctx: Ctx): Promise<void> {
  const spec = await jsonBody<Record<string, unknown>>(ctx, undefined, { optional: true });
  await swarmOf(ctx).update(versionOf(ctx), spec ?? {}, {
    worker: boolQuery(ctx.query, 'rotateWorkerToken'),
    manager: boolQuery(ctx.query, 'rotateManagerToken'),
  });
  ctx.reply.empty(200);
}

async function unlockKey(ctx: Ctx): Promise<void> {
  ctx.reply.json(200, swarmOf(ctx).unlockKey());
}

async function nodeList(ctx: Ctx): Promise<void> {
  ctx.reply.json(200, await swarmOf(ctx).listNodes(filtersQuery(ctx.query) as Record<string, string[]>));
}

async function nodeInspect(ctx: Ctx): Promise<void> {
  ctx.reply.json(200, await swarmOf(ctx).inspectNode(param(ctx, 'id')));
}

async function nodeUpdate(ctx: Ctx): Promise<void> {
  const spec = await jsonBody<Record<string, unknown>>(ctx, undefined, { optional: true });
  await swarmOf(ctx).updateNode(param(ctx, 'id'), versionOf(ctx), (spec ?? {}) as never);
  ctx.reply.empty(200);
}

async function nodeRemove(ctx: Ctx): Promise<void> {
  await swarmOf(ctx).removeNode(param(ctx, 'id'), boolQuery(ctx.query, 'force'));
  ctx.reply.empty(200);
}

export const swarmRoutes: Route[] = [
  ...stubs.map(([method, path]) => ({ method, path, handler: managerOnlyStub })),
  { method: 'POST', path: '/swarm/init', handler: init },
  { method: 'POST', path: '/swarm/join', handler: join },
  { method: 'POST', path: '/swarm/leave', handler: leave },
  { method: 'GET', path: '/swarm', handler: inspect },
  { method: 'POST', path: '/swarm/update', handler: update },
  { method: 'GET', path: '/swarm/unlockkey', handler: unlockKey },
  { method: 'GET', path: '/nodes', handler: nodeList },
  { method: 'GET', path: '/nodes/:id', handler: nodeInspect },
  { method: 'POST', path: '/nodes/:id/update', handler: nodeUpdate },
  { method: 'DELETE', path: '/nodes/:id', handler: nodeRemove },
];
