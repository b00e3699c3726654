/** Starts the API server with the fake engine on a temp unix socket, and raw HTTP helpers for tests. */
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { createApiServer } from '../../src/api/server.js';
import { silentLogger } from '../../src/common/log.js';
import { createFakeEngine } from './fake-engine.js';

export interface Harness {
  socket: string;
  engine: ReturnType<typeof createFakeEngine>;
  close(): Promise<void>;
}

export async function startApi(): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'cva-api-'));
  const socket = join(dir, 'api.sock');
  const engine = createFakeEngine();
  const server = createApiServer(engine, silentLogger);
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return {
    socket,
    engine,
    async close() {
      await engine.containers.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  raw: Buffer;
}

export function request(
  socket: string,
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const h: Record<string, string> = { ...headers };
    if (body !== undefined && !h['Content-Type']) h['Content-Type'] = 'application/json';
    const req = http.request({ socketPath: socket, method, path, headers: h, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: raw.toString('utf8'), raw });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

export function json(r: Response): any {
  return JSON.parse(r.body);
}

/** POST with Connection: Upgrade; resolves with the upgraded socket. */
export function hijack(
  socket: string,
  path: string,
  body?: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; socket: Socket; head: Buffer }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { Connection: 'Upgrade', Upgrade: 'tcp' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = String(Buffer.byteLength(body));
    }
    const req = http.request({ socketPath: socket, method: 'POST', path, headers, agent: false });
    req.on('upgrade', (res, s, head) =>
      resolve({ status: res.statusCode ?? 0, headers: res.headers, socket: s as Socket, head }),
    );
    req.on('response', (res) => reject(new Error(`no upgrade: ${res.statusCode}`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Collects a socket's bytes until it ends. */
export function readToEnd(s: Socket, head: Buffer = Buffer.alloc(0)): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [head];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve(Buffer.concat(chunks)));
    s.on('close', () => resolve(Buffer.concat(chunks)));
  });
}
