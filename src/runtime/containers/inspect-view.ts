/**
 * The Config and HostConfig of `GET /containers/{id}/json` as Docker prints
 * them: moby marshals its Go structs, so every field that is not `omitempty`
 * is present even when the client never sent it (dockerode and docker-py send
 * a few keys only), and keys the structs do not have (docker-py and dockerode
 * put `name` in the body) are gone.
 */
import { availableParallelism } from 'node:os';
import { InvalidParameter } from '../../common/errors.js';
import type { DockerContainerConfig, DockerHostConfig } from '../types.js';

/** container.Config fields always marshalled, with their zero values. */
const CONFIG_ZERO: Record<string, unknown> = {
  Hostname: '',
  Domainname: '',
  User: '',
  AttachStdin: false,
  AttachStdout: false,
  AttachStderr: false,
  Tty: false,
  OpenStdin: false,
  StdinOnce: false,
  Env: null,
  Cmd: null,
  Image: '',
  Volumes: null,
  WorkingDir: '',
  Entrypoint: null,
  OnBuild: null,
  Labels: null,
};
/** container.Config fields marshalled only when set (`omitempty`). */
const CONFIG_OMITEMPTY = [
  'ExposedPorts',
  'Healthcheck',
  'ArgsEscaped',
  'NetworkDisabled',
  'MacAddress',
  'StopSignal',
  'StopTimeout',
  'Shell',
];
const CONFIG_ORDER = [
  'Hostname',
  'Domainname',
  'User',
  'AttachStdin',
  'AttachStdout',
  'AttachStderr',
  'ExposedPorts',
  'Tty',
  'OpenStdin',
  'StdinOnce',
  'Env',
  'Cmd',
  'Healthcheck',
  'ArgsEscaped',
  'Image',
  'Volumes',
  'WorkingDir',
  'Entrypoint',
  'NetworkDisabled',
  'MacAddress',
  'OnBuild',
  'Labels',
  'StopSignal',
  'StopTimeout',
  'Shell',
];

export function configView(c: DockerContainerConfig): DockerContainerConfig {
  const out: Record<string, unknown> = {};
  for (const k of CONFIG_ORDER) {
    const v = (c as Record<string, unknown>)[k];
    if (CONFIG_OMITEMPTY.includes(k)) {
      if (v !== undefined && v !== null && v !== '' && v !== false && v !== 0) out[k] = v;
    } else {
      out[k] = v === undefined ? CONFIG_ZERO[k] : v;
    }
  }
  return out as DockerContainerConfig;
}

/** container.HostConfig fields always marshalled, with the values a plain create gets. */
const HOST_CONFIG_ZERO: Record<string, unknown> = {
  Binds: null,
  ContainerIDFile: '',
  LogConfig: { Type: 'json-file', Config: {} },
  NetworkMode: 'bridge',
  PortBindings: {},
  RestartPolicy: { Name: 'no', MaximumRetryCount: 0 },
  AutoRemove: false,
  VolumeDriver: '',
  VolumesFrom: null,
  ConsoleSize: [0, 0],
  CapAdd: null,
  CapDrop: null,
  CgroupnsMode: '',
  Dns: [],
  DnsOptions: [],
  DnsSearch: [],
  ExtraHosts: null,
  GroupAdd: null,
  IpcMode: '',
  Cgroup: '',
  Links: null,
  OomScoreAdj: 0,
  PidMode: '',
  Privileged: false,
  PublishAllPorts: false,
  ReadonlyRootfs: false,
  SecurityOpt: null,
  UTSMode: '',
  UsernsMode: '',
  ShmSize: 0,
  Isolation: '',
  CpuShares: 0,
  Memory: 0,
  NanoCpus: 0,
  CgroupParent: '',
  BlkioWeight: 0,
  BlkioWeightDevice: [],
  BlkioDeviceReadBps: [],
  BlkioDeviceWriteBps: [],
  BlkioDeviceReadIOps: [],
  BlkioDeviceWriteIOps: [],
  CpuPeriod: 0,
  CpuQuota: 0,
  CpuRealtimePeriod: 0,
  CpuRealtimeRuntime: 0,
  CpusetCpus: '',
  CpusetMems: '',
  Devices: [],
  DeviceCgroupRules: null,
  DeviceRequests: null,
  MemoryReservation: 0,
  MemorySwap: 0,
  MemorySwappiness: null,
  OomKillDisable: false,
  PidsLimit: null,
  Ulimits: [],
  CpuCount: 0,
  CpuPercent: 0,
  IOMaximumIOps: 0,
  IOMaximumBandwidth: 0,
  MaskedPaths: null,
  ReadonlyPaths: null,
};

/** Docker's full HostConfig: the zero values under what the client sent. */
export function hostConfigView(h: DockerHostConfig): DockerHostConfig {
  const out: Record<string, unknown> = { ...HOST_CONFIG_ZERO };
  for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k] = v;
  return out as DockerHostConfig;
}

/** moby's container.ValidateRestartPolicy, with its wording. */
/**
 * Resource values Docker refuses at create (moby verifyPlatformContainerResources),
 * so that nothing accepted here fails only at start.
 */
export function validateResources(hc: {
  Memory?: number;
  MemorySwap?: number;
  MemoryReservation?: number;
  ShmSize?: number;
  CpuShares?: number;
  NanoCpus?: number;
  PidsLimit?: number | null;
}): void {
  const MIN_MEMORY = 6 * 1024 * 1024;
  if (hc.Memory && hc.Memory < MIN_MEMORY) throw new InvalidParameter('Minimum memory limit allowed is 6MB');
  if (hc.MemoryReservation && hc.MemoryReservation < MIN_MEMORY)
    throw new InvalidParameter('Minimum memory reservation allowed is 6MB');
  if (hc.MemorySwap && hc.MemorySwap > 0 && hc.Memory && hc.MemorySwap < hc.Memory) {
    throw new InvalidParameter('Minimum memoryswap limit should be larger than memory limit, see usage');
  }
  if (hc.ShmSize !== undefined && hc.ShmSize < 0) throw new InvalidParameter('SHM size can not be less than 0');
  if (hc.CpuShares !== undefined && hc.CpuShares < 0)
    throw new InvalidParameter(`invalid CPU shares (${hc.CpuShares}): value must be a positive integer`);
  if (hc.NanoCpus !== undefined && hc.NanoCpus < 0)
    throw new InvalidParameter(
      `range of CPUs is from 0.01 to ${osCpus()}.00, as there are only ${osCpus()} CPUs available`,
    );
}

function osCpus(): number {
  return availableParallelism();
}

export function validateRestartPolicy(p: { Name?: string; MaximumRetryCount?: number } | null | undefined): void {
  if (!p) return;
  const max = p.MaximumRetryCount ?? 0;
  switch (p.Name ?? '') {
    case 'always':
    case 'unless-stopped':
    case 'no':
      if (max !== 0) {
        throw new InvalidParameter(
          `invalid restart policy: maximum retry count can only be used with 'on-failure'${max < 0 ? ' and cannot be negative' : ''}`,
        );
      }
      return;
    case 'on-failure':
      if (max < 0) throw new InvalidParameter('invalid restart policy: maximum retry count cannot be negative');
      return;
    case '':
      return;
    default:
      throw new InvalidParameter(
        `invalid restart policy: unknown policy '${p.Name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'`,
      );
  }
}
