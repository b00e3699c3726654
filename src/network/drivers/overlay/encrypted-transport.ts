/**
 * Which mechanism carries `--opt encrypted` overlays on this node, chosen
 * once by asking the kernel (src/kernel/xfrm.ts probeEsp): IPsec ESP where
 * the kernel has it (esp.ts, as Docker), else userspace WireGuard
 * (wireguard.ts). This machine's kernel has no ESP, so wireguard-go is used
 * here; `network inspect` shows the choice (`com.cove.network.encryption`)
 * and, when ESP was refused, why (`com.cove.network.encryption.esp`).
 * COVE_ENCRYPTION=wireguard-go skips the probe (never forces ESP on a kernel
 * without it: the probe must agree).
 */
import type { Logger } from '../../../common/log.js';
import type { EspProbe } from '../../../kernel/xfrm.js';
import type { PeerNode, UnderlayTransport } from './transport.js';

export class EncryptedTransport implements UnderlayTransport {
  private chosen: Promise<UnderlayTransport> | undefined;
  private current: UnderlayTransport | undefined;
  private probe: EspProbe | undefined;

  constructor(
    private readonly esp: UnderlayTransport,
    private readonly wireguard: UnderlayTransport,
    private readonly probeEsp: () => Promise<EspProbe>,
    private readonly log?: Logger,
    private readonly preferWireguard = false,
  ) {}

  get name(): string {
    return this.current?.name ?? 'encrypted';
  }

  /** The transport encrypted networks use on this node (probes the kernel the first time). */
  choose(): Promise<UnderlayTransport> {
    this.chosen ??= (async () => {
      this.probe = this.preferWireguard
        ? { available: false, reason: 'COVE_ENCRYPTION=wireguard-go' }
        : await this.probeEsp();
      this.current = this.probe.available ? this.esp : this.wireguard;
      this.log?.info(
        { transport: this.current.name, ...(this.probe.available ? {} : { esp: this.probe.reason }) },
        'encrypted overlays: transport chosen',
      );
      return this.current;
    })();
    return this.chosen;
  }

  async local(self: PeerNode): Promise<{ address: string; mtu: number }> {
    return (await this.choose()).local(self);
  }

  onRemotesChanged(cb: () => void): void {
    this.esp.onRemotesChanged?.(cb);
    this.wireguard.onRemotesChanged?.(cb);
  }

  remote(peer: PeerNode): string | undefined {
    // Only called for a network that is up, so after local() chose.
    return (this.current ?? this.wireguard).remote(peer);
  }

  async setNetworkPeers(net: { id: string; vni: number }, peers: PeerNode[]): Promise<void> {
    await (await this.choose()).setNetworkPeers?.(net, peers);
  }

  releaseNetwork(networkId: string): void {
    this.current?.releaseNetwork?.(networkId);
  }

  describe(): Record<string, string> {
    const d = this.current?.describe?.() ?? {};
    if (this.probe && !this.probe.available) d['com.cove.network.encryption.esp'] = `unavailable: ${this.probe.reason}`;
    return d;
  }

  setCluster(c: Parameters<NonNullable<UnderlayTransport['setCluster']>>[0]): void {
    // Both follow the store: the wireguard transport also runs the managers' rotation schedule, which ESP needs too.
    this.esp.setCluster?.(c);
    this.wireguard.setCluster?.(c);
  }
}
