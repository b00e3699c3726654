/**
 * Docker's restart policies (moby restartmanager.ShouldRestart), as pure
 * decisions the container manager acts on.
 *
 * - When a container exits while the daemon runs: `always` and
 *   `unless-stopped` bring it back unless a user stopped it; `on-failure`
 *   when it failed and the retry limit is not reached.
 * - When the daemon starts: moby builds a fresh restart manager for every
 *   container, so a user's stop no longer cancels `always` (Docker's docs:
 *   "if it is manually stopped, it is restarted only when Docker daemon
 *   restarts"); `unless-stopped` stays down after a user's stop; `on-failure`
 *   comes back when its last exit was a failure within the retry limit.
 */
export interface RestartPolicy {
  Name?: string;
  MaximumRetryCount?: number;
}

export interface ExitFacts {
  exitCode: number;
  /** A user's stop, kill or rm -f ended it (moby HasBeenManuallyStopped). */
  stoppedByUser: boolean;
  restartCount: number;
}

/** Should the container be started again now that it exited (daemon running)? */
export function restartAfterExit(policy: RestartPolicy | null | undefined, f: ExitFacts): boolean {
  if (f.stoppedByUser) return false;
  return decide(policy, f);
}

/** Should the daemon start this stopped container while it starts itself? */
export function restartAtDaemonStart(policy: RestartPolicy | null | undefined, f: ExitFacts): boolean {
  if (policy?.Name === 'always') return true;
  if (f.stoppedByUser && policy?.Name === 'unless-stopped') return false;
  return decide(policy, f);
}

function decide(policy: RestartPolicy | null | undefined, f: ExitFacts): boolean {
  switch (policy?.Name ?? '') {
    case 'always':
    case 'unless-stopped':
      return true;
    case 'on-failure': {
      const max = policy?.MaximumRetryCount ?? 0;
      return f.exitCode !== 0 && (max === 0 || f.restartCount < max);
    }
    default:
      return false;
  }
}

/** Docker's back-off between restarts: 100 ms doubling (capped here at 5 s so a flapping container is retried soon enough). */
export function restartDelayMs(restartCount: number): number {
  return Math.min(100 * 2 ** Math.min(restartCount, 6), 5000);
}
