/**
 * Sandboxes: a container's netns with its endpoints, DNS sockets and name files (hosts, resolv.conf),
 * made and torn down all-or-nothing; connect/disconnect, rename, and the NetworkSettings of inspect.
 */
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { newId, shortId } from '../../common/ids.js';
import { Conflict, Forbidden, InvalidParameter, NotFound } from '../../common/errors.js';
import { GWBRIDGE } from '../swarm-scope.js';
import type { DockerNetworkSettings, EndpointRequest, SandboxHandle, SandboxOptions, SandboxSpec } from '../types.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord } from '../records.js';
import { hasEmbeddedDns } from '../network.js';
import { networkSettings } from '../endpoint.js';
import {
  isLoopback,
  readHostResolv,
  renderHosts,
  renderResolvConf,
  sandboxFilePaths,
  writeInPlace,
} from '../sandbox-files.js';
import { runUndos, type ControllerCore, type Undo } from './core.js';
import { phases } from '../../common/phases.js';

export class SandboxOps {
  constructor(private readonly core: ControllerCore) {}

  /** Called once a sandbox has joined networks, before its container runs (services: the VIP balancing table). */
  private sandboxJoinHook:
    ((containerId: string, netnsPath: string, networkIds: string[]) => Promise<void>) | undefined;

  setSandboxJoinHook(
    fn: ((containerId: string, netnsPath: string, networkIds: string[]) => Promise<void>) | undefined,
  ): void {
    this.sandboxJoinHook = fn;
  }

  /** The hook never fails a join: what it sets up, the services' own reconcile loop sets up too, moments later. */
  async runSandboxJoinHook(sb: SandboxRecord, networkIds: string[]): Promise<void> {
    if (!this.sandboxJoinHook || !sb.netnsPath) return;
    await this.sandboxJoinHook(sb.containerId, sb.netnsPath, networkIds).catch((e) =>
      this.core.log.warn({ container: shortId(sb.containerId), err: (e as Error).message }, 'sandbox join hook failed'),
    );
  }

  /** Writes hosts, hostname and resolv.conf of the sandbox (in place). */
  async writeFiles(sb: SandboxRecord): Promise<void> {
    const paths = sandboxFilePaths(sb.dir);
    const joined = await this.core.sandboxNetworks(sb);
    const hostResolv = readHostResolv(this.core.opts.hostResolvConf);
    const embedded = sb.netnsPath !== null && joined.some((j) => hasEmbeddedDns(j.net));
    const addresses: string[] = [];
    for (const { ep } of joined) {
      if (ep.ipv4) addresses.push(ep.ipv4.split('/')[0]!);
      if (ep.ipv6) addresses.push(ep.ipv6.split('/')[0]!);
    }
    const host = sb.netnsPath === null;
    let hostFile: string | undefined;
    if (host) {
      try {
        hostFile = readFileSync(this.core.opts.hostHosts ?? '/etc/hosts', 'utf8');
      } catch {
        hostFile = '127.0.0.1\tlocalhost\n';
      }
    }
    // --add-host NAME:host-gateway means the default bridge's gateway, like Docker.
    const bridgeGw = (await this.core.networks.list())
      .find((n) => n.value.defaultBridge)
      ?.value.subnets.find((s) => s.family === 4)?.gateway;
    const extraHosts = sb.extraHosts.map((e) => (bridgeGw ? e.replace(/([:=])host-gateway$/, `$1${bridgeGw}`) : e));
    writeInPlace(
      paths.hostsPath,
      renderHosts({
        hostname: sb.hostname,
        domainname: sb.domainname,
        addresses,
        extraHosts,
        ipv6: joined.some((j) => j.net.enableIPv6),
        ...(hostFile !== undefined ? { hostFile } : {}),
      }),
    );
    writeInPlace(paths.hostnamePath, `${sb.hostname}\n`);
    let resolv: string;
    if (
      host &&
      sb.dns.length === 0 &&
      sb.dnsSearch.length === 0 &&
      sb.dnsOptions.length === 0 &&
      !this.core.config.dns?.length
    ) {
      resolv = renderResolvConf({
        nameservers: [],
        search: [],
        options: [],
        embedded: false,
        verbatim: hostResolv.raw,
      });
    } else {
      let servers = sb.dns.length
        ? sb.dns
        : this.core.config.dns?.length
          ? this.core.config.dns
          : hostResolv.nameservers;
      // A loopback resolver of the host is unreachable from a container's own netns (Docker drops it too).
      if (!host && !embedded) servers = servers.filter((s) => !isLoopback(s));
      resolv = renderResolvConf({
        nameservers: servers,
        search: sb.dnsSearch.length ? sb.dnsSearch : hostResolv.search,
        options: sb.dnsOptions.length ? sb.dnsOptions : embedded ? [] : hostResolv.options,
        embedded,
      });
    }
    writeInPlace(paths.resolvConfPath, resolv);
  }

  /** Normalizes the networks a sandbox joins, checking the host/none rules. */
  async resolveEndpointRequests(spec: SandboxSpec): Promise<Array<{ req: EndpointRequest; net: NetworkRecord }>> {
    const mode = spec.networkMode || 'default';
    const reqs: EndpointRequest[] =
      spec.endpoints.length > 0 ? spec.endpoints : [{ network: mode === 'default' ? 'bridge' : mode }];
    const out: Array<{ req: EndpointRequest; net: NetworkRecord }> = [];
    for (const r of reqs) {
      const net = await this.core.findNetwork(r.network === 'default' ? 'bridge' : r.network);
      if (out.some((o) => o.net.id === net.id)) continue;
      out.push({ req: r, net });
    }
    const special = out.find((o) => o.net.driver === 'host' || o.net.driver === 'null');
    if (special && out.length > 1) {
      if (special.net.driver === 'host')
        throw new InvalidParameter(
          'container sharing network namespace with another container or host cannot join any other network',
        );
      throw new InvalidParameter(
        'container cannot be connected to multiple networks with one of the networks in private (none) mode',
      );
    }
    return out;
  }

  async createSandbox(spec: SandboxSpec, opts: SandboxOptions = {}): Promise<SandboxHandle> {
    await this.core.init();
    if (spec.networkMode.startsWith('container:')) return this.joinContainerSandbox(spec);
    return this.core.mutex.run(`sb:${spec.containerId}`, async () => {
      if (await this.core.getSandbox(spec.containerId))
        throw new Conflict(`sandbox for container ${spec.containerId} already exists`);
      const joins = await this.resolveEndpointRequests(spec);
      const isHost = joins.length === 1 && joins[0]!.net.driver === 'host';
      const id = newId();
      const sb: SandboxRecord = {
        id,
        containerId: spec.containerId,
        containerName: spec.containerName.replace(/^\//, ''),
        hostname: spec.hostname,
        domainname: spec.domainname,
        networkMode: spec.networkMode || 'default',
        netnsPath: isHost ? null : join(this.core.config.execRoot, 'netns', shortId(id)),
        dir: spec.dir,
        dns: [...spec.dns],
        dnsSearch: [...spec.dnsSearch],
        dnsOptions: [...spec.dnsOptions],
        extraHosts: [...spec.extraHosts],
        portBindings: isHost ? [] : [...spec.portBindings],
        exposedPorts: [...spec.exposedPorts],
        publishAllPorts: isHost ? false : spec.publishAllPorts,
        endpoints: [],
        ...(spec.swarmTask ? { swarmTask: true } : {}),
      };
      if (isHost && (spec.portBindings.length > 0 || spec.publishAllPorts)) {
        this.core.log.warn(
          { container: shortId(spec.containerId) },
          'Published ports are discarded when using host network mode',
        );
      }
      // Where the time of a sandbox goes (on a swarm network logged at info, read by bench/overlay.ts; else debug).
      const swarm = joins.some((j) => j.net.scope === 'swarm');
      const t = phases();
      const undos: Undo[] = [];
      // The sandbox record is written last, in one put: a crash before it leaves endpoints whose
      // sandbox is unknown and a netns nobody owns, and restore() removes exactly those.
      try {
        if (sb.netnsPath) {
          const k = await this.core.getKernel();
          const path = sb.netnsPath;
          await k.createNetns(path, !joins.some((j) => j.net.enableIPv6));
          undos.push(() => k.deleteNetns(path));
          t.mark('netnsCreate');
          if (opts.onNamespace) {
            // The namespace and the name files (final once the endpoints are in) are all the runtime's
            // create needs; the rest goes on when the caller says (it may have more urgent work first).
            await this.writeFiles(sb);
            await opts.onNamespace(this.core.handle(sb));
            t.mark('callerFirst');
          }
          await k.loopbackUp(path);
        }
        t.mark('netns');
        // Only on overlays: a way out through docker_gwbridge (a second interface with the default route), as Docker
        // does. It joins beside the networks' endpoints, not after them: it depends on none of them, and an overlay
        // endpoint spends most of its time waiting for its one cluster write (the address claim and publication).
        const gw = this.core.swarmOps.needsGatewayBridge(joins.map((j) => j.net))
          ? await this.core.findNetwork(GWBRIDGE)
          : undefined;
        const gwJoin = gw
          ? this.core.endpointOps
              .joinEndpoint(sb, gw, { network: gw.id }, `eth${joins.length}`, true, `gateway_${shortId(sb.id)}`)
              .then(
                (ep) => ({ ep }),
                (err: unknown) => ({ err }),
              )
          : undefined;
        let gwEp: EndpointRecord | undefined;
        let gwFailure: { err: unknown } | undefined;
        try {
          for (let i = 0; i < joins.length; i++) {
            const { req, net } = joins[i]!;
            const ep = await this.core.endpointOps.joinEndpoint(sb, net, req, `eth${i}`, i === 0);
            undos.push(() => this.core.endpointOps.leaveEndpoint(sb, ep, net));
            sb.endpoints.push(ep.id);
          }
          t.mark('endpoints');
        } finally {
          // Whatever happened to the others, the gateway's join is settled and, if it joined, undone with them.
          const r = await gwJoin;
          if (r && 'ep' in r && gw) {
            const ep = r.ep;
            undos.push(() => this.core.endpointOps.leaveEndpoint(sb, ep, gw));
            gwEp = ep;
          }
          if (r && 'err' in r) gwFailure = { err: r.err };
        }
        if (gwFailure) throw gwFailure.err;
        if (gwEp) sb.endpoints.push(gwEp.id);
        t.mark('gwbridge');
        await this.core.nameOps.refreshNames(joins.map((j) => j.net.id));
        undos.push(() => this.core.nameOps.refreshNames(joins.map((j) => j.net.id)));
        if (await this.core.nameOps.refreshSandboxResolver(sb)) {
          const dns = await this.core.getDns();
          await dns.attach(sb.id, sb.netnsPath!);
          undos.push(() => dns.detach(sb.id));
        }
        undos.push(() => this.core.resolver.deleteSandbox(sb.id));
        t.mark('names');
        await this.runSandboxJoinHook(
          sb,
          joins.map((j) => j.net.id),
        );
        t.mark('joinHook');
        await this.writeFiles(sb);
        t.mark('files');
        await this.core.sandboxes.put(sb.containerId, sb, 0);
        t.mark('filesAndRecord');
        if (swarm)
          this.core.log.info(
            { container: shortId(sb.containerId), phasesMs: t.done() },
            'sandbox on a swarm network made',
          );
        else this.core.log.debug({ container: shortId(sb.containerId), phases: t.done() }, 'sandbox made');
      } catch (e) {
        await runUndos(undos, this.core.log);
        throw e;
      }
      for (const { net } of joins) {
        this.core.events.publish('network', 'connect', net.id, {
          container: sb.containerId,
          name: net.name,
          type: net.driver,
        });
      }
      return this.core.handle(sb);
    });
  }

  /** --network container:<id>: share that container's sandbox (its netns and name files). */
  async joinContainerSandbox(spec: SandboxSpec): Promise<SandboxHandle> {
    const target = spec.networkMode.slice('container:'.length);
    const all = (await this.core.sandboxes.list()).map((s) => s.value);
    const other =
      all.find((s) => s.containerId === target) ??
      all.find((s) => s.containerName === target.replace(/^\//, '')) ??
      (() => {
        const m = all.filter((s) => s.containerId.startsWith(target));
        return m.length === 1 ? m[0] : undefined;
      })();
    if (!other) throw new Conflict(`cannot join network of a non running container: ${target}`);
    return this.core.handle(other);
  }

  async deleteSandbox(containerId: string): Promise<void> {
    await this.core.init();
    await this.core.mutex.run(`sb:${containerId}`, async () => {
      const sb = await this.core.getSandbox(containerId);
      if (!sb) return;
      await this.teardownSandbox(sb, true);
    });
  }

  async teardownSandbox(sb: SandboxRecord, emit: boolean): Promise<void> {
    if (this.core.dns) await this.core.dns.detach(sb.id);
    this.core.resolver.deleteSandbox(sb.id);
    const joined = await this.core.sandboxNetworks(sb);
    // Also endpoints of this sandbox that never made it into its list (crash while joining).
    const stray = (await this.core.endpoints.listShared())
      .filter((e) => e.value.sandboxId === sb.id && !sb.endpoints.includes(e.value.id))
      .map((e) => structuredClone(e.value) as EndpointRecord);
    const nets = new Map((await this.core.networks.list()).map((n) => [n.id, n.value]));
    for (const { ep, net } of [...joined].reverse()) {
      await this.core.endpointOps.leaveEndpoint(sb, ep, net);
      if (emit)
        this.core.events.publish('network', 'disconnect', net.id, {
          container: sb.containerId,
          name: net.name,
          type: net.driver,
        });
    }
    for (const ep of stray) await this.core.endpointOps.leaveEndpoint(sb, ep, nets.get(ep.networkId));
    if (sb.netnsPath) {
      try {
        await (await this.core.getKernel()).deleteNetns(sb.netnsPath);
      } catch (e) {
        this.core.log.warn({ netns: sb.netnsPath, err: (e as Error).message }, 'deleting netns failed');
      }
    }
    await this.core.sandboxes.delete(sb.containerId);
    await this.core.nameOps.refreshNames(new Set([...joined.map((j) => j.net.id), ...stray.map((e) => e.networkId)]));
  }

  async connect(containerId: string, req: EndpointRequest): Promise<void> {
    await this.core.init();
    await this.core.mutex.run(`sb:${containerId}`, async () => {
      const sb = await this.core.getSandbox(containerId);
      if (!sb) throw new Conflict(`container ${containerId} is not running`);
      const net = await this.core.findNetwork(req.network);
      const joined = await this.core.sandboxNetworks(sb);
      if (sb.netnsPath === null || joined.some((j) => j.net.driver === 'host')) {
        throw new InvalidParameter(
          'container sharing network namespace with another container or host cannot join any other network',
        );
      }
      if (net.driver === 'host')
        throw new InvalidParameter('container cannot be disconnected from host network or connected to host network');
      if (joined.some((j) => j.net.driver === 'null') || net.driver === 'null') {
        throw new InvalidParameter(
          'container cannot be connected to multiple networks with one of the networks in private (none) mode',
        );
      }
      if (joined.some((j) => j.net.id === net.id))
        throw new Forbidden(`endpoint with name ${sb.containerName} already exists in network ${net.name}`);
      const ifName = await this.core.endpointOps.nextIfName(sb);
      const isGw = !joined.some((j) => j.ep.defaultGateway);
      const ep = await this.core.endpointOps.joinEndpoint(sb, net, req, ifName, isGw);
      if (
        isGw &&
        net.scope === 'swarm' &&
        !joined.some((j) => j.net.name === GWBRIDGE) &&
        this.core.swarmOps.needsGatewayBridge([...joined.map((j) => j.net), net])
      ) {
        // An overlay gives no default route: a container with none yet gets docker_gwbridge, as at start.
        try {
          const gw = await this.core.findNetwork(GWBRIDGE);
          const gep = await this.core.endpointOps.joinEndpoint(
            sb,
            gw,
            { network: gw.id },
            await this.core.endpointOps.nextIfNameAfter(sb, [ifName]),
            true,
            `gateway_${shortId(sb.id)}`,
          );
          sb.endpoints.push(gep.id);
        } catch (e) {
          await this.core.endpointOps.leaveEndpoint(sb, ep, net);
          throw e;
        }
      }
      try {
        sb.endpoints.push(ep.id);
        await this.core.sandboxes.update(sb.containerId, (cur) =>
          cur ? { ...cur, endpoints: [...sb.endpoints], pickedPorts: sb.pickedPorts ?? cur.pickedPorts } : cur,
        );
        await this.core.nameOps.refreshNames([net.id]);
        if (await this.core.nameOps.refreshSandboxResolver(sb))
          await (await this.core.getDns()).attach(sb.id, sb.netnsPath);
        await this.runSandboxJoinHook(sb, [...joined.map((j) => j.net.id), net.id]);
        await this.writeFiles(sb);
      } catch (e) {
        await this.core.endpointOps.leaveEndpoint(sb, ep, net);
        sb.endpoints = sb.endpoints.filter((id) => id !== ep.id);
        await this.core.sandboxes.update(sb.containerId, (cur) =>
          cur ? { ...cur, endpoints: [...sb.endpoints] } : cur,
        );
        await this.core.nameOps.refreshNames([net.id]);
        await this.core.nameOps.refreshSandboxResolver(sb);
        throw e;
      }
      this.core.events.publish('network', 'connect', net.id, {
        container: sb.containerId,
        name: net.name,
        type: net.driver,
      });
    });
  }

  async disconnect(containerId: string, network: string, force: boolean): Promise<void> {
    await this.core.init();
    await this.core.mutex.run(`sb:${containerId}`, async () => {
      const sb = await this.core.getSandbox(containerId);
      let net: NetworkRecord;
      try {
        net = await this.core.findNetwork(network);
      } catch (e) {
        if (!(force && e instanceof NotFound && sb)) throw e;
        // Forced disconnect from a network that is gone: drop endpoints whose network no longer exists.
        const joined = await this.core.sandboxNetworks(sb);
        const dangling = sb.endpoints.filter((id) => !joined.some((j) => j.ep.id === id));
        for (const id of dangling) {
          const ep = (await this.core.endpoints.get(id))?.value;
          if (ep) await this.core.endpointOps.leaveEndpoint(sb, ep, undefined);
        }
        sb.endpoints = sb.endpoints.filter((id) => !dangling.includes(id));
        await this.core.sandboxes.update(sb.containerId, (cur) =>
          cur ? { ...cur, endpoints: [...sb.endpoints] } : cur,
        );
        return;
      }
      if (!sb) throw new Forbidden(`container ${containerId} is not connected to network ${net.name}`);
      const joined = await this.core.sandboxNetworks(sb);
      const hit = joined.find((j) => j.net.id === net.id);
      if (!hit) throw new Forbidden(`container ${containerId} is not connected to network ${net.name}`);
      if (net.driver === 'host')
        throw new InvalidParameter('container cannot be disconnected from host network or connected to host network');
      await this.core.endpointOps.leaveEndpoint(sb, hit.ep, net);
      sb.endpoints = sb.endpoints.filter((id) => id !== hit.ep.id);
      // The last overlay gone: so is the way out through docker_gwbridge that came with it.
      const rest = joined.filter((j) => j.ep.id !== hit.ep.id);
      const gwb = rest.find((j) => j.net.name === GWBRIDGE && j.ep.name.startsWith('gateway_'));
      if (gwb && !this.core.swarmOps.needsGatewayBridge(rest.filter((j) => j !== gwb).map((j) => j.net))) {
        await this.core.endpointOps.leaveEndpoint(sb, gwb.ep, gwb.net);
        sb.endpoints = sb.endpoints.filter((id) => id !== gwb.ep.id);
        if (gwb.ep.defaultGateway)
          await this.core.endpointOps.promoteGateway(
            sb,
            rest.filter((j) => j !== gwb),
          );
      }
      await this.core.sandboxes.update(sb.containerId, (cur) => (cur ? { ...cur, endpoints: [...sb.endpoints] } : cur));
      if (hit.ep.defaultGateway)
        await this.core.endpointOps.promoteGateway(
          sb,
          joined.filter((j) => j.ep.id !== hit.ep.id),
        );
      await this.core.nameOps.refreshNames([net.id]);
      if (!(await this.core.nameOps.refreshSandboxResolver(sb)) && this.core.dns) await this.core.dns.detach(sb.id);
      await this.writeFiles(sb);
      this.core.events.publish('network', 'disconnect', net.id, {
        container: sb.containerId,
        name: net.name,
        type: net.driver,
      });
    });
  }

  async networkSettings(containerId: string): Promise<DockerNetworkSettings | undefined> {
    await this.core.init();
    let sb = await this.core.getSandbox(containerId);
    if (!sb) return undefined;
    const joined = await this.core.sandboxNetworks(sb);
    sb = { ...sb };
    const out = networkSettings(
      sb,
      joined.map((j) => j.ep),
      new Map(joined.map((j) => [j.net.id, j.net])),
    );
    // The docker_gwbridge endpoint of an overlay container is not one of its networks to Docker (its published ports are shown).
    if (joined.some((j) => j.net.name === GWBRIDGE && j.ep.name.startsWith('gateway_'))) delete out.Networks[GWBRIDGE];
    return out;
  }

  async renameContainer(containerId: string, newName: string): Promise<void> {
    await this.core.init();
    const name = newName.replace(/^\//, '');
    await this.core.mutex.run(`sb:${containerId}`, async () => {
      const sb = await this.core.getSandbox(containerId);
      if (!sb) return;
      const joined = await this.core.sandboxNetworks(sb);
      for (const { ep, net } of joined) {
        await this.core.mutex.run(`net:${net.id}`, async () => {
          const others = await this.core.endpointsOf(net.id);
          if (others.some((e) => e.name === name && e.id !== ep.id))
            throw new Conflict(`endpoint with name ${name} already exists in network ${net.name}`);
        });
      }
      for (const { ep } of joined) await this.core.endpoints.update(ep.id, (cur) => (cur ? { ...cur, name } : cur));
      await this.core.sandboxes.update(containerId, (cur) => (cur ? { ...cur, containerName: name } : cur));
      await this.core.nameOps.refreshNames(joined.map((j) => j.net.id));
    });
  }
}
