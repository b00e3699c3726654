/**
 * Validation of a network's IPAM request and choice of its subnets (pure
 * logic, no state): the user's --subnet/--ip-range/--gateway/--aux-address
 * checked with moby's wording (api/types/network/ipam.go ValidateIPAM), and
 * networks without a subnet given the first free pool of the daemon's default
 * address pools, like libnetwork's default IPAM.
 */
import { Forbidden, InvalidParameter, NotFound, SystemError } from '../../common/errors.js';
import type { DockerIpamConfig } from '../types.js';
import {
  cidrContains,
  cidrOverlaps,
  cidrSize,
  cidrWithin,
  formatCidr,
  formatIp,
  lastAddr,
  tryParseCidr,
  tryParseIp,
  type Cidr,
  type Family,
} from './ip.js';

/** One subnet of a network as the allocator keeps it. */
export interface SubnetPlan {
  family: Family;
  /** Canonical CIDR, e.g. 172.18.0.0/16. */
  subnet: string;
  /** Addresses for containers come from here when set. */
  ipRange?: string;
  /** Gateway address (no prefix); undefined when the network has none (no gateway reserved). */
  gateway?: string;
  aux: Record<string, string>;
  /** True when the user gave the subnet (only then may endpoints ask for a specific address). */
  userSubnet: boolean;
}

export interface IpamPlanRequest {
  driver?: string;
  configs: DockerIpamConfig[];
  enableIPv4: boolean;
  enableIPv6: boolean;
}

export interface IpamPlan {
  subnets: SubnetPlan[];
  /** IPAM.Config as `docker network inspect` shows it. */
  display: DockerIpamConfig[];
}

export const NO_POOL = (v: Family) =>
  `could not find an available, non-overlapping IPv${v} address pool among the defaults to assign to the network`;
export const POOL_OVERLAP = 'Pool overlaps with other one on this address space';

/** The IPAM drivers this daemon has ("null" hands out nothing, like Docker's). */
export const IPAM_DRIVERS = new Set(['default', 'null']);

/**
 * Checks the request and picks subnets. `taken` are the subnets of every
 * existing network (overlaps are refused, defaults skip them).
 */
export function planIpam(
  req: IpamPlanRequest,
  taken: string[],
  defaultPools: Array<{ base: string; size: number }>,
): IpamPlan {
  const driver = req.driver || 'default';
  if (!IPAM_DRIVERS.has(driver)) throw new NotFound(`plugin "${driver}" not found`);
  validateConfigs(req.configs, req.enableIPv6);

  const takenCidrs = taken.map((s) => tryParseCidr(s)).filter((c): c is Cidr => !!c);
  const subnets: SubnetPlan[] = [];
  const display: DockerIpamConfig[] = [];
  if (driver === 'null') return { subnets, display };

  for (const family of [4, 6] as Family[]) {
    const enabled = family === 4 ? req.enableIPv4 : req.enableIPv6;
    if (!enabled) continue;
    const mine = req.configs.filter((c) => tryParseCidr(c.Subnet ?? '')?.family === family);
    if (mine.length === 0) {
      const pool = pickDefaultPool(
        family,
        [...takenCidrs, ...subnets.map((s) => tryParseCidr(s.subnet)!)],
        defaultPools,
      );
      if (!pool) throw new Forbidden(NO_POOL(family));
      const gateway = formatIp(family, pool.base + 1n);
      subnets.push({ family, subnet: formatCidr(pool), gateway, aux: {}, userSubnet: false });
      display.push({ Subnet: formatCidr(pool), Gateway: gateway });
      continue;
    }
    for (const cfg of mine) {
      const cidr = tryParseCidr(cfg.Subnet!)!;
      for (const other of [...takenCidrs, ...subnets.map((s) => tryParseCidr(s.subnet)!)]) {
        if (cidrOverlaps(cidr, other)) throw new Forbidden(POOL_OVERLAP);
      }
      const range = cfg.IPRange ? tryParseCidr(cfg.IPRange)! : undefined;
      const gateway = cfg.Gateway ? formatIp(family, tryParseIp(cfg.Gateway)!.value) : defaultGateway(cidr);
      if (cfg.Gateway && isReservedAddress(cidr, tryParseIp(cfg.Gateway)!.value)) {
        // libnetwork's IPAM keeps these out of its bitmap, so asking for one is an "in use" failure.
        throw new SystemError(`failed to allocate gateway (${cfg.Gateway}): Address already in use`);
      }
      const aux: Record<string, string> = {};
      for (const [name, a] of Object.entries(cfg.AuxiliaryAddresses ?? {}))
        aux[name] = formatIp(family, tryParseIp(a)!.value);
      const plan: SubnetPlan = { family, subnet: formatCidr(cidr), gateway, aux, userSubnet: true };
      if (range) plan.ipRange = formatCidr(range);
      subnets.push(plan);
      const shown: DockerIpamConfig = { Subnet: formatCidr(cidr) };
      if (range) shown.IPRange = formatCidr(range);
      if (cfg.Gateway) shown.Gateway = gateway;
      if (Object.keys(aux).length > 0) shown.AuxiliaryAddresses = aux;
      display.push(shown);
    }
  }
  return { subnets, display };
}

/** The subnet's network address and, for IPv4, its broadcast address (except in /31-/32 style subnets, where every address is a host). */
function isReservedAddress(c: Cidr, value: bigint): boolean {
  if (cidrSize(c) <= 2n) return false;
  return value === c.base || (c.family === 4 && value === lastAddr(c));
}

/** First host address of the subnet, if it has one. */
function defaultGateway(c: Cidr): string | undefined {
  return cidrSize(c) >= 2n ? formatIp(c.family, c.base + 1n) : undefined;
}

/**
 * moby's ValidateIPAM, same checks and wording. A gateway, range or aux address
 * that belongs to no subnet at all gets the docker CLI's message, which is what
 * a docker user sees for it (the CLI checks before sending).
 */
export function validateConfigs(configs: DockerIpamConfig[], enableIPv6: boolean): void {
  const errs: string[] = [];
  for (const cfg of configs) {
    if (!cfg.Subnet) {
      if (cfg.Gateway) throw new InvalidParameter(`no matching subnet for gateway ${cfg.Gateway}`);
      if (cfg.IPRange) throw new InvalidParameter(`no matching subnet for range ${cfg.IPRange}`);
      for (const a of Object.values(cfg.AuxiliaryAddresses ?? {}))
        throw new InvalidParameter(`no matching subnet for aux-address ${a}`);
      throw new InvalidParameter('invalid network config:\nevery ip-range or gateway must have a corresponding subnet');
    }
    const subnet = tryParseCidr(cfg.Subnet);
    if (!subnet) {
      errs.push(`invalid subnet ${cfg.Subnet}: invalid CIDR block notation`);
      continue;
    }
    const fam = subnet.family === 4 ? 'IPv4' : 'IPv6';
    if (!enableIPv6 && subnet.family === 6) continue;
    const masked = tryParseCidr(cfg.Subnet, true);
    if (!masked) errs.push(`invalid subnet ${cfg.Subnet}: it should be ${formatCidr(subnet)}`);
    if (cfg.IPRange) {
      const r = tryParseCidr(cfg.IPRange);
      if (!r) errs.push(`invalid ip-range ${cfg.IPRange}: invalid CIDR block notation`);
      else if (r.family !== subnet.family)
        errs.push(`invalid ip-range ${cfg.IPRange}: parent subnet is an ${fam} block`);
      else {
        if (r.prefix < subnet.prefix)
          errs.push(
            `invalid ip-range ${cfg.IPRange}: CIDR block is bigger than its parent subnet ${formatCidr(subnet)}`,
          );
        if (!tryParseCidr(cfg.IPRange, true))
          errs.push(`invalid ip-range ${cfg.IPRange}: it should be ${formatCidr(r)}`);
        if (!cidrOverlaps(subnet, r))
          errs.push(`invalid ip-range ${cfg.IPRange}: parent subnet ${formatCidr(subnet)} doesn't contain ip-range`);
      }
    }
    const addrErr = (a: string): string | undefined => {
      const ip = tryParseIp(a);
      if (!ip) return 'invalid address';
      if (ip.family !== subnet.family) return `parent subnet is an ${fam} block`;
      if (!cidrContains(subnet, ip)) return `parent subnet ${formatCidr(subnet)} doesn't contain this address`;
      return undefined;
    };
    if (cfg.Gateway) {
      const e = addrErr(cfg.Gateway);
      // The CLI pairs each gateway with the subnet holding it; none does.
      if (
        e &&
        tryParseIp(cfg.Gateway) &&
        !configs.some((c) => {
          const s = tryParseCidr(c.Subnet ?? '');
          const g = tryParseIp(cfg.Gateway!);
          return !!s && !!g && cidrContains(s, g);
        })
      ) {
        throw new InvalidParameter(`no matching subnet for gateway ${cfg.Gateway}`);
      }
      if (e) errs.push(`invalid gateway ${cfg.Gateway}: ${e}`);
    }
    for (const [name, a] of Object.entries(cfg.AuxiliaryAddresses ?? {})) {
      const e = addrErr(a);
      if (e) errs.push(`invalid auxiliary address ${name}: ${e}`);
    }
  }
  // Two subnets of one request that overlap each other.
  const cidrs = configs.map((c) => tryParseCidr(c.Subnet ?? '')).filter((c): c is Cidr => !!c);
  for (let i = 0; i < cidrs.length; i++) {
    for (let j = i + 1; j < cidrs.length; j++) {
      if (cidrOverlaps(cidrs[i]!, cidrs[j]!)) throw new Forbidden(POOL_OVERLAP);
    }
  }
  if (errs.length === 1) throw new InvalidParameter(`invalid network config:\n${errs[0]}`);
  if (errs.length > 1) throw new InvalidParameter(`invalid network config:\n* ${errs.join('\n* ')}`);
}

/**
 * The first subnet of size /pool.size inside the default pools (in order) that
 * overlaps nothing taken. Jumps over taken blocks instead of stepping through
 * every candidate, so huge v6 pools cost no more than small ones.
 */
export function pickDefaultPool(
  family: Family,
  taken: Cidr[],
  pools: Array<{ base: string; size: number }>,
): Cidr | undefined {
  for (const p of pools) {
    const base = tryParseCidr(p.base);
    if (!base || base.family !== family || p.size < base.prefix) continue;
    const step = 1n << BigInt((family === 4 ? 32 : 128) - p.size);
    const end = lastAddr(base);
    let cur = base.base;
    while (cur + step - 1n <= end) {
      const cand: Cidr = { family, base: cur, prefix: p.size };
      const hit = taken.find((t) => cidrOverlaps(t, cand));
      if (!hit) return cand;
      // Next aligned candidate after the taken block.
      const after = lastAddr(hit) + 1n;
      const next = ((after + step - 1n) / step) * step;
      cur = next > cur ? next : cur + step;
    }
  }
  return undefined;
}

/** True when `inner` is a valid sub-range of `outer` (both CIDR strings). */
export function rangeWithin(inner: string, outer: string): boolean {
  const a = tryParseCidr(inner);
  const b = tryParseCidr(outer);
  return !!a && !!b && cidrWithin(a, b);
}
