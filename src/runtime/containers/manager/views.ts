/**
 * What clients see: inspect and list (docker ps, with Docker's filters).
 */
import { goRegexp } from '../../../common/goregexp.js';
import { join } from 'node:path';
import { InvalidParameter } from '../../../common/errors.js';
import type { Filters } from '../../../network/types.js';
import type { DockerContainerInspect, DockerContainerSummary } from '../../types.js';
import { statusText } from '../format.js';
import { rootfsPaths } from '../rootfs.js';
import { exposedPorts, parsePortKey } from '../spec.js';
import { configView, hostConfigView } from '../inspect-view.js';
import { mountView } from '../mounts.js';
import { ContainerCore, logConfigOf } from './core.js';

/** Docker's port filter value: "80", "80/udp", "8000-8010/tcp" (protocol tcp when left out). */
function portMatches(filter: string, port: number, proto: string): boolean {
  const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/.exec(filter);
  if (!m) throw new InvalidParameter(`invalid port filter: ${filter}`);
  const lo = Number(m[1]);
  const hi = m[2] ? Number(m[2]) : lo;
  return port >= lo && port <= hi && (m[3] ?? 'tcp') === proto;
}

export class ViewOps {
  constructor(private readonly core: ContainerCore) {}

  async inspect(idOrName: string): Promise<DockerContainerInspect> {
    const r = await this.core.get(idOrName);
    const cdir = this.core.containerDir(r.Id);
    const rf = rootfsPaths(cdir);
    const lowers = await this.core.images.lowerDirs(r.ImageID).catch(() => [] as string[]);
    const execIds = [...this.core.execs.values()].filter((e) => e.containerId === r.Id && e.running).map((e) => e.id);
    return {
      Id: r.Id,
      Created: r.Created,
      Path: r.Path,
      Args: r.Args,
      State: r.State,
      Image: r.ImageID,
      ResolvConfPath: r.ResolvConfPath || join(cdir, 'resolv.conf'),
      HostnamePath: r.HostnamePath || join(cdir, 'hostname'),
      HostsPath: r.HostsPath || join(cdir, 'hosts'),
      LogPath: logConfigOf(r).Type === 'none' ? '' : this.core.logPath(r),
      Name: r.Name,
      RestartCount: r.RestartCount,
      Driver: 'overlay2',
      Platform: 'linux',
      MountLabel: '',
      ProcessLabel: '',
      AppArmorProfile: '',
      ExecIDs: execIds.length ? execIds : null,
      HostConfig: hostConfigView({
        ...r.HostConfig,
        LogConfig: logConfigOf(r),
        RestartPolicy: r.HostConfig.RestartPolicy ?? { Name: 'no', MaximumRetryCount: 0 },
        AutoRemove: !!r.HostConfig.AutoRemove,
        PortBindings: r.HostConfig.PortBindings ?? {},
        PublishAllPorts: !!r.HostConfig.PublishAllPorts,
        Dns: r.HostConfig.Dns ?? [],
        DnsOptions: r.HostConfig.DnsOptions ?? [],
        DnsSearch: r.HostConfig.DnsSearch ?? [],
        ExtraHosts: r.HostConfig.ExtraHosts ?? null,
        Privileged: !!r.HostConfig.Privileged,
        CapAdd: r.HostConfig.CapAdd ?? null,
      }),
      GraphDriver: {
        Name: 'overlay2',
        Data: { LowerDir: lowers.join(':'), UpperDir: rf.upper, WorkDir: rf.work, MergedDir: rf.merged },
      },
      Mounts: (r.MountPoints ?? []).map(mountView),
      Config: configView(r.Config),
      NetworkSettings: await this.core.networkOps.settingsOf(r),
    };
  }

  async list(opts: { all?: boolean; limit?: number; filters?: Filters } = {}): Promise<DockerContainerSummary[]> {
    const f = opts.filters ?? {};
    const known = [
      'id',
      'name',
      'status',
      'label',
      'network',
      'ancestor',
      'exited',
      'before',
      'since',
      'health',
      'isolation',
      'is-task',
      'publish',
      'expose',
      'volume',
    ];
    for (const k of Object.keys(f)) if (!known.includes(k)) throw new InvalidParameter(`Invalid filter '${k}'`);
    const statuses = ['created', 'restarting', 'running', 'removing', 'paused', 'exited', 'dead'];
    for (const v of f.status ?? [])
      if (!statuses.includes(v)) throw new InvalidParameter(`Invalid filter 'status=${v}'`);
    for (const v of f.exited ?? []) if (!/^-?\d+$/.test(v)) throw new InvalidParameter(`Invalid filter 'exited=${v}'`);
    for (const v of f.health ?? [])
      if (!['starting', 'healthy', 'unhealthy', 'none'].includes(v))
        throw new InvalidParameter(`Unrecognised filter value for health: ${v}`);
    const nameMatchers = await Promise.all((f.name ?? []).map((p) => goRegexp(p.replace(/^\//, ''))));
    let rows = (await this.core.records.list()).map((x) => x.value).sort((a, b) => b.Created.localeCompare(a.Created));
    // before/since: relative to another container's creation.
    for (const [key, keepIf] of [
      ['before', (c: string, ref: string) => c < ref],
      ['since', (c: string, ref: string) => c > ref],
    ] as const) {
      for (const v of f[key] ?? []) {
        const ref = await this.core.get(v);
        rows = rows.filter((r) => keepIf(r.Created, ref.Created));
      }
    }
    const out: DockerContainerSummary[] = [];
    const netIds = new Map<string, string>();
    for (const r of rows) {
      if (!opts.all && !r.State.Running && !(f.status?.length || f.exited?.length)) continue;
      if (f.id?.length && !f.id.some((p) => r.Id.startsWith(p))) continue;
      if (nameMatchers.length && !nameMatchers.some((m) => m(r.Name.slice(1)))) continue;
      if (f.status?.length && !f.status.includes(r.State.Status)) continue;
      if (f.exited?.length && !(r.State.Status === 'exited' && f.exited.includes(String(r.State.ExitCode)))) continue;
      if (f.health?.length && !f.health.includes(r.State.Health?.Status ?? 'none')) continue;
      if (
        f.label?.length &&
        !f.label.every((l) => {
          const eq = l.indexOf('=');
          const labels = r.Config.Labels ?? {};
          return eq < 0 ? l in labels : labels[l.slice(0, eq)] === l.slice(eq + 1);
        })
      )
        continue;
      if (
        f.volume?.length &&
        !f.volume.some((v) =>
          (r.MountPoints ?? []).some(
            (m) => m.Name === v || m.Destination === v || (m.Type === 'bind' && m.Source === v),
          ),
        )
      )
        continue;
      if (f.ancestor?.length) {
        const ids = await Promise.all(f.ancestor.map((a) => this.core.images.resolve(a).catch(() => '')));
        if (!ids.includes(r.ImageID) && !f.ancestor.includes(r.ImageRef)) continue;
      }
      if (f.network?.length) {
        const mine = new Set<string>();
        for (const [n, s] of Object.entries(r.EndpointsConfig)) {
          mine.add(n);
          if (s.NetworkID) mine.add(s.NetworkID);
        }
        if (r.HostConfig.NetworkMode === 'host' || r.HostConfig.NetworkMode === 'none')
          mine.add(r.HostConfig.NetworkMode);
        if (!f.network.some((n) => mine.has(n) || [...mine].some((m) => /^[0-9a-f]{64}$/.test(m) && m.startsWith(n))))
          continue;
      }
      const settings = await this.core.networkOps.settingsOf(r);
      for (const [n, s] of Object.entries(settings.Networks)) if (s.NetworkID) netIds.set(n, s.NetworkID);
      const ports: DockerContainerSummary['Ports'] = [];
      if (r.State.Running) {
        for (const [key, binds] of Object.entries(settings.Ports ?? {})) {
          const p = parsePortKey(key);
          if (!binds?.length) ports.push({ PrivatePort: p.start, Type: p.protocol });
          else
            for (const b of binds)
              ports.push({
                IP: b.HostIp || '0.0.0.0',
                PrivatePort: p.start,
                PublicPort: Number(b.HostPort),
                Type: p.protocol,
              });
        }
      }
      if (!ports.length)
        for (const e of exposedPorts(r.Config.ExposedPorts)) ports.push({ PrivatePort: e.port, Type: e.protocol });
      // publish=<port>[/<proto>] matches published host ports, expose=... container ports (ranges allowed).
      if (
        f.publish?.length &&
        !f.publish.some((v) => ports.some((p) => p.PublicPort !== undefined && portMatches(v, p.PublicPort, p.Type)))
      )
        continue;
      if (
        f.expose?.length &&
        !f.expose.some((v) =>
          [
            ...ports.map((p) => ({ port: p.PrivatePort, proto: p.Type })),
            ...exposedPorts(r.Config.ExposedPorts).map((e) => ({ port: e.port, proto: e.protocol as string })),
          ].some((p) => portMatches(v, p.port, p.proto)),
        )
      )
        continue;
      out.push({
        Id: r.Id,
        Names: [r.Name],
        Image: r.ImageRef,
        ImageID: r.ImageID,
        Command: [r.Path, ...r.Args].map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' '),
        Created: Math.floor(Date.parse(r.Created) / 1000),
        Ports: ports,
        Labels: r.Config.Labels ?? {},
        State: r.State.Status,
        Status: statusText(r.State),
        HostConfig: { NetworkMode: r.HostConfig.NetworkMode ?? 'bridge' },
        NetworkSettings: { Networks: settings.Networks },
        Mounts: (r.MountPoints ?? []).map(mountView),
      });
    }
    return opts.limit && opts.limit > 0 ? out.slice(0, opts.limit) : out;
  }
}
