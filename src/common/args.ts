/**
 * The argument parser of both binaries (`cove` and `coved`): the subset of
 * commander's builder API they use, with docker's help and error style. Why
 * not commander itself: loading it costs 20-40 ms on this machine, a third of
 * a bare node start, and the CLI must start within 1.3x of `node -e 0`; the
 * daemon then shares the same parser instead of a second library. Semantics
 * follow commander and docker's CLI (cobra/pflag):
 * long options with `=` or a separate value, clustered short flags (`-dit`),
 * `--no-x` negations, repeatable options via a collector, `--` ends options,
 * passThroughOptions (after the first argument everything is an argument:
 * `run IMAGE CMD -x`), global options before the subcommand, a value
 * checked against `choices`, defaults shown in help as cobra shows them.
 */

export class UsageError extends Error {
  constructor(
    message: string,
    readonly exitCode = 125,
  ) {
    super(message);
  }
}

type Collector = (value: string, previous: unknown) => unknown;

export class Option {
  readonly names: string[] = [];
  readonly attr: string;
  readonly takesValue: boolean;
  readonly negate: boolean;
  readonly display: string;
  collector?: Collector;
  dflt: unknown;
  allowed?: readonly string[];

  constructor(
    readonly flags: string,
    readonly desc = '',
  ) {
    const valueMatch = /[<[][^>\]]*[>\]]/.exec(flags);
    this.takesValue = Boolean(valueMatch);
    const names = flags
      .replace(/[<[][^>\]]*[>\]]/g, '')
      .split(/[ ,|]+/)
      .filter(Boolean);
    this.names = names;
    const long = [...names].reverse().find((n) => n.startsWith('--')) ?? names[0]!;
    this.negate = long.startsWith('--no-');
    this.attr = long.replace(/^--?(no-)?/, '').replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
    this.display = flags;
  }

  /** The only values accepted (pflag's wording when another is given). */
  choices(values: readonly string[]): this {
    this.allowed = values;
    return this;
  }

  default(value: unknown): this {
    this.dflt = value;
    return this;
  }

  /** The help line's tail, as cobra prints it: `(default "x")`; nothing for empty, lists and booleans. */
  defaultText(): string {
    const d = this.dflt;
    if (typeof d === 'string' && d !== '') return ` (default "${d}")`;
    if (typeof d === 'number') return ` (default ${d})`;
    return '';
  }
}

/** What one command line asks for: a command's action with its arguments, or text to print (help, version). */
export type ParseOutcome =
  { kind: 'action'; command: Command; args: unknown[] } | { kind: 'print'; text: string; command: Command };

interface ArgSpec {
  name: string;
  required: boolean;
  variadic: boolean;
}

type Action = (...args: unknown[]) => unknown;

export class Command {
  readonly commands: Command[] = [];
  readonly options: Option[] = [];
  private readonly argSpecs: ArgSpec[] = [];
  private aliasNames: string[] = [];
  private desc = '';
  private actionFn?: Action;
  private passThrough = false;
  private helpFlags = ['-h', '--help'];
  private versionFlags: string[] = [];
  private versionText = '';
  private values: Record<string, unknown> = {};
  private builder?: (c: Command) => void;
  parent?: Command;

  constructor(readonly name = '') {}

  command(name: string): Command {
    const c = new Command(name);
    c.parent = this;
    this.commands.push(c);
    return c;
  }

  /**
   * Defines this command's options, arguments and subcommands when a command line reaches it (or asks for its
   * help), not up front: the CLI has ~90 commands and ~700 options, and each call uses one command (~6 ms of a
   * `cove` call went to building the rest). Its name, aliases and description stay eager, for lookup and the
   * parent's help.
   */
  build(fn: (c: Command) => void): this {
    this.builder = fn;
    return this;
  }

  private built(): void {
    const fn = this.builder;
    this.builder = undefined;
    fn?.(this);
  }

  description(d: string): this {
    this.desc = d;
    return this;
  }
  alias(a: string): this {
    this.aliasNames.push(a);
    return this;
  }
  aliases(a: string[]): this {
    this.aliasNames.push(...a);
    return this;
  }
  passThroughOptions(): this {
    this.passThrough = true;
    return this;
  }
  enablePositionalOptions(): this {
    return this;
  }
  showSuggestionAfterError(_b?: boolean): this {
    return this;
  }
  configureHelp(_c?: unknown): this {
    return this;
  }
  helpOption(flags: string): this {
    this.helpFlags = flags.split(/[ ,]+/).filter(Boolean);
    return this;
  }

  /** `-v, --version` prints `text` and does nothing else (docker: `Docker version ...`). */
  version(text: string, flags = '-v, --version'): this {
    this.versionText = text;
    this.versionFlags = flags.split(/[ ,]+/).filter(Boolean);
    return this.addOption(new Option(flags, 'Print version information and quit'));
  }

  option(flags: string, desc?: string, fnOrDefault?: Collector | unknown, dflt?: unknown): this {
    const o = new Option(flags, desc);
    if (typeof fnOrDefault === 'function') {
      o.collector = fnOrDefault as Collector;
      o.dflt = dflt;
    } else {
      o.dflt = fnOrDefault;
    }
    return this.addOption(o);
  }

  addOption(o: Option): this {
    this.options.push(o);
    if (o.negate) {
      if (!(o.attr in this.values)) this.values[o.attr] = true;
    } else if (o.dflt !== undefined) {
      this.values[o.attr] = o.dflt;
    }
    return this;
  }

  argument(spec: string): this {
    const m = /^([<[])(.+?)(\.\.\.)?[>\]]$/.exec(spec);
    if (!m) throw new Error(`bad argument spec ${spec}`);
    this.argSpecs.push({ name: m[2]!, required: m[1] === '<', variadic: Boolean(m[3]) });
    return this;
  }

  action(fn: Action): this {
    this.actionFn = fn;
    return this;
  }

  opts(): Record<string, unknown> {
    return this.values;
  }

  private path(): string {
    const names: string[] = [];
    for (let c: Command | undefined = this; c; c = c.parent) names.unshift(c.name);
    return names.filter(Boolean).join(' ');
  }

  private findOption(flag: string): { opt: Option; negated: boolean } | undefined {
    for (const o of this.options) {
      if (o.names.includes(flag)) return { opt: o, negated: o.negate };
    }
    return undefined;
  }

  private set(o: Option, negated: boolean, value?: string): void {
    if (!o.takesValue) {
      this.values[o.attr] = !negated;
      return;
    }
    if (o.allowed && !o.allowed.includes(value!))
      throw this.usageError(
        `invalid argument "${value}" for "${o.display.replace(/ *[<[].*$/, '')}" flag: not one of ${o.allowed.join(', ')}`,
      );
    this.values[o.attr] = o.collector ? o.collector(value!, this.values[o.attr]) : value;
  }

  helpText(): string {
    this.built();
    let out = `\nUsage:  ${this.path()}${this.options.length ? ' [OPTIONS]' : ''}${this.commands.length ? ' COMMAND' : ''}`;
    for (const a of this.argSpecs)
      out += ` ${a.required ? '' : '['}${a.name.toUpperCase()}${a.variadic ? '...' : ''}${a.required ? '' : ']'}`;
    out += `\n\n${this.desc}\n`;
    if (this.aliasNames.length) out += `\nAliases:\n  ${[this.name, ...this.aliasNames].join(', ')}\n`;
    if (this.commands.length) {
      out += '\nCommands:\n';
      const w = Math.max(...this.commands.map((c) => c.name.length)) + 2;
      for (const c of [...this.commands].sort((a, b) => a.name.localeCompare(b.name)))
        out += `  ${c.name.padEnd(w)}${c.desc}\n`;
    }
    if (this.options.length) {
      out += '\nOptions:\n';
      const w = Math.max(...this.options.map((o) => o.display.length)) + 2;
      for (const o of this.options) out += `  ${o.display.padEnd(w)}${o.desc}${o.defaultText()}\n`;
    }
    if (this.commands.length) out += `\nRun '${this.path()} COMMAND --help' for more information on a command.\n`;
    return out;
  }

  private usageError(msg: string): UsageError {
    return new UsageError(`${msg}\nSee '${this.path()} --help'.`);
  }

  /**
   * Parses `tokens` for this command (no program name in front) without running
   * anything: the subcommand whose action to call with which arguments, or the
   * help or version text to print. A bad command line throws UsageError.
   */
  parse(tokens: string[]): ParseOutcome {
    this.built();
    const positionals: string[] = [];
    let i = 0;
    let onlyArgs = false;
    while (i < tokens.length) {
      const t = tokens[i++]!;
      if (onlyArgs) {
        positionals.push(t);
        continue;
      }
      if (t === '--') {
        onlyArgs = true;
        continue;
      }
      if (this.helpFlags.includes(t)) return { kind: 'print', text: this.helpText(), command: this };
      if (this.versionFlags.includes(t)) return { kind: 'print', text: `${this.versionText}\n`, command: this };
      if (t.startsWith('--')) {
        const eq = t.indexOf('=');
        const flag = eq >= 0 ? t.slice(0, eq) : t;
        const found = this.findOption(flag);
        if (!found) throw this.usageError(`unknown flag: ${flag}`);
        if (found.opt.takesValue) {
          const value: string | undefined = eq >= 0 ? t.slice(eq + 1) : tokens[i++];
          if (value === undefined) throw this.usageError(`flag needs an argument: ${flag}`);
          this.set(found.opt, false, value);
        } else {
          if (eq >= 0) this.values[found.opt.attr] = !['false', '0'].includes(t.slice(eq + 1)) !== found.negated;
          else this.set(found.opt, found.negated);
        }
        continue;
      }
      if (t.startsWith('-') && t.length > 1 && !/^-\d/.test(t)) {
        for (let j = 1; j < t.length; j++) {
          const flag = '-' + t[j];
          const found = this.findOption(flag);
          if (!found) throw this.usageError(`unknown shorthand flag: '${t[j]}' in ${t}`);
          if (found.opt.takesValue) {
            let value = t.slice(j + 1);
            if (value.startsWith('=')) value = value.slice(1);
            if (!value) {
              const next = tokens[i++];
              if (next === undefined) throw this.usageError(`flag needs an argument: '${t[j]}' in ${t}`);
              value = next;
            }
            this.set(found.opt, false, value);
            break;
          }
          this.set(found.opt, found.negated);
        }
        continue;
      }
      if (this.commands.length && positionals.length === 0) {
        const sub = this.commands.find((c) => c.name === t || c.aliasNames.includes(t));
        if (!sub)
          throw new UsageError(
            `${this.path()}: '${t}' is not a ${this.path()} command.\nSee '${this.path()} --help'`,
            1,
          );
        return sub.parse(tokens.slice(i));
      }
      positionals.push(t);
      if (this.passThrough) onlyArgs = true;
    }
    if (!this.actionFn) return { kind: 'print', text: this.helpText(), command: this };
    const args: unknown[] = [];
    let p = 0;
    for (const spec of this.argSpecs) {
      if (spec.variadic) {
        const rest = positionals.slice(p);
        if (spec.required && rest.length === 0) throw this.argCountError();
        args.push(rest);
        p = positionals.length;
      } else {
        const v = positionals[p++];
        if (v === undefined && spec.required) throw this.argCountError();
        args.push(v);
      }
    }
    if (p < positionals.length) throw this.argCountError();
    return { kind: 'action', command: this, args: [...args, this.values, this] };
  }

  private argCountError(): UsageError {
    const required = this.argSpecs.filter((a) => a.required).length;
    const variadic = this.argSpecs.some((a) => a.variadic);
    const max = this.argSpecs.length;
    const what = variadic
      ? `at least ${required} argument${required === 1 ? '' : 's'}`
      : required === max
        ? `exactly ${max} argument${max === 1 ? '' : 's'}`
        : `at least ${required} and at most ${max} arguments`;
    return new UsageError(
      `"${this.path()}" requires ${what}.\nSee '${this.path()} --help'.\n\nUsage:  ${this.path()} [OPTIONS]${this.argSpecs.map((a) => ' ' + (a.required ? '' : '[') + a.name.toUpperCase() + (a.variadic ? '...' : '') + (a.required ? '' : ']')).join('')}\n\n${this.desc}`,
      1,
    );
  }

  async parseAsync(argv: string[]): Promise<void> {
    try {
      const r = this.parse(argv.slice(2));
      if (r.kind === 'print') process.stdout.write(r.text);
      else await r.command.actionFn?.(...r.args);
    } catch (e) {
      if (e instanceof UsageError) {
        process.stderr.write(e.message + '\n');
        process.exitCode = e.exitCode;
        return;
      }
      throw e;
    }
  }
}
