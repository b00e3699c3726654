/**
 * The kernel floor: the same kernel objects an engine makes, made by hand as
 * cheaply as this machine allows from Node. Lab-side commands go through one
 * long-lived `ip -force -batch -` co-process and rules through one `nft -i`
 * co-process (one atomic transaction per line), so no process start is paid
 * for them. Per network: bridge, address, up (one ip batch) and a table with
 * masquerade + forward rules (one nft transaction). Per container: netns add
 * and a veth made directly in the container netns on the bridge (one ip batch
 * in the lab), one `ip -batch` process inside the container netns (lo,
 * address, eth0 up, default route; `ip` cannot switch netns per line) and the
 * process itself (`nsenter --net sleep`). Published ports: one nft transaction
 * with a DNAT table. No state, no API, no images: anything an engine costs
 * above this is the engine's own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmdirSync,
  rmSync,
  writeFileSync,
  openSync,
  closeSync,
  ftruncateSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ContainerRef, DnsEndpoint, Engine, MemorySample, RunSpec, Target } from './target.js';
import { IpCoprocess, NftCoprocess } from './coprocess.js';
import { deleteNetns, killPids, makeHostLab, must, netnsPathOf, pidsInNetns, run, sleep } from '../exec.js';

const LAB = 'cvb-fl';
const DIR = '/tmp/cvb-floor';
/** The runtime floor's runc state and cgroup parent (removed at teardown). */
const RUNC_ROOT = join(DIR, 'runc');
const CGROUP_PARENT = 'cvb-floor';
const CLIENTS = fileURLToPath(new URL('../clients/', import.meta.url));

interface FloorNet {
  index: number;
  bridge: string;
  base: number; // network address as a 32-bit number
  bits: number; // prefix length
  nextHost: number;
}

const ipOf = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
const numOf = (ip: string) => ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);

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
  private labIp: IpCoprocess | undefined;
  private labNft: NftCoprocess | undefined;

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
    this.labIp = new IpCoprocess(this.labNetns);
    this.labNft = new NftCoprocess(this.labNetns);
    await this.labIp.run(['link set lo up']);
    await this.labNft.run(['add table ip cvbwarm', 'delete table ip cvbwarm']);
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
    this.labIp?.close();
    this.labNft?.close();
    this.labIp = undefined;
    this.labNft = undefined;
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
    await this.runtimeTeardown();
    rmSync(DIR, { recursive: true, force: true });
  }

  /**
   * The OCI runtime alone: `runc run -d` of a bundle prepared once (static busybox as the whole rootfs, runc's own
   * default spec: new namespaces, a netns with only lo), timed until runc returns with the process running, then
   * deleted untimed. Every engine built on runc pays this for a container start before any work of its own (image,
   * rootfs mount, monitor, network, state, API): the floor under issue #10's `run` target.
   */
  async runtimeRun(): Promise<number> {
    const bundle = join(DIR, 'bundle');
    if (!this.bundleReady) {
      mkdirSync(join(bundle, 'rootfs'), { recursive: true });
      copyFileSync('/bin/busybox', join(bundle, 'rootfs/busybox'));
      await must('runc', ['spec', '--bundle', bundle]);
      const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
        process: { terminal: boolean; args: string[] };
        root: { readonly: boolean };
        linux: { cgroupsPath?: string };
      };
      spec.process.terminal = false;
      spec.process.args = ['/busybox', 'sleep', '1000000'];
      spec.linux.cgroupsPath = `/${CGROUP_PARENT}/rt`;
      writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
      this.bundleReady = true;
    }
    const id = `cvbrt${this.runtimeCounter++}`;
    const t0 = performance.now();
    // stdio ignored: a detached container keeps runc's stdio open, so pipes would never close.
    const code = await new Promise<number | null>((resolve, reject) => {
      const p = spawn('runc', ['--root', RUNC_ROOT, 'run', '-d', '--bundle', bundle, id], { stdio: 'ignore' });
      p.once('error', reject);
      p.once('exit', (c) => resolve(c));
    });
    const ms = performance.now() - t0;
    await run('runc', ['--root', RUNC_ROOT, 'delete', '-f', id]);
    if (code !== 0) throw new Error(`runc run -d exited ${code}`);
    return ms;
  }

  private bundleReady = false;
  private runtimeCounter = 0;

  /** Containers of the runtime floor left by a failed run, then their cgroup parent in every hierarchy. */
  private async runtimeTeardown(): Promise<void> {
    const list = await run('runc', ['--root', RUNC_ROOT, 'list', '-q']);
    for (const id of list.code === 0 ? list.stdout.split('\n').filter(Boolean) : [])
      await run('runc', ['--root', RUNC_ROOT, 'delete', '-f', id]);
    this.bundleReady = false;
    let hierarchies: string[] = [];
    try {
      hierarchies = readdirSync('/sys/fs/cgroup');
    } catch {
      return;
    }
    for (const h of ['', ...hierarchies.map((x) => `${x}/`)]) {
      try {
        rmdirSync(`/sys/fs/cgroup/${h}${CGROUP_PARENT}`);
      } catch {
        // not there (or not a hierarchy)
      }
    }
  }

  /** Lab-side ip commands, through the co-process. */
  private labBatch(lines: string[]): Promise<void> {
    if (!this.labIp) throw new Error('floor not set up');
    return this.labIp.run(lines);
  }

  /** One ip -batch process inside a container netns (nsenter --net: `ip -n` would also unshare the mount namespace). */
  private insideBatch(netns: string, lines: string[]): Promise<string> {
    return must('nsenter', [`--net=${netnsPathOf(netns)}`, 'ip', '-batch', '-'], { input: lines.join('\n') + '\n' });
  }

  /** One nft transaction (one line of nft -i). */
  private nft(commands: string[]): Promise<void> {
    if (!this.labNft) throw new Error('floor not set up');
    return this.labNft.run([commands.join('; ')]);
  }

  async createNetwork(name: string, subnet?: string): Promise<void> {
    if (this.nets.has(name)) throw new Error(`network with name ${name} already exists`);
    const index = this.netCounter++;
    const [addr, len] = subnet ? subnet.split('/') : [`10.${150 + (index >> 8)}.${index & 255}.0`, '24'];
    const bits = Number(len);
    const base = numOf(addr!);
    const cidr = `${ipOf(base)}/${bits}`;
    const bridge = `fb${index}`;
    await this.labBatch([
      `link add ${bridge} type bridge`,
      `addr add ${ipOf(base + 1)}/${bits} dev ${bridge}`,
      `link set ${bridge} up`,
    ]);
    const t = `ip cvbnet${index}`;
    await this.nft([
      `add table ${t}`,
      `add chain ${t} postrouting { type nat hook postrouting priority srcnat ; }`,
      `add rule ${t} postrouting ip saddr ${cidr} oifname != "${bridge}" masquerade`,
      `add chain ${t} forward { type filter hook forward priority filter ; }`,
      `add rule ${t} forward iifname "${bridge}" accept`,
      `add rule ${t} forward oifname "${bridge}" ct state established,related accept`,
    ]);
    this.nets.set(name, { index, bridge, base, bits, nextHost: 2 });
  }

  async removeNetwork(name: string): Promise<void> {
    const n = this.nets.get(name);
    if (!n) throw new Error(`network ${name} not found`);
    await this.labBatch([`link del ${n.bridge}`]);
    await this.nft([`delete table ip cvbnet${n.index}`]);
    this.nets.delete(name);
  }

  private attachLines(
    n: FloorNet,
    hostIf: string,
    ifname: string,
    netns: string,
  ): { lab: string; inside: string[]; ip: string } {
    const ip = ipOf(n.base + n.nextHost++);
    return {
      lab: `link add ${hostIf} master ${n.bridge} up type veth peer name ${ifname} netns ${netns}`,
      inside: [`addr add ${ip}/${n.bits} dev ${ifname}`, `link set ${ifname} up`],
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
      inside.push(...a.inside, `route add default via ${ipOf(n.base + 1)}`);
      links.set(spec.network, { hostIf: `vf${i}`, ip: a.ip });
    }
    await this.labBatch(labLines);
    await this.insideBatch(netns, inside);
    let publishTable: string | undefined;
    if (spec.publish) {
      const ip = [...links.values()][0]?.ip;
      if (!ip) throw new Error('publishing needs a network');
      publishTable = `cvbpub${i}`;
      const rule = `fib daddr type local tcp dport ${spec.publish.hostPort} dnat to ${ip}:${spec.publish.containerPort}`;
      const t = `ip ${publishTable}`;
      await this.nft([
        `add table ${t}`,
        `add chain ${t} prerouting { type nat hook prerouting priority dstnat ; }`,
        `add rule ${t} prerouting ${rule}`,
        `add chain ${t} output { type nat hook output priority -100 ; }`,
        `add rule ${t} output ${rule}`,
      ]);
    }
    // The "container" process: httpd for the nginx stand-in, otherwise a sleeper.
    const argv =
      spec.image === 'nginx'
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
    const exited = new Promise<void>((r) =>
      c.proc.exitCode !== null || c.proc.signalCode !== null ? r() : c.proc.once('exit', () => r()),
    );
    c.proc.kill('SIGKILL');
    c.dns?.kill('SIGKILL');
    await exited;
    // The host ends first: deleting a veth frees its bridge port at once, while a netns's links go only when the
    // kernel's namespace clean-up runs later (a bridge has at most 1024 ports: N=1000 after N=500 hit "Exchange full").
    await this.labBatch([...[...c.links.values()].map((l) => `link del ${l.hostIf}`), `netns del ${c.netns}`]);
    if (c.publishTable) await this.nft([`delete table ip ${c.publishTable}`]);
    this.ctrs.delete(ref.id);
  }

  async connect(network: string, ref: ContainerRef): Promise<void> {
    const c = this.ctr(ref);
    const n = this.nets.get(network);
    if (!n) throw new Error(`network ${network} not found`);
    if (c.links.has(network)) throw new Error(`endpoint with name ${ref.name} already exists in network ${network}`);
    const hostIf = `vg${ref.id}x${n.index}`.slice(0, 15);
    const a = this.attachLines(n, hostIf, `eth${c.links.size}`, c.netns);
    await this.labBatch([a.lab]);
    await this.insideBatch(c.netns, a.inside);
    c.links.set(network, { hostIf, ip: a.ip });
  }

  async disconnect(network: string, ref: ContainerRef): Promise<void> {
    const c = this.ctr(ref);
    const l = c.links.get(network);
    if (!l) throw new Error(`container ${ref.name} is not connected to network ${network}`);
    await this.labBatch([`link del ${l.hostIf}`]);
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
      const proc = spawn(
        'nsenter',
        [`--net=${netnsPathOf(c.netns)}`, process.execPath, join(CLIENTS, 'dns-floor-server.js'), '127.0.0.11', answer],
        {
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
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
