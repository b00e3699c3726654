/** cove pull | push | login | logout | search — registries, as docker's CLI does them. */
import { createWriteStream } from 'node:fs';
import type { Cli } from '../cli.js';
import { ApiError, CliError, readAll } from '../client.js';
import { eraseCredentials, registryAuthHeader, serverKey, storeCredentials } from '../credentials.js';
import { renderProgress } from '../progress.js';
import { formatList } from '../format.js';
import { familiarString, fullRepo, parseNamed, withDefaultTag } from '../../runtime/images/reference.js';
import { registryDomain } from '../../runtime/distribution/registries.js';

function named(ref: string) {
  try {
    return parseNamed(ref);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
}

function authHeaders(domain: string): Record<string, string> {
  const h = registryAuthHeader(domain);
  return h ? { 'X-Registry-Auth': h } : {};
}

/**
 * POST /images/create?fromImage= with the stored credentials, rendering the
 * progress to `write` (stdout for pull, stderr for run's implicit pull).
 */
export async function pullWithProgress(
  cli: Cli,
  ref: string,
  write: (t: string) => void,
  tty: boolean,
  quiet = false,
): Promise<void> {
  const n = withDefaultTag(named(ref));
  const fromImage = fullRepo(n);
  const query: Record<string, string> = { fromImage, tag: n.digest ?? n.tag! };
  const res = await cli.client.raw('POST', '/images/create', { query, headers: authHeaders(n.domain) });
  await renderProgress(res, quiet ? () => undefined : write, tty);
}

export async function pull(
  cli: Cli,
  ref: string,
  o: { allTags?: boolean; quiet?: boolean; platform?: string },
): Promise<void> {
  if (o.allTags) throw new CliError('--all-tags is not supported');
  const n = named(ref);
  if (!n.tag && !n.digest && !o.quiet) cli.out('Using default tag: latest\n');
  const full = withDefaultTag(n);
  await pullWithProgress(cli, ref, (t) => cli.out(t), Boolean(process.stdout.isTTY), Boolean(o.quiet));
  cli.out(`${fullRepo(full)}${full.digest ? '@' + full.digest : ':' + full.tag}\n`);
}

export async function push(cli: Cli, ref: string, o: { allTags?: boolean; quiet?: boolean }): Promise<void> {
  const n = named(ref);
  if (n.digest) throw new CliError(`invalid reference format: cannot push a digest reference`);
  if (!n.tag && !o.allTags && !o.quiet) cli.out('Using default tag: latest\n');
  const repo = familiarString({ domain: n.domain, path: n.path });
  const query: Record<string, string> = { tag: o.allTags ? '' : (n.tag ?? 'latest') };
  const res = await cli.client.raw('POST', `/images/${repo}/push`, { query, headers: authHeaders(n.domain) });
  await renderProgress(res, o.quiet ? () => undefined : (t) => cli.out(t), Boolean(process.stdout.isTTY));
  if (o.quiet) cli.out(`${fullRepo(n)}:${n.tag ?? 'latest'}\n`);
}

async function readPassword(): Promise<string> {
  if (process.stdin.isTTY) throw new CliError('Cannot perform an interactive login from a non TTY device');
  const text = (await readAll(process.stdin)).toString('utf8');
  return text.replace(/\r?\n$/, '');
}

export async function login(
  cli: Cli,
  server: string | undefined,
  o: { username?: string; password?: string; passwordStdin?: boolean },
): Promise<void> {
  if (o.password && o.passwordStdin) throw new CliError('--password and --password-stdin are mutually exclusive');
  let password = o.password;
  if (o.passwordStdin) {
    if (!o.username) throw new CliError('Must provide --username with --password-stdin');
    password = await readPassword();
  }
  if (!o.username || password === undefined)
    throw new CliError('Cannot perform an interactive login from a non TTY device');
  if (o.password) cli.err('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
  const domain = registryDomain(server ?? '');
  const serveraddress = serverKey(domain);
  try {
    await cli.client.post('/auth', { username: o.username, password, serveraddress });
  } catch (e) {
    if (e instanceof ApiError) throw new CliError(`Error response from daemon: ${e.message}`);
    throw e;
  }
  storeCredentials(domain, o.username, password);
  cli.out('Login Succeeded\n');
}

export async function logout(cli: Cli, server: string | undefined): Promise<void> {
  const domain = registryDomain(server ?? '');
  const key = serverKey(domain);
  cli.out(`Removing login credentials for ${domain === 'docker.io' ? key : domain}\n`);
  if (!eraseCredentials(domain)) cli.err(`WARNING: could not erase credentials: ${key}: not logged in\n`);
}

export async function search(
  cli: Cli,
  term: string,
  o: { limit?: string; filter?: string[]; format?: string; noTrunc?: boolean; trunc?: boolean },
): Promise<void> {
  const filters: Record<string, string[]> = {};
  for (const f of o.filter ?? []) {
    const i = f.indexOf('=');
    if (i < 0) throw new CliError(`bad format of filter (expected name=value)`);
    (filters[f.slice(0, i)] ??= []).push(f.slice(i + 1));
  }
  const domain = term.includes('/') && /[.:]|^localhost$/.test(term.split('/')[0]!) ? term.split('/')[0]! : 'docker.io';
  const res = await cli.client.raw('GET', '/images/search', {
    query: { term, limit: o.limit ?? '25', filters: JSON.stringify(filters) },
    headers: authHeaders(domain),
  });
  const hits = JSON.parse((await readAll(res)).toString('utf8')) as Array<{
    name: string;
    description: string;
    star_count: number;
    is_official: boolean;
    is_automated: boolean;
  }>;
  const rows = hits.map((h) => ({
    Name: h.name,
    Description: h.description,
    StarCount: String(h.star_count),
    IsOfficial: h.is_official ? '[OK]' : '',
    IsAutomated: h.is_automated ? '[OK]' : '',
  }));
  cli.out(
    formatList(
      rows,
      o.format,
      {
        headers: {
          Name: 'NAME',
          Description: 'DESCRIPTION',
          StarCount: 'STARS',
          IsOfficial: 'OFFICIAL',
          IsAutomated: 'AUTOMATED',
        },
        defaultTable: 'table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}',
        quietField: 'Name',
      },
      false,
    ),
  );
}

/** `cove save -o FILE IMAGE...` (stdout when no file and stdout is not a terminal). */
export async function save(cli: Cli, images: string[], o: { output?: string }): Promise<void> {
  if (!o.output && process.stdout.isTTY)
    throw new CliError('cowardly refusing to save to a terminal. Use the -o flag or redirect');
  const res = await cli.client.raw('GET', '/images/get', { query: { names: images } });
  const out = o.output ? createWriteStream(o.output) : process.stdout;
  await new Promise<void>((resolve, reject) => {
    res.on('error', reject);
    out.on('error', reject);
    if (o.output) (out as ReturnType<typeof createWriteStream>).on('finish', resolve);
    else res.on('end', resolve);
    res.pipe(out as NodeJS.WritableStream, { end: Boolean(o.output) });
  });
}
