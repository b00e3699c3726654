import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command, Option, UsageError, type ParseOutcome } from '../../src/common/args.js';

/** A cove-like program: global -H, a `run` that passes everything after IMAGE through, `network ls`. */
function program(): Command {
  const collect = (v: string, prev: string[] | undefined): string[] => [...(prev ?? []), v];
  const p = new Command('cove').description('Cove CLI').version('Cove version 0.1.0');
  p.option('-H, --host <uri>', 'daemon socket');
  p.command('run')
    .description('Create and run a new container')
    .argument('<image>')
    .argument('[command...]')
    .option('-d, --detach', 'detached')
    .option('-i, --interactive', 'keep STDIN open')
    .option('-t, --tty', 'a TTY')
    .option('-e, --env <kv>', 'environment', collect)
    .option('--name <name>', 'name')
    .option('--no-healthcheck', 'no HEALTHCHECK')
    .addOption(new Option('--pull <when>', 'pull policy').choices(['always', 'missing', 'never']).default('missing'))
    .passThroughOptions()
    .action(() => undefined);
  const net = p.command('network').description('Manage networks');
  net
    .command('ls')
    .alias('list')
    .option('-q, --quiet', 'only IDs')
    .option('--format <tpl>', 'template', 'table')
    .action(() => undefined);
  return p;
}

const action = (r: ParseOutcome) => {
  assert.equal(r.kind, 'action');
  return (r as Extract<ParseOutcome, { kind: 'action' }>).args;
};

test("args: clustered short flags, repeatable values, '=' values, pass-through after the image", () => {
  const args = action(
    program().parse(['run', '-dit', '-e', 'A=1', '--env=B=2', '--name', 'web', 'alpine', 'ls', '-l']),
  );
  const [image, cmd, opts] = args as [string, string[], Record<string, unknown>];
  assert.equal(image, 'alpine');
  assert.deepEqual(cmd, ['ls', '-l']);
  assert.equal(opts.detach, true);
  assert.equal(opts.interactive, true);
  assert.equal(opts.tty, true);
  assert.deepEqual(opts.env, ['A=1', 'B=2']);
  assert.equal(opts.name, 'web');
  assert.equal(opts.healthcheck, true);
  assert.equal(opts.pull, 'missing');
});

test('args: --no-x negations, choices, aliases, global options before the subcommand', () => {
  const p = program();
  const [, , o] = action(p.parse(['-H', 'unix:///x.sock', 'run', '--no-healthcheck', '--pull=never', 'alpine'])) as [
    string,
    string[],
    Record<string, unknown>,
  ];
  assert.equal(o.healthcheck, false);
  assert.equal(o.pull, 'never');
  assert.equal(p.opts().host, 'unix:///x.sock');
  const [ls] = action(program().parse(['network', 'list', '-q'])) as [Record<string, unknown>];
  assert.equal(ls.quiet, true);
  assert.equal(ls.format, 'table');
  assert.throws(
    () => program().parse(['run', '--pull', 'sometimes', 'alpine']),
    /invalid argument "sometimes" for "--pull" flag: not one of always, missing, never/,
  );
});

test("args: help and version are text to print, in docker's layout with cobra's defaults", () => {
  const help = program().parse(['network', 'ls', '--help']);
  assert.equal(help.kind, 'print');
  const text = (help as Extract<ParseOutcome, { kind: 'print' }>).text;
  assert.match(text, /^\nUsage: {2}cove network ls \[OPTIONS\]\n/);
  assert.match(text, /\nAliases:\n {2}ls, list\n/);
  assert.match(text, /--format <tpl> +template \(default "table"\)\n/);
  assert.doesNotMatch(text, /--quiet +only IDs \(default/);
  const top = program().parse([]);
  assert.equal(top.kind, 'print');
  assert.match((top as Extract<ParseOutcome, { kind: 'print' }>).text, /\nCommands:\n {2}network +Manage networks\n/);
  assert.deepEqual(program().parse(['--version']).kind, 'print');
});

test("args: usage errors carry docker's wording and exit codes", () => {
  const err = (argv: string[]): UsageError => {
    try {
      program().parse(argv);
    } catch (e) {
      assert.ok(e instanceof UsageError);
      return e;
    }
    assert.fail(`no error for ${argv.join(' ')}`);
  };
  assert.equal(err(['run', '--bogus', 'alpine']).message, "unknown flag: --bogus\nSee 'cove run --help'.");
  assert.equal(err(['run', '-dz', 'alpine']).message, "unknown shorthand flag: 'z' in -dz\nSee 'cove run --help'.");
  assert.equal(err(['run', '--name']).message, "flag needs an argument: --name\nSee 'cove run --help'.");
  assert.equal(err(['run', '--name']).exitCode, 125);
  const missing = err(['run']);
  assert.match(missing.message, /^"cove run" requires at least 1 argument\./);
  assert.equal(missing.exitCode, 1);
  assert.equal(err(['frob']).message, "cove: 'frob' is not a cove command.\nSee 'cove --help'");
});

test('args: a command built lazily is defined only when a command line reaches it, and behaves the same', () => {
  const built: string[] = [];
  const p = new Command('cove');
  p.option('-H, --host <uri>', 'daemon socket');
  p.command('network')
    .description('Manage networks')
    .build((network) => {
      built.push('network');
      network
        .command('ls')
        .description('List networks')
        .option('-q, --quiet', 'IDs only')
        .action(() => undefined);
    });
  p.command('volume')
    .description('Manage volumes')
    .build((volume) => {
      built.push('volume');
      volume
        .command('ls')
        .description('List volumes')
        .action(() => undefined);
    });
  // The program's help lists both by name and description without building either.
  const help = p.parse(['--help']);
  assert.equal(help.kind, 'print');
  assert.match((help as { text: string }).text, / {2}network {2}Manage networks\n {2}volume {3}Manage volumes\n/);
  assert.deepEqual(built, []);
  const r = p.parse(['-H', 'unix:///x', 'network', 'ls', '-q']);
  assert.equal(r.kind, 'action');
  assert.deepEqual((r as { args: unknown[] }).args.slice(0, 1), [{ quiet: true }]);
  assert.deepEqual(built, ['network']);
  // Built once, however often it is reached; its own help lists what the builder defined.
  assert.match((p.parse(['network', '--help']) as { text: string }).text, / {2}ls {2}List networks\n/);
  assert.deepEqual(built, ['network']);
  assert.throws(() => p.parse(['volume', 'nope']), UsageError);
  assert.deepEqual(built, ['network', 'volume']);
});
