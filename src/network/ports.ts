/**
 * Published ports: host ports picked for hostPort 0 and -P (Docker's
 * ephemeral range 32768-60999), conflicts refused with Docker's wording, and
 * each published port RESERVED by a socket the daemon holds on
 * hostIp:hostPort (what docker-proxy does), so nothing else on the host takes
 * it and `ss -tlnp` shows who owns it. A TCP connection that reaches the
 * reservation socket itself (e.g. to 127.0.0.1 when the driver's DNAT does not
 * cover loopback) is relayed to the container, as docker-proxy does.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { CoveError, InvalidParameter, SystemError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { ResolvedPortBinding } from './driver.js';
import type { PortBinding } from './types.js';
import { tryParseIp } from './ipam/ip.js';

export const EPHEMERAL_RANGE: [number, number] = [32768, 60999];

type Proto = 'tcp' | 'udp' | 'sctp';

interface Reservation {
  owner: string;
  proto: Proto;
  hostIp: string;
  port: number;
  close(): Promise<void>;
}

/** The error text Docker gives for a port Cove itself already published. */
export function portAllocatedMessage(hostIp: string, port: number): string {
  const ip = hostIp.includes(':') ? `[${hostIp}]` : hostIp;
  return `Bind for ${ip}:${port} failed: port is already allocated`;
}

export class PortConflict extends CoveError {
  constructor(message: string) {
    super(message, 500);
  }
}

function normHostIp(ip: string, defaultIp = '0.0.0.0'): string {
  if (ip === '') return defaultIp;
  const p = tryParseIp(ip);
  if (!p) throw new InvalidParameter(`invalid IP address: ${ip}`);
  return ip;
}

function isWildcard(ip: string): boolean {
  return ip === '0.0.0.0' || ip === '::';
}

function family(ip: string): 4 | 6 {
  return ip.includes(':') ? 6 : 4;
}

/** Checks a binding's numbers (the API layer parses "8080-8081:80-81/tcp" into PortBinding). */
export function validateBinding(b: PortBinding): void {
  const ok = (p: number, zero: boolean) => Number.isInteger(p) && p >= (zero ? 0 : 1) && p <= 65535;
  if (!ok(b.containerPort, false) || !ok(b.containerPortEnd, false) || b.containerPortEnd < b.containerPort) {
    throw new InvalidParameter(`invalid port specification: "${b.containerPort}-${b.containerPortEnd}"`);
  }
  if (!ok(b.hostPort, true) || !ok(b.hostPortEnd, true) || (b.hostPortEnd !== 0 && b.hostPortEnd < b.hostPort)) {
    throw new InvalidParameter(
      `invalid hostPort: ${b.hostPort}${b.hostPortEnd && b.hostPortEnd !== b.hostPort ? `-${b.hostPortEnd}` : ''}`,
    );
  }
  if (!['tcp', 'udp', 'sctp'].includes(b.protocol)) throw new InvalidParameter(`invalid proto: ${b.protocol}`);
  normHostIp(b.hostIp);
  const cn = b.containerPortEnd - b.containerPort;
  const hn = (b.hostPortEnd || b.hostPort) - b.hostPort;
  if (b.hostPort !== 0 && cn > 0 && hn !== cn) {
    throw new InvalidParameter(
      `invalid ranges specified for container and host Ports: ${b.containerPort}-${b.containerPortEnd} and ${b.hostPort}-${b.hostPortEnd}`,
    );
  }
}

export interface PortRequest {
  bindings: PortBinding[];
  exposed: Array<{ port: number; protocol: Proto }>;
  publishAll: boolean;
  containerIp: string;
  /** Ports picked before for this sandbox ("tcp/0.0.0.0/80" -> host port), reused when free. */
  picked?: Record<string, number>;
  /** The network's default host address for bindings that name none (bridge option host_binding_ipv4); else the daemon's. */
  defaultHostIp?: string;
}

export class PortMapper {
  private readonly held = new Map<string, Reservation>();
  private readonly watchers = new Set<() => void>();
  private readonly cursor: Record<Proto, number> = {
    tcp: EPHEMERAL_RANGE[0],
    udp: EPHEMERAL_RANGE[0],
    sctp: EPHEMERAL_RANGE[0],
  };

  /**
   * @param dualStack also hold [::]:port when no host address is given (Docker
   *   shows both `0.0.0.0:8080` and `[::]:8080`); connections there are relayed.
   */
  constructor(
    private readonly log: Logger,
    private readonly range: [number, number] = EPHEMERAL_RANGE,
    private readonly dualStack = true,
    /** Address used when a binding names none (dockerd's --ip). */
    private readonly defaultHostIp = '0.0.0.0',
  ) {
    this.cursor = { tcp: range[0], udp: range[0], sctp: range[0] };
  }

  private static key(proto: Proto, hostIp: string, port: number): string {
    return `${proto}/${hostIp}/${port}`;
  }

  /** Another owner's reservation that this one would collide with (same port, same or wildcard address of the family). */
  private conflict(proto: Proto, hostIp: string, port: number): Reservation | undefined {
    for (const r of this.held.values()) {
      if (r.proto !== proto || r.port !== port) continue;
      if (r.hostIp === hostIp) return r;
      if (family(r.hostIp) === family(hostIp) && (isWildcard(r.hostIp) || isWildcard(hostIp))) return r;
    }
    return undefined;
  }

  /**
   * Resolves and reserves every binding of a sandbox. All-or-nothing: on any
   * error the reservations made so far are released.
   */
  /** Reservations run one at a time: the conflict check and the bind of one must not interleave with another's. */
  private reserving: Promise<unknown> = Promise.resolve();

  reserve(
    owner: string,
    req: PortRequest,
  ): Promise<{ bindings: ResolvedPortBinding[]; picked: Record<string, number> }> {
    const run = this.reserving.then(() => this.reserveNow(owner, req));
    this.reserving = run.catch(() => undefined);
    return run;
  }

  private async reserveNow(
    owner: string,
    req: PortRequest,
  ): Promise<{ bindings: ResolvedPortBinding[]; picked: Record<string, number> }> {
    const out: ResolvedPortBinding[] = [];
    const picked: Record<string, number> = {};
    const wanted: Array<{
      proto: Proto;
      hostIp: string;
      containerPort: number;
      hostPort: number;
      hostMax: number;
      alsoV6?: boolean;
    }> = [];
    const defaultHostIp = req.defaultHostIp || this.defaultHostIp;
    for (const b of req.bindings) {
      validateBinding(b);
      const hostIp = normHostIp(b.hostIp, defaultHostIp);
      // No address given: all IPv4 addresses and, like docker-proxy, [::] as well (relayed to the container).
      const alsoV6 = b.hostIp === '' && this.dualStack && defaultHostIp === '0.0.0.0';
      for (let cp = b.containerPort; cp <= b.containerPortEnd; cp++) {
        const i = cp - b.containerPort;
        if (b.hostPort === 0)
          wanted.push({ proto: b.protocol, hostIp, containerPort: cp, hostPort: 0, hostMax: 0, alsoV6 });
        else if (b.containerPortEnd > b.containerPort)
          wanted.push({
            proto: b.protocol,
            hostIp,
            containerPort: cp,
            hostPort: b.hostPort + i,
            hostMax: b.hostPort + i,
            alsoV6,
          });
        else
          wanted.push({
            proto: b.protocol,
            hostIp,
            containerPort: cp,
            hostPort: b.hostPort,
            hostMax: Math.max(b.hostPort, b.hostPortEnd),
            alsoV6,
          });
      }
    }
    if (req.publishAll) {
      for (const e of req.exposed) {
        if (!wanted.some((w) => w.proto === e.protocol && w.containerPort === e.port)) {
          wanted.push({
            proto: e.protocol,
            hostIp: defaultHostIp,
            containerPort: e.port,
            hostPort: 0,
            hostMax: 0,
            alsoV6: this.dualStack && defaultHostIp === '0.0.0.0',
          });
        }
      }
    }
    try {
      for (const w of wanted) {
        const pickKey = `${w.proto}/${w.hostIp}/${w.containerPort}`;
        let port: number;
        if (w.hostPort === 0) {
          port = await this.reserveEphemeral(
            owner,
            w.proto,
            w.hostIp,
            req.containerIp,
            w.containerPort,
            req.picked?.[pickKey],
          );
        } else if (w.hostMax > w.hostPort) {
          port = await this.reserveInRange(
            owner,
            w.proto,
            w.hostIp,
            req.containerIp,
            w.containerPort,
            w.hostPort,
            w.hostMax,
          );
        } else {
          const c = this.conflict(w.proto, w.hostIp, w.hostPort);
          if (c) throw new PortConflict(portAllocatedMessage(w.hostIp, w.hostPort));
          try {
            await this.bind(owner, w.proto, w.hostIp, w.hostPort, req.containerIp, w.containerPort);
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE')
              throw new SystemError(PortMapper.inUseMessage(w.proto, w.hostIp, w.hostPort));
            throw e;
          }
          port = w.hostPort;
        }
        picked[pickKey] = port;
        out.push({
          proto: w.proto,
          containerIp: req.containerIp,
          containerPort: w.containerPort,
          containerPortEnd: w.containerPort,
          hostIp: w.hostIp,
          hostPort: port,
          hostPortEnd: port,
        });
        if (w.alsoV6 && w.proto !== 'sctp' && !this.conflict(w.proto, '::', port)) {
          try {
            await this.bind(owner, w.proto, '::', port, req.containerIp, w.containerPort);
            out.push({
              proto: w.proto,
              containerIp: req.containerIp,
              containerPort: w.containerPort,
              containerPortEnd: w.containerPort,
              hostIp: '::',
              hostPort: port,
              hostPortEnd: port,
            });
          } catch (e) {
            // No IPv6 in the daemon's netns, or someone else holds [::]:port: IPv4 only, as asked for by "all addresses".
            this.log.debug({ port, err: (e as Error).message }, 'no [::] reservation');
          }
        }
      }
    } catch (e) {
      await this.release(owner);
      throw e;
    }
    return { bindings: mergeRanges(out), picked };
  }

  private async reserveEphemeral(
    owner: string,
    proto: Proto,
    hostIp: string,
    cip: string,
    cport: number,
    prefer?: number,
  ): Promise<number> {
    if (prefer && !this.conflict(proto, hostIp, prefer)) {
      try {
        await this.bind(owner, proto, hostIp, prefer, cip, cport);
        return prefer;
      } catch {
        /* taken meanwhile: pick another */
      }
    }
    const [lo, hi] = this.range;
    const n = hi - lo + 1;
    for (let i = 0; i < n; i++) {
      const port = lo + ((this.cursor[proto] - lo + i) % n);
      if (this.conflict(proto, hostIp, port)) continue;
      try {
        await this.bind(owner, proto, hostIp, port, cip, cport);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE') continue;
        throw e;
      }
      this.cursor[proto] = port + 1 > hi ? lo : port + 1;
      return port;
    }
    throw new SystemError(`Bind for ${hostIp}:0 failed: no free port in range ${lo}-${hi}`);
  }

  private async reserveInRange(
    owner: string,
    proto: Proto,
    hostIp: string,
    cip: string,
    cport: number,
    lo: number,
    hi: number,
  ): Promise<number> {
    for (let port = lo; port <= hi; port++) {
      if (this.conflict(proto, hostIp, port)) continue;
      try {
        await this.bind(owner, proto, hostIp, port, cip, cport);
        return port;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE') continue;
        throw e;
      }
    }
    throw new PortConflict(portAllocatedMessage(hostIp, lo));
  }

  /** Opens the reservation socket. Throws the errno error for EADDRINUSE (callers may try another port), else Docker's userland-proxy wording. */
  private async bind(
    owner: string,
    proto: Proto,
    hostIp: string,
    port: number,
    cip: string,
    cport: number,
  ): Promise<void> {
    const fam = family(hostIp);
    let close: () => Promise<void>;
    try {
      if (proto === 'udp') {
        const s: UdpSocket = createSocket({ type: fam === 6 ? 'udp6' : 'udp4', ipv6Only: fam === 6 });
        await new Promise<void>((resolve, reject) => {
          s.once('error', reject);
          s.bind({ address: hostIp, port, exclusive: true }, () => {
            s.off('error', reject);
            resolve();
          });
        });
        s.on('error', (e) => this.log.warn({ err: e.message, port }, 'udp port reservation error'));
        close = () =>
          new Promise<void>((r) => {
            try {
              s.close(() => r());
            } catch {
              r();
            }
          });
      } else {
        // sctp: the socket only holds the port number against other TCP users; Node has no SCTP sockets.
        const srv: Server = createServer((c) => this.relay(c, cip, cport));
        await new Promise<void>((resolve, reject) => {
          srv.once('error', reject);
          srv.listen({ host: hostIp, port, exclusive: true, ipv6Only: fam === 6 }, () => {
            srv.off('error', reject);
            resolve();
          });
        });
        srv.on('error', (e) => this.log.warn({ err: e.message, port }, 'tcp port reservation error'));
        const conns = new Set<Socket>();
        srv.on('connection', (c) => {
          conns.add(c);
          c.on('close', () => conns.delete(c));
        });
        close = () =>
          new Promise<void>((r) => {
            for (const c of conns) c.destroy();
            srv.close(() => r());
          });
      }
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'EADDRINUSE') throw err;
      const what = err.code === 'EADDRNOTAVAIL' ? 'cannot assign requested address' : err.message;
      throw new SystemError(
        `Error starting userland proxy: listen ${proto}${fam} ${fam === 6 ? `[${hostIp}]` : hostIp}:${port}: bind: ${what}`,
      );
    }
    this.held.set(PortMapper.key(proto, hostIp, port), { owner, proto, hostIp, port, close });
    this.changed();
  }

  /** Calls cb after the reservations change (the ingress mesh tells the swarm which ports this node's containers hold); returns the unsubscribe. */
  onChange(cb: () => void): () => void {
    this.watchers.add(cb);
    return () => this.watchers.delete(cb);
  }

  private changed(): void {
    for (const w of this.watchers) {
      try {
        w();
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'port reservation watcher failed');
      }
    }
  }

  private relay(client: Socket, ip: string, port: number): void {
    const up = connect({ host: ip, port });
    client.pipe(up).pipe(client);
    const kill = () => {
      client.destroy();
      up.destroy();
    };
    client.on('error', kill);
    up.on('error', kill);
  }

  /** Closes every reservation of the owner. */
  async release(owner: string): Promise<void> {
    const mine = [...this.held.entries()].filter(([, r]) => r.owner === owner);
    for (const [k] of mine) this.held.delete(k);
    await Promise.all(mine.map(([, r]) => r.close().catch(() => undefined)));
    if (mine.length) this.changed();
  }

  /** Error text for a port already taken by a non-Cove process (bind said EADDRINUSE). */
  static inUseMessage(proto: Proto, hostIp: string, port: number): string {
    const fam = family(hostIp);
    return `Error starting userland proxy: listen ${proto}${fam} ${fam === 6 ? `[${hostIp}]` : hostIp}:${port}: bind: address already in use`;
  }

  async closeAll(): Promise<void> {
    const all = [...this.held.values()];
    this.held.clear();
    await Promise.all(all.map((r) => r.close().catch(() => undefined)));
  }

  /** Reservations held now (for tests and debugging). */
  list(owner?: string): Array<{ proto: Proto; hostIp: string; port: number; owner: string }> {
    return [...this.held.values()]
      .filter((r) => !owner || r.owner === owner)
      .map(({ proto, hostIp, port, owner: o }) => ({ proto, hostIp, port, owner: o }));
  }
}

/**
 * The bindings a driver programs: an IPv4 container behind [::]:port is served
 * by the relay only (NAT cannot turn IPv6 into IPv4).
 */
export function driverBindings(list: ResolvedPortBinding[]): ResolvedPortBinding[] {
  return list.filter((b) => !(family(b.hostIp) === 6 && !b.containerIp.includes(':')));
}

/** Joins consecutive single-port bindings (same proto, IPs, both ports +1) into ranges, so drivers program one rule per range. */
export function mergeRanges(list: ResolvedPortBinding[]): ResolvedPortBinding[] {
  const out: ResolvedPortBinding[] = [];
  for (const b of list) {
    const last = out[out.length - 1];
    if (
      last &&
      last.proto === b.proto &&
      last.hostIp === b.hostIp &&
      last.containerIp === b.containerIp &&
      b.containerPort === last.containerPortEnd + 1 &&
      b.hostPort === last.hostPortEnd + 1
    ) {
      last.containerPortEnd = b.containerPortEnd;
      last.hostPortEnd = b.hostPortEnd;
    } else {
      out.push({ ...b });
    }
  }
  return out;
}
