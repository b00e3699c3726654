/**
 * The kernel floor: the same kernel objects an engine makes, made by hand as
 * cheaply as this machine allows from Node. Per network: one `ip -batch`
 * (bridge, address, up) and one `nft -f` (masquerade + forward rules in a
 * table of its own). Per container: one `ip -batch` in the lab (netns add, veth
 * made directly in the container netns on the bridge, up), one `ip -batch`
 * inside the container netns (lo, address, eth0 up, default route) and the
 * process itself (`nsenter --net sleep`). Published ports: one `nft -f` with a
 * DNAT table. No state, no API, no images: anything an engine costs above this
 * is the engine's own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync, openSync, closeSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ContainerRef, DnsEndpoint, Engine, MemorySample, RunSpec, Target } from './target.js';
import { deleteNetns, killPids, makeHostLab, must, netnsPathOf, pidsInNetns, run, sleep } from '../exec.js';

const LAB = 'cvb-fl';
const DIR = '/tmp/cvb-floor';
const CLIENTS = fileURLToPath(new URL('../clients/', import.meta.url));

interface FloorNet {
  index: number;
  bridge: string;
  prefix: string; // "10.150.3"
  nextHost: number;
}

interface FloorCtr {
  ref: ContainerRef;
  netns: string;
  proc: ChildProcess;
  links: Map<string, { hostIf: string; ip: string }>; // network -> host-side veth
  publishTable?: string;
  dns?: ChildProcess;
}

export class FloorEngine implements Engine, Target {
  readonly name = 'floor';
  readonly labNetns = netnsPathOf(LAB);
  readonly hostAddress = '10.99.0.1';
  private readonly nets = new Map<string, FloorNet>();
  private readonly ctrs = new Map<string, FloorCtr>();
  private netCounter = 0;
  private ctrCounter = 0;

  async setup(): Promise<void> {
    await this.teardown();
    mkdirSync(join(DIR, 'www'), { recursive: true });
    writeFileSync(join(DIR, 'www/index.html'), '<h1>floor</h1>\n');
    // A 32 MB sparse file of zeros for the throughput test (busybox httpd reads it like any file).
    const fd = openSync(join(DIR, 'www/big'), 'w');
    ftruncateSync(fd, 32 << 20);
    closeSync(fd);
    await makeHostLab(LAB);
    await must('nsenter', [`--net=${this.labNetns}`, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  }

  targets(): { ready: Target[]; unavailable: Record<string, string> } {
    return { ready: [this], unavailable: {} };
  }

  async describe(): Promise<string> {
    const ip = (await run('ip', ['-V'])).stdout.trim();
    const nft = (await run('nft', ['--version'])).stdout.trim();
    return `hand-made kernel objects from Node ${process.version}: ${ip}, ${nft}`;
  }

  async memory(): Promise<MemorySample | undefined> {
    return undefined; // no engine, nothing resident
  }

  async teardown(): Promise<void> {
    for (const c of this.ctrs.values()) {
      c.proc.kill('SIGKILL');
      c.dns?.kill('SIGKILL');
    }
    const leftovers = (await run('ip', ['netns', 'list'])).stdout
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter((n) => n === LAB || n.startsWith(`${LAB}-`));
    await killPids(pidsInNetns(leftovers.map(netnsPathOf)));
    // Container netns first, then the lab (bridges, veths and nft tables go with it).
    await deleteNetns(...leftovers.filter((n) => n !== LAB), LAB);
    this.ctrs.clear();
    this.nets.clear();
    rmSync(DIR, { recursive: true, force: true });
  }

  private ipBatch(netns: string, lines: string[]): Promise<string> {
    // nsenter --net only switches the netns; `ip -n` would also unshare the mount namespace,
    // which makes `netns add` bind mounts vanish and costs more as mounts grow.
    return must('nsenter', [`--net=${netnsPathOf(netns)}`, 'ip', '-batch', '-'], { input: lines.join('\n') + '\n' });
  }

  private nft(script: string): Promise<string> {
    return must('nsenter', [`--net=${this.labNetns}`, 'nft', '-f', '-'], { input: script });
  }

  async createNetwork(name: string): Promise<void> {
    if (this.nets.has(name)) throw new Error(`network with name ${name} already exists`);
    const index = this.netCounter++;
    const prefix = `10.${150 + (index >> 8)}.${index & 255}`;
    const bridge = `fb${index}`;
    await this.ipBatch(LAB, [`link add ${bridge} type bridge`, `addr add ${prefix}.1/24 dev ${bridge}`, `link set ${bridge} up`]);
    await this.nft(
      `table ip cvbnet${index} {\n` +
        `  chain postrouting { type nat hook postrouting priority srcnat; ip saddr ${prefix}.0/24 oifname != "${bridge}" masquerade; }\n` +
        `  chain forward { type filter hook forward priority filter; iifname "${bridge}" accept; oifname "${bridge}" ct state established,related accept; }\n` +
        `}\n`,
    );
    this.nets.set(name, { index, bridge, prefix, nextHost: 2 });
  }

  async removeNetwork(name: string): Promise<void> {
    const n = this.nets.get(name);
    if (!n) throw new Error(`network ${name} not found`);
    await this.ipBatch(LAB, [`link del ${n.bridge}`]);
    await this.nft(`delete table ip cvbnet${n.index}\n`);
    this.nets.delete(name);
  }

  private attachLines(n: FloorNet, hostIf: string, ifname: string, netns: string): { lab: string; inside: string[]; ip: string } {
    const ip = `${n.prefix}.${n.nextHost++}`;
    return {
      lab: `link add ${hostIf} master ${n.bridge} up type veth peer name ${ifname} netns ${netns}`,
      inside: [`addr add ${ip}/24 dev ${ifname}`, `link set ${ifname} up`],
      ip,
    };
  }

  async runContainer(spec: RunSpec): Promise<ContainerRef> {
    const i = this.ctrCounter++;
    const netns = `${LAB}-c${i}`;
    const labLines = [`netns add ${netns}`];
    const inside = ['link set lo up'];
    const links = new Map<string, { hostIf: string; ip: string }>();
    if (spec.network !== 'none') {
      const n = this.nets.get(spec.network);
      if (!n) throw new Error(`network ${spec.network} not found`);
      const a = this.attachLines(n, `vf${i}`, 'eth0', netns);
      labLines.push(a.lab);
      inside.push(...a.inside, `route add default via ${n.prefix}.1`);
      links.set(spec.network, { hostIf: `vf${i}`, ip: a.ip });
    }
    await this.ipBatch(LAB, labLines);
    await this.ipBatch(netns, inside);
    let publishTable: string | undefined;
    if (spec.publish) {
      const ip = [...links.values()][0]?.ip;
      if (!ip) throw new Error('publishing needs a network');
      publishTable = `cvbpub${i}`;
      const rule = `fib daddr type local tcp dport ${spec.publish.hostPort} dnat to ${ip}:${spec.publish.containerPort}`;
      await this.nft(
        `table ip ${publishTable} {\n` +
          `  chain prerouting { type nat hook prerouting priority dstnat; ${rule}; }\n` +
          `  chain output { type nat hook output priority -100; ${rule}; }\n` +
          `}\n`,
      );
    }
    // The "container" process: httpd for the nginx stand-in, otherwise a sleeper.
    const argv = spec.image === 'nginx'
      ? ['busybox', 'httpd', '-f', '-p', String(spec.publish?.containerPort ?? 80), '-h', join(DIR, 'www')]
      : ['sleep', '1000000'];
    const proc = spawn('nsenter', [`--net=${netnsPathOf(netns)}`, ...argv], { stdio: 'ignore' });
    await new Promise<void>((resolve, reject) => {
      proc.once('spawn', () => resolve());
      proc.once('error', reject);
    });
    const ref = { id: String(i), name: spec.name };
    const c: FloorCtr = { ref, netns, proc, links };
    if (publishTable) c.publishTable = publishTable;
    this.ctrs.set(ref.id, c);
    return ref;
  }

  private ctr(ref: ContainerRef): FloorCtr {
    const c = this.ctrs.get(ref.id);
    if (!c) throw new Error(`no such container: ${ref.name}`);
    return c;
  }

  async removeContainer(ref: ContainerRef): Promise<void> {
    const c = this.ctr(ref);
    const exited = new Promise<void>((r) => (c.proc.exitCode !== null || c.proc.signalCode !== null ? r() : c.proc.once('exit', () => r())));
    c.proc.kill('SIGKILL');
    c.dns?.kill('SIGKILL');
    await exited;
    // Unmounting the netns takes its veth ends (and so the bridge ports) with it.
    await must('ip', ['netns', 'del', c.netns]);
    if (c.publishTable) await this.nft(`delete table ip ${c.publishTable}\n`);
    this.ctrs.delete(ref.id);
  }

  async connect(network: string, ref: ContainerRef): Promise<void> {
    const c = this.ctr(ref);
    const n = this.nets.get(network);
    if (!n) throw new Error(`network ${network} not found`);
    if (c.links.has(network)) throw new Error(`endpoint with name ${ref.name} already exists in network ${network}`);
    const hostIf = `vg${ref.id}x${n.index}`.slice(0, 15);
    const a = this.attachLines(n, hostIf, `eth${c.links.size}`, c.netns);
    await this.ipBatch(LAB, [a.lab]);
    await this.ipBatch(c.netns, a.inside);
    c.links.set(network, { hostIf, ip: a.ip });
  }

  async disconnect(network: string, ref: ContainerRef): Promise<void> {
    const c = this.ctr(ref);
    const l = c.links.get(network);
    if (!l) throw new Error(`container ${ref.name} is not connected to network ${network}`);
    await this.ipBatch(LAB, [`link del ${l.hostIf}`]);
    c.links.delete(network);
  }

  async roundTrip(): Promise<void> {
    // The floor of any CLI written in Node: starting node itself.
    await must(process.execPath, ['-e', '0']);
  }

  async netnsPath(ref: ContainerRef): Promise<string> {
    return netnsPathOf(this.ctr(ref).netns);
  }

  async address(ref: ContainerRef, network: string): Promise<string> {
    const l = this.ctr(ref).links.get(network);
    if (!l) throw new Error(`container ${ref.name} is not on ${network}`);
    return l.ip;
  }

  /** Starts the least-work DNS responder on 127.0.0.11 inside `from`, answering with `to`'s address. */
  async dnsEndpoint(from: ContainerRef, to: ContainerRef, network: string): Promise<DnsEndpoint> {
    const c = this.ctr(from);
    if (!c.dns) {
      const answer = await this.address(to, network);
      const proc = spawn('nsenter', [`--net=${netnsPathOf(c.netns)}`, process.execPath, join(CLIENTS, 'dns-floor-server.js'), '127.0.0.11', answer], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      c.dns = proc;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('floor DNS responder did not start')), 10_000);
        proc.stdout!.once('data', () => {
          clearTimeout(timer);
          resolve();
        });
        proc.once('exit', (code) => reject(new Error(`floor DNS responder exited ${code}`)));
      });
      await sleep(10);
    }
    return { server: '127.0.0.11', name: to.name };
  }
}
