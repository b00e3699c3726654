/**
 * A minimal Docker Engine API client over a unix socket (node:http, one
 * keep-alive agent), so the API targets time the engine and not a client
 * library. Used for Cove and for Docker.
 */
import { Agent, request } from 'node:http';
import { createReadStream, statSync } from 'node:fs';

export interface ApiResponse {
  status: number;
  body: unknown;
  text: string;
}

export interface RequestOptions {
  /** A file sent as the body (application/x-tar). */
  file?: string;
  timeoutMs?: number;
  headers?: Record<string, string>;
}

export class EngineApi {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 8 });

  /** prefix: e.g. "/v1.41" to pin the API version, "" for the engine's own. */
  constructor(
    readonly socketPath: string,
    readonly prefix = '',
  ) {}

  request(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<ApiResponse> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = { ...opts.headers };
      let payload: Buffer | undefined;
      if (opts.file) {
        headers['Content-Type'] = 'application/x-tar';
        headers['Content-Length'] = statSync(opts.file).size;
      } else if (body !== undefined) {
        payload = Buffer.from(JSON.stringify(body));
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = payload.length;
      }
      const req = request(
        {
          socketPath: this.socketPath,
          path: this.prefix + path,
          method,
          headers,
          agent: this.agent,
          timeout: opts.timeoutMs ?? 120_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = undefined;
            if (text && (res.headers['content-type'] ?? '').includes('json')) {
              try {
                parsed = JSON.parse(text);
              } catch {
                parsed = undefined; // a stream of JSON lines (image load)
              }
            }
            resolve({ status: res.statusCode ?? 0, body: parsed, text });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
      req.on('error', reject);
      if (opts.file) createReadStream(opts.file).pipe(req);
      else req.end(payload);
    });
  }

  /** Like request(), but a status >= 400 becomes an Error with the engine's message. */
  async ok(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<ApiResponse> {
    const r = await this.request(method, path, body, opts);
    if (r.status >= 400) {
      const msg = (r.body as { message?: string } | undefined)?.message ?? r.text.trim();
      throw new Error(`${method} ${path}: ${r.status} ${msg}`);
    }
    return r;
  }

  close(): void {
    this.agent.destroy();
  }
}
