/**
 * Swarm tasks fetch their image (issue #16): a 3-host swarm whose hosts start
 * with no images at all, and the lab registry on the underlay (192.0.2.250,
 * reached by every host over eth1): plain http on :5000, the same registry
 * through a slow proxy on :5001, and TLS with htpasswd auth on :5443.
 * `service create REGISTRY/nginx-like` pins the image to the digest the
 * registry has (as the docker CLI does, through the manager's
 * GET /distribution), and each node running a task pulls that digest; the
 * tasks show `Preparing` while they pull; a missing image rejects the task
 * with docker's "No such image"; `--with-registry-auth` hands the client's
 * credentials to the nodes and never shows them in an answer.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { COVE_BIN, REPO, run, type Lab, type RunResult } from '../lab/lab.js';
import { MultiHostLab } from '../lab/multihost.js';
import { LabRegistry } from '../lab/registry.js';
import { api } from './clients-helpers.js';

const DOCKER = '/usr/local/bin/docker';
const REG_IP = '192.0.2.250';
const P = `${REG_IP}:5000`;
const SLOW = `${REG_IP}:5001`;
const S = `${REG_IP}:5443`;
const skip =
  existsSync(DOCKER) && existsSync('/usr/bin/docker-registry')
    ? false
    : `needs ${DOCKER} and docker-registry (scripts/setup.sh installs it)`;

let lab: MultiHostLab | undefined;
let H: Lab[] = [];
let plain: LabRegistry | undefined;
let secure: LabRegistry | undefined;
let proxy: ChildProcess | undefined;
let dockerConfig = '';

const env = (h: Lab): NodeJS.ProcessEnv => ({ ...h.env, DOCKER_CONFIG: dockerConfig });
const docker = (h: Lab, args: string[], timeoutMs = 90_000): Promise<RunResult> =>
  run(DOCKER, args, { env: env(h), timeoutMs });
const cove = (h: Lab, args: string[], timeoutMs = 90_000): Promise<RunResult> =>
  run(COVE_BIN, args, { env: env(h), timeoutMs });
async function ok(p: Promise<RunResult>, what: string): Promise<string> {
  const r = await p;
  assert.equal(r.code, 0, `${what} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout.trim();
}

async function until(what: string, f: () => Promise<boolean>, ms = 60_000, gapMs = 150): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await f().catch(() => false)) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, gapMs));
  }
  throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
}

/** `service ps` rows as `node desired current... | error`, by node ID. */
async function psRows(service: string): Promise<string[]> {
  const out = await ok(
    docker(H[0]!, [
      'service',
      'ps',
      '--no-resolve',
      '--no-trunc',
      service,
      '--format',
      '{{.Node}}|{{.DesiredState}}|{{.CurrentState}}|{{.Error}}',
    ]),
    'service ps',
  );
  return out.split('\n').filter(Boolean);
}

async function runningOn(service: string): Promise<string[]> {
  return (await psRows(service)).filter((r) => /\|Running\|Running /.test(r)).map((r) => r.split('|')[0]!);
}

/** Image references held by a host (repo:tag and repo@digest). */
async function imagesOn(h: Lab): Promise<string[]> {
  const list = (await api(h, 'GET', '/images/json')).json() as Array<{ RepoTags?: string[]; RepoDigests?: string[] }>;
  return list.flatMap((i) => [...(i.RepoTags ?? []), ...(i.RepoDigests ?? [])]);
}

async function removeImages(h: Lab): Promise<void> {
  for (const i of (await api(h, 'GET', '/images/json')).json() as Array<{ Id: string }>)
    await api(h, 'DELETE', `/images/${i.Id}?force=1`);
  assert.deepEqual(await imagesOn(h), []);
}

async function removeService(name: string): Promise<void> {
  await docker(H[0]!, ['service', 'rm', name]);
  for (const h of H)
    await until(
      `${name}'s containers gone from ${h.name}`,
      async () =>
        (await ok(docker(h, ['ps', '-aq', '--filter', `label=com.docker.swarm.service.name=${name}`]), 'ps')) === '',
    );
}

before(async () => {
  if (skip) return;
  lab = await MultiHostLab.create('sr', 3);
  H = lab.hosts;
  await lab.addUnderlayAddress(REG_IP);
  const dir = join(H[0]!.dir, 'registries');
  dockerConfig = join(H[0]!.dir, 'docker-config');
  mkdirSync(dockerConfig, { recursive: true });
  plain = await LabRegistry.start({
    netns: lab.underlayNetns,
    ip: REG_IP,
    port: 5000,
    dir: join(dir, 'plain'),
    accessLog: true,
  });
  secure = await LabRegistry.start({
    netns: lab.underlayNetns,
    ip: REG_IP,
    port: 5443,
    dir: join(dir, 'tls'),
    tls: true,
    user: { name: 'cove', password: 's3cret' },
  });
  // The plain registry again, answers trickling at 64 KB/s: a pull takes seconds.
  const opts = {
    listen: { host: REG_IP, port: 5001 },
    target: { host: REG_IP, port: 5000 },
    rateBytesPerSec: 64 * 1024,
  };
  proxy = spawn(
    'nsenter',
    [
      `--net=/run/netns/${lab.underlayNetns}`,
      process.execPath,
      join(REPO, 'dist/test/lab/tcp-proxy.js'),
      JSON.stringify(opts),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    proxy!.stdout!.once('data', () => resolve());
    proxy!.once('exit', (c) => reject(new Error(`tcp-proxy exited ${c}`)));
  });
  proxy.stdout!.resume();
  await lab.startSwarm({
    images: [],
    role: 'worker',
    daemon: {
      extraArgs: [
        '--insecure-registry',
        P,
        '--insecure-registry',
        SLOW,
        '--registry-certs-dir',
        secure.certsDir,
        '--registry-timeout',
        '10',
      ],
    },
  });
  // Only the registries hold the image: host 1 pushes it and forgets it.
  const h = H[0]!;
  await ok(cove(h, ['load', '-q', '-i', join(REPO, 'build/images/nginx.tar')]), 'load nginx');
  await ok(cove(h, ['tag', 'nginx', `${P}/nginx-like`]), 'tag');
  await ok(cove(h, ['push', `${P}/nginx-like`]), 'push plain');
  // The real docker CLI logs in (POST /auth) and writes config.json; cove reads it for --with-registry-auth.
  await ok(
    run(DOCKER, ['login', '-u', 'cove', '--password-stdin', S], { env: env(h), input: 's3cret\n', timeoutMs: 30_000 }),
    'docker login',
  );
  await ok(cove(h, ['tag', 'nginx', `${S}/private/nginx-like`]), 'tag private');
  await ok(cove(h, ['push', `${S}/private/nginx-like`]), 'push private');
  await ok(cove(h, ['load', '-q', '-i', join(REPO, 'build/images/alpine.tar')]), 'load alpine');
  await ok(cove(h, ['tag', 'alpine', `${S}/private/nginx-like:v2`]), 'tag v2');
  await ok(cove(h, ['push', `${S}/private/nginx-like:v2`]), 'push v2');
  for (const x of H) await removeImages(x);
});

after(async () => {
  if (proxy?.pid && proxy.exitCode === null) proxy.kill('SIGKILL');
  await plain?.stop();
  await secure?.stop();
  await lab?.destroy();
});

test(
  "service create REGISTRY/nginx-like: pinned to the registry's digest, each node running a task pulls it",
  { skip },
  async () => {
    const digest = (
      (await api(H[0]!, 'GET', `/distribution/${P}/nginx-like:latest/json`)).json() as {
        Descriptor: { digest: string };
      }
    ).Descriptor.digest;
    assert.match(digest, /^sha256:[0-9a-f]{64}$/);
    const c = await docker(H[0]!, [
      'service',
      'create',
      '--name',
      'web',
      '--replicas',
      '3',
      '--detach',
      `${P}/nginx-like`,
    ]);
    assert.equal(c.code, 0, c.stderr + c.stdout);
    assert.doesNotMatch(c.stderr, /could not be accessed on a registry/);
    const image = await ok(
      docker(H[0]!, ['service', 'inspect', 'web', '--format', '{{.Spec.TaskTemplate.ContainerSpec.Image}}']),
      'inspect',
    );
    assert.equal(image, `${P}/nginx-like:latest@${digest}`);
    const ms = await until('3 tasks running', async () => (await runningOn('web')).length === 3, 90_000);
    console.log(`# 3 nodes pulled and ran the service's image in ${ms} ms`);
    const nodes = await runningOn('web');
    assert.equal(new Set(nodes).size, 3, `one task per node: ${nodes.join(' ')}`);
    for (const h of H) {
      const held = await imagesOn(h);
      assert.ok(held.includes(`${P}/nginx-like@${digest}`), `${h.name} holds the pinned digest: ${held.join(' ')}`);
      assert.ok(!held.includes(`${P}/nginx-like:latest`), `a digest pull moves no tag on ${h.name}: ${held.join(' ')}`);
      const ctr = JSON.parse(
        await ok(
          docker(h, [
            'inspect',
            (await ok(docker(h, ['ps', '-q', '--filter', 'label=com.docker.swarm.service.name=web']), 'ps')).split(
              '\n',
            )[0]!,
          ]),
          'inspect container',
        ),
      )[0];
      assert.equal(ctr.Config.Image, `${P}/nginx-like:latest@${digest}`);
      assert.equal(ctr.State.Running, true);
    }
    // Every host asked the registry for that manifest by digest, from its own underlay address.
    const byDigest = plain!.log.split('\n').filter((l) => l.includes(`/v2/nginx-like/manifests/${digest}`));
    for (let i = 0; i < 3; i++)
      assert.ok(
        byDigest.some((l) => l.includes(lab!.addr(i))),
        `host ${i + 1} fetched the manifest by digest:\n${byDigest.join('\n')}`,
      );
    await removeService('web');
  },
);

test('tasks show Preparing while their node pulls the image (a registry answering at 64 KB/s)', { skip }, async () => {
  for (const h of H) await removeImages(h);
  const t0 = Date.now();
  const c = await cove(H[0]!, [
    'service',
    'create',
    '--name',
    'slow',
    '--replicas',
    '2',
    '--detach',
    `${SLOW}/nginx-like`,
  ]);
  assert.equal(c.code, 0, c.stderr + c.stdout);
  let preparing = '';
  await until(
    'a task Preparing',
    async () => {
      const out = await ok(cove(H[0]!, ['service', 'ps', 'slow']), 'cove service ps');
      if (/ Running +Preparing /.test(out)) preparing = out;
      return preparing !== '';
    },
    60_000,
    100,
  );
  assert.match(preparing, /^ID +NAME +IMAGE +NODE +DESIRED STATE +CURRENT STATE +ERROR +PORTS$/m);
  assert.match(
    preparing,
    new RegExp(
      `slow\\.\\d +${SLOW.replace(/\./g, '\\.')}/nginx-like:latest +\\S+ +Running +Preparing (less than a second|\\d+ seconds?) ago`,
    ),
  );
  const ms = await until('2 tasks running', async () => (await runningOn('slow')).length === 2, 120_000);
  console.log(
    `# 2 nodes pulled through a 64 KB/s registry and ran in ${Date.now() - t0} ms (${ms} ms after create returned)`,
  );
  await removeService('slow');
});

test(
  'an image the registry does not have: docker\'s warning at create, the task rejected with "No such image"',
  { skip },
  async () => {
    const c = await docker(H[0]!, ['service', 'create', '--name', 'ghost', '--detach', `${P}/no-such-image`]);
    assert.equal(c.code, 0, c.stderr + c.stdout);
    assert.match(
      c.stderr,
      new RegExp(
        `image ${P.replace(/\./g, '\\.')}/no-such-image:latest could not be accessed on a registry to record\nits digest\\. Each node will access ${P.replace(/\./g, '\\.')}/no-such-image:latest independently,`,
      ),
    );
    let rows: string[] = [];
    await until('the task rejected', async () => {
      rows = await psRows('ghost');
      return rows.some((r) => /\|Rejected /.test(r));
    });
    const rejected = rows.find((r) => /\|Rejected /.test(r))!;
    assert.match(rejected, new RegExp(`\\|"No such image: ${P.replace(/\./g, '\\.')}/no-such-image:latest"$`));
    // The CLI's table truncates the error as docker does, in quotes.
    const table = await ok(docker(H[0]!, ['service', 'ps', 'ghost']), 'service ps');
    assert.match(table, /Rejected .* ago +"No such image: 192\.0\.2\.250:\S*…"/);
    await removeService('ghost');
  },
);

test(
  "--with-registry-auth: the client's credentials reach the nodes that pull, and no answer shows them",
  { skip },
  async () => {
    for (const h of H) await removeImages(h);
    // Without them the manager cannot pin the image, and the nodes are refused.
    const denied = await cove(H[0]!, ['service', 'create', '--name', 'noauth', '--detach', `${S}/private/nginx-like`]);
    assert.equal(denied.code, 0, denied.stderr + denied.stdout);
    assert.match(denied.stderr, /could not be accessed on a registry to record/);
    let rows: string[] = [];
    await until('the task without credentials rejected', async () => {
      rows = await psRows('noauth');
      return rows.some((r) => /\|Rejected .*\|"No such image: /.test(r));
    }).catch((e: Error) => assert.fail(`${e.message}: ${rows.join('\n')}`));
    await removeService('noauth');

    const c = await cove(H[0]!, [
      'service',
      'create',
      '--with-registry-auth',
      '--name',
      'priv',
      '--replicas',
      '3',
      '--detach',
      `${S}/private/nginx-like`,
    ]);
    assert.equal(c.code, 0, c.stderr + c.stdout);
    assert.doesNotMatch(c.stderr, /could not be accessed/);
    await until('3 private tasks running', async () => (await runningOn('priv')).length === 3, 90_000);
    for (const h of H)
      assert.ok(
        (await imagesOn(h)).some((r) => r.startsWith(`${S}/private/nginx-like@sha256:`)),
        `${h.name} pulled the private image`,
      );
    // The credentials are in no answer: service and task inspect, through the CLI and the API.
    const shown = [
      await ok(docker(H[0]!, ['service', 'inspect', 'priv']), 'service inspect'),
      (await api(H[0]!, 'GET', '/tasks')).text,
      (await api(H[0]!, 'GET', '/services?status=true')).text,
    ].join('\n');
    const encoded = Buffer.from(JSON.stringify({ username: 'cove', password: 's3cret' }))
      .toString('base64url')
      .slice(0, 16);
    assert.doesNotMatch(shown, /s3cret|PullOptions|RegistryAuth/);
    assert.ok(!shown.includes(encoded));
    // An update without the flag keeps them: the client cannot pin :v2 (docker's warning), every node pulls it with the kept credentials.
    const u = await cove(H[0]!, [
      'service',
      'update',
      '--image',
      `${S}/private/nginx-like:v2`,
      '--args',
      'sleep 600',
      '--update-parallelism',
      '3',
      '--detach',
      'priv',
    ]);
    assert.equal(u.code, 0, u.stderr + u.stdout);
    assert.match(u.stderr, /could not be accessed on a registry to record/);
    await until(
      '3 tasks of :v2 running',
      async () => {
        const out = await ok(
          docker(H[0]!, [
            'service',
            'ps',
            '--filter',
            'desired-state=running',
            'priv',
            '--format',
            '{{.Image}} {{.CurrentState}}',
          ]),
          'ps',
        );
        const rows = out.split('\n').filter(Boolean);
        return rows.length === 3 && rows.every((r) => r.startsWith(`${S}/private/nginx-like:v2 Running`));
      },
      90_000,
    );
    for (const h of H)
      assert.ok(
        (await imagesOn(h)).includes(`${S}/private/nginx-like:v2`),
        `${h.name} pulled :v2 with the kept credentials`,
      );
    await removeService('priv');
  },
);
