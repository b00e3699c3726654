/**
 * The real docker CLI against one simulated host's daemon, and a bounded wait:
 * what the swarm e2e files (services-*, ingress-mesh) share.
 */
import { run, type Lab, type RunResult } from './lab.js';

export const DOCKER = '/usr/local/bin/docker';

/** `docker ARGS` against host h's socket; never throws. */
export const docker = (h: Lab, args: string[], timeoutMs = 120_000): Promise<RunResult> =>
  run(DOCKER, args, { env: h.env, timeoutMs });

/** `docker ARGS` that must succeed; its trimmed stdout. */
export async function dockerOk(h: Lab, args: string[], timeoutMs?: number): Promise<string> {
  const r = await docker(h, args, timeoutMs);
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} on ${h.name}: ${r.stderr}${r.stdout}`);
  return r.stdout.trim();
}

/** Polls f until it holds (a throw counts as not yet); the milliseconds it took, or an error naming `what`. */
export async function until(what: string, f: () => Promise<boolean>, ms = 30_000, gapMs = 200): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await f().catch(() => false)) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, gapMs));
  }
  throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
}

/** The CurrentState column ("Running 3 seconds ago", ...) of a service's tasks meant to run, as `docker service ps` shows it. */
export async function taskStates(h: Lab, service: string): Promise<string[]> {
  const out = await dockerOk(h, [
    'service',
    'ps',
    service,
    '--filter',
    'desired-state=running',
    '--format',
    '{{.CurrentState}}',
  ]);
  return out.split('\n').filter(Boolean);
}

/** How many of a service's tasks meant to run `docker service ps` shows Running. */
export async function runningTasks(h: Lab, service: string): Promise<number> {
  return (await taskStates(h, service)).filter((s) => /^Running/.test(s)).length;
}
