/**
 * The cove CLI's client of the Engine API over the daemon's unix socket.
 */
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { liteRequest, type LiteResponse } from './http-lite.js';

export const CLIENT_API_VERSION = '1.51';
export const DEFAULT_SOCKET = '/run/cove/cove.sock';

/** -H/--host unix://PATH, else COVE_HOST, else DOCKER_HOST if unix://, else the default socket. */
export function socketPathFrom(host: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const pick = host ?? env.COVE_HOST ?? (env.DOCKER_HOST?.startsWith('unix://') ? env.DOCKER_HOST : undefined);
  if (!pick) return DEFAULT_SOCKET;
  if (pick.startsWith('unix://')) return pick.slice('unix://'.length);
  if (pick.startsWith('/')) return pick;
  throw new CliError(`invalid host ${JSON.stringify(pick)}: only unix:// sockets are supported`, 1);
}

/** An error the CLI prints as is, exiting with `code`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly code = 1,
  ) {
    super(message);
  }
}

/** The daemon answered with an error status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
  /** Docker's CLI wording. */
  get display(): string {
    return `Error response from daemon: ${this.message}`;
  }
}

export type Query = Record<string, string | number | boolean | string[] | undefined>;

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  /** A stream to send as the body (tar uploads). */
  upload?: Readable;
  contentType?: string;
  headers?: Record<string, string>;
}

function buildPath(path: string, query?: Query): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) q.append(k, x);
    else if (typeof v === 'boolean') q.set(k, v ? '1' : '0');
    else q.set(k, String(v));
  }
  const qs = q.toString();
  return `/v${CLIENT_API_VERSION}${path}${qs ? '?' + qs : ''}`;
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function errorMessage(body: Buffer, status: number): string {
  const text = body.toString('utf8');
  try {
    const parsed = JSON.parse(text) as { message?: string };
    if (typeof parsed.message === 'string') return parsed.message;
  } catch {
    /* not JSON */
  }
  return text.trim() || `status ${status}`;
}

export class Client {
  constructor(readonly socketPath: string) {}

  private connectError(err: NodeJS.ErrnoException): CliError {
    if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
      return new CliError(
        `Cannot connect to the Cove daemon at unix://${this.socketPath}. Is the cove daemon running?`,
        1,
      );
    }
    if (err.code === 'EACCES') {
      return new CliError(
        `permission denied while trying to connect to the Cove daemon socket at unix://${this.socketPath}`,
        1,
      );
    }
    return new CliError(`error during connect: ${err.message}`, 1);
  }

  /** Sends a request; resolves with the response once headers arrive. Error statuses reject with ApiError. */
  async raw(method: string, path: string, opts: RequestOptions = {}): Promise<LiteResponse> {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    let payload: Buffer | undefined;
    if (opts.body !== undefined) {
      payload = Buffer.from(JSON.stringify(opts.body));
      headers['Content-Type'] = 'application/json';
    } else if (opts.upload) {
      headers['Content-Type'] = opts.contentType ?? 'application/x-tar';
    }
    let res: LiteResponse;
    try {
      ({ res } = await liteRequest(
        { socketPath: this.socketPath, method, path: buildPath(path, opts.query), headers },
        payload,
        opts.upload,
      ));
    } catch (err) {
      throw this.connectError(err as NodeJS.ErrnoException);
    }
    if (res.statusCode >= 400) {
      const b = await readAll(res);
      throw new ApiError(res.statusCode, errorMessage(b, res.statusCode));
    }
    return res;
  }

  /** Request whose answer is JSON (or empty). */
  async json<T = unknown>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.raw(method, path, opts);
    const body = await readAll(res);
    if (body.length === 0) return undefined as T;
    return JSON.parse(body.toString('utf8')) as T;
  }

  get<T = unknown>(path: string, query?: Query): Promise<T> {
    return this.json<T>('GET', path, query ? { query } : {});
  }

  post<T = unknown>(path: string, body?: unknown, query?: Query): Promise<T> {
    const opts: RequestOptions = {};
    if (body !== undefined) opts.body = body;
    if (query) opts.query = query;
    return this.json<T>('POST', path, opts);
  }

  /**
   * Takes over the connection (attach, exec start): resolves with the raw
   * socket after `101 UPGRADED`, plus any bytes that came with the headers.
   */
  async hijack(
    path: string,
    opts: RequestOptions = {},
  ): Promise<{ socket: Socket; head: Buffer; contentType: string }> {
    const headers: Record<string, string> = { Connection: 'Upgrade', Upgrade: 'tcp' };
    let payload: Buffer | undefined;
    if (opts.body !== undefined) {
      payload = Buffer.from(JSON.stringify(opts.body));
      headers['Content-Type'] = 'application/json';
    }
    let r: Awaited<ReturnType<typeof liteRequest>>;
    try {
      r = await liteRequest(
        { socketPath: this.socketPath, method: 'POST', path: buildPath(path, opts.query), headers },
        payload,
      );
    } catch (err) {
      throw this.connectError(err as NodeJS.ErrnoException);
    }
    if (r.socket) return { socket: r.socket, head: r.head, contentType: r.res.headers['content-type'] ?? '' };
    const b = await readAll(r.res);
    if (r.res.statusCode >= 400) throw new ApiError(r.res.statusCode, errorMessage(b, r.res.statusCode));
    throw new CliError(`the daemon did not upgrade the connection (status ${r.res.statusCode})`);
  }
}

/** Reads Docker's JSON progress stream; returns the lines, throwing on an in-band error. */
export async function readProgress(res: Readable, onLine: (line: Record<string, unknown>) => void): Promise<void> {
  let buf = '';
  for await (const chunk of res) {
    buf += (chunk as Buffer).toString('utf8');
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line) continue;
      const obj = JSON.parse(line) as Record<string, unknown>;
      if (obj.error || obj.errorDetail) {
        const detail = obj.errorDetail as { message?: string } | undefined;
        throw new CliError(String(detail?.message ?? obj.error));
      }
      onLine(obj);
    }
  }
  if (buf.trim()) onLine(JSON.parse(buf) as Record<string, unknown>);
}
