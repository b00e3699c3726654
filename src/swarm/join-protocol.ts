/**
 * The join handshake on MANAGER:2377, over HTTPS with the cluster CA.
 *
 * 1. The joiner fetches GET /ca without trusting anything yet, and checks the
 *    certificate's digest against the one in its token: a wrong cluster (or a
 *    man in the middle) stops here.
 * 2. It then talks to the manager with that CA pinned (the manager's own
 *    certificate must chain to it) and POSTs /join with the token's secret,
 *    a CSR for the key it made itself, and its description.
 * 3. The manager checks the secret against the current tokens (a rotated
 *    token is refused), signs a node certificate, creates the etcd user (and
 *    member, for a manager token) and the node record, and answers with what
 *    the joiner needs to reach etcd.
 */
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CoveError, InvalidParameter, Unavailable } from '../common/errors.js';
import { caDigest } from '../cluster/pki.js';
import type { NodeRole } from '../cluster/membership.js';

export const SWARM_PORT = 2377;

export interface JoinRequest {
  secret: string;
  csr: string;
  hostname: string;
  addr: string;
  dataPathAddr: string;
  availability: 'active' | 'pause' | 'drain';
  engineVersion: string;
  nanoCpus: number;
  memoryBytes: number;
}

export interface JoinReply {
  nodeId: string;
  clusterId: string;
  role: NodeRole;
  cert: string;
  ca: string;
  /** Client URLs of the etcd members. */
  endpoints: string[];
  /** For a manager: etcd's --initial-cluster for the new member. */
  initialCluster?: string;
  managers: Array<{ NodeID: string; Addr: string }>;
}

export type JoinHandler = (req: JoinRequest) => Promise<JoinReply>;

/** The manager's side: serves /ca and /join until close(). */
export function startJoinServer(opts: {
  host: string;
  port: number;
  ca: string;
  cert: string;
  key: string;
  onJoin: JoinHandler;
  log: { warn: (o: object, m: string) => void };
}): Promise<https.Server> {
  const server = https.createServer(
    { key: opts.key, cert: opts.cert, ca: opts.ca },
    (req: IncomingMessage, res: ServerResponse) => {
      const send = (status: number, body: unknown) => {
        const b = Buffer.from(JSON.stringify(body));
        res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': b.length });
        res.end(b);
      };
      if (req.method === 'GET' && req.url === '/ca') return send(200, { ca: opts.ca });
      if (req.method !== 'POST' || req.url !== '/join') return send(404, { message: 'not found' });
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > 64 * 1024) req.destroy();
        else chunks.push(c);
      });
      req.on('end', () => {
        let body: JoinRequest;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as JoinRequest;
        } catch {
          return send(400, { message: 'malformed join request' });
        }
        opts.onJoin(body).then(
          (r) => send(200, r),
          (e: unknown) => {
            opts.log.warn({ err: e, addr: body.addr }, 'join refused');
            send(e instanceof CoveError ? e.status : 500, { message: e instanceof Error ? e.message : String(e) });
          },
        );
      });
      req.on('error', () => undefined);
    },
  );
  server.on('tlsClientError', () => undefined);
  server.on('clientError', (_e, sock) => sock.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function call<T>(
  addr: string,
  path: string,
  opts: { method: 'GET' | 'POST'; body?: unknown; ca?: string; timeoutMs: number },
): Promise<{ status: number; body: T; peerCa?: string }> {
  const [host, portStr] = splitHostPort(addr);
  const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host,
        port: Number(portStr),
        path,
        method: opts.method,
        headers: payload ? { 'Content-Type': 'application/json', 'Content-Length': payload.length } : {},
        // Step 1 trusts nothing and checks the digest itself; step 2 pins the CA.
        rejectUnauthorized: opts.ca !== undefined,
        ...(opts.ca ? { ca: opts.ca, checkServerIdentity: () => undefined } : {}),
        timeout: opts.timeoutMs,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as T });
          } catch {
            reject(new Unavailable(`manager ${addr} answered something that is not a swarm join reply`));
          }
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timed out after ${opts.timeoutMs} ms`)));
    req.on('error', (e) => reject(new Unavailable(`could not reach the manager at ${addr}: ${e.message}`)));
    req.end(payload);
  });
}

/** The joiner's side: checks the CA against the token's digest, then asks to join. */
export async function requestJoin(
  addr: string,
  digest: string,
  req: JoinRequest,
  timeoutMs = 8000,
): Promise<JoinReply> {
  const deadline = Date.now() + timeoutMs;
  const left = () => Math.max(500, deadline - Date.now());
  const ca = await call<{ ca?: string }>(addr, '/ca', { method: 'GET', timeoutMs: left() });
  if (ca.status !== 200 || typeof ca.body.ca !== 'string')
    throw new Unavailable(`manager ${addr} did not present a cluster CA`);
  let got: string;
  try {
    got = caDigest(ca.body.ca);
  } catch {
    throw new Unavailable(`manager ${addr} presented an invalid CA certificate`);
  }
  if (got !== digest) throw new InvalidParameter(`remote CA does not match fingerprint. Expected: ${digest}`);
  const r = await call<JoinReply & { message?: string }>(addr, '/join', {
    method: 'POST',
    body: req,
    ca: ca.body.ca,
    timeoutMs: Math.max(left(), 25_000),
  });
  if (r.status !== 200)
    throw new CoveError(
      r.body.message ?? `join refused (${r.status})`,
      r.status >= 400 && r.status < 600 ? r.status : 500,
    );
  return r.body;
}

export function splitHostPort(addr: string, defaultPort = SWARM_PORT): [string, string] {
  const m = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(addr.trim());
  if (!m || !m[1]) throw new InvalidParameter(`invalid address ${addr}`);
  return [m[1], m[2] ?? String(defaultPort)];
}
