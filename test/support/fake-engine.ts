/**
 * An in-memory Engine for the API and CLI unit tests: real enough that the
 * docker CLI and the cove CLI can drive it (names, IDs, errors worded like
 * Docker's), with a toy process model for containers:
 *   Cmd ['cat']            echoes stdin to stdout, exits 0 at stdin EOF
 *   Cmd ['echo', ...args]  prints args, exits 0
 *   Cmd ['fail', code]     prints "failing" to stderr, exits with code
 *   Cmd ['nostart']        start fails with a 500, as a driver error would
 *   anything else          runs until stopped or killed (exit 137/143)
 * Detach keys (ctrl-p ctrl-q by default) in stdin end a session as 'detached'.
 */
import { prunePredicate } from '../../src/runtime/containers/prune.js';
import { PassThrough } from 'node:stream';
import type { Readable } from 'node:stream';
import { Conflict, Forbidden, InvalidParameter, NotFound, NotModified, SystemError } from '../../src/common/errors.js';
import { newId } from '../../src/common/ids.js';
import { EventBus } from '../../src/common/events.js';
import { defaultConfig } from '../../src/common/config.js';
import type { Engine } from '../../src/daemon/engine.js';
import type { DockerVolume, VolumeCreate, VolumeService } from '../../src/runtime/volumes/store.js';
import type { DistributionService } from '../../src/runtime/distribution/index.js';
import type {
  DockerEndpointSettings,
  DockerNetwork,
  DockerNetworkCreate,
  DockerNetworkSettings,
  Filters,
  NetworkService,
} from '../../src/network/types.js';
import type {
  AttachOptions,
  ContainerService,
  DockerContainerCreate,
  DockerContainerInspect,
  DockerContainerSummary,
  DockerExecCreate,
  DockerImageSummary,
  ImageService,
  IoSession,
  LogEntry,
  LogOptions,
} from '../../src/runtime/types.js';

function matchName(value: string, want: string[]): boolean {
  return want.some((w) => value.includes(w));
}

export class FakeNetworks implements Partial<NetworkService> {
  readonly nets = new Map<string, DockerNetwork>();
  private nextSubnet = 18;

  constructor(private readonly events: EventBus) {
    for (const [name, driver] of [
      ['bridge', 'bridge'],
      ['host', 'host'],
      ['none', 'null'],
    ] as const) {
      this.add(name, driver, name === 'bridge' ? '172.17.0.0/16' : undefined);
    }
  }

  private add(name: string, driver: string, subnet?: string, req?: Partial<DockerNetworkCreate>): DockerNetwork {
    const n: DockerNetwork = {
      Name: name,
      Id: newId(),
      Created: new Date().toISOString().replace('Z', '000000Z'),
      Scope: 'local',
      Driver: driver,
      EnableIPv4: true,
      EnableIPv6: Boolean(req?.EnableIPv6),
      IPAM: {
        Driver: 'default',
        Options: null,
        Config: subnet
          ? [{ Subnet: subnet, Gateway: req?.IPAM?.Config?.[0]?.Gateway ?? subnet.replace(/0\/\d+$/, '1') }]
          : [],
      },
      Internal: Boolean(req?.Internal),
      Attachable: Boolean(req?.Attachable),
      Ingress: Boolean(req?.Ingress),
      ConfigFrom: { Network: '' },
      ConfigOnly: false,
      Containers: {},
      Options: req?.Options ?? {},
      Labels: req?.Labels ?? {},
    };
    this.nets.set(n.Id, n);
    return n;
  }

  async resolveNetwork(idOrName: string): Promise<{ id: string; name: string; driver: string }> {
    const all = [...this.nets.values()];
    const n =
      all.find((x) => x.Id === idOrName) ??
      all.find((x) => x.Name === idOrName) ??
      (() => {
        const p = all.filter((x) => x.Id.startsWith(idOrName));
        return p.length === 1 ? p[0] : undefined;
      })();
    if (!n) throw new NotFound(`network ${idOrName} not found`);
    return { id: n.Id, name: n.Name, driver: n.Driver };
  }

  async createNetwork(req: DockerNetworkCreate): Promise<{ Id: string; Warning: string }> {
    if ([...this.nets.values()].some((n) => n.Name === req.Name))
      throw new Conflict(`network with name ${req.Name} already exists`);
    if (['bridge', 'host', 'none'].includes(req.Name))
      throw new Forbidden(`operation is not permitted on predefined ${req.Name} network`);
    const driver = req.Driver || 'bridge';
    if (!['bridge', 'macvlan', 'overlay', 'null', 'host'].includes(driver))
      throw new NotFound(`plugin "${driver}" not found`);
    const subnet = req.IPAM?.Config?.[0]?.Subnet ?? `172.${this.nextSubnet++}.0.0/16`;
    const n = this.add(req.Name, driver, subnet, req);
    this.events.publish('network', 'create', n.Id, { name: n.Name, type: driver });
    return { Id: n.Id, Warning: '' };
  }

  async listNetworks(filters: Filters = {}): Promise<DockerNetwork[]> {
    return [...this.nets.values()].filter(
      (n) =>
        (!filters.name || matchName(n.Name, filters.name)) &&
        (!filters.id || filters.id.some((i) => n.Id.startsWith(i))) &&
        (!filters.driver || filters.driver.includes(n.Driver)),
    );
  }

  async inspectNetwork(idOrName: string): Promise<DockerNetwork> {
    return this.nets.get((await this.resolveNetwork(idOrName)).id)!;
  }

  async removeNetwork(idOrName: string): Promise<void> {
    const { id, name } = await this.resolveNetwork(idOrName);
    if (['bridge', 'host', 'none'].includes(name))
      throw new Forbidden(`${name} is a pre-defined network and cannot be removed`);
    const n = this.nets.get(id)!;
    if (Object.keys(n.Containers).length)
      throw new Forbidden(`error while removing network: network ${name} id ${id} has active endpoints`);
    this.nets.delete(id);
    this.events.publish('network', 'destroy', id, { name, type: n.Driver });
  }

  async pruneNetworks(): Promise<string[]> {
    const gone: string[] = [];
    for (const n of [...this.nets.values()]) {
      if (!['bridge', 'host', 'none'].includes(n.Name) && Object.keys(n.Containers).length === 0) {
        this.nets.delete(n.Id);
        gone.push(n.Name);
      }
    }
    return gone;
  }
}

/**
 * A registry client whose registry holds nothing: pulls of images held
 * locally are "up to date", every other pull is denied as Docker Hub denies it.
 */
export class FakeDistribution implements DistributionService {
  constructor(private readonly images: FakeImages) {}
  async pull(
    ref: string,
    opts: { progress?: (m: Record<string, unknown>) => void } = {},
  ): Promise<{ id: string; digest: string; name: string }> {
    const local = ref.replace(/^docker\.io\/(library\/)?/, '');
    const id = await this.images.resolve(local).catch(() => undefined);
    if (!id)
      throw new NotFound(
        `pull access denied for ${local.replace(/[:@].*$/, '')}, repository does not exist or may require 'docker login': denied: requested access to the resource is denied`,
      );
    opts.progress?.({ status: `Status: Image is up to date for ${local}` });
    return { id, digest: '', name: local };
  }
  async push(): Promise<{ digest: string; size: number }> {
    throw new NotFound('the fake registry takes no pushes');
  }
  async login(): Promise<{ Status: string; IdentityToken: string }> {
    return { Status: 'Login Succeeded', IdentityToken: '' };
  }
  async search(): Promise<
    Array<{ name: string; description: string; star_count: number; is_official: boolean; is_automated: boolean }>
  > {
    return [];
  }
  async inspect(ref: string): Promise<{
    Descriptor: { mediaType: string; digest: string; size: number };
    Platforms: Array<Record<string, string>>;
  }> {
    throw new NotFound(`pull access denied for ${ref}`);
  }
  async resolveDigest(ref: string): Promise<string> {
    return ref;
  }
  async ensure(ref: string): Promise<string> {
    return (await this.pull(ref)).id;
  }
}

export class FakeImages implements ImageService {
  readonly images = new Map<
    string,
    { id: string; tags: string[]; created: number; size: number; config: Record<string, unknown> }
  >();

  constructor(private readonly events: EventBus) {
    this.images.set('sha256:' + 'a'.repeat(64), {
      id: 'sha256:' + 'a'.repeat(64),
      tags: ['alpine:latest'],
      created: Math.floor(Date.now() / 1000) - 3600,
      size: 1_234_567,
      config: { Cmd: ['/bin/sh'] },
    });
  }

  private norm(ref: string): string {
    return ref.includes(':') ? ref : `${ref}:latest`;
  }

  async resolve(ref: string): Promise<string> {
    for (const img of this.images.values()) {
      if (
        img.id === ref ||
        img.tags.includes(this.norm(ref)) ||
        (ref.length >= 4 && img.id.slice(7).startsWith(ref.replace(/^sha256:/, '')))
      )
        return img.id;
    }
    throw new NotFound(`No such image: ${ref}`);
  }

  async importTar(
    tar: Readable,
    opts: { repo?: string; tag?: string; changes?: string[]; message?: string },
  ): Promise<string> {
    let size = 0;
    for await (const chunk of tar) size += (chunk as Buffer).length;
    if (size === 0) throw new InvalidParameter('EOF');
    const id = 'sha256:' + newId();
    const cmd = (opts.changes ?? []).find((c) => c.startsWith('CMD '));
    this.images.set(id, {
      id,
      tags: opts.repo ? [`${opts.repo}:${opts.tag || 'latest'}`] : [],
      created: Math.floor(Date.now() / 1000),
      size,
      config: cmd ? { Cmd: JSON.parse(cmd.slice(4)) } : {},
    });
    this.events.publish('image', 'import', id, {});
    return id;
  }

  async load(tar: Readable): Promise<string[]> {
    let text = '';
    for await (const chunk of tar) text += (chunk as Buffer).toString();
    // The fake "archive" is a list of tags, one per line.
    const tags = text.split('\n').filter(Boolean);
    if (!tags.length) throw new InvalidParameter('unexpected EOF');
    const id = 'sha256:' + newId();
    this.images.set(id, { id, tags, created: Math.floor(Date.now() / 1000), size: text.length, config: {} });
    return tags;
  }

  async list(): Promise<DockerImageSummary[]> {
    return [...this.images.values()].map((i) => ({
      Id: i.id,
      ParentId: '',
      RepoTags: i.tags,
      RepoDigests: [],
      Created: i.created,
      Size: i.size,
      SharedSize: -1,
      Labels: null,
      Containers: -1,
    }));
  }

  async inspect(ref: string): Promise<Record<string, unknown>> {
    const img = this.images.get(await this.resolve(ref))!;
    return {
      Id: img.id,
      RepoTags: img.tags,
      RepoDigests: [],
      Created: new Date(img.created * 1000).toISOString(),
      Size: img.size,
      Config: img.config,
      Os: 'linux',
      Architecture: 'amd64',
    };
  }

  async history(
    ref: string,
  ): Promise<
    Array<{ Id: string; Created: number; CreatedBy: string; Tags: string[] | null; Size: number; Comment: string }>
  > {
    const img = this.images.get(await this.resolve(ref))!;
    return [{ Id: img.id, Created: img.created, CreatedBy: 'fake', Tags: img.tags, Size: img.size, Comment: '' }];
  }

  async prune(): Promise<{
    ImagesDeleted: Array<{ Untagged?: string; Deleted?: string }> | null;
    SpaceReclaimed: number;
  }> {
    const deleted: Array<{ Deleted: string }> = [];
    let reclaimed = 0;
    for (const img of [...this.images.values()]) {
      if (img.tags.length) continue;
      this.images.delete(img.id);
      deleted.push({ Deleted: img.id });
      reclaimed += img.size;
    }
    return { ImagesDeleted: deleted.length ? deleted : null, SpaceReclaimed: reclaimed };
  }

  async save(refs: string[]): Promise<Readable> {
    const tags: string[] = [];
    for (const r of refs) tags.push(...this.images.get(await this.resolve(r))!.tags);
    // The fake "archive" is a list of tags, one per line (what load reads back).
    return (await import('node:stream')).Readable.from([Buffer.from(tags.join('\n') + '\n')]);
  }

  async tag(ref: string, repo: string, tag?: string): Promise<void> {
    const img = this.images.get(await this.resolve(ref))!;
    img.tags.push(`${repo}:${tag || 'latest'}`);
  }

  async remove(ref: string): Promise<Array<{ Untagged?: string; Deleted?: string }>> {
    const id = await this.resolve(ref);
    const img = this.images.get(id)!;
    const tag = this.norm(ref);
    if (img.tags.includes(tag) && img.tags.length > 1) {
      img.tags = img.tags.filter((t) => t !== tag);
      return [{ Untagged: tag }];
    }
    this.images.delete(id);
    return [...img.tags.map((t) => ({ Untagged: t })), { Deleted: id }];
  }
}

interface FakeProc {
  stdin: PassThrough;
  stdout: PassThrough;
  stderr: PassThrough;
  exited: Promise<number>;
  exit(code: number): void;
}

interface FakeContainer {
  id: string;
  name: string;
  body: DockerContainerCreate;
  created: Date;
  state: 'created' | 'running' | 'exited';
  exitCode: number;
  startedAt: string;
  finishedAt: string;
  proc?: FakeProc;
  logs: LogEntry[];
  networks: Record<string, DockerEndpointSettings>;
  exitWaiters: Array<(code: number) => void>;
  onStart: Array<() => void>;
  size: { rows: number; cols: number };
}

const DETACH = Buffer.from([0x10, 0x11]);

/** Runs the toy process for `cmd` (see the header comment). */
function spawnFake(cmd: string[], onOut: (stream: 'stdout' | 'stderr', data: Buffer) => void): FakeProc {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let resolveExit!: (c: number) => void;
  const exited = new Promise<number>((r) => {
    resolveExit = r;
  });
  let done = false;
  const exit = (code: number) => {
    if (done) return;
    done = true;
    stdout.end();
    stderr.end();
    resolveExit(code);
  };
  stdout.on('data', (d: Buffer) => onOut('stdout', d));
  stderr.on('data', (d: Buffer) => onOut('stderr', d));
  const [prog, ...args] = cmd;
  setImmediate(() => {
    if (prog === 'cat') {
      stdin.on('data', (d: Buffer) => {
        if (!done) stdout.write(d);
      });
      stdin.on('end', () => exit(0));
    } else if (prog === 'echo') {
      stdout.write(args.join(' ') + '\n');
      exit(0);
    } else if (prog === 'fail') {
      stderr.write('failing\n');
      exit(Number(args[0] ?? 1));
    } else {
      stdin.resume();
    }
  });
  return { stdin, stdout, stderr, exited, exit };
}

export class FakeContainers implements ContainerService {
  async pause(idOrName: string): Promise<never> {
    const c = this.get(idOrName);
    throw new Conflict(`Container ${c.id} is not running`);
  }
  async unpause(idOrName: string): Promise<never> {
    const c = this.get(idOrName);
    throw new Conflict(`Container ${c.id} is not running`);
  }
  async top(idOrName: string): Promise<never> {
    const c = this.get(idOrName);
    throw new Conflict(`Container ${c.id} is not running`);
  }
  async *stats(idOrName: string): AsyncGenerator<Record<string, unknown>> {
    const c = this.get(idOrName);
    yield { id: c.id, name: `/${c.name}`, read: '0001-01-01T00:00:00Z' };
  }
  async archiveStat(idOrName: string): Promise<never> {
    const c = this.get(idOrName);
    throw new Conflict(`Container ${c.id} is not running`);
  }
  async archiveGet(idOrName: string): Promise<never> {
    const c = this.get(idOrName);
    throw new Conflict(`Container ${c.id} is not running`);
  }
  async archivePut(idOrName: string): Promise<never> {
    const c = this.get(idOrName);
    throw new Conflict(`Container ${c.id} is not running`);
  }
  async changes(idOrName: string): Promise<null> {
    this.get(idOrName);
    return null;
  }
  async exportRootfs(idOrName: string): Promise<never> {
    const c = this.get(idOrName);
    throw new Conflict(`Container ${c.id} has no root filesystem in the fake engine`);
  }
  async commit(idOrName: string): Promise<never> {
    const c = this.get(idOrName);
    throw new Conflict(`Container ${c.id} cannot be committed in the fake engine`);
  }
  readonly ctrs = new Map<string, FakeContainer>();
  readonly execs = new Map<
    string,
    { id: string; ctr: string; body: DockerExecCreate; running: boolean; exitCode: number | null }
  >();

  constructor(
    private readonly events: EventBus,
    private readonly images: FakeImages,
    private readonly networks: FakeNetworks,
  ) {}

  private get(idOrName: string): FakeContainer {
    const name = idOrName.replace(/^\//, '');
    const all = [...this.ctrs.values()];
    const c =
      all.find((x) => x.id === name) ?? all.find((x) => x.name === name) ?? all.find((x) => x.id.startsWith(name));
    if (!c) throw new NotFound(`No such container: ${idOrName}`);
    return c;
  }

  async resolve(idOrName: string): Promise<{ id: string; name: string }> {
    const c = this.get(idOrName);
    return { id: c.id, name: c.name };
  }

  async create(name: string | undefined, body: DockerContainerCreate): Promise<{ Id: string; Warnings: string[] }> {
    await this.images.resolve(body.Image ?? '');
    if (name && [...this.ctrs.values()].some((c) => c.name === name)) {
      const other = [...this.ctrs.values()].find((c) => c.name === name)!;
      throw new Conflict(
        `Conflict. The container name "/${name}" is already in use by container "${other.id}". You have to remove (or rename) that container to be able to reuse that name.`,
      );
    }
    const id = newId();
    const mode = body.HostConfig?.NetworkMode || 'bridge';
    const nets: Record<string, DockerEndpointSettings> = {};
    const wanted = Object.keys(body.NetworkingConfig?.EndpointsConfig ?? {});
    for (const n of wanted.length ? wanted : [mode]) {
      const { id: nid, name: nname } = await this.networks.resolveNetwork(n === 'default' ? 'bridge' : n);
      nets[nname] = { ...(body.NetworkingConfig?.EndpointsConfig?.[n] ?? {}), NetworkID: nid };
    }
    this.ctrs.set(id, {
      id,
      name: name ?? `fake_${id.slice(0, 6)}`,
      body,
      created: new Date(),
      state: 'created',
      exitCode: 0,
      startedAt: '0001-01-01T00:00:00Z',
      finishedAt: '0001-01-01T00:00:00Z',
      logs: [],
      networks: nets,
      exitWaiters: [],
      onStart: [],
      size: { rows: 0, cols: 0 },
    });
    this.events.publish('container', 'create', id, { name: name ?? '', image: body.Image ?? '' });
    return { Id: id, Warnings: [] };
  }

  async start(idOrName: string): Promise<void> {
    const c = this.get(idOrName);
    if (c.state === 'running') throw new NotModified();
    if (c.body.Cmd?.[0] === 'nostart')
      throw new SystemError('failed to create the ipvlan port: operation not supported');
    c.state = 'running';
    c.startedAt = new Date().toISOString();
    const cmd = [...(c.body.Entrypoint ?? []), ...(c.body.Cmd ?? [])];
    const proc = spawnFake(cmd, (stream, data) => c.logs.push({ stream, time: new Date().toISOString(), data }));
    c.proc = proc;
    for (const cb of c.onStart.splice(0)) cb();
    for (const [net, ep] of Object.entries(c.networks)) {
      const n = this.networks.nets.get(ep.NetworkID!)!;
      n.Containers[c.id] = {
        Name: c.name,
        EndpointID: newId(),
        MacAddress: '02:42:ac:11:00:02',
        IPv4Address: '172.17.0.2/16',
        IPv6Address: '',
      };
      void net;
    }
    this.events.publish('container', 'start', c.id, { name: c.name, image: c.body.Image ?? '' });
    void proc.exited.then((code) => {
      c.state = 'exited';
      c.exitCode = code;
      c.finishedAt = new Date().toISOString();
      c.proc = undefined;
      for (const ep of Object.values(c.networks)) delete this.networks.nets.get(ep.NetworkID!)?.Containers[c.id];
      this.events.publish('container', 'die', c.id, { name: c.name, exitCode: String(code) });
      for (const w of c.exitWaiters.splice(0)) w(code);
      if (c.body.HostConfig?.AutoRemove) this.ctrs.delete(c.id);
    });
  }

  async stop(idOrName: string, opts: { timeout?: number; signal?: string } = {}): Promise<void> {
    const c = this.get(idOrName);
    if (c.state !== 'running') throw new NotModified();
    c.proc!.exit(opts.signal === 'SIGKILL' ? 137 : 143);
    await new Promise<void>((r) => c.exitWaiters.push(() => r()));
  }

  async kill(idOrName: string, signal?: string): Promise<void> {
    const c = this.get(idOrName);
    if (c.state !== 'running')
      throw new Conflict(`cannot kill container: ${idOrName}: container ${c.id} is not running`);
    c.proc!.exit(signal && signal !== 'SIGKILL' && signal !== 'KILL' && signal !== '9' ? 143 : 137);
  }

  async restart(idOrName: string): Promise<void> {
    const c = this.get(idOrName);
    if (c.state === 'running') await this.stop(idOrName);
    await this.start(c.id);
  }

  async remove(idOrName: string, opts: { force?: boolean } = {}): Promise<void> {
    const c = this.get(idOrName);
    if (c.state === 'running') {
      if (!opts.force)
        throw new Conflict(
          `cannot remove container "/${c.name}": container is running: stop the container before removing or force remove`,
        );
      c.proc!.exit(137);
    }
    this.ctrs.delete(c.id);
    this.events.publish('container', 'destroy', c.id, { name: c.name });
  }

  async updateContainer(idOrName: string): Promise<{ Warnings: string[] }> {
    this.get(idOrName);
    return { Warnings: [] };
  }

  async prune(
    filters: Record<string, string[]> = {},
  ): Promise<{ ContainersDeleted: string[] | null; SpaceReclaimed: number }> {
    const wanted = prunePredicate(filters);
    const deleted: string[] = [];
    for (const c of [...this.ctrs.values()]) {
      if (!wanted({ Id: c.id, Created: c.created.toISOString(), Labels: c.body.Labels ?? {}, Status: c.state }))
        continue;
      this.ctrs.delete(c.id);
      deleted.push(c.id);
    }
    return { ContainersDeleted: deleted.length ? deleted : null, SpaceReclaimed: 0 };
  }

  async rename(idOrName: string, newName: string): Promise<void> {
    const c = this.get(idOrName);
    if ([...this.ctrs.values()].some((x) => x.name === newName))
      throw new Conflict(
        `Error when allocating new name: Conflict. The container name "/${newName}" is already in use`,
      );
    c.name = newName;
  }

  private settings(c: FakeContainer): DockerNetworkSettings {
    return {
      Bridge: '',
      SandboxID: '',
      SandboxKey: '',
      Ports: {},
      HairpinMode: false,
      LinkLocalIPv6Address: '',
      LinkLocalIPv6PrefixLen: 0,
      SecondaryIPAddresses: null,
      SecondaryIPv6Addresses: null,
      EndpointID: '',
      Gateway: '',
      GlobalIPv6Address: '',
      GlobalIPv6PrefixLen: 0,
      IPAddress: c.state === 'running' ? '172.17.0.2' : '',
      IPPrefixLen: 16,
      IPv6Gateway: '',
      MacAddress: '',
      Networks: c.networks,
    };
  }

  async inspect(idOrName: string): Promise<DockerContainerInspect> {
    const c = this.get(idOrName);
    const cmd = [...(c.body.Entrypoint ?? []), ...(c.body.Cmd ?? [])];
    return {
      Id: c.id,
      Created: c.created.toISOString(),
      Path: cmd[0] ?? '',
      Args: cmd.slice(1),
      State: {
        Status: c.state,
        Running: c.state === 'running',
        Paused: false,
        Restarting: false,
        OOMKilled: false,
        Dead: false,
        Pid: c.state === 'running' ? 4242 : 0,
        ExitCode: c.exitCode,
        Error: '',
        StartedAt: c.startedAt,
        FinishedAt: c.finishedAt,
      },
      Image: await this.images.resolve(c.body.Image ?? ''),
      ResolvConfPath: '',
      HostnamePath: '',
      HostsPath: '',
      LogPath: '',
      Name: '/' + c.name,
      RestartCount: 0,
      Driver: 'overlay',
      Platform: 'linux',
      MountLabel: '',
      ProcessLabel: '',
      AppArmorProfile: '',
      ExecIDs: null,
      HostConfig: c.body.HostConfig ?? {},
      GraphDriver: { Name: 'overlay', Data: null },
      Mounts: [],
      Config: { ...c.body, Hostname: c.body.Hostname || c.id.slice(0, 12) },
      NetworkSettings: this.settings(c),
    };
  }

  async list(opts: { all?: boolean; limit?: number; filters?: Filters } = {}): Promise<DockerContainerSummary[]> {
    let rows = [...this.ctrs.values()].filter((c) => opts.all || c.state === 'running');
    const f = opts.filters ?? {};
    if (f.name) rows = rows.filter((c) => matchName(c.name, f.name!));
    if (f.status) rows = rows.filter((c) => f.status!.includes(c.state));
    rows.sort((a, b) => b.created.getTime() - a.created.getTime());
    if (opts.limit) rows = rows.slice(0, opts.limit);
    return rows.map((c) => ({
      Id: c.id,
      Names: ['/' + c.name],
      Image: c.body.Image ?? '',
      ImageID: '',
      Command: [...(c.body.Entrypoint ?? []), ...(c.body.Cmd ?? [])].join(' '),
      Created: Math.floor(c.created.getTime() / 1000),
      Ports: Object.entries(c.body.HostConfig?.PortBindings ?? {}).flatMap(([p, bs]) =>
        (bs ?? []).map((b) => ({
          IP: b.HostIp || '0.0.0.0',
          PrivatePort: Number(p.split('/')[0]),
          PublicPort: Number(b.HostPort),
          Type: p.split('/')[1] ?? 'tcp',
        })),
      ),
      Labels: c.body.Labels ?? {},
      State: c.state,
      Status: c.state === 'running' ? 'Up Less than a second' : `Exited (${c.exitCode}) Less than a second ago`,
      HostConfig: { NetworkMode: c.body.HostConfig?.NetworkMode || 'bridge' },
      NetworkSettings: { Networks: c.networks },
      Mounts: [],
    }));
  }

  async wait(
    idOrName: string,
    condition: 'not-running' | 'next-exit' | 'removed' = 'not-running',
  ): Promise<{ StatusCode: number; Error?: { Message: string } | null }> {
    const c = this.get(idOrName);
    if (condition === 'not-running' && c.state !== 'running') return { StatusCode: c.exitCode };
    const code = await new Promise<number>((r) => c.exitWaiters.push(r));
    return { StatusCode: code };
  }

  async *logs(idOrName: string, opts: LogOptions): AsyncIterable<LogEntry> {
    const c = this.get(idOrName);
    let entries = c.logs.filter((e) => (e.stream === 'stdout' ? opts.stdout : opts.stderr));
    if (opts.tail !== 'all') entries = entries.slice(-Number(opts.tail));
    for (const e of entries) yield e;
  }

  /**
   * An attach or exec session on `proc`: given as a promise, so a session taken before start (docker run attaches
   * first) exists at once, as the real engine's does, and is wired to the process when start spawns it.
   */
  private session(
    procReady: FakeProc | Promise<FakeProc>,
    tty: boolean,
    opts: { stdin: boolean; detachKeys?: string },
    exited: Promise<number>,
  ): IoSession {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const stdin = opts.stdin ? new PassThrough() : null;
    let resolveDone!: (v: 'exited' | 'detached' | 'closed') => void;
    const done = new Promise<'exited' | 'detached' | 'closed'>((r) => {
      resolveDone = r;
    });
    const onOut = (d: Buffer) => stdout.write(d);
    const onErr = (d: Buffer) => (tty ? stdout : stderr).write(d);
    let proc: FakeProc | undefined;
    let finished = false;
    const finish = (how: 'exited' | 'detached' | 'closed') => {
      if (finished) return;
      finished = true;
      proc?.stdout.off('data', onOut);
      proc?.stderr.off('data', onErr);
      if (how === 'exited') {
        stdout.end();
        stderr.end();
      }
      resolveDone(how);
    };
    const pending: Buffer[] = [];
    let stdinEnded = false;
    void Promise.resolve(procReady).then((p) => {
      if (finished) return;
      proc = p;
      p.stdout.on('data', onOut);
      p.stderr.on('data', onErr);
      for (const d of pending.splice(0)) p.stdin.write(d);
      if (stdinEnded) p.stdin.end();
    });
    void exited.then(() => finish('exited'));
    stdin?.on('data', (d: Buffer) => {
      if (opts.detachKeys !== '' && d.includes(DETACH)) {
        finish('detached');
        return;
      }
      if (proc) proc.stdin.write(d);
      else pending.push(d);
    });
    stdin?.on('end', () => {
      if (proc) proc.stdin.end();
      else stdinEnded = true;
    });
    return {
      tty,
      stdout,
      stderr: tty ? null : stderr,
      stdin,
      done,
      resize: async () => {},
      close: () => finish('closed'),
    };
  }

  async attach(idOrName: string, opts: AttachOptions): Promise<IoSession> {
    const c = this.get(idOrName);
    // Attaching before start (docker run): the session exists now and hooks onto the process as start spawns it.
    const procReady = c.proc ? c.proc : new Promise<FakeProc>((resolve) => c.onStart.push(() => resolve(c.proc!)));
    return this.session(
      procReady,
      Boolean(c.body.Tty),
      {
        stdin: opts.stdin && Boolean(c.body.OpenStdin),
        ...(opts.detachKeys !== undefined ? { detachKeys: opts.detachKeys } : {}),
      },
      Promise.resolve(procReady).then((p) => p.exited),
    );
  }

  async resize(idOrName: string, rows: number, cols: number): Promise<void> {
    const c = this.get(idOrName);
    if (c.state !== 'running') throw new Conflict(`cannot resize a stopped container: unknown`);
    c.size = { rows, cols };
  }

  async execCreate(idOrName: string, body: DockerExecCreate): Promise<{ Id: string }> {
    const c = this.get(idOrName);
    if (c.state !== 'running') throw new Conflict(`container ${c.id} is not running`);
    const id = newId();
    this.execs.set(id, { id, ctr: c.id, body, running: false, exitCode: null });
    return { Id: id };
  }

  async execStart(execId: string, opts: { Detach?: boolean; Tty?: boolean }): Promise<IoSession | undefined> {
    const ex = this.execs.get(execId);
    if (!ex) throw new NotFound(`No such exec instance: ${execId}`);
    ex.running = true;
    const proc = spawnFake(ex.body.Cmd, () => {});
    const exited = proc.exited.then((code) => {
      ex.running = false;
      ex.exitCode = code;
      return code;
    });
    if (opts.Detach) return undefined;
    return this.session(proc, Boolean(ex.body.Tty), { stdin: Boolean(ex.body.AttachStdin) }, exited);
  }

  async execInspect(execId: string): Promise<Record<string, unknown>> {
    const ex = this.execs.get(execId);
    if (!ex) throw new NotFound(`No such exec instance: ${execId}`);
    return {
      ID: ex.id,
      ContainerID: ex.ctr,
      Running: ex.running,
      ExitCode: ex.exitCode,
      ProcessConfig: { entrypoint: ex.body.Cmd[0], arguments: ex.body.Cmd.slice(1), tty: Boolean(ex.body.Tty) },
      OpenStdin: Boolean(ex.body.AttachStdin),
      Pid: 0,
    };
  }

  async execResize(execId: string): Promise<void> {
    if (!this.execs.has(execId)) throw new NotFound(`No such exec instance: ${execId}`);
  }

  async connectNetwork(idOrName: string, network: string, settings: DockerEndpointSettings): Promise<void> {
    const c = this.get(idOrName);
    const n = await this.networks.resolveNetwork(network);
    if (c.networks[n.name]) throw new Forbidden(`endpoint with name ${c.name} already exists in network ${n.name}`);
    c.networks[n.name] = { ...settings, NetworkID: n.id };
    this.events.publish('network', 'connect', n.id, { container: c.id, name: n.name, type: n.driver });
  }

  async disconnectNetwork(idOrName: string, network: string): Promise<void> {
    const c = this.get(idOrName);
    const n = await this.networks.resolveNetwork(network);
    if (!c.networks[n.name]) throw new Forbidden(`container ${c.id} is not connected to network ${n.name}`);
    delete c.networks[n.name];
    delete this.networks.nets.get(n.id)?.Containers[c.id];
    this.events.publish('network', 'disconnect', n.id, { container: c.id, name: n.name, type: n.driver });
  }

  async restore(): Promise<void> {}

  async close(): Promise<void> {
    for (const c of this.ctrs.values()) c.proc?.exit(137);
  }
}

/** Volumes in memory: enough for the API layer's routing and shapes. */
class FakeVolumes implements VolumeService {
  readonly vols = new Map<string, DockerVolume>();
  async create(body: VolumeCreate): Promise<DockerVolume> {
    const name = body.Name || newId();
    const v: DockerVolume = {
      CreatedAt: new Date().toISOString(),
      Driver: body.Driver || 'local',
      Labels: body.Labels ?? {},
      Mountpoint: `/fake/volumes/${name}/_data`,
      Name: name,
      Options: body.DriverOpts ?? {},
      Scope: 'local',
    };
    if (!this.vols.has(name)) this.vols.set(name, v);
    return this.vols.get(name)!;
  }
  async inspect(name: string): Promise<DockerVolume> {
    const v = this.vols.get(name);
    if (!v) throw new NotFound(`get ${name}: no such volume`);
    return v;
  }
  async list(): Promise<{ Volumes: DockerVolume[]; Warnings: string[] | null }> {
    return { Volumes: [...this.vols.values()], Warnings: null };
  }
  async remove(name: string, opts: { force?: boolean } = {}): Promise<void> {
    if (!this.vols.delete(name) && !opts.force) throw new NotFound(`get ${name}: no such volume`);
  }
  async prune(): Promise<{ VolumesDeleted: string[]; SpaceReclaimed: number }> {
    return { VolumesDeleted: [], SpaceReclaimed: 0 };
  }
}

export function createFakeEngine(): Engine & {
  networks: FakeNetworks & NetworkService;
  containers: FakeContainers;
  images: FakeImages;
} {
  const events = new EventBus();
  const networks = new FakeNetworks(events) as FakeNetworks & NetworkService;
  const images = new FakeImages(events);
  const containers = new FakeContainers(events, images, networks);
  return {
    config: defaultConfig({ execRoot: '/tmp/cove-fake' }),
    networks,
    containers,
    images,
    events,
    volumes: new FakeVolumes(),
    distribution: new FakeDistribution(images),
    async info() {
      return {
        ID: 'FAKE:ENGINE',
        Containers: containers.ctrs.size,
        ContainersRunning: [...containers.ctrs.values()].filter((c) => c.state === 'running').length,
        ContainersPaused: 0,
        ContainersStopped: [...containers.ctrs.values()].filter((c) => c.state !== 'running').length,
        Images: images.images.size,
        Driver: 'overlay',
        Name: 'fakehost',
        ServerVersion: '0.1.0',
        OSType: 'linux',
        Architecture: 'x86_64',
        NCPU: 2,
        MemTotal: 1 << 30,
        KernelVersion: '6.18',
        OperatingSystem: 'Cove fake',
        Plugins: { Network: ['bridge', 'host', 'null'] },
        Swarm: {
          NodeID: '',
          NodeAddr: '',
          LocalNodeState: 'inactive',
          ControlAvailable: false,
          Error: '',
          RemoteManagers: null,
        },
        DefaultAddressPools: [{ Base: '172.17.0.0/16', Size: 16 }],
        Warnings: [],
      };
    },
    version() {
      return {
        Platform: { Name: 'Cove' },
        Components: [
          {
            Name: 'Engine',
            Version: '0.1.0',
            Details: {
              ApiVersion: '1.51',
              MinAPIVersion: '1.24',
              Os: 'linux',
              Arch: 'amd64',
              KernelVersion: '6.18',
              GitCommit: 'fake',
            },
          },
        ],
        Version: '0.1.0',
        ApiVersion: '1.51',
        MinAPIVersion: '1.24',
        GitCommit: 'fake',
        GoVersion: 'node20',
        Os: 'linux',
        Arch: 'amd64',
        KernelVersion: '6.18',
        BuildTime: '2026-11-28T00:00:00.000000000+00:00',
      };
    },
  };
}
