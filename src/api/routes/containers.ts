/** /containers and /exec: lifecycle, inspect, list, logs, attach, wait, exec. */
import type { Route } from '../route.js';
import { boolQuery, filtersQuery, intQuery, jsonBody, param, type Ctx } from '../request.js';
import { containerCreateShape, execCreateShape, execStartShape } from '../shapes.js';
import { InvalidParameter } from '../../common/errors.js';
import type { DockerContainerCreate, DockerExecCreate, LogOptions } from '../../runtime/types.js';
import { MULTIPLEXED_STREAM, RAW_STREAM, frame, runSession } from '../stream.js';
import { parseTimestamp } from '../request.js';
import { pipeline } from 'node:stream/promises';

async function create(ctx: Ctx): Promise<void> {
  const body = await jsonBody<DockerContainerCreate>(ctx, containerCreateShape);
  const name = ctx.query.get('name') ?? undefined;
  ctx.reply.json(201, await ctx.engine.containers.create(name || undefined, body));
}

async function start(ctx: Ctx): Promise<void> {
  await ctx.engine.containers.start(param(ctx, 'id'));
  ctx.reply.empty(204);
}

function timeoutOf(ctx: Ctx): number | undefined {
  return intQuery(ctx.query, 't') ?? intQuery(ctx.query, 'timeout');
}

async function stop(ctx: Ctx): Promise<void> {
  const opts: { timeout?: number; signal?: string } = {};
  const t = timeoutOf(ctx);
  if (t !== undefined) opts.timeout = t;
  const signal = ctx.query.get('signal');
  if (signal) opts.signal = signal;
  await ctx.engine.containers.stop(param(ctx, 'id'), opts);
  ctx.reply.empty(204);
}

async function kill(ctx: Ctx): Promise<void> {
  await ctx.engine.containers.kill(param(ctx, 'id'), ctx.query.get('signal') || undefined);
  ctx.reply.empty(204);
}

async function restart(ctx: Ctx): Promise<void> {
  const opts: { timeout?: number } = {};
  const t = timeoutOf(ctx);
  if (t !== undefined) opts.timeout = t;
  await ctx.engine.containers.restart(param(ctx, 'id'), opts);
  ctx.reply.empty(204);
}

async function remove(ctx: Ctx): Promise<void> {
  await ctx.engine.containers.remove(param(ctx, 'id'), {
    force: boolQuery(ctx.query, 'force'),
    volumes: boolQuery(ctx.query, 'v'),
  });
  ctx.reply.empty(204);
}

async function update(ctx: Ctx): Promise<void> {
  const body = await jsonBody<Record<string, unknown>>(ctx);
  ctx.reply.json(200, await ctx.engine.containers.updateContainer(param(ctx, 'id'), body));
}

async function prune(ctx: Ctx): Promise<void> {
  ctx.reply.json(200, await ctx.engine.containers.prune(filtersQuery(ctx.query)));
}

async function inspect(ctx: Ctx): Promise<void> {
  ctx.reply.json(200, await ctx.engine.containers.inspect(param(ctx, 'id')));
}

async function list(ctx: Ctx): Promise<void> {
  const opts: { all?: boolean; limit?: number; filters?: Record<string, string[]> } = {
    all: boolQuery(ctx.query, 'all'),
    filters: filtersQuery(ctx.query),
  };
  const limit = intQuery(ctx.query, 'limit');
  if (limit !== undefined && limit > 0) opts.limit = limit;
  // `before`/`since` limit by creation order, which means including stopped ones.
  ctx.reply.json(200, await ctx.engine.containers.list(opts));
}

async function rename(ctx: Ctx): Promise<void> {
  const name = ctx.query.get('name');
  if (!name)
    throw new InvalidParameter(
      'Error when allocating new name: Invalid container name (), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed',
    );
  await ctx.engine.containers.rename(param(ctx, 'id'), name);
  ctx.reply.empty(204);
}

function sizeQuery(ctx: Ctx): { rows: number; cols: number } {
  const h = intQuery(ctx.query, 'h');
  const w = intQuery(ctx.query, 'w');
  if (h === undefined || w === undefined || h < 0 || w < 0) {
    throw new InvalidParameter('invalid resize parameters: h and w must be non-negative integers');
  }
  return { rows: h, cols: w };
}

async function resize(ctx: Ctx): Promise<void> {
  const { rows, cols } = sizeQuery(ctx);
  await ctx.engine.containers.resize(param(ctx, 'id'), rows, cols);
  ctx.reply.empty(200);
}

const WAIT_CONDITIONS = ['not-running', 'next-exit', 'removed'] as const;

async function wait(ctx: Ctx): Promise<void> {
  const cond = ctx.query.get('condition') || 'not-running';
  if (!(WAIT_CONDITIONS as readonly string[]).includes(cond))
    throw new InvalidParameter(`invalid condition: "${cond}"`);
  const id = param(ctx, 'id');
  // Resolve first so an unknown container is a plain 404, not a broken stream.
  await ctx.engine.containers.resolve(id);
  const waiting = ctx.engine.containers.wait(id, cond as (typeof WAIT_CONDITIONS)[number]);
  // The docker CLI calls wait before start and blocks until the headers arrive.
  const out = ctx.reply.stream(200, 'application/json');
  ctx.waiting?.(); // waiting is not work (src/daemon/idle-memory.ts)
  let result: { StatusCode: number; Error?: { Message: string } | null };
  try {
    result = await waiting;
  } catch (e) {
    result = { StatusCode: -1, Error: { Message: (e as Error).message } };
  }
  out.end(JSON.stringify({ StatusCode: result.StatusCode, Error: result.Error ?? null }) + '\n');
}

async function logs(ctx: Ctx): Promise<void> {
  const q = ctx.query;
  const id = param(ctx, 'id');
  const opts: LogOptions = {
    follow: boolQuery(q, 'follow'),
    stdout: boolQuery(q, 'stdout'),
    stderr: boolQuery(q, 'stderr'),
    timestamps: boolQuery(q, 'timestamps'),
    tail: q.get('tail') || 'all',
  };
  if (!opts.stdout && !opts.stderr) throw new InvalidParameter('Bad parameters: you must choose at least one stream');
  if (q.get('since')) opts.since = parseTimestamp(q.get('since')!, 'since');
  if (q.get('until')) opts.until = parseTimestamp(q.get('until')!, 'until');
  const info = await ctx.engine.containers.inspect(id);
  const tty = Boolean(info.Config.Tty);
  const entries = ctx.engine.containers.logs(id, opts)[Symbol.asyncIterator]();
  // Pull the first entry before the headers go out, so errors are still JSON.
  let first = await entries.next();
  const out = ctx.reply.stream(200, tty ? RAW_STREAM : MULTIPLEXED_STREAM);
  if (opts.follow) ctx.waiting?.(); // a follower mostly waits (src/daemon/idle-memory.ts)
  let gone = false;
  ctx.req.socket.once('close', () => {
    gone = true;
    void entries.return?.();
  });
  // Frames are copied into 256 KiB batches: the entries of one read (a file's chunk) leave in a few writes, and
  // what is pending goes out on the next tick, so a follower sees a line at once. A slow reader slows the file
  // reading down (drain) instead of piling the whole log up in memory.
  const BATCH = 256 * 1024;
  let batch = Buffer.allocUnsafe(BATCH);
  let pos = 0;
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (!pos || out.writableEnded) return;
    const chunk = batch.subarray(0, pos);
    batch = Buffer.allocUnsafe(BATCH);
    pos = 0;
    out.write(chunk);
  };
  const drained = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const done = (): void => {
        out.off('drain', done);
        out.off('close', done);
        resolve();
      };
      out.on('drain', done);
      out.on('close', done);
    });
  try {
    while (!first.done && !gone) {
      const e = first.value;
      const stamp = opts.timestamps ? e.time + ' ' : '';
      const size = stamp.length + e.data.length;
      const need = (tty ? 0 : 8) + size;
      if (pos + need > BATCH) flush();
      if (out.writableNeedDrain) await drained();
      if (need > BATCH) {
        const data = stamp ? Buffer.concat([Buffer.from(stamp), e.data]) : e.data;
        out.write(tty ? data : frame(e.stream === 'stderr' ? 2 : 1, data));
      } else {
        if (!tty) {
          batch.fill(0, pos, pos + 8);
          batch[pos] = e.stream === 'stderr' ? 2 : 1;
          batch.writeUInt32BE(size, pos + 4);
          pos += 8;
        }
        if (stamp) pos += batch.write(stamp, pos, 'latin1');
        pos += e.data.copy(batch, pos);
        if (!scheduled) {
          scheduled = true;
          process.nextTick(flush);
        }
      }
      first = await entries.next();
    }
    flush();
  } finally {
    if (!out.writableEnded) out.end();
  }
}

async function attach(ctx: Ctx): Promise<void> {
  const q = ctx.query;
  const id = param(ctx, 'id');
  const opts = {
    stdin: boolQuery(q, 'stdin'),
    stdout: boolQuery(q, 'stdout'),
    stderr: boolQuery(q, 'stderr'),
    logs: boolQuery(q, 'logs'),
    stream: boolQuery(q, 'stream'),
    ...(q.get('detachKeys') ? { detachKeys: q.get('detachKeys')! } : {}),
  };
  // `docker run` attaches BEFORE it starts the container and sends start as soon as this answer's headers
  // arrive: the session is taken first (the engine connects it at start, before the process runs), and only then
  // is the connection answered. Answering first let a quick command's output go out before its session existed.
  const info = await ctx.engine.containers.inspect(id);
  const session = await ctx.engine.containers.attach(id, opts);
  let conn: ReturnType<Ctx['reply']['hijack']>;
  try {
    conn = ctx.reply.hijack(info.Config.Tty ? RAW_STREAM : MULTIPLEXED_STREAM);
  } catch (err) {
    session.close();
    throw err;
  }
  ctx.waiting?.(); // an attached session is the client's, not daemon work (src/daemon/idle-memory.ts)
  await runSession(session, conn, { stdin: opts.stdin });
}

async function execCreate(ctx: Ctx): Promise<void> {
  const body = await jsonBody<DockerExecCreate>(ctx, execCreateShape);
  if (!body.Cmd || body.Cmd.length === 0) throw new InvalidParameter('No exec command specified');
  ctx.reply.json(201, await ctx.engine.containers.execCreate(param(ctx, 'id'), body));
}

async function execStart(ctx: Ctx): Promise<void> {
  const body = await jsonBody<{ Detach?: boolean; Tty?: boolean }>(ctx, execStartShape, { optional: true });
  const id = param(ctx, 'id');
  const opts: { Detach?: boolean; Tty?: boolean } = {};
  if (body.Detach !== undefined) opts.Detach = body.Detach;
  if (body.Tty !== undefined) opts.Tty = body.Tty;
  const session = await ctx.engine.containers.execStart(id, opts);
  if (!session) {
    ctx.reply.empty(200);
    return;
  }
  const conn = ctx.reply.hijack(session.tty ? RAW_STREAM : MULTIPLEXED_STREAM);
  ctx.waiting?.(); // as attach
  await runSession(session, conn, { stdin: Boolean(session.stdin) });
}

async function execInspect(ctx: Ctx): Promise<void> {
  ctx.reply.json(200, await ctx.engine.containers.execInspect(param(ctx, 'id')));
}

async function execResize(ctx: Ctx): Promise<void> {
  const { rows, cols } = sizeQuery(ctx);
  await ctx.engine.containers.execResize(param(ctx, 'id'), rows, cols);
  ctx.reply.empty(200);
}

function archivePath(ctx: Ctx): string {
  const path = ctx.query.get('path');
  if (!path) throw new InvalidParameter('bad parameter: path cannot be empty');
  return path;
}

async function archiveHead(ctx: Ctx): Promise<void> {
  const st = await ctx.engine.containers.archiveStat(param(ctx, 'id'), archivePath(ctx));
  ctx.reply.setHeader('X-Docker-Container-Path-Stat', Buffer.from(JSON.stringify(st)).toString('base64'));
  ctx.reply.empty(200);
}

async function archiveGet(ctx: Ctx): Promise<void> {
  await ctx.engine.containers.archiveGet(param(ctx, 'id'), archivePath(ctx), async (stat, tar) => {
    ctx.reply.setHeader('X-Docker-Container-Path-Stat', stat);
    const out = ctx.reply.stream(200, 'application/x-tar');
    try {
      await pipeline(tar, out);
    } catch (err) {
      // Headers are gone: all we can do is cut the stream short (the client sees a truncated tar).
      ctx.log.warn({ err }, 'archive stream failed');
      out.destroy();
    }
  });
}

async function archivePut(ctx: Ctx): Promise<void> {
  await ctx.engine.containers.archivePut(param(ctx, 'id'), archivePath(ctx), ctx.req, {
    copyUIDGID: boolQuery(ctx.query, 'copyUIDGID'),
  });
  ctx.reply.empty(200);
}

async function pause(ctx: Ctx): Promise<void> {
  await ctx.engine.containers.pause(param(ctx, 'id'));
  ctx.reply.empty(204);
}

async function unpause(ctx: Ctx): Promise<void> {
  await ctx.engine.containers.unpause(param(ctx, 'id'));
  ctx.reply.empty(204);
}

async function top(ctx: Ctx): Promise<void> {
  ctx.reply.json(200, await ctx.engine.containers.top(param(ctx, 'id'), ctx.query.get('ps_args') ?? ''));
}

async function stats(ctx: Ctx): Promise<void> {
  const stream = ctx.query.get('stream') === null ? true : boolQuery(ctx.query, 'stream');
  const oneShot = boolQuery(ctx.query, 'one-shot');
  if (oneShot && stream) throw new InvalidParameter('cannot have stream=true and one-shot=true');
  const it = ctx.engine.containers.stats(param(ctx, 'id'), { stream, oneShot })[Symbol.asyncIterator]();
  // The first sample before the headers: an unknown container is still a JSON 404.
  let next = await it.next();
  const out = ctx.reply.stream(200, 'application/json');
  if (stream) ctx.waiting?.(); // a sample a second is not work that keeps the daemon busy
  let gone = false;
  ctx.req.socket.once('close', () => {
    gone = true;
    void it.return?.();
  });
  try {
    while (!next.done && !gone) {
      out.write(JSON.stringify(next.value) + '\n');
      if (!stream) break;
      next = await it.next();
    }
  } finally {
    void it.return?.();
    if (!out.writableEnded) out.end();
  }
}

async function changes(ctx: Ctx): Promise<void> {
  ctx.reply.json(200, await ctx.engine.containers.changes(param(ctx, 'id')));
}

async function exportRootfs(ctx: Ctx): Promise<void> {
  await ctx.engine.containers.exportRootfs(param(ctx, 'id'), async (tar) => {
    const out = ctx.reply.stream(200, 'application/x-tar');
    try {
      await pipeline(tar, out);
    } catch (err) {
      ctx.log.warn({ err }, 'export stream failed');
      out.destroy();
    }
  });
}

async function commit(ctx: Ctx): Promise<void> {
  const q = ctx.query;
  const container = q.get('container');
  if (!container) throw new InvalidParameter('No such container: ');
  const config = await jsonBody<Partial<DockerContainerCreate> | null>(ctx, undefined, { optional: true });
  let repo = q.get('repo') ?? '';
  let tag = q.get('tag') ?? '';
  // docker commit c name:tag sends repo=name:tag with an empty tag on some versions.
  if (!tag) {
    const m = /^(.*[^/]):([\w][\w.-]{0,127})$/.exec(repo);
    if (m) {
      repo = m[1]!;
      tag = m[2]!;
    }
  }
  const res = await ctx.engine.containers.commit(container, {
    ...(repo ? { repo } : {}),
    ...(tag ? { tag } : {}),
    ...(q.get('comment') ? { comment: q.get('comment')! } : {}),
    ...(q.get('author') ? { author: q.get('author')! } : {}),
    changes: q.getAll('changes').filter((c) => c !== ''),
    pause: q.get('pause') === null ? true : boolQuery(q, 'pause'),
    ...(config && typeof config === 'object' ? { config } : {}),
  });
  ctx.reply.json(201, res);
}

export const containerRoutes: Route[] = [
  { method: 'POST', path: '/containers/:id/pause', handler: pause },
  { method: 'POST', path: '/containers/:id/unpause', handler: unpause },
  { method: 'GET', path: '/containers/:id/top', handler: top },
  { method: 'GET', path: '/containers/:id/changes', handler: changes },
  { method: 'GET', path: '/containers/:id/export', handler: exportRootfs },
  { method: 'POST', path: '/commit', handler: commit },
  { method: 'GET', path: '/containers/:id/stats', handler: stats },
  { method: 'HEAD', path: '/containers/:id/archive', handler: archiveHead },
  { method: 'GET', path: '/containers/:id/archive', handler: archiveGet },
  { method: 'PUT', path: '/containers/:id/archive', handler: archivePut },
  { method: 'GET', path: '/containers/json', handler: list },
  { method: 'POST', path: '/containers/prune', handler: prune },
  { method: 'POST', path: '/containers/:id/update', handler: update },
  { method: 'POST', path: '/containers/create', handler: create },
  { method: 'GET', path: '/containers/:id/json', handler: inspect },
  { method: 'GET', path: '/containers/:id/logs', handler: logs },
  { method: 'POST', path: '/containers/:id/start', handler: start },
  { method: 'POST', path: '/containers/:id/stop', handler: stop },
  { method: 'POST', path: '/containers/:id/kill', handler: kill },
  { method: 'POST', path: '/containers/:id/restart', handler: restart },
  { method: 'POST', path: '/containers/:id/rename', handler: rename },
  { method: 'POST', path: '/containers/:id/resize', handler: resize },
  { method: 'POST', path: '/containers/:id/wait', handler: wait },
  { method: 'POST', path: '/containers/:id/attach', handler: attach },
  { method: 'POST', path: '/containers/:id/exec', handler: execCreate },
  { method: 'DELETE', path: '/containers/:id', handler: remove },
  { method: 'POST', path: '/exec/:id/start', handler: execStart },
  { method: 'POST', path: '/exec/:id/resize', handler: execResize },
  { method: 'GET', path: '/exec/:id/json', handler: execInspect },
];
