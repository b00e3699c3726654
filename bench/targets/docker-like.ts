/**
 * One Target for every engine that speaks Docker's model, driven either through
 * a CLI (cove, docker, podman) or through the Engine API (cove, docker).
 * Introspection (PID, addresses, resolver) goes through the API when there is
 * one, else through `inspect`.
 */
import { readFileSync } from 'node:fs';
import type { ContainerRef, DnsEndpoint, RunSpec, Target } from './target.js';
import type { EngineApi } from './engine-api.js';
import type { RunResult } from '../exec.js';

export type Cli = (args: string[]) => Promise<RunResult>;

export interface DockerLikeOptions {
  /** Drive through this CLI (else through api). */
  cli?: Cli;
  api?: EngineApi;
  /** CLI used for inspect when there is no API (podman). */
  inspectCli?: Cli;
  /** Extra `rm` flags (podman: -t 0 so it does not wait its stop timeout). */
  rmArgs?: string[];
  /** Appended to a container name for DNS (podman answers NAME.dns.podman). */
  dnsSuffix?: string;
}

interface Inspect {
  Id: string;
  State: { Pid: number; Running: boolean };
  NetworkSettings: { Networks: Record<string, { IPAddress: string }> | null };
}

async function cliOk(cli: Cli, args: string[]): Promise<string> {
  const r = await cli(args);
  if (r.code !== 0)
    throw new Error(`${args.join(' ')}: exit ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 400)}`);
  return r.stdout.trim();
}

export class DockerLikeTarget implements Target {
  constructor(
    readonly name: string,
    private readonly o: DockerLikeOptions,
  ) {
    if (!o.cli && !o.api) throw new Error(`${name}: needs a CLI or an API`);
  }

  private get viaCli(): Cli | undefined {
    return this.o.cli;
  }

  private api(): EngineApi {
    if (!this.o.api) throw new Error(`${this.name}: no API`);
    return this.o.api;
  }

  async createNetwork(name: string, subnet?: string): Promise<void> {
    const cli = this.viaCli;
    if (cli)
      await cliOk(cli, ['network', 'create', '--driver', 'bridge', ...(subnet ? ['--subnet', subnet] : []), name]);
    else
      await this.api().ok('POST', '/networks/create', {
        Name: name,
        Driver: 'bridge',
        CheckDuplicate: true,
        ...(subnet ? { IPAM: { Driver: 'default', Config: [{ Subnet: subnet }] } } : {}),
      });
  }

  async removeNetwork(name: string): Promise<void> {
    const cli = this.viaCli;
    if (cli) await cliOk(cli, ['network', 'rm', name]);
    else await this.api().ok('DELETE', `/networks/${encodeURIComponent(name)}`);
  }

  async runContainer(spec: RunSpec): Promise<ContainerRef> {
    const image = `${spec.image}:latest`;
    const cli = this.viaCli;
    if (cli) {
      const args = ['run', '-d', '--name', spec.name, '--network', spec.network];
      if (spec.publish) args.push('-p', `${spec.publish.hostPort}:${spec.publish.containerPort}`);
      const out = await cliOk(cli, [...args, image, ...spec.cmd]);
      const id = out.split('\n').pop()!.trim();
      return { id, name: spec.name };
    }
    const api = this.api();
    const port = spec.publish ? `${spec.publish.containerPort}/tcp` : undefined;
    const body: Record<string, unknown> = {
      Image: image,
      Cmd: spec.cmd,
      HostConfig: {
        NetworkMode: spec.network,
        ...(port ? { PortBindings: { [port]: [{ HostIp: '', HostPort: String(spec.publish!.hostPort) }] } } : {}),
      },
      ...(port ? { ExposedPorts: { [port]: {} } } : {}),
    };
    const created = await api.ok('POST', `/containers/create?name=${encodeURIComponent(spec.name)}`, body);
    const id = (created.body as { Id: string }).Id;
    await api.ok('POST', `/containers/${id}/start`);
    return { id, name: spec.name };
  }

  async removeContainer(c: ContainerRef): Promise<void> {
    const cli = this.viaCli;
    if (cli) await cliOk(cli, ['rm', '-f', ...(this.o.rmArgs ?? []), c.id]);
    else await this.api().ok('DELETE', `/containers/${c.id}?force=true`);
  }

  async connect(network: string, c: ContainerRef): Promise<void> {
    const cli = this.viaCli;
    if (cli) await cliOk(cli, ['network', 'connect', network, c.id]);
    else await this.api().ok('POST', `/networks/${encodeURIComponent(network)}/connect`, { Container: c.id });
  }

  async disconnect(network: string, c: ContainerRef): Promise<void> {
    const cli = this.viaCli;
    if (cli) await cliOk(cli, ['network', 'disconnect', network, c.id]);
    else
      await this.api().ok('POST', `/networks/${encodeURIComponent(network)}/disconnect`, {
        Container: c.id,
        Force: false,
      });
  }

  async roundTrip(): Promise<void> {
    const cli = this.viaCli;
    if (cli) await cliOk(cli, ['network', 'ls']);
    else await this.api().ok('GET', '/networks');
  }

  private async inspect(c: ContainerRef): Promise<Inspect> {
    if (this.o.api) return (await this.o.api.ok('GET', `/containers/${c.id}/json`)).body as Inspect;
    const cli = this.o.inspectCli ?? this.o.cli!;
    const arr = JSON.parse(await cliOk(cli, ['inspect', c.id])) as Inspect[];
    if (!arr[0]) throw new Error(`inspect ${c.name}: nothing`);
    return arr[0];
  }

  async netnsPath(c: ContainerRef): Promise<string> {
    const i = await this.inspect(c);
    if (!i.State.Pid) throw new Error(`${c.name} has no PID (not running?)`);
    return `/proc/${i.State.Pid}/ns/net`;
  }

  async address(c: ContainerRef, network: string): Promise<string> {
    const i = await this.inspect(c);
    const ip = i.NetworkSettings.Networks?.[network]?.IPAddress;
    if (!ip) throw new Error(`${c.name} has no address on ${network}`);
    return ip;
  }

  async dnsEndpoint(from: ContainerRef, to: ContainerRef): Promise<DnsEndpoint> {
    const i = await this.inspect(from);
    // The resolver the container itself would use: the first nameserver of its resolv.conf.
    const conf = readFileSync(`/proc/${i.State.Pid}/root/etc/resolv.conf`, 'utf8');
    const server = /^nameserver\s+(\S+)/m.exec(conf)?.[1];
    if (!server) throw new Error(`${from.name}: no nameserver in resolv.conf`);
    return { server, name: to.name + (this.o.dnsSuffix ?? '') };
  }
}
