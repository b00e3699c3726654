/**
 * HEALTHCHECK: one probe loop per running container with a healthcheck; each probe is an exec.
 */
import {
  applyResult,
  initialHealth,
  nextDelayMs,
  probeOf,
  timeoutMessage,
  type HealthConfig,
  type HealthLogEntry,
  type Probe,
} from '../health.js';
import { ContainerCore, type ContainerRecord } from './core.js';

export class HealthOps {
  constructor(private readonly core: ContainerCore) {}

  private readonly healthMonitors = new Map<string, { stop: () => void }>();

  /** Runs the container's HEALTHCHECK until it stops; one monitor per container. */
  startHealthMonitor(r: ContainerRecord): void {
    const probe = probeOf(r.Config.Healthcheck as HealthConfig | undefined, r.Config.Shell as string[] | undefined);
    if (!probe || this.healthMonitors.has(r.Id)) return;
    const id = r.Id;
    const startedAt = Date.parse(r.State.StartedAt) || Date.now();
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const schedule = (ms: number): void => {
      if (stopped) return;
      timer = setTimeout(
        () =>
          void tick()
            .catch((e) => this.core.log.warn({ id, err: (e as Error).message }, 'health check failed to run'))
            .finally(() => {
              const h = this.healthOf(id);
              void h.then((st) => schedule(nextDelayMs(probe, st ?? initialHealth(), Date.now() - startedAt)));
            }),
        ms,
      );
      timer.unref?.();
    };
    const tick = async (): Promise<void> => {
      const cur = (await this.core.records.get(id))?.value;
      if (!cur?.State.Running) return this.stopHealthMonitor(id);
      if (cur.State.Paused) return;
      const result = await this.runProbe(cur, probe);
      if (stopped) return;
      let changed: string | undefined;
      const next = await this.core.update(id, (x) => {
        if (!x.State.Running) return;
        const before = x.State.Health ?? initialHealth();
        x.State.Health = applyResult(probe, before, result, Date.now() - startedAt);
        if (x.State.Health.Status !== before.Status) changed = x.State.Health.Status;
      });
      if (changed) this.core.publish(next, `health_status: ${changed}`);
    };
    this.healthMonitors.set(id, {
      stop: () => {
        stopped = true;
        if (timer) clearTimeout(timer);
      },
    });
    schedule(nextDelayMs(probe, r.State.Health ?? initialHealth(), Date.now() - startedAt));
  }

  stopHealthMonitor(id: string): void {
    this.healthMonitors.get(id)?.stop();
    this.healthMonitors.delete(id);
  }

  async healthOf(id: string): Promise<ContainerRecord['State']['Health']> {
    return (await this.core.records.get(id))?.value.State.Health;
  }

  /** One probe: an exec like Docker's (exec_create/exec_start/exec_die events), output kept, cut at the timeout. */
  async runProbe(r: ContainerRecord, probe: Probe): Promise<HealthLogEntry> {
    const start = new Date().toISOString();
    const { Id: execId } = await this.core.execOps.execCreate(r.Id, {
      Cmd: probe.cmd,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
    });
    const ex = this.core.execs.get(execId)!;
    const chunks: Buffer[] = [];
    let size = 0;
    const keep = (b: Buffer): void => {
      if (size < 4096) chunks.push(b);
      size += b.length;
    };
    let timedOut = false;
    try {
      const session = await this.core.execOps.execStart(execId, { Detach: false, Tty: false });
      session?.stdout?.on('data', keep);
      session?.stderr?.on('data', keep);
      const cut = setTimeout(() => {
        timedOut = true;
        try {
          if (ex.pid) process.kill(ex.pid, 'SIGKILL');
        } catch {
          // already gone
        }
        session?.close();
      }, probe.timeoutMs);
      try {
        await session?.done;
        for (let i = 0; i < 100 && ex.running; i++) await new Promise((res) => setTimeout(res, 20));
      } finally {
        clearTimeout(cut);
      }
    } catch (e) {
      return { Start: start, End: new Date().toISOString(), ExitCode: -1, Output: (e as Error).message };
    }
    // The session stays a record like any exec (ExecRecords.trim keeps the newest 64 per container).
    const end = new Date().toISOString();
    if (timedOut) return { Start: start, End: end, ExitCode: -1, Output: timeoutMessage(probe) };
    return { Start: start, End: end, ExitCode: ex.exitCode ?? -1, Output: Buffer.concat(chunks).toString('utf8') };
  }
}
