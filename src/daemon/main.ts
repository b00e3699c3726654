/**
 * coved: the Cove daemon. Parses dockerd-style flags, opens the store, wires
 * the network controller, image store and container manager together,
 * reconciles the kernel with the store, and serves the Docker Engine API on a
 * unix socket. SIGTERM/SIGINT stop it cleanly; running containers keep
 * running (their monitors outlive the daemon) and are adopted at next start.
 */
import { Command, Option, UsageError } from '../common/args.js';
import { mkdirSync, writeFileSync, readFileSync, rmSync, chmodSync, existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { defaultConfig, DOCKER_DEFAULT_POOLS, type DaemonConfig } from '../common/config.js';
import { createLogger, type Logger } from '../common/log.js';
import { openLocalStore } from './stores.js';
import {
  DEFAULT_CLUSTER_STORE,
  DEFAULT_LOCAL_STORE,
  StoreScopes,
  describeLocalStore,
  parseClusterStore,
  parseLocalStore,
} from '../store/scopes.js';
import { EventBus } from '../common/events.js';
import { systemInfo, versionInfo, probeComponents, COVE_VERSION } from './info.js';
import type { Engine } from './engine.js';
import { createApiServer } from '../api/server.js';
import { installLastResort } from './last-resort.js';
import { startIdleMemory } from './idle-memory.js';
import { addon } from '../kernel/native.js';
import { NetworkController } from '../network/controller.js';
import { ImageStore } from '../runtime/images/index.js';
import { Distribution } from '../runtime/distribution/index.js';
import { parseMirror } from '../runtime/distribution/registries.js';
import { ContainerManager } from '../runtime/containers/index.js';
import { VolumeStore } from '../runtime/volumes/store.js';
import { probeRuntime } from '../runtime/probe.js';
import { SwarmServices } from '../services/index.js';
import { SwarmController } from '../swarm/controller.js';

function collect(value: string, prev: string[]): string[] {
  return [...prev, value];
}

/** dockerd's --default-address-pool base=10.10.0.0/16,size=24 */
function parsePool(value: string, prev: Array<{ base: string; size: number }>): Array<{ base: string; size: number }> {
  const kv = Object.fromEntries(value.split(',').map((p) => p.split('=') as [string, string]));
  const size = Number(kv.size);
  if (!kv.base || !Number.isInteger(size)) throw new Error(`invalid default address pool: ${value}`);
  return [...prev, { base: kv.base, size }];
}

function parseSeconds(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`invalid ${flag}: ${value}`);
  return Math.round(n * 1000);
}

/** coved's command line (the same parser and help style as the cove CLI: src/common/args.ts). */
function daemonCommand(): Command {
  return new Command('coved')
    .description('Cove engine: container networking daemon speaking the Docker Engine API')
    .version(`Cove version ${COVE_VERSION}`)
    .option('-H, --host <uri>', 'daemon socket to listen on (unix://PATH)', collect, [] as string[])
    .option('--data-root <dir>', 'root directory of persistent state', '/var/lib/cove')
    .option('--exec-root <dir>', 'root directory of execution state', '/run/cove')
    .option('-p, --pidfile <file>', 'path of the daemon PID file')
    .addOption(
      new Option('-l, --log-level <level>', 'log level')
        .choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal'])
        .default('info'),
    )
    .option('--dns <ip>', 'DNS server for containers', collect, [] as string[])
    .option(
      '--default-address-pool <spec>',
      'default address pool: base=CIDR,size=N',
      parsePool,
      [] as Array<{ base: string; size: number }>,
    )
    .option('--bridge-name <name>', 'Linux bridge of the default network', 'cove0')
    .option('--runtime <path>', 'OCI runtime binary', '')
    .option(
      '--plugin-dir <dir>',
      "where network plugins are found (repeatable; default Docker's)",
      collect,
      [] as string[],
    )
    .option('--plugin-timeout <seconds>', 'deadline of one call to a plugin', '30')
    .option('--registry-mirror <url>', 'preferred registry mirror for docker.io (repeatable)', collect, [] as string[])
    .option(
      '--insecure-registry <host>',
      'registry (host[:port] or CIDR) allowed without verified TLS (repeatable)',
      collect,
      [] as string[],
    )
    .option('--registry-certs-dir <dir>', 'per-registry CA certificates: DIR/<host:port>/*.crt', '/etc/docker/certs.d')
    .option('--registry-timeout <seconds>', 'deadline for a registry to answer or keep sending', '30')
    .option(
      '--local-store <url>',
      'store of node-local records: embedded (under --data-root) or etcd://HOST:PORT[,...][/PREFIX], etcd+unix:///PATH',
      DEFAULT_LOCAL_STORE,
    )
    .addOption(
      new Option(
        '--cluster-store <kind>',
        'store of cluster-wide records: swarm (the etcd swarm mode runs on managers) or none (no swarm mode)',
      )
        .choices(['swarm', 'none'])
        .default(DEFAULT_CLUSTER_STORE),
    )
    .action(() => undefined);
}

/** What coved's command line asks for: a daemon with this configuration, or text to print and quit. */
export function parseCommandLine(argv: string[]): { config: DaemonConfig } | { print: string } {
  const cmd = daemonCommand();
  const r = cmd.parse(argv);
  if (r.kind === 'print') return { print: r.text };
  return { config: configFrom(cmd.opts() as unknown as DaemonFlags) };
}

/** The daemon's configuration from its flags (help and version are refused: see parseCommandLine). */
export function parseFlags(argv: string[]): DaemonConfig {
  const r = parseCommandLine(argv);
  if ('print' in r) throw new UsageError('help or version asked for, no daemon to configure', 0);
  return r.config;
}

interface DaemonFlags {
  host: string[];
  dataRoot: string;
  execRoot: string;
  pidfile?: string;
  logLevel: string;
  dns: string[];
  defaultAddressPool: Array<{ base: string; size: number }>;
  bridgeName: string;
  runtime: string;
  pluginDir: string[];
  pluginTimeout: string;
  registryMirror: string[];
  insecureRegistry: string[];
  registryCertsDir: string;
  registryTimeout: string;
  localStore: string;
  clusterStore: string;
}

function configFrom(o: DaemonFlags): DaemonConfig {
  for (const m of o.registryMirror) parseMirror(m);
  const host = o.host[0] ?? `unix://${join(o.execRoot, 'cove.sock')}`;
  if (!host.startsWith('unix://')) throw new Error(`unsupported host ${host}: only unix:// sockets are served`);
  return defaultConfig({
    socketPath: host.slice('unix://'.length),
    dataRoot: o.dataRoot,
    execRoot: o.execRoot,
    pidfile: o.pidfile ?? join(o.execRoot, 'coved.pid'),
    logLevel: o.logLevel,
    runtime: o.runtime,
    defaultAddressPools: o.defaultAddressPool.length ? o.defaultAddressPool : DOCKER_DEFAULT_POOLS,
    defaultBridgeName: o.bridgeName,
    ...(o.dns.length ? { dns: o.dns } : {}),
    ...(o.pluginDir.length ? { pluginDirs: o.pluginDir } : {}),
    pluginTimeoutMs: parseSeconds(o.pluginTimeout, '--plugin-timeout'),
    registryMirrors: o.registryMirror,
    insecureRegistries: o.insecureRegistry,
    registryCertsDir: o.registryCertsDir,
    registryTimeoutMs: parseSeconds(o.registryTimeout, '--registry-timeout'),
    localStore: parseLocalStore(o.localStore),
    clusterStore: parseClusterStore(o.clusterStore),
  });
}

/**
 * Is `pid` a running process? A zombie is not: right after `kill -9` the old
 * daemon stays unreaped until its parent waits for it, and kill(pid, 0) still
 * succeeds on it; a restart then must not be refused.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** One daemon per pidfile: refuse to start over a live one, take over a stale one. */
function writePidfile(path: string): void {
  if (existsSync(path)) {
    const pid = Number(readFileSync(path, 'utf8').trim());
    if (pid && pid !== process.pid && isAlive(pid)) {
      throw new Error(`pid file found, ensure coved is not running or delete ${path}`);
    }
  }
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${process.pid}\n`);
}

function engineId(dataRoot: string): string {
  const p = join(dataRoot, 'engine-id');
  try {
    return readFileSync(p, 'utf8').trim();
  } catch {
    const id = randomUUID();
    writeFileSync(p, id + '\n');
    return id;
  }
}

/**
 * Modes of the state directories, also for a data root made by an older
 * version: the root 0711 (traverse only), the store and the image store 0700,
 * image configs and store files 0600 (they hold containers' environments).
 */
function restrictStateDirs(dataRoot: string): void {
  chmodSync(dataRoot, 0o711);
  for (const d of ['store', 'images']) {
    const p = join(dataRoot, d);
    mkdirSync(p, { recursive: true, mode: 0o700 });
    chmodSync(p, 0o700);
  }
  for (const d of ['layers', 'tmp', 'configs']) {
    const p = join(dataRoot, 'images', d);
    if (existsSync(p)) chmodSync(p, 0o700);
  }
  const configs = join(dataRoot, 'images', 'configs');
  if (existsSync(configs)) for (const f of readdirSync(configs)) chmodSync(join(configs, f), 0o600);
  const storeDir = join(dataRoot, 'store');
  for (const f of readdirSync(storeDir)) chmodSync(join(storeDir, f), 0o600);
}

export async function startDaemon(config: DaemonConfig, log: Logger): Promise<{ stop: () => Promise<void> }> {
  mkdirSync(config.dataRoot, { recursive: true, mode: 0o711 });
  mkdirSync(config.execRoot, { recursive: true, mode: 0o711 });
  // Like dockerd: other users may pass through the roots (containers' mounts) but read nothing in them.
  restrictStateDirs(config.dataRoot);
  writePidfile(config.pidfile);
  config.engineId = engineId(config.dataRoot);
  config.runtime = await probeRuntime(config.runtime, log);
  const components = await probeComponents(config.runtime);

  // The local scope's store, as the flags chose it; the cluster scope's comes with swarm mode (below).
  const localChoice = config.localStore ?? parseLocalStore(DEFAULT_LOCAL_STORE);
  const store = await openLocalStore(localChoice, config.dataRoot, config.engineId);
  const events = new EventBus();
  const networks = new NetworkController({ config, store, events, log: log.child({ module: 'network' }) });
  const images = new ImageStore({ config, store, log: log.child({ module: 'images' }) });
  const volumes = new VolumeStore({ dataRoot: config.dataRoot, store, events, log: log.child({ module: 'volumes' }) });
  const distribution = new Distribution(images, {
    mirrors: config.registryMirrors ?? [],
    insecure: config.insecureRegistries ?? [],
    certsDir: config.registryCertsDir ?? '/etc/docker/certs.d',
    timeoutMs: config.registryTimeoutMs ?? 30_000,
    log: log.child({ module: 'distribution' }),
  });
  const containers = new ContainerManager({
    config,
    store,
    images,
    networks,
    events,
    volumes,
    log: log.child({ module: 'containers' }),
  });

  // Reconcile: predefined networks and drivers first, then adopt surviving
  // containers, then drop every sandbox whose container is gone.
  const t0 = performance.now();
  await networks.init();
  await containers.restore();
  const live = new Set((await containers.list({ all: false })).map((c) => c.Id));
  await networks.restore(live);
  // Only now may restart policies start containers: their sandboxes would not survive the restore above.
  containers.resumeRestarts();
  log.info({ ms: Math.round(performance.now() - t0), running: live.size }, 'state restored');

  // Swarm services: idle until the swarm layer attaches a Membership (swarm init/join).
  const services = new SwarmServices({
    containers,
    images,
    distribution,
    networks,
    events,
    log: log.child({ module: 'services' }),
    execRoot: config.execRoot,
  });
  // Swarm: resumes the cluster this node belongs to (and re-adopts its etcd
  // member) in the background; the API answers meanwhile.
  const swarm = new SwarmController({
    config,
    log: log.child({ module: 'swarm' }),
    clusterAware: () => [networks, services],
    engineVersion: COVE_VERSION,
  });
  void swarm.restore();
  const stores = new StoreScopes(store, () => swarm.store, {
    local: localChoice,
    cluster: config.clusterStore ?? DEFAULT_CLUSTER_STORE,
  });
  log.info({ local: describeLocalStore(stores.choice.local), cluster: stores.choice.cluster }, 'stores chosen');

  const engine: Engine = {
    config,
    networks,
    containers,
    images,
    volumes,
    distribution,
    events,
    services,
    swarm,
    info: async () => ({ ...(await systemInfo(config, { networks, containers, images })), Swarm: await swarm.info() }),
    version: () => versionInfo(components),
  };
  // Memory back to the kernel once the API has been quiet for a second (issue #10: engine RSS idle).
  const idle = startIdleMemory({ release: () => addon().releaseMemory(), log: log.child({ module: 'idle' }) });
  const server = createApiServer(engine, log.child({ module: 'api' }), { onRequest: idle.requestStarted });
  rmSync(config.socketPath, { force: true });
  mkdirSync(dirname(config.socketPath), { recursive: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.socketPath, () => resolve());
  });
  chmodSync(config.socketPath, 0o660);
  log.info(
    { socket: config.socketPath, dataRoot: config.dataRoot, execRoot: config.execRoot, runtime: config.runtime },
    'API listening',
  );

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      log.info('shutting down; containers keep running');
      idle.stop();
      server.close();
      server.closeAllConnections?.();
      await services.close();
      await containers.close();
      await networks.close();
      // Last: the others used the cluster store until now. The etcd member keeps running.
      await swarm.close();
      await stores.local.close();
      rmSync(config.socketPath, { force: true });
      rmSync(config.pidfile, { force: true });
    })());
  return { stop };
}

async function main(): Promise<void> {
  let config: DaemonConfig;
  try {
    const r = parseCommandLine(process.argv.slice(2));
    if ('print' in r) {
      process.stdout.write(r.print);
      process.exit(0);
    }
    config = r.config;
  } catch (e) {
    // A usage error says what to run for help (docker's style); any other is a bad value.
    const err = e as { message: string; exitCode?: number };
    process.stderr.write(e instanceof UsageError ? `${err.message}\n` : `coved: ${err.message}\n`);
    process.exit(err.exitCode ?? 1);
  }
  const log = createLogger(config.logLevel);
  installLastResort(log);
  let daemon: { stop: () => Promise<void> };
  try {
    daemon = await startDaemon(config, log);
  } catch (e) {
    log.fatal({ err: e }, 'failed to start daemon');
    process.stderr.write(`coved: failed to start daemon: ${(e as Error).message}\n`);
    process.exit(1);
  }
  const onSignal = (sig: string): void => {
    log.info({ signal: sig }, 'signal received');
    daemon.stop().then(
      () => process.exit(0),
      (e) => {
        log.error({ err: e }, 'unclean shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
}

if (process.argv[1] && /coved(\.js)?$|daemon\/main\.js$/.test(process.argv[1])) {
  void main();
}
export { main };
