import { randomBytes } from 'node:crypto';

/** A 64-hex-digit object ID, as Docker uses for containers, networks, endpoints. */
export function newId(): string {
  return randomBytes(32).toString('hex');
}

export function shortId(id: string): string {
  return id.slice(0, 12);
}

/** Docker's container/network name rule: [a-zA-Z0-9][a-zA-Z0-9_.-]+ */
export const VALID_NAME = /^\/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;
