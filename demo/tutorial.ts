/**
 * Walks the seed's Docker networking tutorial against Cove, printing each
 * command as a user would type it (with `docker` replaced by `cove`) and what
 * it printed. The engine runs in a lab namespace with no uplink; a second
 * namespace stands in for the internet (google.com -> 198.51.100.1).
 *
 *   node dist/demo/tutorial.js [--keep | --destroy]   (scripts/demo.sh sets things up first)
 */
import { Lab, REPO, type RunResult } from '../test/lab/lab.js';
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

async function main(): Promise<void> {
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
    const r = await lab.attach(name, lines.map((send) => ({ send, until: SHELL_PROMPT })), 60_000);
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
    const ip3 = (await lab.cove(['inspect', '-f', '{{.NetworkSettings.Networks.bridge.IPAddress}}', 'alpine3'])).stdout.trim();
    await attach('alpine1', ['ping -c 2 alpine2', 'ping -c 2 alpine4', 'ping -c 2 alpine1', 'ping -c 2 -W 1 alpine3', `ping -c 2 -W 1 ${ip3}`]);
    await attach('alpine4', ['ping -c 2 alpine1', 'ping -c 2 alpine2', 'ping -c 2 alpine3', `ping -c 2 ${ip3}`, 'ping -c 2 alpine4', 'ping -c 2 google.com']);
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

    heading('Overlay networks, swarm mode and the ingress network');
    note('not implemented in this version of Cove: swarm, overlay and ingress are planned work.');
  } finally {
    if (keep) {
      note(`lab kept: COVE_HOST=unix://${lab.socket}; remove it with: node dist/demo/tutorial.js --destroy`);
    } else {
      await lab.destroy();
      note('lab removed');
    }
  }
  if (failures) {
    process.stdout.write(`\n${failures} step(s) did not behave as expected\n`);
    process.exitCode = 1;
  }
}

await main();
