/**
 * An nftables ruleset in memory: tables with chains (and their rules), sets,
 * maps and elements. apply(tx) has the kernel's semantics where they matter
 * to callers (all or nothing; delete of something missing fails; a chain
 * must be empty and unreferenced to go; rules and verdict-map elements may
 * only name chains and sets that exist), so it serves twice:
 * - as the firewall's desired state (what healing restores after a flush),
 * - as the fake kernel of unit tests (test/unit: whole rule sets compared
 *   with golden dumps instead of regexes over text).
 */
import { KernelError } from '../../kernel/errors.js';
import {
  baseSpecText,
  type BaseChainSpec,
  type ChainObj,
  type ElementObj,
  type Family,
  type FwObject,
  type Op,
  type SetObj,
  type TableObj,
  Tx,
  typeDecl,
} from './model.js';

interface ChainState {
  base?: BaseChainSpec;
  rules: string[];
}

interface SetState {
  kind: 'set' | 'map';
  type: string;
  flags: string[];
  /** key -> value ('' for sets) */
  elements: Map<string, string>;
}

interface TableState {
  family: Family;
  name: string;
  chains: Map<string, ChainState>;
  sets: Map<string, SetState>;
}

const CHAIN_REF = /\b(?:jump|goto)\s+([A-Za-z_][A-Za-z0-9_.-]*)/g;
const SET_REF = /@([A-Za-z_][A-Za-z0-9_.-]*)/g;

function refs(text: string, re: RegExp): string[] {
  return [...text.matchAll(re)].map((m) => m[1]!);
}

function fail(command: string, why: string): never {
  throw new KernelError(`nft ${command}`, `Error: ${why}`);
}

export class Ruleset {
  private readonly tables = new Map<string, TableState>();

  /** Applies every op or none (an error undoes the ops before it); returns what reverts the change. */
  apply(tx: Tx | Op[]): () => void {
    const ops = tx instanceof Tx ? tx.ops : tx;
    const undo: Array<() => void> = [];
    const revert = (): void => {
      for (const u of undo.reverse()) u();
      undo.length = 0;
    };
    try {
      for (const op of ops) this.applyOne(op, undo);
    } catch (e) {
      revert();
      throw e;
    }
    return revert;
  }

  get isEmpty(): boolean {
    return this.tables.size === 0;
  }

  hasTable(family: Family, name: string): boolean {
    return this.tables.has(`${family} ${name}`);
  }

  tableNames(): Array<{ family: Family; table: string }> {
    return [...this.tables.values()].map((t) => ({ family: t.family, table: t.name }));
  }

  /** Elements of one set or map (key -> value), or undefined when it does not exist. */
  elements(family: Family, table: string, set: string): Map<string, string> | undefined {
    const s = this.tables.get(`${family} ${table}`)?.sets.get(set);
    return s ? new Map(s.elements) : undefined;
  }

  rules(family: Family, table: string, chain: string): string[] | undefined {
    return this.tables.get(`${family} ${table}`)?.chains.get(chain)?.rules.slice();
  }

  clear(): void {
    this.tables.clear();
  }

  private table(o: { family: Family; table: string }, cmd: string): TableState {
    const t = this.tables.get(`${o.family} ${o.table}`);
    if (!t) fail(cmd, `No such file or directory (table ${o.family} ${o.table})`);
    return t;
  }

  private applyOne(op: Op, undo: Array<() => void>): void {
    const { verb, obj } = op;
    const cmd = `${verb} ${obj.kind}`;
    switch (obj.kind) {
      case 'table':
        return this.tableOp(verb, obj, cmd, undo);
      case 'chain':
        return this.chainOp(verb, obj, cmd, undo);
      case 'rule': {
        const t = this.table(obj, cmd);
        const c = t.chains.get(obj.chain);
        if (!c) fail(cmd, `No such file or directory (chain ${obj.chain})`);
        for (const r of refs(obj.rule, CHAIN_REF))
          if (!t.chains.has(r)) fail(cmd, `Could not process rule: No such file or directory (chain ${r})`);
        for (const r of refs(obj.rule, SET_REF))
          if (!t.sets.has(r)) fail(cmd, `Could not process rule: No such file or directory (set ${r})`);
        c.rules.push(obj.rule);
        undo.push(() => c.rules.pop());
        return;
      }
      case 'set':
      case 'map':
        return this.setOp(verb, obj, cmd, undo);
      case 'element':
        return this.elementOp(verb, obj, cmd, undo);
    }
  }

  private tableOp(verb: Op['verb'], obj: TableObj, cmd: string, undo: Array<() => void>): void {
    const key = `${obj.family} ${obj.table}`;
    const t = this.tables.get(key);
    if (verb === 'add') {
      if (t) return;
      this.tables.set(key, { family: obj.family, name: obj.table, chains: new Map(), sets: new Map() });
      undo.push(() => this.tables.delete(key));
      return;
    }
    if (!t) fail(cmd, `No such file or directory (table ${key})`);
    if (verb === 'delete') {
      this.tables.delete(key);
      undo.push(() => this.tables.set(key, t));
      return;
    }
    // flush table: every chain's rules and every set's elements
    const saved = {
      chains: [...t.chains].map(([n, c]) => [n, c.rules.slice()] as const),
      sets: [...t.sets].map(([n, s]) => [n, new Map(s.elements)] as const),
    };
    for (const c of t.chains.values()) c.rules = [];
    for (const s of t.sets.values()) s.elements = new Map();
    undo.push(() => {
      for (const [n, r] of saved.chains) t.chains.get(n)!.rules = r;
      for (const [n, e] of saved.sets) t.sets.get(n)!.elements = e;
    });
  }

  private chainOp(verb: Op['verb'], obj: ChainObj, cmd: string, undo: Array<() => void>): void {
    const t = this.table(obj, cmd);
    const c = t.chains.get(obj.name);
    if (verb === 'add') {
      if (c) {
        if (baseText(c.base) !== baseText(obj.base))
          fail(cmd, `Could not process rule: File exists (chain ${obj.name} has another hook)`);
        return;
      }
      t.chains.set(obj.name, obj.base ? { base: { ...obj.base }, rules: [] } : { rules: [] });
      undo.push(() => t.chains.delete(obj.name));
      return;
    }
    if (!c) fail(cmd, `No such file or directory (chain ${obj.name})`);
    if (verb === 'flush') {
      const saved = c.rules;
      c.rules = [];
      undo.push(() => (c.rules = saved));
      return;
    }
    if (c.rules.length) fail(cmd, `Could not process rule: Device or resource busy (chain ${obj.name} has rules)`);
    if (this.chainReferenced(t, obj.name))
      fail(cmd, `Could not process rule: Device or resource busy (chain ${obj.name} is a jump target)`);
    t.chains.delete(obj.name);
    undo.push(() => t.chains.set(obj.name, c));
  }

  private chainReferenced(t: TableState, name: string): boolean {
    for (const c of t.chains.values()) for (const r of c.rules) if (refs(r, CHAIN_REF).includes(name)) return true;
    for (const s of t.sets.values())
      for (const v of s.elements.values()) if (refs(v, CHAIN_REF).includes(name)) return true;
    return false;
  }

  private setOp(verb: Op['verb'], obj: SetObj, cmd: string, undo: Array<() => void>): void {
    const t = this.table(obj, cmd);
    const s = t.sets.get(obj.name);
    if (verb === 'add') {
      if (s) {
        if (s.kind !== obj.kind || s.type !== obj.type)
          fail(cmd, `Could not process rule: File exists (${obj.kind} ${obj.name} has another type)`);
        return;
      }
      t.sets.set(obj.name, { kind: obj.kind, type: obj.type, flags: [...(obj.flags ?? [])], elements: new Map() });
      undo.push(() => t.sets.delete(obj.name));
      return;
    }
    if (!s || s.kind !== obj.kind) fail(cmd, `No such file or directory (${obj.kind} ${obj.name})`);
    if (verb === 'flush') {
      const saved = s.elements;
      s.elements = new Map();
      undo.push(() => (s.elements = saved));
      return;
    }
    for (const c of t.chains.values())
      for (const r of c.rules)
        if (refs(r, SET_REF).includes(obj.name))
          fail(cmd, `Could not process rule: Device or resource busy (${obj.kind} ${obj.name} is in use)`);
    t.sets.delete(obj.name);
    undo.push(() => t.sets.set(obj.name, s));
  }

  private elementOp(verb: Op['verb'], obj: ElementObj, cmd: string, undo: Array<() => void>): void {
    const t = this.table(obj, cmd);
    const s = t.sets.get(obj.set);
    if (!s) fail(cmd, `No such file or directory (set ${obj.set})`);
    const had = s.elements.get(obj.key);
    if (verb === 'add') {
      if (s.kind === 'map' && obj.value === undefined) fail(cmd, `map ${obj.set} needs a value for ${obj.key}`);
      if (s.kind === 'set' && obj.value !== undefined) fail(cmd, `set ${obj.set} takes no value`);
      const value = obj.value ?? '';
      for (const r of refs(value, CHAIN_REF))
        if (!t.chains.has(r)) fail(cmd, `Could not process rule: No such file or directory (chain ${r})`);
      if (had !== undefined) {
        if (had !== value) fail(cmd, `Could not process rule: File exists (element ${obj.key})`);
        return;
      }
      s.elements.set(obj.key, value);
      undo.push(() => s.elements.delete(obj.key));
      return;
    }
    if (had === undefined)
      fail(cmd, `Could not process rule: No such file or directory (element ${obj.key} of ${obj.set})`);
    s.elements.delete(obj.key);
    undo.push(() => s.elements.set(obj.key, had));
  }

  /**
   * The whole ruleset as objects in an order that applies cleanly: tables,
   * sets and maps, chains, rules, elements. Healing renders this as one script.
   */
  objects(): FwObject[] {
    const out: FwObject[] = [];
    const tables = [...this.tables.values()].sort((a, b) =>
      `${a.family} ${a.name}`.localeCompare(`${b.family} ${b.name}`),
    );
    for (const t of tables) out.push({ kind: 'table', family: t.family, table: t.name });
    for (const t of tables) {
      const ref = { family: t.family, table: t.name };
      for (const [name, s] of sorted(t.sets))
        out.push({ ...ref, kind: s.kind, name, type: s.type, flags: s.flags as SetObj['flags'] });
      for (const [name, c] of sorted(t.chains))
        out.push(c.base ? { ...ref, kind: 'chain', name, base: c.base } : { ...ref, kind: 'chain', name });
      for (const [name, c] of sorted(t.chains))
        for (const rule of c.rules) out.push({ ...ref, kind: 'rule', chain: name, rule });
      for (const [name, s] of sorted(t.sets)) {
        for (const [key, value] of sorted(s.elements))
          out.push(
            s.kind === 'map'
              ? { ...ref, kind: 'element', set: name, key, value }
              : { ...ref, kind: 'element', set: name, key },
          );
      }
    }
    return out;
  }

  /** Text like `nft list ruleset`, in a stable order (sets, then chains, by name; elements sorted): the golden-file format. */
  dump(): string {
    let s = '';
    const tables = [...this.tables.values()].sort((a, b) =>
      `${a.family} ${a.name}`.localeCompare(`${b.family} ${b.name}`),
    );
    for (const t of tables) {
      s += `table ${t.family} ${t.name} {\n`;
      for (const [name, set] of sorted(t.sets)) {
        s += `\t${set.kind} ${name} {\n\t\t${typeDecl(set.type)}\n`;
        if (set.flags.length) s += `\t\tflags ${set.flags.join(',')}\n`;
        const els = sorted(set.elements).map(([k, v]) => (set.kind === 'map' ? `${k} : ${v}` : k));
        if (els.length) s += `\t\telements = {\n${els.map((e) => `\t\t\t${e},\n`).join('')}\t\t}\n`;
        s += '\t}\n';
      }
      for (const [name, c] of sorted(t.chains)) {
        s += `\tchain ${name} {\n`;
        if (c.base) s += `\t\t${baseSpecText(c.base)}\n`;
        for (const r of c.rules) s += `\t\t${r}\n`;
        s += '\t}\n';
      }
      s += '}\n';
    }
    return s;
  }
}

function baseText(b: BaseChainSpec | undefined): string {
  return b ? baseSpecText(b) : '';
}

function sorted<V>(m: Map<string, V>): Array<[string, V]> {
  return [...m].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}
