/**
 * Docker Engine (Debian's docker.io, installed when missing) in lab namespace
 * cvb-dk, set up as in shared/reference/peers/docker: `ip netns exec` gives
 * dockerd a private mount namespace with a /sys of its netns; the cgroup v1
 * hierarchies are mounted again there, and a resolv.conf naming a lab address
 * where nothing listens is bound over /etc/resolv.conf. All state is under
 * /tmp/cvb-docker. Address pools are widened (10.128.0.0/9 in /24s) so 100
 * networks fit; everything else is dockerd's default.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync, readFileSync, existsSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine, MemorySample, Target } from './target.js';
import { DockerLikeTarget } from './docker-like.js';
import { EngineApi } from './engine-api.js';
import {
  commOf,
  deleteNetns,
  ensureImages,
  ensureInstalled,
  killPids,
  makeHostLab,
  must,
  netnsPathOf,
  pidsInNetns,
  pidsWithArg,
  pidsWithRootUnder,
  rssKb,
  run,
  sleep,
  unmountBelow,
  alive,
} from '../exec.js';
import { REPO } from '../../test/lab/lab.js';

const LAB = 'cvb-dk';
const DIR = '/tmp/cvb-docker';
const API_VERSION = '1.41';

const IN_NS_SCRIPT = `#!/bin/sh
# Runs under "ip netns exec": re-mount the cgroup hierarchies it hid, bind our
# resolv.conf, then exec dockerd with all state under $1.
set -e
D=$1
while read -r tgt fstype opts; do
  mkdir -p "$tgt" 2>/dev/null || true
  mount -t "$fstype" -o "$opts" "$fstype" "$tgt"
done < "$D/cgroup-mounts"
mount --bind "$D/resolv.conf" /etc/resolv.conf
exec dockerd --config-file "$D/daemon.json" --data-root "$D/data" --exec-root "$D/run" --pidfile "$D/dockerd.pid" -H "unix://$D/docker.sock"
`;

export class DockerEngine implements Engine {
  readonly name = 'docker';
  readonly labNetns = netnsPathOf(LAB);
  readonly hostAddress = '10.99.0.1';
  private api: EngineApi | undefined;
  readonly socket = join(DIR, 'docker.sock');
  private installNote: string | undefined;

  private env(): NodeJS.ProcessEnv {
    return { ...process.env, DOCKER_HOST: `unix://${this.socket}`, DOCKER_API_VERSION: API_VERSION };
  }

  docker(args: string[]) {
    return run('docker', args, { env: this.env(), timeoutMs: 120_000 });
  }

  async setup(): Promise<void> {
    this.installNote = await ensureInstalled('dockerd', ['docker.io']);
    if ((await run('sh', ['-c', 'command -v docker'])).code !== 0) throw new Error('the docker CLI is missing');
    const images = await ensureImages(REPO);
    await this.teardown();
    mkdirSync(join(DIR, 'data'), { recursive: true });
    mkdirSync(join(DIR, 'run'), { recursive: true });
    writeFileSync(
      join(DIR, 'daemon.json'),
      JSON.stringify({ 'default-address-pools': [{ base: '10.128.0.0/9', size: 24 }] }),
    );
    writeFileSync(join(DIR, 'resolv.conf'), 'nameserver 10.99.0.1\n');
    writeFileSync(join(DIR, 'dockerd-in-ns.sh'), IN_NS_SCRIPT, { mode: 0o755 });
    const mounts = (await must('findmnt', ['-rn', '-t', 'cgroup,cgroup2,tmpfs', '-o', 'TARGET,FSTYPE,OPTIONS']))
      .split('\n')
      .filter((l) => l.startsWith('/sys/fs/cgroup'));
    writeFileSync(join(DIR, 'cgroup-mounts'), mounts.join('\n') + '\n');
    await makeHostLab(LAB);
    const log = openSync(join(DIR, 'dockerd.log'), 'a');
    const child = spawn('ip', ['netns', 'exec', LAB, 'unshare', '--uts', join(DIR, 'dockerd-in-ns.sh'), DIR], {
      stdio: ['ignore', log, log],
      detached: true, // its own session: Ctrl-C reaches us, and we stop it in order
    });
    closeSync(log);
    child.unref();
    this.api = new EngineApi(this.socket, `/v${API_VERSION}`);
    for (let i = 0; ; i++) {
      const ok = await this.api.request('GET', '/_ping').then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) break;
      if (i > 300)
        throw new Error(`dockerd did not answer: ${readFileSync(join(DIR, 'dockerd.log'), 'utf8').slice(-1500)}`);
      await sleep(100);
    }
    for (const f of [images.alpine, images.nginx]) {
      const r = await this.docker(['load', '-i', f]);
      if (r.code !== 0) throw new Error(`docker load ${f}: ${r.stderr}`);
    }
  }

  targets(): { ready: Target[]; unavailable: Record<string, string> } {
    const api = this.api!;
    return {
      ready: [
        new DockerLikeTarget('docker', { cli: (a) => this.docker(a), api }),
        new DockerLikeTarget('docker-api', { api }),
      ],
      unavailable: {},
    };
  }

  engineApi(): EngineApi | undefined {
    return this.api;
  }

  async describe(): Promise<string> {
    const v = (
      await this.docker([
        'version',
        '--format',
        'engine {{.Server.Version}} (API {{.Server.APIVersion}}), CLI {{.Client.Version}}',
      ])
    ).stdout.trim();
    return `Docker ${v}, containerd + runc, iptables-nft; dockerd in netns ${LAB}${this.installNote ? `; ${this.installNote}` : ''}`;
  }

  private pids(): { dockerd?: number; containerd?: number } {
    const read = (f: string) => {
      try {
        return Number(readFileSync(f, 'utf8').trim()) || undefined;
      } catch {
        return undefined;
      }
    };
    const out: { dockerd?: number; containerd?: number } = {};
    const d = read(join(DIR, 'dockerd.pid'));
    const c = read(join(DIR, 'run/containerd/containerd.pid'));
    if (d) out.dockerd = d;
    if (c) out.containerd = c;
    return out;
  }

  private shims(): number[] {
    return pidsWithArg(DIR).filter((p) => commOf(p).startsWith('containerd-shim'));
  }

  async memory(): Promise<MemorySample> {
    const p = this.pids();
    const parts = { dockerd: p.dockerd ? rssKb(p.dockerd) : 0, containerd: p.containerd ? rssKb(p.containerd) : 0 };
    const shims = this.shims();
    return {
      engineKb: parts.dockerd + parts.containerd,
      engineParts: parts,
      monitorsKb: shims.reduce((s, pid) => s + rssKb(pid), 0),
      monitors: shims.length,
    };
  }

  async teardown(): Promise<void> {
    if (existsSync(this.socket) && this.api) {
      try {
        const list = (await this.api.ok('GET', '/containers/json?all=1')).body as Array<{ Id: string }>;
        for (const c of list) await this.api.request('DELETE', `/containers/${c.Id}?force=true`);
        await this.api.request('POST', '/networks/prune');
      } catch {
        /* daemon gone: kill below */
      }
    }
    this.api?.close();
    this.api = undefined;
    const p = this.pids();
    if (p.dockerd && alive(p.dockerd) && commOf(p.dockerd) === 'dockerd') {
      process.kill(p.dockerd, 'SIGTERM');
      for (let i = 0; i < 150 && alive(p.dockerd); i++) await sleep(100);
    }
    const ours = [
      ...(p.dockerd && commOf(p.dockerd) === 'dockerd' ? [p.dockerd] : []),
      ...(p.containerd && commOf(p.containerd) === 'containerd' ? [p.containerd] : []),
      ...pidsWithArg(DIR),
      ...pidsWithRootUnder(DIR),
      ...pidsInNetns([netnsPathOf(LAB), netnsPathOf(`${LAB}-x`)]),
    ];
    await killPids([...new Set(ours)]);
    await deleteNetns(`${LAB}-x`, LAB);
    await unmountBelow(DIR);
    rmSync(DIR, { recursive: true, force: true });
  }
}
