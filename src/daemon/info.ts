import { cpus, totalmem, hostname, release, arch } from 'node:os';
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execFile } from 'node:child_process';
import { basename } from 'node:path';
import type { DaemonConfig } from '../common/config.js';
import type { NetworkService } from '../network/types.js';
import type { ContainerService, ImageService } from '../runtime/types.js';

export const COVE_VERSION = '0.1.0';
export const API_VERSION = '1.51';
export const MIN_API_VERSION = '1.24';

function osPrettyName(): string {
  try {
    const m = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readFileSync('/etc/os-release', 'utf8'));
    return m?.[1] ?? 'Linux';
  } catch {
    return 'Linux';
  }
}

const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm' };

/** One entry of /version's Components (Docker lists containerd, runc, docker-init the same way). */
export interface VersionComponent {
  Name: string;
  Version: string;
  Details?: Record<string, string>;
}

/** `prog --version`'s output, or undefined when the program is not there or fails (2 s at most). */
function versionOutput(prog: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    try {
      execFile(prog, ['--version'], { timeout: 2000, maxBuffer: 64 * 1024 }, (err, stdout) =>
        resolve(err ? undefined : stdout),
      );
    } catch {
      resolve(undefined);
    }
  });
}

/** When this build was made: the mtime of this compiled module (Docker shows its build date). */
const BUILD_TIME = (() => {
  try {
    return statSync(fileURLToPath(import.meta.url)).mtime.toISOString();
  } catch {
    return '';
  }
})();

const field = (text: string, re: RegExp): string | undefined => re.exec(text)?.[1]?.trim();

/**
 * The programs the engine runs, with their versions, read once at start:
 * the OCI runtime (runc/crun), conmon, and etcd when installed (the cluster
 * store). A program that is missing is left out, as Docker leaves out what it
 * does not run.
 */
export async function probeComponents(
  runtimePath: string,
  conmon = 'conmon',
  etcd = 'etcd',
): Promise<VersionComponent[]> {
  const [rt, cm, ed] = await Promise.all([versionOutput(runtimePath), versionOutput(conmon), versionOutput(etcd)]);
  const out: VersionComponent[] = [];
  if (rt) {
    // runc: "runc version 1.1.5+ds1\ncommit: ..."; crun: "crun version 1.8.1\ncommit: ..."
    out.push({
      Name: basename(runtimePath),
      Version: field(rt, /version\s+(\S+)/) ?? '',
      Details: { GitCommit: field(rt, /^commit:\s*(.*)$/m) ?? '' },
    });
  }
  if (cm)
    out.push({
      Name: 'conmon',
      Version: field(cm, /version\s+(\S+)/) ?? '',
      Details: { GitCommit: field(cm, /^commit:\s*(.*)$/m) ?? '' },
    });
  if (ed) {
    const sha = field(ed, /^Git SHA:\s*(.*)$/m) ?? '';
    out.push({
      Name: 'etcd',
      Version: field(ed, /^etcd Version:\s*(\S+)/m) ?? '',
      Details: { GitCommit: /^[0-9a-f]{6,}$/.test(sha) ? sha : '' },
    });
  }
  return out;
}

/** GET /version. `components` are the other programs' versions (probeComponents). */
export function versionInfo(components: VersionComponent[] = []): Record<string, unknown> {
  const goArch = GOARCH[arch()] ?? arch();
  const gitCommit = process.env.COVE_GIT_COMMIT ?? 'unknown';
  const goVersion = `node${process.versions.node}`;
  return {
    Platform: { Name: 'Cove Engine' },
    // The docker CLI prints the Engine lines from Details, every other component from Version + Details.
    Components: [
      {
        Name: 'Engine',
        Version: COVE_VERSION,
        Details: {
          ApiVersion: API_VERSION,
          MinAPIVersion: MIN_API_VERSION,
          GitCommit: gitCommit,
          GoVersion: goVersion,
          Os: 'linux',
          Arch: goArch,
          KernelVersion: release(),
          Experimental: 'false',
          BuildTime: BUILD_TIME,
        },
      },
      ...components,
    ],
    Version: COVE_VERSION,
    ApiVersion: API_VERSION,
    MinAPIVersion: MIN_API_VERSION,
    GitCommit: gitCommit,
    GoVersion: goVersion,
    Os: 'linux',
    Arch: goArch,
    KernelVersion: release(),
    Experimental: false,
    BuildTime: BUILD_TIME,
  };
}

/** GET /info: the fields the docker CLI and dockerode read. */
export async function systemInfo(
  config: DaemonConfig,
  svc: { networks: NetworkService; containers: ContainerService; images: ImageService },
): Promise<Record<string, unknown>> {
  const [all, images] = await Promise.all([svc.containers.list({ all: true }), svc.images.list()]);
  const running = all.filter((c) => c.State === 'running').length;
  const paused = all.filter((c) => c.State === 'paused').length;
  return {
    ID: config.engineId ?? '',
    Containers: all.length,
    ContainersRunning: running,
    ContainersPaused: paused,
    ContainersStopped: all.length - running - paused,
    Images: images.length,
    Driver: 'overlay2',
    DriverStatus: [['Backing Filesystem', 'overlayfs']],
    Plugins: {
      Volume: [],
      Network: ['bridge', 'host', 'macvlan', 'null'],
      Authorization: null,
      Log: ['json-file', 'local', 'none'],
    },
    MemoryLimit: false,
    SwapLimit: false,
    KernelMemory: false,
    CpuCfsPeriod: false,
    CpuCfsQuota: false,
    CPUShares: false,
    CPUSet: false,
    PidsLimit: false,
    IPv4Forwarding: true,
    BridgeNfIptables: true,
    BridgeNfIp6tables: true,
    Debug: config.logLevel === 'debug',
    NFd: 0,
    OomKillDisable: false,
    NGoroutines: 0,
    SystemTime: new Date().toISOString(),
    LoggingDriver: 'json-file',
    CgroupDriver: 'cgroupfs',
    CgroupVersion: '1',
    NEventsListener: 0,
    KernelVersion: release(),
    OperatingSystem: osPrettyName(),
    OSVersion: '',
    OSType: 'linux',
    Architecture: arch() === 'x64' ? 'x86_64' : arch(),
    IndexServerAddress: 'https://index.docker.io/v1/',
    // docker info prints "Insecure Registries" and "Registry Mirrors" from this.
    RegistryConfig: {
      InsecureRegistryCIDRs: ['127.0.0.0/8', ...(config.insecureRegistries ?? []).filter((r) => r.includes('/'))],
      IndexConfigs: Object.fromEntries([
        [
          'docker.io',
          {
            Name: 'docker.io',
            Mirrors: (config.registryMirrors ?? []).map((m) => (m.endsWith('/') ? m : m + '/')),
            Secure: true,
            Official: true,
          },
        ],
        ...(config.insecureRegistries ?? [])
          .filter((r) => !r.includes('/'))
          .map((r) => [r, { Name: r, Mirrors: [], Secure: false, Official: false }]),
      ]),
      Mirrors: (config.registryMirrors ?? []).map((m) => (m.endsWith('/') ? m : m + '/')),
    },
    NCPU: cpus().length,
    MemTotal: totalmem(),
    GenericResources: null,
    DockerRootDir: config.dataRoot,
    HttpProxy: '',
    HttpsProxy: '',
    NoProxy: '',
    Name: hostname(),
    Labels: [],
    ExperimentalBuild: false,
    ServerVersion: COVE_VERSION,
    Runtimes: { runc: { path: config.runtime } },
    DefaultRuntime: 'runc',
    Swarm: {
      NodeID: '',
      NodeAddr: '',
      LocalNodeState: 'inactive',
      ControlAvailable: false,
      Error: '',
      RemoteManagers: null,
    },
    LiveRestoreEnabled: true,
    Isolation: '',
    InitBinary: '',
    ContainerdCommit: { ID: '' },
    RuncCommit: { ID: '' },
    InitCommit: { ID: '' },
    SecurityOptions: [],
    DefaultAddressPools: config.defaultAddressPools.map((p) => ({ Base: p.base, Size: p.size })),
    FirewallBackend: { Driver: 'nftables' },
    Warnings: [],
  };
}
