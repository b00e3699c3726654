/**
 * Images from a registry: Debian's docker-registry runs on the lab's stand-in
 * internet (198.51.100.1), plain http on :5000 (also the daemon's
 * --registry-mirror, so the seed's `alpine`/`nginx` names resolve through it)
 * and TLS with htpasswd auth on :5443. The demo images are pushed with the real
 * docker CLI and with cove, removed, and pulled back by `docker run`,
 * `cove run`, `cove pull` (tags, digests); then auth, faults, save/load,
 * prune, history, and pull/push throughput.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, existsSync, writeFileSync, statSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { Lab, INTERNET_IP, LAB_OFFLINE, REPO, COVE_BIN, run, type RunResult } from '../lab/lab.js';
import { LabRegistry } from '../lab/registry.js';
import { LabTokenServer } from '../lab/token-server.js';
import { api, docker, dockerPresent, teardown, DOCKER_BIN } from './clients-helpers.js';

// The registries here stand on the lab's stand-in internet (as Docker Hub would): with COVE_LAB_OFFLINE=1 there is none.
// (Registries on a LAN that offline hosts reach are services-registry's: a registry on the swarm's underlay.)
const skip = LAB_OFFLINE
  ? 'the registries stand on the stand-in internet (COVE_LAB_OFFLINE=1: no uplink)'
  : dockerPresent() && existsSync('/usr/bin/docker-registry')
    ? false
    : `needs ${DOCKER_BIN} and docker-registry (scripts/setup.sh installs it)`;

let lab: Lab | undefined;
let plain: LabRegistry | undefined;
let secure: LabRegistry | undefined;
let tokenReg: LabRegistry | undefined;
let tokens: LabTokenServer | undefined;
let hang: ChildProcess | undefined;
let dockerConfig = '';
const P = `${INTERNET_IP}:5000`;
const S = `${INTERNET_IP}:5443`;
const T = `${INTERNET_IP}:5446`;
/** The plain registry again, through test/lab/tcp-proxy.ts (cuts connections on demand). */
const X = `${INTERNET_IP}:5002`;

function daemonOptions(): { extraArgs: string[] } {
  return {
    extraArgs: [
      '--registry-mirror',
      `http://${P}`,
      '--insecure-registry',
      P,
      '--insecure-registry',
      T,
      '--insecure-registry',
      X,
      '--registry-certs-dir',
      secure!.certsDir,
      '--registry-timeout',
      '8',
    ],
  };
}

function L(): Lab {
  assert.ok(lab, 'lab not started');
  return lab;
}

const env = (): NodeJS.ProcessEnv => ({ ...L().env, DOCKER_CONFIG: dockerConfig });
const cove = (args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> =>
  run(COVE_BIN, args, { env: env(), timeoutMs: 120_000, ...opts });
const dk = (args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> =>
  docker(L(), args, { env: { DOCKER_CONFIG: dockerConfig }, timeoutMs: 120_000, ...opts });
async function ok(p: Promise<RunResult>, what: string): Promise<RunResult> {
  const r = await p;
  assert.equal(r.code, 0, `${what} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r;
}

/** Runs a node script on the stand-in internet host (where the registries are). */
function onInet(script: string): Promise<RunResult> {
  return run('nsenter', [`--net=/run/netns/${L().inetNetns}`, process.execPath, '--input-type=module', '-e', script], {
    timeoutMs: 30_000,
  });
}

async function imageIds(): Promise<string[]> {
  return (await api(L(), 'GET', '/images/json')).json().map((i: { Id: string }) => i.Id);
}

async function removeAllImages(): Promise<void> {
  for (const id of await imageIds()) await api(L(), 'DELETE', `/images/${id}?force=1`);
  assert.deepEqual(await imageIds(), []);
}

before(async () => {
  if (skip) return;
  lab = await Lab.create('rgy');
  dockerConfig = join(lab.dir, 'docker-config');
  mkdirSync(dockerConfig, { recursive: true });
  plain = await LabRegistry.start({
    netns: lab.inetNetns,
    ip: INTERNET_IP,
    port: 5000,
    dir: join(lab.dir, 'reg-plain'),
    accessLog: true,
  });
  secure = await LabRegistry.start({
    netns: lab.inetNetns,
    ip: INTERNET_IP,
    port: 5443,
    dir: join(lab.dir, 'reg-tls'),
    tls: true,
    user: { name: 'cove', password: 's3cret' },
  });
  // A registry that demands bearer tokens from a token server next to it.
  tokens = await LabTokenServer.start({
    netns: lab.inetNetns,
    ip: INTERNET_IP,
    port: 5081,
    dir: join(lab.dir, 'tokens'),
    users: { cove: 't0ken' },
    service: 'cove-lab-registry',
    issuer: 'cove-lab-issuer',
  });
  tokenReg = await LabRegistry.start({
    netns: lab.inetNetns,
    ip: INTERNET_IP,
    port: 5446,
    dir: join(lab.dir, 'reg-token'),
    token: { realm: tokens.realm, service: 'cove-lab-registry', issuer: 'cove-lab-issuer', certFile: tokens.certFile },
  });
  // A "registry" that accepts connections and never answers.
  hang = spawn(
    'nsenter',
    [
      `--net=/run/netns/${lab.inetNetns}`,
      process.execPath,
      '-e',
      `require('net').createServer(() => {}).listen(5998, '${INTERNET_IP}')`,
    ],
    { stdio: 'ignore' },
  );
  await lab.startDaemon(daemonOptions());
  for (const img of ['alpine', 'nginx'])
    await ok(cove(['load', '-q', '-i', join(REPO, 'build/images', `${img}.tar`)]), `load ${img}`);
});

after(async () => {
  if (hang?.pid && hang.exitCode === null) hang.kill('SIGKILL');
  await plain?.stop();
  await secure?.stop();
  await tokenReg?.stop();
  await tokens?.stop();
  await teardown(lab);
});

test(
  'push the demo images with the docker CLI and cove; blobs the registry has are skipped or mounted',
  { skip },
  async () => {
    // docker.io/library/* lives under library/ on the mirror.
    for (const name of ['alpine', 'busybox', 'nginx'])
      await ok(dk(['tag', name, `${P}/library/${name}:latest`]), `tag ${name}`);
    const first = await ok(dk(['push', `${P}/library/alpine:latest`]), 'docker push');
    assert.match(
      first.stdout,
      new RegExp(`The push refers to repository \\[${P.replace(/\./g, '\\.')}/library/alpine\\]`),
    );
    assert.match(first.stdout, /: Pushed\n/);
    assert.match(first.stdout, /latest: digest: sha256:[0-9a-f]{64} size: \d+/);
    const again = await ok(dk(['push', `${P}/library/alpine:latest`]), 'docker push again');
    assert.match(again.stdout, /: Layer already exists\n/);
    // busybox is the same image: its layer is mounted from library/alpine, not uploaded again.
    const bb = await ok(cove(['push', `${P}/library/busybox`]), 'cove push busybox');
    assert.match(bb.stdout, /Using default tag: latest/);
    assert.match(bb.stdout, /: (Mounted from library\/alpine|Layer already exists)\n/);
    await ok(cove(['push', `${P}/library/nginx:latest`]), 'cove push nginx');
    const digests = await ok(
      cove(['images', '--digests', '--format', '{{.Repository}} {{.Digest}}']),
      'images --digests',
    );
    assert.match(digests.stdout, new RegExp(`${P.replace(/\./g, '\\.')}/library/alpine sha256:[0-9a-f]{64}`));
    const mirrors = (
      await ok(dk(['info', '--format', '{{json .RegistryConfig.Mirrors}}']), 'docker info')
    ).stdout.trim();
    assert.equal(mirrors, JSON.stringify([`http://${P}/`]));
    // The registry holds them: its catalog, through `cove search`.
    const found = await ok(cove(['search', `${P}/library`]), 'cove search');
    for (const n of ['alpine', 'busybox', 'nginx'])
      assert.match(found.stdout, new RegExp(`${P.replace(/\./g, '\\.')}/library/${n}\\s`));
  },
);

test("docker run and cove run pull a missing image from the registry, with docker's progress", { skip }, async () => {
  await removeAllImages();
  const r = await dk(['run', '--rm', 'alpine', 'echo', 'pulled and ran']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'pulled and ran\n');
  assert.match(
    r.stderr,
    /^Unable to find image 'alpine:latest' locally\nlatest: Pulling from library\/alpine\n[0-9a-f]{12}: Pulling fs layer\n/,
  );
  assert.match(
    r.stderr,
    /[0-9a-f]{12}: Pull complete\nDigest: sha256:[0-9a-f]{64}\nStatus: Downloaded newer image for alpine:latest\n/,
  );
  const c = await cove(['run', '--rm', 'nginx', 'cat', '/etc/hostname']);
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stderr, /Unable to find image 'nginx:latest' locally\nlatest: Pulling from library\/nginx\n/);
  assert.match(c.stderr, /Status: Downloaded newer image for nginx:latest\n/);
  // --pull never refuses to fetch; --pull always fetches (up to date here).
  const never = await cove(['run', '--rm', '--pull', 'never', 'busybox', 'true']);
  assert.equal(never.code, 125);
  assert.match(never.stderr, /No such image: busybox/);
  const always = await cove(['run', '--rm', '--pull', 'always', 'alpine', 'true']);
  assert.equal(always.code, 0, always.stderr);
  assert.match(always.stderr, /Status: Image is up to date for alpine:latest/);
  const inspect = JSON.parse((await ok(dk(['image', 'inspect', 'alpine']), 'inspect')).stdout)[0];
  assert.equal(inspect.RepoTags[0], 'alpine:latest');
  assert.match(inspect.RepoDigests[0], /^alpine@sha256:[0-9a-f]{64}$/);
});

test('pull by tag and by digest; tags and digests name the same image', { skip }, async () => {
  const p = await ok(cove(['pull', `${P}/library/busybox`]), 'cove pull');
  assert.match(p.stdout, /^Using default tag: latest\nlatest: Pulling from library\/busybox\n/);
  assert.match(p.stdout, new RegExp(`\n${P.replace(/\./g, '\\.')}/library/busybox:latest\n$`));
  const digest = /Digest: (sha256:[0-9a-f]{64})/.exec(p.stdout)![1]!;
  const byDigest = await ok(dk(['pull', `${P}/library/busybox@${digest}`]), 'docker pull by digest');
  assert.match(byDigest.stdout, /Status: Image is up to date for .*busybox@sha256:/);
  const a = (
    await ok(cove(['image', 'inspect', '-f', '{{.Id}}', `${P}/library/busybox@${digest}`]), 'inspect by digest')
  ).stdout;
  const b = (await ok(cove(['image', 'inspect', '-f', '{{.Id}}', `${P}/library/busybox:latest`]), 'inspect by tag'))
    .stdout;
  assert.equal(a, b);
  const dist = await api(L(), 'GET', `/distribution/${P}/library/busybox:latest/json`);
  assert.equal(dist.status, 200, dist.text);
  assert.equal(dist.json().Descriptor.digest, digest);
  assert.deepEqual(dist.json().Platforms, [{ architecture: 'amd64', os: 'linux' }]);
  const run1 = await cove(['run', '--rm', `${P}/library/busybox@${digest}`, 'echo', 'by digest']);
  assert.equal(run1.stdout, 'by digest\n', run1.stderr);
});

test('concurrent pulls of one image fetch each layer once; the layer is stored once', { skip }, async () => {
  await removeAllImages();
  const before = (plain!.log.match(/GET \/v2\/library\/alpine\/blobs\/sha256:[0-9a-f]{64}/g) ?? []).length;
  const pulls = await Promise.all([1, 2, 3].map(() => cove(['pull', '-q', 'alpine'])));
  for (const r of pulls) assert.equal(r.code, 0, r.stderr);
  await new Promise((r) => setTimeout(r, 300));
  const after = (plain!.log.match(/GET \/v2\/library\/alpine\/blobs\/sha256:[0-9a-f]{64}/g) ?? []).length;
  // One config fetch per pull (small), one layer fetch in all.
  const layerGets = after - before - 3;
  assert.equal(
    layerGets,
    1,
    plain!.log
      .split('\n')
      .filter((l) => l.includes('/blobs/'))
      .slice(-8)
      .join('\n'),
  );
  const layers = readdirSync(join(L().dataRoot, 'images', 'layers')).filter((n) => /^[0-9a-f]{64}$/.test(n));
  assert.equal(layers.length, 1);
});

test("bad references and faults get docker's words, quickly, and store nothing", { skip }, async (t) => {
  await t.test('a repository that does not exist', async () => {
    const r = await dk(['pull', `${P}/nosuch`]);
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      new RegExp(
        `pull access denied for ${P.replace(/\./g, '\\.')}/nosuch, repository does not exist or may require 'docker login'`,
      ),
    );
    const hub = await dk(['run', '--rm', 'nosuchimage']);
    assert.equal(hub.code, 125);
    assert.match(
      hub.stderr,
      /pull access denied for nosuchimage, repository does not exist or may require 'docker login'/,
    );
  });
  await t.test('a tag that does not exist', async () => {
    const r = await cove(['pull', 'alpine:nosuch']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /manifest for alpine:nosuch not found: manifest unknown/);
  });
  await t.test('a malformed reference', async () => {
    const r = await dk(['pull', `${P}/UPPER`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /invalid reference format/);
  });
  await t.test('a registry that is down, and one that hangs: errors, not hangs', async () => {
    const t0 = Date.now();
    const down = await cove(['pull', `${INTERNET_IP}:5999/alpine`]);
    assert.notEqual(down.code, 0);
    assert.match(down.stderr, /connect ECONNREFUSED|connection refused/);
    const hung = await cove(['pull', `${INTERNET_IP}:5998/alpine`], { timeoutMs: 60_000 });
    assert.notEqual(hung.code, 0);
    assert.match(hung.stderr, /timeout/);
    assert.ok(Date.now() - t0 < 30_000, `took ${Date.now() - t0} ms`);
    assert.equal((await api(L(), 'GET', '/_ping')).status, 200);
  });
  await t.test('a blob whose bytes do not match its digest is refused and nothing is kept', async () => {
    const dir = join(L().dir, 'odd');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'unique.txt'), randomBytes(4096).toString('hex'));
    await ok(run('tar', ['-C', dir, '-cf', join(L().dir, 'odd.tar'), 'unique.txt']), 'tar');
    await ok(cove(['import', join(L().dir, 'odd.tar'), `${P}/odd:1`]), 'import');
    const push = await ok(cove(['push', `${P}/odd:1`]), 'push odd');
    assert.match(push.stdout, /Pushed/);
    const manifest = await onInet(
      `const r = await fetch('http://${P}/v2/odd/manifests/1', { headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' } }); console.log(await r.text());`,
    );
    const layer = JSON.parse(manifest.stdout).layers[0] as { digest: string };
    await ok(cove(['rmi', `${P}/odd:1`]), 'rmi');
    const file = plain!.blobFile(layer.digest);
    const bytes = readFileSync(file);
    bytes[bytes.length - 10] ^= 0xff;
    writeFileSync(file, bytes);
    const r = await cove(['pull', `${P}/odd:1`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`filesystem layer verification failed for digest ${layer.digest}`));
    assert.equal(existsSync(join(L().dataRoot, 'images', 'blobs', 'sha256', layer.digest.slice(7))), false);
    assert.deepEqual(readdirSync(join(L().dataRoot, 'images', 'blobs', 'tmp')), []);
    assert.equal((await cove(['image', 'inspect', `${P}/odd:1`])).code, 1);
  });
  await t.test('an index with no linux/amd64 entry', async () => {
    await ok(cove(['tag', 'alpine', `${P}/armonly:base`]), 'tag');
    const pushed = await ok(cove(['push', `${P}/armonly:base`]), 'push');
    const d = /digest: (sha256:[0-9a-f]{64}) size: (\d+)/.exec(pushed.stdout)!;
    const index = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
          digest: d[1],
          size: Number(d[2]),
          platform: { architecture: 'arm64', os: 'linux' },
        },
      ],
    });
    const put = await onInet(
      `const r = await fetch('http://${P}/v2/armonly/manifests/latest', { method: 'PUT', headers: { 'Content-Type': 'application/vnd.oci.image.index.v1+json' }, body: ${JSON.stringify(index)} }); console.log(r.status, await r.text());`,
    );
    assert.match(put.stdout, /^201/, put.stdout + put.stderr);
    const r = await dk(['pull', `${P}/armonly`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no matching manifest for linux\/amd64 in the manifest list entries/);
    const dist = (await api(L(), 'GET', `/distribution/${P}/armonly:latest/json`)).json();
    assert.deepEqual(dist.Platforms, [{ architecture: 'arm64', os: 'linux' }]);
  });
});

test(
  'a TLS registry with htpasswd auth: login, wrong credentials, push and pull with credentials',
  { skip },
  async () => {
    await ok(dk(['tag', 'alpine', `${S}/private/alpine:v1`]), 'tag');
    const anon = await dk(['push', `${S}/private/alpine:v1`]);
    assert.notEqual(anon.code, 0);
    assert.match(anon.stderr, /no basic auth credentials/);
    const bad = await dk(['login', '-u', 'cove', '--password-stdin', S], { input: 'wrong\n' });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /401 Unauthorized|incorrect username or password/);
    const good = await dk(['login', '-u', 'cove', '--password-stdin', S], { input: 's3cret\n' });
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /Login Succeeded/);
    const cfg = JSON.parse(readFileSync(join(dockerConfig, 'config.json'), 'utf8'));
    assert.equal(Buffer.from(cfg.auths[S].auth, 'base64').toString(), 'cove:s3cret');
    const push = await ok(dk(['push', `${S}/private/alpine:v1`]), 'docker push with login');
    assert.match(push.stdout, /v1: digest: sha256:/);
    await ok(dk(['rmi', `${S}/private/alpine:v1`]), 'rmi');
    // cove reads the same config.json; logout removes the entry; then the pull is refused.
    const pulled = await ok(cove(['pull', `${S}/private/alpine:v1`]), 'cove pull with login');
    assert.match(
      pulled.stdout,
      /Status: (Downloaded newer image|Image is up to date) for 198\.51\.100\.1:5443\/private\/alpine:v1/,
    );
    await ok(cove(['logout', S]), 'cove logout');
    assert.equal(JSON.parse(readFileSync(join(dockerConfig, 'config.json'), 'utf8')).auths[S], undefined);
    await ok(cove(['rmi', `${S}/private/alpine:v1`]), 'rmi');
    const denied = await cove(['pull', `${S}/private/alpine:v1`]);
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /no basic auth credentials|pull access denied/);
    const login = await cove(['login', '-u', 'cove', '--password-stdin', S], { input: 's3cret\n' });
    assert.equal(login.code, 0, login.stderr);
    assert.equal(login.stdout, 'Login Succeeded\n');
    const wrong = await cove(['login', '-u', 'cove', '-p', 'nope', S]);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /401 Unauthorized/);
  },
);

test(
  'a registry that demands bearer tokens: refused without login, tokens with the scopes of each pull and push, logout',
  { skip },
  async () => {
    await ok(dk(['tag', 'alpine', `${T}/tok/alpine:v1`]), 'tag');
    const challenge = await onInet(
      `const r = await fetch('http://${T}/v2/'); console.log(r.status, r.headers.get('www-authenticate'))`,
    );
    assert.match(
      challenge.stdout,
      /^401 Bearer realm="http:\/\/198\.51\.100\.1:5081\/token",service="cove-lab-registry"/,
    );
    const anon = await dk(['push', `${T}/tok/alpine:v1`]);
    assert.notEqual(anon.code, 0);
    assert.match(anon.stderr, /^unauthorized: authentication required$/m);
    const bad = await dk(['login', '-u', 'cove', '--password-stdin', T], { input: 'wrong\n' });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /401 Unauthorized|incorrect username or password/);
    const good = await dk(['login', '-u', 'cove', '--password-stdin', T], { input: 't0ken\n' });
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /Login Succeeded/);
    const before = tokens!.requests.length;
    const push = await ok(cove(['push', `${T}/tok/alpine:v1`]), 'cove push with a token');
    assert.match(push.stdout, /v1: digest: sha256:[0-9a-f]{64} size: \d+/);
    await ok(cove(['rmi', `${T}/tok/alpine:v1`]), 'rmi');
    const pulled = await ok(dk(['pull', `${T}/tok/alpine:v1`]), 'docker pull with a token');
    assert.match(
      pulled.stdout,
      /Status: (Downloaded newer image|Image is up to date) for 198\.51\.100\.1:5446\/tok\/alpine:v1/,
    );
    // The token server saw the user ask for exactly these scopes, and granted them.
    const asked = tokens!.requests
      .slice(before)
      .filter((r) => r.account === 'cove' && r.status === 200)
      .map((r) => r.scopes.join(' '));
    assert.ok(asked.includes('repository:tok/alpine:pull,push'), `push scope: ${asked.join(' | ')}`);
    assert.ok(asked.includes('repository:tok/alpine:pull'), `pull scope: ${asked.join(' | ')}`);
    // Logged out: anonymous tokens grant nothing, and docker's words say so.
    await ok(dk(['logout', T]), 'docker logout');
    await ok(cove(['rmi', `${T}/tok/alpine:v1`]), 'rmi');
    const denied = await cove(['pull', `${T}/tok/alpine:v1`]);
    assert.notEqual(denied.code, 0);
    assert.match(
      denied.stderr,
      /pull access denied for 198\.51\.100\.1:5446\/tok\/alpine, repository does not exist or may require 'docker login'/,
    );
    assert.ok(
      tokens!.requests.some((r) => r.account === null && r.scopes.includes('repository:tok/alpine:pull')),
      'an anonymous token was asked for',
    );
  },
);

test('save and load round-trip; history; image prune -a', { skip }, async () => {
  await ok(cove(['pull', '-q', 'alpine']), 'pull');
  const id = (await ok(cove(['image', 'inspect', '-f', '{{.Id}}', 'alpine']), 'inspect')).stdout.trim();
  const tarPath = join(L().dir, 'saved.tar');
  await ok(cove(['save', '-o', tarPath, 'alpine']), 'cove save');
  assert.ok(statSync(tarPath).size > 100_000);
  await ok(cove(['rmi', '-f', 'alpine']), 'rmi');
  const loaded = await ok(dk(['load', '-i', tarPath]), 'docker load');
  assert.match(loaded.stdout, /Loaded image: alpine:latest/);
  assert.equal((await ok(cove(['image', 'inspect', '-f', '{{.Id}}', 'alpine']), 'inspect')).stdout.trim(), id);
  // docker save through the API writes the same kind of archive.
  const viaDocker = join(L().dir, 'docker-saved.tar');
  await ok(dk(['save', '-o', viaDocker, 'alpine']), 'docker save');
  const listing = (await ok(run('tar', ['-tf', viaDocker]), 'tar -t')).stdout;
  assert.match(listing, /manifest\.json/);
  assert.match(listing, /index\.json/);
  const hist = await ok(cove(['history', 'alpine']), 'history');
  assert.match(hist.stdout, /^IMAGE\s+CREATED\s+CREATED BY\s+SIZE\s+COMMENT\n/);
  assert.match(hist.stdout, new RegExp(`^${id.slice(7, 19)}`, 'm'));
  await ok(cove(['run', '-d', '--name', 'keeper', 'alpine', 'sleep', '300']), 'run keeper');
  const pruned = await ok(cove(['image', 'prune', '-a', '-f']), 'prune -a');
  assert.match(pruned.stdout, /Total reclaimed space: /);
  // Only the image the container uses is left (under all its names).
  assert.deepEqual([...new Set(await imageIds())], [id]);
  await ok(cove(['rm', '-f', 'keeper']), 'rm keeper');
});

interface Proxy {
  proc: ChildProcess;
  requests: Array<{ method: string; path: string; range: string | null }>;
  cuts: number[];
  stop: () => Promise<void>;
}

/** test/lab/tcp-proxy.ts on the stand-in internet, X → the plain registry. */
async function startProxy(opts: { cutAfterBytes?: number; refuseAfterCut?: boolean }): Promise<Proxy> {
  const o = { listen: { host: INTERNET_IP, port: 5002 }, target: { host: INTERNET_IP, port: 5000 }, ...opts };
  const proc = spawn(
    'nsenter',
    [
      `--net=/run/netns/${L().inetNetns}`,
      process.execPath,
      join(REPO, 'dist/test/lab/tcp-proxy.js'),
      JSON.stringify(o),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const p: Proxy = {
    proc,
    requests: [],
    cuts: [],
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        const gone = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGKILL');
        await gone;
      }
    },
  };
  let buf = '';
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line === 'listening') resolve();
        else {
          const m = JSON.parse(line) as { cut?: number; method: string; path: string; range: string | null };
          if (m.cut !== undefined) p.cuts.push(m.cut);
          else p.requests.push(m);
        }
      }
    });
    proc.once('exit', (c) => reject(new Error(`tcp-proxy exited ${c}`)));
  });
  return p;
}

test(
  'an interrupted pull resumes with a Range request: within the pull, and in the next pull; nothing half-written is kept under a name',
  { skip },
  async () => {
    // A 6 MiB layer of random bytes (gzip cannot shrink it), pushed once.
    const dir = join(L().dir, 'resume');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'blob.bin'), randomBytes(6 << 20));
    await ok(run('tar', ['-C', dir, '-cf', join(L().dir, 'resume.tar'), 'blob.bin']), 'tar');
    await ok(cove(['import', join(L().dir, 'resume.tar'), `${P}/resume:1`]), 'import');
    await ok(cove(['push', `${P}/resume:1`]), 'push');
    const layer = JSON.parse(
      (
        await onInet(
          `const r = await fetch('http://${P}/v2/resume/manifests/1', { headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' } }); console.log(JSON.stringify((await r.json()).layers[0]))`,
        )
      ).stdout,
    ) as { digest: string; size: number };
    await ok(cove(['rmi', `${P}/resume:1`]), 'rmi');
    const blobPath = join(L().dataRoot, 'images', 'blobs', 'sha256', layer.digest.slice(7));
    const partialPath = join(L().dataRoot, 'images', 'blobs', 'partial', layer.digest.slice(7));
    const blobGets = (p: Proxy) =>
      p.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${layer.digest}`));

    // 1. The connection breaks at 2 MiB; the same pull retries from where it was, with docker's "Retrying in".
    let proxy = await startProxy({ cutAfterBytes: 2 << 20 });
    try {
      const r = await ok(cove(['pull', `${X}/resume:1`]), 'pull through a cut');
      assert.match(r.stdout, /[0-9a-f]{12}: Retrying in 1 second\n/);
      assert.match(r.stdout, /Status: Downloaded newer image for 198\.51\.100\.1:5002\/resume:1/);
      assert.equal(proxy.cuts.length, 1);
      const gets = blobGets(proxy);
      assert.equal(gets.length, 2, JSON.stringify(gets));
      assert.equal(gets[0]!.range, null);
      const from = Number(/^bytes=(\d+)-$/.exec(gets[1]!.range ?? '')?.[1]);
      assert.ok(from > 0 && from < layer.size, `second GET asks for the rest: ${gets[1]!.range}`);
      assert.ok(!existsSync(partialPath), 'the partial file took its name');
    } finally {
      await proxy.stop();
    }
    await ok(cove(['rmi', `${X}/resume:1`]), 'rmi');

    // 2. The registry goes away at 2 MiB: the pull fails, keeps the bytes it has under partial/ only.
    proxy = await startProxy({ cutAfterBytes: 2 << 20, refuseAfterCut: true });
    const failed = await cove(['pull', `${X}/resume:1`]);
    await proxy.stop();
    assert.notEqual(failed.code, 0);
    assert.match(failed.stdout, /Retrying in 4 seconds\n/);
    assert.match(failed.stderr, /connect ECONNREFUSED 198\.51\.100\.1:5002|ECONNRESET|aborted/);
    assert.ok(!existsSync(blobPath), "nothing under the blob's name");
    const kept = statSync(partialPath).size;
    assert.ok(kept > 0 && kept < layer.size, `partial bytes kept: ${kept}`);
    assert.equal((await ok(cove(['images', '-q', `${X}/resume`]), 'images')).stdout.trim(), '');

    // 3. The next pull asks only for the rest.
    proxy = await startProxy({});
    try {
      const r = await ok(cove(['pull', `${X}/resume:1`]), 'pull again');
      assert.match(r.stdout, /Status: Downloaded newer image for/);
      const gets = blobGets(proxy);
      assert.deepEqual(
        gets.map((g) => g.range),
        [`bytes=${kept}-`],
      );
      assert.ok(existsSync(blobPath) === false || statSync(blobPath).size === layer.size);
      assert.ok(!existsSync(partialPath));
      // The layer's content is the tar that was imported, byte for byte (its diff ID).
      const diffId = (
        await ok(cove(['image', 'inspect', '-f', '{{index .RootFS.Layers 0}}', `${X}/resume:1`]), 'inspect')
      ).stdout.trim();
      const want = createHash('sha256')
        .update(readFileSync(join(L().dir, 'resume.tar')))
        .digest('hex');
      assert.equal(diffId, `sha256:${want}`);
    } finally {
      await proxy.stop();
    }
    await ok(cove(['rmi', `${X}/resume:1`]), 'rmi');
  },
);

test(
  'what interrupted pulls leave is given back: image prune frees partial downloads; a restart drops temporary files, half-made layers and blobs no layer names',
  { skip },
  async () => {
    const images = join(L().dataRoot, 'images');
    // A pull cut for good at 1 MiB keeps a partial download (for the next pull to resume).
    const proxy = await startProxy({ cutAfterBytes: 1 << 20, refuseAfterCut: true });
    const failed = await cove(['pull', `${X}/resume:1`]);
    await proxy.stop();
    assert.notEqual(failed.code, 0);
    const partials = readdirSync(join(images, 'blobs', 'partial'));
    assert.equal(partials.length, 1, 'one partial download kept');
    const partialBytes = statSync(join(images, 'blobs', 'partial', partials[0]!)).size;

    // What a daemon killed mid-pull leaves: a temporary file, a layer directory being filled, a
    // downloaded blob whose extraction never ran (so no layer names it).
    const orphan = randomBytes(4096);
    const orphanHex = createHash('sha256').update(orphan).digest('hex');
    writeFileSync(join(images, 'blobs', 'sha256', orphanHex), orphan);
    mkdirSync(join(images, 'blobs', 'tmp'), { recursive: true });
    writeFileSync(join(images, 'blobs', 'tmp', 'deadbeefdeadbeef'), randomBytes(1000));
    mkdirSync(join(images, 'layers', '.tmp-0123456789ab', 'diff', 'etc'), { recursive: true });
    const storedBefore = readdirSync(join(images, 'blobs', 'sha256'))
      .filter((n) => n !== orphanHex)
      .sort();
    await L().stopDaemon('SIGKILL');
    await L().startDaemon(daemonOptions());
    assert.ok(!existsSync(join(images, 'blobs', 'sha256', orphanHex)), 'the blob no layer names is gone');
    assert.ok(!existsSync(join(images, 'blobs', 'tmp', 'deadbeefdeadbeef')), 'temporary files gone');
    assert.ok(!existsSync(join(images, 'layers', '.tmp-0123456789ab')), 'the half-made layer directory is gone');
    assert.deepEqual(
      readdirSync(join(images, 'blobs', 'sha256')).sort(),
      storedBefore,
      'every blob an image uses is kept',
    );
    assert.deepEqual(
      readdirSync(join(images, 'blobs', 'partial')),
      partials,
      'the partial download survives a restart',
    );
    // Images still run after the clean-up.
    await ok(cove(['run', '--rm', '--network', 'none', 'alpine', 'true']), 'run alpine after the restart');

    // `image prune` gives the partial download's space back and says so.
    const res = await api(L(), 'POST', '/images/prune');
    assert.equal(res.status, 200);
    const pruned = res.json() as { SpaceReclaimed: number };
    assert.ok(
      pruned.SpaceReclaimed >= partialBytes,
      `SpaceReclaimed ${pruned.SpaceReclaimed} counts the ${partialBytes} partial bytes`,
    );
    assert.deepEqual(readdirSync(join(images, 'blobs', 'partial')), []);
  },
);

test('throughput: push and pull of a 32 MB layer', { skip }, async (t) => {
  const dir = join(L().dir, 'big');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'blob.bin'), randomBytes(32 << 20));
  await ok(run('tar', ['-C', dir, '-cf', join(L().dir, 'big.tar'), 'blob.bin']), 'tar');
  await ok(cove(['import', join(L().dir, 'big.tar'), `${P}/big:1`]), 'import');
  let t0 = Date.now();
  await ok(cove(['push', `${P}/big:1`]), 'push big');
  const pushMs = Date.now() - t0;
  await ok(cove(['rmi', `${P}/big:1`]), 'rmi');
  t0 = Date.now();
  await ok(cove(['pull', `${P}/big:1`]), 'pull big');
  const pullMs = Date.now() - t0;
  const mb = 32 * 1.048576;
  t.diagnostic(`push 32 MiB (gzip + chunked upload): ${pushMs} ms, ${(mb / (pushMs / 1000)).toFixed(1)} MB/s`);
  t.diagnostic(`pull 32 MiB (download + verify + extract): ${pullMs} ms, ${(mb / (pullMs / 1000)).toFixed(1)} MB/s`);
  writeFileSync(join(L().dir, 'throughput.txt'), `push ${pushMs} ms\npull ${pullMs} ms\n`);
  await ok(cove(['rmi', `${P}/big:1`]), 'rmi');
});

test(
  'a disk that fills mid-pull: docker\'s "no space left on device", nothing half-written, the space given back',
  { skip },
  async () => {
    // 24 MiB of random bytes, pushed from the main lab.
    const dir = join(L().dir, 'fill');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'blob.bin'), randomBytes(24 << 20));
    await ok(run('tar', ['-C', dir, '-cf', join(L().dir, 'fill.tar'), 'blob.bin']), 'tar');
    await ok(cove(['import', join(L().dir, 'fill.tar'), `${P}/fill:1`]), 'import');
    await ok(cove(['push', `${P}/fill:1`]), 'push');
    await ok(cove(['rmi', `${P}/fill:1`]), 'rmi');
    // A second host whose data root is a 16 MiB tmpfs, with the same registry storage served on its own stand-in internet.
    const small = await Lab.create('rgd');
    let reg: LabRegistry | undefined;
    try {
      mkdirSync(small.dataRoot, { recursive: true });
      await ok(run('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0711', 'tmpfs', small.dataRoot]), 'mount tmpfs');
      reg = await LabRegistry.start({
        netns: small.inetNetns,
        ip: INTERNET_IP,
        port: 5000,
        dir: join(L().dir, 'reg-plain'),
      });
      await small.startDaemon({ extraArgs: ['--insecure-registry', P, '--registry-timeout', '8'] });
      const c = (args: string[]): Promise<RunResult> => run(COVE_BIN, args, { env: small.env, timeoutMs: 120_000 });
      const free = async (): Promise<number> => {
        const st = await statfs(small.dataRoot);
        return st.bavail * st.bsize;
      };
      const before = await free();
      const r = await c(['pull', `${P}/fill:1`]);
      assert.notEqual(r.code, 0, r.stdout);
      assert.match(r.stderr, /^write \/tmp\/cove-lab\/\S+: no space left on device$/m);
      assert.ok(await small.ping(), 'the daemon lives on');
      // Nothing of the layer is left: no blob, no partial download, no temporary file, no layer; the space is back.
      const images = join(small.dataRoot, 'images');
      for (const sub of ['blobs/sha256', 'blobs/partial', 'blobs/tmp', 'layers']) {
        const p = join(images, sub);
        const left = existsSync(p) ? readdirSync(p).filter((f) => statSync(join(p, f)).size > 1 << 20) : [];
        assert.deepEqual(left, [], `${sub} holds nothing big`);
      }
      assert.equal((await ok(c(['images', '-q']), 'images')).stdout.trim(), '');
      assert.ok((await free()) >= before - (256 << 10), `space given back: ${before} before, ${await free()} after`);
      // A pull that fits still works.
      const fits = await ok(c(['pull', `${P}/library/alpine`]), 'pull alpine');
      assert.match(fits.stdout, /Status: Downloaded newer image for 198\.51\.100\.1:5000\/library\/alpine:latest/);
    } finally {
      await reg?.stop();
      await teardown(small);
    }
  },
);
