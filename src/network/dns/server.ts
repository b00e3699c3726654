/**
 * The embedded DNS's sockets. For each sandbox on a user-defined network the
 * daemon holds a UDP and a TCP socket on 127.0.0.11:53 INSIDE the sandbox's
 * netns (made on a throwaway thread by src/kernel, handed over as fds), all
 * served by one Resolver in this process: the socket a query arrives on says
 * which sandbox asks. Queries the tables cannot answer are relayed, raw bytes
 * and original ID, to the upstream servers from the daemon's own netns (so a
 * loopback upstream like 127.0.0.53 works); when none answers in time the
 * client gets SERVFAIL at once instead of silence.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { closeSync } from 'node:fs';
import type { Logger } from '../../common/log.js';
import { errorResponse, isTruncated, screenQuery, RCODE_FORMERR, RCODE_NOTIMP, RCODE_SERVFAIL } from './packet.js';
import type { Resolver } from './resolver.js';

/** An fd made inside the sandbox's netns, or (tests without root) an address to bind in this netns. */
export type SocketSource = number | { address: string; port: number };

export interface DnsSocketFactory {
  udp(netnsPath: string, ip: string, port: number): SocketSource;
  tcp(netnsPath: string, ip: string, port: number): SocketSource;
}

export interface DnsServerOptions {
  resolver: Resolver;
  sockets: DnsSocketFactory;
  log: Logger;
  /** Time one upstream server gets before the next is tried. */
  upstreamTimeoutMs?: number;
  /** Total time a forwarded query may take before SERVFAIL. */
  totalTimeoutMs?: number;
  /** Address and port to bind inside each sandbox (tests may use others). */
  listenIp?: string;
  listenPort?: number;
  /** Caps (see DNS_LIMITS); tests lower them. */
  limits?: Partial<DnsLimits>;
}

/**
 * What one sandbox, and all together, may hold of the daemon's file
 * descriptors (its limit is 20,000 here): each TCP connection is one fd, each
 * forward in flight one more (its upstream socket). Past a cap a new TCP
 * connection is closed at once and a new forward gets SERVFAIL at once, so a
 * flooding container starves neither the daemon nor the other containers.
 */
export interface DnsLimits {
  tcpPerSandbox: number;
  tcpTotal: number;
  forwardsPerSandbox: number;
  forwardsTotal: number;
}
export const DNS_LIMITS: DnsLimits = {
  tcpPerSandbox: 64,
  tcpTotal: 1024,
  forwardsPerSandbox: 256,
  forwardsTotal: 2048,
};

interface Attached {
  udp: UdpSocket;
  tcp: Server;
  conns: Set<Socket>;
  forwards: number;
}

export class DnsServer {
  private readonly attached = new Map<string, Attached>();
  private readonly upstreamTimeout: number;
  private readonly totalTimeout: number;
  readonly limits: DnsLimits;
  private tcpOpen = 0;
  private forwardsOpen = 0;
  private lastCapWarning = 0;
  /** Counters for debugging and tests. */
  readonly stats = {
    answered: 0,
    forwarded: 0,
    upstreamFailures: 0,
    formerr: 0,
    dropped: 0,
    refusedOverCap: 0,
    handlerErrors: 0,
  };

  constructor(private readonly opts: DnsServerOptions) {
    this.upstreamTimeout = opts.upstreamTimeoutMs ?? 1000;
    this.totalTimeout = opts.totalTimeoutMs ?? 2500;
    this.limits = { ...DNS_LIMITS, ...opts.limits };
  }

  /** Connections and forwards held now (tests check they come back to zero). */
  get load(): { tcp: number; forwards: number } {
    return { tcp: this.tcpOpen, forwards: this.forwardsOpen };
  }

  isAttached(sandboxId: string): boolean {
    return this.attached.has(sandboxId);
  }

  /** Opens the sandbox's sockets (idempotent). */
  async attach(sandboxId: string, netnsPath: string): Promise<void> {
    if (this.attached.has(sandboxId)) return;
    const ip = this.opts.listenIp ?? '127.0.0.11';
    const port = this.opts.listenPort ?? 53;
    const udpFd = this.opts.sockets.udp(netnsPath, ip, port);
    let tcpFd: SocketSource;
    try {
      tcpFd = this.opts.sockets.tcp(netnsPath, ip, port);
    } catch (e) {
      closeFd(udpFd);
      throw e;
    }
    // Replies go to the asker's literal address: skip dgram's dns.lookup on every send.
    const udp = createSocket({ type: 'udp4', lookup: literalLookup as never });
    udp.on('message', (msg, rinfo) => this.onUdp(sandboxId, udp, msg, rinfo.address, rinfo.port));
    udp.on('error', (e) => this.opts.log.warn({ sandbox: sandboxId, err: e.message }, 'dns udp socket error'));
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      const opts = typeof udpFd === 'number' ? { fd: udpFd } : { address: udpFd.address, port: udpFd.port };
      udp.bind(opts as never, () => {
        udp.off('error', reject);
        resolve();
      });
    }).catch((e) => {
      closeFd(tcpFd);
      throw e;
    });
    const conns = new Set<Socket>();
    const tcp = createServer((c) => {
      c.on('error', () => c.destroy());
      if (conns.size >= this.limits.tcpPerSandbox || this.tcpOpen >= this.limits.tcpTotal) {
        this.overCap(sandboxId, 'tcp connections');
        c.destroy();
        return;
      }
      conns.add(c);
      this.tcpOpen++;
      c.on('close', () => {
        conns.delete(c);
        this.tcpOpen--;
      });
      this.onTcp(sandboxId, c);
    });
    tcp.on('error', (e) => this.opts.log.warn({ sandbox: sandboxId, err: e.message }, 'dns tcp socket error'));
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        const opts = typeof tcpFd === 'number' ? { fd: tcpFd } : { host: tcpFd.address, port: tcpFd.port };
        tcp.listen(opts, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      udp.close();
      closeFd(tcpFd);
      throw e;
    }
    this.attached.set(sandboxId, { udp, tcp, conns, forwards: 0 });
  }

  /** Closes the sandbox's sockets (idempotent). */
  async detach(sandboxId: string): Promise<void> {
    const a = this.attached.get(sandboxId);
    if (!a) return;
    this.attached.delete(sandboxId);
    for (const c of a.conns) c.destroy();
    await Promise.all([
      new Promise<void>((r) => {
        try {
          a.udp.close(() => r());
        } catch {
          r();
        }
      }),
      new Promise<void>((r) => a.tcp.close(() => r())),
    ]);
  }

  /** Where a sandbox's sockets listen (as seen from inside its netns). */
  addressOf(
    sandboxId: string,
  ): { udp: { address: string; port: number }; tcp: { address: string; port: number } } | undefined {
    const a = this.attached.get(sandboxId);
    if (!a) return undefined;
    const u = a.udp.address();
    const t = a.tcp.address();
    if (!t || typeof t === 'string') return undefined;
    return { udp: { address: u.address, port: u.port }, tcp: { address: t.address, port: t.port } };
  }

  async close(): Promise<void> {
    await Promise.all([...this.attached.keys()].map((id) => this.detach(id)));
  }

  /** A datagram: answered, relayed or refused; nothing in it may throw out of the socket's handler. */
  private onUdp(sandboxId: string, sock: UdpSocket, msg: Buffer, addr: string, port: number): void {
    const send = (b: Buffer) => {
      try {
        sock.send(b, port, addr);
      } catch {
        /* socket closed by a detach meanwhile */
      }
    };
    try {
      this.handle(sandboxId, msg, send);
    } catch (e) {
      this.handlerFailed(sandboxId, e);
    }
  }

  private onTcp(sandboxId: string, c: Socket): void {
    let buf: Buffer = Buffer.alloc(0);
    c.setTimeout(10_000, () => c.destroy());
    const send = (b: Buffer) => {
      if (!c.destroyed) writeFramed(c, b);
    };
    c.on('data', (d: Buffer) => {
      try {
        buf = buf.length ? Buffer.concat([buf, d]) : d;
        while (buf.length >= 2) {
          const len = buf.readUInt16BE(0);
          // A length that cannot hold a header is a broken stream: nothing after it can be framed again.
          if (len < 12) {
            this.stats.dropped++;
            c.destroy();
            return;
          }
          if (buf.length < 2 + len) break;
          const msg = Buffer.from(buf.subarray(2, 2 + len));
          buf = buf.subarray(2 + len);
          this.handle(sandboxId, msg, send, true);
        }
      } catch (e) {
        this.handlerFailed(sandboxId, e);
        c.destroy();
      }
    });
  }

  /** One message from one transport: screened, then answered locally or forwarded within the caps. */
  private handle(sandboxId: string, msg: Buffer, send: (b: Buffer) => void, overTcp = false): void {
    const verdict = screenQuery(msg);
    if (verdict === 'drop') {
      this.stats.dropped++;
      return;
    }
    if (verdict !== 'ok') {
      this.stats.formerr++;
      const r = errorResponse(msg, verdict === 'notimp' ? RCODE_NOTIMP : RCODE_FORMERR);
      if (r) send(r);
      return;
    }
    const res = this.opts.resolver.resolve(sandboxId, msg);
    if (res.kind === 'answer') {
      this.stats.answered++;
      send(res.response);
      return;
    }
    const a = this.attached.get(sandboxId);
    if (!a) return;
    if (a.forwards >= this.limits.forwardsPerSandbox || this.forwardsOpen >= this.limits.forwardsTotal) {
      this.overCap(sandboxId, 'forwarded queries');
      const r = errorResponse(msg, RCODE_SERVFAIL);
      if (r) send(r);
      return;
    }
    this.stats.forwarded++;
    a.forwards++;
    this.forwardsOpen++;
    this.forward(msg, res.servers, overTcp)
      .then(
        (reply) => {
          if (reply && this.attached.get(sandboxId) === a) send(reply);
        },
        (e: unknown) => this.handlerFailed(sandboxId, e),
      )
      .finally(() => {
        a.forwards--;
        this.forwardsOpen--;
      });
  }

  private overCap(sandboxId: string, what: string): void {
    this.stats.refusedOverCap++;
    const now = Date.now();
    if (now - this.lastCapWarning < 2000) return;
    this.lastCapWarning = now;
    this.opts.log.warn(
      { sandbox: sandboxId, limits: this.limits },
      `dns: too many ${what}; refusing more until some finish`,
    );
  }

  private handlerFailed(sandboxId: string, e: unknown): void {
    this.stats.handlerErrors++;
    this.opts.log.error(
      { sandbox: sandboxId, err: e instanceof Error ? e.stack : String(e) },
      'dns: handler failed on a message (dropped it)',
    );
  }

  /**
   * Relays the raw query to each server in turn; returns the first reply, or
   * a SERVFAIL built from the query when none answers within the budget.
   */
  async forward(msg: Buffer, servers: string[], overTcp: boolean): Promise<Buffer | undefined> {
    const deadline = Date.now() + this.totalTimeout;
    for (const server of servers) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const timeout = Math.min(this.upstreamTimeout, left);
      try {
        const { host, port } = splitServer(server);
        const reply = overTcp ? await tcpQuery(host, port, msg, timeout) : await udpQuery(host, port, msg, timeout);
        // A truncated UDP answer is relayed as is: the client retries over TCP, which we forward over TCP.
        if (reply.length >= 2 && reply.readUInt16BE(0) === msg.readUInt16BE(0)) return reply;
      } catch (e) {
        this.stats.upstreamFailures++;
        this.opts.log.debug({ server, err: (e as Error).message }, 'dns upstream failed');
      }
    }
    return errorResponse(msg, RCODE_SERVFAIL);
  }
}

function literalLookup(
  address: string,
  _family: unknown,
  cb: (err: Error | null, address: string, family: number) => void,
): void {
  cb(null, address, 4);
}

function writeFramed(c: Socket, msg: Buffer): void {
  const len = Buffer.allocUnsafe(2);
  len.writeUInt16BE(msg.length, 0);
  c.write(Buffer.concat([len, msg]));
}

function closeFd(fd: SocketSource): void {
  if (typeof fd !== 'number') return;
  try {
    closeSync(fd);
  } catch {
    /* already gone */
  }
}

/** "1.2.3.4", "1.2.3.4:5353", "[::1]:53", "::1" -> host and port. */
export function splitServer(s: string): { host: string; port: number } {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (v6) return { host: v6[1]!, port: v6[2] ? Number(v6[2]) : 53 };
  const v4 = /^([\d.]+):(\d+)$/.exec(s);
  if (v4) return { host: v4[1]!, port: Number(v4[2]) };
  return { host: s, port: 53 };
}

function udpQuery(host: string, port: number, msg: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    let finished = false;
    const done = (e: Error | undefined, reply?: Buffer) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      try {
        s.close();
      } catch {
        /* closed */
      }
      if (e) reject(e);
      else resolve(reply!);
    };
    const timer = setTimeout(() => done(new Error('timeout')), timeoutMs);
    s.on('error', (e) => done(e));
    s.on('message', (reply) => {
      if (reply.length >= 2 && reply.readUInt16BE(0) === msg.readUInt16BE(0)) done(undefined, reply);
    });
    // connect() so an ICMP port-unreachable surfaces at once as ECONNREFUSED. A failed
    // connect (ENETUNREACH: no route out) comes to this callback, not to 'error':
    // sending on the unconnected socket then would throw from a nextTick and end the process.
    try {
      s.connect(port, host, (err?: Error) => {
        if (err) return done(err);
        try {
          s.send(msg, (e) => {
            if (e) done(e);
          });
        } catch (e) {
          done(e as Error);
        }
      });
    } catch (e) {
      done(e as Error);
    }
  });
}

function tcpQuery(host: string, port: number, msg: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let c: Socket;
    try {
      c = connect({ host, port });
    } catch (e) {
      reject(e as Error);
      return;
    }
    let buf: Buffer = Buffer.alloc(0);
    let finished = false;
    const done = (e: Error | undefined, reply?: Buffer) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      c.destroy();
      if (e) reject(e);
      else resolve(reply!);
    };
    const timer = setTimeout(() => done(new Error('timeout')), timeoutMs);
    c.on('error', (e) => done(e));
    c.on('connect', () => writeFramed(c, msg));
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0))
        done(undefined, buf.subarray(2, 2 + buf.readUInt16BE(0)));
    });
    c.on('end', () => done(new Error('connection closed')));
  });
}

export { isTruncated };
