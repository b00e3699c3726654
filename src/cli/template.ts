/**
 * A subset of Go's text/template, enough for docker's --format:
 * {{.Field.Sub}}, {{json .}}, {{json .X}}, {{index .M "k"}}, {{range}}...{{end}}
 * (with $k, $v := and {{else}}), {{if}}/{{else}}/{{end}}, {{with}}, pipelines
 * `a | b`, variables, string/number literals, {{- trim -}}, and docker's
 * functions: json, join, split, lower, upper, title, truncate, pad, println,
 * plus Go's index, len, print, printf (%s %d %v %q), eq, ne, lt, le, gt, ge, not, and, or.
 */

type Node =
  | { t: 'text'; s: string }
  | { t: 'action'; p: Pipeline }
  | { t: 'range'; vars: string[]; p: Pipeline; body: Node[]; else: Node[] }
  | { t: 'if' | 'with'; p: Pipeline; body: Node[]; else: Node[] };

type Operand =
  | { k: 'field'; base: 'dot' | string; path: string[] }
  | { k: 'lit'; v: unknown }
  | { k: 'ident'; name: string }
  | { k: 'sub'; p: Pipeline }
  /** (pipeline).Field.Sub */
  | { k: 'chain'; base: Operand; path: string[] };

type Command = Operand[];
interface Pipeline {
  decl: string[];
  cmds: Command[];
}

export class TemplateError extends Error {}

function tokenize(src: string): string[] {
  const toks: string[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '"' || c === '`') {
      let j = i + 1;
      while (j < src.length && src[j] !== c) j += src[j] === '\\' && c === '"' ? 2 : 1;
      toks.push(src.slice(i, j + 1));
      i = j + 1;
      continue;
    }
    if ('()|,'.includes(c)) {
      toks.push(c);
      i++;
      continue;
    }
    if (src.startsWith(':=', i)) {
      toks.push(':=');
      i += 2;
      continue;
    }
    let j = i;
    while (j < src.length && !/[\s()|,]/.test(src[j]!) && !src.startsWith(':=', j)) j++;
    toks.push(src.slice(i, j));
    i = j;
  }
  return toks;
}

function parseOperand(tok: string, rest: string[]): Operand {
  if (tok === '(') {
    const inner: string[] = [];
    let depth = 1;
    while (rest.length) {
      const t = rest.shift()!;
      if (t === '(') depth++;
      if (t === ')' && --depth === 0) break;
      inner.push(t);
    }
    return { k: 'sub', p: parsePipeline(inner) };
  }
  if (tok.startsWith('"')) return { k: 'lit', v: JSON.parse(tok) };
  if (tok.startsWith('`')) return { k: 'lit', v: tok.slice(1, -1) };
  if (/^-?\d+(\.\d+)?$/.test(tok)) return { k: 'lit', v: Number(tok) };
  if (tok === 'true' || tok === 'false') return { k: 'lit', v: tok === 'true' };
  if (tok === 'nil') return { k: 'lit', v: null };
  if (tok === '.') return { k: 'field', base: 'dot', path: [] };
  if (tok.startsWith('.')) return { k: 'field', base: 'dot', path: tok.slice(1).split('.') };
  if (tok.startsWith('$')) {
    const [v, ...path] = tok.split('.');
    return { k: 'field', base: v!, path };
  }
  if (/^[A-Za-z_]\w*$/.test(tok)) return { k: 'ident', name: tok };
  throw new TemplateError(`unexpected "${tok}" in command`);
}

function parsePipeline(toks: string[]): Pipeline {
  const rest = [...toks];
  const decl: string[] = [];
  const assign = rest.indexOf(':=');
  if (assign >= 0) {
    for (const t of rest.slice(0, assign)) if (t !== ',') decl.push(t);
    rest.splice(0, assign + 1);
  }
  const cmds: Command[] = [];
  let cur: Command = [];
  // A parenthesized operand directly followed by .Field chains onto it.
  let lastWasClose = false;
  while (rest.length) {
    const t = rest.shift()!;
    if (t === '|') {
      cmds.push(cur);
      cur = [];
      continue;
    }
    const prev = cur[cur.length - 1];
    if (t.startsWith('.') && t.length > 1 && prev && prev.k === 'sub' && lastWasClose) {
      cur[cur.length - 1] = { k: 'chain', base: prev, path: t.slice(1).split('.') };
      lastWasClose = false;
      continue;
    }
    lastWasClose = t === '(';
    cur.push(parseOperand(t, rest));
  }
  cmds.push(cur);
  if (cmds.some((c) => c.length === 0)) throw new TemplateError('missing value for command');
  return { decl, cmds };
}

export function parseTemplate(src: string): Node[] {
  // Split into text and actions, honouring {{- and -}} trim markers.
  const parts: Array<{ text?: string; action?: string }> = [];
  let i = 0;
  while (i < src.length) {
    const open = src.indexOf('{{', i);
    if (open < 0) {
      parts.push({ text: src.slice(i) });
      break;
    }
    let text = src.slice(i, open);
    let start = open + 2;
    if (src[start] === '-' && /\s/.test(src[start + 1] ?? '')) {
      text = text.trimEnd();
      start++;
    }
    const close = src.indexOf('}}', start);
    if (close < 0) throw new TemplateError('unclosed action');
    let body = src.slice(start, close);
    let next = close + 2;
    if (/\s-$/.test(body)) {
      body = body.slice(0, -1);
      while (next < src.length && /\s/.test(src[next]!)) next++;
    }
    if (text) parts.push({ text });
    parts.push({ action: body.trim() });
    i = next;
  }
  let pos = 0;
  const parseList = (terminators: string[]): { nodes: Node[]; end: string } => {
    const nodes: Node[] = [];
    while (pos < parts.length) {
      const p = parts[pos++]!;
      if (p.text !== undefined) {
        nodes.push({ t: 'text', s: p.text });
        continue;
      }
      const a = p.action!;
      if (a.startsWith('/*')) continue;
      const word = a.split(/\s+/)[0]!;
      if (terminators.includes(word)) return { nodes, end: a };
      if (word === 'range' || word === 'if' || word === 'with') {
        const toks = tokenize(a.slice(word.length));
        const pipe = parsePipeline(toks);
        const body = parseList(['else', 'end']);
        let elseNodes: Node[] = [];
        if (body.end.startsWith('else')) {
          if (body.end.slice(4).trim())
            throw new TemplateError('{{else if}} is not supported; nest an {{if}} inside {{else}}');
          elseNodes = parseList(['end']).nodes;
        }
        if (word === 'range')
          nodes.push({
            t: 'range',
            vars: pipe.decl,
            p: { decl: [], cmds: pipe.cmds },
            body: body.nodes,
            else: elseNodes,
          });
        else nodes.push({ t: word, p: pipe, body: body.nodes, else: elseNodes });
        continue;
      }
      if (word === 'end' || word === 'else') throw new TemplateError(`unexpected {{${word}}}`);
      nodes.push({ t: 'action', p: parsePipeline(tokenize(a)) });
    }
    if (terminators.length) throw new TemplateError('unexpected EOF');
    return { nodes, end: '' };
  };
  return parseList([]).nodes;
}

// ---------- evaluation ----------

/** Go's JSON encoding escapes <, > and & in strings. */
export function goJson(v: unknown): string {
  return JSON.stringify(v === undefined ? null : v).replace(
    /[<>&]/g,
    (c) => ({ '<': '\\u003c', '>': '\\u003e', '&': '\\u0026' })[c]!,
  );
}

/** fmt's %v of a JSON value. */
export function goPrint(v: unknown): string {
  if (v === undefined) return '<no value>';
  if (v === null) return '<nil>';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return '[' + v.map(goPrint).join(' ') + ']';
  const obj = v as Record<string, unknown>;
  return (
    'map[' +
    Object.keys(obj)
      .sort()
      .map((k) => `${k}:${goPrint(obj[k])}`)
      .join(' ') +
    ']'
  );
}

function truthy(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v as object).length > 0;
  return true;
}

function field(v: unknown, name: string): unknown {
  if (v === null || v === undefined || typeof v !== 'object') {
    throw new TemplateError(
      `can't evaluate field ${name} in type ${v === null || v === undefined ? 'interface {}' : typeof v}`,
    );
  }
  return (v as Record<string, unknown>)[name];
}

function sprintf(fmt: string, args: unknown[]): string {
  let i = 0;
  return fmt.replace(/%([-+ 0#]*\d*(?:\.\d+)?)([svdqtf%])/g, (_m, _flags: string, verb: string) => {
    if (verb === '%') return '%';
    const a = args[i++];
    switch (verb) {
      case 'q':
        return JSON.stringify(goPrint(a));
      case 'd':
        return String(Math.trunc(Number(a)));
      case 'f':
        return Number(a).toFixed(6);
      default:
        return goPrint(a);
    }
  });
}

const FUNCS: Record<string, (...a: unknown[]) => unknown> = {
  json: (v) => goJson(v),
  join: (list, sep) => (Array.isArray(list) ? list.map(goPrint).join(String(sep)) : goPrint(list)),
  split: (s, sep) => String(s).split(String(sep)),
  lower: (s) => String(s).toLowerCase(),
  upper: (s) => String(s).toUpperCase(),
  title: (s) => String(s).replace(/\b\w/g, (c) => c.toUpperCase()),
  truncate: (s, n) => String(s).slice(0, Number(n)),
  pad: (s, l, r) => ' '.repeat(Number(l)) + String(s) + ' '.repeat(Number(r)),
  println: (...a) => a.map(goPrint).join(' ') + '\n',
  print: (...a) => a.map(goPrint).join(''),
  printf: (f, ...a) => sprintf(String(f), a),
  len: (v) =>
    Array.isArray(v)
      ? v.length
      : typeof v === 'string'
        ? v.length
        : v && typeof v === 'object'
          ? Object.keys(v).length
          : 0,
  index: (v, ...keys) => {
    let cur = v;
    for (const k of keys) {
      if (cur === null || cur === undefined) return undefined;
      cur = (cur as Record<string, unknown>)[String(k)];
    }
    return cur;
  },
  eq: (a, ...b) => b.some((x) => x === a),
  ne: (a, b) => a !== b,
  lt: (a, b) => (a as number) < (b as number),
  le: (a, b) => (a as number) <= (b as number),
  gt: (a, b) => (a as number) > (b as number),
  ge: (a, b) => (a as number) >= (b as number),
  not: (a) => !truthy(a),
  and: (...a) => a.find((x) => !truthy(x)) ?? a[a.length - 1],
  or: (...a) => a.find((x) => truthy(x)) ?? a[a.length - 1],
};

interface Scope {
  dot: unknown;
  vars: Map<string, unknown>;
}

function evalOperand(op: Operand, s: Scope, piped: unknown[]): unknown {
  switch (op.k) {
    case 'lit':
      return op.v;
    case 'sub':
      return evalPipeline(op.p, s);
    case 'chain': {
      let v = evalOperand(op.base, s, []);
      for (const name of op.path) v = field(v, name);
      return v;
    }
    case 'ident': {
      const f = FUNCS[op.name];
      if (!f) throw new TemplateError(`function "${op.name}" not defined`);
      return f(...piped);
    }
    case 'field': {
      let v: unknown;
      if (op.base === 'dot') v = s.dot;
      else {
        if (!s.vars.has(op.base)) throw new TemplateError(`undefined variable "${op.base}"`);
        v = s.vars.get(op.base);
      }
      for (const name of op.path) v = field(v, name);
      return v;
    }
  }
}

function evalCommand(cmd: Command, s: Scope, prev: unknown[]): unknown {
  const [head, ...args] = cmd;
  if (head!.k === 'ident') {
    const argv = args.map((a) => evalOperand(a, s, []));
    return evalOperand(head!, s, [...argv, ...prev]);
  }
  if (args.length) throw new TemplateError("can't give argument to non-function");
  return evalOperand(head!, s, []);
}

function evalPipeline(p: Pipeline, s: Scope): unknown {
  let prev: unknown[] = [];
  let v: unknown;
  for (const cmd of p.cmds) {
    v = evalCommand(cmd, s, prev);
    prev = [v];
  }
  if (p.decl.length) s.vars.set(p.decl[0]!, v);
  return v;
}

function run(nodes: Node[], s: Scope, out: string[]): void {
  for (const n of nodes) {
    switch (n.t) {
      case 'text':
        out.push(n.s);
        break;
      case 'action': {
        const v = evalPipeline(n.p, s);
        if (!n.p.decl.length) out.push(goPrint(v));
        break;
      }
      case 'if':
      case 'with': {
        const v = evalPipeline(n.p, s);
        if (truthy(v)) run(n.body, n.t === 'with' ? { dot: v, vars: s.vars } : s, out);
        else run(n.else, s, out);
        break;
      }
      case 'range': {
        const v = evalPipeline(n.p, s);
        let entries: Array<[unknown, unknown]> = [];
        if (Array.isArray(v)) entries = v.map((x, i) => [i, x]);
        else if (v && typeof v === 'object')
          entries = Object.keys(v)
            .sort()
            .map((k) => [k, (v as Record<string, unknown>)[k]]);
        else if (typeof v === 'number') entries = Array.from({ length: v }, (_, i) => [i, i]);
        if (entries.length === 0) {
          run(n.else, s, out);
          break;
        }
        for (const [k, x] of entries) {
          const vars = new Map(s.vars);
          if (n.vars.length === 1) vars.set(n.vars[0]!, x);
          if (n.vars.length === 2) {
            vars.set(n.vars[0]!, k);
            vars.set(n.vars[1]!, x);
          }
          run(n.body, { dot: x, vars }, out);
        }
        break;
      }
    }
  }
}

export function render(nodes: Node[], dot: unknown): string {
  const out: string[] = [];
  run(nodes, { dot, vars: new Map([['$', dot]]) }, out);
  return out.join('');
}

export function renderTemplate(src: string, dot: unknown): string {
  return render(parseTemplate(src), dot);
}
