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
  const SPARE = /^cove-spare\d$/;
  const links = (await lab.sh('ip -o link show')).stdout.split('\n').filter(Boolean);
  const addrs = (await lab.sh('ip -o addr show')).stdout.split('\n').filter(Boolean);
  const nameOf = (line: string) => line.split(': ')[1]!.split('@')[0]!;
  for (const line of links.filter((l) => SPARE.test(nameOf(l)))) {
    const spare = nameOf(line);
    // `ip -o addr` lines are "N: NAME    inet ...", one per address.
    const own = addrs.filter((a) => a.split(/\s+/)[1] === spare);
    if (/[<,]UP[,>]/.test(line) || own.length)
      throw new Error(`spare bridge ${spare} is not idle: ${line.trim()} ${own.join(' ').trim()}`);
  }
  return links.map(nameOf).filter((n) => !SPARE.test(n));
}

export async function nftRuleset(lab: Lab): Promise<string> {
  return (await lab.sh('nft list ruleset')).stdout;
}

export async function wget(lab: Lab, url: string): Promise<string | undefined> {
  const r = await lab.sh(`timeout 5 busybox wget -q -O - ${url}`);
  return r.code === 0 ? r.stdout : undefined;
}
