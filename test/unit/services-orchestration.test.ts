import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeSwarm } from './fakes/services.js';
import { NS, type ServiceSpec, type Task } from '../../src/services/types.js';
import { LeaderElector } from '../../src/services/leader.js';
import { silentLogger } from '../../src/common/log.js';
import { parseConstraints, pickNode } from '../../src/services/scheduler.js';

// Only my-nginx publishes 80: a second service publishing it is refused, as in swarmkit.
const nginx = (extra: Partial<ServiceSpec> = {}): ServiceSpec => ({
  Name: 'my-nginx',
  TaskTemplate: {
    ContainerSpec: { Image: 'nginx:latest' },
    Networks: [{ Target: 'nginx-net' }],
    RestartPolicy: { Delay: 0.1 * NS },
  },
  Mode: { Replicated: { Replicas: 5 } },
  ...(extra.Name && extra.Name !== 'my-nginx'
    ? {}
    : { EndpointSpec: { Ports: [{ TargetPort: 80, PublishedPort: 80 }] } }),
  ...extra,
});

const live = (ts: Task[]): Task[] => ts.filter((t) => t.DesiredState === 'running' && t.Status.State === 'running');

test('services: 5 replicas spread over 3 nodes, run as containers named and labelled as Docker does', async () => {
  const sw = new FakeSwarm(3);
  try {
    sw.start();
    const { ID } = await sw.manager.create(nginx());
    await sw.until('5 running tasks', async () => live(await sw.tasks()).length === 5);
    const tasks = live(await sw.tasks());
    assert.deepEqual(tasks.map((t) => t.Slot).sort(), [1, 2, 3, 4, 5]);
    const perNode = new Map<string, number>();
    for (const t of tasks) perNode.set(t.NodeID, (perNode.get(t.NodeID) ?? 0) + 1);
    assert.deepEqual([...perNode.values()].sort(), [1, 2, 2]);
    for (const t of tasks) {
      const cs = sw.containers.get(t.NodeID)!;
      const c = [...cs.byId.values()].find((x) => x.body.Labels?.['com.docker.swarm.task.id'] === t.ID)!;
      assert.equal(c.name, `my-nginx.${t.Slot}.${t.ID}`);
      assert.equal(c.body.Labels?.['com.docker.swarm.service.name'], 'my-nginx');
      assert.equal(c.body.Labels?.['com.docker.swarm.service.id'], ID);
      assert.equal(c.body.HostConfig?.NetworkMode, 'n1overlay');
      assert.equal(t.Status.ContainerStatus?.ContainerID, c.id);
      assert.match(t.NetworksAttachments![0]!.Addresses[0]!, /^10\.0\.1\.\d+\/24$/);
    }
    const svc = await sw.manager.inspect('my-nginx');
    assert.deepEqual(svc.Endpoint.VirtualIPs, [{ NetworkID: 'n1overlay', Addr: '10.0.1.200/24' }]);
    assert.equal(svc.Endpoint.Ports?.[0]?.PublishMode, 'ingress');
    const [withStatus] = await sw.manager.list({}, true);
    assert.deepEqual(withStatus!.ServiceStatus, { RunningTasks: 5, DesiredTasks: 5, CompletedTasks: 0 });
  } finally {
    await sw.close();
  }
});

test('services: scale down removes tasks and their containers; scale up places on the emptiest node', async () => {
  const sw = new FakeSwarm(3);
  try {
    sw.start();
    await sw.manager.create(nginx());
    await sw.until('5 running', async () => live(await sw.tasks()).length === 5);
    let svc = await sw.manager.inspect('my-nginx');
    await sw.manager.update(svc.ID, svc.Version.Index, { ...svc.Spec, Mode: { Replicated: { Replicas: 2 } } }, false);
    await sw.until(
      '2 tasks left, 2 containers',
      async () =>
        (await sw.tasks()).length === 2 && [...sw.containers.values()].reduce((n, c) => n + c.byId.size, 0) === 2,
    );
    svc = await sw.manager.inspect('my-nginx');
    await sw.manager.update(svc.ID, svc.Version.Index, { ...svc.Spec, Mode: { Replicated: { Replicas: 3 } } }, false);
    await sw.until('3 running on 3 nodes', async () => new Set(live(await sw.tasks()).map((t) => t.NodeID)).size === 3);
  } finally {
    await sw.close();
  }
});

test('services: scale 3 → 1 → 3 quickly: removed tasks still stopping (SIGTERM ignored) do not hold their slots', async () => {
  const sw = new FakeSwarm(3);
  try {
    for (const cs of sw.containers.values()) cs.stopDelayMs = 3000;
    sw.start();
    await sw.manager.create(nginx({ Mode: { Replicated: { Replicas: 3 } } }));
    await sw.until('3 running', async () => live(await sw.tasks()).length === 3);
    const first = new Set(live(await sw.tasks()).map((t) => t.ID));
    const scale = async (n: number): Promise<void> => {
      const svc = await sw.manager.inspect('my-nginx');
      await sw.manager.update(svc.ID, svc.Version.Index, { ...svc.Spec, Mode: { Replicated: { Replicas: n } } }, false);
    };
    await scale(1);
    await sw.until(
      '2 tasks told to go',
      async () => (await sw.tasks()).filter((t) => t.DesiredState === 'remove').length === 2,
    );
    await scale(3);
    const t0 = Date.now();
    await sw.until(
      '3 running-desired tasks running, slots 1-3',
      async () => {
        const ts = (await sw.tasks()).filter((t) => t.DesiredState === 'running');
        return (
          ts.length === 3 &&
          live(ts).length === 3 &&
          ts
            .map((t) => t.Slot)
            .sort()
            .join() === '1,2,3'
        );
      },
      2500,
    );
    const ms = Date.now() - t0;
    const all = await sw.tasks();
    const removing = all.filter((t) => t.DesiredState === 'remove');
    assert.equal(removing.length, 2, `the removed tasks are still stopping (${ms} ms after the scale up)`);
    assert.ok(removing.every((t) => first.has(t.ID) && t.Status.State === 'running'));
    assert.equal(live(all).filter((t) => !first.has(t.ID)).length, 2, 'two new tasks run beside them');
    await sw.until('the removed ones gone', async () => (await sw.tasks()).length === 3, 6000);
    assert.equal(
      [...sw.containers.values()].reduce((n, c) => n + c.byId.size, 0),
      3,
    );
  } finally {
    await sw.close();
  }
});

test('agent: a task costs two writes to start (starting, running); beyond the start limit tasks wait `ready`', async () => {
  const sw = new FakeSwarm(1, undefined, { startConcurrency: 2 });
  const states = new Map<string, string[]>();
  const stopWatch = sw.store.watch('tasks/', (ev) => {
    if (ev.type === 'delete') return;
    const t = JSON.parse(ev.kv.value) as Task;
    states.set(t.ID, [...(states.get(t.ID) ?? []), t.Status.State]);
  });
  try {
    const cs = [...sw.containers.values()][0]!;
    cs.startDelayMs = 300;
    sw.start();
    await sw.manager.create(nginx({ Mode: { Replicated: { Replicas: 1 } } }));
    await sw.until('1 running', async () => live(await sw.tasks()).length === 1);
    const [one] = live(await sw.tasks());
    assert.deepEqual(states.get(one!.ID), ['assigned', 'starting', 'running'], 'created, then two agent writes');

    let sawReady = false;
    const svc = await sw.manager.inspect('my-nginx');
    await sw.manager.update(svc.ID, svc.Version.Index, { ...svc.Spec, Mode: { Replicated: { Replicas: 6 } } }, false);
    await sw.until('6 running', async () => {
      const ts = await sw.tasks();
      sawReady ||= ts.some((t) => t.Status.State === 'ready');
      return live(ts).length === 6;
    });
    assert.equal(cs.maxStarting, 2, 'never more than the limit of starts at once');
    assert.ok(sawReady, 'a task waiting for a start slot shows ready');
    for (const [id, seen] of states) {
      if (id === one!.ID) continue;
      assert.equal(seen[0], 'assigned');
      assert.equal(seen.at(-1), 'running');
      assert.ok(seen.length <= 4, `at most ready, starting, running after the create: ${seen.join(' → ')}`);
    }
  } finally {
    stopWatch();
    await sw.close();
  }
});

test('services: a task that exits non-zero is replaced per its restart condition; none leaves it', async () => {
  const sw = new FakeSwarm(2);
  try {
    sw.start();
    await sw.manager.create(nginx({ Mode: { Replicated: { Replicas: 1 } } }));
    await sw.until('running', async () => live(await sw.tasks()).length === 1);
    const [t] = live(await sw.tasks());
    sw.containers.get(t!.NodeID)!.exit(t!.Status.ContainerStatus!.ContainerID!, 3);
    await sw.until('failed with the exit code', async () =>
      (await sw.tasks()).some(
        (x) => x.ID === t!.ID && x.Status.State === 'failed' && x.Status.Err === 'task: non-zero exit (3)',
      ),
    );
    await sw.until('a replacement runs in slot 1', async () =>
      live(await sw.tasks()).some((x) => x.Slot === 1 && x.ID !== t!.ID),
    );

    await sw.manager.create({
      ...nginx({ Name: 'once', Mode: { Replicated: { Replicas: 1 } } }),
      TaskTemplate: { ContainerSpec: { Image: 'busybox' }, RestartPolicy: { Condition: 'none' } },
    });
    const once = await sw.manager.inspect('once');
    await sw.until('once runs', async () => live(await sw.tasks()).some((x) => x.ServiceID === once.ID));
    const o = live(await sw.tasks()).find((x) => x.ServiceID === once.ID)!;
    sw.containers.get(o.NodeID)!.exit(o.Status.ContainerStatus!.ContainerID!, 0);
    await sw.until('complete', async () =>
      (await sw.tasks()).some((x) => x.ID === o.ID && x.Status.State === 'complete'),
    );
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(
      (await sw.tasks()).filter((x) => x.ServiceID === once.ID).length,
      1,
      'restart condition none: no replacement',
    );
  } finally {
    await sw.close();
  }
});

test("services: --restart-max-attempts counts the slot's restarts, with --restart-window only those within it (fake clock)", async () => {
  let skew = 0;
  const sw = new FakeSwarm(2, undefined, { now: () => Date.now() + skew });
  const running = async (svc: string): Promise<Task | undefined> =>
    live(await sw.tasks()).find((x) => x.ServiceID === svc);
  /** The service's running task exits 3; resolves once the orchestrator saw it failed (and decided). */
  const fail = async (svc: string): Promise<void> => {
    await sw.until(`${svc} runs`, async () => Boolean(await running(svc)));
    const t = (await running(svc))!;
    sw.containers.get(t.NodeID)!.exit(t.Status.ContainerStatus!.ContainerID!, 3);
    await sw.until('failed', async () =>
      (await sw.tasks()).some((x) => x.ID === t.ID && x.Status.State === 'failed' && x.DesiredState !== 'running'),
    );
  };
  const settled = async (svc: string): Promise<{ tasks: number; running: number }> => {
    await new Promise((r) => setTimeout(r, 500));
    const ts = (await sw.tasks()).filter((x) => x.ServiceID === svc);
    return { tasks: ts.length, running: ts.filter((x) => x.DesiredState === 'running').length };
  };
  const spec = (name: string, restart: { MaxAttempts: number; Window?: number }): ServiceSpec => ({
    ...nginx({ Name: name, Mode: { Replicated: { Replicas: 1 } } }),
    TaskTemplate: {
      ContainerSpec: { Image: 'busybox' },
      RestartPolicy: { Condition: 'on-failure', Delay: 0.05 * NS, ...restart },
    },
  });
  try {
    sw.start();
    // No window: 5 attempts are 5 restarts, counted beyond the slot's task history (5 records kept).
    const five = (await sw.manager.create(spec('five', { MaxAttempts: 5 }))).ID;
    for (let i = 0; i < 6; i++) await fail(five);
    const h = await sw.manager.inspect('five');
    assert.equal(h.ID, five);
    assert.deepEqual(
      await settled(five),
      { tasks: 5, running: 0 },
      'the 6th failure is not restarted (history trimmed to 5)',
    );

    // Window 10 s: 2 restarts in it are the limit, older ones no longer count.
    const win = (await sw.manager.create(spec('win', { MaxAttempts: 2, Window: 10 * NS }))).ID;
    await fail(win); // restart 1
    await sw.until('restart 1 runs', async () => Boolean(await running(win)));
    skew += 11_000; // restart 1 leaves the window
    await fail(win); // 0 in the window: restart 2
    await fail(win); // 1 in the window: restart 3
    await fail(win); // 2 in the window: refused
    assert.deepEqual(await settled(win), { tasks: 4, running: 0 }, '3 restarts, the 4th failure refused');
    skew += 60_000; // the refusal stays when its restarts leave the window
    assert.deepEqual(await settled(win), { tasks: 4, running: 0 });

    // The same failures without a window: only 2 restarts in all.
    const nowin = (await sw.manager.create(spec('nowin', { MaxAttempts: 2 }))).ID;
    await fail(nowin);
    skew += 11_000;
    await fail(nowin);
    await fail(nowin);
    assert.deepEqual(await settled(nowin), { tasks: 3, running: 0 }, '2 restarts, the 3rd failure refused');
  } finally {
    await sw.close();
  }
});

test('services: a node that goes down has its tasks rescheduled on the others; drained nodes are skipped', async () => {
  const sw = new FakeSwarm(3);
  try {
    sw.start();
    await sw.manager.create(nginx());
    await sw.until('5 running', async () => live(await sw.tasks()).length === 5);
    const n2 = sw.node('node2');
    await sw.agents.get(n2.id)!.stop();
    n2.state = 'down';
    const t0 = Date.now();
    await sw.until('5 running on node1 and node3', async () => {
      const l = live(await sw.tasks());
      return l.length === 5 && l.every((t) => t.NodeID !== n2.id);
    });
    assert.ok(Date.now() - t0 < 10_000);
    const old = (await sw.tasks()).filter((t) => t.NodeID === n2.id);
    assert.ok(old.length > 0 && old.every((t) => t.DesiredState === 'shutdown'));

    sw.node('node3').availability = 'drain';
    await sw.until('all 5 on node1', async () => {
      const l = live(await sw.tasks());
      return l.length === 5 && l.every((t) => t.NodeID === sw.node('node1').id);
    });
  } finally {
    await sw.close();
  }
});

test('services: global mode runs one task per eligible node; constraints are honoured', async () => {
  const sw = new FakeSwarm(3);
  try {
    sw.start();
    await sw.manager.create({
      Name: 'mon',
      TaskTemplate: { ContainerSpec: { Image: 'busybox' } },
      Mode: { Global: {} },
    });
    await sw.until(
      '3 running, one per node',
      async () => new Set(live(await sw.tasks()).map((t) => t.NodeID)).size === 3,
    );
    assert.ok(live(await sw.tasks()).every((t) => t.Slot === 0));
    sw.node('node2').availability = 'drain';
    await sw.until(
      'node2 emptied',
      async () => live(await sw.tasks()).length === 2 && sw.containers.get(sw.node('node2').id)!.running().length === 0,
    );

    await sw.manager.create({
      ...nginx({ Name: 'mgr', Mode: { Replicated: { Replicas: 3 } } }),
      TaskTemplate: { ContainerSpec: { Image: 'busybox' }, Placement: { Constraints: ['node.role==manager'] } },
    });
    const mgr = await sw.manager.inspect('mgr');
    await sw.until(
      '3 on the manager',
      async () => live(await sw.tasks()).filter((t) => t.ServiceID === mgr.ID && t.NodeID === 'node1id').length === 3,
    );

    await sw.manager.create({
      ...nginx({ Name: 'nowhere', Mode: { Replicated: { Replicas: 1 } } }),
      TaskTemplate: { ContainerSpec: { Image: 'busybox' }, Placement: { Constraints: ['node.hostname==nope'] } },
    });
    const nowhere = await sw.manager.inspect('nowhere');
    await sw.until('pending with the reason', async () =>
      (await sw.tasks()).some(
        (t) =>
          t.ServiceID === nowhere.ID &&
          t.Status.State === 'pending' &&
          t.Status.Err ===
            'no suitable node (1 node not available for new tasks; scheduling constraints not satisfied on 2 nodes)',
      ),
    );
  } finally {
    await sw.close();
  }
});

test('services: a rolling update replaces tasks by parallelism, with delay; rollback returns the previous spec', async () => {
  const sw = new FakeSwarm(3);
  try {
    sw.start();
    await sw.manager.create(nginx({ UpdateConfig: { Parallelism: 2, Delay: 0.05 * NS } }));
    await sw.until('5 running', async () => live(await sw.tasks()).length === 5);
    let svc = await sw.manager.inspect('my-nginx');
    const spec = JSON.parse(JSON.stringify(svc.Spec)) as ServiceSpec;
    spec.TaskTemplate!.ContainerSpec!.Env = ['V=2'];
    spec.TaskTemplate!.Networks = [{ Target: 'nginx-net-2' }];
    let maxDown = 0;
    const watch = setInterval(async () => {
      maxDown = Math.max(maxDown, 5 - live(await sw.tasks()).length);
    }, 20);
    await sw.manager.update(svc.ID, svc.Version.Index, spec, false);
    await sw.until(
      'update completed',
      async () => (await sw.manager.inspect('my-nginx')).UpdateStatus?.State === 'completed',
      10_000,
    );
    clearInterval(watch);
    assert.ok(maxDown <= 2, `at most 2 tasks down at once (saw ${maxDown})`);
    svc = await sw.manager.inspect('my-nginx');
    let l = live(await sw.tasks());
    assert.equal(l.length, 5);
    assert.ok(
      l.every((t) => t.SpecVersion.Index === svc.SpecVersion.Index && t.Spec.ContainerSpec?.Env?.[0] === 'V=2'),
    );
    assert.ok(l.every((t) => t.NetworksAttachments?.[0]?.Network.ID === 'n2overlay'));
    assert.deepEqual(svc.Endpoint.VirtualIPs, [{ NetworkID: 'n2overlay', Addr: '10.0.2.200/24' }]);
    // No container is left on the old network anywhere.
    for (const cs of sw.containers.values())
      assert.ok([...cs.byId.values()].every((c) => c.body.HostConfig?.NetworkMode === 'n2overlay'));

    await sw.manager.update(svc.ID, svc.Version.Index, svc.Spec, true);
    await sw.until(
      'rollback completed',
      async () => (await sw.manager.inspect('my-nginx')).UpdateStatus?.State === 'rollback_completed',
      10_000,
    );
    l = live(await sw.tasks());
    assert.ok(l.length === 5 && l.every((t) => !t.Spec.ContainerSpec?.Env?.length));
  } finally {
    await sw.close();
  }
});

test("services: a missing image is rejected with docker's words; bad specs are refused", async () => {
  const sw = new FakeSwarm(1);
  try {
    sw.start();
    await sw.manager.create({ Name: 'ghost', TaskTemplate: { ContainerSpec: { Image: 'nosuch:1' } } });
    await sw.until('rejected', async () =>
      (await sw.tasks()).some((t) => t.Status.State === 'rejected' && t.Status.Err === 'No such image: nosuch:1'),
    );
    await assert.rejects(
      sw.manager.create({ Name: 'ghost', TaskTemplate: { ContainerSpec: { Image: 'nginx' } } }),
      /name conflicts with an existing object: service ghost already exists/,
    );
    await assert.rejects(
      sw.manager.create({
        Name: 'b',
        TaskTemplate: { ContainerSpec: { Image: 'nginx' }, Networks: [{ Target: 'mybridge' }] },
      }),
      /The network mybridge cannot be used with services. Only networks scoped to the swarm can be used, such as those created with the overlay driver./,
    );
    await assert.rejects(
      sw.manager.create({
        Name: 'c',
        TaskTemplate: { ContainerSpec: { Image: 'nginx' }, Networks: [{ Target: 'nope' }] },
      }),
      /network nope not found/,
    );
    await assert.rejects(
      sw.manager.create({
        Name: 'd',
        TaskTemplate: { ContainerSpec: { Image: 'nginx' } },
        Mode: { Global: {}, Replicated: { Replicas: 2 } },
      }),
      /only one service mode/,
    );
    await assert.rejects(
      sw.manager.create({
        Name: 'e',
        TaskTemplate: { ContainerSpec: { Image: 'nginx' }, Placement: { Constraints: ['node.role=manager'] } },
      }),
      /invalid constraint/,
    );
    const svc = await sw.manager.inspect('ghost');
    await assert.rejects(sw.manager.update('ghost', svc.Version.Index - 1, svc.Spec, false), /update out of sequence/);
    await sw.manager.remove('ghost');
    await sw.until('tasks removed', async () => (await sw.tasks()).length === 0);
  } finally {
    await sw.close();
  }
});

test('services: service rm stops and removes every task container on every node', async () => {
  const sw = new FakeSwarm(3);
  try {
    sw.start();
    await sw.manager.create(nginx());
    await sw.until('5 running', async () => live(await sw.tasks()).length === 5);
    await sw.manager.remove('my-nginx');
    await sw.until(
      'nothing left',
      async () => (await sw.tasks()).length === 0 && [...sw.containers.values()].every((c) => c.byId.size === 0),
    );
  } finally {
    await sw.close();
  }
});

test("scheduler: spread, constraints, and swarmkit's reason when nothing fits", () => {
  const nodes = [
    { id: 'a', hostname: 'node1', role: 'manager', availability: 'active', state: 'ready' },
    { id: 'b', hostname: 'node2', role: 'worker', availability: 'active', state: 'ready' },
    { id: 'c', hostname: 'node3', role: 'worker', availability: 'pause', state: 'ready' },
  ] as const;
  const load = { service: new Map([['a', 1]]), all: new Map([['a', 1]]) };
  assert.equal(pickNode([...nodes], [], load).nodeId, 'b');
  assert.equal(pickNode([...nodes], parseConstraints(['node.role==manager']), load).nodeId, 'a');
  assert.equal(pickNode([...nodes], parseConstraints(['node.hostname != node1']), load).nodeId, 'b');
  assert.equal(
    pickNode([...nodes], parseConstraints(['node.hostname==node3']), load).reason,
    'no suitable node (1 node not available for new tasks; scheduling constraints not satisfied on 2 nodes)',
  );
  assert.throws(() => parseConstraints(['node.role']), /constraint expected one operator from ==, !=/);
  // A node where the service's tasks keep failing goes last.
  assert.equal(
    pickNode([...nodes], [], { ...load, service: new Map(), all: new Map(), failures: new Map([['a', 2]]) }).nodeId,
    'b',
  );
});

test('leader election: one orchestrator leader; another takes over when it stops renewing', async () => {
  const sw = new FakeSwarm(1);
  try {
    const seen: string[] = [];
    const a = new LeaderElector(sw.store, 'A', (l) => seen.push(`A:${l}`), silentLogger, 400, 100);
    const b = new LeaderElector(sw.store, 'B', (l) => seen.push(`B:${l}`), silentLogger, 400, 100);
    a.start();
    await sw.until('A leads', () => a.isLeader());
    b.start();
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(!b.isLeader());
    // A's fence holds; B's does not.
    await sw.store.txn([{ key: 'x', value: '1' }, a.fence()!]);
    await assert.rejects(sw.store.txn([{ key: 'x', value: '2' }, b.fence()!]));
    // A freezes (stops renewing without giving the key up): B takes over after the TTL.
    (a as unknown as { stopped: boolean }).stopped = true;
    await sw.until('B leads', () => b.isLeader(), 2000);
    await assert.rejects(
      sw.store.txn([
        { key: 'x', value: '3' },
        { key: 'orchestrator/leader', expectRevision: 1 },
      ]),
    );
    await b.stop();
    await a.stop();
  } finally {
    await sw.close();
  }
});

test("services: mode=host ports bind on the task's own node and show in the task's PortStatus", async () => {
  const sw = new FakeSwarm(2);
  try {
    sw.start();
    await sw.manager.create({
      Name: 'web',
      TaskTemplate: { ContainerSpec: { Image: 'nginx' } },
      Mode: { Replicated: { Replicas: 1 } },
      EndpointSpec: {
        Ports: [
          { TargetPort: 80, PublishedPort: 8080, PublishMode: 'host' },
          { TargetPort: 81, PublishedPort: 81 },
        ],
      },
    });
    await sw.until('running', async () => live(await sw.tasks()).length === 1);
    const [t] = live(await sw.tasks());
    const c = [...sw.containers.get(t!.NodeID)!.byId.values()][0]!;
    assert.deepEqual(c.body.HostConfig?.PortBindings, { '80/tcp': [{ HostIp: '', HostPort: '8080' }] });
    assert.deepEqual(t!.Status.PortStatus?.Ports, [
      { TargetPort: 80, PublishedPort: 8080, PublishMode: 'host', Protocol: 'tcp' },
    ]);
  } finally {
    await sw.close();
  }
});
