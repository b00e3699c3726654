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

/** Links in the lab namespace (the daemon's host), by name. */
export async function hostLinks(lab: Lab): Promise<string[]> {
  const r = await lab.sh('ip -o link show');
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(': ')[1]!.split('@')[0]!);
}

export async function nftRuleset(lab: Lab): Promise<string> {
  return (await lab.sh('nft list ruleset')).stdout;
}

export async function wget(lab: Lab, url: string): Promise<string | undefined> {
  const r = await lab.sh(`timeout 5 busybox wget -q -O - ${url}`);
  return r.code === 0 ? r.stdout : undefined;
}
