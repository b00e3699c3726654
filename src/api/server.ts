/**
 * The Docker Engine API (v1.51) over HTTP on a unix socket: version
 * negotiation, Docker's standard headers, error mapping, routing to thin
 * handlers that call the Engine.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import FindMyWay from 'find-my-way';
import type { Engine } from '../daemon/engine.js';
import type { Logger } from '../common/log.js';
import { CoveError, statusOf } from '../common/errors.js';
import { MAX_PATH_PARAM } from '../common/ids.js';
import { API_VERSION, HttpReply, SocketReply, splitUpgradeBody, standardHeaders, type Reply } from './reply.js';
import type { Ctx } from './request.js';
import { systemRoutes } from './routes/system.js';
import { networkRoutes } from './routes/networks.js';
import { containerRoutes } from './routes/containers.js';
import { imageRoutes } from './routes/images.js';
import { distributionRoutes } from './routes/distribution.js';
import { swarmRoutes } from './routes/swarm.js';
import { serviceRoutes } from './routes/services.js';
import { volumeRoutes } from './routes/volumes.js';

import type { Handler, Method, Route } from './route.js';

export type { Handler, Method, Route };

/** The oldest API version a client may ask for (moby's floor). */
export const MIN_API_VERSION = '1.24';

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** moby api/server/middleware/version.go */
export function checkApiVersion(v: string): void {
  if (compareVersions(v, API_VERSION) > 0) {
    throw new CoveError(`client version ${v} is too new. Maximum supported API version is ${API_VERSION}`, 400);
  }
  if (compareVersions(v, MIN_API_VERSION) < 0) {
    throw new CoveError(
      `client version ${v} is too old. Minimum supported API version is ${MIN_API_VERSION}, please upgrade your client to a newer version`,
      400,
    );
  }
}

const VERSION_PREFIX = /^\/v([0-9.]+)(\/.*)$/;

/** Requests that never wait for a join finishing in the background (see SwarmController.settled). */
const UNGATED = new Set(['/_ping', '/version']);

/**
 * The request target as a URL. Only origin-form paths are parsed relative to
 * a fixed base: "//x" or an absolute-form "http://[" would otherwise be read
 * as an authority and throw. Go's net/http serves "//" as the path "//", and
 * a target it cannot parse is a 400.
 */
export function requestUrl(target: string | undefined): URL {
  const t = target ?? '/';
  if (!t.startsWith('/')) {
    try {
      const abs = new URL(t);
      return new URL(`${abs.pathname}${abs.search}`, 'http://cove');
    } catch {
      throw new CoveError(`parse "${t}": invalid request target`, 400);
    }
  }
  try {
    return new URL(`http://cove${t}`);
  } catch {
    throw new CoveError(`parse "${t}": invalid request target`, 400);
  }
}

function serverVersionOf(engine: Engine): string {
  try {
    const v = engine.version();
    if (typeof v.Version === 'string') return v.Version;
  } catch {
    /* fall through */
  }
  return '0.0.0';
}

export interface ApiServerOptions {
  /**
   * Called as each request starts; the function it returns is called when the request ended, or earlier
   * when its handler calls ctx.waiting() (src/daemon/idle-memory.ts: the daemon's quiet periods).
   */
  onRequest?: () => () => void;
}

const NOTHING = (): void => undefined;

export function createApiServer(engine: Engine, log: Logger, opts: ApiServerOptions = {}): http.Server {
  const router = FindMyWay({
    ignoreTrailingSlash: true,
    ignoreDuplicateSlashes: true,
    caseSensitive: true,
    maxParamLength: MAX_PATH_PARAM,
  });
  const routes: Route[] = [
    ...systemRoutes,
    ...networkRoutes,
    ...containerRoutes,
    ...imageRoutes,
    ...distributionRoutes,
    ...serviceRoutes,
    ...volumeRoutes,
    ...swarmRoutes,
  ];
  for (const r of routes) router.on(r.method, r.path, () => undefined, { handler: r.handler });

  const headers = standardHeaders(serverVersionOf(engine));

  /** dispatch() answers its own errors; should answering itself fail, the connection ends and the daemon stays. */
  function lastResort(err: unknown, req: http.IncomingMessage, socket: Duplex | null): void {
    log.error({ err, method: req.method, url: req.url }, 'api request failed while answering its error');
    socket?.destroy();
  }

  async function dispatch(req: http.IncomingMessage, reply: Reply, extra: Partial<Ctx>): Promise<void> {
    const started = Date.now();
    const ended = opts.onRequest?.() ?? NOTHING;
    let apiVersion = API_VERSION;
    try {
      const url = requestUrl(req.url);
      let path = url.pathname;
      const m = VERSION_PREFIX.exec(path);
      if (m) {
        apiVersion = m[1]!;
        path = m[2]!;
        checkApiVersion(apiVersion);
      }
      const found = router.find(req.method as Method, path);
      if (!found) throw new CoveError('page not found', 404);
      const handler = (found.store as { handler: Handler }).handler;
      // Right after a worker's `swarm join` answered, its node finishes joining in the background:
      // what is asked next sees the finished node (networks, info), as after Docker's join.
      if (!UNGATED.has(path)) await engine.swarm?.settled?.();
      const ctx: Ctx = {
        req,
        reply,
        params: found.params,
        query: url.searchParams,
        apiVersion,
        engine,
        log,
        body: req,
        waiting: ended,
        ...extra,
      };
      await handler(ctx);
      if (!reply.sent) reply.empty(200);
    } catch (err) {
      const status = statusOf(err);
      const message = err instanceof Error ? err.message : String(err);
      if (status >= 500) log.error({ err, method: req.method, url: req.url }, 'api request failed');
      else log.debug({ method: req.method, url: req.url, status, message }, 'api request refused');
      if (!reply.sent) {
        if (status === 304) reply.empty(304);
        else reply.json(err instanceof CoveError ? status : 500, { message });
      } else {
        // Headers are gone already (a stream broke): all we can do is end it.
        req.socket.destroy();
      }
    } finally {
      ended();
      log.trace({ method: req.method, url: req.url, ms: Date.now() - started }, 'api request');
    }
  }

  const server = http.createServer({ keepAliveTimeout: 5000 }, (req, res) => {
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    dispatch(req, new HttpReply(req, res), {}).catch((err: unknown) => lastResort(err, req, res.socket));
  });

  // Clients ask attach and exec start to upgrade the connection (Upgrade: tcp).
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', (err) => log.debug({ err }, 'hijacked connection error'));
    const length = Number(req.headers['content-length'] ?? 0) || 0;
    const { body, rest } = splitUpgradeBody(socket, head, length);
    const reply = new SocketReply(socket, headers, rest);
    dispatch(req, reply, { bodyBytes: body, body: rest, hijackIn: rest }).catch((err: unknown) =>
      lastResort(err, req, socket),
    );
  });

  // Streams (events, logs -f, wait, attach) would hold server.close() open
  // forever: closing the server cuts every connection, as a stopping daemon should.
  const sockets = new Set<Duplex>();
  server.on('connection', (s: Duplex) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  const close = server.close.bind(server);
  server.close = ((cb?: (err?: Error) => void) => {
    close(cb);
    for (const s of sockets) s.destroy();
    return server;
  }) as typeof server.close;

  server.on('clientError', (err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    log.debug({ err }, 'bad http request');
  });
  return server;
}
