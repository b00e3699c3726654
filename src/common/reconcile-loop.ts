/**
 * The one "watch + periodic reconcile" loop that brings a host to the
 * desired state in the store (the ingress mesh, service discovery, the
 * orchestrator): kicks from store watches (and other events) ask for a pass;
 * a periodic pass is the safety net for anything a watch missed (a lost
 * watch, a restart delay that ended, a node that went down).
 *
 * Guarantees: passes never overlap; a kick during a pass asks for exactly one
 * more pass after it (however many kicks came); with `debounceMs` a burst of
 * kicks waits that long and costs one pass; `stop()` stops the sources and
 * the timer and waits for the pass under way; nothing here ever throws into
 * a watch callback or a timer (a failed pass goes to `onError`).
 */

/** Something that kicks the loop (a store watch, an event subscription): given `kick`, returns its stop function. */
export type KickSource = (kick: () => void) => () => void;

export interface ReconcileLoopOptions {
  /** One pass: read the desired state, make this host match it. */
  pass: () => Promise<void>;
  /** Period of the safety-net pass, ms. */
  periodMs: number;
  /** What kicks the loop besides the timer; subscribed by start(), stopped by stop(). */
  sources?: KickSource[];
  /** Wait this long after a kick before the pass (0: at once). */
  debounceMs?: number;
  /**
   * A pass failed. Return true to run another pass at once (a lost
   * compare-and-swap: the state moved under us). An onError that throws is
   * ignored.
   */
  onError: (err: unknown) => boolean | void;
}

export class ReconcileLoop {
  private stops: Array<() => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = true;

  constructor(private readonly opts: ReconcileLoopOptions) {}

  get started(): boolean {
    return !this.stopped;
  }

  /** Subscribes the sources, starts the periodic pass and asks for a first pass. Idempotent. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    const kick = (): void => this.kick();
    for (const source of this.opts.sources ?? []) this.stops.push(source(kick));
    this.timer = setInterval(kick, this.opts.periodMs);
    this.timer.unref?.();
    this.kick();
  }

  /** Asks for a pass; passes never overlap, and a kick during one asks for another. */
  kick(): void {
    if (this.stopped) return;
    const wait = this.opts.debounceMs ?? 0;
    if (wait > 0) {
      if (this.debounce) return;
      this.debounce = setTimeout(() => {
        this.debounce = undefined;
        this.run();
      }, wait);
      this.debounce.unref?.();
      return;
    }
    this.run();
  }

  private run(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          await this.opts.pass();
        } catch (err) {
          let retry: boolean | void = false;
          try {
            retry = this.opts.onError(err);
          } catch {
            /* an error handler that fails must not end the loop */
          }
          this.again = this.again || retry === true;
        }
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.running = undefined;
    });
  }

  /** Settles once the passes asked for so far are done (tests, status reads). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** Stops the sources and the timer, and waits for the pass under way. Never throws. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const s of this.stops) {
      try {
        s();
      } catch {
        /* a source that fails to stop is gone anyway */
      }
    }
    this.stops = [];
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = undefined;
    await this.running;
  }
}
