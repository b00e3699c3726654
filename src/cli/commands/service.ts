/** cove service create|ls|ps|inspect|scale|logs|update|rollback|rm, with docker's flags and outputs. */
import type { Cli } from '../cli.js';
import { ApiError, CliError } from '../client.js';
import { formatEach, formatList, humanDuration, inspectJson, naturalLess } from '../format.js';
import { filtersFrom, keyValues, reportErrors } from '../util.js';
import { frameReader } from './service-logs.js';
import { healthcheckFromFlags, type HealthFlags } from '../health-flags.js';
import type { PortConfig, Service, ServiceSpec, Task, UpdateConfig } from '../../services/types.js';
import { registryAuthHeader } from '../credentials.js';
import { parseNamed } from '../../runtime/images/reference.js';
import type { MeshStatus } from '../../services/ingress.js';
import { parseDuration } from '../duration.js';

export { parseDuration };

const NS = 1_000_000_000;
const shortId = (id: string): string => id.slice(0, 12);

/** Go's Duration.String(): "5s", "1m30s", "500ms", "0s". */
export function formatDuration(ns: number): string {
  if (!ns) return '0s';
  if (ns < NS) return ns % 1e6 === 0 ? `${ns / 1e6}ms` : ns % 1e3 === 0 ? `${ns / 1e3}µs` : `${ns}ns`;
  let s = ns / NS;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const sec = Number.isInteger(s) ? String(s) : String(Number(s.toFixed(9)));
  return `${h ? `${h}h` : ''}${h || m ? `${m}m` : ''}${sec}s`;
}

/** --publish: "published=80,target=80,mode=host,protocol=udp" or "[P:]T[/proto]". */
export function parsePublish(v: string): PortConfig[] {
  if (v.includes('=')) {
    const p: PortConfig = { Protocol: 'tcp', PublishMode: 'ingress' };
    for (const kv of v.split(',')) {
      const [k, val = ''] = kv.split('=', 2) as [string, string?];
      switch (k.trim().toLowerCase()) {
        case 'target':
          p.TargetPort = portNum(val, v);
          break;
        case 'published':
          p.PublishedPort = portNum(val, v);
          break;
        case 'mode':
          if (val !== 'ingress' && val !== 'host')
            throw new CliError(
              `invalid argument "${v}" for "-p, --publish" flag: invalid publish mode value (${val}); must be either ingress or host`,
            );
          p.PublishMode = val;
          break;
        case 'protocol':
          if (!['tcp', 'udp', 'sctp'].includes(val))
            throw new CliError(`invalid argument "${v}" for "-p, --publish" flag: invalid protocol value '${val}'`);
          p.Protocol = val as 'tcp';
          break;
        default:
          throw new CliError(`invalid argument "${v}" for "-p, --publish" flag: invalid field key ${k}`);
      }
    }
    if (!p.TargetPort)
      throw new CliError(`invalid argument "${v}" for "-p, --publish" flag: missing mandatory field "target"`);
    return [p];
  }
  const m = /^(?:(\d+)(?:-(\d+))?:)?(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/.exec(v);
  if (!m) throw new CliError(`invalid argument "${v}" for "-p, --publish" flag: invalid containerPort: ${v}`);
  const proto = (m[5] ?? 'tcp') as 'tcp';
  const t0 = Number(m[3]);
  const t1 = m[4] ? Number(m[4]) : t0;
  const p0 = m[1] ? Number(m[1]) : undefined;
  const p1 = m[2] ? Number(m[2]) : p0;
  if (p0 !== undefined && p1! - p0 !== t1 - t0)
    throw new CliError(
      `invalid argument "${v}" for "-p, --publish" flag: invalid ranges specified for container and host Ports: ${m[3]}${m[4] ? '-' + m[4] : ''} and ${m[1]}${m[2] ? '-' + m[2] : ''}`,
    );
  const out: PortConfig[] = [];
  for (let i = 0; i <= t1 - t0; i++) {
    out.push({
      Protocol: proto,
      TargetPort: t0 + i,
      ...(p0 !== undefined ? { PublishedPort: p0 + i } : {}),
      PublishMode: 'ingress',
    });
  }
  return out;
}

function portNum(v: string, spec: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 0 || n > 65535)
    throw new CliError(`invalid argument "${spec}" for "-p, --publish" flag: invalid syntax`);
  return n;
}

/** --network: "name" or "name=x,alias=y,driver-opt=k=v". */
function parseNetwork(v: string): { Target: string; Aliases?: string[] } {
  if (!v.includes('=')) return { Target: v };
  const out: { Target: string; Aliases?: string[] } = { Target: '' };
  for (const kv of v.split(',')) {
    const [k, val = ''] = kv.split('=', 2) as [string, string?];
    if (k === 'name' || k === 'target') out.Target = val;
    else if (k === 'alias') (out.Aliases ??= []).push(val);
  }
  if (!out.Target) throw new CliError(`invalid argument "${v}" for "--network" flag: network name/id is not specified`);
  return out;
}

export interface ServiceOpts extends HealthFlags {
  name?: string;
  replicas?: string;
  mode?: string;
  network?: string[];
  endpointMode?: string;
  env?: string[];
  constraint?: string[];
  restartCondition?: string;
  restartDelay?: string;
  restartMaxAttempts?: string;
  restartWindow?: string;
  updateParallelism?: string;
  updateDelay?: string;
  updateOrder?: string;
  updateFailureAction?: string;
  updateMonitor?: string;
  rollbackParallelism?: string;
  rollbackDelay?: string;
  rollbackOrder?: string;
  rollbackFailureAction?: string;
  publish?: string[];
  detach?: boolean;
  quiet?: boolean;
  label?: string[];
  containerLabel?: string[];
  hostname?: string;
  workdir?: string;
  user?: string;
  entrypoint?: string;
  init?: boolean;
  stopGracePeriod?: string;
  // update only
  image?: string;
  envAdd?: string[];
  envRm?: string[];
  networkAdd?: string[];
  networkRm?: string[];
  publishAdd?: string[];
  publishRm?: string[];
  constraintAdd?: string[];
  constraintRm?: string[];
  force?: boolean;
  rollback?: boolean;
  args?: string;
  labelAdd?: string[];
  labelRm?: string[];
  withRegistryAuth?: boolean;
  resolveImage?: boolean;
}

/** The stored credentials for the image's registry, as X-Registry-Auth (docker's --with-registry-auth). */
function encodedAuthFor(image: string): string | undefined {
  try {
    return registryAuthHeader(parseNamed(image).domain);
  } catch {
    return undefined;
  }
}

/** docker's client-side warning when the image's digest could not be recorded. */
export const digestWarning = (image: string): string =>
  `image ${image} could not be accessed on a registry to record\nits digest. Each node will access ${image} independently,\npossibly leading to different nodes running different\nversions of the image.\n`;

/**
 * Pins the task template's image to the digest the registry has now
 * (`nginx:latest@sha256:...`), through the daemon's GET /distribution, as
 * the docker CLI does, so every node runs the same image; the platforms go
 * into the placement. Returns docker's warning when it cannot.
 */
async function resolveImage(cli: Cli, spec: ServiceSpec, encodedAuth: string | undefined): Promise<string | undefined> {
  const cs = spec.TaskTemplate?.ContainerSpec;
  const image = cs?.Image ?? '';
  if (!cs || !image || image.includes('@')) return undefined;
  try {
    const d = await cli.client.json<{ Descriptor: { digest: string }; Platforms?: Array<Record<string, string>> }>(
      'GET',
      `/distribution/${image}/json`,
      encodedAuth ? { headers: { 'X-Registry-Auth': encodedAuth } } : {},
    );
    cs.Image = `${image}@${d.Descriptor.digest}`;
    const platforms = (d.Platforms ?? []).map((p) => ({ Architecture: p.architecture ?? '', OS: p.os ?? '' }));
    if (platforms.length)
      spec.TaskTemplate!.Placement = { ...(spec.TaskTemplate!.Placement ?? {}), Platforms: platforms };
    return undefined;
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    return digestWarning(image);
  }
}

function intFlag(v: string, flag: string): number {
  if (!/^\d+$/.test(v))
    throw new CliError(`invalid argument "${v}" for "${flag}" flag: strconv.ParseUint: parsing "${v}": invalid syntax`);
  return Number(v);
}

function updateConfigFrom(o: ServiceOpts, prefix: 'update' | 'rollback', base: UpdateConfig): UpdateConfig {
  const get = (k: string): string | undefined => (o as Record<string, string | undefined>)[`${prefix}${k}`];
  const c = { ...base };
  if (get('Parallelism') !== undefined) c.Parallelism = intFlag(get('Parallelism')!, `--${prefix}-parallelism`);
  if (get('Delay') !== undefined) c.Delay = parseDuration(get('Delay')!, `--${prefix}-delay`);
  if (get('Monitor') !== undefined) c.Monitor = parseDuration(get('Monitor')!, `--${prefix}-monitor`);
  if (get('Order') !== undefined) {
    if (!['start-first', 'stop-first'].includes(get('Order')!))
      throw new CliError(
        `invalid argument "${get('Order')}" for "--${prefix}-order" flag: must be one of "start-first", "stop-first"`,
      );
    c.Order = get('Order') as 'start-first';
  }
  if (get('FailureAction') !== undefined) c.FailureAction = get('FailureAction') as 'pause';
  return c;
}

const DEFAULT_UPDATE: UpdateConfig = {
  Parallelism: 1,
  FailureAction: 'pause',
  Monitor: 5 * NS,
  MaxFailureRatio: 0,
  Order: 'stop-first',
};

export async function create(cli: Cli, image: string, command: string[], o: ServiceOpts): Promise<void> {
  const mode = o.mode ?? 'replicated';
  if (mode !== 'replicated' && mode !== 'global')
    throw new CliError(`invalid argument "${mode}" for "--mode" flag: invalid mode ${mode}`);
  if (mode === 'global' && o.replicas !== undefined)
    throw new CliError('replicas can only be used with replicated or replicated-job mode');
  if (o.endpointMode && !['vip', 'dnsrr'].includes(o.endpointMode))
    throw new CliError(`invalid argument "${o.endpointMode}" for "--endpoint-mode" flag: invalid endpoint mode`);
  if (o.restartCondition && !['none', 'on-failure', 'any'].includes(o.restartCondition)) {
    throw new CliError(
      `invalid argument "${o.restartCondition}" for "--restart-condition" flag: invalid restart condition value (${o.restartCondition}); must be one of "none", "on-failure", "any"`,
    );
  }
  const spec: ServiceSpec = {
    Name: o.name ?? '',
    Labels: keyValues(o.label),
    TaskTemplate: {
      ContainerSpec: {
        Image: normaliseImage(image),
        Labels: keyValues(o.containerLabel),
        ...(o.entrypoint ? { Command: o.entrypoint.split(/\s+/) } : {}),
        ...(command.length ? { Args: command } : {}),
        ...(o.hostname ? { Hostname: o.hostname } : {}),
        ...(o.env?.length ? { Env: o.env } : {}),
        ...(o.workdir ? { Dir: o.workdir } : {}),
        ...(o.user ? { User: o.user } : {}),
        Init: Boolean(o.init),
        ...(o.stopGracePeriod ? { StopGracePeriod: parseDuration(o.stopGracePeriod, '--stop-grace-period') } : {}),
        ...(healthcheckFromFlags(o) ? { Healthcheck: healthcheckFromFlags(o) } : {}),
        DNSConfig: {},
        Isolation: 'default',
      },
      Resources: { Limits: {}, Reservations: {} },
      Placement: o.constraint?.length ? { Constraints: o.constraint } : {},
      ...(o.network?.length ? { Networks: o.network.map(parseNetwork) } : {}),
      ForceUpdate: 0,
      Runtime: 'container',
    },
    Mode:
      mode === 'global'
        ? { Global: {} }
        : { Replicated: { Replicas: o.replicas === undefined ? 1 : intFlag(o.replicas, '--replicas') } },
    UpdateConfig: updateConfigFrom(o, 'update', DEFAULT_UPDATE),
    RollbackConfig: updateConfigFrom(o, 'rollback', DEFAULT_UPDATE),
    EndpointSpec: {
      Mode: (o.endpointMode ?? 'vip') as 'vip',
      ...(o.publish?.length ? { Ports: o.publish.flatMap(parsePublish) } : {}),
    },
  };
  const rp: Record<string, unknown> = {};
  if (o.restartCondition) rp.Condition = o.restartCondition;
  if (o.restartDelay) rp.Delay = parseDuration(o.restartDelay, '--restart-delay');
  if (o.restartMaxAttempts) rp.MaxAttempts = intFlag(o.restartMaxAttempts, '--restart-max-attempts');
  if (o.restartWindow) rp.Window = parseDuration(o.restartWindow, '--restart-window');
  if (Object.keys(rp).length) spec.TaskTemplate!.RestartPolicy = rp;
  const auth = o.withRegistryAuth ? encodedAuthFor(image) : undefined;
  const warnings: string[] = [];
  if (o.resolveImage !== false) {
    const w = await resolveImage(cli, spec, auth);
    if (w) warnings.push(w);
  }
  const res = await cli.client.json<{ ID: string; Warnings?: string[] | null }>('POST', '/services/create', {
    body: spec,
    ...(auth ? { headers: { 'X-Registry-Auth': auth } } : {}),
  });
  for (const w of [...warnings, ...(res.Warnings ?? [])]) cli.err(w + '\n');
  cli.out(res.ID + '\n');
  if (!o.detach && !o.quiet) await waitConverged(cli, res.ID, res.ID);
}

async function getService(cli: Cli, ref: string): Promise<Service> {
  return cli.client.get<Service>(`/services/${encodeURIComponent(ref)}`);
}

interface NodeInfo {
  ID: string;
  Description?: { Hostname?: string };
  Status?: { State?: string };
}

async function nodeNames(cli: Cli): Promise<Map<string, NodeInfo>> {
  try {
    const nodes = await cli.client.get<NodeInfo[]>('/nodes');
    return new Map(nodes.map((n) => [n.ID, n]));
  } catch {
    return new Map();
  }
}

const TERMINAL = new Set(['complete', 'shutdown', 'failed', 'rejected', 'remove', 'orphaned']);
const NUMBERED = [
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
];
const rank = (s: string): number => NUMBERED.indexOf(s) + 1;

/**
 * docker's --detach=false progress: polls the service and its up-to-date
 * tasks every 200 ms, prints the overall progress and, once every slot runs,
 * waits the monitor period to verify the tasks are stable. Printed as the
 * docker CLI prints it when the output is not a terminal.
 */
export async function waitConverged(cli: Cli, ref: string, label: string): Promise<void> {
  let convergedAt = 0;
  let initialized = false;
  let done = false;
  let rollback = false;
  let message: string | undefined;
  for (;;) {
    const svc = await getService(cli, ref);
    const monitorMs = (svc.Spec.UpdateConfig?.Monitor || 5 * NS) / 1e6;
    const st = svc.UpdateStatus;
    if (st) {
      if (st.State === 'updating') rollback = false;
      else if (st.State === 'completed' && !convergedAt) return;
      else if (st.State === 'paused') throw new CliError(`service update paused: ${st.Message}`);
      else if (st.State === 'rollback_started') {
        if (!rollback && st.Message) cli.out(`rollback: ${st.Message}\n`);
        rollback = true;
      } else if (st.State === 'rollback_paused') throw new CliError(`service rollback paused: ${st.Message}`);
      else if (st.State === 'rollback_completed') {
        if (!convergedAt) message = `rollback: ${st.Message}`;
        rollback = true;
      }
    }
    if (convergedAt && Date.now() - convergedAt >= monitorMs) {
      cli.out(`verify: Service ${label} converged\n`);
      if (message) cli.out(message + '\n');
      return;
    }
    const tasks = await cli.client.get<Task[]>('/tasks', {
      filters: JSON.stringify({ service: [svc.ID], '_up-to-date': ['true'] }),
    });
    const nodes = await nodeNames(cli);
    const active = (id: string): boolean =>
      nodes.size === 0 || (nodes.has(id) && nodes.get(id)!.Status?.State !== 'down');
    const overall = (n: number, d: number): string =>
      rollback
        ? `overall progress: rolling back update: ${n} out of ${d} tasks\n`
        : `overall progress: ${n} out of ${d} tasks\n`;
    // Per slot (or node), the task with the lowest desired state, then lowest observed state.
    const bySlot = new Map<string, Task>();
    for (const t of tasks) {
      if (!rank(t.DesiredState) || !rank(t.Status.State)) continue;
      const key = svc.Spec.Mode?.Global ? t.NodeID : String(t.Slot);
      const ex = bySlot.get(key);
      if (
        ex &&
        (rank(ex.DesiredState) < rank(t.DesiredState) ||
          (rank(ex.DesiredState) === rank(t.DesiredState) && rank(ex.Status.State) <= rank(t.Status.State)))
      )
        continue;
      if (t.NodeID && !active(t.NodeID)) continue;
      bySlot.set(key, t);
    }
    const want = svc.Spec.Mode?.Global ? bySlot.size : (svc.Spec.Mode?.Replicated?.Replicas ?? 1);
    if (!initialized && (want > 0 || !svc.Spec.Mode?.Global)) {
      cli.out(overall(0, want));
      if (!svc.Spec.Mode?.Global && want <= 20) for (let i = 1; i <= want; i++) cli.out(`${i}/${want}:  \n`);
      initialized = true;
    } else if (!initialized) {
      cli.out('overall progress: waiting for new tasks\n');
    }
    if (done) for (const t of bySlot.values()) if (t.Status.State !== 'running') done = false;
    let running = 0;
    for (const t of bySlot.values()) if (!TERMINAL.has(t.DesiredState) && t.Status.State === 'running') running++;
    if (!done && initialized) {
      cli.out(overall(running, want));
      if (running === want) done = true;
    }
    const converged = initialized && running === want;
    if (converged) {
      if (!convergedAt) convergedAt = Date.now();
      const wait = monitorMs - (Date.now() - convergedAt);
      if (wait >= 0)
        cli.out(`verify: Waiting ${Math.floor(wait / 1000) + 1} seconds to verify that tasks are stable...\n`);
    } else {
      if (convergedAt) cli.out('verify: Detected task failure\n');
      convergedAt = 0;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

function portsColumn(s: Service): string {
  const ports = s.Endpoint?.Ports ?? s.Spec.EndpointSpec?.Ports ?? [];
  return ports
    .filter((p) => p.PublishedPort)
    .map((p) => `*:${p.PublishedPort}->${p.TargetPort}/${p.Protocol ?? 'tcp'}`)
    .join(', ');
}

/** The docker CLI's normalised reference: a name without tag or digest gets ":latest". */
export function normaliseImage(ref: string): string {
  if (ref.includes('@')) return ref;
  const lastPart = ref.slice(ref.lastIndexOf('/') + 1);
  return lastPart.includes(':') ? ref : `${ref}:latest`;
}

const imageOf = (ref: string | undefined): string => (ref ?? '').replace(/@sha256:[0-9a-f]+$/, '');

export async function ls(cli: Cli, o: { quiet?: boolean; format?: string; filter?: string[] }): Promise<void> {
  const services = await cli.client.get<Service[]>('/services', {
    filters: JSON.stringify(filtersFrom(o.filter)),
    status: 'true',
  });
  services.sort((a, b) => naturalLess(a.Spec.Name ?? '', b.Spec.Name ?? ''));
  const rows = services.map((s) => ({
    ID: shortId(s.ID),
    Name: s.Spec.Name ?? '',
    Mode: s.Spec.Mode?.Global ? 'global' : 'replicated',
    Replicas: `${s.ServiceStatus?.RunningTasks ?? 0}/${s.ServiceStatus?.DesiredTasks ?? 0}`,
    Image: imageOf(s.Spec.TaskTemplate?.ContainerSpec?.Image),
    Ports: portsColumn(s),
  }));
  cli.out(
    formatList(
      rows,
      o.format,
      {
        headers: { ID: 'ID', Name: 'NAME', Mode: 'MODE', Replicas: 'REPLICAS', Image: 'IMAGE', Ports: 'PORTS' },
        defaultTable: 'table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}',
        quietField: 'ID',
      },
      Boolean(o.quiet),
    ),
  );
}

const cap = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

export async function ps(
  cli: Cli,
  refs: string[],
  o: { quiet?: boolean; format?: string; filter?: string[]; trunc?: boolean; resolve?: boolean },
): Promise<void> {
  const noTrunc = o.trunc === false;
  const noResolve = o.resolve === false;
  const filters = filtersFrom(o.filter);
  const svcs: Service[] = [];
  const errors: string[] = [];
  for (const r of refs) {
    try {
      svcs.push(await getService(cli, r));
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      errors.push(e.status === 404 ? `no such service: ${r}` : e.display);
    }
  }
  if (errors.length && !svcs.length) throw new CliError(errors.join('\n'));
  const tasks = await cli.client.get<Task[]>('/tasks', {
    filters: JSON.stringify({ ...filters, service: svcs.map((s) => s.ID) }),
  });
  const nodes = noResolve ? new Map<string, NodeInfo>() : await nodeNames(cli);
  const nameOf = new Map(svcs.map((s) => [s.ID, s.Spec.Name ?? s.ID]));
  const slotName = (t: Task): string =>
    `${noResolve ? t.ServiceID : nameOf.get(t.ServiceID)}.${t.Slot > 0 ? t.Slot : t.NodeID}`;
  tasks.sort(
    (a, b) =>
      slotName(a).localeCompare(slotName(b), undefined, { numeric: true }) || (a.CreatedAt < b.CreatedAt ? 1 : -1),
  );
  let prev = '';
  const now = Date.now();
  const rows = tasks.map((t) => {
    const name = slotName(t);
    const shown = name === prev ? ` \\_ ${name}` : name;
    prev = name;
    const err = t.Status.Err ?? '';
    const errShown = !err ? '' : noTrunc ? `"${err}"` : `"${err.length > 30 ? err.slice(0, 29) + '…' : err}"`;
    return {
      ID: noTrunc ? t.ID : shortId(t.ID),
      Name: shown,
      Image: noTrunc ? (t.Spec.ContainerSpec?.Image ?? '') : imageOf(t.Spec.ContainerSpec?.Image),
      Node: noResolve ? t.NodeID : (nodes.get(t.NodeID)?.Description?.Hostname ?? t.NodeID),
      DesiredState: cap(t.DesiredState),
      CurrentState: `${cap(t.Status.State)} ${humanDuration(now - Date.parse(t.Status.Timestamp))
        .replace(/^About/, 'about')
        .replace(/^Less/, 'less')} ago`,
      Error: errShown,
      Ports: (t.Status.PortStatus?.Ports ?? [])
        .map((p) => `*:${p.PublishedPort}->${p.TargetPort}/${p.Protocol}`)
        .join(','),
    };
  });
  cli.out(
    formatList(
      rows,
      o.format,
      {
        headers: {
          ID: 'ID',
          Name: 'NAME',
          Image: 'IMAGE',
          Node: 'NODE',
          DesiredState: 'DESIRED STATE',
          CurrentState: 'CURRENT STATE',
          Error: 'ERROR',
          Ports: 'PORTS',
        },
        defaultTable:
          'table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}\t{{.Ports}}',
        quietField: 'ID',
      },
      Boolean(o.quiet),
    ),
  );
  reportErrors(cli, errors);
}

export async function inspect(cli: Cli, refs: string[], o: { format?: string; pretty?: boolean }): Promise<void> {
  const found: Service[] = [];
  const errors: string[] = [];
  for (const r of refs) {
    try {
      found.push(await getService(cli, r));
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      errors.push(e.status === 404 ? `no such service: ${r}` : e.display);
    }
  }
  if (o.pretty) {
    for (const s of found) cli.out(await pretty(cli, s));
  } else if (o.format) {
    if (found.length) cli.out(formatEach(found, o.format));
  } else {
    cli.out(inspectJson(found));
  }
  if (errors.length) {
    cli.err(`Error: ${errors.join('\n')}\n`);
    cli.exitCode = 1;
  }
}

function updateBlock(title: string, c: UpdateConfig | undefined, orderWord: string): string {
  if (!c) return '';
  let s = `${title}:\n Parallelism:\t${c.Parallelism ?? 0}\n`;
  if (c.Delay) s += ` Delay:\t\t${formatDuration(c.Delay)}\n`;
  s += ` On failure:\t${c.FailureAction ?? 'pause'}\n`;
  s += ` Monitor Period: ${formatDuration(c.Monitor ?? 0)}\n`;
  s += ` Max failure ratio: ${c.MaxFailureRatio ?? 0}\n`;
  s += ` ${orderWord} order:${orderWord === 'Update' ? '      ' : '    '}${c.Order ?? 'stop-first'}\n`;
  return s;
}

/** docker service inspect --pretty, as the docker CLI renders it. */
async function pretty(cli: Cli, s: Service): Promise<string> {
  const spec = s.Spec;
  const cs = spec.TaskTemplate?.ContainerSpec ?? {};
  let out = `\nID:\t\t${s.ID}\nName:\t\t${spec.Name}\n`;
  if (spec.Labels && Object.keys(spec.Labels).length) {
    out +=
      'Labels:\n' +
      Object.entries(spec.Labels)
        .map(([k, v]) => ` ${k}=${v}\n`)
        .join('');
  }
  out += spec.Mode?.Global
    ? 'Service Mode:\tGlobal\n'
    : `Service Mode:\tReplicated\n Replicas:\t${spec.Mode?.Replicated?.Replicas ?? 1}\n`;
  if (s.UpdateStatus) {
    out += `UpdateStatus:\n State:\t\t${s.UpdateStatus.State}\n`;
    if (s.UpdateStatus.StartedAt)
      out += ` Started:\t${humanDuration(Date.now() - Date.parse(s.UpdateStatus.StartedAt))} ago\n`;
    if (s.UpdateStatus.CompletedAt)
      out += ` Completed:\t${humanDuration(Date.now() - Date.parse(s.UpdateStatus.CompletedAt))} ago\n`;
    out += ` Message:\t${s.UpdateStatus.Message}\n`;
  }
  out += 'Placement:\n';
  const cons = spec.TaskTemplate?.Placement?.Constraints ?? [];
  if (cons.length) out += ` Constraints:\t[${cons.join(' ')}]\n`;
  out += updateBlock('UpdateConfig', spec.UpdateConfig, 'Update');
  out += updateBlock('RollbackConfig', spec.RollbackConfig, 'Rollback');
  out += `ContainerSpec:\n Image:\t\t${cs.Image}\n`;
  if (cs.Args?.length) out += ` Args:\t\t${cs.Args.join(' ')} \n`;
  if (cs.Env?.length) out += ` Env:\t\t${cs.Env.join(' ')}\n`;
  out += ` Init:\t\t${Boolean(cs.Init)}\n`;
  out += 'Resources:\n';
  const nets = spec.TaskTemplate?.Networks ?? [];
  if (nets.length) {
    const names: string[] = [];
    for (const n of nets) {
      try {
        names.push((await cli.client.get<{ Name: string }>(`/networks/${encodeURIComponent(n.Target)}`)).Name);
      } catch {
        names.push(n.Target);
      }
    }
    out += `Networks: ${names.map((n) => n + ' ').join('')}\n`;
  }
  out += `Endpoint Mode:\t${spec.EndpointSpec?.Mode ?? 'vip'}\n`;
  const ports = s.Endpoint?.Ports ?? [];
  if (ports.length) {
    out += 'Ports:\n';
    for (const p of ports) {
      out += ` PublishedPort = ${p.PublishedPort ?? 0}\n  Protocol = ${p.Protocol ?? 'tcp'}\n  TargetPort = ${p.TargetPort}\n  PublishMode = ${p.PublishMode ?? 'ingress'} \n`;
    }
  }
  return out + '\n';
}

async function postUpdate(cli: Cli, svc: Service, spec: ServiceSpec, rollback = false, auth?: string): Promise<void> {
  const res = await cli.client.json<{ Warnings?: string[] | null }>('POST', `/services/${svc.ID}/update`, {
    body: spec,
    query: { version: String(svc.Version.Index), ...(rollback ? { rollback: 'previous' } : {}) },
    ...(auth ? { headers: { 'X-Registry-Auth': auth } } : {}),
  });
  for (const w of res?.Warnings ?? []) cli.err(w + '\n');
}

export async function scale(cli: Cli, pairs: string[], o: { detach?: boolean }): Promise<void> {
  const errors: string[] = [];
  const done: string[] = [];
  for (const pair of pairs) {
    const m = /^([^=]+)=(.*)$/.exec(pair);
    if (!m)
      throw new CliError(
        `Invalid scale specifier '${pair}'.\nSee 'cove service scale --help'.\n\nUsage:  cove service scale SERVICE=REPLICAS [SERVICE=REPLICAS...]\n\nScale one or multiple replicated services`,
      );
    const [, name, n] = m as unknown as [string, string, string];
    if (!/^\d+$/.test(n)) {
      errors.push(`${name}: invalid replicas value ${n}: strconv.ParseUint: parsing "${n}": invalid syntax`);
      continue;
    }
    try {
      const svc = await getService(cli, name);
      if (svc.Spec.Mode?.Global) {
        errors.push(`${name}: scale can only be used with replicated or replicated-job mode`);
        continue;
      }
      await postUpdate(cli, svc, { ...svc.Spec, Mode: { Replicated: { Replicas: Number(n) } } });
      cli.out(`${name} scaled to ${n}\n`);
      done.push(name);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      errors.push(`${name}: ${e.display}`);
    }
  }
  if (!o.detach) for (const name of done) await waitConverged(cli, name, name);
  reportErrors(cli, errors);
}

export async function update(cli: Cli, ref: string, o: ServiceOpts): Promise<void> {
  const svc = await getService(cli, ref);
  if (o.rollback) return rollback(cli, ref, { detach: o.detach, quiet: o.quiet });
  const spec = JSON.parse(JSON.stringify(svc.Spec)) as ServiceSpec;
  const tt = (spec.TaskTemplate ??= {});
  const cs = (tt.ContainerSpec ??= {});
  if (o.replicas !== undefined) {
    if (spec.Mode?.Global) throw new CliError('replicas can only be used with replicated or replicated-job mode');
    spec.Mode = { Replicated: { Replicas: intFlag(o.replicas, '--replicas') } };
  }
  if (o.image) cs.Image = normaliseImage(o.image);
  if (o.args !== undefined) cs.Args = o.args.split(/\s+/).filter(Boolean);
  if (o.envRm?.length) cs.Env = (cs.Env ?? []).filter((e) => !o.envRm!.includes(e.split('=')[0]!));
  if (o.envAdd?.length) {
    const keys = new Set(o.envAdd.map((e) => e.split('=')[0]));
    cs.Env = [...(cs.Env ?? []).filter((e) => !keys.has(e.split('=')[0])), ...o.envAdd];
  }
  if (o.labelRm?.length) for (const k of o.labelRm) delete spec.Labels?.[k];
  if (o.labelAdd?.length) spec.Labels = { ...(spec.Labels ?? {}), ...keyValues(o.labelAdd) };
  if (o.constraintRm?.length || o.constraintAdd?.length) {
    const cons = (tt.Placement?.Constraints ?? []).filter((c) => !(o.constraintRm ?? []).includes(c));
    tt.Placement = { ...(tt.Placement ?? {}), Constraints: [...cons, ...(o.constraintAdd ?? [])] };
  }
  if (o.networkRm?.length || o.networkAdd?.length) {
    let nets = tt.Networks ?? [];
    if (o.networkRm?.length) {
      const ids = new Set<string>();
      for (const r of o.networkRm) {
        ids.add(r);
        try {
          ids.add((await cli.client.get<{ Id: string }>(`/networks/${encodeURIComponent(r)}`)).Id);
        } catch {
          /* by ID only */
        }
      }
      nets = nets.filter((n) => !ids.has(n.Target));
    }
    for (const a of o.networkAdd ?? []) {
      const n = parseNetwork(a);
      try {
        n.Target = (await cli.client.get<{ Id: string }>(`/networks/${encodeURIComponent(n.Target)}`)).Id;
      } catch {
        /* the daemon names it */
      }
      if (nets.some((x) => x.Target === n.Target)) throw new CliError(`service is already attached to network ${a}`);
      nets.push(n);
    }
    tt.Networks = nets;
  }
  if (o.publishRm?.length || o.publishAdd?.length) {
    const ep = (spec.EndpointSpec ??= { Mode: 'vip' });
    let ports = ep.Ports ?? [];
    for (const r of o.publishRm ?? []) {
      // As docker's CLI (28, seen on the wire): by target port, protocol and publish mode, whatever published port is
      // named: `--publish-rm 8000` and `--publish-rm 8080:8000` both drop 8080:8000 and 8081:8000.
      const want =
        r.includes('=') || r.includes(':')
          ? parsePublish(r)
          : [{ TargetPort: Number(r.split('/')[0]), Protocol: (r.split('/')[1] ?? 'tcp') as 'tcp' }];
      ports = ports.filter(
        (p) =>
          !want.some(
            (w) =>
              w.TargetPort === p.TargetPort &&
              (w.Protocol ?? 'tcp') === (p.Protocol ?? 'tcp') &&
              ((w as { PublishMode?: string }).PublishMode ?? 'ingress') === (p.PublishMode ?? 'ingress'),
          ),
      );
    }
    for (const a of o.publishAdd ?? []) ports.push(...parsePublish(a));
    // (docker's CLI leaves Ports out when none is left)
    if (ports.length) ep.Ports = ports;
    else delete ep.Ports;
  }
  if (o.endpointMode) spec.EndpointSpec = { ...(spec.EndpointSpec ?? {}), Mode: o.endpointMode as 'vip' };
  if (o.restartCondition) tt.RestartPolicy = { ...(tt.RestartPolicy ?? {}), Condition: o.restartCondition as 'any' };
  if (o.restartDelay)
    tt.RestartPolicy = { ...(tt.RestartPolicy ?? {}), Delay: parseDuration(o.restartDelay, '--restart-delay') };
  if (o.restartMaxAttempts)
    tt.RestartPolicy = {
      ...(tt.RestartPolicy ?? {}),
      MaxAttempts: intFlag(o.restartMaxAttempts, '--restart-max-attempts'),
    };
  if (o.restartWindow)
    tt.RestartPolicy = { ...(tt.RestartPolicy ?? {}), Window: parseDuration(o.restartWindow, '--restart-window') };
  const health = healthcheckFromFlags(o);
  if (health) {
    const cs = (tt.ContainerSpec ??= {}) as Record<string, unknown>;
    // Flags given on update change only those fields (docker's updateHealthcheck); --no-healthcheck replaces all.
    cs.Healthcheck = o.noHealthcheck ? health : { ...((cs.Healthcheck as object | undefined) ?? {}), ...health };
  }
  spec.UpdateConfig = updateConfigFrom(o, 'update', spec.UpdateConfig ?? DEFAULT_UPDATE);
  spec.RollbackConfig = updateConfigFrom(o, 'rollback', spec.RollbackConfig ?? DEFAULT_UPDATE);
  if (o.force) tt.ForceUpdate = (tt.ForceUpdate ?? 0) + 1;
  const auth = o.withRegistryAuth ? encodedAuthFor(cs.Image ?? '') : undefined;
  // As the docker CLI: a changed --image is pinned to its digest again.
  if (o.image && o.resolveImage !== false) {
    const w = await resolveImage(cli, spec, auth);
    if (w) cli.err(w + '\n');
  }
  await postUpdate(cli, svc, spec, false, auth);
  cli.out(ref + '\n');
  if (!o.detach && !o.quiet) await waitConverged(cli, svc.ID, ref);
}

export async function rollback(cli: Cli, ref: string, o: { detach?: boolean; quiet?: boolean }): Promise<void> {
  const svc = await getService(cli, ref);
  await postUpdate(cli, svc, svc.Spec, true);
  cli.out(ref + '\n');
  if (!o.detach && !o.quiet) await waitConverged(cli, svc.ID, ref);
}

export async function rm(cli: Cli, refs: string[]): Promise<void> {
  const errors: string[] = [];
  for (const r of refs) {
    try {
      await cli.client.json('DELETE', `/services/${encodeURIComponent(r)}`);
      cli.out(r + '\n');
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      errors.push(e.display);
    }
  }
  reportErrors(cli, errors);
}

export async function logs(
  cli: Cli,
  ref: string,
  o: {
    follow?: boolean;
    tail?: string;
    timestamps?: boolean;
    taskIds?: boolean;
    trunc?: boolean;
    since?: string;
    raw?: boolean;
  },
): Promise<void> {
  let svc: Service | undefined;
  let task: Task | undefined;
  try {
    svc = await getService(cli, ref);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
    task = await cli.client.get<Task>(`/tasks/${encodeURIComponent(ref)}`);
  }
  const path = svc ? `/services/${svc.ID}/logs` : `/tasks/${task!.ID}/logs`;
  const query: Record<string, string> = {
    stdout: '1',
    stderr: '1',
    details: '1',
    follow: o.follow ? '1' : '0',
    tail: o.tail ?? 'all',
    timestamps: o.timestamps ? '1' : '0',
  };
  if (o.since) query.since = o.since;
  const res = await cli.client.raw('GET', path, { query });
  const nodes = await nodeNames(cli);
  const svcName = svc?.Spec.Name ?? task?.ServiceAnnotations?.Name ?? '';
  const tasks = new Map<string, Task>();
  await frameReader(res, async (stream, line) => {
    const m =
      /^((?:\S+ )?)(com\.docker\.swarm\.node\.id=(\S*),com\.docker\.swarm\.service\.id=(\S*),com\.docker\.swarm\.task\.id=(\S*)) (.*)$/s.exec(
        line,
      );
    if (!m || o.raw) {
      (stream === 2 ? cli.err : cli.out)(line);
      return;
    }
    const [, ts, , nodeId, , taskId, msg] = m as unknown as string[];
    let t = tasks.get(taskId!);
    if (!t) {
      t = await cli.client.get<Task>(`/tasks/${taskId}`).catch(() => undefined);
      if (t) tasks.set(taskId!, t);
    }
    const slot = t ? (t.Slot > 0 ? String(t.Slot) : t.NodeID) : '?';
    const tid = o.taskIds === false ? '' : `.${o.trunc === false ? taskId : shortId(taskId!)}`;
    const node = nodes.get(nodeId!)?.Description?.Hostname ?? nodeId;
    (stream === 2 ? cli.err : cli.out)(`${ts}${svcName}.${slot}${tid}@${node}    | ${msg}`);
  });
}

/**
 * cove service ports SERVICE: the ingress mesh on THIS node (the daemon the
 * CLI talks to), read back from its kernel: whether it holds each published
 * port, whether the host's DNAT and the ingress sandbox's rule are there, and
 * each task behind it (its node, in the kernel's map, answering a ping over
 * the ingress network from the ingress sandbox).
 */
export async function ports(cli: Cli, ref: string, o: { format?: string }): Promise<void> {
  const st = await cli.client.get<MeshStatus>(`/services/${encodeURIComponent(ref)}/ingress`);
  if (o.format) {
    cli.out(formatEach([st], o.format));
    return;
  }
  const sb = st.Sandbox;
  let out = `Node:\t${st.Node} (${st.NodeID})\nService:\t${st.ServiceName} (${st.ServiceID})\n`;
  out += sb
    ? `Ingress sandbox:\t${sb.IngressAddress} on ingress, ${sb.GatewayAddress} on docker_gwbridge\n`
    : 'Ingress sandbox:\tnone\n';
  const rows = st.Ports.map((p) => ({
    Port: `${p.PublishedPort}/${p.Protocol}`,
    Target: String(p.TargetPort),
    Held: p.Held ? 'yes' : `no${p.Conflict ? ` (${p.Conflict})` : ''}`,
    Rule:
      p.HostRule && p.SandboxRule ? 'present' : p.HostRule ? 'host only' : p.SandboxRule ? 'sandbox only' : 'missing',
    Backends: p.Backends.length
      ? p.Backends.map(
          (b) => `${b.Address}@${b.Node}${b.InKernel ? '' : ' (not in rule)'}${b.Reachable ? '' : ' (unreachable)'}`,
        ).join(', ')
      : 'none (no running task)',
  }));
  out += formatList(
    rows,
    undefined,
    {
      headers: { Port: 'PUBLISHED', Target: 'TARGET', Held: 'HELD', Rule: 'RULE', Backends: 'BACKENDS' },
      defaultTable: 'table {{.Port}}\t{{.Target}}\t{{.Held}}\t{{.Rule}}\t{{.Backends}}',
      quietField: 'Port',
    },
    false,
  );
  cli.out(out);
}
