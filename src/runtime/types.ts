/**
 * Contracts of the runtime layer (images and containers), served by the API.
 * Request and response types follow the Engine API v1.51 JSON (PascalCase);
 * only fields Cove uses are typed, the rest pass through as unknown.
 */
import type { Readable, Writable } from 'node:stream';
import type { DockerEndpointSettings, DockerNetworkSettings, DockerPortMap, Filters } from '../network/types.js';

export interface DockerContainerConfig {
  Hostname?: string;
  Domainname?: string;
  User?: string;
  AttachStdin?: boolean;
  AttachStdout?: boolean;
  AttachStderr?: boolean;
  ExposedPorts?: Record<string, object> | null;
  Tty?: boolean;
  OpenStdin?: boolean;
  StdinOnce?: boolean;
  Env?: string[] | null;
  Cmd?: string[] | null;
  Entrypoint?: string[] | null;
  Image?: string;
  Labels?: Record<string, string> | null;
  WorkingDir?: string;
  StopSignal?: string;
  StopTimeout?: number;
  MacAddress?: string;
  /** Anonymous volumes (`-v /path`), merged with the image's VOLUME. */
  Volumes?: Record<string, object> | null;
  [k: string]: unknown;
}

export interface DockerHostConfig {
  NetworkMode?: string;
  PortBindings?: DockerPortMap | null;
  PublishAllPorts?: boolean;
  AutoRemove?: boolean;
  /** Legacy links ("name:alias"); on a user-defined network they move to the endpoint at create. */
  Links?: string[] | null;
  Dns?: string[] | null;
  DnsOptions?: string[] | null;
  DnsSearch?: string[] | null;
  ExtraHosts?: string[] | null;
  Privileged?: boolean;
  CapAdd?: string[] | null;
  Sysctls?: Record<string, string> | null;
  RestartPolicy?: { Name?: string; MaximumRetryCount?: number };
  [k: string]: unknown;
}

/** POST /containers/create body. */
export interface DockerContainerCreate extends DockerContainerConfig {
  HostConfig?: DockerHostConfig;
  NetworkingConfig?: { EndpointsConfig?: Record<string, DockerEndpointSettings> | null } | null;
}

export interface DockerContainerState {
  Status: 'created' | 'running' | 'paused' | 'restarting' | 'removing' | 'exited' | 'dead';
  Running: boolean;
  Paused: boolean;
  Restarting: boolean;
  OOMKilled: boolean;
  Dead: boolean;
  Pid: number;
  ExitCode: number;
  Error: string;
  StartedAt: string;
  FinishedAt: string;
  /** Present for a container with a HEALTHCHECK, once started (health.ts). */
  Health?: {
    Status: 'starting' | 'healthy' | 'unhealthy';
    FailingStreak: number;
    Log: Array<{ Start: string; End: string; ExitCode: number; Output: string }>;
  };
}

/** GET /containers/{id}/json response (the fields Cove fills). */
export interface DockerContainerInspect {
  Id: string;
  Created: string;
  Path: string;
  Args: string[];
  State: DockerContainerState;
  Image: string;
  ResolvConfPath: string;
  HostnamePath: string;
  HostsPath: string;
  LogPath: string;
  Name: string;
  RestartCount: number;
  Driver: string;
  Platform: string;
  MountLabel: string;
  ProcessLabel: string;
  AppArmorProfile: string;
  ExecIDs: string[] | null;
  HostConfig: DockerHostConfig;
  GraphDriver: { Name: string; Data: Record<string, string> | null };
  Mounts: unknown[];
  Config: DockerContainerConfig;
  NetworkSettings: DockerNetworkSettings;
}

/** One row of GET /containers/json. */
export interface DockerContainerSummary {
  Id: string;
  Names: string[];
  Image: string;
  ImageID: string;
  Command: string;
  Created: number;
  Ports: Array<{ IP?: string; PrivatePort: number; PublicPort?: number; Type: string }>;
  Labels: Record<string, string>;
  State: string;
  Status: string;
  HostConfig: { NetworkMode: string };
  NetworkSettings: { Networks: Record<string, DockerEndpointSettings> };
  Mounts: unknown[];
}

export interface DockerImageSummary {
  Id: string;
  ParentId: string;
  RepoTags: string[];
  RepoDigests: string[];
  Created: number;
  Size: number;
  SharedSize: number;
  VirtualSize?: number;
  Labels: Record<string, string> | null;
  Containers: number;
}

/** A live stdio session to a container or an exec (attach, exec start). */
export interface IoSession {
  readonly tty: boolean;
  /** Container output; with a TTY everything arrives on stdout. */
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  /** Container input, when stdin was asked for. */
  readonly stdin: Writable | null;
  resize(rows: number, cols: number): Promise<void>;
  /**
   * Settles when the session ends: 'exited' (the process ended), 'detached'
   * (the detach keys were read from stdin; the process keeps running) or
   * 'closed' (the client went away).
   */
  readonly done: Promise<'exited' | 'detached' | 'closed'>;
  close(): void;
}

export interface AttachOptions {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  /** Replay the log before streaming. */
  logs: boolean;
  stream: boolean;
  /** Docker's notation, e.g. "ctrl-p,ctrl-q" (the default). */
  detachKeys?: string;
}

export interface LogOptions {
  follow: boolean;
  stdout: boolean;
  stderr: boolean;
  since?: number;
  until?: number;
  timestamps: boolean;
  /** 'all' or a number of lines. */
  tail: string;
}

export interface LogEntry {
  stream: 'stdout' | 'stderr';
  time: string;
  data: Buffer;
}

export interface DockerExecCreate {
  AttachStdin?: boolean;
  AttachStdout?: boolean;
  AttachStderr?: boolean;
  DetachKeys?: string;
  Tty?: boolean;
  Env?: string[] | null;
  Cmd: string[];
  Privileged?: boolean;
  User?: string;
  WorkingDir?: string;
  ConsoleSize?: [number, number] | null;
}

export interface ImageService {
  /** POST /images/create?fromSrc=- : a rootfs tar (optionally compressed) becomes an image. */
  importTar(
    tar: Readable,
    opts: { repo?: string; tag?: string; changes?: string[]; message?: string; onProgress?: (msg: string) => void },
  ): Promise<string>;
  /** POST /images/load : docker-archive or OCI-layout tar; returns the loaded tags/IDs. */
  load(tar: Readable, onProgress?: (msg: string) => void): Promise<string[]>;
  list(opts?: { all?: boolean; filters?: Filters }): Promise<DockerImageSummary[]>;
  inspect(ref: string): Promise<Record<string, unknown>>;
  tag(ref: string, repo: string, tag?: string): Promise<void>;
  remove(
    ref: string,
    opts?: { force?: boolean; noprune?: boolean },
  ): Promise<Array<{ Untagged?: string; Deleted?: string }>>;
  history(
    ref: string,
  ): Promise<
    Array<{ Id: string; Created: number; CreatedBy: string; Tags: string[] | null; Size: number; Comment: string }>
  >;
  prune(opts?: {
    all?: boolean;
    filters?: Filters;
  }): Promise<{ ImagesDeleted: Array<{ Untagged?: string; Deleted?: string }> | null; SpaceReclaimed: number }>;
  /** docker-archive (also an OCI layout) of the named images. */
  save(refs: string[]): Promise<Readable>;
  /** Resolves a reference (name[:tag], ID, ID prefix) to an image ID, or throws NotFound "No such image: ref". */
  resolve(ref: string): Promise<string>;
}

export interface ContainerService {
  create(name: string | undefined, body: DockerContainerCreate): Promise<{ Id: string; Warnings: string[] }>;
  start(idOrName: string): Promise<void>;
  stop(idOrName: string, opts?: { timeout?: number; signal?: string }): Promise<void>;
  kill(idOrName: string, signal?: string): Promise<void>;
  restart(idOrName: string, opts?: { timeout?: number }): Promise<void>;
  remove(idOrName: string, opts?: { force?: boolean; volumes?: boolean }): Promise<void>;
  rename(idOrName: string, newName: string): Promise<void>;
  /** docker update: restart policy and resource limits (POST /containers/{id}/update). */
  updateContainer(idOrName: string, body: Record<string, unknown>): Promise<{ Warnings: string[] }>;
  /** docker container prune: stopped containers matching until/label/label!. */
  prune(filters?: Filters): Promise<{ ContainersDeleted: string[] | null; SpaceReclaimed: number }>;
  inspect(idOrName: string): Promise<DockerContainerInspect>;
  list(opts?: { all?: boolean; limit?: number; filters?: Filters }): Promise<DockerContainerSummary[]>;
  wait(
    idOrName: string,
    condition?: 'not-running' | 'next-exit' | 'removed',
  ): Promise<{ StatusCode: number; Error?: { Message: string } | null }>;
  logs(idOrName: string, opts: LogOptions): AsyncIterable<LogEntry>;
  attach(idOrName: string, opts: AttachOptions): Promise<IoSession>;
  resize(idOrName: string, rows: number, cols: number): Promise<void>;
  execCreate(idOrName: string, body: DockerExecCreate): Promise<{ Id: string }>;
  execStart(execId: string, opts: { Detach?: boolean; Tty?: boolean }): Promise<IoSession | undefined>;
  execInspect(execId: string): Promise<Record<string, unknown>>;
  execResize(execId: string, rows: number, cols: number): Promise<void>;
  /** docker network connect/disconnect, for running and stopped containers alike. */
  connectNetwork(idOrName: string, network: string, settings: DockerEndpointSettings): Promise<void>;
  disconnectNetwork(idOrName: string, network: string, force: boolean): Promise<void>;
  /** The container's ID and name without resolving errors; for the network layer's inspect. */
  resolve(idOrName: string): Promise<{ id: string; name: string }>;
  pause(idOrName: string): Promise<void>;
  unpause(idOrName: string): Promise<void>;
  top(idOrName: string, psArgs: string): Promise<{ Titles: string[]; Processes: string[][] }>;
  stats(idOrName: string, opts: { stream: boolean; oneShot: boolean }): AsyncIterable<Record<string, unknown>>;
  /** docker cp: HEAD/GET/PUT /containers/{id}/archive (running or stopped containers). */
  archiveStat(
    idOrName: string,
    path: string,
  ): Promise<{ name: string; size: number; mode: number; mtime: string; linkTarget: string }>;
  archiveGet(
    idOrName: string,
    path: string,
    consume: (statHeader: string, tar: Readable) => Promise<void>,
  ): Promise<void>;
  archivePut(idOrName: string, path: string, input: Readable, opts: { copyUIDGID?: boolean }): Promise<void>;
  /** docker diff (GET /containers/{id}/changes): Kind 0 modified, 1 added, 2 deleted; null when nothing changed. */
  changes(idOrName: string): Promise<Array<{ Path: string; Kind: number }> | null>;
  /** docker export: the root filesystem as a tar, handed to `consume` while it is mounted. */
  exportRootfs(idOrName: string, consume: (tar: Readable) => Promise<void>): Promise<void>;
  /** docker commit (POST /commit). */
  commit(
    idOrName: string,
    opts: {
      repo?: string;
      tag?: string;
      comment?: string;
      author?: string;
      changes?: string[];
      pause?: boolean;
      config?: Partial<DockerContainerConfig>;
    },
  ): Promise<{ Id: string }>;
  /** Daemon start: adopt containers whose monitors survived, mark the rest exited. */
  restore(): Promise<void>;
  close(): Promise<void>;
}
