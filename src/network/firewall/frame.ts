/**
 * The frame: table `inet cove` with the hooks every owner plugs into. It holds
 * no owner's rules, only the dispatch to them and the guards no owner may
 * undo:
 * - guard_pre (prerouting, priority raw, before any DNAT): a packet for
 *   127.0.0.0/8 or ::1 that did not come from loopback is dropped. Bridges
 *   carry route_localnet=1 (the host reaches its 127.0.0.1-published ports
 *   through DNAT out of a bridge), so without this a neighbour or a container
 *   could send to 127.0.0.1 and reach loopback-only ports and services
 *   (CVE-2020-8558's pattern; moby/moby#45610).
 * - forward: what was addressed to loopback is never forwarded (whatever
 *   DNAT did with it); then `oifname vmap @fwd_in` hands a packet to the
 *   chain of the owner of the interface it leaves by (what may enter a
 *   network), `iifname vmap @fwd_out` to the chain of the owner of the one
 *   it came in by (what may leave it). Policy stays accept: traffic that no
 *   owner claims (the host's own routing) is not ours to judge.
 * - postrouting: the same two verdict maps for NAT (masquerade) by output
 *   and by input interface.
 * - set netifs: every container network's interface (owners add theirs), so
 *   an owner's chain can refuse traffic from other networks.
 * - prerouting/output DNAT through the published-port maps pub4/pub6
 *   (elements owned by each endpoint with published ports).
 */
import type { ChainObj, FwObject, RuleObj, SetObj } from './model.js';

export const FRAME = { family: 'inet', table: 'cove' } as const;

/** Verdict maps (ifname -> jump <owner chain>) that owners add elements to. */
export const FRAME_MAPS = { fwdIn: 'fwd_in', fwdOut: 'fwd_out', natIn: 'nat_in', natOut: 'nat_out' } as const;
/** Interfaces of container networks (each network owner adds its own): an owner's chain can tell "from another network". */
export const NETIFS = 'netifs';
/** Published-port maps: proto . host address . host port(s) -> container address . port. */
export const PUB_MAPS = { v4: 'pub4', v6: 'pub6' } as const;

const ref = { family: FRAME.family, table: FRAME.table };

function chain(name: string, base?: ChainObj['base']): ChainObj {
  return base ? { ...ref, kind: 'chain', name, base } : { ...ref, kind: 'chain', name };
}

function rule(chainName: string, text: string): RuleObj {
  return { ...ref, kind: 'rule', chain: chainName, rule: text };
}

function vmap(name: string): SetObj {
  return { ...ref, kind: 'map', name, type: 'ifname : verdict' };
}

const DNAT4 = `meta l4proto { tcp, udp } fib daddr type local dnat ip to meta l4proto . ip daddr . th dport map @${PUB_MAPS.v4}`;
const DNAT6 = `meta l4proto { tcp, udp } fib daddr type local dnat ip6 to meta l4proto . ip6 daddr . th dport map @${PUB_MAPS.v6}`;

export function frameObjects(): FwObject[] {
  return [
    { ...ref, kind: 'table' },
    { ...ref, kind: 'set', name: NETIFS, type: 'ifname' },
    vmap(FRAME_MAPS.fwdIn),
    vmap(FRAME_MAPS.fwdOut),
    vmap(FRAME_MAPS.natIn),
    vmap(FRAME_MAPS.natOut),
    {
      ...ref,
      kind: 'map',
      name: PUB_MAPS.v4,
      type: 'inet_proto . ipv4_addr . inet_service : ipv4_addr . inet_service',
      flags: ['interval'],
    },
    {
      ...ref,
      kind: 'map',
      name: PUB_MAPS.v6,
      type: 'inet_proto . ipv6_addr . inet_service : ipv6_addr . inet_service',
      flags: ['interval'],
    },
    chain('guard_pre', { type: 'filter', hook: 'prerouting', priority: 'raw', policy: 'accept' }),
    rule('guard_pre', 'iifname != "lo" ip daddr 127.0.0.0/8 drop'),
    rule('guard_pre', 'iifname != "lo" ip6 daddr ::1 drop'),
    chain('prerouting', { type: 'nat', hook: 'prerouting', priority: 'dstnat', policy: 'accept' }),
    rule('prerouting', DNAT4),
    rule('prerouting', DNAT6),
    chain('output', { type: 'nat', hook: 'output', priority: -100, policy: 'accept' }),
    rule('output', DNAT4),
    rule('output', DNAT6),
    chain('forward', { type: 'filter', hook: 'forward', priority: 'filter', policy: 'accept' }),
    rule('forward', 'ct original ip daddr 127.0.0.0/8 drop'),
    rule('forward', 'ct original ip6 daddr ::1 drop'),
    rule('forward', `oifname vmap @${FRAME_MAPS.fwdIn}`),
    rule('forward', `iifname vmap @${FRAME_MAPS.fwdOut}`),
    chain('postrouting', { type: 'nat', hook: 'postrouting', priority: 'srcnat', policy: 'accept' }),
    rule('postrouting', `oifname vmap @${FRAME_MAPS.natIn}`),
    rule('postrouting', `iifname vmap @${FRAME_MAPS.natOut}`),
  ];
}
