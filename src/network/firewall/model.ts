/**
 * The firewall's vocabulary: nftables tables, chains, rules, sets, maps and
 * their elements as typed objects, and a transaction as data: a list of
 * `{verb, object}` (the shape of kubernetes-sigs/knftables). A transaction is
 * rendered to one `nft -f` script (any objects) or to one `nft -i` line (the
 * fast path for elements: one line is one atomic transaction).
 *
 * Names and values are checked when an object is added to a transaction, so
 * a rendered script never fails on syntax we wrote: only on the kernel's
 * state (a missing chain, an element that is not there).
 */
import { InvalidParameter } from '../../common/errors.js';

export type Family = 'inet' | 'ip' | 'ip6' | 'bridge' | 'arp' | 'netdev';

export interface TableRef {
  family: Family;
  table: string;
}

export interface TableObj extends TableRef {
  kind: 'table';
}

/** A base chain hooks into the packet path; a regular chain is only reached by jump/goto or a verdict map. */
export interface BaseChainSpec {
  type: 'filter' | 'nat' | 'route';
  hook: 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting' | 'ingress';
  /** A number or a standard name (raw, mangle, dstnat, filter, security, srcnat). */
  priority: number | 'raw' | 'mangle' | 'dstnat' | 'filter' | 'security' | 'srcnat';
  policy?: 'accept' | 'drop';
}

export interface ChainObj extends TableRef {
  kind: 'chain';
  name: string;
  base?: BaseChainSpec;
}

/** One rule, as nft rule text (validated by whoever builds it from checked values). */
export interface RuleObj extends TableRef {
  kind: 'rule';
  chain: string;
  rule: string;
}

export interface SetObj extends TableRef {
  kind: 'set' | 'map';
  name: string;
  /**
   * `ifname`, `ipv4_addr . inet_service`; a map: `KEY : VALUE` (e.g. `ifname : verdict`). Text starting
   * with `typeof ` declares the type by expressions instead (`typeof numgen random mod 3 : ip daddr`), for
   * keys no type name covers.
   */
  type: string;
  flags?: Array<'interval' | 'constant' | 'timeout'>;
}

export interface ElementObj extends TableRef {
  kind: 'element';
  /** The set or map it belongs to. */
  set: string;
  key: string;
  /** Maps only. */
  value?: string;
}

export type FwObject = TableObj | ChainObj | RuleObj | SetObj | ElementObj;

/**
 * add: create if missing (tables, chains, sets, elements), append (rules).
 * delete: must exist (a chain must be empty and unreferenced).
 * flush: empties a chain (its rules) or a set/map (its elements), or a whole table.
 */
export type Verb = 'add' | 'delete' | 'flush';

export interface Op {
  verb: Verb;
  obj: FwObject;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;
const FAMILIES = new Set<Family>(['inet', 'ip', 'ip6', 'bridge', 'arp', 'netdev']);

/** A table, chain or set name nft accepts unquoted. */
export function fwName(s: string, what = 'nft name'): string {
  if (typeof s !== 'string' || !NAME.test(s)) throw new InvalidParameter(`invalid ${what}: ${JSON.stringify(s)}`);
  return s;
}

/** Rule, key and value text: one line, no statement separators, no comments, balanced quotes. */
function nftText(s: string, what: string): string {
  if (typeof s !== 'string' || s.trim() === '' || /[\n\r\0;#\\]/.test(s) || (s.match(/"/g)?.length ?? 0) % 2 !== 0) {
    throw new InvalidParameter(`invalid ${what}: ${JSON.stringify(s)}`);
  }
  return s.trim();
}

export function checkObject(o: FwObject): void {
  if (!FAMILIES.has(o.family)) throw new InvalidParameter(`invalid nft family ${JSON.stringify(o.family)}`);
  fwName(o.table, 'table name');
  switch (o.kind) {
    case 'table':
      return;
    case 'chain':
      fwName(o.name, 'chain name');
      if (o.base && !Number.isInteger(o.base.priority) && typeof o.base.priority !== 'string')
        throw new InvalidParameter('invalid chain priority');
      return;
    case 'rule':
      fwName(o.chain, 'chain name');
      nftText(o.rule, 'rule');
      return;
    case 'set':
    case 'map':
      fwName(o.name, `${o.kind} name`);
      nftText(o.type, `${o.kind} type`);
      if ((o.kind === 'map') !== o.type.includes(' : '))
        throw new InvalidParameter(`invalid ${o.kind} type ${JSON.stringify(o.type)}`);
      return;
    case 'element':
      fwName(o.set, 'set name');
      nftText(o.key, 'element key');
      if (/[{},]/.test(o.key)) throw new InvalidParameter(`invalid element key ${JSON.stringify(o.key)}`);
      if (o.value !== undefined && /[{},]/.test(nftText(o.value, 'element value')))
        throw new InvalidParameter(`invalid element value ${JSON.stringify(o.value)}`);
      return;
  }
}

/** Identity of an object within a ruleset (rules have none of their own: they live in their chain's list). */
export function objectKey(o: FwObject): string {
  const t = `${o.family} ${o.table}`;
  switch (o.kind) {
    case 'table':
      return `table ${t}`;
    case 'chain':
      return `chain ${t} ${o.name}`;
    case 'set':
    case 'map':
      return `set ${t} ${o.name}`;
    case 'element':
      return `element ${t} ${o.set} ${o.key}`;
    case 'rule':
      return `rule ${t} ${o.chain} ${o.rule}`;
  }
}

/** The declaration of a set's type: `type T` or `typeof EXPR` (see SetObj.type). */
export function typeDecl(type: string): string {
  return type.startsWith('typeof ') ? type : `type ${type}`;
}

function priorityText(p: BaseChainSpec['priority']): string {
  return String(p);
}

export function baseSpecText(b: BaseChainSpec): string {
  return `type ${b.type} hook ${b.hook} priority ${priorityText(b.priority)}; policy ${b.policy ?? 'accept'};`;
}

/** A transaction: ops in order, checked as they are added; applied atomically by the backend. */
export class Tx {
  readonly ops: Op[] = [];

  add(obj: FwObject): this {
    return this.push('add', obj);
  }

  delete(obj: FwObject): this {
    return this.push('delete', obj);
  }

  flush(obj: TableObj | ChainObj | SetObj): this {
    return this.push('flush', obj);
  }

  private push(verb: Verb, obj: FwObject): this {
    checkObject(obj);
    if (verb === 'flush' && (obj.kind === 'rule' || obj.kind === 'element'))
      throw new InvalidParameter(`cannot flush a ${obj.kind}`);
    if (verb === 'delete' && obj.kind === 'rule')
      throw new InvalidParameter('rules are deleted by flushing their chain');
    this.ops.push({ verb, obj });
    return this;
  }

  get empty(): boolean {
    return this.ops.length === 0;
  }

  /** True when every op is an element add/delete (it can go down the `nft -i` fast path). */
  get elementsOnly(): boolean {
    return this.ops.every((o) => o.obj.kind === 'element');
  }

  /** The `nft -f` script: one command a line. */
  render(): string {
    return renderCommands(this.ops)
      .map((c) => c + '\n')
      .join('');
  }

  /** One `nft -i` line (one transaction there). */
  renderLine(): string {
    return renderCommands(this.ops).join('; ');
  }
}

function where(o: TableRef): string {
  return `${o.family} ${o.table}`;
}

/** nft commands for the ops, consecutive element ops on one set folded into one command. */
export function renderCommands(ops: Op[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < ops.length; i++) {
    const { verb, obj } = ops[i]!;
    switch (obj.kind) {
      case 'table':
        out.push(`${verb} table ${where(obj)}`);
        break;
      case 'chain':
        if (verb === 'add' && obj.base) out.push(`add chain ${where(obj)} ${obj.name} { ${baseSpecText(obj.base)} }`);
        else out.push(`${verb} chain ${where(obj)} ${obj.name}`);
        break;
      case 'rule':
        out.push(`add rule ${where(obj)} ${obj.chain} ${obj.rule}`);
        break;
      case 'set':
      case 'map':
        if (verb === 'add') {
          const flags = obj.flags?.length ? ` flags ${obj.flags.join(',')};` : '';
          out.push(`add ${obj.kind} ${where(obj)} ${obj.name} { ${typeDecl(obj.type)};${flags} }`);
        } else {
          out.push(`${verb} ${obj.kind} ${where(obj)} ${obj.name}`);
        }
        break;
      case 'element': {
        const items = [obj];
        while (i + 1 < ops.length) {
          const n = ops[i + 1]!;
          if (n.verb !== verb || n.obj.kind !== 'element' || n.obj.set !== obj.set || where(n.obj) !== where(obj))
            break;
          items.push(n.obj);
          i++;
        }
        const body = items
          .map((e) => (verb === 'add' && e.value !== undefined ? `${e.key} : ${e.value}` : e.key))
          .join(', ');
        out.push(`${verb} element ${where(obj)} ${obj.set} { ${body} }`);
        break;
      }
    }
  }
  return out;
}
