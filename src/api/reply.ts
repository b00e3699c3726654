/**
 * One way to answer a request whether it arrived as a plain HTTP request
 * (node's ServerResponse) or as an upgrade (a raw socket, where Docker's
 * hijacked endpoints write the status line themselves).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex, Readable, Writable } from 'node:stream';
import { PassThrough } from 'node:stream';

export const API_VERSION = '1.51';

/** Headers Docker puts on every response. */
export function standardHeaders(serverVersion: string): Record<string, string> {
  return {
    'Api-Version': API_VERSION,
    'Docker-Experimental': 'false',
    Ostype: 'linux',
    Server: `Cove/${serverVersion} (linux)`,
  };
}

/** A hijacked connection: bytes to the client, bytes from the client. */
export interface Hijacked {
  out: Writable;
  in: Readable;
  /** Ends the connection once everything written has been flushed. */
  end(): void;
  /** Fires once when the client goes away (or the connection breaks). */
  onClose(cb: () => void): void;
}

export interface Reply {
  readonly sent: boolean;
  /** Adds a header to the response still to be sent. */
  setHeader(name: string, value: string): void;
  /** A JSON body with the given status. */
  json(status: number, body: unknown): void;
  /** No body (204, 304, or 200 with nothing to say). */
  empty(status: number): void;
  text(status: number, body: string, contentType?: string): void;
  /** Headers now, body later (wait, events, logs, progress streams). */
  stream(status: number, contentType: string): Writable;
  /** Take over the connection: 101 UPGRADED when the client asked for an upgrade, else 200 + a streamed body. */
  hijack(contentType: string): Hijacked;
}

export class HttpReply implements Reply {
  sent = false;
  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
  ) {}

  setHeader(name: string, value: string): void {
    this.res.setHeader(name, value);
  }

  json(status: number, body: unknown): void {
    const text = JSON.stringify(body) + '\n';
    this.sent = true;
    this.res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    this.res.end(this.req.method === 'HEAD' ? undefined : text);
  }

  empty(status: number): void {
    this.sent = true;
    this.res.writeHead(status, status === 204 || status === 304 ? {} : { 'Content-Length': 0 });
    this.res.end();
  }

  text(status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
    this.sent = true;
    this.res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
    this.res.end(this.req.method === 'HEAD' ? undefined : body);
  }

  stream(status: number, contentType: string): Writable {
    this.sent = true;
    this.res.writeHead(status, { 'Content-Type': contentType });
    // The docker CLI's `wait` needs the headers before the body exists.
    this.res.flushHeaders();
    return this.res;
  }

  hijack(contentType: string): Hijacked {
    const out = this.stream(200, contentType);
    return {
      out,
      in: this.req,
      end: () => this.res.end(),
      onClose: (cb) => {
        let fired = false;
        const once = () => {
          if (!fired) {
            fired = true;
            cb();
          }
        };
        this.res.on('close', once);
      },
    };
  }
}

/** Answers on a raw socket after node handed us an upgrade request. */
export class SocketReply implements Reply {
  sent = false;
  private readonly extra: Record<string, string> = {};
  constructor(
    private readonly socket: Duplex,
    private readonly baseHeaders: Record<string, string>,
    private readonly bodyIn: Readable,
  ) {}

  setHeader(name: string, value: string): void {
    this.extra[name] = value;
  }

  private head(status: number, headers: Record<string, string | number>, reason?: string): string {
    let s = `HTTP/1.1 ${status} ${reason ?? STATUS_CODES[status] ?? ''}\r\n`;
    for (const [k, v] of Object.entries({ ...this.baseHeaders, ...this.extra, ...headers })) s += `${k}: ${v}\r\n`;
    return s + '\r\n';
  }

  json(status: number, body: unknown): void {
    this.text(status, JSON.stringify(body) + '\n', 'application/json');
  }

  empty(status: number): void {
    this.sent = true;
    this.socket.end(this.head(status, { 'Content-Length': 0, Connection: 'close' }));
  }

  text(status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
    this.sent = true;
    this.socket.end(
      this.head(status, {
        'Content-Type': contentType,
        'Content-Length': Buffer.byteLength(body),
        Connection: 'close',
      }) + body,
    );
  }

  stream(status: number, contentType: string): Writable {
    this.sent = true;
    this.socket.write(this.head(status, { 'Content-Type': contentType, Connection: 'close' }));
    return this.socket;
  }

  hijack(contentType: string): Hijacked {
    this.sent = true;
    this.socket.write(
      this.head(101, { 'Content-Type': contentType, Connection: 'Upgrade', Upgrade: 'tcp' }, 'UPGRADED'),
    );
    return {
      out: this.socket,
      in: this.bodyIn,
      end: () => this.socket.end(),
      onClose: (cb) => {
        let fired = false;
        const once = () => {
          if (!fired) {
            fired = true;
            cb();
          }
        };
        this.socket.on('close', once);
        this.socket.on('error', once);
      },
    };
  }
}

/**
 * The upgraded socket carries the request body first (exec start sends JSON
 * with Content-Length), then the client's stdin. Split the two.
 */
export function splitUpgradeBody(
  socket: Duplex,
  head: Buffer,
  contentLength: number,
): { body: Promise<Buffer>; rest: Readable } {
  const rest = new PassThrough();
  let need = contentLength;
  const chunks: Buffer[] = [];
  let resolveBody!: (b: Buffer) => void;
  const body = new Promise<Buffer>((r) => {
    resolveBody = r;
  });
  const take = (chunk: Buffer) => {
    if (need > 0) {
      const part = chunk.subarray(0, need);
      chunks.push(part);
      need -= part.length;
      chunk = chunk.subarray(part.length);
      if (need === 0) resolveBody(Buffer.concat(chunks));
    }
    if (chunk.length) rest.write(chunk);
  };
  if (need === 0) resolveBody(Buffer.alloc(0));
  if (head.length) take(head);
  socket.on('data', take);
  socket.on('end', () => {
    if (need > 0) {
      need = 0;
      resolveBody(Buffer.concat(chunks));
    }
    rest.end();
  });
  socket.on('error', () => rest.end());
  return { body, rest };
}
