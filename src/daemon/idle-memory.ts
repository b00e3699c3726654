/**
 * Gives memory back once the daemon goes quiet (issue #10, engine RSS idle).
 *
 * After a burst of API work the daemon's RSS stays at its high-water mark:
 * V8 keeps the heap pages it grew into (its memory reducer shrinks them only
 * later, if at all, and never compacts everything) and glibc keeps freed
 * malloc memory in its arenas. So about 1 s after the API goes quiet (no
 * request in flight and none started or ended for QUIET_MS), one release runs:
 * V8's low-memory notification (full collections that compact and free pages)
 * and malloc_trim(0), both from the addon (native/memory.cc). Once per quiet
 * period: the next release waits for another request to come and go, so an
 * idle daemon does not collect again and again. Also once after start.
 *
 * A request that only waits for something (an events stream, `wait`, `logs
 * -f`, an attached session) calls its `waiting()` and stops counting as in
 * flight: a `docker events` left open must not keep the daemon from ever being
 * quiet. Work outside the API (restart policies, health checks, swarm) does
 * not count; a release during it costs that work a pause of tens of ms.
 */
import type { Logger } from '../common/log.js';

/** How long the API must be quiet before memory is released. */
export const QUIET_MS = 1000;

export interface IdleMemory {
  /** A request started; call the returned function (any number of times) when it ended or only waits. */
  requestStarted(): () => void;
  /** Releases now if the daemon is quiet and has not released since its last request (tests). */
  releaseIfQuiet(): boolean;
  /** No more releases (the daemon stops). */
  stop(): void;
}

export interface IdleMemoryOptions {
  /** What a release does (the daemon: the addon's releaseMemory). */
  release: () => void;
  log?: Logger;
  quietMs?: number;
}

export function startIdleMemory(opts: IdleMemoryOptions): IdleMemory {
  const quietMs = opts.quietMs ?? QUIET_MS;
  let inFlight = 0;
  /** Anything happened since the last release (true at start: start-up itself is work). */
  let dirty = true;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const releaseIfQuiet = (): boolean => {
    timer = undefined;
    if (stopped || inFlight > 0 || !dirty) return false;
    dirty = false;
    const before = process.memoryUsage.rss();
    const t0 = performance.now();
    try {
      opts.release();
    } catch (err) {
      opts.log?.warn({ err }, 'idle memory release failed');
      return false;
    }
    opts.log?.debug(
      {
        ms: Math.round(performance.now() - t0),
        rssMbBefore: Math.round(before / 1e5) / 10,
        rssMbAfter: Math.round(process.memoryUsage.rss() / 1e5) / 10,
      },
      'idle: memory released',
    );
    return true;
  };

  const arm = (): void => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (stopped || inFlight > 0 || !dirty) return;
    timer = setTimeout(releaseIfQuiet, quietMs);
    timer.unref();
  };

  arm();
  return {
    requestStarted() {
      inFlight++;
      dirty = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      let ended = false;
      return () => {
        if (ended) return;
        ended = true;
        inFlight--;
        arm();
      };
    },
    releaseIfQuiet,
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
    },
  };
}
