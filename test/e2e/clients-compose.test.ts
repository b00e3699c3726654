/**
 * docker-compose 1.29 (Debian's, speaking the Engine API through docker-py)
 * drives Cove unchanged: `up -d` of a two-service file with a custom network
 * and an alias, the services resolve each other by service name and alias,
 * `ps`, `logs` and `exec` work, and `down` removes the containers and the
 * network.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import type { Lab } from '../lab/lab.js';
import { run, type RunResult } from '../lab/lab.js';
import { api, clientLab, teardown, sleep, COMPOSE_BIN } from './clients-helpers.js';
import { wget } from './seed-helpers.js';

const skip = existsSync(COMPOSE_BIN)
  ? false
  : `docker-compose is not installed (${COMPOSE_BIN}); scripts/setup.sh installs it`;

const COMPOSE_FILE = `version: "3.8"
services:
  web:
    image: nginx
    ports: ["8088:80"]
    networks:
      backend:
        aliases:
          - www
  client:
    image: alpine
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    networks:
      - backend
networks:
  backend:
    labels:
      purpose: compose-test
`;

let lab: Lab | undefined;
let dir: string;
before(async () => {
  if (skip) return;
  lab = await clientLab('cove-t-cl3');
  dir = mkdtempSync(join(tmpdir(), 'cove-compose-'));
  writeFileSync(join(dir, 'docker-compose.yml'), COMPOSE_FILE);
});
after(async () => {
  if (lab && dir) await compose(['down', '-t', '1']).catch(() => undefined);
  await teardown(lab);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function compose(args: string[]): Promise<RunResult> {
  // COMPOSE_INTERACTIVE_NO_CLI: `exec` goes through the API, not through a docker binary.
  return run(COMPOSE_BIN, ['-p', 'demo', '-f', join(dir, 'docker-compose.yml'), ...args], {
    env: { ...lab!.env, COMPOSE_INTERACTIVE_NO_CLI: '1' },
    timeoutMs: 120_000,
  });
}

async function composeOk(args: string[]): Promise<string> {
  const r = await compose(args);
  if (r.code !== 0) throw new Error(`docker-compose ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout + r.stderr;
}

test('docker-compose up -d, resolve by service name and alias, down', { skip }, async (t) => {
  await t.test('up -d creates the network <project>_<net> and both services', async () => {
    const out = await composeOk(['up', '-d']);
    assert.match(out, /Creating network "demo_backend" with the default driver/);
    assert.match(out, /Creating demo_web_1\s+\.\.\. done/);
    assert.match(out, /Creating demo_client_1\s+\.\.\. done/);
    const nets = (
      await api(
        lab!,
        'GET',
        `/networks?filters=${encodeURIComponent(JSON.stringify({ label: ['com.docker.compose.project=demo'] }))}`,
      )
    ).json();
    assert.deepEqual(
      nets.map((n: { Name: string }) => n.Name),
      ['demo_backend'],
    );
    assert.equal(nets[0].Labels.purpose, 'compose-test');
    assert.equal(nets[0].Labels['com.docker.compose.network'], 'backend');
    const cs = (
      await api(
        lab!,
        'GET',
        `/containers/json?filters=${encodeURIComponent(JSON.stringify({ label: ['com.docker.compose.project=demo'] }))}`,
      )
    ).json();
    assert.deepEqual(cs.map((c: { Names: string[] }) => c.Names[0]).sort(), ['/demo_client_1', '/demo_web_1']);
    for (const c of cs) assert.equal(c.State, 'running');
  });

  await t.test('ps lists both services Up; the published port answers on the host', async () => {
    const ps = await composeOk(['ps']);
    assert.match(ps, /demo_client_1\s+sleep 3600\s+Up/);
    assert.match(ps, /demo_web_1\s+busybox httpd -f -p 80 -h \/www\s+Up\s+0\.0\.0\.0:8088->80\/tcp/);
    assert.equal((await composeOk(['port', 'web', '80'])).trim(), '0.0.0.0:8088');
    let page: string | undefined;
    for (let i = 0; i < 20 && !page; i++) {
      page = await wget(lab!, 'http://127.0.0.1:8088/');
      if (!page) await sleep(200);
    }
    assert.match(page ?? '', /Welcome to nginx/);
  });

  await t.test('the services resolve each other by service name and alias', async () => {
    const web = (await api(lab!, 'GET', '/containers/demo_web_1/json')).json();
    const ep = web.NetworkSettings.Networks.demo_backend;
    assert.ok(ep.Aliases.includes('web') && ep.Aliases.includes('www'), ep.Aliases);
    for (const name of ['web', 'www', 'demo_web_1']) {
      const look = await composeOk(['exec', '-T', 'client', 'nslookup', name]);
      assert.ok(look.includes(ep.IPAddress), `${name}: ${look}`);
    }
    const back = await composeOk(['exec', '-T', 'web', 'ping', '-c', '1', '-W', '2', 'client']);
    assert.match(back, /1 packets received/);
    let page = '';
    for (let i = 0; i < 20 && !page.includes('Welcome'); i++) {
      const r = await compose(['exec', '-T', 'client', 'timeout', '5', 'wget', '-q', '-O', '-', 'http://www/']);
      page = r.stdout;
      if (!page.includes('Welcome')) await sleep(200);
    }
    assert.match(page, /Welcome to nginx/);
  });

  await t.test('exec exit codes and logs', async () => {
    const r = await compose(['exec', '-T', 'client', 'sh', '-c', 'echo bye; exit 5']);
    assert.equal(r.code, 5);
    assert.equal(r.stdout, 'bye\n');
    const logs = await composeOk(['logs', '--no-color', 'web']);
    assert.match(logs, /Attaching to demo_web_1/);
  });

  await t.test('down removes the containers and the network', async () => {
    const out = await composeOk(['down', '-t', '1']);
    assert.match(out, /Removing demo_web_1\s+\.\.\. done/);
    assert.match(out, /Removing demo_client_1\s+\.\.\. done/);
    assert.match(out, /Removing network demo_backend/);
    const cs = (await api(lab!, 'GET', '/containers/json?all=1')).json();
    assert.deepEqual(cs, []);
    const nets = (await api(lab!, 'GET', '/networks'))
      .json()
      .map((n: { Name: string }) => n.Name)
      .sort();
    assert.deepEqual(nets, ['bridge', 'host', 'none']);
  });
});

const FOREGROUND_FILE = `version: "3.8"
services:
  server:
    image: nginx
    stop_grace_period: 1s
  hello:
    image: alpine
    command: ["sh", "-c", "sleep 1; nslookup server >/dev/null && echo resolved server; echo bye"]
`;

test('docker-compose up in the foreground attaches to the services and ends with the exit code', { skip }, async () => {
  const fg = mkdtempSync(join(tmpdir(), 'cove-compose-fg-'));
  const file = join(fg, 'docker-compose.yml');
  writeFileSync(file, FOREGROUND_FILE);
  const env = { ...lab!.env, COMPOSE_INTERACTIVE_NO_CLI: '1' };
  try {
    const r = await run(
      COMPOSE_BIN,
      ['-p', 'fg', '-f', file, '--no-ansi', 'up', '--abort-on-container-exit', '--exit-code-from', 'hello'],
      { env, timeoutMs: 120_000 },
    );
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const out = r.stdout + r.stderr;
    assert.match(out, /Creating network "fg_default" with the default driver/);
    assert.match(out, /Attaching to fg_server_1, fg_hello_1|Attaching to fg_hello_1, fg_server_1/);
    assert.match(out, /hello_1\s+\| resolved server/);
    assert.match(out, /hello_1\s+\| bye/);
    assert.match(out, /fg_hello_1 exited with code 0/);
  } finally {
    const down = await run(COMPOSE_BIN, ['-p', 'fg', '-f', file, 'down', '-t', '1'], { env, timeoutMs: 120_000 });
    rmSync(fg, { recursive: true, force: true });
    assert.equal(down.code, 0, down.stderr);
  }
  const nets = (await api(lab!, 'GET', '/networks')).json().map((n: { Name: string }) => n.Name);
  assert.ok(!nets.includes('fg_default'), nets.join(' '));
});
