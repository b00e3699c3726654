/**
 * `cove lab up|env|exec|down|ls`: simulated hosts on this machine (see
 * src/lab/hosts.ts). Needs root; talks to no daemon.
 */
import { spawn } from 'node:child_process';
import type { Cli } from '../cli.js';
import { CliError } from '../client.js';
import { HostLab } from '../../lab/hosts.js';

export async function up(cli: Cli, opts: { hosts?: string; name?: string }): Promise<void> {
  const n = Number(opts.hosts ?? '3');
  const t0 = performance.now();
  const lab = await HostLab.up({ hosts: n, name: opts.name ?? 'lab' }).catch((e: Error) => {
    throw new CliError(`lab up: ${e.message}`);
  });
  const ms = Math.round(performance.now() - t0);
  for (const h of lab.state.hosts) cli.out(`${h.name}\t${h.addr}\tunix://${h.socket}\n`);
  cli.err(`lab ${lab.state.name}: ${n} hosts up in ${ms} ms\n`);
}

export async function env(cli: Cli, host: string, opts: { name?: string }): Promise<void> {
  const lab = load(opts.name);
  const h = hostOf(lab, host);
  for (const [k, v] of Object.entries(HostLab.envOf(h))) cli.out(`export ${k}=${v}\n`);
}

export async function exec(cli: Cli, host: string, argv: string[], opts: { name?: string }): Promise<void> {
  const lab = load(opts.name);
  const h = hostOf(lab, host);
  if (!argv.length) throw new CliError('lab exec: no command given');
  const code = await new Promise<number>((res) => {
    const child = spawn('nsenter', [...HostLab.enter(h), ...argv], {
      stdio: 'inherit',
      env: { ...process.env, ...HostLab.envOf(h) },
    });
    child.on('error', () => res(127));
    child.on('exit', (c, sig) => res(c ?? (sig ? 128 : 1)));
  });
  cli.exitCode = code;
}

export async function down(cli: Cli, opts: { name?: string }): Promise<void> {
  let lab: HostLab;
  try {
    lab = HostLab.load(opts.name ?? 'lab');
  } catch {
    cli.err(`no lab named ${opts.name ?? 'lab'}\n`);
    return;
  }
  await lab.down();
}

export async function ls(cli: Cli, opts: { name?: string }): Promise<void> {
  const lab = load(opts.name);
  cli.out('HOST\tADDRESS\tPID\tSOCKET\n');
  for (const h of lab.state.hosts) cli.out(`${h.name}\t${h.addr}\t${h.pid ?? '-'}\tunix://${h.socket}\n`);
}

function load(name: string | undefined): HostLab {
  try {
    return HostLab.load(name ?? 'lab');
  } catch (e) {
    throw new CliError((e as Error).message);
  }
}

function hostOf(lab: HostLab, name: string) {
  try {
    return lab.host(name);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
}

/** Restarts a host's coved (SIGTERM, or SIGKILL with --kill: a crash); its containers and etcd member keep running. */
export async function restart(cli: Cli, host: string, opts: { name?: string; kill?: boolean }): Promise<void> {
  const lab = load(opts.name);
  const h = hostOf(lab, host);
  await lab.stopDaemon(h, opts.kill ? 'SIGKILL' : 'SIGTERM');
  await lab.startDaemon(h);
  cli.out(`${h.name}\t${h.pid}\n`);
}

/** Stops a host's coved (SIGTERM, or SIGKILL with --kill). */
export async function stop(cli: Cli, host: string, opts: { name?: string; kill?: boolean }): Promise<void> {
  const lab = load(opts.name);
  await lab.stopDaemon(hostOf(lab, host), opts.kill ? 'SIGKILL' : 'SIGTERM');
}

/** Starts a stopped host's coved. */
export async function start(cli: Cli, host: string, opts: { name?: string }): Promise<void> {
  const lab = load(opts.name);
  const h = hostOf(lab, host);
  await lab.startDaemon(h);
  cli.out(`${h.name}\t${h.pid}\n`);
}
