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
  for (const p of ['docker.io/', 'index.docker.io/', 'registry-1.docker.io/']) if (r.startsWith(p)) r = r.slice(p.length);
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
