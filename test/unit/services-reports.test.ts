/**
 * Task status reports from workers (src/services/reports.ts): a worker may
 * not write task records, so it reports under node-local/<self>/tasks/ and a
 * manager applies the report, only to that node's tasks and only forward.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { silentLogger } from '../../src/common/log.js';
import { ReportRelay, applyReport, reportKey, parseReportKey, type TaskReport } from '../../src/services/reports.js';
import type { Task } from '../../src/services/types.js';

const A = 'aaaaaaaaaaaaaaaaaaaaaaaaa';
const B = 'bbbbbbbbbbbbbbbbbbbbbbbbb';

function task(id: string, node: string, state: Task['Status']['State'] = 'assigned'): Task {
  const now = new Date().toISOString();
  return {
    ID: id,
    Version: { Index: 0 },
    CreatedAt: now,
    UpdatedAt: now,
    Labels: {},
    Spec: { ContainerSpec: { Image: 'x' } } as Task['Spec'],
    SpecVersion: { Index: 1 },
    ServiceID: 's',
    Slot: 1,
    NodeID: node,
    DesiredState: 'running',
    Status: { Timestamp: now, State: state, Message: state },
  };
}

const report = (state: Task['Status']['State'], extra: Partial<TaskReport> = {}): TaskReport => ({
  UpdatedAt: new Date().toISOString(),
  Status: { Timestamp: new Date().toISOString(), State: state, Message: state },
  ...extra,
});

const until = async (what: string, fn: () => Promise<boolean>, ms = 5000) => {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

test("applyReport: forward only, terminal states final, only the task's own node, removal only when desired", () => {
  const t = task('t1', A, 'starting');
  assert.equal(applyReport(t, A, report('running'))!.Status.State, 'running');
  assert.equal(applyReport(t, A, report('accepted')), t, 'a late report does not undo a newer state');
  assert.equal(applyReport(t, B, report('running')), t, 'another node cannot report this task');
  assert.equal(applyReport(task('t1', A, 'failed'), A, report('running'))!.Status.State, 'failed');
  assert.equal(applyReport(t, A, report('shutdown', { Removed: true })), t, 'not removed while desired running');
  assert.equal(applyReport({ ...t, DesiredState: 'remove' }, A, report('shutdown', { Removed: true })), null);
  assert.deepEqual(parseReportKey(reportKey(A, 't1')), [A, 't1']);
  assert.equal(parseReportKey(`node-local/${A}/wireguard`), undefined);
});

test("the relay applies a node's reports to its own tasks and drops forged ones", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cove-reports-'));
  const store = new EmbeddedStore(dir);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await store.put('tasks/t1', JSON.stringify(task('t1', A)));
  await store.put('tasks/t2', JSON.stringify(task('t2', B)));
  // Written before any manager watched: picked up at start.
  await store.put(reportKey(A, 't1'), JSON.stringify(report('preparing')));
  const relay = new ReportRelay(store, silentLogger);
  relay.start();
  t.after(() => relay.stop());
  const state = async (id: string) => (JSON.parse((await store.get(`tasks/${id}`))!.value) as Task).Status.State;
  await until('t1 preparing', async () => (await state('t1')) === 'preparing');
  await until('report deleted', async () => (await store.get(reportKey(A, 't1'))) === undefined);
  await store.put(reportKey(A, 't1'), JSON.stringify(report('running', { NetworksAttachments: [] })));
  await until('t1 running', async () => (await state('t1')) === 'running');
  // A writes a report about B's task under its own prefix: ignored.
  await store.put(reportKey(A, 't2'), JSON.stringify(report('failed')));
  await until('forged report consumed', async () => (await store.get(reportKey(A, 't2'))) === undefined);
  assert.equal(await state('t2'), 'assigned');
  // Garbage is dropped without harm.
  await store.put(reportKey(A, 't1'), 'not json');
  await until('garbage dropped', async () => (await store.get(reportKey(A, 't1'))) === undefined);
  assert.equal(await state('t1'), 'running');
  // Removal once the managers want it removed.
  const t1 = JSON.parse((await store.get('tasks/t1'))!.value) as Task;
  await store.put('tasks/t1', JSON.stringify({ ...t1, DesiredState: 'remove' }));
  await store.put(reportKey(A, 't1'), JSON.stringify(report('shutdown', { Removed: true })));
  await until('t1 removed', async () => (await store.get('tasks/t1')) === undefined);
});
