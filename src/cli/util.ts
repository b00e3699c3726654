/** Small helpers shared by the cove commands. */
import type { Cli } from './cli.js';
import { ApiError, CliError } from './client.js';

/** --filter k=v (repeated) → the API's filters map. */
export function filtersFrom(list: string[] | undefined): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const f of list ?? []) {
    const eq = f.indexOf('=');
    if (eq <= 0)
      throw new CliError(`invalid argument "${f}" for "-f, --filter" flag: bad format of filter (expected name=value)`);
    const k = f.slice(0, eq).trim().toLowerCase();
    (out[k] ??= []).push(f.slice(eq + 1));
  }
  return out;
}

/** ["k=v", "flag"] → {k: "v", flag: ""} */
export function keyValues(list: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list ?? []) {
    const eq = item.indexOf('=');
    if (eq < 0) out[item] = '';
    else out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

/** Commander collector for repeatable options. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Asks a y/N question on stdin. */
export async function confirm(cli: Cli, question: string): Promise<boolean> {
  cli.out(question);
  const answer = await new Promise<string>((resolve) => {
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('\n')) done();
    };
    const done = () => {
      process.stdin.off('data', onData);
      process.stdin.pause();
      resolve(buf.split('\n')[0]!.trim());
    };
    process.stdin.on('data', onData);
    process.stdin.once('end', done);
  });
  return /^y(es)?$/i.test(answer);
}

/** Reads all of stdin (image import/load from "-"). */
export async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Prints the errors collected from a multi-name command, one a line, and makes the CLI exit 1. */
export function reportErrors(cli: Cli, errors: string[]): void {
  if (errors.length) {
    cli.err(errors.join('\n') + '\n');
    cli.exitCode = 1;
  }
}

/**
 * Runs `fn` for each name in turn. Like docker, a daemon error does not stop
 * the others: it is collected and all are printed at the end (exit 1).
 * Any other error ends the command at once.
 */
export async function eachName(cli: Cli, names: string[], fn: (name: string) => Promise<void>): Promise<void> {
  const errors: string[] = [];
  for (const n of names) {
    try {
      await fn(n);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      errors.push(e.display);
    }
  }
  reportErrors(cli, errors);
}
