/**
 * The few pieces of ASN.1 DER that the cluster CA needs (src/cluster/pki.ts):
 * writing a certificate and a certification request, and reading the three
 * fields of a request. Written here rather than taken from an X.509 library:
 * the ones on npm (@peculiar/x509, pkijs) take 1-2.5 s to import on this
 * machine and need a global Reflect polyfill, while signing itself is node:crypto's
 * (a fraction of a millisecond). Only definite-length DER, as X.509 requires.
 */

/** One TLV: tag byte, then the length in DER's minimal form. */
export function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  const n = body.length;
  let len: Buffer;
  if (n < 0x80) len = Buffer.from([n]);
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), len, body]);
}

export const seq = (...c: Buffer[]): Buffer => tlv(0x30, ...c);
export const set = (...c: Buffer[]): Buffer => tlv(0x31, ...c);
/** [n] EXPLICIT (constructed, context-specific). */
export const explicit = (n: number, ...c: Buffer[]): Buffer => tlv(0xa0 | n, ...c);
export const octets = (b: Buffer): Buffer => tlv(0x04, b);
export const utf8 = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
export const bool = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0]));

/** A non-negative INTEGER from big-endian bytes (a leading 0 keeps it positive). */
export function uint(bytes: Buffer): Buffer {
  let b = bytes;
  while (b.length > 1 && b[0] === 0 && b[1]! < 0x80) b = b.subarray(1);
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return tlv(0x02, b);
}

export const int = (n: number): Buffer => uint(Buffer.from([n]));

/** A BIT STRING of whole bytes (signatures, keys). */
export const bits = (b: Buffer): Buffer => tlv(0x03, Buffer.from([0]), b);

/** A named-bit BIT STRING (key usage): bit 0 is the first byte's high bit; trailing zero bits dropped. */
export function namedBits(set: number[]): Buffer {
  const max = Math.max(...set);
  const bytes = Buffer.alloc(Math.floor(max / 8) + 1);
  for (const i of set) bytes[Math.floor(i / 8)]! |= 0x80 >> (i % 8);
  const unused = 7 - (max % 8);
  return tlv(0x03, Buffer.from([unused]), bytes);
}

export function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out: number[] = [parts[0]! * 40 + parts[1]!];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [p & 0x7f];
    for (let v = Math.floor(p / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime until 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5), to the second. */
export function time(d: Date): Buffer {
  const iso = d.toISOString(); // 2026-12-03T16:00:00.000Z
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '') + 'Z';
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(digits.slice(2))) : tlv(0x18, Buffer.from(digits));
}

/** A Name of single-valued RDNs, in the order given: [['O', ...], ['OU', ...], ['CN', ...]]. */
export function name(rdns: Array<[string, string]>): Buffer {
  const types: Record<string, string> = { CN: '2.5.4.3', O: '2.5.4.10', OU: '2.5.4.11' };
  return seq(
    ...rdns.map(([k, v]) => {
      const t = types[k];
      if (!t) throw new Error(`unsupported name attribute ${k}`);
      return set(seq(oid(t), utf8(v)));
    }),
  );
}

/** An IPv4 address as the 4 bytes of an iPAddress GeneralName. */
export function ipv4Bytes(addr: string): Buffer {
  const p = addr.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255))
    throw new Error(`bad IPv4 address ${addr}`);
  return Buffer.from(p);
}

export interface Element {
  tag: number;
  /** The whole TLV. */
  raw: Buffer;
  /** The content bytes. */
  body: Buffer;
}

/** Reads one TLV at `at` (throws on truncated or indefinite-length input). */
export function read(b: Buffer, at = 0): Element {
  if (at + 2 > b.length) throw new Error('truncated DER');
  const tag = b[at]!;
  let len = b[at + 1]!;
  let off = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || off + n > b.length) throw new Error('bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[off + i]!;
    off += n;
  }
  if (off + len > b.length) throw new Error('truncated DER');
  return { tag, raw: b.subarray(at, off + len), body: b.subarray(off, off + len) };
}

/** The elements inside a constructed element. */
export function children(e: Element): Element[] {
  const out: Element[] = [];
  for (let at = 0; at < e.body.length;) {
    const c = read(e.body, at);
    out.push(c);
    at += c.raw.length;
  }
  return out;
}

export function toPem(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`;
}

export function fromPem(label: string, pem: string): Buffer {
  const m = new RegExp(`-----BEGIN ${label}-----([^-]+)-----END ${label}-----`).exec(pem);
  if (!m) throw new Error(`no ${label} in PEM`);
  return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
}
