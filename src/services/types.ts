/**
 * Service and task records in the Engine API's shapes (swarm.Service,
 * swarm.Task of API v1.51). They are stored as they are served, so the API
 * layer returns them unchanged; only fields Cove uses are typed, the rest of
 * a client's spec passes through untouched.
 */
import { randomBytes } from 'node:crypto';

/** swarmkit's identity.NewID: 25 characters of lower-case base 36. */
export function newSwarmId(): string {
  let n = BigInt('0x' + randomBytes(16).toString('hex'));
  let s = '';
  while (s.length < 25) {
    s = (n % 36n).toString(36) + s;
    n /= 36n;
  }
  return s;
}

export interface Version {
  Index: number;
}

export interface PortConfig {
  Name?: string;
  Protocol?: 'tcp' | 'udp' | 'sctp';
  TargetPort?: number;
  PublishedPort?: number;
  PublishMode?: 'ingress' | 'host';
}

export interface NetworkAttachmentConfig {
  Target: string;
  Aliases?: string[];
  DriverOpts?: Record<string, string>;
}

export interface RestartPolicy {
  Condition?: 'none' | 'on-failure' | 'any';
  /** Nanoseconds, as the API carries durations. */
  Delay?: number;
  MaxAttempts?: number;
  Window?: number;
}

export interface UpdateConfig {
  Parallelism?: number;
  Delay?: number;
  FailureAction?: 'continue' | 'pause' | 'rollback';
  Monitor?: number;
  MaxFailureRatio?: number;
  Order?: 'stop-first' | 'start-first';
}

export interface ContainerSpec {
  Image?: string;
  Labels?: Record<string, string>;
  Command?: string[];
  Args?: string[];
  Hostname?: string;
  Env?: string[];
  Dir?: string;
  User?: string;
  Init?: boolean | null;
  StopGracePeriod?: number;
  /**
   * swarmkit's ContainerSpec.PullOptions: the X-Registry-Auth of
   * `--with-registry-auth`, for the nodes that pull the image. Never in an
   * API answer (the Engine API has no such field).
   */
  PullOptions?: { RegistryAuth?: string };
  /** container.HealthConfig: the task is `running` only once healthy, and fails when unhealthy. */
  Healthcheck?: {
    Test?: string[] | null;
    Interval?: number;
    Timeout?: number;
    StartPeriod?: number;
    StartInterval?: number;
    Retries?: number;
  };
  [k: string]: unknown;
}

export interface TaskSpec {
  ContainerSpec?: ContainerSpec;
  RestartPolicy?: RestartPolicy;
  Placement?: { Constraints?: string[]; Preferences?: unknown[]; MaxReplicas?: number; Platforms?: unknown[] };
  Networks?: NetworkAttachmentConfig[];
  Resources?: unknown;
  ForceUpdate?: number;
  Runtime?: string;
  LogDriver?: unknown;
  [k: string]: unknown;
}

export interface EndpointSpec {
  Mode?: 'vip' | 'dnsrr';
  Ports?: PortConfig[];
}

export interface ServiceSpec {
  Name?: string;
  Labels?: Record<string, string>;
  TaskTemplate?: TaskSpec;
  Mode?: {
    Replicated?: { Replicas?: number };
    Global?: Record<string, never>;
    ReplicatedJob?: unknown;
    GlobalJob?: unknown;
  };
  UpdateConfig?: UpdateConfig;
  RollbackConfig?: UpdateConfig;
  /** Deprecated place of TaskTemplate.Networks, still accepted. */
  Networks?: NetworkAttachmentConfig[];
  EndpointSpec?: EndpointSpec;
  [k: string]: unknown;
}

export interface UpdateStatus {
  State: 'updating' | 'paused' | 'completed' | 'rollback_started' | 'rollback_paused' | 'rollback_completed';
  StartedAt?: string;
  CompletedAt?: string;
  Message: string;
}

export interface VirtualIp {
  NetworkID: string;
  Addr: string;
}

export interface Service {
  ID: string;
  Version: Version;
  CreatedAt: string;
  UpdatedAt: string;
  Spec: ServiceSpec;
  PreviousSpec?: ServiceSpec;
  Endpoint: { Spec: EndpointSpec; Ports?: PortConfig[]; VirtualIPs?: VirtualIp[] };
  UpdateStatus?: UpdateStatus;
  /** Counts the spec changes; tasks made from a spec carry it (moby's SpecVersion). */
  SpecVersion: Version;
  ServiceStatus?: { RunningTasks: number; DesiredTasks: number; CompletedTasks: number };
}

/** swarmkit's task states, in their order. */
export const TASK_STATES = [
  'new',
  'allocated',
  'pending',
  'assigned',
  'accepted',
  'preparing',
  'ready',
  'starting',
  'running',
  'complete',
  'shutdown',
  'failed',
  'rejected',
  'remove',
  'orphaned',
] as const;
export type TaskState = (typeof TASK_STATES)[number];

export function stateRank(s: TaskState): number {
  return TASK_STATES.indexOf(s);
}

/** A task in one of these states will never run again. */
export function isTerminal(s: TaskState): boolean {
  return stateRank(s) > stateRank('running');
}

export interface TaskStatus {
  Timestamp: string;
  State: TaskState;
  Message: string;
  Err?: string;
  ContainerStatus?: { ContainerID?: string; PID?: number; ExitCode?: number };
  PortStatus?: { Ports?: PortConfig[] };
}

export interface NetworkAttachment {
  Network: { ID: string; Spec?: { Name?: string; [k: string]: unknown }; [k: string]: unknown };
  /** CIDR notation, e.g. "10.0.1.5/24". */
  Addresses: string[];
}

export interface Task {
  ID: string;
  Version: Version;
  CreatedAt: string;
  UpdatedAt: string;
  Labels: Record<string, string>;
  Spec: TaskSpec;
  SpecVersion: Version;
  ServiceID: string;
  /** 1.. for replicated services; 0 for global ones (NodeID says where). */
  Slot: number;
  NodeID: string;
  Status: TaskStatus;
  DesiredState: 'running' | 'shutdown' | 'remove';
  NetworksAttachments?: NetworkAttachment[];
  /** The service's endpoint when the task was made (swarm.Task.Endpoint): its published ports. */
  Endpoint?: { Spec?: EndpointSpec; Ports?: PortConfig[]; VirtualIPs?: VirtualIp[] };
  /** Not in the API: the service's name, so an agent need not read the service to name a container. */
  ServiceAnnotations?: { Name: string };
}

/** The node fields the scheduler looks at (a subset of ClusterNode). */
export interface SchedNode {
  id: string;
  hostname: string;
  role: 'manager' | 'worker';
  availability: 'active' | 'pause' | 'drain';
  state: 'ready' | 'down' | 'unknown';
  labels?: Record<string, string>;
}

export const nowIso = (): string => new Date().toISOString();

/** Seconds → API nanoseconds and back. */
export const NS = 1_000_000_000;

/** swarmkit's IsIngressNetworkNeeded: some port is published in ingress mode (through the routing mesh). */
export function needsIngress(spec: ServiceSpec | undefined): boolean {
  return (spec?.EndpointSpec?.Ports ?? []).some((p) => (p.PublishMode ?? 'ingress') === 'ingress');
}
