/**
 * Podman (Debian's podman 4.3 with netavark and aardvark-dns, installed when
 * missing), rootful, set up as in shared/reference/peers/podman: every podman
 * command runs under `nsenter --net=/run/netns/cvb-pm` (only the netns is
 * switched, so netns and overlay mounts made by one command are seen by the
 * next), with private containers.conf/storage.conf under /tmp/cvb-podman,
 * runc (crun cannot run on this VM's hybrid cgroups) and default ulimits set
 * to the current limits (root lacks CAP_SYS_RESOURCE). Rootful netavark keeps
 * state in /run/containers/networks and podman writes
 * /var/lib/containers/cache; teardown removes what this run made there.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine, MemorySample, Target } from './target.js';
import { DockerLikeTarget } from './docker-like.js';
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
  unmountBelow,
} from '../exec.js';
import { REPO } from '../../test/lab/lab.js';

const LAB = 'cvb-pm';
const DIR = '/tmp/cvb-podman';
/** Paths podman/netavark/runc write outside DIR; removed at teardown only if this run made them. */
const OUTSIDE = [
  '/run/containers/networks',
  '/run/containers',
  '/var/lib/containers/cache',
  '/var/lib/containers',
  '/run/runc',
  '/run/crun',
];

export class PodmanEngine implements Engine {
  readonly name = 'podman';
  readonly labNetns = netnsPathOf(LAB);
  readonly hostAddress = '10.99.0.1';
  private preexisting = new Set<string>();
  private netnsBefore = new Set<string>();
  private installNote: string | undefined;
  private started = false;

  private env(): NodeJS.ProcessEnv {
    return {
      ...process.env,
      CONTAINERS_CONF: join(DIR, 'containers.conf'),
      CONTAINERS_STORAGE_CONF: join(DIR, 'storage.conf'),
      CONTAINERS_REGISTRIES_CONF: join(DIR, 'registries.conf'),
    };
  }

  podman(args: string[]) {
    return run(
      'nsenter',
      [`--net=${this.labNetns}`, 'podman', '--root', join(DIR, 'storage'), '--runroot', join(DIR, 'runroot'), ...args],
      {
        env: this.env(),
        timeoutMs: 120_000,
      },
    );
  }

  async setup(): Promise<void> {
    this.installNote = await ensureInstalled('podman', ['podman', 'netavark', 'aardvark-dns', 'runc']);
    if (!existsSync('/usr/lib/podman/netavark'))
      this.installNote =
        (this.installNote ?? '') +
        ((await ensureInstalled('/usr/lib/podman/netavark', ['netavark', 'aardvark-dns'])) ?? '');
    const images = await ensureImages(REPO);
    await this.teardown();
    this.preexisting = new Set(OUTSIDE.filter((p) => existsSync(p)));
    this.netnsBefore = new Set(existsSync('/run/netns') ? readdirSync('/run/netns') : []);
    this.started = true;
    for (const d of ['storage', 'runroot', 'networks', 'tmp', 'volumes']) mkdirSync(join(DIR, d), { recursive: true });
    const nofile = (await must('bash', ['-c', 'ulimit -Hn'])).trim();
    let nproc = (await must('bash', ['-c', 'ulimit -Hu'])).trim();
    if (nproc === 'unlimited' || Number(nproc) > 32768) nproc = '32768';
    writeFileSync(
      join(DIR, 'containers.conf'),
      `[containers]
log_driver = "k8s-file"
# root lacks CAP_SYS_RESOURCE: podman's rootful default nofile=1048576 would fail in the runtime
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]
[network]
network_backend = "netavark"
network_config_dir = "${DIR}/networks"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "${DIR}/events.log"
# crun refuses this VM's hybrid cgroup layout
runtime = "runc"
tmp_dir = "${DIR}/tmp"
volume_path = "${DIR}/volumes"
helper_binaries_dir = ["/usr/lib/podman"]
`,
    );
    writeFileSync(
      join(DIR, 'storage.conf'),
      `[storage]\ndriver = "overlay"\ngraphroot = "${DIR}/storage"\nrunroot = "${DIR}/runroot"\n`,
    );
    writeFileSync(join(DIR, 'registries.conf'), 'unqualified-search-registries = []\nshort-name-mode = "disabled"\n');
    await makeHostLab(LAB);
    for (const f of [images.alpine, images.nginx]) {
      const r = await this.podman(['load', '-i', f]);
      if (r.code !== 0) throw new Error(`podman load ${f}: ${(r.stderr || r.stdout).trim()}`);
    }
  }

  targets(): { ready: Target[]; unavailable: Record<string, string> } {
    const cli = (a: string[]) => this.podman(a);
    return {
      ready: [new DockerLikeTarget('podman', { cli, rmArgs: ['-t', '0'], dnsSuffix: '.dns.podman' })],
      unavailable: {
        'podman-api': 'not measured: podman is daemonless here (its compat API needs `podman system service`)',
      },
    };
  }

  async describe(): Promise<string> {
    const v = (await this.podman(['version', '--format', '{{.Client.Version}}'])).stdout.trim();
    const nv = (await run('/usr/lib/podman/netavark', ['--version'])).stdout.trim();
    const av = (await run('/usr/lib/podman/aardvark-dns', ['--version'])).stdout.trim();
    return `Podman ${v} (rootful, runc, cgroupfs), ${nv}, ${av}; in netns ${LAB}${this.installNote ? `; ${this.installNote}` : ''}`;
  }

  async memory(): Promise<MemorySample> {
    const aardvark = pidsInNetns([this.labNetns]).filter((p) => commOf(p) === 'aardvark-dns');
    const conmons = pidsWithArg(DIR).filter((p) => commOf(p) === 'conmon');
    const aKb = aardvark.reduce((s, p) => s + rssKb(p), 0);
    return {
      engineKb: aKb,
      engineParts: { 'daemon (none)': 0, 'aardvark-dns': aKb },
      monitorsKb: conmons.reduce((s, p) => s + rssKb(p), 0),
      monitors: conmons.length,
    };
  }

  async teardown(): Promise<void> {
    if (existsSync(this.labNetns) && existsSync(join(DIR, 'containers.conf'))) {
      await this.podman(['rm', '-af', '-t', '0']);
      await this.podman(['network', 'prune', '-f']);
    }
    const ours = [
      ...pidsInNetns([this.labNetns, netnsPathOf(`${LAB}-x`)]),
      ...pidsWithArg(DIR),
      ...pidsWithRootUnder(DIR),
    ];
    await killPids([...new Set(ours)]);
    // Container netns podman made (/run/netns/netns-<uuid>) and did not remove.
    if (this.started && existsSync('/run/netns')) {
      const left = readdirSync('/run/netns').filter((n) => n.startsWith('netns-') && !this.netnsBefore.has(n));
      await deleteNetns(...left);
    }
    await deleteNetns(`${LAB}-x`, LAB);
    await unmountBelow(DIR);
    rmSync(DIR, { recursive: true, force: true });
    if (this.started) {
      for (const p of ['/run/containers/networks', '/var/lib/containers/cache']) {
        if (!this.preexisting.has(p)) rmSync(p, { recursive: true, force: true });
      }
      // runc's state dirs may be shared with other runc users: only removed when empty.
      for (const p of ['/run/containers', '/var/lib/containers', '/run/runc', '/run/crun']) {
        if (!this.preexisting.has(p)) await run('rmdir', [p]);
      }
      this.started = false;
    }
  }
}
