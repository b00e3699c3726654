/**
 * Shared moves of the client tests: a lab whose daemon has the demo images,
 * loaded over the Engine API itself (no Cove CLI involved), raw HTTP over the
 * socket, the real docker CLI, and a cleanup that goes through the API.
 */
import { request } from 'node:http';
import { createReadStream, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab, REPO, run, type RunResult } from '../lab/lab.js';

export const DOCKER_BIN = '/usr/local/bin/docker';
export const COMPOSE_BIN = '/usr/bin/docker-compose';

export function dockerPresent(): boolean {
  return existsSync(DOCKER_BIN);
}

export interface ApiAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: () => any;
}

/** One request over the lab's socket. `body` objects are sent as JSON. */
export function api(
  lab: Lab,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
  timeoutMs = 30_000,
): Promise<ApiAnswer> {
  return new Promise((resolve, reject) => {
    let payload: Buffer | undefined;
    if (Buffer.isBuffer(body)) payload = body;
    else if (typeof body === 'string') payload = Buffer.from(body);
    else if (body !== undefined) payload = Buffer.from(JSON.stringify(body));
    const h: Record<string, string | number> = { ...headers };
    if (payload) {
      h['Content-Length'] = payload.length;
      if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['Content-Type'] = 'application/json';
    }
    const req = request({ socketPath: lab.socket, method, path, headers: h, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** POST /images/load with a docker-archive from build/images. */
export function loadImage(lab: Lab, file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath: lab.socket,
        method: 'POST',
        path: '/images/load?quiet=1',
        headers: { 'Content-Type': 'application/x-tar' },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString();
        });
        res.on('end', () =>
          res.statusCode === 200 && !text.includes('"error"')
            ? resolve(text)
            : reject(new Error(`load ${file}: ${res.statusCode} ${text}`)),
        );
      },
    );
    req.on('error', reject);
    createReadStream(join(REPO, 'build/images', file)).pipe(req);
  });
}

/** A lab with a running daemon and alpine, busybox and nginx (the stand-in) loaded. */
export async function clientLab(name: string): Promise<Lab> {
  const lab = await Lab.create(name);
  try {
    await lab.startDaemon();
    for (const img of ['alpine.tar', 'nginx.tar']) await loadImage(lab, img);
  } catch (e) {
    await lab.destroy();
    throw e;
  }
  return lab;
}

/** The real docker CLI against the lab's daemon. */
export function docker(
  lab: Lab,
  args: string[],
  opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return run(DOCKER_BIN, args, {
    env: { ...lab.env, ...opts.env },
    timeoutMs: opts.timeoutMs ?? 60_000,
    ...(opts.input !== undefined ? { input: opts.input } : {}),
  });
}

export async function dockerOk(
  lab: Lab,
  args: string[],
  opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  const r = await docker(lab, args, opts);
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout.trim();
}

/** Removes every container and user network through the API, then the lab. */
export async function teardown(lab: Lab | undefined): Promise<void> {
  if (!lab) return;
  try {
    if (await lab.ping()) {
      const cs = (await api(lab, 'GET', '/containers/json?all=1')).json() as Array<{ Id: string }>;
      for (const c of cs)
        await api(lab, 'DELETE', `/containers/${c.Id}?force=1`, undefined, {}, 60_000).catch(() => undefined);
      const ns = (await api(lab, 'GET', '/networks')).json() as Array<{ Id: string; Name: string }>;
      for (const n of ns)
        if (!['bridge', 'host', 'none'].includes(n.Name))
          await api(lab, 'DELETE', `/networks/${n.Id}`).catch(() => undefined);
    }
  } finally {
    // Keep the daemon's log for a post-mortem when asked to.
    if (process.env.COVE_TEST_KEEP_LOGS)
      writeFileSync(join(process.env.COVE_TEST_KEEP_LOGS, `${lab.name}.coved.log`), lab.daemonLog());
    await lab.destroy();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
