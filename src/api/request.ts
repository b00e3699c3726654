/**
 * What a handler sees of a request: path parameters, query, body readers.
 * Body errors use the wording of moby's httputils.ReadJSON and Go's
 * encoding/json, so clients see the messages they know.
 */
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { CoveError, InvalidParameter } from '../common/errors.js';
import type { Filters } from '../network/types.js';
import type { Engine } from '../daemon/engine.js';
import type { Logger } from '../common/log.js';
import type { Reply } from './reply.js';
import { checkShape, type Shape } from './shapes.js';
import { goJsonError } from './gojson.js';

/** JSON bodies larger than this are refused (tar bodies stream and have no limit). */
export const MAX_JSON_BODY = 16 * 1024 * 1024;

export class PayloadTooLarge extends CoveError {
  constructor() {
    super(`request body too large (more than ${MAX_JSON_BODY} bytes)`, 413);
  }
}

export interface Ctx {
  req: IncomingMessage;
  reply: Reply;
  params: Record<string, string | undefined>;
  query: URLSearchParams;
  /** The API version the client asked for (the prefix) or ours. */
  apiVersion: string;
  engine: Engine;
  log: Logger;
  /** The request body as a stream (for an upgraded request: what follows the headers). */
  body: Readable;
  /** For upgraded requests: the body bytes already split from the stream. */
  bodyBytes?: Promise<Buffer>;
  /** Client input after the body, on a hijacked connection. */
  hijackIn?: Readable;
  /**
   * The handler now only waits (an events stream, `wait`, `logs -f`, an attached session): the request stops
   * counting as daemon work, so the daemon may count as quiet (src/daemon/idle-memory.ts). Idempotent.
   */
  waiting?: () => void;
}

export function param(ctx: Ctx, name: string): string {
  const v = ctx.params[name];
  if (v === undefined || v === '') throw new InvalidParameter(`missing parameter ${name}`);
  return v;
}

/** Docker's boolean query values: "", "0", "false", "no", "off", "none" are false. */
export function boolQuery(q: URLSearchParams, name: string, dflt = false): boolean {
  const v = q.get(name);
  if (v === null) return dflt;
  return !['', '0', 'false', 'no', 'off', 'none'].includes(v.trim().toLowerCase());
}

export function intQuery(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  if (!/^-?\d+$/.test(v))
    throw new InvalidParameter(`invalid value for ${name}: strconv.Atoi: parsing ${JSON.stringify(v)}: invalid syntax`);
  return Number(v);
}

/**
 * `filters` is JSON: map[string][]string, or the legacy map[string]map[string]bool
 * that old clients send ({"name":{"foo":true}}).
 */
export function filtersQuery(q: URLSearchParams): Filters {
  const raw = q.get('filters');
  if (raw === null || raw === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new InvalidParameter(`invalid filter: ${raw}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new InvalidParameter(`invalid filter: ${raw}`);
  const out: Filters = {};
  for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) out[k] = v as string[];
    else if (v && typeof v === 'object' && !Array.isArray(v)) out[k] = Object.keys(v);
    else throw new InvalidParameter(`invalid filter: ${raw}`);
  }
  return out;
}

/** Go's encoding/json refuses deeper nesting with "exceeded max depth"; so do we, before anything recursive sees the value. */
export const MAX_JSON_DEPTH = 10_000;

/** Deepest nesting of [ and { outside strings (linear, no parse). */
export function nestingDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) max = depth;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

async function readAll(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      stream.destroy();
      throw new PayloadTooLarge();
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export async function rawBody(ctx: Ctx): Promise<Buffer> {
  const declared = Number(ctx.req.headers['content-length'] ?? 0);
  if (declared > MAX_JSON_BODY) throw new PayloadTooLarge();
  if (ctx.bodyBytes) return ctx.bodyBytes;
  return readAll(ctx.body, MAX_JSON_BODY);
}

/** Go's json errors for JavaScript's SyntaxError texts (best effort: the gist, not byte offsets). */
export function goJsonSyntaxError(text: string, err: Error): string {
  // Go's own wording when the body has a syntax error it would see first.
  const go = goJsonError(text);
  if (go) return go;
  const m = /Unexpected token '?(.)'?,? /.exec(err.message) ?? /Unexpected token (.) in JSON/.exec(err.message);
  if (/Unexpected end of JSON input/.test(err.message)) return 'unexpected EOF';
  if (m) {
    const ch = m[1]!;
    const trimmed = text.trimStart();
    if (trimmed.startsWith(ch)) return `invalid character '${ch}' looking for beginning of value`;
    return `invalid character '${ch}' looking for beginning of value`;
  }
  if (/Unexpected non-whitespace character after JSON/.test(err.message)) return 'unexpected content after JSON';
  return err.message;
}

/**
 * moby httputils.ReadJSON: Content-Type must be JSON if given, an empty body is
 * "invalid JSON: got EOF while reading request body", then the shape is checked
 * like encoding/json would when decoding into the Go struct.
 */
export async function jsonBody<T>(ctx: Ctx, shape?: Shape, opts: { optional?: boolean } = {}): Promise<T> {
  const ct = ctx.req.headers['content-type'];
  const buf = await rawBody(ctx);
  if (ct && !/^application\/json\b/i.test(ct.split(';')[0]!.trim()) && buf.length > 0) {
    throw new InvalidParameter(`unsupported Content-Type header (${ct}): must be 'application/json'`);
  }
  const text = buf.toString('utf8');
  if (text.trim() === '') {
    if (opts.optional) return {} as T;
    throw new InvalidParameter('invalid JSON: got EOF while reading request body');
  }
  if (nestingDepth(text) > MAX_JSON_DEPTH) throw new InvalidParameter('invalid JSON: exceeded max depth');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const msg = goJsonSyntaxError(text, e as Error);
    if (msg === 'unexpected content after JSON') throw new InvalidParameter(msg);
    throw new InvalidParameter(`invalid JSON: ${msg}`);
  }
  if (shape) {
    const problem = checkShape(value, shape);
    if (problem) throw new InvalidParameter(`invalid JSON: ${problem}`);
  }
  return (value ?? {}) as T;
}

/** Docker's time parameter: seconds, seconds.nanos, or an RFC 3339 date. */
export function parseTimestamp(value: string, name: string): number {
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value);
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new InvalidParameter(`invalid value for ${name}: ${value}`);
  return ms / 1000;
}
