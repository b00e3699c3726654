/** cove run | create | start | exec | attach: the commands that carry stdio. */
import type { Cli } from '../cli.js';
import { ApiError, CliError } from '../client.js';
import { resourceFields, type ResourceFlags } from './resource-flags.js';
import { eachName, keyValues } from '../util.js';
import { pipeSession } from '../stdio.js';
import { healthcheckFromFlags, type HealthFlags } from '../health-flags.js';

export interface CreateOpts extends HealthFlags, ResourceFlags {
  detach?: boolean;
  interactive?: boolean;
  tty?: boolean;
  rm?: boolean;
  name?: string;
  hostname?: string;
  domainname?: string;
  env?: string[];
  network?: string[];
  networkAlias?: string[];
  ip?: string;
  ip6?: string;
  macAddress?: string;
  link?: string[];
  linkLocalIp?: string[];
  publish?: string[];
  publishAll?: boolean;
  expose?: string[];
  dns?: string[];
  dnsSearch?: string[];
  dnsOption?: string[];
  addHost?: string[];
  entrypoint?: string;
  workdir?: string;
  user?: string;
  label?: string[];
  privileged?: boolean;
  capAdd?: string[];
  capDrop?: string[];
  sysctl?: string[];
  restart?: string;
  stopSignal?: string;
  stopTimeout?: string;
  detachKeys?: string;
  attach?: string[];
  init?: boolean;
  pull?: string;
  quiet?: boolean;
  sigProxy?: boolean;
  volume?: string[];
  mount?: string[];
  tmpfs?: string[];
  volumesFrom?: string[];
  groupAdd?: string[];
  runtime?: string;
  deviceCgroupRule?: string[];
  logDriver?: string;
  logOpt?: string[];
}

/** --log-opt key=value pairs (docker: 'invalid key value pair format in logging opts'). */
function logOpts(list: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list ?? []) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new CliError(`invalid key value pair format in logging opts: ${kv}`);
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

/** docker's RAMInBytes: 64m, 1g, 512k, 100 (bytes). */
function ramBytes(v: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?$/i.exec(v.trim());
  if (!m) throw new CliError(`invalid argument "${v}" for "${flag}" flag: invalid size: '${v}'`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 }[m[2]!.toLowerCase()]!;
  return Math.floor(Number(m[1]) * mult);
}

const boolValue = (v: string | undefined): boolean => v === undefined || v === '' || /^(1|true|t|yes)$/i.test(v);

/** One --mount value (docker's opts.MountOpt): csv of key=value, type defaulting to volume. */
export function parseMountFlag(spec: string): Record<string, unknown> {
  const flag = '--mount';
  const m: Record<string, unknown> = { Type: 'volume' };
  const vo: Record<string, unknown> = {};
  const bo: Record<string, unknown> = {};
  const to: Record<string, unknown> = {};
  for (const field of spec.split(',')) {
    if (!field) continue;
    const eq = field.indexOf('=');
    const k = (eq < 0 ? field : field.slice(0, eq)).trim().toLowerCase();
    const v = eq < 0 ? undefined : field.slice(eq + 1);
    const need = (): string => {
      if (v === undefined)
        throw new CliError(
          `invalid argument "${spec}" for "${flag}" flag: invalid field '${field}' must be a key=value pair`,
        );
      return v;
    };
    switch (k) {
      case 'type':
        m.Type = need();
        break;
      case 'source':
      case 'src':
        m.Source = need();
        break;
      case 'target':
      case 'dst':
      case 'destination':
        m.Target = need();
        break;
      case 'readonly':
      case 'ro':
        m.ReadOnly = boolValue(v);
        break;
      case 'consistency':
        m.Consistency = need();
        break;
      case 'bind-propagation':
        bo.Propagation = need();
        break;
      case 'bind-nonrecursive':
        bo.NonRecursive = boolValue(v);
        break;
      case 'bind-create-mountpoint':
        bo.CreateMountpoint = boolValue(v);
        break;
      case 'volume-nocopy':
        vo.NoCopy = boolValue(v);
        break;
      case 'volume-subpath':
        vo.Subpath = need();
        break;
      case 'volume-label': {
        const [lk, lv = ''] = need().split(/=(.*)/s);
        vo.Labels = { ...((vo.Labels as object) ?? {}), [lk!]: lv };
        break;
      }
      case 'volume-driver':
        vo.DriverConfig = { ...((vo.DriverConfig as object) ?? {}), Name: need() };
        break;
      case 'volume-opt': {
        const [ok, ov = ''] = need().split(/=(.*)/s);
        const dc = (vo.DriverConfig ?? {}) as { Options?: Record<string, string> };
        vo.DriverConfig = { ...dc, Options: { ...(dc.Options ?? {}), [ok!]: ov } };
        break;
      }
      case 'tmpfs-size':
        to.SizeBytes = ramBytes(need(), flag);
        break;
      case 'tmpfs-mode': {
        const mode = Number.parseInt(need(), 8);
        if (Number.isNaN(mode))
          throw new CliError(`invalid argument "${spec}" for "${flag}" flag: invalid value for ${k}: ${v}`);
        to.Mode = mode;
        break;
      }
      default:
        throw new CliError(`invalid argument "${spec}" for "${flag}" flag: unexpected key '${k}' in '${field}'`);
    }
  }
  if (!m.Target) throw new CliError(`invalid argument "${spec}" for "${flag}" flag: target is required`);
  if (Object.keys(bo).length) m.BindOptions = bo;
  if (Object.keys(vo).length) m.VolumeOptions = vo;
  if (Object.keys(to).length) m.TmpfsOptions = to;
  return m;
}

/** -v: `/ctr` alone is an anonymous volume (Config.Volumes), anything with a colon a bind (HostConfig.Binds). */
export function splitVolumes(list: string[] | undefined): { volumes: Record<string, object>; binds: string[] } {
  const volumes: Record<string, object> = {};
  const binds: string[] = [];
  for (const v of list ?? []) {
    if (v.includes(':')) binds.push(v);
    else volumes[v] = {};
  }
  return { volumes, binds };
}

type PortMap = Record<string, Array<{ HostIp: string; HostPort: string }>>;

function range(spec: string, what: string): [number, number] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(spec);
  if (!m) throw new CliError(`invalid ${what}: ${spec}`);
  const a = Number(m[1]);
  const b = m[2] ? Number(m[2]) : a;
  if (a < 0 || b > 65535 || b < a) throw new CliError(`invalid ${what}: ${spec}`);
  return [a, b];
}

/** docker's -p syntaxes: [ip:][hostPort:]containerPort[/proto] (ranges too) and target=,published=,protocol=,host_ip= */
export function parsePublish(specs: string[]): { exposed: Record<string, object>; bindings: PortMap } {
  const exposed: Record<string, object> = {};
  const bindings: PortMap = {};
  for (const spec of specs) {
    let ip = '';
    let host = '';
    let ctr: string;
    let proto = 'tcp';
    if (spec.includes('=')) {
      const kv = keyValues(spec.split(','));
      if (!kv.target)
        throw new CliError(`invalid argument "${spec}" for "-p, --publish" flag: missing mandatory field 'target'`);
      ctr = kv.target;
      host = kv.published ?? '';
      proto = kv.protocol ?? 'tcp';
      ip = kv.host_ip ?? '';
    } else {
      let rest = spec;
      const slash = rest.lastIndexOf('/');
      if (slash >= 0) {
        proto = rest.slice(slash + 1);
        rest = rest.slice(0, slash);
      }
      const v6 = /^\[([^\]]+)\]:(.*)$/.exec(rest);
      if (v6) {
        ip = v6[1]!;
        rest = v6[2]!;
        const parts = rest.split(':');
        host = parts.length > 1 ? parts[0]! : '';
        ctr = parts[parts.length - 1]!;
      } else {
        const parts = rest.split(':');
        if (parts.length === 1) ctr = parts[0]!;
        else if (parts.length === 2) {
          host = parts[0]!;
          ctr = parts[1]!;
        } else if (parts.length === 3) {
          ip = parts[0]!;
          host = parts[1]!;
          ctr = parts[2]!;
        } else throw new CliError(`invalid argument "${spec}" for "-p, --publish" flag: invalid proto: ${spec}`);
      }
    }
    if (!['tcp', 'udp', 'sctp'].includes(proto))
      throw new CliError(`invalid argument "${spec}" for "-p, --publish" flag: invalid proto: ${proto}`);
    const [c0, c1] = range(ctr, 'containerPort');
    const [h0, h1] = host ? range(host, 'hostPort') : [0, 0];
    const hostRange = host !== '' && h1 - h0 === c1 - c0;
    // Docker: a host range for one container port is a pool to pick from; a container range needs a host range as long.
    if (host && !hostRange && c0 !== c1)
      throw new CliError(`invalid ranges specified for container and host Ports: ${ctr} and ${host}`);
    for (let p = c0; p <= c1; p++) {
      const key = `${p}/${proto}`;
      exposed[key] = {};
      let hostPort = '';
      if (host) hostPort = hostRange ? String(h0 + (p - c0)) : h0 === h1 ? String(h0) : `${h0}-${h1}`;
      (bindings[key] ??= []).push({ HostIp: ip, HostPort: hostPort });
    }
  }
  return { exposed, bindings };
}

function envList(list: string[] | undefined): string[] {
  const out: string[] = [];
  for (const e of list ?? []) {
    if (e.includes('=')) out.push(e);
    else if (process.env[e] !== undefined) out.push(`${e}=${process.env[e]}`);
  }
  return out;
}

function restartPolicy(spec: string | undefined): { Name: string; MaximumRetryCount: number } {
  const [name, count] = (spec || 'no').split(':') as [string, string | undefined];
  if (!['no', 'always', 'on-failure', 'unless-stopped'].includes(name))
    throw new CliError(`invalid restart policy: ${spec}`);
  return { Name: name, MaximumRetryCount: count ? Number(count) : 0 };
}

export function buildCreateBody(image: string, command: string[], o: CreateOpts): Record<string, unknown> {
  const { exposed, bindings } = parsePublish(o.publish ?? []);
  for (const e of o.expose ?? []) {
    const [port, proto = 'tcp'] = e.split('/') as [string, string?];
    const [a, b] = range(port, 'port');
    for (let p = a; p <= b; p++) exposed[`${p}/${proto}`] = {};
  }
  const attachStd = !o.detach;
  const vols = splitVolumes(o.volume);
  const networks = o.network?.length ? o.network : ['default'];
  const endpoints: Record<string, Record<string, unknown>> = {};
  networks.forEach((n, i) => {
    const ep: Record<string, unknown> = {};
    if (i === 0) {
      const ipam: Record<string, string | string[]> = {};
      if (o.ip) ipam.IPv4Address = o.ip;
      if (o.ip6) ipam.IPv6Address = o.ip6;
      if (o.linkLocalIp?.length) ipam.LinkLocalIPs = o.linkLocalIp;
      if (Object.keys(ipam).length) ep.IPAMConfig = ipam;
      if (o.networkAlias?.length) ep.Aliases = o.networkAlias;
      // Legacy links: on a user-defined network they are the endpoint's (docker's CLI does the same).
      if (o.link?.length) ep.Links = o.link;
      if (o.macAddress) ep.MacAddress = o.macAddress;
    }
    endpoints[n] = ep;
  });
  const body: Record<string, unknown> = {
    Hostname: o.hostname ?? '',
    Domainname: o.domainname ?? '',
    User: o.user ?? '',
    AttachStdin: Boolean(o.interactive) && !o.detach,
    AttachStdout: attachStd,
    AttachStderr: attachStd,
    ExposedPorts: Object.keys(exposed).length ? exposed : null,
    Tty: Boolean(o.tty),
    OpenStdin: Boolean(o.interactive),
    StdinOnce: Boolean(o.interactive) && !o.detach,
    Env: envList(o.env),
    Cmd: command.length ? command : null,
    Image: image,
    Labels: keyValues(o.label),
    WorkingDir: o.workdir ?? '',
    Entrypoint: o.entrypoint !== undefined ? [o.entrypoint] : null,
    Volumes: Object.keys(vols.volumes).length ? vols.volumes : null,
    HostConfig: {
      Binds: vols.binds.length ? vols.binds : null,
      Mounts: o.mount?.length ? o.mount.map(parseMountFlag) : null,
      Tmpfs: o.tmpfs?.length
        ? Object.fromEntries(
            o.tmpfs.map((t) => {
              const i = t.indexOf(':');
              return i < 0 ? [t, ''] : [t.slice(0, i), t.slice(i + 1)];
            }),
          )
        : null,
      VolumesFrom: o.volumesFrom?.length ? o.volumesFrom : null,
      NetworkMode: networks[0],
      PortBindings: bindings,
      PublishAllPorts: Boolean(o.publishAll),
      AutoRemove: Boolean(o.rm),
      Dns: o.dns ?? [],
      DnsOptions: o.dnsOption ?? [],
      DnsSearch: o.dnsSearch ?? [],
      ExtraHosts: (o.addHost ?? []).map((h) => (h.includes('=') && !h.includes(':') ? h.replace('=', ':') : h)),
      Privileged: Boolean(o.privileged),
      CapAdd: o.capAdd ?? null,
      CapDrop: o.capDrop ?? null,
      Sysctls: o.sysctl ? keyValues(o.sysctl) : {},
      RestartPolicy: restartPolicy(o.restart),
      Init: o.init ? true : null,
      ...resourceFields(o),
      ...(o.groupAdd?.length ? { GroupAdd: o.groupAdd } : {}),
      ...(o.runtime ? { Runtime: o.runtime } : {}),
      ...(o.deviceCgroupRule?.length ? { DeviceCgroupRules: o.deviceCgroupRule } : {}),
      ...(o.logDriver || o.logOpt?.length ? { LogConfig: { Type: o.logDriver ?? '', Config: logOpts(o.logOpt) } } : {}),
    },
    NetworkingConfig: { EndpointsConfig: endpoints },
  };
  if (o.stopSignal) body.StopSignal = o.stopSignal;
  if (o.stopTimeout !== undefined) body.StopTimeout = Number(o.stopTimeout);
  const health = healthcheckFromFlags(o);
  if (health) body.Healthcheck = health;
  return body;
}

/** "alpine" → alpine:latest, as the docker CLI names what it pulls. */
function normalizeRef(image: string): { name: string; tag: string } {
  const at = image.indexOf('@');
  if (at >= 0) return { name: image.slice(0, at), tag: image.slice(at + 1) };
  const m = /^(.*[^/]):([\w][\w.-]{0,127})$/.exec(image);
  return m ? { name: m[1]!, tag: m[2]! } : { name: image, tag: 'latest' };
}

/**
 * Create, pulling as `--pull` says (docker's CLI does this, not the daemon):
 * always: pull first; missing (default): pull when the daemon has no such
 * image, then create again; never: no pull.
 */
async function createContainer(cli: Cli, image: string, command: string[], o: CreateOpts): Promise<string> {
  if (o.rm && o.restart && o.restart !== 'no') throw new CliError('Conflicting options: --restart and --rm');
  const policy = o.pull ?? 'missing';
  if (!['always', 'missing', 'never'].includes(policy))
    throw new CliError(`invalid pull option: '${policy}': must be one of "always", "missing" or "never"`);
  const body = buildCreateBody(image, command, o);
  const query = o.name ? { name: o.name } : undefined;
  const { pullWithProgress } = await import('./registry.js');
  const pullNow = (): Promise<void> =>
    pullWithProgress(cli, image, (t) => cli.err(t), Boolean(process.stderr.isTTY), Boolean(o.quiet));
  if (policy === 'always') await pullNow();
  try {
    const res = await cli.client.post<{ Id: string; Warnings?: string[] }>('/containers/create', body, query);
    for (const w of res.Warnings ?? []) cli.err(`WARNING: ${w}\n`);
    return res.Id;
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404 || !/No such image/i.test(e.message) || policy !== 'missing')
      throw e;
    const ref = normalizeRef(image);
    if (!o.quiet) cli.err(`Unable to find image '${image.includes('@') ? image : `${ref.name}:${ref.tag}`}' locally\n`);
    try {
      await pullNow();
    } catch (pe) {
      if (pe instanceof CliError) throw new ApiError(404, pe.message);
      throw pe;
    }
    const again = await cli.client.post<{ Id: string; Warnings?: string[] }>('/containers/create', body, query);
    for (const w of again.Warnings ?? []) cli.err(`WARNING: ${w}\n`);
    return again.Id;
  }
}

export async function create(cli: Cli, image: string, command: string[], o: CreateOpts): Promise<void> {
  cli.out((await createContainer(cli, image, command, o)) + '\n');
}

function resizer(cli: Cli, path: string): (rows: number, cols: number) => void {
  return (rows, cols) => {
    cli.client.post(path, undefined, { h: rows, w: cols }).catch(() => {});
  };
}

/** After a session ends: was it a detach (the container runs on)? Otherwise its exit code. */
async function exitCodeAfter(
  cli: Cli,
  id: string,
  waitResult: Promise<number> | undefined,
  detached: boolean,
): Promise<number | 'detached'> {
  if (detached) return 'detached';
  if (waitResult) {
    // Not unref'd: when the wait response stalls with its socket already
    // gone, this timer is the only thing keeping the event loop alive, and
    // without it node ends the CLI with exit 13 (an unsettled top-level await).
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), 1500);
    });
    const res = await Promise.race([waitResult.catch(() => 'timeout' as const), timeout]).finally(() =>
      clearTimeout(timer),
    );
    if (res !== 'timeout') return res;
  }
  const info = await cli.client.get<{ State: { Running: boolean; ExitCode: number } }>(`/containers/${id}/json`);
  if (info.State.Running) return 'detached';
  return info.State.ExitCode;
}

/** POST wait: the headers come back at once, the body when the container exits. */
async function startWait(
  cli: Cli,
  id: string,
  condition: string,
): Promise<{ waitRes: import('../http-lite.js').LiteResponse; waitResult: Promise<number> }> {
  const waitRes = await cli.client.raw('POST', `/containers/${id}/wait`, { query: { condition } });
  const waitResult = (async () => {
    let text = '';
    for await (const c of waitRes) text += (c as Buffer).toString();
    const r = JSON.parse(text) as { StatusCode: number; Error?: { Message: string } | null };
    if (r.Error?.Message) cli.err(`${r.Error.Message}\n`);
    return r.StatusCode;
  })();
  waitResult.catch(() => {});
  return { waitRes, waitResult };
}

function proxySignals(cli: Cli, id: string): () => void {
  const handlers: Array<[NodeJS.Signals, () => void]> = (['SIGINT', 'SIGTERM', 'SIGHUP'] as NodeJS.Signals[]).map(
    (sig) => {
      const h = () => {
        cli.client.post(`/containers/${id}/kill`, undefined, { signal: sig }).catch(() => {});
      };
      process.on(sig, h);
      return [sig, h];
    },
  );
  return () => {
    for (const [s, h] of handlers) process.off(s, h);
  };
}

export async function run(cli: Cli, image: string, command: string[], o: CreateOpts): Promise<void> {
  const id = await createContainer(cli, image, command, o);
  if (o.detach) {
    await cli.client.post(`/containers/${id}/start`);
    cli.out(id + '\n');
    return;
  }
  // docker's order: attach, wait (headers come back at once), start.
  const tty = Boolean(o.tty);
  const conn = await cli.client.hijack(`/containers/${id}/attach`, {
    query: {
      stream: true,
      stdin: Boolean(o.interactive),
      stdout: true,
      stderr: true,
      ...(o.detachKeys ? { detachKeys: o.detachKeys } : {}),
    },
  });
  const { waitRes, waitResult } = await startWait(cli, id, o.rm ? 'removed' : 'next-exit');
  try {
    await cli.client.post(`/containers/${id}/start`);
  } catch (e) {
    // Nothing will come on these; do not let them keep the process alive.
    conn.socket.destroy();
    waitRes.destroy();
    throw e;
  }
  const unproxy = !tty && o.sigProxy !== false ? proxySignals(cli, id) : () => {};
  const session = await pipeSession(conn.socket, conn.head, {
    tty,
    stdin: Boolean(o.interactive),
    ...(o.detachKeys ? { detachKeys: o.detachKeys } : {}),
    onResize: resizer(cli, `/containers/${id}/resize`),
  });
  unproxy();
  const code = await exitCodeAfter(cli, id, waitResult, session.detached);
  cli.exitCode = code === 'detached' ? 0 : code;
  // The wait response may still be pending after a detach; do not let it hold the process.
  if (code === 'detached') waitRes.destroy();
}

export async function start(
  cli: Cli,
  containers: string[],
  o: { attach?: boolean; interactive?: boolean; detachKeys?: string },
): Promise<void> {
  if (o.attach || o.interactive) {
    if (containers.length > 1) throw new CliError('you cannot start and attach multiple containers at once');
    const name = containers[0]!;
    const info = await cli.client.get<{ Id: string; Config: { Tty: boolean; OpenStdin: boolean } }>(
      `/containers/${encodeURIComponent(name)}/json`,
    );
    const tty = Boolean(info.Config.Tty);
    const stdin = Boolean(o.interactive && info.Config.OpenStdin);
    const conn = await cli.client.hijack(`/containers/${info.Id}/attach`, {
      query: { stream: true, stdin, stdout: true, stderr: true, ...(o.detachKeys ? { detachKeys: o.detachKeys } : {}) },
    });
    const { waitRes, waitResult } = await startWait(cli, info.Id, 'next-exit');
    try {
      await cli.client.post(`/containers/${info.Id}/start`);
    } catch (e) {
      conn.socket.destroy();
      waitRes.destroy();
      throw e;
    }
    const session = await pipeSession(conn.socket, conn.head, {
      tty,
      stdin,
      ...(o.detachKeys ? { detachKeys: o.detachKeys } : {}),
      onResize: resizer(cli, `/containers/${info.Id}/resize`),
    });
    const code = await exitCodeAfter(cli, info.Id, waitResult, session.detached);
    cli.exitCode = code === 'detached' ? 0 : code;
    if (code === 'detached') waitRes.destroy();
    return;
  }
  await eachName(cli, containers, async (c) => {
    await cli.client.post(`/containers/${encodeURIComponent(c)}/start`);
    cli.out(c + '\n');
  });
}

export async function exec(
  cli: Cli,
  container: string,
  command: string[],
  o: {
    detach?: boolean;
    interactive?: boolean;
    tty?: boolean;
    env?: string[];
    workdir?: string;
    user?: string;
    privileged?: boolean;
    detachKeys?: string;
  },
): Promise<void> {
  const body: Record<string, unknown> = {
    User: o.user ?? '',
    Privileged: Boolean(o.privileged),
    Tty: Boolean(o.tty),
    AttachStdin: Boolean(o.interactive) && !o.detach,
    AttachStdout: !o.detach,
    AttachStderr: !o.detach,
    DetachKeys: o.detachKeys ?? '',
    Env: envList(o.env),
    WorkingDir: o.workdir ?? '',
    Cmd: command,
  };
  const { Id } = await cli.client.post<{ Id: string }>(`/containers/${encodeURIComponent(container)}/exec`, body);
  if (o.detach) {
    await cli.client.post(`/exec/${Id}/start`, { Detach: true, Tty: Boolean(o.tty) });
    return;
  }
  const conn = await cli.client.hijack(`/exec/${Id}/start`, { body: { Detach: false, Tty: Boolean(o.tty) } });
  const session = await pipeSession(conn.socket, conn.head, {
    tty: Boolean(o.tty),
    stdin: Boolean(o.interactive),
    ...(o.detachKeys ? { detachKeys: o.detachKeys } : {}),
    onResize: resizer(cli, `/exec/${Id}/resize`),
  });
  if (session.detached) return;
  const info = await cli.client.get<{ ExitCode: number | null; Running: boolean }>(`/exec/${Id}/json`);
  cli.exitCode = info.ExitCode ?? 0;
}

export async function attach(cli: Cli, container: string, o: { detachKeys?: string; stdin?: boolean }): Promise<void> {
  const info = await cli.client.get<{
    Id: string;
    State: { Running: boolean; Paused: boolean; Restarting: boolean };
    Config: { Tty: boolean; OpenStdin: boolean };
  }>(`/containers/${encodeURIComponent(container)}/json`);
  if (!info.State.Running) throw new CliError('You cannot attach to a stopped container, start it first');
  if (info.State.Paused) throw new CliError('You cannot attach to a paused container, unpause it first');
  const tty = Boolean(info.Config.Tty);
  const stdin = o.stdin !== false && Boolean(info.Config.OpenStdin);
  const conn = await cli.client.hijack(`/containers/${info.Id}/attach`, {
    query: { stream: true, stdin, stdout: true, stderr: true, ...(o.detachKeys ? { detachKeys: o.detachKeys } : {}) },
  });
  const { waitRes, waitResult } = await startWait(cli, info.Id, 'not-running');
  const session = await pipeSession(conn.socket, conn.head, {
    tty,
    stdin,
    ...(o.detachKeys ? { detachKeys: o.detachKeys } : {}),
    onResize: resizer(cli, `/containers/${info.Id}/resize`),
  });
  const code = await exitCodeAfter(cli, info.Id, waitResult, session.detached);
  cli.exitCode = code === 'detached' ? 0 : code;
  if (code === 'detached') waitRes.destroy();
}
