/**
 * A container's networks: connect/disconnect (on its sandbox while it runs, in its record always) and the
 * NetworkSettings that inspect shows.
 */
import { Forbidden } from '../../../common/errors.js';
import type { DockerEndpointSettings, DockerNetworkSettings } from '../../../network/types.js';
import { checkEndpointSettings } from '../../../network/endpoint.js';
import { endpointRequest } from '../spec.js';
import { ContainerCore, type ContainerRecord } from './core.js';

export class NetworkOps {
  constructor(private readonly core: ContainerCore) {}

  async connectNetwork(idOrName: string, network: string, settings: DockerEndpointSettings): Promise<void> {
    const r = await this.core.get(idOrName);
    const mode = r.HostConfig.NetworkMode ?? 'bridge';
    const net = await this.core.networks.resolveNetwork(network);
    if (mode === 'host' || net.name === 'host')
      throw new Forbidden('container cannot be disconnected from host network or connected to host network');
    if (mode === 'none' || mode.startsWith('container:') || net.name === 'none') {
      throw new Forbidden(
        'container sharing network namespace with another container or host cannot be connected to any other network',
      );
    }
    checkEndpointSettings(settings);
    const already = Object.entries(r.EndpointsConfig).find(
      ([n, s]) => n === net.name || n === net.id || s.NetworkID === net.id,
    );
    if (already)
      throw new Forbidden(`endpoint with name ${r.Name.replace(/^\//, '')} already exists in network ${net.name}`);
    if (r.State.Running) {
      await this.core.networks.connect(r.Id, endpointRequest(net.name, settings));
    }
    await this.core.update(r.Id, (x) => {
      x.EndpointsConfig[net.name] = { ...structuredClone(settings ?? {}), NetworkID: net.id };
    });
  }

  async disconnectNetwork(idOrName: string, network: string, force: boolean): Promise<void> {
    const r = await this.core.get(idOrName);
    const mode = r.HostConfig.NetworkMode ?? 'bridge';
    let net: { id: string; name: string };
    try {
      net = await this.core.networks.resolveNetwork(network);
    } catch (e) {
      if (!force) throw e;
      net = { id: network, name: network };
    }
    if (mode === 'host' || net.name === 'host')
      throw new Forbidden('container cannot be disconnected from host network or connected to host network');
    const entry = Object.entries(r.EndpointsConfig).find(
      ([n, s]) => n === net.name || n === net.id || s.NetworkID === net.id,
    );
    if (!entry) {
      if (mode === 'none' || mode.startsWith('container:')) {
        throw new Forbidden(
          'container sharing network namespace with another container or host cannot be connected to any other network',
        );
      }
      throw new Forbidden(`container ${r.Id} is not connected to network ${network}`);
    }
    if (r.State.Running) await this.core.networks.disconnect(r.Id, net.name, force);
    await this.core.update(r.Id, (x) => {
      delete x.EndpointsConfig[entry[0]];
    });
  }

  async settingsOf(r: ContainerRecord): Promise<DockerNetworkSettings> {
    if (r.State.Running) {
      const live = await this.core.networks.networkSettings(r.Id).catch(() => undefined);
      if (live) return live;
    }
    const networks: Record<string, DockerEndpointSettings> = {};
    for (const [name, s] of Object.entries(r.EndpointsConfig)) {
      networks[name] = {
        IPAMConfig: s.IPAMConfig ?? null,
        Links: s.Links ?? null,
        Aliases: s.Aliases ?? null,
        MacAddress: s.MacAddress ?? '',
        DriverOpts: s.DriverOpts ?? null,
        GwPriority: s.GwPriority ?? 0,
        NetworkID: s.NetworkID ?? '',
        EndpointID: '',
        Gateway: '',
        IPAddress: '',
        IPPrefixLen: 0,
        IPv6Gateway: '',
        GlobalIPv6Address: '',
        GlobalIPv6PrefixLen: 0,
        DNSNames: null,
      };
    }
    const mode = r.HostConfig.NetworkMode ?? 'bridge';
    if ((mode === 'host' || mode === 'none') && !networks[mode]) {
      const net = await this.core.networks.resolveNetwork(mode).catch(() => undefined);
      networks[mode] = {
        IPAMConfig: null,
        Links: null,
        Aliases: null,
        MacAddress: '',
        DriverOpts: null,
        GwPriority: 0,
        NetworkID: net?.id ?? '',
        EndpointID: '',
        Gateway: '',
        IPAddress: '',
        IPPrefixLen: 0,
        IPv6Gateway: '',
        GlobalIPv6Address: '',
        GlobalIPv6PrefixLen: 0,
        DNSNames: null,
      };
    }
    return {
      Bridge: '',
      SandboxID: '',
      SandboxKey: '',
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
      Networks: networks,
    };
  }
}
