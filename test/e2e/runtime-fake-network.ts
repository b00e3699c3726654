/**
 * A test-only NetworkService for the runtime's e2e tests while the real
 * controller is built elsewhere: it knows the networks "none" and "host".
 * none: a fresh netns (unshare --net=<file>) with lo up; host: no netns (the
 * caller's, which the tests make a lab namespace). It writes the hosts,
 * hostname and resolv.conf files into the sandbox dir as Docker does.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { NotFound, NotImplemented } from '../../src/common/errors.js';
import type {
  DockerNetwork,
  DockerNetworkCreate,
  DockerNetworkSettings,
  EndpointRequest,
  Filters,
  NetworkService,
  SandboxHandle,
  SandboxSpec,
} from '../../src/network/types.js';

const NETS: Record<string, { id: string; driver: string }> = {
  none: { id: 'a'.repeat(64), driver: 'null' },
  host: { id: 'b'.repeat(64), driver: 'host' },
  // Known (for records) but not joinable here: containers on them are never started by these tests.
  cvrtnet1: { id: 'c1'.repeat(32), driver: 'bridge' },
  cvrtnet2: { id: 'c2'.repeat(32), driver: 'bridge' },
};

export class FakeNetworks implements NetworkService {
  readonly sandboxes = new Map<string, { handle: SandboxHandle; spec: SandboxSpec }>();
  readonly calls: string[] = [];
  private mounted = false;

  /** `dir` holds the netns files; it becomes a private bind mount so nsfs binds are allowed there. */
  constructor(readonly dir: string) {}

  private ensureDir(): void {
    if (this.mounted) return;
    mkdirSync(this.dir, { recursive: true });
    execFileSync('mount', ['--bind', this.dir, this.dir]);
    execFileSync('mount', ['--make-private', this.dir]);
    this.mounted = true;
  }

  async resolveNetwork(idOrName: string): Promise<{ id: string; name: string; driver: string }> {
    for (const [name, n] of Object.entries(NETS))
      if (idOrName === name || idOrName === n.id) return { id: n.id, name, driver: n.driver };
    throw new NotFound(`network ${idOrName} not found`);
  }

  async createSandbox(spec: SandboxSpec): Promise<SandboxHandle> {
    this.calls.push(`createSandbox ${spec.containerId.slice(0, 12)} ${spec.networkMode}`);
    if (spec.networkMode !== 'none' && spec.networkMode !== 'host')
      throw new NotFound(`network ${spec.networkMode} not found`);
    let netnsPath: string | null = null;
    if (spec.networkMode === 'none') {
      this.ensureDir();
      netnsPath = join(this.dir, spec.containerId.slice(0, 12));
      writeFileSync(netnsPath, '');
      execFileSync('unshare', [`--net=${netnsPath}`, 'true']);
      execFileSync('nsenter', [`--net=${netnsPath}`, 'ip', 'link', 'set', 'lo', 'up']);
    }
    const hostsPath = join(spec.dir, 'hosts');
    const hostnamePath = join(spec.dir, 'hostname');
    const resolvConfPath = join(spec.dir, 'resolv.conf');
    writeFileSync(
      hostsPath,
      `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${spec.extraHosts
        .map((h) => {
          const i = h.indexOf(':');
          return `${h.slice(i + 1)}\t${h.slice(0, i)}\n`;
        })
        .join('')}`,
    );
    writeFileSync(hostnamePath, `${spec.hostname}\n`);
    writeFileSync(
      resolvConfPath,
      `${(spec.dns.length ? spec.dns : ['10.99.0.1']).map((d) => `nameserver ${d}`).join('\n')}\n`,
    );
    const handle: SandboxHandle = {
      id: spec.containerId,
      containerId: spec.containerId,
      netnsPath,
      hostsPath,
      resolvConfPath,
      hostnamePath,
    };
    this.sandboxes.set(spec.containerId, { handle, spec });
    return handle;
  }

  async deleteSandbox(containerId: string): Promise<void> {
    this.calls.push(`deleteSandbox ${containerId.slice(0, 12)}`);
    const sb = this.sandboxes.get(containerId);
    if (!sb) return;
    if (sb.handle.netnsPath && existsSync(sb.handle.netnsPath)) {
      try {
        execFileSync('umount', [sb.handle.netnsPath], { stdio: 'ignore' });
      } catch {
        // not mounted
      }
      rmSync(sb.handle.netnsPath, { force: true });
    }
    this.sandboxes.delete(containerId);
  }

  async connect(containerId: string, req: EndpointRequest): Promise<void> {
    this.calls.push(`connect ${containerId.slice(0, 12)} ${req.network}`);
    await this.resolveNetwork(req.network);
  }

  async disconnect(containerId: string, network: string): Promise<void> {
    this.calls.push(`disconnect ${containerId.slice(0, 12)} ${network}`);
  }

  async networkSettings(containerId: string): Promise<DockerNetworkSettings | undefined> {
    const sb = this.sandboxes.get(containerId);
    if (!sb) return undefined;
    const mode = sb.spec.networkMode;
    return {
      Bridge: '',
      SandboxID: sb.handle.id,
      SandboxKey: sb.handle.netnsPath ?? '',
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
      IPAddress: '',
      IPPrefixLen: 0,
      IPv6Gateway: '',
      MacAddress: '',
      Networks: {
        [mode]: { NetworkID: NETS[mode]!.id, EndpointID: 'e'.repeat(64), Gateway: '', IPAddress: '', IPPrefixLen: 0 },
      },
    };
  }

  async renameContainer(containerId: string, newName: string): Promise<void> {
    this.calls.push(`rename ${containerId.slice(0, 12)} ${newName}`);
  }

  async restore(): Promise<void> {}

  /** Removes every netns it made and its private mount. */
  async close(): Promise<void> {
    for (const id of [...this.sandboxes.keys()]) await this.deleteSandbox(id);
    if (this.mounted) {
      execFileSync('umount', [this.dir]);
      this.mounted = false;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  createNetwork(_req: DockerNetworkCreate): Promise<{ Id: string; Warning: string }> {
    throw new NotImplemented('not in the test double');
  }
  async listNetworks(_filters?: Filters): Promise<DockerNetwork[]> {
    return [];
  }
  inspectNetwork(): Promise<DockerNetwork> {
    throw new NotImplemented('not in the test double');
  }
  removeNetwork(): Promise<void> {
    throw new NotImplemented('not in the test double');
  }
  async pruneNetworks(): Promise<string[]> {
    return [];
  }
}
