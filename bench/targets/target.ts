/**
 * The small interface every benchmarked system sits behind. An Engine is one
 * running system (the kernel floor, one coved, one dockerd, one podman setup)
 * in its own lab namespace; it offers one or more Targets, the ways of driving
 * it that get timed (Cove through its CLI and through the API, Docker through
 * its CLI and through the API, ...). Workloads only see Targets.
 */
import type { EngineApi } from './engine-api.js';

export interface ContainerRef {
  /** Engine ID (or the floor's own handle). */
  id: string;
  name: string;
}

export interface RunSpec {
  name: string;
  /** A network name made by createNetwork, or 'none'. */
  network: string;
  image: 'alpine' | 'nginx';
  cmd: string[];
  /** Publish containerPort (tcp) on hostPort of the lab's own address. */
  publish?: { hostPort: number; containerPort: number };
}

export interface DnsEndpoint {
  /** The resolver the container uses (127.0.0.11, or the gateway for podman). */
  server: string;
  /** The name to ask for, as the container would type it (already fully qualified if the engine needs it). */
  name: string;
}

export interface MemorySample {
  /** Resident memory of the engine's long-lived processes, kB (daemon(s) and, for podman, aardvark-dns). */
  engineKb: number;
  /** What engineKb is made of, for the report. */
  engineParts: Record<string, number>;
  /** Sum of the per-container monitor processes (conmon, containerd-shim), kB. */
  monitorsKb: number;
  monitors: number;
}

export interface Target {
  /** Label in tables: floor, cove-api, cove-cli, docker, docker-api, podman. */
  readonly name: string;
  /** subnet: an explicit IPv4 subnet (CIDR), for networks that must hold more than a /24. */
  createNetwork(name: string, subnet?: string): Promise<void>;
  removeNetwork(name: string): Promise<void>;
  /** Returns once the container's process runs (like `docker run -d`). */
  runContainer(spec: RunSpec): Promise<ContainerRef>;
  /** Force-removes a running container (no stop timeout). */
  removeContainer(c: ContainerRef): Promise<void>;
  connect(network: string, c: ContainerRef): Promise<void>;
  disconnect(network: string, c: ContainerRef): Promise<void>;
  /** The cheapest round trip through this way of driving the engine (`network ls`; `node -e 0` for the floor). */
  roundTrip(): Promise<void>;

  // Introspection, never timed.
  netnsPath(c: ContainerRef): Promise<string>;
  address(c: ContainerRef, network: string): Promise<string>;
  dnsEndpoint(from: ContainerRef, to: ContainerRef, network: string): Promise<DnsEndpoint>;
}

export interface Engine {
  /** floor, cove, docker, podman */
  readonly name: string;
  /** Makes the lab namespace, installs if needed, starts the daemon, loads images. Throws a clear Error if it cannot. */
  setup(): Promise<void>;
  /** Removes everything setup and the workloads made; safe after a failed setup and when called twice. */
  teardown(): Promise<void>;
  /** Targets available after setup, plus ways that are not (name -> reason). */
  targets(): { ready: Target[]; unavailable: Record<string, string> };
  /** The lab namespace in which clients run (the engine's "host"). */
  readonly labNetns: string;
  /** The lab's own non-loopback address, where published ports are reached. */
  readonly hostAddress: string;
  memory(): Promise<MemorySample | undefined>;
  /** The engine's own Engine API client (Cove, Docker), for workloads that drive the API directly. */
  engineApi?(): EngineApi | undefined;
  /** Versions for the report. */
  describe(): Promise<string>;
}
