/**
 * `service logs` / `task logs`: the logs of task containers on any node.
 * A task's container lives on its node, so the manager asks that node for
 * them through the cluster store: it writes a request under
 * `logs/req/<node id>/<request id>`, the node's LogServer reads the
 * container's log and answers under `logs/resp/<node id>/<request id>` (capped
 * in size; the node ID in both keys lets etcd's RBAC confine a worker to its own),
 * and the manager streams the lines to the client in Docker's multiplexed
 * format, with the details (node, service, task IDs) that the docker CLI
 * turns into its `name.slot.task@node | line` prefix.
 *
 * Follow mode asks again every second for what came since the last line.
 */
import type { Logger } from '../common/log.js';
import { InvalidParameter } from '../common/errors.js';
import type { Ctx } from '../api/request.js';
import { boolQuery } from '../api/request.js';
import { MULTIPLEXED_STREAM, frame } from '../api/stream.js';
import { parseTimestamp } from '../api/request.js';
import type { ContainerService, LogOptions } from '../runtime/types.js';
import type { Store } from '../store/store.js';
import type { ServiceManager } from './manager.js';
import { newSwarmId, type Service, type Task } from './types.js';

const REQ = 'logs/req';
const RESP = 'logs/resp';
/** Bytes of log one answer carries at most (etcd's request limit is 1.5 MiB). */
const MAX_ANSWER = 512 * 1024;

interface LogRequest {
  containerId: string;
  tail: string;
  since?: number;
  stdout: boolean;
  stderr: boolean;
}
interface LogLine {
  s: 1 | 2;
  t: string;
  d: string;
}

/** Runs on every node: answers log requests for its own containers. */
export class LogServer {
  private stop: (() => void) | undefined;

  constructor(
    private readonly store: Store,
    private readonly nodeId: string,
    private readonly containers: ContainerService,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.stop = this.store.watch(`${REQ}/${this.nodeId}/`, (ev) => {
      if (ev.type !== 'put') return;
      void this.answer(ev.kv.key, ev.kv.value);
    });
  }

  close(): void {
    this.stop?.();
  }

  private async answer(key: string, value: string): Promise<void> {
    const id = key.slice(key.lastIndexOf('/') + 1);
    const lines: LogLine[] = [];
    let err: string | undefined;
    try {
      const req = JSON.parse(value) as LogRequest;
      const opts: LogOptions = {
        follow: false,
        stdout: req.stdout,
        stderr: req.stderr,
        timestamps: true,
        tail: req.tail,
      };
      if (req.since !== undefined) opts.since = req.since;
      let size = 0;
      for await (const e of this.containers.logs(req.containerId, opts)) {
        size += e.data.length;
        if (size > MAX_ANSWER) break;
        lines.push({ s: e.stream === 'stderr' ? 2 : 1, t: e.time, d: e.data.toString('base64') });
      }
    } catch (e) {
      err = (e as Error).message;
    }
    try {
      await this.store.txn([
        { key, value: null },
        { key: `${RESP}/${this.nodeId}/${id}`, value: JSON.stringify({ lines, err }) },
      ]);
    } catch (e) {
      this.log.debug({ err: e }, 'log answer failed');
    }
  }
}

async function ask(store: Store, task: Task, req: LogRequest, timeoutMs = 5000): Promise<LogLine[]> {
  const id = newSwarmId();
  const respKey = `${RESP}/${task.NodeID}/${id}`;
  const got = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error('timeout'));
    }, timeoutMs);
    const stop = store.watch(respKey, (ev) => {
      if (ev.type !== 'put') return;
      clearTimeout(timer);
      stop();
      resolve(ev.kv.value);
    });
  });
  await store.put(`${REQ}/${task.NodeID}/${id}`, JSON.stringify(req));
  try {
    const ans = JSON.parse(await got) as { lines: LogLine[]; err?: string };
    return ans.lines;
  } catch {
    await store.delete(`${REQ}/${task.NodeID}/${id}`).catch(() => undefined);
    return [];
  } finally {
    await store.delete(respKey).catch(() => undefined);
  }
}

interface StreamOpts {
  follow: boolean;
  stdout: boolean;
  stderr: boolean;
  timestamps: boolean;
  details: boolean;
  tail: string;
  since?: number;
}

function streamOpts(q: URLSearchParams): StreamOpts {
  const o: StreamOpts = {
    follow: boolQuery(q, 'follow'),
    stdout: boolQuery(q, 'stdout'),
    stderr: boolQuery(q, 'stderr'),
    timestamps: boolQuery(q, 'timestamps'),
    details: boolQuery(q, 'details'),
    tail: q.get('tail') || 'all',
  };
  if (!o.stdout && !o.stderr) throw new InvalidParameter('Bad parameters: you must choose at least one stream');
  if (q.get('since')) o.since = parseTimestamp(q.get('since')!, 'since');
  return o;
}

async function stream(ctx: Ctx, mgr: ServiceManager, tasks: Task[]): Promise<void> {
  const o = streamOpts(ctx.query);
  const store = mgr.store;
  const out = ctx.reply.stream(200, MULTIPLEXED_STREAM);
  let gone = false;
  ctx.req.socket.once('close', () => {
    gone = true;
  });
  const last = new Map<string, string>();
  const emit = (t: Task, l: LogLine): void => {
    const details = o.details
      ? `com.docker.swarm.node.id=${t.NodeID},com.docker.swarm.service.id=${t.ServiceID},com.docker.swarm.task.id=${t.ID} `
      : '';
    const ts = o.timestamps ? `${l.t} ` : '';
    out.write(frame(l.s, Buffer.concat([Buffer.from(ts + details), Buffer.from(l.d, 'base64')])));
    last.set(t.ID, l.t);
  };
  try {
    const round = async (first: boolean): Promise<void> => {
      for (const t of tasks) {
        const cid = t.Status.ContainerStatus?.ContainerID;
        if (!cid || !t.NodeID || gone) continue;
        const prev = last.get(t.ID);
        const since = prev ? Date.parse(prev) / 1000 + 1e-6 : o.since;
        const req: LogRequest = {
          containerId: cid,
          tail: first ? o.tail : 'all',
          stdout: o.stdout,
          stderr: o.stderr,
          ...(since !== undefined ? { since } : {}),
        };
        for (const l of await ask(store, t, req)) {
          if (prev && l.t <= prev) continue;
          emit(t, l);
        }
      }
    };
    await round(true);
    while (o.follow && !gone) {
      await new Promise((r) => setTimeout(r, 1000));
      tasks = await mgr.listTasks({ service: [...new Set(tasks.map((t) => t.ServiceID))] }).catch(() => tasks);
      await round(false);
    }
  } finally {
    if (!out.writableEnded) out.end();
  }
}

export async function serviceLogs(ctx: Ctx, mgr: ServiceManager, svc: Service): Promise<void> {
  await stream(ctx, mgr, await mgr.listTasks({ service: [svc.ID] }));
}

export async function taskLogs(ctx: Ctx, mgr: ServiceManager, task: Task): Promise<void> {
  await stream(ctx, mgr, [task]);
}
