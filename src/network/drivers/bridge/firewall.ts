/**
 * Cove's nftables table (`table inet cove`, in the daemon's netns) as data.
 * The whole table is a pure function of the bridge networks and published
 * ports; a network change replaces it in ONE transaction (delete + re-add in
 * one `nft -f`), a published port is a map element added or deleted on its own.
 *
 * Docker's semantics, expressed per bridge:
 * - masquerade: traffic from the subnet leaving by another interface;
 * - isolation: nothing from one Cove bridge to another (both ways: each
 *   bridge's rule drops what it sends to any other bridge);
 * - internal: nothing in or out of the bridge except within it;
 * - icc=false: nothing between containers of the same bridge;
 * - published ports: DNAT through the `pub4`/`pub6` maps in prerouting and
 *   output (so the host itself, 127.0.0.1 included, reaches them), accepted
 *   in forward before the drops (Docker's userland proxy makes published
 *   ports reachable from every network too), hairpin and 127.0.0.1 sources
 *   masqueraded out of the bridge.
 */
import type { ResolvedPortBinding } from '../../driver.js';
import { InvalidParameter } from '../../../common/errors.js';
import { ipv4, ipv6, port as checkPort } from '../../../kernel/validate.js';
import type { BridgeConfig } from './plan.js';

export const TABLE = 'cove';
export const FAMILY = 'inet';

/** One map element: key and value as nft text, and which map it lives in. */
export interface PortElement {
  map: 'pub4' | 'pub6';
  key: string;
  value: string;
}

function q(name: string): string {
  return `"${name}"`;
}

/** Map elements for an endpoint's published ports. A host-port range onto one container port is ONE interval element. */
export function portElements(bindings: ResolvedPortBinding[], defaultHostIPv4 = ''): PortElement[] {
  const out: PortElement[] = [];
  for (const b of bindings) {
    if (b.proto !== 'tcp' && b.proto !== 'udp') throw new InvalidParameter(`publishing ${b.proto} ports is not supported`);
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
    const hostKey = hostIp === '' ? (v6 ? '::/0' : '0.0.0.0/0') : v6 ? ipv6(hostIp, 'host IP') : ipv4(hostIp, 'host IP');
    const map = v6 ? 'pub6' : 'pub4';
    if (cpEnd === cp || hpEnd - hp !== cpEnd - cp) {
      // N host ports onto one container port (or a single port): one interval element.
      const range = hpEnd === hp ? `${hp}` : `${hp}-${hpEnd}`;
      out.push({ map, key: `${b.proto} . ${hostKey} . ${range}`, value: `${cip} . ${cp}` });
    } else {
      // Equal ranges map port by port (nft has no offset-preserving DNAT).
      for (let i = 0; i <= hpEnd - hp; i++) out.push({ map, key: `${b.proto} . ${hostKey} . ${hp + i}`, value: `${cip} . ${cp + i}` });
    }
  }
  return out;
}

function elementsBlock(elems: PortElement[], map: 'pub4' | 'pub6'): string {
  const mine = elems.filter((e) => e.map === map);
  return mine.length ? `    elements = { ${mine.map((e) => `${e.key} : ${e.value}`).join(', ')} }\n` : '';
}

/** The full table: networks in a stable order, all published ports. */
export function renderTable(networks: BridgeConfig[], ports: PortElement[]): string {
  const nets = [...networks].sort((a, b) => a.bridge.localeCompare(b.bridge));
  const bridges = nets.map((n) => q(n.bridge));
  const fwd: string[] = ['ct status dnat accept'];
  const post: string[] = [];
  for (const n of nets) {
    const br = q(n.bridge);
    if (n.internal) {
      fwd.push(`iifname ${br} oifname != ${br} drop`);
      fwd.push(`oifname ${br} iifname != ${br} drop`);
    } else {
      fwd.push(`iifname ${br} oifname @bridges oifname != ${br} drop`);
    }
    if (!n.icc) fwd.push(`iifname ${br} oifname ${br} drop`);
    if (!n.internal) {
      if (n.masquerade) {
        for (const s of n.subnets4) post.push(`ip saddr ${s} oifname != ${br} masquerade`);
        for (const s of n.subnets6) post.push(`ip6 saddr ${s} oifname != ${br} masquerade`);
      }
      post.push(`oifname ${br} ip saddr 127.0.0.0/8 masquerade`);
      for (const s of n.subnets4) post.push(`oifname ${br} ct status dnat ip saddr ${s} masquerade`);
      for (const s of n.subnets6) post.push(`oifname ${br} ct status dnat ip6 saddr ${s} masquerade`);
    }
  }
  const body = (rules: string[]) => rules.map((r) => `    ${r}\n`).join('');
  const dnat4 = 'meta l4proto { tcp, udp } fib daddr type local dnat ip to meta l4proto . ip daddr . th dport map @pub4';
  const dnat6 = 'meta l4proto { tcp, udp } fib daddr type local dnat ip6 to meta l4proto . ip6 daddr . th dport map @pub6';
  return (
    `table ${FAMILY} ${TABLE} {\n` +
    `  set bridges {\n    type ifname\n${bridges.length ? `    elements = { ${bridges.join(', ')} }\n` : ''}  }\n` +
    `  map pub4 {\n    type inet_proto . ipv4_addr . inet_service : ipv4_addr . inet_service\n    flags interval\n${elementsBlock(ports, 'pub4')}  }\n` +
    `  map pub6 {\n    type inet_proto . ipv6_addr . inet_service : ipv6_addr . inet_service\n    flags interval\n${elementsBlock(ports, 'pub6')}  }\n` +
    `  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n${body([dnat4, dnat6])}  }\n` +
    `  chain output {\n    type nat hook output priority -100; policy accept;\n${body([dnat4, dnat6])}  }\n` +
    `  chain forward {\n    type filter hook forward priority filter; policy accept;\n${body(fwd)}  }\n` +
    `  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n${body(post)}  }\n` +
    `}\n`
  );
}

/** One transaction that replaces the table (creating it first so the delete cannot fail). */
export function replaceTableScript(networks: BridgeConfig[], ports: PortElement[]): string {
  return `table ${FAMILY} ${TABLE} {}\ndelete table ${FAMILY} ${TABLE}\n${renderTable(networks, ports)}`;
}

export function deleteTableScript(): string {
  return `table ${FAMILY} ${TABLE} {}\ndelete table ${FAMILY} ${TABLE}\n`;
}

/** One nft -i line (= one transaction) adding these elements, or undefined if none. */
export function addElementsLine(elems: PortElement[]): string | undefined {
  const parts = (['pub4', 'pub6'] as const)
    .map((m) => elems.filter((e) => e.map === m))
    .filter((es) => es.length > 0)
    .map((es) => `add element ${FAMILY} ${TABLE} ${es[0]!.map} { ${es.map((e) => `${e.key} : ${e.value}`).join(', ')} }`);
  return parts.length ? parts.join('; ') : undefined;
}

/** One nft -i line deleting these elements (by key), or undefined if none. */
export function deleteElementsLine(elems: PortElement[]): string | undefined {
  const parts = (['pub4', 'pub6'] as const)
    .map((m) => elems.filter((e) => e.map === m))
    .filter((es) => es.length > 0)
    .map((es) => `delete element ${FAMILY} ${TABLE} ${es[0]!.map} { ${es.map((e) => e.key).join(', ')} }`);
  return parts.length ? parts.join('; ') : undefined;
}
