/**
 * Walks the seed's Docker networking tutorial against Cove, printing each
 * command as a user would type it (with `docker` replaced by `cove`) and what
 * it printed. The engine runs in a lab namespace with no uplink; a second
 * namespace stands in for the internet (google.com -> 198.51.100.1).
 *
 *   node dist/demo/tutorial.js [--keep | --destroy | --single-host | --swarm-only]   (scripts/demo.sh sets things up first)
 */
import { Lab, REPO, type RunResult } from '../test/lab/lab.js';
import { MultiHostLab } from '../test/lab/multihost.js';
import { join } from 'node:path';

const keep = process.argv.includes('--keep');
let failures = 0;
/** ash's prompt after a command ends; with a TTY it also asks the terminal for the cursor position (ESC [6n). */
const SHELL_PROMPT = /\n[^\n]*# (\x1b\[6n)?$/;

function heading(text: string): void {
  process.stdout.write(`\n\x1b[1m== ${text}\x1b[0m\n`);
}
function note(text: string): void {
  process.stdout.write(`\x1b[2m# ${text}\x1b[0m\n`);
}
function show(prompt: string, cmd: string, r: RunResult, expectOk: boolean | undefined): void {
  process.stdout.write(`\x1b[36m${prompt} ${cmd}\x1b[0m\n`);
  const out = (r.stdout + r.stderr).replace(/\r/g, '').replace(/\x1b\[6n/g, '');
  if (out.trim()) process.stdout.write(out.endsWith('\n') ? out : out + '\n');
  if (expectOk !== undefined && (r.code === 0) !== expectOk) {
    failures++;
    process.stdout.write(`\x1b[31m!! expected ${expectOk ? 'success' : 'failure'}, got exit ${r.code}\x1b[0m\n`);
  }
}

/**
 * The seed's second half on three simulated hosts (manager, worker-1,
 * worker-2): a network namespace each with its own coved, joined by an
 * underlay bridge on 192.0.2.0/24.
 */
async function swarmPart(): Promise<void> {
  const lab = await MultiHostLab.create('cdsw', 3);
  const [manager, worker1, worker2] = lab.hosts as [Lab, Lab, Lab];
  const names = new Map<Lab, string>([
    [manager, 'manager'],
    [worker1, 'worker-1'],
    [worker2, 'worker-2'],
  ]);
  const on = async (
    h: Lab,
    args: string[],
    expectOk: boolean | undefined = true,
    input?: string,
  ): Promise<RunResult> => {
    const r = await h.cove(args, input === undefined ? { timeoutMs: 120_000 } : { input, timeoutMs: 120_000 });
    show(`${names.get(h)}$`, `cove ${args.map((a) => (/[\s{}]/.test(a) ? `'${a}'` : a)).join(' ')}`, r, expectOk);
    return r;
  };
  try {
    for (const h of lab.hosts) {
      await h.startDaemon();
      for (const img of ['alpine', 'nginx'])
        await h.coveOk(['load', '-q', '-i', join(REPO, 'build/images', `${img}.tar`)]);
    }
    heading('Networking with overlay networks: create the swarm (3 simulated hosts on 192.0.2.0/24)');
    await on(manager, ['swarm', 'init', `--advertise-addr=${lab.addr(0)}`]);
    const token = (await manager.coveOk(['swarm', 'join-token', '-q', 'worker'])).trim();
    await on(worker1, ['swarm', 'join', '--token', token, `${lab.addr(0)}:2377`]);
    await on(worker2, ['swarm', 'join', '--token', token, `${lab.addr(0)}:2377`]);
    await on(manager, ['node', 'ls']);
    await on(manager, ['node', 'ls', '--filter', 'role=manager']);
    await on(manager, ['node', 'ls', '--filter', 'role=worker']);
    for (const h of lab.hosts) await on(h, ['network', 'ls']);

    heading('Use overlay networks');
    await on(manager, ['network', 'create', '-d', 'overlay', 'my-overlay']);
    await on(manager, ['network', 'create', '-d', 'overlay', '--attachable', 'my-attachable-overlay']);
    await on(manager, ['run', '-dit', '--name', 'alpine-a', '--network', 'my-attachable-overlay', 'alpine', 'ash']);
    await on(worker2, ['run', '-dit', '--name', 'alpine-b', '--network', 'my-attachable-overlay', 'alpine', 'ash']);
    await on(worker2, ['exec', 'alpine-b', 'ping', '-c', '2', 'alpine-a']);
    await on(manager, ['exec', 'alpine-a', 'ping', '-c', '2', 'alpine-b']);
    await on(worker2, ['network', 'inspect', 'my-attachable-overlay']);
    await on(manager, ['rm', '-f', 'alpine-a']);
    await on(worker2, ['rm', '-f', 'alpine-b']);
    await on(manager, [
      'network',
      'create',
      '--opt',
      'encrypted',
      '--driver',
      'overlay',
      '--attachable',
      'my-attachable-multi-host-network',
    ]);
    note(
      "this kernel has no IPsec ESP: the encrypted network's VXLAN runs through wireguard-go between the nodes (UDP 51820 on the underlay, MTU 1370)",
    );
    await on(manager, [
      'run',
      '-dit',
      '--name',
      'enc-a',
      '--network',
      'my-attachable-multi-host-network',
      'alpine',
      'ash',
    ]);
    await on(worker1, [
      'run',
      '-dit',
      '--name',
      'enc-b',
      '--network',
      'my-attachable-multi-host-network',
      'alpine',
      'ash',
    ]);
    await on(worker1, ['exec', 'enc-b', 'ping', '-c', '2', 'enc-a']);
    await on(worker1, ['network', 'inspect', '--format', '{{json .Options}}', 'my-attachable-multi-host-network']);
    await on(manager, ['rm', '-f', 'enc-a']);
    await on(worker1, ['rm', '-f', 'enc-b']);
    await on(
      manager,
      ['network', 'rm', 'my-overlay', 'my-attachable-overlay', 'my-attachable-multi-host-network'],
      undefined,
    );

    heading('Create the services');
    await on(manager, ['network', 'create', '-d', 'overlay', 'nginx-net']);
    await on(manager, [
      'service',
      'create',
      '--name',
      'my-nginx',
      '--publish',
      'target=80,published=80',
      '--replicas=5',
      '--network',
      'nginx-net',
      'nginx',
    ]);
    await on(manager, ['service', 'ls']);
    for (const h of lab.hosts)
      await on(
        h,
        [
          'network',
          'inspect',
          '-f',
          '{{range .Containers}}{{.Name}} {{.IPv4Address}}\n{{end}}Peers: {{range .Peers}}{{.Name}}@{{.IP}} {{end}}',
          'nginx-net',
        ],
        undefined,
      );
    await on(manager, ['service', 'inspect', '--pretty', 'my-nginx']);
    heading('The routing mesh: port 80 answers on every node, from the outside world (192.0.2.100 on the underlay)');
    await lab.addUnderlayAddress('192.0.2.100');
    for (let i = 0; i < lab.hosts.length; i++) {
      const cmd = `curl -s -m 5 -o /dev/null -w '%{http_code}\\n' http://${lab.addr(i)}:80/`;
      const r = await lab.underlay(cmd, 20_000);
      show('outside$', cmd, r, true);
    }
    await on(worker2, ['service', 'ports', 'my-nginx'], undefined);
    const ids = (await worker1.cove(['ps', '-q', '--filter', 'label=com.docker.swarm.service.name=my-nginx'])).stdout
      .split('\n')
      .filter(Boolean);
    if (ids[0]) {
      await on(worker1, ['exec', ids[0], 'nslookup', 'tasks.my-nginx'], undefined);
      await on(worker1, ['exec', ids[0], 'wget', '-q', '-O', '-', 'http://my-nginx/'], undefined);
    }
    await on(manager, ['network', 'create', '-d', 'overlay', 'nginx-net-2']);
    await on(manager, ['service', 'update', '--network-add', 'nginx-net-2', '--network-rm', 'nginx-net', 'my-nginx']);
    await on(manager, ['service', 'ls']);
    await on(manager, ['service', 'ps', 'my-nginx']);
    await on(
      manager,
      ['network', 'inspect', '-f', '{{.Name}}: {{len .Containers}} containers on this host', 'nginx-net'],
      undefined,
    );
    await on(
      manager,
      ['network', 'inspect', '-f', '{{.Name}}: {{len .Containers}} containers on this host', 'nginx-net-2'],
      undefined,
    );
    await on(manager, ['service', 'rm', 'my-nginx']);
    await on(manager, ['network', 'rm', 'nginx-net', 'nginx-net-2']);

    heading('Customize the default ingress network');
    await on(manager, ['network', 'inspect', 'ingress']);
    await on(manager, ['network', 'rm', 'ingress'], true, 'y\n');
    for (const h of lab.hosts) await on(h, ['network', 'ls', '--filter', 'driver=overlay']);
    note('without an ingress network, publishing through the routing mesh is refused:');
    await on(manager, ['service', 'create', '--detach', '--name', 'web', '--publish', '8080:80', 'nginx'], false);
    await on(manager, [
      'network',
      'create',
      '--driver',
      'overlay',
      '--ingress',
      '--subnet=10.11.0.0/16',
      '--gateway=10.11.0.2',
      '--opt',
      'com.docker.network.driver.mtu=1200',
      'my-ingress',
    ]);
    await on(manager, ['network', 'create', '--driver', 'overlay', '--ingress', 'second-ingress'], false);
    for (const h of lab.hosts) {
      await on(h, [
        'network',
        'inspect',
        '-f',
        '{{.Name}} ingress={{.Ingress}} {{range .IPAM.Config}}{{.Subnet}} gw {{.Gateway}}{{end}} mtu={{index .Options "com.docker.network.driver.mtu"}}',
        'my-ingress',
      ]);
    }
    note('services created now publish through my-ingress: their tasks have eth0 on it, MTU 1200');
    await on(manager, ['service', 'create', '--name', 'web', '--mode', 'global', '--publish', '8080:80', 'nginx']);
    for (const h of lab.hosts) {
      const [task] = (await h.cove(['ps', '-q', '--filter', 'label=com.docker.swarm.service.name=web'])).stdout
        .split('\n')
        .filter(Boolean);
      if (task) await on(h, ['exec', task, 'ip', 'addr', 'show', 'eth0']);
    }
    await on(manager, ['network', 'rm', 'my-ingress'], false, 'y\n');
    await on(manager, ['service', 'rm', 'web']);
    await on(manager, ['network', 'rm', 'my-ingress'], true, 'y\n');
  } finally {
    if (keep)
      note(
        `swarm lab kept (hosts ${lab.hosts.map((h) => h.netns).join(', ')}); it is removed by the next run of the test suite's leak check only if you remove it by hand`,
      );
    else {
      await lab.destroy();
      note('swarm lab removed');
    }
  }
}

async function main(): Promise<void> {
  if (process.argv.includes('--swarm-only')) {
    await swarmPart();
    process.exitCode = failures ? 1 : 0;
    return;
  }
  if (process.argv.includes('--destroy')) {
    await Lab.existing('cove-demo').destroy();
    return;
  }
  const lab = await Lab.create('cove-demo');
  const cove = async (args: string[], expectOk: boolean | undefined = true, input?: string): Promise<RunResult> => {
    const r = await lab.cove(args, input === undefined ? { timeoutMs: 60_000 } : { input, timeoutMs: 60_000 });
    show('$', `cove ${args.map((a) => (/[\s{}]/.test(a) ? `'${a}'` : a)).join(' ')}`, r, expectOk);
    return r;
  };
  /** attach, type lines into the container's shell, then detach with CTRL-p CTRL-q. */
  const attach = async (name: string, lines: string[]): Promise<void> => {
    note(`cove container attach ${name}, typing: ${lines.join(' ; ')} ; then CTRL-p CTRL-q`);
    // Each line runs to its end (the prompt comes back) before the next is typed.
    const r = await lab.attach(
      name,
      lines.map((send) => ({ send, until: SHELL_PROMPT })),
      60_000,
    );
    show('$', `cove container attach ${name}`, r, undefined);
  };
  const hostSh = async (cmd: string): Promise<RunResult> => {
    const r = await lab.sh(cmd);
    show('host$', cmd, r, undefined);
    return r;
  };
  try {
    await lab.startDaemon();
    heading('Cove engine started in lab namespace cove-demo');
    await cove(['version']);
    for (const img of ['alpine', 'nginx']) await cove(['load', '-i', join(REPO, 'build/images', `${img}.tar`)]);
    await cove(['images']);

    heading('Disable networking for a container');
    await cove(['run', '--rm', '-dit', '--network', 'none', '--name', 'no-net-alpine', 'alpine:latest', 'ash']);
    await cove(['exec', 'no-net-alpine', 'ip', 'link', 'show']);
    await cove(['exec', 'no-net-alpine', 'ip', 'route']);
    await cove(['stop', 'no-net-alpine']);

    heading('Networking using the host network');
    await cove(['run', '--rm', '-d', '--network', 'host', '--name', 'my_nginx', 'nginx']);
    await hostSh('sleep 0.3; timeout 5 busybox wget -q -O - http://localhost:80/');
    await hostSh('ip addr show');
    await hostSh('netstat -tulpn | grep :80');
    await cove(['container', 'stop', 'my_nginx']);

    heading('Networking with standalone containers (the default bridge)');
    await cove(['network', 'ls']);
    await cove(['run', '-dit', '--name', 'alpine1', 'alpine', 'ash']);
    await cove(['run', '-dit', '--name', 'alpine2', 'alpine', 'ash']);
    await cove(['container', 'ls']);
    await cove(['network', 'inspect', 'bridge']);
    const ip2 = (await lab.cove(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', 'alpine2'])).stdout.trim();
    await attach('alpine1', ['ip addr show', 'ping -c 2 google.com', `ping -c 2 ${ip2}`, 'ping -c 2 alpine2']);
    await cove(['container', 'stop', 'alpine1', 'alpine2']);
    await cove(['container', 'rm', 'alpine1', 'alpine2']);

    heading('Use user-defined bridge networks');
    await cove(['network', 'create', '--driver', 'bridge', 'alpine-net']);
    await cove(['network', 'ls']);
    await cove(['network', 'inspect', 'alpine-net']);
    await cove(['run', '-dit', '--name', 'alpine1', '--network', 'alpine-net', 'alpine', 'ash']);
    await cove(['run', '-dit', '--name', 'alpine2', '--network', 'alpine-net', 'alpine', 'ash']);
    await cove(['run', '-dit', '--name', 'alpine3', 'alpine', 'ash']);
    await cove(['run', '-dit', '--name', 'alpine4', '--network', 'alpine-net', 'alpine', 'ash']);
    await cove(['network', 'connect', 'bridge', 'alpine4']);
    await cove(['container', 'ls']);
    await cove(['network', 'inspect', 'bridge']);
    await cove(['network', 'inspect', 'alpine-net']);
    const ip3 = (
      await lab.cove(['inspect', '-f', '{{.NetworkSettings.Networks.bridge.IPAddress}}', 'alpine3'])
    ).stdout.trim();
    await attach('alpine1', [
      'ping -c 2 alpine2',
      'ping -c 2 alpine4',
      'ping -c 2 alpine1',
      'ping -c 2 -W 1 alpine3',
      `ping -c 2 -W 1 ${ip3}`,
    ]);
    await attach('alpine4', [
      'ping -c 2 alpine1',
      'ping -c 2 alpine2',
      'ping -c 2 alpine3',
      `ping -c 2 ${ip3}`,
      'ping -c 2 alpine4',
      'ping -c 2 google.com',
    ]);
    await attach('alpine3', ['ping -c 2 google.com']);
    await attach('alpine1', ['ping -c 2 google.com']);
    await cove(['container', 'stop', 'alpine1', 'alpine2', 'alpine3', 'alpine4']);
    await cove(['container', 'rm', 'alpine1', 'alpine2', 'alpine3', 'alpine4']);
    await cove(['network', 'rm', 'alpine-net']);

    heading('Manage a user-defined bridge');
    await cove(['network', 'create', 'my-net']);
    await cove(['create', '--name', 'my-nginx', '--network', 'my-net', '--publish', '8080:80', 'nginx:latest']);
    await cove(['start', 'my-nginx']);
    await cove(['port', 'my-nginx']);
    await hostSh('sleep 0.3; timeout 5 busybox wget -q -O - http://127.0.0.1:8080/');
    await cove(['network', 'connect', 'bridge', 'my-nginx']);
    await cove(['network', 'disconnect', 'bridge', 'my-nginx']);
    await cove(['network', 'rm', 'my-net'], false);
    await cove(['rm', '-f', 'my-nginx']);
    await cove(['network', 'rm', 'my-net']);
  } finally {
    if (keep) {
      note(`lab kept: COVE_HOST=unix://${lab.socket}; remove it with: node dist/demo/tutorial.js --destroy`);
    } else {
      await lab.destroy();
      note('lab removed');
    }
  }
  if (!process.argv.includes('--single-host')) await swarmPart();
  if (failures) {
    process.stdout.write(`\n${failures} step(s) did not behave as expected\n`);
    process.exitCode = 1;
  }
}

await main();
