/**
 * Go's regexp (RE2) for user-given patterns such as the `name` filter: linear
 * time whatever the pattern (a backtracking RegExp on `^(a*)*$` blocks the
 * event loop for seconds, and with it every request and every container's
 * DNS), and Docker's own syntax and error wording. An invalid pattern is a
 * 400 with Go's message ("error parsing regexp: ...").
 */
import { RE2JS } from 're2js';
import { InvalidParameter } from './errors.js';

export type Matcher = (s: string) => boolean;

/** Compiles `pattern` as Go's regexp.MatchString would use it (unanchored search). */
export function goRegexp(pattern: string): Matcher {
  let re: RE2JS;
  try {
    re = RE2JS.compile(pattern);
  } catch (e) {
    throw new InvalidParameter((e as Error).message);
  }
  return (s) => re.matcher(s).find();
}
