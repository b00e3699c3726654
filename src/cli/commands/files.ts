/** cove cp, diff, commit, export: docker's verbs over the archive, changes, commit and export endpoints. */
import { createWriteStream, existsSync, statSync } from 'node:fs';
import { copyFile, mkdtemp, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';
import type { Cli } from '../main.js';
import { ApiError, CliError } from '../client.js';

const enc = encodeURIComponent;

/** `container:path` (a name never holds ':' nor starts with '/' or '.'), else a local path. */
function splitCpArg(arg: string): { container?: string; path: string } {
  if (arg.startsWith('/') || arg.startsWith('.')) return { path: arg };
  const i = arg.indexOf(':');
  if (i <= 0) return { path: arg };
  return { container: arg.slice(0, i), path: arg.slice(i + 1) };
}

interface PathStat {
  name: string;
  size: number;
  mode: number;
  linkTarget: string;
}

async function statIn(cli: Cli, container: string, path: string): Promise<PathStat | undefined> {
  try {
    const res = await cli.client.raw('HEAD', `/containers/${enc(container)}/archive`, { query: { path } });
    res.resume();
    const h = res.headers['x-docker-container-path-stat'];
    return h ? (JSON.parse(Buffer.from(String(h), 'base64').toString('utf8')) as PathStat) : undefined;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404 && !/No such container/.test(e.message)) return undefined;
    throw e;
  }
}

const DIR_BIT = 0x80000000; // Go's os.ModeDir in the stat header

/** docker cp: container→local, local→container, or to/from '-' as a tar stream. */
export async function cp(
  cli: Cli,
  src: string,
  dst: string,
  o: { archive?: boolean; followLink?: boolean; quiet?: boolean },
): Promise<void> {
  const from = splitCpArg(src);
  const to = splitCpArg(dst);
  if (from.container && to.container) throw new CliError('copying between containers is not supported');
  if (!from.container && !to.container) throw new CliError('must specify at least one container source');
  if (from.container) {
    if (from.path === '') throw new CliError('Error: path cannot be empty');
    const res = await cli.client.raw('GET', `/containers/${enc(from.container)}/archive`, {
      query: { path: from.path },
    });
    if (to.path === '-') {
      await pipeline(res as unknown as Readable, process.stdout);
      return;
    }
    const target = resolve(to.path);
    const st = statSync(target, { throwIfNoEntry: false });
    if (st?.isDirectory()) {
      await pipeline(res as unknown as Readable, tar.x({ cwd: target, preserveOwner: Boolean(o.archive) }));
      return;
    }
    if (!existsSync(dirname(target))) throw new CliError(`Error: no such directory: ${dirname(target)}`);
    // A new name: extract beside it, then rename what the tar's top entry is.
    const tmp = await mkdtemp(join(dirname(target), '.cove-cp-'));
    try {
      await pipeline(res as unknown as Readable, tar.x({ cwd: tmp, preserveOwner: Boolean(o.archive) }));
      const top = basename(from.path.replace(/\/\.?$/, '')) || '.';
      await rm(target, { recursive: true, force: true });
      await rename(join(tmp, top), target);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    return;
  }
  const container = to.container!;
  if (to.path === '') throw new CliError('Error: path cannot be empty');
  const put = (body: Readable, dir: string): Promise<unknown> =>
    cli.client
      .raw('PUT', `/containers/${enc(container)}/archive`, {
        query: { path: dir, ...(o.archive ? { copyUIDGID: true } : {}) },
        upload: body,
      })
      .then((r) => r.resume());
  if (from.path === '-') {
    await put(process.stdin, to.path);
    return;
  }
  const source = resolve(from.path);
  const sst = statSync(source, { throwIfNoEntry: false });
  if (!sst) throw new CliError(`lstat ${source}: no such file or directory`);
  // HEAD answers carry no message: make sure of the container first (a 404 below is then the path).
  await cli.client.get(`/containers/${enc(container)}/json`);
  const dest = await statIn(cli, container, to.path);
  if (dest && (dest.mode & DIR_BIT) !== 0) {
    await put(
      tar.c({ cwd: dirname(source), portable: !o.archive, follow: Boolean(o.followLink) }, [
        basename(source),
      ]) as unknown as Readable,
      to.path,
    );
    return;
  }
  if (to.path.endsWith('/'))
    throw new CliError(`Error response from daemon: Could not find the file ${to.path} in container ${container}`);
  // A new name inside an existing directory: the archive's top entry carries that name.
  const parent = to.path.replace(/\/[^/]*$/, '') || '/';
  const name = basename(to.path);
  if (sst.isDirectory()) {
    await put(
      tar.c({ cwd: source, portable: !o.archive, prefix: name, follow: Boolean(o.followLink) }, [
        '.',
      ]) as unknown as Readable,
      parent,
    );
    return;
  }
  const tmp = await mkdtemp(join(dirname(source), '.cove-cp-'));
  try {
    await copyFile(source, join(tmp, name));
    await put(tar.c({ cwd: tmp, portable: !o.archive }, [name]) as unknown as Readable, parent);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

const KIND = ['C', 'A', 'D'];

/** docker diff: "A /path" per change. */
export async function diff(cli: Cli, container: string): Promise<void> {
  const changes = await cli.client.get<Array<{ Path: string; Kind: number }> | null>(
    `/containers/${enc(container)}/changes`,
  );
  cli.out((changes ?? []).map((c) => `${KIND[c.Kind] ?? '?'} ${c.Path}\n`).join(''));
}

/** docker commit [-a] [-c]... [-m] [-p] CONTAINER [REPOSITORY[:TAG]]: prints the new image's ID. */
export async function commit(
  cli: Cli,
  container: string,
  reference: string | undefined,
  o: { author?: string; change?: string[]; message?: string; pause?: boolean },
): Promise<void> {
  const query: Record<string, string | boolean | string[]> = { container, pause: o.pause !== false };
  if (reference) {
    const m = /^(.*[^/]):([\w][\w.-]{0,127})$/.exec(reference);
    query.repo = m ? m[1]! : reference;
    if (m) query.tag = m[2]!;
  }
  if (o.author) query.author = o.author;
  if (o.message) query.comment = o.message;
  if (o.change?.length) query.changes = o.change;
  const res = await cli.client.post<{ Id: string }>('/commit', undefined, query);
  cli.out(res.Id + '\n');
}

/** docker export [-o FILE] CONTAINER: the root filesystem as a tar, never to a terminal. */
export async function exportContainer(cli: Cli, container: string, o: { output?: string }): Promise<void> {
  if (!o.output && process.stdout.isTTY)
    throw new CliError('cowardly refusing to save to a terminal. Use the -o flag or redirect');
  const res = await cli.client.raw('GET', `/containers/${enc(container)}/export`);
  if (o.output) {
    const tmp = `${o.output}.tmp-${process.pid}`;
    try {
      await pipeline(res as unknown as Readable, createWriteStream(tmp));
      await rename(tmp, o.output);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
    return;
  }
  await pipeline(res as unknown as Readable, process.stdout);
}
