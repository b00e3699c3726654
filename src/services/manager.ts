/**
 * The services API on a manager: create, list, inspect, update (and
 * rollback), remove services; list and inspect tasks. It validates a spec in
 * Docker's words, resolves networks to swarm-scoped network IDs, asks for a
 * VIP per network, and writes the service record; the orchestrator (on the
 * leader) and the agents (on every node) do the rest from the store.
 */
import { Conflict, InvalidParameter, NotFound } from '../common/errors.js';
import type { Filters } from '../network/types.js';
import type { Store } from '../store/store.js';
import {
  isReplicated,
  replicas,
  serviceCollection,
  taskCollection,
  taskName,
  updateRecord,
  withVersion,
} from './records.js';
import { parseConstraints } from './scheduler.js';
import { rollbackOf } from './orchestrator.js';
import { assignPublishedPorts, hostPortHolder, isHostPortsKey, NODE_LOCAL, type NodeHostPorts } from './mesh.js';
import { portAllocatedMessage } from '../network/ports.js';
import {
  isTerminal,
  needsIngress,
  newSwarmId,
  nowIso,
  type PortConfig,
  type Service,
  type ServiceSpec,
  type Task,
  type VirtualIp,
} from './types.js';

/** What the services layer needs from the network layer. */
export interface ServiceNetworks {
  /** Network ID, name, driver, scope and whether it is the ingress network; NotFound when unknown. */
  lookup(idOrName: string): Promise<{ id: string; name: string; driver: string; scope: string; ingress: boolean }>;
  /** One address for a service VIP on a swarm network, "a.b.c.d/len"; undefined when the network hands out none. */
  allocateVip?(networkId: string, owner: string): Promise<string | undefined>;
  releaseVip?(networkId: string, addr: string, owner: string): Promise<void>;
  /** The swarm's ingress network (the routing mesh's), undefined when there is none. */
  ingress?(): Promise<{ id: string; name: string } | undefined>;
}

export const NO_INGRESS =
  'rpc error: code = FailedPrecondition desc = service needs ingress network, but no ingress network is present';

export const NOT_ELIGIBLE = (name: string): string =>
  `The network ${name} cannot be used with services. Only networks scoped to the swarm can be used, such as those created with the overlay driver.`;

export class ServiceManager {
  private readonly services;
  private readonly tasks;

  constructor(
    readonly store: Store,
    private readonly networks: ServiceNetworks,
  ) {
    this.services = serviceCollection(store);
    this.tasks = taskCollection(store);
  }

  /**
   * `encodedAuth`: the X-Registry-Auth of `service create --with-registry-auth`,
   * kept in the task template (swarmkit's PullOptions) for the nodes that pull.
   */
  async create(spec: ServiceSpec, encodedAuth?: string): Promise<{ ID: string; Warnings?: string[] }> {
    const norm = await this.validate(spec);
    setRegistryAuth(norm, encodedAuth);
    if (!norm.Name) norm.Name = newSwarmId().slice(0, 12);
    if ((await this.services.list()).some((s) => s.value.Spec.Name === norm.Name)) {
      throw new Conflict(
        `rpc error: code = AlreadyExists desc = name conflicts with an existing object: service ${norm.Name} already exists`,
      );
    }
    const id = newSwarmId();
    const now = nowIso();
    const svc: Service = {
      ID: id,
      Version: { Index: 0 },
      CreatedAt: now,
      UpdatedAt: now,
      Spec: norm,
      Endpoint: { Spec: norm.EndpointSpec ?? { Mode: 'vip' } },
      SpecVersion: { Index: 1 },
    };
    await this.endpoint(svc, undefined);
    try {
      await this.services.put(id, svc, 0);
    } catch (e) {
      await this.releaseVips(svc.ID, svc.Endpoint.VirtualIPs ?? []);
      throw e;
    }
    return { ID: id };
  }

  async list(filters: Filters = {}, withStatus = false): Promise<Service[]> {
    const all = (await this.services.list()).map(withVersion);
    const out = all.filter((s) => matchService(s, filters));
    if (withStatus) {
      const tasks = (await this.tasks.list()).map((e) => e.value);
      for (const s of out) s.ServiceStatus = serviceStatus(s, tasks);
    }
    return out.sort((a, b) => (a.Spec.Name ?? '').localeCompare(b.Spec.Name ?? ''));
  }

  /** By full ID, full name, or unique ID prefix, as Docker resolves services. */
  async find(idOrName: string): Promise<Service> {
    const all = (await this.services.list()).map(withVersion);
    const hit = all.find((s) => s.ID === idOrName) ?? all.find((s) => s.Spec.Name === idOrName);
    if (hit) return hit;
    const pre = all.filter((s) => s.ID.startsWith(idOrName));
    if (pre.length === 1) return pre[0]!;
    if (pre.length > 1) throw new InvalidParameter(`service ${idOrName} is ambiguous (${pre.length} matches found)`);
    throw new NotFound(`service ${idOrName} not found`);
  }

  async inspect(idOrName: string): Promise<Service> {
    return this.find(idOrName);
  }

  /**
   * POST /services/{id}/update?version=N[&rollback=previous]. The version
   * must be the one the client read (moby: "update out of sequence").
   */
  async update(
    idOrName: string,
    version: number | undefined,
    spec: ServiceSpec,
    rollback: boolean,
    auth: { encoded?: string; from?: 'spec' | 'previous-spec' } = {},
  ): Promise<{ Warnings: string[] }> {
    const cur = await this.find(idOrName);
    if (version === undefined || version !== cur.Version.Index) {
      throw new InvalidParameter('rpc error: code = Unknown desc = update out of sequence');
    }
    let next: Service;
    if (rollback) {
      if (!cur.PreviousSpec)
        throw new InvalidParameter(
          `rpc error: code = FailedPrecondition desc = service ${cur.ID} does not have a previous spec`,
        );
      next = rollbackOf(cur, 'rollback_started', 'manually requested rollback');
    } else {
      const norm = await this.validate(spec);
      // No new credentials: the ones the service had go on (moby's registryAuthFrom).
      const kept = (auth.from === 'previous-spec' ? cur.PreviousSpec : cur.Spec)?.TaskTemplate?.ContainerSpec
        ?.PullOptions?.RegistryAuth;
      setRegistryAuth(norm, auth.encoded || kept);
      if (norm.Name !== cur.Spec.Name) {
        throw new InvalidParameter('rpc error: code = Unimplemented desc = renaming services is not supported');
      }
      if (Boolean(norm.Mode?.Global) !== Boolean(cur.Spec.Mode?.Global)) {
        throw new InvalidParameter('rpc error: code = Unimplemented desc = service mode change is not allowed');
      }
      const taskChanged =
        JSON.stringify(norm.TaskTemplate) !== JSON.stringify(cur.Spec.TaskTemplate) ||
        endpointChangesTasks(cur.Spec, norm);
      next = {
        ...cur,
        Spec: norm,
        PreviousSpec: cur.Spec,
        SpecVersion: taskChanged ? { Index: cur.SpecVersion.Index + 1 } : cur.SpecVersion,
        UpdatedAt: nowIso(),
      };
      // swarmkit resets the update status on every update; only a changed task spec starts a rolling update.
      delete next.UpdateStatus;
      if (taskChanged) next.UpdateStatus = { State: 'updating', StartedAt: nowIso(), Message: 'update in progress' };
    }
    const released = await this.endpoint(next, cur);
    try {
      await this.services.put(cur.ID, { ...next, Version: { Index: 0 } }, cur.Version.Index);
    } catch (e) {
      await this.releaseVips(
        cur.ID,
        (next.Endpoint.VirtualIPs ?? []).filter(
          (v) => !(cur.Endpoint.VirtualIPs ?? []).some((o) => o.Addr === v.Addr && o.NetworkID === v.NetworkID),
        ),
      );
      throw e;
    }
    await this.releaseVips(cur.ID, released);
    return { Warnings: [] };
  }

  async remove(idOrName: string): Promise<void> {
    const cur = await this.find(idOrName);
    await this.services.delete(cur.ID);
    // The agents stop and remove the tasks; the orchestrator drops those of down nodes.
    for (const t of await this.tasks.list()) {
      if (t.value.ServiceID !== cur.ID) continue;
      await updateRecord(this.tasks, t.id, (v) =>
        v.DesiredState === 'remove' ? v : { ...v, DesiredState: 'remove' as const, UpdatedAt: nowIso() },
      ).catch(() => undefined);
    }
    await this.releaseVips(cur.ID, cur.Endpoint.VirtualIPs ?? []);
  }

  async listTasks(filters: Filters = {}): Promise<Task[]> {
    const services = (await this.services.list()).map(withVersion);
    const byId = new Map(services.map((s) => [s.ID, s]));
    const all = (await this.tasks.list()).map(withVersion);
    const want = (k: string): string[] | undefined => (filters[k]?.length ? filters[k] : undefined);
    const svcIds = want('service')?.map((ref) => {
      const s =
        services.find((x) => x.ID === ref) ??
        services.find((x) => x.Spec.Name === ref) ??
        services.find((x) => x.ID.startsWith(ref));
      return s?.ID ?? ref;
    });
    return all.filter((t) => {
      const svc = byId.get(t.ServiceID);
      if (svcIds && !svcIds.includes(t.ServiceID)) return false;
      if (want('id') && !want('id')!.some((p) => t.ID.startsWith(p))) return false;
      if (want('node') && !want('node')!.some((n) => t.NodeID === n || (n.length >= 1 && t.NodeID.startsWith(n))))
        return false;
      if (want('desired-state') && !want('desired-state')!.includes(t.DesiredState)) return false;
      if (
        want('name') &&
        !want('name')!.some((n) => taskName(t, svc?.Spec.Name ?? t.ServiceAnnotations?.Name ?? '').startsWith(n))
      )
        return false;
      if (want('_up-to-date') && svc && t.SpecVersion.Index !== svc.SpecVersion.Index) return false;
      if (want('label') && !want('label')!.every((l) => matchLabel(t.Labels, l))) return false;
      return true;
    });
  }

  async inspectTask(id: string): Promise<Task> {
    const all = (await this.tasks.list()).map(withVersion);
    const t =
      all.find((x) => x.ID === id) ??
      (all.filter((x) => x.ID.startsWith(id)).length === 1 ? all.find((x) => x.ID.startsWith(id)) : undefined);
    if (!t) throw new NotFound(`task ${id} not found`);
    return t;
  }

  /** Spec checks in swarmkit's words; returns the spec with networks resolved to IDs. */
  private async validate(spec: ServiceSpec): Promise<ServiceSpec> {
    if (!spec || typeof spec !== 'object')
      throw new InvalidParameter('rpc error: code = InvalidArgument desc = spec must not be empty');
    const out: ServiceSpec = JSON.parse(JSON.stringify(spec)) as ServiceSpec;
    if (out.Name !== undefined && out.Name !== '' && !/^[a-zA-Z0-9](?:[a-zA-Z0-9-_]*[a-zA-Z0-9])?$/.test(out.Name)) {
      throw new InvalidParameter(`rpc error: code = InvalidArgument desc = name must be valid as a DNS name component`);
    }
    if (out.Name && out.Name.length > 63)
      throw new InvalidParameter('rpc error: code = InvalidArgument desc = name must be 63 characters or fewer');
    const tt = (out.TaskTemplate ??= {});
    // Credentials come only from X-Registry-Auth, never from the body.
    if (tt.ContainerSpec) delete tt.ContainerSpec.PullOptions;
    if (!tt.ContainerSpec?.Image)
      throw new InvalidParameter(
        'rpc error: code = InvalidArgument desc = ContainerSpec: image reference must be provided',
      );
    const mode = out.Mode ?? { Replicated: { Replicas: 1 } };
    if (mode.Replicated && mode.Global)
      throw new InvalidParameter('rpc error: code = InvalidArgument desc = only one service mode can be specified');
    if (mode.ReplicatedJob || mode.GlobalJob)
      throw new InvalidParameter('rpc error: code = Unimplemented desc = job services are not supported by Cove');
    if (!mode.Global) {
      const n = mode.Replicated?.Replicas ?? 1;
      if (!Number.isInteger(n) || n < 0)
        throw new InvalidParameter('rpc error: code = InvalidArgument desc = replicas must be a non-negative integer');
      mode.Replicated = { Replicas: n };
    }
    out.Mode = mode;
    parseConstraints(tt.Placement?.Constraints);
    const rc = tt.RestartPolicy?.Condition;
    if (rc && !['none', 'on-failure', 'any'].includes(rc))
      throw new InvalidParameter(`rpc error: code = InvalidArgument desc = invalid restart condition ${rc}`);
    for (const cfg of [out.UpdateConfig, out.RollbackConfig]) {
      if (cfg?.Order && !['stop-first', 'start-first'].includes(cfg.Order))
        throw new InvalidParameter(`rpc error: code = InvalidArgument desc = invalid update order ${cfg.Order}`);
      if (cfg?.Parallelism !== undefined && (!Number.isInteger(cfg.Parallelism) || cfg.Parallelism < 0))
        throw new InvalidParameter(
          'rpc error: code = InvalidArgument desc = parallelism must be a non-negative integer',
        );
    }
    // Networks: the old top-level place moves into the task template, as moby does.
    const nets = [...(tt.Networks ?? []), ...(out.Networks ?? [])];
    delete out.Networks;
    const resolved = [];
    const seen = new Set<string>();
    for (const n of nets) {
      const net = await this.networks.lookup(n.Target);
      if (net.ingress)
        throw new InvalidParameter(
          `rpc error: code = InvalidArgument desc = Service cannot be explicitly attached to the ingress network "${net.name}"`,
        );
      if (net.scope !== 'swarm') throw new InvalidParameter(NOT_ELIGIBLE(net.name));
      if (seen.has(net.id))
        throw new InvalidParameter(`rpc error: code = InvalidArgument desc = duplicate network attachment ${net.name}`);
      seen.add(net.id);
      resolved.push({ ...n, Target: net.id });
    }
    if (resolved.length) tt.Networks = resolved;
    else delete tt.Networks;
    const ep = out.EndpointSpec;
    if (ep) {
      if (ep.Mode && !['vip', 'dnsrr'].includes(ep.Mode))
        throw new InvalidParameter(`rpc error: code = InvalidArgument desc = invalid endpoint mode ${ep.Mode}`);
      const seenPorts = new Set<string>();
      for (const p of ep.Ports ?? []) {
        if (!p.TargetPort || p.TargetPort < 1 || p.TargetPort > 65535)
          throw new InvalidParameter('rpc error: code = InvalidArgument desc = EndpointSpec: invalid target port');
        p.Protocol ??= 'tcp';
        p.PublishMode ??= 'ingress';
        if (ep.Mode === 'dnsrr' && p.PublishMode === 'ingress') {
          throw new InvalidParameter(
            "rpc error: code = InvalidArgument desc = EndpointSpec: port published with ingress mode can't be used with dnsrr mode",
          );
        }
        if (p.PublishedPort) {
          const k = `${p.PublishedPort}/${p.Protocol}`;
          if (seenPorts.has(k))
            throw new InvalidParameter(
              `rpc error: code = InvalidArgument desc = EndpointSpec: duplicate published ports provided`,
            );
          seenPorts.add(k);
        }
      }
    }
    // After the spec checks, as swarmkit's CreateService/UpdateService do.
    if (needsIngress(out) && this.networks.ingress && !(await this.networks.ingress()))
      throw new InvalidParameter(NO_INGRESS);
    return out;
  }

  /**
   * `network rm` of a swarm network asks this first (swarmkit's
   * removeNetwork/removeIngressNetwork, in their words): the ingress network
   * stays while some service publishes through the routing mesh; another one
   * while a service names it or a task that should run is attached to it.
   */
  async checkNetworkRemoval(net: { id: string; name: string; ingress: boolean }): Promise<void> {
    const services = (await this.services.list()).map((e) => e.value);
    if (net.ingress) {
      const user = services.find((s) => needsIngress(s.Spec));
      if (user)
        throw new InvalidParameter(
          `rpc error: code = FailedPrecondition desc = ingress network cannot be removed because service ${user.ID} depends on it`,
        );
      return;
    }
    const user = services.find((s) => (s.Spec.TaskTemplate?.Networks ?? []).some((n) => n.Target === net.id));
    if (user)
      throw new InvalidParameter(
        `rpc error: code = FailedPrecondition desc = network ${net.id} is in use by service ${user.ID}`,
      );
    const task = (await this.tasks.list())
      .map((e) => e.value)
      .find(
        (t) =>
          t.DesiredState === 'running' &&
          !isTerminal(t.Status.State) &&
          (t.NetworksAttachments ?? []).some((a) => a.Network.ID === net.id),
      );
    if (task)
      throw new InvalidParameter(
        `rpc error: code = FailedPrecondition desc = network ${net.id} is in use by task ${task.ID}`,
      );
  }

  /**
   * Fills svc.Endpoint (spec, ports, VIPs): keeps the VIPs of networks the
   * service stays on, allocates one on each new network, returns the VIPs to
   * release once the change is stored.
   */
  private async endpoint(svc: Service, prev: Service | undefined): Promise<VirtualIp[]> {
    const spec = svc.Spec.EndpointSpec ?? { Mode: 'vip' as const };
    const ports: PortConfig[] = (spec.Ports ?? []).map((p) => ({ ...p }));
    const old = prev?.Endpoint.VirtualIPs ?? [];
    const nets = (svc.Spec.TaskTemplate?.Networks ?? []).map((n) => n.Target);
    // The routing mesh reaches the service through a VIP on the ingress network, listed first as in Docker.
    const ingress = needsIngress(svc.Spec) ? await this.networks.ingress?.() : undefined;
    if (ingress && !nets.includes(ingress.id)) nets.unshift(ingress.id);
    const vips: VirtualIp[] = [];
    if ((spec.Mode ?? 'vip') === 'vip') {
      for (const id of nets) {
        const keep = old.find((v) => v.NetworkID === id);
        if (keep) vips.push(keep);
        else {
          const addr = await this.networks.allocateVip?.(id, `vip:${svc.ID}`);
          if (addr) vips.push({ NetworkID: id, Addr: addr });
        }
      }
    }
    svc.Endpoint = { Spec: { Mode: spec.Mode ?? 'vip', ...(spec.Ports ? { Ports: spec.Ports } : {}) } };
    if (ports.length) svc.Endpoint.Ports = await this.publishedPorts(svc, ports, prev);
    if (vips.length) svc.Endpoint.VirtualIPs = vips;
    return old.filter((v) => !vips.some((n) => n.NetworkID === v.NetworkID && n.Addr === v.Addr));
  }

  /**
   * The service's published ports as the cluster serves them: ingress ports
   * left at 0 get one from Docker's dynamic range (kept across updates), and
   * a port another service already publishes is refused with swarmkit's words.
   */
  private async publishedPorts(svc: Service, ports: PortConfig[], prev: Service | undefined): Promise<PortConfig[]> {
    const others = (await this.services.list()).map(withVersion).filter((s) => s.ID !== svc.ID);
    const owner = new Map<string, { s: Service; mode: string }>();
    for (const s of others) {
      for (const p of s.Endpoint?.Ports ?? []) {
        if (p.PublishedPort)
          owner.set(`${p.Protocol ?? 'tcp'}/${p.PublishedPort}`, { s, mode: p.PublishMode ?? 'ingress' });
      }
    }
    for (const p of ports) {
      if (!p.PublishedPort) continue;
      const o = owner.get(`${p.Protocol ?? 'tcp'}/${p.PublishedPort}`);
      // Two host-mode services may share a port (each task holds it on its own node), as in swarmkit.
      if (!o || (o.mode === 'host' && (p.PublishMode ?? 'ingress') === 'host')) continue;
      const as = o.mode === 'host' ? 'a host-published port' : 'an ingress port';
      throw new InvalidParameter(
        `rpc error: code = InvalidArgument desc = port '${p.PublishedPort}' is already in use by service '${o.s.Spec.Name ?? o.s.ID}' (${o.s.ID}) as ${as}`,
      );
    }
    // A port some node's own containers hold (docker run -p, a host-mode task) cannot be the mesh's
    // there: refused before anything is made on any node (each node lists its holds in the store).
    const held = (await this.store.list(NODE_LOCAL))
      .filter((kv) => isHostPortsKey(kv.key))
      .flatMap((kv) => {
        try {
          return [JSON.parse(kv.value) as NodeHostPorts];
        } catch {
          return [];
        }
      });
    const had = new Set(ingressKeys(prev?.Endpoint?.Ports));
    for (const p of ports) {
      if (!p.PublishedPort || (p.PublishMode ?? 'ingress') !== 'ingress') continue;
      const proto = p.Protocol ?? 'tcp';
      if (had.has(`${proto}/${p.PublishedPort}`)) continue;
      const h = hostPortHolder(held, proto, p.PublishedPort);
      if (h) {
        throw new InvalidParameter(
          `rpc error: code = InvalidArgument desc = port '${p.PublishedPort}' is already in use on node '${h.node.Node}' (${h.node.NodeID}): ${portAllocatedMessage(h.hostIp, p.PublishedPort)}`,
        );
      }
    }
    const taken = new Set(owner.keys());
    for (const n of held) for (const x of n.Ports) if (!x.HostIp.includes(':')) taken.add(`${x.Protocol}/${x.Port}`);
    return assignPublishedPorts(ports, prev?.Endpoint?.Ports, taken);
  }

  private async releaseVips(serviceId: string, vips: VirtualIp[]): Promise<void> {
    for (const v of vips)
      await this.networks.releaseVip?.(v.NetworkID, v.Addr, `vip:${serviceId}`).catch(() => undefined);
  }
}

/** proto/port of a port list's ingress-published ports. */
function ingressKeys(ports: PortConfig[] | undefined): string[] {
  return (ports ?? [])
    .filter((p) => p.PublishedPort && (p.PublishMode ?? 'ingress') === 'ingress')
    .map((p) => `${p.Protocol ?? 'tcp'}/${p.PublishedPort}`);
}

/**
 * Whether an endpoint change needs new tasks: host-mode ports do (each task
 * holds them), and so does gaining or losing the ingress network; ingress
 * ports alone are the mesh's business (every node's rules change, the tasks
 * and their connections stay).
 */
function endpointChangesTasks(a: ServiceSpec, b: ServiceSpec): boolean {
  const norm = (s: ServiceSpec) => ({
    mode: s.EndpointSpec?.Mode ?? 'vip',
    host: (s.EndpointSpec?.Ports ?? []).filter((p) => p.PublishMode === 'host'),
    ingress: needsIngress(s),
  });
  return JSON.stringify(norm(a)) !== JSON.stringify(norm(b));
}

function matchLabel(labels: Record<string, string> | undefined, f: string): boolean {
  const [k, v] = f.split('=', 2) as [string, string | undefined];
  if (!labels || !(k in labels)) return false;
  return v === undefined || labels[k] === v;
}

function matchService(s: Service, f: Filters): boolean {
  if (f.id?.length && !f.id.some((p) => s.ID.startsWith(p))) return false;
  if (f.name?.length && !f.name.some((n) => (s.Spec.Name ?? '').startsWith(n))) return false;
  if (f.label?.length && !f.label.every((l) => matchLabel(s.Spec.Labels, l))) return false;
  if (f.mode?.length && !f.mode.includes(isReplicated(s) ? 'replicated' : 'global')) return false;
  return true;
}

/** ServiceStatus as GET /services?status=true gives it. */
export function serviceStatus(
  s: Service,
  tasks: Task[],
): { RunningTasks: number; DesiredTasks: number; CompletedTasks: number } {
  const own = tasks.filter((t) => t.ServiceID === s.ID);
  const running = own.filter((t) => t.Status.State === 'running' && t.DesiredState === 'running').length;
  const desired = isReplicated(s)
    ? replicas(s)
    : own.filter((t) => t.DesiredState === 'running' && !isTerminal(t.Status.State)).length;
  const completed = own.filter((t) => t.Status.State === 'complete').length;
  return { RunningTasks: running, DesiredTasks: desired, CompletedTasks: completed };
}

function setRegistryAuth(spec: ServiceSpec, encoded: string | undefined): void {
  const cs = spec.TaskTemplate?.ContainerSpec;
  if (!cs) return;
  if (encoded) cs.PullOptions = { RegistryAuth: encoded };
  else delete cs.PullOptions;
}

function withoutAuth<T extends { TaskTemplate?: ServiceSpec['TaskTemplate'] } | undefined>(spec: T): T {
  if (!spec?.TaskTemplate?.ContainerSpec?.PullOptions) return spec;
  const { PullOptions: _, ...cs } = spec.TaskTemplate.ContainerSpec;
  return { ...spec, TaskTemplate: { ...spec.TaskTemplate, ContainerSpec: cs } };
}

/** A service as the API shows it: without the registry credentials of --with-registry-auth. */
export function publicService(s: Service): Service {
  return { ...s, Spec: withoutAuth(s.Spec), ...(s.PreviousSpec ? { PreviousSpec: withoutAuth(s.PreviousSpec) } : {}) };
}

/** A task as the API shows it: without the registry credentials. */
export function publicTask(t: Task): Task {
  const cs = t.Spec?.ContainerSpec;
  if (!cs?.PullOptions) return t;
  const { PullOptions: _, ...rest } = cs;
  return { ...t, Spec: { ...t.Spec, ContainerSpec: rest } };
}
