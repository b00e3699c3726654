import { randomBytes } from 'node:crypto';

/** A 64-hex-digit object ID, as Docker uses for containers, networks, endpoints. */
export function newId(): string {
  return randomBytes(32).toString('hex');
}

export function shortId(id: string): string {
  return id.slice(0, 12);
}

/**
 * Longest container or network name Cove accepts: every name must be usable
 * where the API takes it, in a request path (the router's parameter limit,
 * MAX_PATH_PARAM, is above it) and as a DNS label set.
 */
export const MAX_NAME_LENGTH = 255;

/** Longest path parameter the API router matches (names, IDs, image references). */
export const MAX_PATH_PARAM = 1024;

/** Docker's container/network name rule: [a-zA-Z0-9][a-zA-Z0-9_.-]+ */
export const VALID_NAME = /^\/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;
