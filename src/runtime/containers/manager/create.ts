/**
 * Container create (config, image, name, mounts, network endpoints checked and recorded), rename and update.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { Conflict, CoveError, InvalidParameter } from '../../../common/errors.js';
import { MAX_NAME_LENGTH, newId, VALID_NAME } from '../../../common/ids.js';
import type { DockerEndpointSettings } from '../../../network/types.js';
import { checkEndpointSettings } from '../../../network/endpoint.js';
import type { DockerContainerConfig, DockerContainerCreate, DockerHostConfig } from '../../types.js';
import { mergeHealthcheck, validateHealthcheck, type HealthConfig } from '../health.js';
import { generateName } from '../names.js';
import { isSpecialMode, normalizeNetworkMode, parsePortKey, sandboxSpec } from '../spec.js';
import { validateResources, validateRestartPolicy } from '../inspect-view.js';
import { parseVolumesFrom, planMounts, type DockerMount, type MountPoint } from '../mounts.js';
import { materialize, removeAnonymous } from '../mount-setup.js';
import { normalizeLogConfig, type LogConfig } from '../log-config.js';
import {
  adaptResources,
  checkResources,
  mergeUpdate,
  ociResources,
  UPDATABLE,
  type ResourceConfig,
} from '../resources.js';
import { ContainerCore, ZERO_TIME, signalNumber, type ContainerRecord } from './core.js';

export class CreateOps {
  constructor(private readonly core: ContainerCore) {}

  async create(name: string | undefined, body: DockerContainerCreate): Promise<{ Id: string; Warnings: string[] }> {
    const warnings: string[] = [];
    if (!body || typeof body !== 'object')
      throw new InvalidParameter('config cannot be empty in order to create a container');
    if (name !== undefined && name !== '' && !VALID_NAME.test(name)) {
      throw new InvalidParameter(`Invalid container name (${name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    }
    // A name must stay addressable in a request path (see MAX_NAME_LENGTH).
    if (name && name.replace(/^\//, '').length > MAX_NAME_LENGTH) {
      throw new InvalidParameter(
        `Invalid container name (${name.slice(0, 64)}...): longer than ${MAX_NAME_LENGTH} characters`,
      );
    }
    if (!body.Image) throw new InvalidParameter('No command specified');
    const imageId = await this.core.images.resolve(body.Image);
    const image = await this.core.images.imageConfig(imageId);
    const ic = image.config ?? {};
    const hostConfig: DockerHostConfig = structuredClone(body.HostConfig ?? {});
    const mode = normalizeNetworkMode(hostConfig.NetworkMode);
    hostConfig.NetworkMode = mode;
    validateRestartPolicy(hostConfig.RestartPolicy);
    validateResources(hostConfig as Parameters<typeof validateResources>[0]);
    hostConfig.LogConfig = normalizeLogConfig(hostConfig.LogConfig as LogConfig | undefined);
    // One OCI runtime, runc, as `docker info` lists it (Docker: unknown names are refused at create).
    const runtime = (hostConfig.Runtime as string | undefined) || 'runc';
    if (runtime !== 'runc') throw new InvalidParameter(`unknown or invalid runtime name: ${runtime}`);
    hostConfig.Runtime = runtime;
    if (hostConfig.Init === null) delete hostConfig.Init;
    for (const g of (hostConfig.GroupAdd as unknown[] | null | undefined) ?? []) {
      if (typeof g !== 'string' || g === '') throw new InvalidParameter(`invalid group: ${String(g)}`);
    }
    checkResources(hostConfig as ResourceConfig);
    adaptResources(hostConfig as ResourceConfig);

    // Merge with the image's defaults, as Docker does at create.
    const { HostConfig: _h, NetworkingConfig: _n, ...cfgIn } = body;
    const config: DockerContainerConfig = structuredClone(cfgIn);
    const env = new Map<string, string>();
    for (const e of [...(ic.Env ?? []), ...(config.Env ?? [])]) env.set(e.split('=')[0]!, e);
    // Images made by `import` carry no PATH; Docker gives such containers its default one.
    if (!env.has('PATH')) env.set('PATH', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    config.Env = [...env.values()];
    const entrypointGiven = config.Entrypoint !== undefined && config.Entrypoint !== null;
    if (!entrypointGiven) config.Entrypoint = ic.Entrypoint ?? null;
    if (!config.Cmd?.length && !entrypointGiven) config.Cmd = ic.Cmd ?? null;
    // `--entrypoint ""` arrives as [""]: no entrypoint (and the image's Cmd is not merged).
    if (
      config.Entrypoint &&
      (config.Entrypoint.length === 0 || (config.Entrypoint.length === 1 && config.Entrypoint[0] === ''))
    )
      config.Entrypoint = null;
    const argv = [...(config.Entrypoint ?? []), ...(config.Cmd ?? [])];
    if (!argv.length) throw new InvalidParameter('No command specified');
    config.WorkingDir = config.WorkingDir || ic.WorkingDir || '';
    config.User = config.User || ic.User || '';
    config.Labels = { ...(ic.Labels ?? {}), ...(config.Labels ?? {}) };
    config.ExposedPorts = { ...(ic.ExposedPorts ?? {}), ...(config.ExposedPorts ?? {}) };
    for (const k of Object.keys(config.ExposedPorts)) parsePortKey(k);
    if (!Object.keys(config.ExposedPorts).length) delete config.ExposedPorts;
    const health = mergeHealthcheck(
      config.Healthcheck as HealthConfig | null | undefined,
      (ic as { Healthcheck?: HealthConfig }).Healthcheck,
    );
    validateHealthcheck(health);
    if (health) config.Healthcheck = health;
    else delete config.Healthcheck;
    if (!config.StopSignal && ic.StopSignal) config.StopSignal = ic.StopSignal;
    if (config.StopSignal) signalNumber(config.StopSignal, 'SIGTERM');
    config.Image = body.Image;
    config.Tty = !!config.Tty;
    config.OpenStdin = !!config.OpenStdin;
    config.StdinOnce = !!config.StdinOnce;
    config.AttachStdin = !!config.AttachStdin;
    config.AttachStdout = !!config.AttachStdout;
    config.AttachStderr = !!config.AttachStderr;
    config.Domainname = config.Domainname ?? '';

    // Networking: validate now, like Docker's create does.
    const endpoints: Record<string, DockerEndpointSettings> = structuredClone(
      body.NetworkingConfig?.EndpointsConfig ?? {},
    );
    // The CLI names the default network "default" (NetworkMode too): it is the bridge.
    if (endpoints.default) {
      endpoints.bridge = { ...endpoints.default, ...(endpoints.bridge ?? {}) };
      delete endpoints.default;
    }
    if (mode === 'host') {
      if (hostConfig.PortBindings && Object.keys(hostConfig.PortBindings).length) {
        warnings.push('Published ports are discarded when using host network mode');
      }
      if (!config.Hostname) config.Hostname = osHostname();
    } else if (mode.startsWith('container:')) {
      // moby's validateNetContainerMode: what the other container's namespace already decides.
      if (body.Hostname) throw new InvalidParameter('conflicting options: hostname and the network mode');
      if (hostConfig.Dns?.length) throw new InvalidParameter('conflicting options: dns and the network mode');
      if (hostConfig.ExtraHosts?.length)
        throw new InvalidParameter('conflicting options: custom host-to-IP mapping and the network mode');
      if (body.MacAddress) throw new InvalidParameter('conflicting options: mac-address and the network mode');
      if ((hostConfig.PortBindings && Object.keys(hostConfig.PortBindings).length) || hostConfig.PublishAllPorts) {
        throw new InvalidParameter('conflicting options: port publishing and the container type network mode');
      }
      if (body.ExposedPorts && Object.keys(body.ExposedPorts).length) {
        throw new InvalidParameter('conflicting options: port exposing and the container type network mode');
      }
      const other = await this.core.get(mode.slice('container:'.length));
      hostConfig.NetworkMode = `container:${other.Id}`;
    } else if (mode !== 'none') {
      if (!endpoints[mode]) endpoints[mode] = {};
      // Clients before API 1.44 give --mac-address as Config.MacAddress: it belongs to the NetworkMode's endpoint.
      if (config.MacAddress && !endpoints[mode]!.MacAddress) endpoints[mode]!.MacAddress = config.MacAddress;
      // Legacy links on a user-defined network belong to its endpoint (libnetwork
      // aliases); Docker's inspect then shows HostConfig.Links as null.
      if (mode !== 'bridge' && hostConfig.Links?.length) {
        const ep = endpoints[mode]!;
        ep.Links = [...new Set([...(ep.Links ?? []), ...hostConfig.Links])];
        hostConfig.Links = null;
      }
    }
    if (isSpecialMode(mode) && Object.keys(endpoints).some((n) => n !== mode)) {
      if (mode === 'host')
        throw new InvalidParameter('container cannot be disconnected from host network or connected to host network');
      throw new InvalidParameter(
        'container sharing network namespace with another container or host cannot be connected to any other network',
      );
    }
    // The docker CLI sends an (empty) endpoint for "container:<name>"; that mode has no endpoints of its own.
    if (mode.startsWith('container:')) delete endpoints[mode];
    for (const s of Object.values(endpoints)) checkEndpointSettings(s);
    for (const net of Object.keys(endpoints)) {
      if (net === 'host' || net === 'none') continue;
      const found = await this.core.networks.resolveNetwork(net);
      endpoints[net]!.NetworkID = found.id;
    }
    // Port keys and bindings must parse.
    sandboxSpec({ id: 'x'.repeat(64), name: 'x', config, hostConfig, endpoints, dir: '/', networkMode: mode });
    // Mounts: parsed and checked now; volumes and bind sources are made inside the lock below.
    config.Volumes = { ...(ic.Volumes ?? {}), ...(config.Volumes ?? {}) };
    if (!Object.keys(config.Volumes).length) config.Volumes = null;
    const from: MountPoint[] = [];
    for (const spec of (hostConfig.VolumesFrom as string[] | null | undefined) ?? []) {
      const vf = parseVolumesFrom(spec);
      const other = await this.core.get(vf.container);
      for (const m of other.MountPoints ?? []) {
        if (m.Type === 'tmpfs') continue;
        from.push({
          ...structuredClone(m),
          ...(vf.mode ? { RW: vf.mode === 'rw', Mode: vf.mode } : {}),
          anonymous: false,
        });
      }
    }
    const planned = planMounts({
      binds: hostConfig.Binds as string[] | null | undefined,
      mounts: hostConfig.Mounts as DockerMount[] | null | undefined,
      tmpfs: hostConfig.Tmpfs as Record<string, string> | null | undefined,
      volumes: config.Volumes as Record<string, unknown> | null,
      from,
    });

    const id = newId();
    if (!config.Hostname) config.Hostname = id.slice(0, 12);
    return this.core.withLock('create', async () => {
      const all = await this.core.records.listShared();
      const names = new Map(all.map((r) => [r.value.Name, r.value.Id]));
      let finalName = name ? '/' + name.replace(/^\//, '') : '';
      if (finalName && names.has(finalName)) {
        throw new Conflict(
          `Conflict. The container name "${finalName}" is already in use by container "${names.get(finalName)}". You have to remove (or rename) that container to be able to reuse that name.`,
        );
      }
      if (!finalName) finalName = '/' + generateName((n) => names.has('/' + n));
      const mountPoints = await materialize(this.core.volumes, planned);
      const dir = this.core.containerDir(id);
      await mkdir(dir, { recursive: true, mode: 0o710 });
      const rec: ContainerRecord = {
        Id: id,
        Name: finalName,
        Created: new Date().toISOString(),
        Path: argv[0]!,
        Args: argv.slice(1),
        ImageRef: body.Image!,
        ImageID: imageId,
        Config: config,
        HostConfig: hostConfig,
        EndpointsConfig: endpoints,
        State: {
          Status: 'created',
          Running: false,
          Paused: false,
          Restarting: false,
          OOMKilled: false,
          Dead: false,
          Pid: 0,
          ExitCode: 0,
          Error: '',
          StartedAt: ZERO_TIME,
          FinishedAt: ZERO_TIME,
        },
        RestartCount: 0,
        HostsPath: '',
        HostnamePath: '',
        ResolvConfPath: '',
        MountPoints: mountPoints,
      };
      try {
        await this.core.records.put(id, rec, 0);
      } catch (e) {
        await rm(dir, { recursive: true, force: true });
        await removeAnonymous(this.core.volumes, mountPoints);
        throw e;
      }
      this.core.publish(rec, 'create');
      return { Id: id, Warnings: warnings };
    });
  }

  async rename(idOrName: string, newName: string): Promise<void> {
    const r = await this.core.get(idOrName);
    if (!newName || !VALID_NAME.test(newName) || newName.replace(/^\//, '').length > MAX_NAME_LENGTH)
      throw new InvalidParameter(`Invalid container name (${newName}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    const target = '/' + newName.replace(/^\//, '');
    if (target === r.Name) throw new InvalidParameter(`Renaming a container with the same name as its current name`);
    await this.core.withLock('create', async () => {
      const clash = (await this.core.records.listShared()).find((x) => x.value.Name === target);
      if (clash) {
        throw new Conflict(
          `Conflict. The container name "${target}" is already in use by container "${clash.value.Id}". You have to remove (or rename) that container to be able to reuse that name.`,
        );
      }
      await this.core.update(r.Id, (x) => {
        x.Name = target;
      });
    });
    if (r.State.Running) {
      await this.core.networks
        .renameContainer(r.Id, target.slice(1))
        .catch((e) => this.core.log.warn({ id: r.Id, err: (e as Error).message }, 'network rename failed'));
    }
    const cur = await this.core.get(r.Id);
    this.core.publish(cur, 'rename', { oldName: r.Name });
  }

  /**
   * docker update: restart policy and resource limits; a running container's
   * cgroups change at once (runc update), the record for its next starts.
   */
  async updateContainer(
    idOrName: string,
    body: ResourceConfig & { RestartPolicy?: { Name?: string; MaximumRetryCount?: number } },
  ): Promise<{ Warnings: string[] }> {
    if (!body || typeof body !== 'object')
      throw new InvalidParameter('config cannot be empty in order to update a container');
    for (const k of UPDATABLE) {
      const v = body[k];
      if (v === undefined || v === null) continue;
      const ok = k.startsWith('Cpuset') ? typeof v === 'string' : Number.isSafeInteger(v);
      if (!ok)
        throw new InvalidParameter(
          `json: cannot unmarshal ${typeof v} into Go struct field UpdateConfig.${k} of type ${k.startsWith('Cpuset') ? 'string' : 'int64'}`,
        );
    }
    const r0 = await this.core.get(idOrName);
    return this.core.withLock(r0.Id, async () => {
      const r = await this.core.get(r0.Id);
      if (body.RestartPolicy) {
        validateRestartPolicy(body.RestartPolicy);
        if (r.HostConfig.AutoRemove && body.RestartPolicy.Name && body.RestartPolicy.Name !== 'no') {
          throw new InvalidParameter(
            'Restart policy cannot be updated because AutoRemove is enabled for the container',
          );
        }
      }
      validateResources(body as Parameters<typeof validateResources>[0]);
      checkResources({
        ...(r.HostConfig as ResourceConfig),
        ...body,
        ...(body.NanoCpus ? { CpuQuota: 0, CpuPeriod: 0 } : {}),
      });
      const next = mergeUpdate(r.HostConfig as ResourceConfig, body);
      if (r.State.Running && UPDATABLE.some((k) => body[k] !== undefined && body[k] !== null)) {
        const dir = join(this.core.bundleDir(r.Id), 'update');
        await mkdir(dir, { recursive: true, mode: 0o700 });
        const file = join(dir, 'resources.json');
        const res = ociResources(next);
        // Lifting a pids limit: runc's -1 is "max".
        if (body.PidsLimit !== undefined && body.PidsLimit !== null && !(next.PidsLimit && next.PidsLimit > 0))
          res.pids = { limit: -1 };
        await writeFile(file, JSON.stringify(res));
        await this.core.runc(['update', '--resources', file, r.Id]).catch((e) => {
          throw new CoveError(`Cannot update container ${r.Id}: ${(e as Error).message}`, 500);
        });
      }
      const updated = await this.core.update(r.Id, (x) => {
        Object.assign(x.HostConfig, next);
        if (body.RestartPolicy)
          x.HostConfig.RestartPolicy = {
            Name: body.RestartPolicy.Name ?? '',
            MaximumRetryCount: body.RestartPolicy.MaximumRetryCount ?? 0,
          };
      });
      this.core.publish(updated, 'update');
      return { Warnings: [] };
    });
  }
}
