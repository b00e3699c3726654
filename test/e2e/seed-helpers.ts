/**
 * Shared moves of the tutorial tests: a lab with a running daemon and the demo
 * images loaded, and the checks a user makes from inside containers.
 */
import { join } from 'node:path';
import { Lab, REPO } from '../lab/lab.js';

export async function labWithImages(name: string): Promise<Lab> {
  const lab = await Lab.create(name);
  try {
    await lab.startDaemon();
    for (const img of ['alpine', 'nginx'])
      await lab.coveOk(['load', '-q', '-i', join(REPO, 'build/images', `${img}.tar`)]);
  } catch (e) {
    await lab.destroy();
    throw e;
  }
  return lab;
}

/** `ping -c 1 -W 1 target` from inside a container: true when a reply came back. */
export async function pings(lab: Lab, from: string, target: string): Promise<boolean> {
  const r = await lab.cove(['exec', from, 'ping', '-c', '1', '-W', '1', target]);
  return r.code === 0;
}

/** Three-try ping, for checks that expect a reply (the first packet to a fresh neighbour can be slow on a loaded machine). */
export async function reaches(lab: Lab, from: string, target: string): Promise<boolean> {
  for (let i = 0; i < 3; i++) if (await pings(lab, from, target)) return true;
  return false;
}

export async function ipOf(lab: Lab, container: string, network: string): Promise<string> {
  return lab.coveOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, container]);
}

/**
 * The links of the daemon's netns, without the bridge driver's spares (`cove-spareN`: a removed network's
 * bridge kept for the next create). Each spare must be down and without addresses: a spare that still
 * carried a network would be a link left behind.
 */
export async function hostLinks(lab: Lab): Promise<string[]> {
  const r = await lab.sh('ip -o link show');
  const names = r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(': ')[1]!.split('@')[0]!);
  for (const spare of names.filter((n) => /^cove-spare\d$/.test(n))) {
    const link = (await lab.sh(`ip -o link show dev ${spare}`)).stdout;
    const addrs = (await lab.sh(`ip -o addr show dev ${spare}`)).stdout;
    if (/[<,]UP[,>]/.test(link) || /inet6? /.test(addrs))
      throw new Error(`spare bridge ${spare} is not idle: ${link.trim()} ${addrs.trim()}`);
  }
  return names.filter((n) => !/^cove-spare\d$/.test(n));
}

export async function nftRuleset(lab: Lab): Promise<string> {
  return (await lab.sh('nft list ruleset')).stdout;
}

export async function wget(lab: Lab, url: string): Promise<string | undefined> {
  const r = await lab.sh(`timeout 5 busybox wget -q -O - ${url}`);
  return r.code === 0 ? r.stdout : undefined;
}
