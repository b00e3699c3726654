/** GET|HEAD /_ping, GET /version, GET /info, GET /events. */
import type { Route } from '../route.js';
import type { Ctx } from '../request.js';
import { filtersQuery, parseTimestamp } from '../request.js';
import type { DockerEvent } from '../../common/events.js';
import type { Filters } from '../../network/types.js';

function apiBefore(v: string, than: string): boolean {
  const [a1, a2] = v.split('.').map(Number);
  const [b1, b2] = than.split('.').map(Number);
  return a1! < b1! || (a1 === b1 && a2! < b2!);
}

/** Fields of GET /info that API 1.50 dropped (deprecated in 1.48); older clients still get them. */
const INFO_DROPPED_IN_1_50 = ['KernelMemory', 'BridgeNfIptables', 'BridgeNfIp6tables'];

export function infoFor(apiVersion: string, info: object): object {
  if (apiBefore(apiVersion, '1.50')) return info;
  const out: Record<string, unknown> = { ...info };
  for (const k of INFO_DROPPED_IN_1_50) delete out[k];
  return out;
}

async function ping(ctx: Ctx): Promise<void> {
  // Docker answers the ping with these on top of the standard headers.
  ctx.reply.setHeader('Cache-Control', 'no-cache, no-store, must-revalidate');
  ctx.reply.setHeader('Pragma', 'no-cache');
  ctx.reply.setHeader('Swarm', ctx.engine.swarm?.pingState() ?? 'inactive');
  ctx.reply.text(200, 'OK');
}

function matches(ev: DockerEvent, filters: Filters): boolean {
  const has = (key: string, ...values: Array<string | undefined>) => {
    const want = filters[key];
    if (!want || want.length === 0) return true;
    return values.some((v) => v !== undefined && want.includes(v));
  };
  const attrs = ev.Actor.Attributes;
  const name = attrs.name;
  const labelsOk = (filters.label ?? []).every((l) => {
    const [k, v] = l.split('=', 2) as [string, string | undefined];
    return v === undefined ? k in attrs : attrs[k] === v;
  });
  return (
    has('type', ev.Type) &&
    has('event', ev.Action, ev.Action.split(':')[0]) &&
    has('scope', ev.scope) &&
    (ev.Type !== 'container' || has('container', ev.Actor.ID, ev.Actor.ID.slice(0, 12), name)) &&
    (!filters.container || ev.Type === 'container') &&
    (ev.Type !== 'network' || has('network', ev.Actor.ID, name)) &&
    (!filters.network || ev.Type === 'network' || (attrs.network !== undefined && has('network', attrs.network))) &&
    (ev.Type !== 'image' || has('image', ev.Actor.ID, name)) &&
    labelsOk
  );
}

async function events(ctx: Ctx): Promise<void> {
  const q = ctx.query;
  const filters = filtersQuery(q);
  const since = q.get('since') ? parseTimestamp(q.get('since')!, 'since') : undefined;
  const until = q.get('until') ? parseTimestamp(q.get('until')!, 'until') : undefined;
  const nowSec = Date.now() / 1000;
  const out = ctx.reply.stream(200, 'application/json');
  ctx.waiting?.(); // a subscriber that waits for events is not work (src/daemon/idle-memory.ts)
  const write = (ev: DockerEvent) => {
    if (until !== undefined && ev.timeNano / 1e9 > until) return;
    if (matches(ev, filters)) out.write(JSON.stringify(ev) + '\n');
  };
  if (since !== undefined)
    for (const ev of ctx.engine.events.since(Math.floor(since))) if (ev.timeNano / 1e9 >= since) write(ev);
  if (until !== undefined && until <= nowSec) {
    out.end();
    return;
  }
  await new Promise<void>((resolve) => {
    const unsubscribe = ctx.engine.events.subscribe(write);
    let timer: NodeJS.Timeout | undefined;
    const stop = () => {
      unsubscribe();
      if (timer) clearTimeout(timer);
      if (!out.writableEnded) out.end();
      resolve();
    };
    if (until !== undefined) timer = setTimeout(stop, (until - nowSec) * 1000);
    ctx.req.socket.once('close', stop);
  });
}

export const systemRoutes: Route[] = [
  { method: 'GET', path: '/_ping', handler: ping },
  { method: 'HEAD', path: '/_ping', handler: ping },
  { method: 'GET', path: '/version', handler: async (ctx) => ctx.reply.json(200, ctx.engine.version()) },
  {
    method: 'GET',
    path: '/info',
    handler: async (ctx) => ctx.reply.json(200, infoFor(ctx.apiVersion, await ctx.engine.info())),
  },
  { method: 'GET', path: '/events', handler: events },
];
