import { join } from 'node:path';
import type { ClusterStoreChoice, LocalStoreChoice } from '../store/scopes.js';

/** Where one daemon keeps its things; several daemons run side by side with different roots and sockets. */
export interface DaemonConfig {
  /** unix socket path of the Engine API. */
  socketPath: string;
  /** Persistent state: store, images, container configs and logs. Default /var/lib/cove. */
  dataRoot: string;
  /** Runtime state: netns mounts, conmon sockets, runc state. Default /run/cove. */
  execRoot: string;
  pidfile: string;
  logLevel: string;
  /** OCI runtime binary (runc), chosen at start after probing. */
  runtime: string;
  /** Default address pools for networks (Docker's defaults unless configured). */
  defaultAddressPools: Array<{ base: string; size: number }>;
  /** Name of the default bridge's Linux bridge (docker0 in Docker). */
  defaultBridgeName: string;
  /** Upstream DNS servers for containers (dockerd's --dns); default: the host's resolv.conf. */
  dns?: string[];
  /**
   * Where third-party plugins are looked up: `<dir>/<name>.sock`,
   * `<dir>/<name>/<name>.sock`, `<dir>/<name>.spec|.json`. Default Docker's
   * /run/docker/plugins, /etc/docker/plugins, /usr/lib/docker/plugins.
   */
  pluginDirs?: string[];
  /** Deadline of one call to a plugin (Docker: 30 s). */
  pluginTimeoutMs?: number;
  /** dockerd's --registry-mirror: endpoints tried before Docker Hub for docker.io pulls. */
  registryMirrors?: string[];
  /** dockerd's --insecure-registry: host[:port] or CIDR allowed plain http or an unverified certificate. */
  insecureRegistries?: string[];
  /** Per-registry CAs: `<dir>/<host:port>/*.crt` (dockerd: /etc/docker/certs.d). */
  registryCertsDir?: string;
  /** Deadline for a registry to answer or keep sending (default 30 s). */
  registryTimeoutMs?: number;
  /** Where node-local records live (--local-store; default the embedded store under the data root). */
  localStore?: LocalStoreChoice;
  /** Where cluster-wide records live (--cluster-store; default `swarm`: the etcd that swarm mode runs). */
  clusterStore?: ClusterStoreChoice;
  /** This engine's persistent identity, made at first start. */
  engineId?: string;
}

export const DOCKER_DEFAULT_POOLS = [
  { base: '172.17.0.0/16', size: 16 },
  { base: '172.18.0.0/16', size: 16 },
  { base: '172.19.0.0/16', size: 16 },
  { base: '172.20.0.0/14', size: 16 },
  { base: '172.24.0.0/14', size: 16 },
  { base: '172.28.0.0/14', size: 16 },
  { base: '192.168.0.0/16', size: 20 },
];

export function defaultConfig(over: Partial<DaemonConfig> = {}): DaemonConfig {
  const execRoot = over.execRoot ?? '/run/cove';
  return {
    socketPath: join(execRoot, 'cove.sock'),
    dataRoot: '/var/lib/cove',
    execRoot,
    pidfile: join(execRoot, 'coved.pid'),
    logLevel: 'info',
    runtime: 'runc',
    defaultAddressPools: DOCKER_DEFAULT_POOLS,
    defaultBridgeName: 'cove0',
    ...over,
  };
}
