/**
 * The embedded DNS's name tables and answers (no sockets here). The
 * controller publishes, per network, which names map to which addresses, and
 * per sandbox, which networks it may see (in its endpoint order) and which
 * upstream servers it forwards to. A query is answered from the first of the
 * asker's networks that knows the name (libnetwork's order); names nobody
 * knows are left to the upstream servers.
 */
import { formatIp, tryParseIp, type Ip } from '../ipam/ip.js';
import {
  buildResponse,
  encodeName,
  errorResponse,
  parseQuery,
  CLASS_IN,
  RCODE_NOERROR,
  RCODE_SERVFAIL,
  TYPE_A,
  TYPE_AAAA,
  TYPE_ANY,
  TYPE_PTR,
  type Answer,
} from './packet.js';

/** Docker answers with TTL 600; Cove uses 60 s: answers are local and cheap, and a client that caches sees a moved container within a minute. */
export const DEFAULT_TTL = 60;

export interface NameEntry {
  /** Canonical addresses, no prefix. */
  ipv4?: string;
  ipv6?: string;
}

export interface NetworkNames {
  networkName: string;
  /** Lower-case name -> entries (several containers may share an alias). */
  names: Map<string, NameEntry[]>;
  /** Canonical address -> PTR target ("name.network"). */
  reverse: Map<string, string>;
}

interface CompiledEntry {
  a?: Buffer;
  aaaa?: Buffer;
}

interface CompiledNetwork {
  /** ".<network name>", lower case: "alpine2.alpine-net" asks alpine-net only. */
  suffix: string;
  names: Map<string, CompiledEntry[]>;
  reverse: Map<string, Buffer>;
  /** Address text -> its bytes, and PTR target -> its wire name: what the next setNetwork reuses. */
  addrs: Map<string, Buffer | null>;
  ptrs: Map<string, Buffer>;
}

export type Resolution = { kind: 'answer'; response: Buffer } | { kind: 'forward'; servers: string[] };

function ipBytes(ip: Ip): Buffer {
  const n = ip.family === 4 ? 4 : 16;
  const b = Buffer.allocUnsafe(n);
  let v = ip.value;
  for (let i = n - 1; i >= 0; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return b;
}

/** "4.3.2.1.in-addr.arpa" / nibble ip6.arpa names -> canonical address, or undefined. */
export function addressFromReverse(name: string): string | undefined {
  if (name.endsWith('.in-addr.arpa')) {
    const parts = name.slice(0, -'.in-addr.arpa'.length).split('.');
    if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) return undefined;
    return parts.reverse().map(Number).join('.');
  }
  if (name.endsWith('.ip6.arpa')) {
    const nibbles = name.slice(0, -'.ip6.arpa'.length).split('.');
    if (nibbles.length !== 32 || nibbles.some((n) => !/^[0-9a-f]$/.test(n))) return undefined;
    const hex = nibbles.reverse().join('');
    const ip = tryParseIp(hex.match(/.{4}/g)!.join(':'));
    if (!ip) return undefined;
    return formatIp(ip.family, ip.value);
  }
  return undefined;
}

export class Resolver {
  private networks = new Map<string, CompiledNetwork>();
  private sandboxes = new Map<
    string,
    { networks: string[]; upstream: string[]; links: Map<string, Map<string, string>> }
  >();
  private rr = 0;

  constructor(private readonly ttl = DEFAULT_TTL) {}

  /**
   * Replaces one network's table (called on every connect/disconnect/rename). Each address and PTR name is
   * compiled once and reused by later tables of the network (an address cache): a join rebuilds the table of
   * every container on the network, and parsing each address again (BigInt arithmetic) made a join's cost
   * grow with the number of containers.
   */
  setNetwork(networkId: string, t: NetworkNames): void {
    const prev = this.networks.get(networkId);
    const addrs = new Map<string, Buffer | null>();
    const ptrs = new Map<string, Buffer>();
    const bytesOf = (text: string): Buffer | undefined => {
      let b = addrs.get(text);
      if (b === undefined) {
        b = prev?.addrs.get(text);
        if (b === undefined) {
          const ip = tryParseIp(text);
          b = ip ? ipBytes(ip) : null;
        }
        addrs.set(text, b);
      }
      return b ?? undefined;
    };
    const names = new Map<string, CompiledEntry[]>();
    for (const [name, entries] of t.names) {
      names.set(
        name.toLowerCase(),
        entries.map((e) => {
          const c: CompiledEntry = {};
          const v4 = e.ipv4 ? bytesOf(e.ipv4) : undefined;
          const v6 = e.ipv6 ? bytesOf(e.ipv6) : undefined;
          if (v4) c.a = v4;
          if (v6) c.aaaa = v6;
          return c;
        }),
      );
    }
    const reverse = new Map<string, Buffer>();
    for (const [ip, target] of t.reverse) {
      let wire = ptrs.get(target) ?? prev?.ptrs.get(target);
      if (!wire) wire = encodeName(target);
      ptrs.set(target, wire);
      reverse.set(ip, wire);
    }
    this.networks.set(networkId, { suffix: `.${t.networkName.toLowerCase()}`, names, reverse, addrs, ptrs });
  }

  deleteNetwork(networkId: string): void {
    this.networks.delete(networkId);
  }

  /**
   * `links`: per network ID, lower-case alias -> the linked container's name
   * (legacy --link on a user-defined network: libnetwork's endpoint aliases,
   * which only the linking container sees).
   */
  setSandbox(
    sandboxId: string,
    networks: string[],
    upstream: string[],
    links: Map<string, Map<string, string>> = new Map(),
  ): void {
    this.sandboxes.set(sandboxId, { networks, upstream, links });
  }

  deleteSandbox(sandboxId: string): void {
    this.sandboxes.delete(sandboxId);
  }

  upstreamOf(sandboxId: string): string[] {
    return this.sandboxes.get(sandboxId)?.upstream ?? [];
  }

  /** Answers from the tables, or says to forward the raw query upstream. */
  resolve(sandboxId: string, msg: Buffer): Resolution {
    const sb = this.sandboxes.get(sandboxId);
    const q = parseQuery(msg);
    if (!sb) {
      const r = errorResponse(msg, RCODE_SERVFAIL);
      return r ? { kind: 'answer', response: r } : { kind: 'forward', servers: [] };
    }
    if (!q || q.qclass !== CLASS_IN || ((q.flags >> 11) & 0xf) !== 0) return { kind: 'forward', servers: sb.upstream };
    if (q.qtype === TYPE_PTR) {
      const addr = addressFromReverse(q.name);
      if (addr) {
        for (const netId of sb.networks) {
          const target = this.networks.get(netId)?.reverse.get(addr);
          if (target)
            return {
              kind: 'answer',
              response: buildResponse(msg, q, RCODE_NOERROR, [{ type: TYPE_PTR, rdata: target }], this.ttl),
            };
        }
      }
      return { kind: 'forward', servers: sb.upstream };
    }
    for (const netId of sb.networks) {
      const net = this.networks.get(netId);
      if (!net) continue;
      const linked = sb.links.get(netId)?.get(q.name);
      let entries = (linked !== undefined ? net.names.get(linked) : undefined) ?? net.names.get(q.name);
      // <name>.<network> (libnetwork): the name, in that network only.
      if (!entries && q.name.endsWith(net.suffix)) entries = net.names.get(q.name.slice(0, -net.suffix.length));
      if (!entries || entries.length === 0) continue;
      const answers: Answer[] = [];
      // Round robin: each answer starts one entry further.
      const start = this.rr++ % entries.length;
      for (let i = 0; i < entries.length; i++) {
        const e = entries[(start + i) % entries.length]!;
        if ((q.qtype === TYPE_A || q.qtype === TYPE_ANY) && e.a) answers.push({ type: TYPE_A, rdata: e.a });
        if ((q.qtype === TYPE_AAAA || q.qtype === TYPE_ANY) && e.aaaa) answers.push({ type: TYPE_AAAA, rdata: e.aaaa });
      }
      // A known name without a record of this type: an empty NOERROR (not forwarded, like Docker).
      return { kind: 'answer', response: buildResponse(msg, q, RCODE_NOERROR, answers, this.ttl) };
    }
    return { kind: 'forward', servers: sb.upstream };
  }
}
