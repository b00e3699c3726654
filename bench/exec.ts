/** Process helpers shared by the targets: run a command, fail loudly, enter a lab namespace, clean up a lab. */
import { run, type RunResult } from '../test/lab/lab.js';
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';

export { run, type RunResult };

export async function must(
  cmd: string,
  args: string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${(r.stderr || r.stdout).trim().slice(0, 500)}`);
  return r.stdout;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function netnsPathOf(name: string): string {
  return `/run/netns/${name}`;
}

/**
 * A lab namespace with a host address: NAME holds `up0` 10.99.0.1/24, the other
 * end `up1` 10.99.0.2/24 sits in NAME-x (a neighbour host). Nothing links to the
 * root namespace.
 */
export async function makeHostLab(name: string): Promise<void> {
  await must('ip', ['netns', 'add', name]);
  await must('ip', ['netns', 'add', `${name}-x`]);
  await must('ip', ['-n', name, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1', 'netns', `${name}-x`]);
  await must('ip', ['-n', name, '-batch', '-'], {
    input: 'link set lo up\naddr add 10.99.0.1/24 dev up0\nlink set up0 up\n',
  });
  await must('ip', ['-n', `${name}-x`, '-batch', '-'], {
    input: 'link set lo up\naddr add 10.99.0.2/24 dev up1\nlink set up1 up\n',
  });
}

export async function deleteNetns(...names: string[]): Promise<void> {
  for (const n of names) if (existsSync(netnsPathOf(n))) await run('ip', ['netns', 'del', n]);
}

/** PIDs whose network namespace is one of the given paths. */
export function pidsInNetns(paths: string[]): number[] {
  const inodes = new Set<number>();
  for (const p of paths) {
    try {
      inodes.add(statSync(p).ino);
    } catch {
      /* gone */
    }
  }
  const out: number[] = [];
  if (inodes.size === 0) return out;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const link = readlinkSync(`/proc/${d}/ns/net`);
      if (inodes.has(Number(link.slice(5, -1)))) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** PIDs whose command line contains fragment (never this process). */
export function pidsWithArg(fragment: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(fragment)) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

export function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** VmRSS of a process in kB, 0 when it is gone. */
export function rssKb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Kills the given PIDs (ours: found by namespace or by our state dir), then SIGKILLs what is left. */
export async function killPids(pids: number[]): Promise<void> {
  for (const p of pids) {
    try {
      process.kill(p, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  for (let i = 0; i < 20 && pids.some(alive); i++) await sleep(100);
  for (const p of pids.filter(alive)) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Lazily unmounts every mount at or below dir, deepest first. */
export async function unmountBelow(dir: string): Promise<void> {
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1]?.replace(/\\040/g, ' '))
    .filter((m): m is string => !!m && (m === dir || m.startsWith(dir + '/')))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await run('umount', ['-l', m]);
}

/** Installs Debian packages if `probe` is not on PATH. Throws a clear message when it cannot. */
export async function ensureInstalled(probe: string, packages: string[]): Promise<string | undefined> {
  if ((await run('sh', ['-c', `command -v ${probe}`])).code === 0) return undefined;
  process.stderr.write(
    `bench: ${probe} missing, installing ${packages.join(' ')} (apt-get; policy-rc.d keeps services from starting)\n`,
  );
  const r = await run('apt-get', ['install', '-y', ...packages], {
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    timeoutMs: 600_000,
  });
  if (r.code !== 0)
    throw new Error(
      `cannot install ${packages.join(' ')}: apt-get exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`,
    );
  if ((await run('sh', ['-c', `command -v ${probe}`])).code !== 0)
    throw new Error(`installed ${packages.join(' ')} but ${probe} is still not on PATH`);
  return `installed ${packages.join(' ')}`;
}

/** PIDs whose root directory lies under dir (container processes of an engine whose state is in dir). */
export function pidsWithRootUnder(dir: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (readlinkSync(`/proc/${d}/root`).startsWith(dir + '/')) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Builds build/images/{alpine,nginx}.tar with scripts/build-images.sh if they are missing. */
export async function ensureImages(repo: string): Promise<{ alpine: string; nginx: string }> {
  const dir = `${repo}/build/images`;
  const files = { alpine: `${dir}/alpine.tar`, nginx: `${dir}/nginx.tar` };
  if (!existsSync(files.alpine) || !existsSync(files.nginx))
    await must('bash', [`${repo}/scripts/build-images.sh`, dir], { timeoutMs: 120_000 });
  return files;
}
