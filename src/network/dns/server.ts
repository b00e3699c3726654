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
import { errorResponse, isTruncated, RCODE_SERVFAIL } from './packet.js';
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
}

interface Attached {
  udp: UdpSocket;
  tcp: Server;
  conns: Set<Socket>;
}

export class DnsServer {
  private readonly attached = new Map<string, Attached>();
  private readonly upstreamTimeout: number;
  private readonly totalTimeout: number;
  /** Counters for debugging and tests. */
  readonly stats = { answered: 0, forwarded: 0, upstreamFailures: 0 };

  constructor(private readonly opts: DnsServerOptions) {
    this.upstreamTimeout = opts.upstreamTimeoutMs ?? 1000;
    this.totalTimeout = opts.totalTimeoutMs ?? 2500;
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
      udp.bind(opts as never, () => { udp.off('error', reject); resolve(); });
    }).catch((e) => { closeFd(tcpFd); throw e; });
    const conns = new Set<Socket>();
    const tcp = createServer((c) => {
      conns.add(c);
      c.on('close', () => conns.delete(c));
      this.onTcp(sandboxId, c);
    });
    tcp.on('error', (e) => this.opts.log.warn({ sandbox: sandboxId, err: e.message }, 'dns tcp socket error'));
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        const opts = typeof tcpFd === 'number' ? { fd: tcpFd } : { host: tcpFd.address, port: tcpFd.port };
        tcp.listen(opts, () => { tcp.off('error', reject); resolve(); });
      });
    } catch (e) {
      udp.close();
      closeFd(tcpFd);
      throw e;
    }
    this.attached.set(sandboxId, { udp, tcp, conns });
  }

  /** Closes the sandbox's sockets (idempotent). */
  async detach(sandboxId: string): Promise<void> {
    const a = this.attached.get(sandboxId);
    if (!a) return;
    this.attached.delete(sandboxId);
    for (const c of a.conns) c.destroy();
    await Promise.all([
      new Promise<void>((r) => { try { a.udp.close(() => r()); } catch { r(); } }),
      new Promise<void>((r) => a.tcp.close(() => r())),
    ]);
  }

  /** Where a sandbox's sockets listen (as seen from inside its netns). */
  addressOf(sandboxId: string): { udp: { address: string; port: number }; tcp: { address: string; port: number } } | undefined {
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

  private onUdp(sandboxId: string, sock: UdpSocket, msg: Buffer, addr: string, port: number): void {
    const res = this.opts.resolver.resolve(sandboxId, msg);
    if (res.kind === 'answer') {
      this.stats.answered++;
      sock.send(res.response, port, addr);
      return;
    }
    this.stats.forwarded++;
    void this.forward(msg, res.servers, false).then((reply) => {
      if (reply && this.attached.get(sandboxId)?.udp === sock) sock.send(reply, port, addr);
    });
  }

  private onTcp(sandboxId: string, c: Socket): void {
    let buf: Buffer = Buffer.alloc(0);
    c.setTimeout(10_000, () => c.destroy());
    c.on('error', () => c.destroy());
    c.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        const res = this.opts.resolver.resolve(sandboxId, msg);
        if (res.kind === 'answer') {
          this.stats.answered++;
          writeFramed(c, res.response);
        } else {
          this.stats.forwarded++;
          void this.forward(Buffer.from(msg), res.servers, true).then((reply) => {
            if (reply && !c.destroyed) writeFramed(c, reply);
          });
        }
      }
    });
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

function literalLookup(address: string, _family: unknown, cb: (err: Error | null, address: string, family: number) => void): void {
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
  } catch { /* already gone */ }
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
    const done = (e: Error | undefined, reply?: Buffer) => {
      clearTimeout(timer);
      try { s.close(); } catch { /* closed */ }
      if (e) reject(e);
      else resolve(reply!);
    };
    const timer = setTimeout(() => done(new Error('timeout')), timeoutMs);
    s.on('error', (e) => done(e));
    s.on('message', (reply) => {
      if (reply.length >= 2 && reply.readUInt16BE(0) === msg.readUInt16BE(0)) done(undefined, reply);
    });
    // connect() so an ICMP port-unreachable surfaces at once as ECONNREFUSED.
    s.connect(port, host, () => s.send(msg, (e) => { if (e) done(e); }));
  });
}

function tcpQuery(host: string, port: number, msg: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const c = connect({ host, port });
    let buf: Buffer = Buffer.alloc(0);
    const done = (e: Error | undefined, reply?: Buffer) => {
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
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(undefined, buf.subarray(2, 2 + buf.readUInt16BE(0)));
    });
    c.on('end', () => done(new Error('connection closed')));
  });
}

export { isTruncated };
