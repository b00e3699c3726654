/** A NetworkController on a temp store with fake drivers and a fake kernel. */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from '../../../src/store/embedded.js';
import { EventBus, type DockerEvent } from '../../../src/common/events.js';
import { defaultConfig, type DaemonConfig } from '../../../src/common/config.js';
import { silentLogger } from '../../../src/common/log.js';
import { NetworkController } from '../../../src/network/controller.js';
import type { SandboxSpec } from '../../../src/network/types.js';
import { FakeDriver, FakeKernel } from './network.js';

export interface Harness {
  dir: string;
  store: EmbeddedStore;
  events: EventBus;
  seen: DockerEvent[];
  config: DaemonConfig;
  bridge: FakeDriver;
  macvlan: FakeDriver;
  kernel: FakeKernel;
  ctl: NetworkController;
  /** Another controller on the same store (a daemon restart). */
  restart(): Promise<NetworkController>;
  spec(containerId: string, name: string, over?: Partial<SandboxSpec>): SandboxSpec;
}

export async function harness(
  t: { after: (fn: () => unknown) => void },
  over: Partial<DaemonConfig> = {},
): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'cvn-ctl-'));
  const store = new EmbeddedStore(join(dir, 'store'));
  const events = new EventBus();
  const seen: DockerEvent[] = [];
  events.subscribe((e) => seen.push(e));
  // Upstream DNS: a closed port on loopback, so forwarded queries fail fast and never leave the machine.
  const config = defaultConfig({
    execRoot: join(dir, 'run'),
    dataRoot: join(dir, 'data'),
    dns: ['127.0.0.1:9'],
    ...over,
  });
  writeFileSync(join(dir, 'resolv.conf'), 'nameserver 10.99.0.1\nsearch lab.example\noptions timeout:2\n');
  writeFileSync(join(dir, 'hosts'), '127.0.0.1\tlocalhost\n10.99.0.1\tlabhost\n');
  const bridge = new FakeDriver('bridge');
  const macvlan = new FakeDriver('macvlan');
  const kernel = new FakeKernel();
  const make = () =>
    new NetworkController({
      config,
      store,
      events,
      log: silentLogger,
      kernel,
      drivers: [bridge, new FakeDriver('host'), new FakeDriver('null'), macvlan],
      hostResolvConf: join(dir, 'resolv.conf'),
      hostHosts: join(dir, 'hosts'),
      portRange: [42100, 42109],
      // Published ports only on loopback: unit tests run in the machine's own namespace.
      portDefaultHostIp: '127.0.0.1',
    });
  const ctls: NetworkController[] = [make()];
  await ctls[0]!.init();
  t.after(async () => {
    for (const c of ctls) await c.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    dir,
    store,
    events,
    seen,
    config,
    bridge,
    macvlan,
    kernel,
    ctl: ctls[0]!,
    async restart() {
      await ctls[ctls.length - 1]!.close();
      const c = make();
      ctls.push(c);
      await c.init();
      return c;
    },
    spec(containerId, name, o = {}) {
      const d = join(dir, 'containers', containerId);
      mkdirSync(d, { recursive: true });
      return {
        containerId,
        containerName: name,
        hostname: containerId.slice(0, 12),
        domainname: '',
        networkMode: 'default',
        endpoints: [],
        portBindings: [],
        exposedPorts: [],
        publishAllPorts: false,
        dns: [],
        dnsSearch: [],
        dnsOptions: [],
        extraHosts: [],
        dir: d,
        ...o,
      };
    },
  };
}

export const cid = (n: number): string => n.toString(16).padStart(2, '0').repeat(32);
