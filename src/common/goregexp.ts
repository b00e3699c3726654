/**
 * Go's regexp (RE2) for user-given patterns such as the `name` filter: linear
 * time whatever the pattern (a backtracking RegExp on `^(a*)*$` blocks the
 * event loop for seconds, and with it every request and every container's
 * DNS), and Docker's own syntax and error wording. An invalid pattern is a
 * 400 with Go's message ("error parsing regexp: ...").
 *
 * re2js is loaded on the first pattern, not with the daemon: it is the
 * largest single module coved would otherwise hold (~260 KB of source, about
 * 1 MB of RSS) and only `ps --filter name=` needs it.
 */
import type { RE2JS } from 're2js';
import { InvalidParameter } from './errors.js';

export type Matcher = (s: string) => boolean;

/** Compiles `pattern` as Go's regexp.MatchString would use it (unanchored search). */
export async function goRegexp(pattern: string): Promise<Matcher> {
  const { RE2JS: re2 } = await import('re2js');
  let re: RE2JS;
  try {
    re = re2.compile(pattern);
  } catch (e) {
    throw new InvalidParameter((e as Error).message);
  }
  return (s) => re.matcher(s).find();
}
