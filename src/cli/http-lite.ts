/**
 * A minimal HTTP/1.1 client over a unix socket for the CLI. Why not
 * node:http: loading it and making the first request costs 20-60 ms here,
 * which the CLI's start-up budget cannot afford. One request per connection
 * (Connection: close); bodies are read by Content-Length, chunked encoding or
 * until EOF; a 101 answer hands over the raw socket (attach / exec).
 */
import { connect, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';

export interface LiteResponse extends PassThrough {
  statusCode: number;
  headers: Record<string, string>;
}

export interface LiteRequest {
  socketPath: string;
  method: string;
  path: string;
  headers: Record<string, string>;
}

/** Undoes chunked transfer encoding, streaming. */
class Dechunker {
  private buf: Buffer = Buffer.alloc(0);
  private remaining = -1; // bytes left in the current chunk, -1 = expecting a size line
  done = false;
  constructor(private readonly out: (b: Buffer) => void) {}
  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      if (this.done) return;
      if (this.remaining < 0) {
        const nl = this.buf.indexOf('\r\n');
        if (nl < 0) return;
        const size = parseInt(this.buf.subarray(0, nl).toString('latin1'), 16);
        this.buf = this.buf.subarray(nl + 2);
        if (size === 0) {
          this.done = true;
          return;
        }
        this.remaining = size;
      }
      if (this.remaining > 0) {
        if (this.buf.length === 0) return;
        const part = this.buf.subarray(0, this.remaining);
        this.out(part);
        this.remaining -= part.length;
        this.buf = this.buf.subarray(part.length);
      }
      if (this.remaining === 0) {
        if (this.buf.length < 2) return;
        this.buf = this.buf.subarray(2);
        this.remaining = -1;
      }
    }
  }
}

/**
 * Sends the request head (and `body`, or pipes `upload`); resolves at the
 * response headers with the response body as a stream, or for a 101 with
 * the raw socket and the bytes that followed the headers.
 */
export function liteRequest(
  req: LiteRequest,
  body?: Buffer,
  upload?: NodeJS.ReadableStream,
): Promise<
  { res: LiteResponse; socket?: undefined; head?: undefined } | { res: LiteResponse; socket: Socket; head: Buffer }
> {
  return new Promise((resolve, reject) => {
    const sock = connect(req.socketPath);
    const headers: Record<string, string> = { Host: 'cove', ...req.headers };
    if (!('Connection' in headers)) headers.Connection = 'close';
    if (body) headers['Content-Length'] = String(body.length);
    else if (upload) headers['Transfer-Encoding'] = 'chunked';
    let head = `${req.method} ${req.path} HTTP/1.1\r\n`;
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
    head += '\r\n';
    let settled = false;
    sock.once('error', (e) => {
      if (!settled) {
        settled = true;
        reject(e);
      }
    });
    sock.once('connect', () => {
      sock.write(head);
      if (body) sock.write(body);
      if (upload) {
        upload.on('data', (c: Buffer | string) => {
          const b = typeof c === 'string' ? Buffer.from(c) : c;
          if (b.length) (sock.write(`${b.length.toString(16)}\r\n`), sock.write(b), sock.write('\r\n'));
        });
        upload.once('end', () => sock.write('0\r\n\r\n'));
        upload.once('error', (e: Error) => sock.destroy(e));
      }
    });
    let buf: Buffer = Buffer.alloc(0);
    const onHead = (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.off('data', onHead);
      const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
      const rest = buf.subarray(end + 4);
      const status = Number(lines[0]!.split(' ')[1]);
      const hdrs: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const c = l.indexOf(':');
        if (c > 0) hdrs[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
      }
      const res = new PassThrough() as LiteResponse;
      res.statusCode = status;
      res.headers = hdrs;
      res.on('close', () => {
        if (!sock.destroyed) sock.destroy();
      });
      settled = true;
      if (status === 101) {
        // Hold the bytes until the caller listens (it must resume()).
        sock.pause();
        resolve({ res, socket: sock, head: rest });
        return;
      }
      const noBody = req.method === 'HEAD' || status === 204 || status === 304;
      const length = hdrs['content-length'] !== undefined ? Number(hdrs['content-length']) : -1;
      if (noBody || length === 0) {
        res.end();
        sock.destroy();
      } else if (hdrs['transfer-encoding']?.toLowerCase().includes('chunked')) {
        const d = new Dechunker((b) => res.write(b));
        const feed = (b: Buffer) => {
          d.push(b);
          if (d.done) {
            res.end();
            sock.destroy();
          }
        };
        sock.on('data', feed);
        sock.once('end', () => res.end());
        if (rest.length) feed(rest);
      } else if (length > 0) {
        let left = length;
        const feed = (b: Buffer) => {
          const part = b.subarray(0, left);
          left -= part.length;
          res.write(part);
          if (left === 0) {
            res.end();
            sock.destroy();
          }
        };
        sock.on('data', feed);
        sock.once('end', () => res.end());
        if (rest.length) feed(rest);
      } else {
        if (rest.length) res.write(rest);
        sock.on('data', (b: Buffer) => res.write(b));
        sock.once('end', () => res.end());
      }
      sock.once('error', (e) => res.destroy(e));
      resolve({ res });
    };
    sock.on('data', onHead);
    sock.once('end', () => {
      if (!settled) {
        settled = true;
        reject(new Error('the daemon closed the connection'));
      }
    });
  });
}
