/**
 * One HTTP(S) exchange with a registry over node:http/https, so that a
 * registry's own CA (certs.d) and insecure registries can be honoured per
 * request, and every exchange has a deadline: no byte for `timeoutMs`
 * (connect, headers or body) ends it with an error instead of a hang.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import * as lazy from '../../common/lazy-builtins.js';
import type { Readable } from 'node:stream';

export interface HttpRequest {
  method: string;
  url: URL;
  headers?: Record<string, string>;
  body?: Buffer | Readable;
  /** Extra CA certificates (PEM) for https. */
  ca?: Buffer[];
  /** Skip certificate verification (an --insecure-registry on https). */
  insecure?: boolean;
  timeoutMs: number;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
}

const agents = new Map<string, http.Agent>();
function agentFor(url: URL, ca: Buffer[] | undefined, insecure: boolean): http.Agent {
  const key = `${url.protocol}${insecure ? 'i' : ''}${ca?.length ?? 0}:${url.host}`;
  let a = agents.get(key);
  if (!a) {
    a =
      url.protocol === 'https:'
        ? new (lazy.https().Agent)({
            keepAlive: true,
            maxSockets: 8,
            ...(ca?.length ? { ca } : {}),
            rejectUnauthorized: !insecure,
          })
        : new http.Agent({ keepAlive: true, maxSockets: 8 });
    agents.set(key, a);
  }
  return a;
}

export class HttpTimeout extends Error {}

export function send(req: HttpRequest): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const mod = req.url.protocol === 'https:' ? lazy.https() : http;
    const headers: Record<string, string> = { 'User-Agent': 'cove/0.1 (distribution client)', ...(req.headers ?? {}) };
    if (Buffer.isBuffer(req.body)) headers['Content-Length'] = String(req.body.length);
    const r = mod.request(req.url, {
      method: req.method,
      headers,
      agent: agentFor(req.url, req.ca, Boolean(req.insecure)),
    });
    let settled = false;
    let response: IncomingMessage | undefined;
    // The request's timeout covers connect, headers and the body (node keeps
    // it on the socket until the response ends): an idle body is a hang too.
    r.setTimeout(req.timeoutMs, () => {
      const err = new HttpTimeout(
        `${req.method} "${req.url.href}": timeout: no answer from the registry for ${Math.round(req.timeoutMs / 1000)}s`,
      );
      if (response) response.destroy(err);
      r.destroy(err);
    });
    r.on('error', (e) => {
      if (!settled) {
        settled = true;
        reject(e);
      }
    });
    r.on('response', (res) => {
      settled = true;
      response = res;
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res });
    });
    if (req.body === undefined) r.end();
    else if (Buffer.isBuffer(req.body)) r.end(req.body);
    else {
      req.body.on('error', (e) => r.destroy(e));
      req.body.pipe(r);
    }
  });
}

export async function readAll(res: Readable, max = 16 << 20): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res) {
    n += (c as Buffer).length;
    if (n > max) {
      res.destroy();
      throw new Error(`response larger than ${max} bytes`);
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Drains a body we do not need, so the connection can be reused. */
export function discard(res: Readable): Promise<void> {
  return readAll(res, 1 << 20).then(
    () => undefined,
    () => undefined,
  );
}
