/**
 * Image references as Docker's CLI writes them: `name[:tag]`, where the name
 * may carry a registry host with a port (`localhost:5000/app`). Cove is local
 * only, so `docker.io/library/` prefixes are folded away, as Docker shows them.
 */
import { InvalidParameter } from '../../common/errors.js';

export interface RepoTag {
  repo: string;
  tag: string;
}

const NAME_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;

/** Folds Docker Hub's implicit prefixes: docker.io/library/alpine -> alpine. */
export function familiarName(repo: string): string {
  let r = repo;
  for (const p of ['docker.io/', 'index.docker.io/', 'registry-1.docker.io/'])
    if (r.startsWith(p)) r = r.slice(p.length);
  if (r.startsWith('library/') && r.split('/').length === 2) r = r.slice('library/'.length);
  return r;
}

/** Splits `name[:tag][@digest]`; the tag defaults to latest. Throws on a malformed reference. */
export function parseRepoTag(ref: string, defaultTag = 'latest'): RepoTag {
  let s = ref.trim();
  const at = s.indexOf('@');
  if (at >= 0) s = s.slice(0, at);
  const slash = s.lastIndexOf('/');
  const colon = s.lastIndexOf(':');
  let repo = s;
  let tag = defaultTag;
  if (colon > slash) {
    repo = s.slice(0, colon);
    tag = s.slice(colon + 1);
  }
  repo = familiarName(repo);
  if (!isValidRepo(repo) || !TAG.test(tag)) throw new InvalidParameter(`invalid reference format: ${ref}`);
  return { repo, tag };
}

export function isValidRepo(repo: string): boolean {
  if (!repo || repo.length > 255) return false;
  const parts = repo.split('/');
  // The first part may be a registry host (has a dot or a port, or is localhost).
  const first = parts[0]!;
  const hostLike = parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost');
  return parts.every((p, i) => (i === 0 && hostLike ? /^[a-zA-Z0-9.-]+(:\d+)?$/.test(p) : NAME_COMPONENT.test(p)));
}

export function formatRepoTag(rt: RepoTag): string {
  return `${rt.repo}:${rt.tag}`;
}

/** The registry Docker Hub names resolve to (distribution/reference's defaultDomain). */
export const DEFAULT_DOMAIN = 'docker.io';
const DIGEST = /^sha256:[0-9a-f]{64}$/;

/**
 * A fully qualified reference as distribution/reference's ParseNormalizedNamed
 * makes it: `alpine` → domain docker.io, path library/alpine; `host:5000/app:v1`
 * → domain host:5000, path app, tag v1; `name@sha256:...` keeps the digest.
 */
export interface NamedRef {
  domain: string;
  /** Repository path inside the registry (library/alpine). */
  path: string;
  tag?: string;
  digest?: string;
}

export function parseNamed(ref: string): NamedRef {
  const s = ref.trim();
  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new InvalidParameter(`invalid reference format: ${ref}`);
  }
  let tag: string | undefined;
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new InvalidParameter(`invalid reference format: ${ref}`);
  }
  let domain = DEFAULT_DOMAIN;
  let path = rest;
  const i = rest.indexOf('/');
  const first = i >= 0 ? rest.slice(0, i) : '';
  if (
    i >= 0 &&
    (first.includes('.') || first.includes(':') || first === 'localhost' || first.toLowerCase() !== first)
  ) {
    domain = first;
    path = rest.slice(i + 1);
  }
  if (domain === 'index.docker.io' || domain === 'registry-1.docker.io') domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !path.includes('/')) path = `library/${path}`;
  if (path.toLowerCase() !== path)
    throw new InvalidParameter(`invalid reference format: repository name (${path}) must be lowercase`);
  if (!/^[a-zA-Z0-9.-]+(:\d+)?$/.test(domain) || !path || !path.split('/').every((p) => NAME_COMPONENT.test(p))) {
    throw new InvalidParameter(`invalid reference format: ${ref}`);
  }
  return { domain, path, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** The repository as Docker shows it: `alpine`, `user/app`, `host:5000/app`. */
export function familiarRepo(n: NamedRef): string {
  if (n.domain !== DEFAULT_DOMAIN) return `${n.domain}/${n.path}`;
  return n.path.startsWith('library/') && n.path.split('/').length === 2 ? n.path.slice('library/'.length) : n.path;
}

/** `docker.io/library/alpine` — the name `docker pull` prints at the end. */
export function fullRepo(n: NamedRef): string {
  return `${n.domain}/${n.path}`;
}

/** With the tag defaulted to latest when the reference names neither tag nor digest. */
export function withDefaultTag(n: NamedRef): NamedRef {
  return n.tag || n.digest ? n : { ...n, tag: 'latest' };
}

/** `alpine:latest`, `alpine@sha256:...` as Docker shows a reference. */
export function familiarString(n: NamedRef): string {
  return familiarRepo(n) + (n.tag ? `:${n.tag}` : '') + (n.digest ? `@${n.digest}` : '');
}
