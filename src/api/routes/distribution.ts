/** POST /auth (docker login) and GET /distribution/{name}/json (the registry's view of an image). */
import type { Route } from '../route.js';
import { param, type Ctx } from '../request.js';
import { InvalidParameter, Unavailable } from '../../common/errors.js';
import { decodeAuthHeader, type AuthConfig } from '../../runtime/distribution/index.js';

async function readJson(ctx: Ctx): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of ctx.body) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text.trim()) return {};
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InvalidParameter(`invalid JSON: ${(e as Error).message}`);
  }
}

async function auth(ctx: Ctx): Promise<void> {
  if (!ctx.engine.distribution) throw new Unavailable('this engine has no registry client');
  const body = (await readJson(ctx)) as AuthConfig;
  if (typeof body !== 'object' || body === null) throw new InvalidParameter('invalid auth configuration');
  ctx.reply.json(200, await ctx.engine.distribution.login(body));
}

async function distributionInspect(ctx: Ctx): Promise<void> {
  if (!ctx.engine.distribution) throw new Unavailable('this engine has no registry client');
  const rest = param(ctx, '*');
  if (!rest.endsWith('/json')) throw new InvalidParameter('page not found');
  const h = ctx.req.headers['x-registry-auth'];
  const a = decodeAuthHeader(Array.isArray(h) ? h[0] : h);
  ctx.reply.json(200, await ctx.engine.distribution.inspect(rest.slice(0, -'/json'.length), a));
}

export const distributionRoutes: Route[] = [
  { method: 'POST', path: '/auth', handler: auth },
  { method: 'GET', path: '/distribution/*', handler: distributionInspect },
];
