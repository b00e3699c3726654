/**
 * The join handshake on MANAGER:2377, over HTTPS with the cluster CA: one TLS
 * connection, one request.
 *
 * 1. The manager's TLS certificate chain carries the cluster CA. The joiner
 *    trusts nothing yet: it checks the CA's digest against the one in its
 *    token (a wrong cluster, or a man in the middle, stops here) and that the
 *    manager's certificate was issued by that CA (the handshake proved the
 *    manager holds its key). Only then does anything go out.
 * 2. It POSTs /join on that connection with the token's secret, a CSR for the
 *    key it made itself (while the handshake was on its way), and its
 *    description.
 * 3. The manager checks the secret against the current tokens (a rotated
 *    token is refused), signs a node certificate, and writes the node record
 *    and its liveness key (on a lease the joiner keeps alive from then on);
 *    for a manager token it also adds the etcd member. It answers with what
 *    the joiner needs to reach etcd.
 *
 * GET /ca (the CA alone) is still served, for a joiner that asks for it.
 */
import type https from 'node:https';
import http from 'node:http';
import type tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CoveError, InvalidParameter, Unavailable } from '../common/errors.js';
import * as lazy from '../common/lazy-builtins.js';
import { caDigest, derDigest } from '../cluster/pki.js';
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
  /** The lease the manager put the node's liveness key on (alive/<id>): the joiner keeps it alive. */
  lease?: { id: string; ttl: number };
  /** swarm init's --default-addr-pool and mask length (the network layer's defaults). */
  defaultAddrPool?: string[];
  subnetSize?: number;
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
  const server = lazy.https().createServer(
    // The chain carries the CA: a joiner checks it against its token's digest before it sends anything.
    { key: opts.key, cert: `${opts.cert.trimEnd()}\n${opts.ca.trimEnd()}\n`, ca: opts.ca },
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

/**
 * Opens the TLS connection to the manager and checks what it presented: its
 * chain's CA must have the token's digest and must have issued the manager's
 * certificate. Resolves once that holds; the socket is then trusted.
 */
function connectPinned(host: string, port: number, digest: string, timeoutMs: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const sock = lazy.tls().connect({ host, port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    const fail = (e: Error) => {
      clearTimeout(timer);
      sock.destroy();
      reject(e);
    };
    const timer = setTimeout(
      () => fail(new Unavailable(`could not reach the manager at ${host}:${port}: timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    sock.once('error', (e) => fail(new Unavailable(`could not reach the manager at ${host}:${port}: ${e.message}`)));
    sock.once('secureConnect', () => {
      let leaf: X509Certificate | undefined;
      let ca: X509Certificate | undefined;
      try {
        // The chain first: asked after getPeerX509Certificate(), node 20 no longer links the issuer.
        const issuer = sock.getPeerCertificate(true).issuerCertificate as tls.DetailedPeerCertificate | undefined;
        leaf = sock.getPeerX509Certificate();
        if (issuer?.raw) ca = new X509Certificate(issuer.raw);
      } catch {
        /* checked below */
      }
      if (!leaf || !ca || !ca.ca) return fail(new Unavailable(`manager ${host}:${port} did not present a cluster CA`));
      if (derDigest(ca.raw) !== digest)
        return fail(new InvalidParameter(`remote CA does not match fingerprint. Expected: ${digest}`));
      const now = Date.now();
      if (
        !leaf.checkIssued(ca) ||
        !leaf.verify(ca.publicKey) ||
        Date.parse(leaf.validFrom) > now ||
        Date.parse(leaf.validTo) < now
      )
        return fail(new Unavailable(`manager ${host}:${port} presented a certificate the cluster CA did not issue`));
      clearTimeout(timer);
      sock.removeAllListeners('error');
      resolve(sock);
    });
  });
}

/**
 * The joiner's side: one TLS connection (see connectPinned), then POST /join on it.
 * `makeRequest` runs while the handshake is on its way (the joiner makes its key then).
 */
export async function requestJoin(
  addr: string,
  digest: string,
  makeRequest: () => Promise<JoinRequest>,
  timeoutMs = 8000,
): Promise<JoinReply> {
  const [host, portStr] = splitHostPort(addr);
  const deadline = Date.now() + timeoutMs;
  const connecting = connectPinned(host, Number(portStr), digest, timeoutMs);
  connecting.catch(() => undefined);
  const body = await makeRequest();
  const sock = await connecting;
  const payload = Buffer.from(JSON.stringify(body));
  // Admission may wait for etcd (a member add for a manager): allow it more than the connection.
  const replyTimeout = Math.max(deadline - Date.now(), 25_000);
  const r = await new Promise<{ status: number; body: JoinReply & { message?: string } }>((resolve, reject) => {
    // HTTP over the TLS socket already checked (no agent: it would open a connection of its own).
    const req = http.request(
      {
        host,
        port: Number(portStr),
        path: '/join',
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'Content-Length': payload.length },
        createConnection: () => sock,
        timeout: replyTimeout,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          sock.destroy();
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as never });
          } catch {
            reject(new Unavailable(`manager ${addr} answered something that is not a swarm join reply`));
          }
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timed out after ${replyTimeout} ms`)));
    req.on('error', (e) => {
      sock.destroy();
      reject(new Unavailable(`could not reach the manager at ${addr}: ${e.message}`));
    });
    req.end(payload);
  });
  if (r.status !== 200)
    throw new CoveError(
      r.body.message ?? `join refused (${r.status})`,
      r.status >= 400 && r.status < 600 ? r.status : 500,
    );
  if (typeof r.body.ca !== 'string' || caDigestOrNull(r.body.ca) !== digest)
    throw new Unavailable(`manager ${addr} answered with another cluster CA`);
  return r.body;
}

function caDigestOrNull(pem: string): string | null {
  try {
    return caDigest(pem);
  } catch {
    return null;
  }
}

export function splitHostPort(addr: string, defaultPort = SWARM_PORT): [string, string] {
  const m = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(addr.trim());
  if (!m || !m[1]) throw new InvalidParameter(`invalid address ${addr}`);
  return [m[1], m[2] ?? String(defaultPort)];
}
