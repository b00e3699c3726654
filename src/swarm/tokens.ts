/**
 * Join tokens in Docker's format: SWMTKN-1-<CA digest>-<secret>. The digest
 * (50 base-36 digits of the CA certificate's sha256) lets a joining node check
 * it talks to the right cluster before it trusts anything; the secret (25
 * base-36 digits, 128 random bits) tells the manager which role to grant.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { InvalidParameter } from '../common/errors.js';

export const TOKEN_RE = /^SWMTKN-1-([0-9a-z]{50})-([0-9a-z]{25})$/;

export function newSecret(): string {
  return BigInt('0x' + randomBytes(16).toString('hex'))
    .toString(36)
    .padStart(25, '0')
    .slice(-25);
}

/** 25 base-36 characters, as swarmkit's node and cluster IDs. */
export function newId(): string {
  return newSecret();
}

export function formatToken(digest: string, secret: string): string {
  return `SWMTKN-1-${digest}-${secret}`;
}

export function parseToken(token: string): { digest: string; secret: string } {
  const m = TOKEN_RE.exec(token.trim());
  if (!m) throw new InvalidParameter('invalid join token');
  return { digest: m[1]!, secret: m[2]! };
}

export function sameSecret(a: string, b: string): boolean {
  const ba = Buffer.from(a);
  const bb = Buffer.from(b);
  return ba.length === bb.length && timingSafeEqual(ba, bb);
}
