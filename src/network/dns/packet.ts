/**
 * The DNS wire format on the hot path, by hand: reading one question and
 * writing A/AAAA/PTR answers costs a few µs, against ~10 µs for a full
 * dns-packet decode+encode. Anything unusual (no question, several questions,
 * compression in the question, opcode other than QUERY) is left to the caller,
 * which forwards the raw bytes upstream unchanged or answers with an error.
 */

export const TYPE_A = 1;
export const TYPE_PTR = 12;
export const TYPE_AAAA = 28;
export const TYPE_ANY = 255;
export const CLASS_IN = 1;

export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_NOTIMP = 4;
export const RCODE_REFUSED = 5;

export interface Query {
  id: number;
  flags: number;
  /** Lower-case name without the trailing dot. */
  name: string;
  qtype: number;
  qclass: number;
  /** Byte offset just after the question (end of QTYPE/QCLASS). */
  questionEnd: number;
}

/** Parses header + the single question; undefined when the packet is not a plain one-question query. */
export function parseQuery(msg: Buffer): Query | undefined {
  if (msg.length < 12) return undefined;
  const flags = msg.readUInt16BE(2);
  if (flags & 0x8000) return undefined; // a response, not a query
  if (msg.readUInt16BE(4) !== 1) return undefined; // QDCOUNT must be 1
  let off = 12;
  const labels: string[] = [];
  let total = 0;
  for (;;) {
    if (off >= msg.length) return undefined;
    const len = msg[off]!;
    if (len === 0) {
      off++;
      break;
    }
    if (len & 0xc0) return undefined; // no compression in a question we answer
    if (off + 1 + len > msg.length) return undefined;
    total += len + 1;
    if (total > 255) return undefined;
    labels.push(msg.toString('latin1', off + 1, off + 1 + len).toLowerCase());
    off += 1 + len;
  }
  if (off + 4 > msg.length) return undefined;
  return {
    id: msg.readUInt16BE(0),
    flags,
    name: labels.join('.'),
    qtype: msg.readUInt16BE(off),
    qclass: msg.readUInt16BE(off + 2),
    questionEnd: off + 4,
  };
}

export interface Answer {
  type: number;
  /** A: 4 bytes, AAAA: 16 bytes, PTR: an encoded name. */
  rdata: Buffer;
}

/** Encodes a domain name ("a.b" -> 1a1b0). */
export function encodeName(name: string): Buffer {
  const parts = name
    .replace(/\.$/, '')
    .split('.')
    .filter((p) => p.length > 0);
  const bufs: Buffer[] = [];
  for (const p of parts) {
    const b = Buffer.from(p, 'latin1');
    bufs.push(Buffer.from([Math.min(b.length, 63)]), b.subarray(0, 63));
  }
  bufs.push(Buffer.from([0]));
  return Buffer.concat(bufs);
}

/**
 * A response to `q` (question copied from `msg` as sent), with answers that
 * point back at the question's name (compression pointer 0xc00c).
 */
export function buildResponse(msg: Buffer, q: Query, rcode: number, answers: Answer[], ttl: number): Buffer {
  let size = q.questionEnd;
  for (const a of answers) size += 12 + a.rdata.length;
  const out = Buffer.allocUnsafe(size);
  msg.copy(out, 0, 0, q.questionEnd);
  // QR=1, opcode copied, AA=0, TC=0, RD copied, RA=1, rcode.
  const flags = 0x8000 | (q.flags & 0x7800) | (q.flags & 0x0100) | 0x0080 | (rcode & 0xf);
  out.writeUInt16BE(flags, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(answers.length, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(0, 10);
  let off = q.questionEnd;
  for (const a of answers) {
    out.writeUInt16BE(0xc00c, off);
    out.writeUInt16BE(a.type, off + 2);
    out.writeUInt16BE(CLASS_IN, off + 4);
    out.writeUInt32BE(ttl, off + 6);
    out.writeUInt16BE(a.rdata.length, off + 10);
    a.rdata.copy(out, off + 12);
    off += 12 + a.rdata.length;
  }
  return out;
}

/** A bare error reply (header only, echoing the question when there is one). */
export function errorResponse(msg: Buffer, rcode: number): Buffer | undefined {
  if (msg.length < 12) return undefined;
  const q = parseQuery(msg);
  if (q) return buildResponse(msg, q, rcode, [], 0);
  const out = Buffer.from(msg.subarray(0, 12));
  out.writeUInt16BE(0x8000 | (msg.readUInt16BE(2) & 0x7900) | 0x0080 | rcode, 2);
  out.writeUInt16BE(0, 4);
  out.writeUInt16BE(0, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(0, 10);
  return out;
}

/** TC bit of a response. */
export function isTruncated(msg: Buffer): boolean {
  return msg.length >= 4 && (msg.readUInt16BE(2) & 0x0200) !== 0;
}

/**
 * What the server does with a datagram before any table lookup, as Docker's
 * embedded DNS (miekg/dns's default accept rules) does:
 * - 'drop': shorter than a header (no ID to answer) or a response (answering a
 *   response could start a reflection loop, e.g. a spoofed 127.0.0.11:53 source);
 * - 'notimp': an opcode other than QUERY/NOTIFY;
 * - 'formerr': not one question, too many records, or any name or record that
 *   does not decode (over-long names, compression loops or forward pointers,
 *   truncated records);
 * - 'ok': a well-formed query, answered locally or relayed upstream.
 * Linear in the packet's size: a pointer must point strictly backwards, so no
 * name walk can loop.
 */
export type Screen = 'drop' | 'notimp' | 'formerr' | 'ok';

export function screenQuery(msg: Buffer): Screen {
  if (msg.length < 12) return 'drop';
  const flags = msg.readUInt16BE(2);
  if (flags & 0x8000) return 'drop';
  const opcode = (flags >> 11) & 0xf;
  if (opcode !== 0 && opcode !== 4) return 'notimp';
  const qd = msg.readUInt16BE(4);
  const an = msg.readUInt16BE(6);
  const ns = msg.readUInt16BE(8);
  const ar = msg.readUInt16BE(10);
  if (qd !== 1 || an > 1 || ns > 1 || ar > 2) return 'formerr';
  let off = skipName(msg, 12);
  if (off < 0 || off + 4 > msg.length) return 'formerr';
  off += 4;
  for (let i = 0; i < an + ns + ar; i++) {
    off = skipName(msg, off);
    if (off < 0 || off + 10 > msg.length) return 'formerr';
    const rdlen = msg.readUInt16BE(off + 8);
    off += 10 + rdlen;
    if (off > msg.length) return 'formerr';
  }
  return 'ok';
}

/** More pointers than a 255-byte name could need (miekg/dns allows about as many). */
const MAX_POINTERS = 126;

/** Offset after the name at `off`, or -1 when it does not decode (bounds, loops, > 255 bytes, bad label type). */
function skipName(msg: Buffer, start: number): number {
  let off = start;
  let end = -1;
  let total = 0;
  let jumps = 0;
  for (;;) {
    if (off >= msg.length) return -1;
    const len = msg[off]!;
    if (len === 0) {
      total += 1;
      if (total > 255) return -1;
      return end >= 0 ? end : off + 1;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (off + 1 >= msg.length) return -1;
      const target = ((len & 0x3f) << 8) | msg[off + 1]!;
      if (end < 0) end = off + 2;
      // Strictly backwards (and before where this walk stood): no loops, bounded steps.
      if (target >= off || ++jumps > MAX_POINTERS) return -1;
      off = target;
      continue;
    }
    if (kind !== 0) return -1;
    total += len + 1;
    if (total > 255 || off + 1 + len > msg.length) return -1;
    off += 1 + len;
  }
}
