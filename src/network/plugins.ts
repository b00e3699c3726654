/**
 * Docker's v1 plugin discovery and wire client (moby pkg/plugins), for
 * third-party network drivers.
 *
 * Discovery: a plugin named N is a unix socket `<dir>/N.sock` or
 * `<dir>/N/N.sock`, else a spec file `<dir>/N.spec` (one URL: unix:///path or
 * tcp://host:port) or `<dir>/N.json` ({"Name", "Addr"}), in the plugin
 * directories (Docker's: /run/docker/plugins for sockets, /etc/docker/plugins
 * and /usr/lib/docker/plugins for specs). Sockets are preferred over specs in
 * every directory, like Docker.
 *
 * Wire: `POST /<Method>` with a JSON body, `Accept` and `Content-Type`
 * application/vnd.docker.plugins.v1.2+json. A non-200 answer carries
 * `{"Err": "..."}` (or plain text); a 200 answer may also carry `Err`. Every
 * call has a deadline, so a plugin that never answers is a clear error
 * instead of a hung daemon.
 */
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Conflict, CoveError, Forbidden, InvalidParameter, NotFound, SystemError } from '../common/errors.js';

export const PLUGIN_MIME = 'application/vnd.docker.plugins.v1.2+json';
export const DEFAULT_PLUGIN_DIRS = ['/run/docker/plugins', '/etc/docker/plugins', '/usr/lib/docker/plugins'];
/** Docker's plugin HTTP client timeout (pkg/plugins defaultTimeOut). */
export const DEFAULT_PLUGIN_TIMEOUT_MS = 30_000;

/** Where a plugin listens. */
export type PluginAddr = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export interface FoundPlugin {
  name: string;
  addr: PluginAddr;
  /** The socket or spec file it was found through (logs, errors). */
  source: string;
}

function isSocket(p: string): boolean {
  try {
    return statSync(p).isSocket();
  } catch {
    return false;
  }
}

/** Plugin names are file names: no path separators, no dot-only names. */
export function isPluginFileName(name: string): boolean {
  return name !== '' && name.length <= 255 && !/[/\\\0\s]/.test(name) && !/^\.+$/.test(name);
}

/** Parses a spec URL (unix:///run/x.sock, tcp://127.0.0.1:8080, http://...). */
export function parsePluginUrl(raw: string, source: string): PluginAddr {
  const s = raw.trim();
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new InvalidParameter(`plugin spec ${source}: invalid address ${JSON.stringify(s)}`);
  }
  if (u.protocol === 'unix:') {
    const path = decodeURIComponent(u.pathname);
    if (!path.startsWith('/'))
      throw new InvalidParameter(`plugin spec ${source}: unix address must be an absolute path`);
    return { kind: 'unix', path };
  }
  if (u.protocol === 'tcp:' || u.protocol === 'http:') {
    const port = Number(u.port || (u.protocol === 'http:' ? 80 : NaN));
    if (!u.hostname || !Number.isInteger(port))
      throw new InvalidParameter(`plugin spec ${source}: tcp address needs host:port`);
    return { kind: 'tcp', host: u.hostname.replace(/^\[|\]$/g, ''), port };
  }
  throw new InvalidParameter(`plugin spec ${source}: unknown protocol ${u.protocol.replace(/:$/, '')}`);
}

/**
 * Looks plugin `name` up in `dirs` (no I/O beyond stat/read of the candidate
 * paths). Undefined when there is none (or the name cannot be a file name);
 * InvalidParameter for a broken spec file.
 */
export function findPlugin(name: string, dirs: string[] = DEFAULT_PLUGIN_DIRS): FoundPlugin | undefined {
  if (!isPluginFileName(name)) return undefined;
  for (const dir of dirs) {
    for (const p of [join(dir, `${name}.sock`), join(dir, name, `${name}.sock`)]) {
      if (isSocket(p)) return { name, addr: { kind: 'unix', path: p }, source: p };
    }
  }
  for (const dir of dirs) {
    for (const ext of ['.spec', '.json']) {
      for (const p of [join(dir, name + ext), join(dir, name, name + ext)]) {
        if (!existsSync(p)) continue;
        const text = readFileSync(p, 'utf8');
        if (ext === '.spec') return { name, addr: parsePluginUrl(text, p), source: p };
        let spec: { Name?: unknown; Addr?: unknown };
        try {
          spec = JSON.parse(text) as typeof spec;
        } catch (e) {
          throw new InvalidParameter(`plugin spec ${p}: ${(e as Error).message}`);
        }
        if (typeof spec.Addr !== 'string') throw new InvalidParameter(`plugin spec ${p}: no Addr`);
        return { name, addr: parsePluginUrl(spec.Addr, p), source: p };
      }
    }
  }
  return undefined;
}

export function describeAddr(a: PluginAddr): string {
  return a.kind === 'unix' ? `unix://${a.path}` : `tcp://${a.host}:${a.port}`;
}

/** Docker's statusError mapped onto Cove's errors (moby errdefs by HTTP status). */
function errorFor(status: number, message: string): CoveError {
  switch (status) {
    case 400:
      return new InvalidParameter(message);
    case 403:
      return new Forbidden(message);
    case 404:
      return new NotFound(message);
    case 409:
      return new Conflict(message);
    default:
      return new SystemError(message);
  }
}

/** The error of a call the plugin does not implement (404): optional methods tolerate it. */
export class PluginMethodNotFound extends NotFound {}

export class PluginClient {
  constructor(
    readonly name: string,
    readonly addr: PluginAddr,
    readonly timeoutMs: number = DEFAULT_PLUGIN_TIMEOUT_MS,
  ) {}

  /**
   * POST /<method> with `body` as JSON; resolves with the decoded answer.
   * Throws `<method>: <Err>` (HTTP error answer) or `remote: <Err>` (a 200
   * answer with Err set), like moby; a deadline or connection failure says
   * which plugin and address.
   */
  async call<T = Record<string, unknown>>(method: string, body: unknown = {}): Promise<T> {
    const payload = Buffer.from(JSON.stringify(body ?? {}));
    const { status, text } = await this.post(method, payload);
    if (status !== 200) {
      let msg = text.trim();
      try {
        const j = JSON.parse(text) as { Err?: unknown };
        if (typeof j.Err === 'string' && j.Err !== '') msg = j.Err;
      } catch {
        /* plain text answer */
      }
      const m = `${method}: ${msg || `HTTP ${status}`}`;
      if (status === 404) throw new PluginMethodNotFound(m);
      throw errorFor(status, m);
    }
    let out: unknown;
    try {
      out = text.trim() === '' ? {} : JSON.parse(text);
    } catch {
      throw new SystemError(`${method}: plugin ${this.name} answered with invalid JSON: ${text.slice(0, 200)}`);
    }
    if (out === null || typeof out !== 'object' || Array.isArray(out)) {
      throw new SystemError(`${method}: plugin ${this.name} answered with a non-object: ${text.slice(0, 200)}`);
    }
    const err = (out as { Err?: unknown }).Err;
    if (typeof err === 'string' && err !== '') throw new SystemError(`remote: ${err}`);
    return out as T;
  }

  private post(method: string, payload: Buffer): Promise<{ status: number; text: string }> {
    const where = describeAddr(this.addr);
    return new Promise((resolve, reject) => {
      let settled = false;
      let req: ClientRequest | undefined;
      const fail = (e: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req?.destroy();
        reject(e);
      };
      // One deadline for the whole exchange (connect, send, answer), not an idle timer.
      const timer = setTimeout(() => {
        fail(
          new SystemError(
            `${method}: plugin ${this.name} did not answer within ${formatMs(this.timeoutMs)} (${where})`,
          ),
        );
      }, this.timeoutMs);
      const target =
        this.addr.kind === 'unix' ? { socketPath: this.addr.path } : { host: this.addr.host, port: this.addr.port };
      req = request(
        {
          ...target,
          method: 'POST',
          path: `/${method}`,
          agent: false,
          headers: {
            Accept: PLUGIN_MIME,
            'Content-Type': PLUGIN_MIME,
            'Content-Length': payload.length,
            Host: 'plugin',
          },
        },
        (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (e) => fail(new SystemError(`${method}: plugin ${this.name} (${where}): ${e.message}`)));
          res.on('end', () => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
          });
        },
      );
      req.on('error', (e: NodeJS.ErrnoException) => {
        const why = e.code === 'ECONNREFUSED' || e.code === 'ENOENT' ? 'not listening' : e.message;
        fail(new SystemError(`${method}: plugin ${this.name} (${where}): ${why}`));
      });
      req.end(payload);
    });
  }
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** What Plugin.Activate says a plugin implements. */
export async function activatePlugin(client: PluginClient): Promise<string[]> {
  const r = await client.call<{ Implements?: unknown }>('Plugin.Activate', {});
  const impl = Array.isArray(r.Implements) ? r.Implements.filter((x): x is string => typeof x === 'string') : [];
  return impl;
}
