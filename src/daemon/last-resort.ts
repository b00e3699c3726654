/**
 * The daemon's last resort for an exception no handler caught and a rejection
 * no one awaited. Every known path is contained where it happens (socket and
 * child-process handlers, fire-and-forget promises); this catches the unknown.
 *
 * It keeps the process up only when the failure is in code that holds no
 * shared state: the stack has no Cove frame outside the per-message edges
 * (src/api: one request; src/network/dns: one DNS message) — Node-internal
 * frames only (a socket's own callback) count as edge too. Then the error is
 * logged at error level with its stack and the daemon goes on: the request or
 * message is lost, nothing else is touched. Anything else may have left a
 * half-done change in memory: it is logged as fatal and the process exits
 * (code 70), so the supervisor restarts it and the restore path rebuilds the
 * state from the store and the kernel, as after any crash.
 * A storm (more than STORM_LIMIT contained failures in a minute) is also fatal.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../common/log.js';

/** Cove source folders whose code handles one request or message and keeps no state across them. */
const EDGE_MODULES = [/\/src\/api\//, /\/src\/network\/dns\//];
const STORM_LIMIT = 100;

/** A frame in the coved bundle (scripts/bundle-coved.mjs): dist/coved/<file>.mjs:LINE:COL. */
const BUNDLE_FRAME = /((?:file:\/\/)?\/[^\s():]*\/dist\/coved\/[^\s():]+\.mjs):(\d+):\d+/;
/** Per bundle file: the line numbers (ascending) where esbuild's `// <input path>` comments start a module's code. */
const bundleModules = new Map<string, Array<[number, string]>>();

/**
 * The module a line of the coved bundle belongs to ('dist/src/api/server.js', 'node_modules/...'), from the
 * nearest `// path` line above it (esbuild writes one before each module's code when whitespace is kept);
 * undefined if the file cannot be read. Read once per file, only when a failure asks.
 */
export function bundleModuleAt(file: string, line: number): string | undefined {
  const path = file.startsWith('file:') ? fileURLToPath(file) : file;
  let index = bundleModules.get(path);
  if (!index) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
    index = [];
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const m = /^\/\/ ((?:dist\/)?src\/\S+|node_modules\/\S+)$/.exec(lines[i]!);
      if (m) index.push([i + 1, m[1]!]);
    }
    bundleModules.set(path, index);
  }
  let found: string | undefined;
  for (const [start, mod] of index) {
    if (start > line) break;
    found = mod;
  }
  return found;
}

/** A stack with each coved-bundle frame followed by its module, ` [dist/src/api/server.js]`; others as they were. */
export function annotateStack(stack: string): string {
  return stack
    .split('\n')
    .map((l) => {
      const m = BUNDLE_FRAME.exec(l);
      const mod = m ? bundleModuleAt(m[1]!, Number(m[2])) : undefined;
      return mod ? `${l} [${mod}]` : l;
    })
    .join('\n');
}

/** Is a failure with this stack confined to one request or message? */
export function isContained(err: unknown): boolean {
  const stack = err instanceof Error && typeof err.stack === 'string' ? err.stack : '';
  if (!stack) return false;
  const frames = stack
    .split('\n')
    .slice(1)
    .map((l) => l.trim())
    .filter((l) => l.startsWith('at '))
    // In the bundle, a frame is Cove's by the module its line is in; one that cannot be placed counts as
    // Cove code outside the edges (not contained), never as an edge.
    .map((f) => {
      const m = BUNDLE_FRAME.exec(f);
      if (!m) return f;
      const mod = bundleModuleAt(m[1]!, Number(m[2]));
      return mod ? `${f} /${mod}` : `${f} /src/unknown-bundle-module`;
    });
  // Frames of Cove's own code (dist/src/... or src/...); node:internal and node_modules frames are not ours.
  const ours = frames.filter((f) => /\/(dist\/)?src\//.test(f) && !f.includes('node_modules'));
  return ours.every((f) => EDGE_MODULES.some((m) => m.test(f)));
}

export interface LastResort {
  /** Contained failures seen so far (tests and `info`). */
  readonly contained: number;
}

export function installLastResort(log: Logger, exit: (code: number) => void = (c) => process.exit(c)): LastResort {
  let contained = 0;
  const recent: number[] = [];
  const handle = (kind: 'uncaughtException' | 'unhandledRejection', err: unknown) => {
    const now = Date.now();
    while (recent.length && now - recent[0]! > 60_000) recent.shift();
    const detail = {
      kind,
      err:
        err instanceof Error
          ? { message: err.message, stack: typeof err.stack === 'string' ? annotateStack(err.stack) : err.stack }
          : String(err),
    };
    if (isContained(err) && recent.length < STORM_LIMIT) {
      contained++;
      recent.push(now);
      log.error(
        detail,
        `LAST RESORT: ${kind} in request/message handling, contained (the daemon goes on; this is a bug, please report it)`,
      );
      return;
    }
    log.fatal(
      detail,
      `LAST RESORT: ${kind} outside a contained edge; exiting so a restart rebuilds the state from the store`,
    );
    exit(70);
  };
  process.on('uncaughtException', (err) => handle('uncaughtException', err));
  process.on('unhandledRejection', (reason) => handle('unhandledRejection', reason));
  return {
    get contained() {
      return contained;
    },
  };
}
