/**
 * /services and /tasks (swarm mode). Handlers are thin: the services layer
 * (src/services) validates, stores and answers in Docker's shapes; outside a
 * swarm, or on a worker, it answers Docker's 503.
 */
import type { Route } from '../route.js';
import { boolQuery, filtersQuery, intQuery, jsonBody, param, type Ctx } from '../request.js';
import { Unavailable } from '../../common/errors.js';
import { NOT_A_MANAGER } from '../../services/index.js';
import type { ServiceManager } from '../../services/manager.js';
import type { ServiceSpec } from '../../services/types.js';

/** The services layer's parts (a chunk of the coved bundle loaded in swarm mode only: src/services/parts.ts). */
const parts = () => import('../../services/parts.js');

function services(ctx: Ctx): ServiceManager {
  const s = ctx.engine.services;
  if (!s) throw new Unavailable(NOT_A_MANAGER);
  return s.api();
}

/** X-Registry-Auth as the client sent it (`--with-registry-auth`); stored as is, decoded by the nodes. */
function registryAuth(ctx: Ctx): string | undefined {
  const h = ctx.req.headers['x-registry-auth'];
  const v = (Array.isArray(h) ? h[0] : h)?.trim();
  return v || undefined;
}

async function list(ctx: Ctx): Promise<void> {
  const mgr = services(ctx);
  const { publicService } = await parts();
  ctx.reply.json(200, (await mgr.list(filtersQuery(ctx.query), boolQuery(ctx.query, 'status'))).map(publicService));
}

async function create(ctx: Ctx): Promise<void> {
  const mgr = services(ctx);
  const spec = await jsonBody<ServiceSpec>(ctx);
  ctx.reply.json(201, await mgr.create(spec, registryAuth(ctx)));
}

async function inspect(ctx: Ctx): Promise<void> {
  const mgr = services(ctx);
  const { publicService } = await parts();
  ctx.reply.json(200, publicService(await mgr.inspect(param(ctx, 'id'))));
}

async function update(ctx: Ctx): Promise<void> {
  const mgr = services(ctx);
  const spec = await jsonBody<ServiceSpec>(ctx);
  const rollback = ctx.query.get('rollback') === 'previous';
  const from = ctx.query.get('registryAuthFrom') === 'previous-spec' ? 'previous-spec' : 'spec';
  ctx.reply.json(
    200,
    await mgr.update(param(ctx, 'id'), intQuery(ctx.query, 'version'), spec, rollback, {
      encoded: registryAuth(ctx),
      from,
    }),
  );
}

async function remove(ctx: Ctx): Promise<void> {
  await services(ctx).remove(param(ctx, 'id'));
  ctx.reply.empty(200);
}

async function listTasks(ctx: Ctx): Promise<void> {
  const mgr = services(ctx);
  const { publicTask } = await parts();
  ctx.reply.json(200, (await mgr.listTasks(filtersQuery(ctx.query))).map(publicTask));
}

async function inspectTask(ctx: Ctx): Promise<void> {
  const mgr = services(ctx);
  const { publicTask } = await parts();
  ctx.reply.json(200, publicTask(await mgr.inspectTask(param(ctx, 'id'))));
}

async function logsOfService(ctx: Ctx): Promise<void> {
  const mgr = services(ctx);
  const { serviceLogs } = await parts();
  await serviceLogs(ctx, mgr, await mgr.inspect(param(ctx, 'id')));
}

async function logsOfTask(ctx: Ctx): Promise<void> {
  const mgr = services(ctx);
  const { taskLogs } = await parts();
  await taskLogs(ctx, mgr, await mgr.inspectTask(param(ctx, 'id')));
}

/** Cove's own: this node's ingress mesh state for the service (rule present, backends, reachability); any node of a swarm. */
async function ingressOfService(ctx: Ctx): Promise<void> {
  const s = ctx.engine.services;
  if (!s) throw new Unavailable(NOT_A_MANAGER);
  ctx.reply.json(200, await s.ingressStatus(param(ctx, 'id')));
}

export const serviceRoutes: Route[] = [
  { method: 'GET', path: '/services/:id/ingress', handler: ingressOfService },
  { method: 'GET', path: '/services', handler: list },
  { method: 'POST', path: '/services/create', handler: create },
  { method: 'GET', path: '/services/:id', handler: inspect },
  { method: 'POST', path: '/services/:id/update', handler: update },
  { method: 'DELETE', path: '/services/:id', handler: remove },
  { method: 'GET', path: '/services/:id/logs', handler: logsOfService },
  { method: 'GET', path: '/tasks', handler: listTasks },
  { method: 'GET', path: '/tasks/:id', handler: inspectTask },
  { method: 'GET', path: '/tasks/:id/logs', handler: logsOfTask },
];
