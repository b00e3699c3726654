import { cpus, totalmem, hostname, release, arch } from 'node:os';
import { readFileSync } from 'node:fs';
import type { DaemonConfig } from './config.js';
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

/** GET /version */
export function versionInfo(): Record<string, unknown> {
  return {
    Platform: { Name: 'Cove Engine' },
    Components: [{ Name: 'Engine', Version: COVE_VERSION, Details: { ApiVersion: API_VERSION, MinAPIVersion: MIN_API_VERSION, Os: 'linux', Arch: GOARCH[arch()] ?? arch(), KernelVersion: release() } }],
    Version: COVE_VERSION,
    ApiVersion: API_VERSION,
    MinAPIVersion: MIN_API_VERSION,
    GitCommit: process.env.COVE_GIT_COMMIT ?? 'unknown',
    GoVersion: `node${process.versions.node}`,
    Os: 'linux',
    Arch: GOARCH[arch()] ?? arch(),
    KernelVersion: release(),
    Experimental: false,
    BuildTime: '',
  };
}

/** GET /info: the fields the docker CLI and dockerode read. */
export async function systemInfo(config: DaemonConfig, svc: { networks: NetworkService; containers: ContainerService; images: ImageService }): Promise<Record<string, unknown>> {
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
    Plugins: { Volume: [], Network: ['bridge', 'host', 'macvlan', 'null'], Authorization: null, Log: ['k8s-file'] },
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
    LoggingDriver: 'k8s-file',
    CgroupDriver: 'cgroupfs',
    CgroupVersion: '1',
    NEventsListener: 0,
    KernelVersion: release(),
    OperatingSystem: osPrettyName(),
    OSVersion: '',
    OSType: 'linux',
    Architecture: arch() === 'x64' ? 'x86_64' : arch(),
    IndexServerAddress: '',
    RegistryConfig: null,
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
    Swarm: { NodeID: '', NodeAddr: '', LocalNodeState: 'inactive', ControlAvailable: false, Error: '', RemoteManagers: null },
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
