/** /networks: list, inspect, create, remove, connect, disconnect, prune. */
import type { Route } from '../route.js';
import { boolQuery, filtersQuery, jsonBody, param, type Ctx } from '../request.js';
import { networkConnectShape, networkCreateShape, networkDisconnectShape } from '../shapes.js';
import { InvalidParameter } from '../../common/errors.js';
import type { DockerEndpointSettings, DockerNetworkCreate } from '../../network/types.js';

async function list(ctx: Ctx): Promise<void> {
  ctx.reply.json(200, await ctx.engine.networks.listNetworks(filtersQuery(ctx.query)));
}

async function inspect(ctx: Ctx): Promise<void> {
  const opts: { verbose?: boolean; scope?: string } = { verbose: boolQuery(ctx.query, 'verbose') };
  const scope = ctx.query.get('scope');
  if (scope) opts.scope = scope;
  ctx.reply.json(200, await ctx.engine.networks.inspectNetwork(param(ctx, 'id'), opts));
}

async function create(ctx: Ctx): Promise<void> {
  const body = await jsonBody<DockerNetworkCreate>(ctx, networkCreateShape);
  if (!body.Name) throw new InvalidParameter('invalid network name: name is empty');
  ctx.reply.json(201, await ctx.engine.networks.createNetwork(body));
}

async function remove(ctx: Ctx): Promise<void> {
  await ctx.engine.networks.removeNetwork(param(ctx, 'id'));
  ctx.reply.empty(204);
}

async function connect(ctx: Ctx): Promise<void> {
  const body = await jsonBody<{ Container?: string; EndpointConfig?: DockerEndpointSettings | null }>(
    ctx,
    networkConnectShape,
  );
  if (!body.Container) throw new InvalidParameter('container is required');
  await ctx.engine.containers.connectNetwork(body.Container, param(ctx, 'id'), body.EndpointConfig ?? {});
  ctx.reply.empty(200);
}

async function disconnect(ctx: Ctx): Promise<void> {
  const body = await jsonBody<{ Container?: string; Force?: boolean }>(ctx, networkDisconnectShape);
  if (!body.Container) throw new InvalidParameter('container is required');
  await ctx.engine.containers.disconnectNetwork(body.Container, param(ctx, 'id'), Boolean(body.Force));
  ctx.reply.empty(200);
}

async function prune(ctx: Ctx): Promise<void> {
  const deleted = await ctx.engine.networks.pruneNetworks(filtersQuery(ctx.query));
  ctx.reply.json(200, { NetworksDeleted: deleted });
}

export const networkRoutes: Route[] = [
  { method: 'GET', path: '/networks', handler: list },
  { method: 'POST', path: '/networks/create', handler: create },
  { method: 'POST', path: '/networks/prune', handler: prune },
  { method: 'GET', path: '/networks/:id', handler: inspect },
  { method: 'DELETE', path: '/networks/:id', handler: remove },
  { method: 'POST', path: '/networks/:id/connect', handler: connect },
  { method: 'POST', path: '/networks/:id/disconnect', handler: disconnect },
];
