/**
 * The bridge driver's firewall objects (src/network/firewall): what one
 * bridge network owns (owner `net:<id>`) and what one endpoint's published
 * ports own (owner `ports:<endpoint id>`). Pure functions of validated
 * config; the firewall sends only the difference to what the owner had.
 *
 * Docker's semantics, per bridge (the frame dispatches by interface):
 * - in_<bridge> (what may enter the network, by output interface): replies
 *   to connections the containers made; published ports (DNATed, from the
 *   host, other hosts, other networks via a host address, and hairpin);
 *   traffic within the bridge unless icc=false; nothing else: neither other
 *   networks (isolation) nor other hosts reach a container's own address
 *   (like Docker's FORWARD policy DROP + DOCKER chain). Gateway modes relax
 *   this like Docker's com.docker.network.bridge.gateway_mode_ipv4/ipv6:
 *   `routed` (no masquerade; ICMP and the published container ports are
 *   reachable at the container's address), `nat-unprotected` (masquerade,
 *   and every port reachable at the container's address from outside).
 * - out_<bridge> (what may leave it, by input interface): only for
 *   --internal networks, which reach nothing outside the bridge.
 * - natin_<bridge>: hairpin (a container or 127.0.0.1 reaching a published
 *   port of this network) is masqueraded so replies come back through us.
 * - natout_<bridge>: masquerade of the subnet leaving by another interface.
 */
import { InvalidParameter } from '../../../common/errors.js';
import { ipv4, ipv6, port as checkPort } from '../../../kernel/validate.js';
import type { ResolvedPortBinding } from '../../driver.js';
import {
  FRAME,
  FRAME_MAPS,
  NETIFS,
  PUB_MAPS,
  type ElementObj,
  type FwObject,
  type RuleObj,
} from '../../firewall/index.js';
import type { BridgeConfig } from './plan.js';

const ref = { family: FRAME.family, table: FRAME.table };

export const networkOwner = (networkId: string): string => `net:${networkId}`;
export const portsOwner = (endpointId: string): string => `ports:${endpointId}`;

/** Set of `container address . proto . port` a routed network accepts directly. */
export function directSet(cfg: Pick<BridgeConfig, 'bridge'>, family: 4 | 6): string {
  return `direct${family}_${cfg.bridge}`;
}

/** Everything one bridge network owns. */
export function networkObjects(cfg: BridgeConfig): FwObject[] {
  const br = `"${cfg.bridge}"`;
  const out: FwObject[] = [];
  const chain = (name: string, rules: string[], map: string) => {
    out.push({ ...ref, kind: 'chain', name });
    for (const rule of rules) out.push({ ...ref, kind: 'rule', chain: name, rule } satisfies RuleObj);
    out.push({ ...ref, kind: 'element', set: map, key: br, value: `jump ${name}` });
  };
  out.push({ ...ref, kind: 'element', set: NETIFS, key: br });

  const inRules: string[] = [];
  if (cfg.internal) {
    if (cfg.icc) inRules.push(`iifname ${br} accept`);
    inRules.push('drop');
  } else {
    inRules.push(
      'ct state established,related accept',
      'ct status dnat accept',
      `iifname ${br} ${cfg.icc ? 'accept' : 'drop'}`,
      `iifname @${NETIFS} drop`,
    );
    for (const [family, mode] of [
      [4, cfg.gatewayMode4],
      [6, cfg.gatewayMode6],
    ] as const) {
      if (family === 6 && !cfg.enableIPv6) continue;
      if (mode === 'nat-unprotected') inRules.push(`meta nfproto ipv${family} accept`);
      if (mode === 'routed') {
        out.push({
          ...ref,
          kind: 'set',
          name: directSet(cfg, family),
          type: `${family === 4 ? 'ipv4_addr' : 'ipv6_addr'} . inet_proto . inet_service`,
        });
        inRules.push(family === 4 ? 'meta l4proto icmp accept' : 'meta l4proto ipv6-icmp accept');
        inRules.push(
          `${family === 4 ? 'ip' : 'ip6'} daddr . meta l4proto . th dport @${directSet(cfg, family)} accept`,
        );
      }
    }
    inRules.push('drop');
  }
  chain(`in_${cfg.bridge}`, inRules, FRAME_MAPS.fwdIn);
  if (cfg.internal) chain(`out_${cfg.bridge}`, [`oifname != ${br} drop`], FRAME_MAPS.fwdOut);

  if (!cfg.internal) {
    const hairpin = ['ip saddr 127.0.0.0/8 masquerade'];
    for (const s of cfg.subnets4) hairpin.push(`ct status dnat ip saddr ${s} masquerade`);
    for (const s of cfg.subnets6) hairpin.push(`ct status dnat ip6 saddr ${s} masquerade`);
    chain(`natin_${cfg.bridge}`, hairpin, FRAME_MAPS.natIn);
    const masq: string[] = [];
    if (cfg.masquerade) {
      if (cfg.gatewayMode4 !== 'routed')
        for (const s of cfg.subnets4) masq.push(`oifname != ${br} ip saddr ${s} masquerade`);
      if (cfg.gatewayMode6 !== 'routed')
        for (const s of cfg.subnets6) masq.push(`oifname != ${br} ip6 saddr ${s} masquerade`);
    }
    if (masq.length) chain(`natout_${cfg.bridge}`, masq, FRAME_MAPS.natOut);
  }
  return out;
}

/** One published-port map element: key and value as nft text, and which map it lives in. */
export interface PortElement {
  map: 'pub4' | 'pub6';
  key: string;
  value: string;
}

/** Map elements for an endpoint's published ports. A host-port range onto one container port is ONE interval element. */
export function portElements(bindings: ResolvedPortBinding[], defaultHostIPv4 = ''): PortElement[] {
  const out: PortElement[] = [];
  for (const b of bindings) {
    if (b.proto !== 'tcp' && b.proto !== 'udp')
      throw new InvalidParameter(`publishing ${b.proto} ports is not supported`);
    const hp = checkPort(b.hostPort, 'host port');
    const hpEnd = checkPort(b.hostPortEnd || b.hostPort, 'host port');
    const cp = checkPort(b.containerPort, 'container port');
    const cpEnd = checkPort(b.containerPortEnd || b.containerPort, 'container port');
    if (hpEnd < hp || cpEnd < cp) throw new InvalidParameter(`invalid port range ${hp}-${hpEnd}:${cp}-${cpEnd}`);
    const v6 = b.containerIp.includes(':');
    const cip = v6 ? ipv6(b.containerIp, 'container IP') : ipv4(b.containerIp, 'container IP');
    let hostIp = b.hostIp === '' || b.hostIp === '0.0.0.0' || b.hostIp === '::' ? '' : b.hostIp;
    if (hostIp === '' && !v6 && defaultHostIPv4) hostIp = defaultHostIPv4;
    if (hostIp !== '' && hostIp.includes(':') !== v6) continue; // a binding for the other family
    const hostKey =
      hostIp === '' ? (v6 ? '::/0' : '0.0.0.0/0') : v6 ? ipv6(hostIp, 'host IP') : ipv4(hostIp, 'host IP');
    const map = v6 ? PUB_MAPS.v6 : PUB_MAPS.v4;
    if (cpEnd === cp || hpEnd - hp !== cpEnd - cp) {
      // N host ports onto one container port (or a single port): one interval element.
      const range = hpEnd === hp ? `${hp}` : `${hp}-${hpEnd}`;
      out.push({ map, key: `${b.proto} . ${hostKey} . ${range}`, value: `${cip} . ${cp}` });
    } else {
      // Equal ranges map port by port (nft has no offset-preserving DNAT).
      for (let i = 0; i <= hpEnd - hp; i++)
        out.push({ map, key: `${b.proto} . ${hostKey} . ${hp + i}`, value: `${cip} . ${cp + i}` });
    }
  }
  return out;
}

/** What one endpoint's published ports own: DNAT map elements, and on a routed network the direct-access elements. */
export function portObjects(cfg: BridgeConfig, elements: PortElement[]): FwObject[] {
  const out: FwObject[] = elements.map((e): ElementObj => ({
    ...ref,
    kind: 'element',
    set: e.map,
    key: e.key,
    value: e.value,
  }));
  const direct = new Set<string>();
  for (const e of elements) {
    const family = e.map === PUB_MAPS.v4 ? 4 : 6;
    if ((family === 4 ? cfg.gatewayMode4 : cfg.gatewayMode6) !== 'routed') continue;
    const proto = e.key.split(' . ')[0]!;
    const [cip, cport] = e.value.split(' . ');
    const key = `${cip} . ${proto} . ${cport}`;
    if (direct.has(key)) continue;
    direct.add(key);
    out.push({ ...ref, kind: 'element', set: directSet(cfg, family), key });
  }
  return out;
}
