/** cove images | image ls|rm|inspect|tag|import|load */
import { createReadStream, openSync } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Cli } from '../cli.js';
import { ApiError, CliError, readProgress } from '../client.js';
import {
  formatEach,
  formatList,
  humanDuration,
  humanSize,
  inspectJson,
  sortedObject,
  unixTimeString,
} from '../format.js';
import { eachName, filtersFrom, reportErrors } from '../util.js';
import type { DockerImageSummary } from '../../runtime/types.js';

function splitRef(ref: string): { repo: string; tag: string } {
  const m = /^(.*[^/]):([\w][\w.-]{0,127})$/.exec(ref);
  return m ? { repo: m[1]!, tag: m[2]! } : { repo: ref, tag: 'latest' };
}

export async function ls(
  cli: Cli,
  repository: string | undefined,
  o: { all?: boolean; quiet?: boolean; filter?: string[]; format?: string; digests?: boolean; trunc?: boolean },
): Promise<void> {
  const filters = filtersFrom(o.filter);
  if (repository) (filters.reference ??= []).push(repository);
  const images = await cli.client.get<DockerImageSummary[]>('/images/json', {
    all: Boolean(o.all),
    filters: JSON.stringify(filters),
  });
  images.sort((a, b) => b.Created - a.Created);
  const trunc = o.trunc !== false;
  const rows: Array<Record<string, unknown>> = [];
  const seenIds = new Set<string>();
  for (const img of images) {
    const id = trunc ? img.Id.replace(/^sha256:/, '').slice(0, 12) : img.Id;
    const tags = img.RepoTags?.length ? img.RepoTags : ['<none>:<none>'];
    const digestOf = (repo: string): string => {
      const d = (img.RepoDigests ?? []).find((x) => x.startsWith(repo + '@'));
      return d ? d.slice(d.indexOf('@') + 1) : '<none>';
    };
    for (const t of tags) {
      if (o.quiet && seenIds.has(id)) continue;
      seenIds.add(id);
      const { repo, tag } = t === '<none>:<none>' ? { repo: '<none>', tag: '<none>' } : splitRef(t);
      rows.push(
        sortedObject({
          Containers: img.Containers >= 0 ? String(img.Containers) : 'N/A',
          CreatedAt: unixTimeString(img.Created),
          CreatedSince: `${humanDuration(Date.now() - img.Created * 1000)} ago`,
          Digest: digestOf(repo),
          ID: id,
          Repository: repo,
          SharedSize: img.SharedSize >= 0 ? humanSize(img.SharedSize) : 'N/A',
          Size: humanSize(img.Size),
          Tag: tag,
          UniqueSize: img.SharedSize >= 0 ? humanSize(img.Size - img.SharedSize) : 'N/A',
          VirtualSize: humanSize(img.VirtualSize ?? img.Size, 4),
        }),
      );
    }
  }
  cli.out(
    formatList(
      rows,
      o.format,
      {
        headers: {
          Containers: 'CONTAINERS',
          CreatedAt: 'CREATED AT',
          CreatedSince: 'CREATED',
          Digest: 'DIGEST',
          ID: 'IMAGE ID',
          Repository: 'REPOSITORY',
          SharedSize: 'SHARED SIZE',
          Size: 'SIZE',
          Tag: 'TAG',
          UniqueSize: 'UNIQUE SIZE',
          VirtualSize: 'VIRTUAL SIZE',
        },
        defaultTable: o.digests
          ? 'table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}'
          : 'table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}',
        quietField: 'ID',
      },
      Boolean(o.quiet),
    ),
  );
}

export async function rm(cli: Cli, names: string[], o: { force?: boolean; prune?: boolean }): Promise<void> {
  await eachName(cli, names, async (n) => {
    const res = await cli.client.json<Array<{ Untagged?: string; Deleted?: string }>>('DELETE', `/images/${n}`, {
      query: { force: Boolean(o.force), noprune: o.prune === false },
    });
    for (const r of res ?? []) cli.out(r.Untagged ? `Untagged: ${r.Untagged}\n` : `Deleted: ${r.Deleted}\n`);
  });
}

export async function inspect(cli: Cli, names: string[], o: { format?: string }): Promise<void> {
  const found: unknown[] = [];
  const errors: string[] = [];
  for (const n of names) {
    try {
      found.push(await cli.client.get(`/images/${n}/json`));
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) errors.push(`Error: No such image: ${n}`);
      else throw e;
    }
  }
  cli.out(o.format ? formatEach(found, o.format) : inspectJson(found));
  reportErrors(cli, errors);
}

export async function tag(cli: Cli, source: string, target: string): Promise<void> {
  const { repo, tag: t } = splitRef(target);
  await cli.client.post(`/images/${source}/tag`, undefined, { repo, tag: t });
}

function inputStream(file: string | undefined, what: string): Readable {
  if (file === undefined || file === '-') {
    if (process.stdin.isTTY) throw new CliError(`requested ${what} from stdin, but stdin is empty`);
    return process.stdin;
  }
  // Open synchronously so a missing file is a clear error, before anything is sent
  // (an async stream error would surface as an unhandled crash mid-request).
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new CliError(`open ${file}: ${err.code === 'ENOENT' ? 'no such file or directory' : err.message}`);
  }
  return createReadStream(file, { fd });
}

export async function importImage(
  cli: Cli,
  file: string,
  reference: string | undefined,
  o: { change?: string[]; message?: string },
): Promise<void> {
  const upload = inputStream(file, 'import');
  const query: Record<string, string | string[]> = {
    fromSrc: '-',
    repo: reference ?? '',
    tag: '',
    message: o.message ?? '',
  };
  if (o.change?.length) query.changes = o.change;
  const res = await cli.client.raw('POST', '/images/create', { query, upload, contentType: 'application/x-tar' });
  await readProgress(res, (line) => {
    if (line.status) cli.out(`${String(line.status)}\n`);
  });
}

export async function load(cli: Cli, o: { input?: string; quiet?: boolean }): Promise<void> {
  const upload = inputStream(o.input, 'load');
  const res = await cli.client.raw('POST', '/images/load', {
    query: { quiet: Boolean(o.quiet) },
    upload,
    contentType: 'application/x-tar',
  });
  await readProgress(res, (line) => {
    if (line.stream) cli.out(String(line.stream));
    else if (line.status && !o.quiet) cli.out(`${String(line.status)}\n`);
  });
}

export async function prune(cli: Cli, o: { all?: boolean; force?: boolean; filter?: string[] }): Promise<void> {
  if (!o.force) {
    if (process.stdin.isTTY) throw new CliError('image prune asks for confirmation on a terminal; pass -f/--force');
  }
  const filters = filtersFrom(o.filter);
  if (o.all) filters.dangling = ['false'];
  const res = await cli.client.post<{
    ImagesDeleted: Array<{ Untagged?: string; Deleted?: string }> | null;
    SpaceReclaimed: number;
  }>('/images/prune', undefined, { filters: JSON.stringify(filters) });
  if (res.ImagesDeleted?.length) {
    cli.out('Deleted Images:\n');
    for (const r of res.ImagesDeleted) cli.out(r.Untagged ? `untagged: ${r.Untagged}\n` : `deleted: ${r.Deleted}\n`);
    cli.out('\n');
  }
  cli.out(`Total reclaimed space: ${humanSize(res.SpaceReclaimed)}\n`);
}

export async function history(
  cli: Cli,
  image: string,
  o: { human?: boolean; quiet?: boolean; noTrunc?: boolean; trunc?: boolean; format?: string },
): Promise<void> {
  const rows = await cli.client.get<
    Array<{ Id: string; Created: number; CreatedBy: string; Tags: string[] | null; Size: number; Comment: string }>
  >(`/images/${image}/history`);
  const trunc = o.trunc !== false;
  const human = o.human !== false;
  const list = rows.map((r) => {
    let by = r.CreatedBy;
    if (trunc && by.length > 45) by = by.slice(0, 44) + '…';
    return {
      ID: r.Id === '<missing>' ? r.Id : trunc ? r.Id.replace(/^sha256:/, '').slice(0, 12) : r.Id,
      CreatedSince: human ? `${humanDuration(Date.now() - r.Created * 1000)} ago` : unixTimeString(r.Created),
      CreatedAt: unixTimeString(r.Created),
      CreatedBy: by,
      Size: human ? humanSize(r.Size) : String(r.Size),
      Comment: r.Comment,
    };
  });
  cli.out(
    formatList(
      list,
      o.format,
      {
        headers: {
          ID: 'IMAGE',
          CreatedSince: 'CREATED',
          CreatedAt: 'CREATED AT',
          CreatedBy: 'CREATED BY',
          Size: 'SIZE',
          Comment: 'COMMENT',
        },
        defaultTable: 'table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}',
        quietField: 'ID',
      },
      Boolean(o.quiet),
    ),
  );
}
