/** `cove swarm init|join|leave|join-token|update|unlock-key|inspect`, with docker's output. */
import type { Cli } from '../cli.js';
import { CliError } from '../client.js';
import { formatEach, inspectJson } from '../format.js';

interface SwarmObj {
  ID: string;
  Version: { Index: number };
  Spec: Record<string, unknown> & {
    Orchestration?: { TaskHistoryRetentionLimit?: number };
    Dispatcher?: { HeartbeatPeriod?: number };
    CAConfig?: { NodeCertExpiry?: number };
    EncryptionConfig?: { AutoLockManagers?: boolean };
  };
  JoinTokens: { Worker: string; Manager: string };
}

/** Go's time.ParseDuration, to nanoseconds. */
function durationNs(v: string): number {
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g;
  const unit: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  let total = 0;
  let consumed = 0;
  for (const m of v.matchAll(re)) {
    total += Number(m[1]) * unit[m[2]!]!;
    consumed += m[0].length;
  }
  if (consumed !== v.length || !v) throw new CliError(`invalid argument "${v}": time: invalid duration "${v}"`, 125);
  return Math.round(total);
}

async function printJoinCommand(cli: Cli, nodeId: string, worker: boolean, manager: boolean): Promise<void> {
  const sw = await cli.client.get<SwarmObj>('/swarm');
  const node = await cli.client.get<{ ManagerStatus?: { Addr: string } }>(`/nodes/${nodeId}`);
  const addr = node.ManagerStatus?.Addr ?? '';
  if (worker)
    cli.out(
      `To add a worker to this swarm, run the following command:\n\n    cove swarm join --token ${sw.JoinTokens.Worker} ${addr}\n\n`,
    );
  if (manager)
    cli.out(
      `To add a manager to this swarm, run the following command:\n\n    cove swarm join --token ${sw.JoinTokens.Manager} ${addr}\n\n`,
    );
}

export async function init(
  cli: Cli,
  o: {
    advertiseAddr?: string;
    listenAddr?: string;
    dataPathAddr?: string;
    dataPathPort?: string;
    defaultAddrPool?: string[];
    defaultAddrPoolMaskLength?: string;
    forceNewCluster?: boolean;
    autolock?: boolean;
    availability?: string;
    taskHistoryLimit?: string;
    certExpiry?: string;
    dispatcherHeartbeat?: string;
  },
): Promise<void> {
  const body = {
    ListenAddr: o.listenAddr ?? '0.0.0.0:2377',
    AdvertiseAddr: o.advertiseAddr ?? '',
    DataPathAddr: o.dataPathAddr ?? '',
    DataPathPort: o.dataPathPort ? Number(o.dataPathPort) : 0,
    DefaultAddrPool: o.defaultAddrPool ?? null,
    SubnetSize: Number(o.defaultAddrPoolMaskLength ?? 24),
    ForceNewCluster: Boolean(o.forceNewCluster),
    Availability: o.availability ?? 'active',
    AutoLockManagers: Boolean(o.autolock),
    Spec: {
      Orchestration: { TaskHistoryRetentionLimit: Number(o.taskHistoryLimit ?? 5) },
      Dispatcher: { HeartbeatPeriod: durationNs(o.dispatcherHeartbeat ?? '5s') },
      CAConfig: { NodeCertExpiry: durationNs(o.certExpiry ?? '2160h0m0s') },
      EncryptionConfig: { AutoLockManagers: Boolean(o.autolock) },
    },
  };
  const nodeId = await cli.client.post<string>('/swarm/init', body);
  cli.out(`Swarm initialized: current node (${nodeId}) is now a manager.\n\n`);
  await printJoinCommand(cli, nodeId, true, false);
  cli.out("To add a manager to this swarm, run 'cove swarm join-token manager' and follow the instructions.\n\n");
}

export async function join(
  cli: Cli,
  remote: string,
  o: { token?: string; advertiseAddr?: string; listenAddr?: string; dataPathAddr?: string; availability?: string },
): Promise<void> {
  await cli.client.post('/swarm/join', {
    ListenAddr: o.listenAddr ?? '0.0.0.0:2377',
    AdvertiseAddr: o.advertiseAddr ?? '',
    DataPathAddr: o.dataPathAddr ?? '',
    RemoteAddrs: [remote],
    JoinToken: o.token ?? '',
    Availability: o.availability ?? 'active',
  });
  const info = await cli.client.get<{ Swarm: { ControlAvailable: boolean } }>('/info');
  cli.out(
    info.Swarm.ControlAvailable
      ? 'This node joined a swarm as a manager.\n'
      : 'This node joined a swarm as a worker.\n',
  );
}

export async function leave(cli: Cli, o: { force?: boolean }): Promise<void> {
  await cli.client.post('/swarm/leave', undefined, { force: Boolean(o.force) });
  cli.out('Node left the swarm.\n');
}

export async function joinToken(cli: Cli, role: string, o: { quiet?: boolean; rotate?: boolean }): Promise<void> {
  if (role !== 'worker' && role !== 'manager') throw new CliError('unknown role ' + role, 1);
  const worker = role === 'worker';
  if (o.rotate) {
    const sw = await cli.client.get<SwarmObj>('/swarm');
    await cli.client.post('/swarm/update', sw.Spec, {
      version: sw.Version.Index,
      rotateWorkerToken: worker,
      rotateManagerToken: !worker,
    });
    if (!o.quiet) cli.out(`Successfully rotated ${role} join token.\n\n`);
  }
  if (o.quiet) {
    const sw = await cli.client.get<SwarmObj>('/swarm');
    cli.out((worker ? sw.JoinTokens.Worker : sw.JoinTokens.Manager) + '\n');
    return;
  }
  const info = await cli.client.get<{ Swarm: { NodeID: string } }>('/info');
  await printJoinCommand(cli, info.Swarm.NodeID, worker, !worker);
}

export async function update(
  cli: Cli,
  o: { autolock?: string; taskHistoryLimit?: string; certExpiry?: string; dispatcherHeartbeat?: string },
): Promise<void> {
  const sw = await cli.client.get<SwarmObj>('/swarm');
  const spec = { ...sw.Spec };
  if (o.taskHistoryLimit !== undefined)
    spec.Orchestration = { ...spec.Orchestration, TaskHistoryRetentionLimit: Number(o.taskHistoryLimit) };
  if (o.dispatcherHeartbeat !== undefined)
    spec.Dispatcher = { ...spec.Dispatcher, HeartbeatPeriod: durationNs(o.dispatcherHeartbeat) };
  if (o.certExpiry !== undefined) spec.CAConfig = { ...spec.CAConfig, NodeCertExpiry: durationNs(o.certExpiry) };
  if (o.autolock !== undefined)
    spec.EncryptionConfig = { ...spec.EncryptionConfig, AutoLockManagers: o.autolock === 'true' };
  await cli.client.post('/swarm/update', spec, { version: sw.Version.Index });
  cli.out('Swarm updated.\n');
}

export async function unlockKey(cli: Cli, o: { quiet?: boolean; rotate?: boolean }): Promise<void> {
  if (o.rotate) throw new CliError('Cannot rotate because autolock is not turned on.', 1);
  const r = await cli.client.get<{ UnlockKey: string }>('/swarm/unlockkey');
  if (!r.UnlockKey)
    throw new CliError('Error: This node is not part of a swarm with autolock enabled; no unlock key is set', 1);
  cli.out(
    o.quiet
      ? `${r.UnlockKey}\n`
      : `To unlock a swarm manager after it restarts, run the \`cove swarm unlock\`\ncommand and provide the following key:\n\n    ${r.UnlockKey}\n\n`,
  );
}

export async function inspect(cli: Cli, o: { format?: string }): Promise<void> {
  const sw = await cli.client.get<SwarmObj>('/swarm');
  cli.out(o.format ? formatEach([sw], o.format) : inspectJson([sw]));
}
