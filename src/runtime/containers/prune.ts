/**
 * `docker container prune` (POST /containers/prune): removes every stopped
 * container (created, exited, dead) that matches the filters `until`,
 * `label` and `label!`, and answers with the IDs and the space their
 * writable layers held, as moby's ContainersPrune does.
 */
import { InvalidParameter } from '../../common/errors.js';
import { parseUntil } from '../images/store.js';

export const PRUNE_FILTERS = ['until', 'label', 'label!'];

export interface PruneCandidate {
  Id: string;
  Created: string;
  Labels: Record<string, string>;
  Status: string;
}

/** Checks the filters and returns the predicate moby applies. */
export function prunePredicate(filters: Record<string, string[]>): (c: PruneCandidate) => boolean {
  for (const k of Object.keys(filters))
    if (!PRUNE_FILTERS.includes(k)) throw new InvalidParameter(`invalid filter '${k}'`);
  const untils = (filters.until ?? []).map(parseUntil);
  if (untils.length > 1) throw new InvalidParameter('more than one until filter specified');
  const until = untils[0];
  return (c) => {
    if (c.Status === 'running' || c.Status === 'paused' || c.Status === 'restarting' || c.Status === 'removing')
      return false;
    if (until !== undefined && Date.parse(c.Created) / 1000 >= until) return false;
    if (filters.label?.length && !filters.label.every((l) => labelMatches(c.Labels, l))) return false;
    if (filters['label!']?.length && filters['label!'].every((l) => labelMatches(c.Labels, l))) return false;
    return true;
  };
}

function labelMatches(labels: Record<string, string>, filter: string): boolean {
  const eq = filter.indexOf('=');
  return eq < 0 ? filter in labels : labels[filter.slice(0, eq)] === filter.slice(eq + 1);
}
