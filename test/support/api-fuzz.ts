/**
 * Property-based fuzzing of the Engine API (fast-check): random routes, path
 * parameters, version prefixes, query filters and bodies. The property: every
 * answer comes within 2 s, is never a 5xx, and every 4xx carries Docker's
 * error body ({"message": "..."}, non-empty). Used by the unit test (fake
 * engine) and the e2e test (the real daemon in a lab).
 */
import { request } from 'node:http';
import fc from 'fast-check';

export interface FuzzAnswer {
  status: number;
  body: string;
}

export function send(socket: string, method: string, path: string, body?: string): Promise<FuzzAnswer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'Content-Type': 'application/json' };
    if (body !== undefined) headers['Content-Length'] = String(Buffer.byteLength(body));
    const req = request({ socketPath: socket, method, path, headers, agent: false, timeout: 2000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('timeout', () => {
      req.destroy();
      reject(new Error(`stalled: ${method} ${path}`));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Strings a hostile client would send: control chars, regexp bombs, dots, huge, unicode. */
const nasty = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom(
    '',
    '.',
    '..',
    '/',
    '//',
    '%',
    '%00',
    '\u0000',
    '^(a*)*$',
    '(a+)+b',
    '[',
    '(?<=x)',
    '\\',
    '*',
    'a'.repeat(3000),
    '..%2f..',
    '{}',
    'null',
    '[]',
    'true',
    '-1',
    '1e400',
    '\ud800',
  ),
);

/** Query filter values: JSON of known keys with nasty values, or not JSON at all. */
const filters = fc.oneof(
  fc
    .dictionary(
      fc.constantFrom(
        'name',
        'id',
        'label',
        'status',
        'driver',
        'type',
        'network',
        'ancestor',
        'before',
        'since',
        'until',
        'dangling',
        'scope',
        'exited',
        'health',
        'publish',
        'expose',
        'reference',
        'event',
        'container',
      ),
      fc.array(nasty, { maxLength: 3 }),
      { maxKeys: 3 },
    )
    .map((d) => JSON.stringify(d)),
  fc.json(),
  nasty,
);

/** GET/HEAD routes that answer at once (no streams that wait: events, logs -f, wait, attach). */
const readRoutes = [
  '/_ping',
  '/version',
  '/info',
  '/containers/json',
  '/networks',
  '/images/json',
  '/containers/{}/json',
  '/networks/{}',
  '/images/{}/json',
  '/containers/{}/top',
  '/exec/{}/json',
  '/volumes',
  '/volumes/{}',
  '/system/df',
];
/** Routes that change state only when the body is well-formed; the fuzzer sends only malformed bodies there. */
const writeRoutes = [
  '/networks/create',
  '/containers/create',
  '/networks/{}/connect',
  '/networks/{}/disconnect',
  '/containers/{}/rename',
  '/containers/{}/exec',
  '/volumes/create',
];

/** encodeURIComponent, with lone surrogates made U+FFFD (it throws on them; a client cannot send them either). */
const enc = (s: string) => encodeURIComponent(s.replace(/[\ud800-\udfff]/g, '\ufffd'));
const pathParam = nasty.map(enc);
const versionPrefix = fc.oneof(
  fc.constant(''),
  fc.constant('/v1.51'),
  fc.string({ maxLength: 6 }).map((s) => `/v${enc(s)}`),
);

/**
 * Read requests; `known` names (objects that exist in the daemon under test) are mixed into the
 * path parameters so that the routes' real code paths run too, not only their 404s.
 */
export function readRequestWith(known: string[] = []) {
  return fc
    .record({
      method: fc.constantFrom('GET', 'HEAD'),
      prefix: versionPrefix,
      route: fc.constantFrom(...readRoutes),
      param: known.length ? fc.oneof(pathParam, fc.constantFrom(...known.map(enc))) : pathParam,
      filters,
      extra: fc.dictionary(
        fc.constantFrom('all', 'limit', 'size', 'since', 'before', 'force', 'name', 'n', 'digests'),
        nasty,
        { maxKeys: 3 },
      ),
    })
    .map((r) => {
      const q = new URLSearchParams({ filters: r.filters, ...r.extra });
      return {
        method: r.method,
        path: `${r.prefix}${r.route.replace('{}', r.param)}?${q}`,
        body: undefined as string | undefined,
      };
    });
}
export const readRequest = readRequestWith();

/** Bodies that are not valid JSON objects of the route's shape: syntax errors, wrong types, deep nesting. */
const badBody = fc.oneof(
  fc.string({ maxLength: 60 }).filter((s) => {
    try {
      JSON.parse(s);
      return false;
    } catch {
      return true;
    }
  }),
  fc.constantFrom(
    '[]',
    '1',
    '"x"',
    'null',
    '{"Name": 5}',
    '{"Image": {}}',
    '{"Name": ["a"]}',
    '{"HostConfig": 7}',
    '{"Container": 1}',
    '['.repeat(20_000) + ']'.repeat(20_000),
    '{"a":'.repeat(12_000) + '1' + '}'.repeat(12_000),
  ),
);

export const writeRequest = fc
  .record({
    prefix: versionPrefix,
    route: fc.constantFrom(...writeRoutes),
    param: pathParam,
    query: fc.dictionary(fc.constantFrom('name', 'platform', 'force'), nasty, { maxKeys: 2 }),
    body: badBody,
  })
  .map((r) => ({
    method: 'POST',
    path: `${r.prefix}${r.route.replace('{}', r.param)}?${new URLSearchParams(r.query)}`,
    body: r.body as string | undefined,
  }));

/** Checks one answer against the property; returns what is wrong, or undefined. */
export function problemWith(req: { method: string; path: string }, a: FuzzAnswer): string | undefined {
  if (a.status >= 500) return `${a.status} for ${req.method} ${req.path.slice(0, 200)}: ${a.body.slice(0, 300)}`;
  if (a.status >= 400 && req.method !== 'HEAD') {
    let msg: unknown;
    try {
      msg = (JSON.parse(a.body) as { message?: unknown }).message;
    } catch {
      /* below */
    }
    if (typeof msg !== 'string' || msg === '')
      return `${a.status} without Docker's {"message"} body for ${req.method} ${req.path.slice(0, 200)}: ${a.body.slice(0, 200)}`;
  }
  return undefined;
}

/** `known`: names of existing objects, used only by read routes (the write routes never get them, so nothing changes). */
export async function fuzzApi(socket: string, runs: number, seed?: number, known: string[] = []): Promise<void> {
  await fc.assert(
    fc.asyncProperty(fc.oneof(readRequestWith(known), writeRequest), async (req) => {
      const a = await send(socket, req.method, req.path, req.body);
      const p = problemWith(req, a);
      if (p) throw new Error(p);
    }),
    { numRuns: runs, ...(seed !== undefined ? { seed } : {}) },
  );
}
