/**
 * The daemon's own netns, driven through one long-lived `ip -batch` and one
 * `nft -i` co-process shared by every driver (no process per command on the
 * hot paths). closeHostKernel() ends both (daemon shutdown, tests).
 */
import { IpBatch } from './ip.js';
import { NftSession } from './nft.js';

let ip: IpBatch | undefined;
let nft: NftSession | undefined;

export function hostIp(): IpBatch {
  ip ??= new IpBatch(null);
  return ip;
}

export function hostNft(): NftSession {
  nft ??= new NftSession(null);
  return nft;
}

export async function closeHostKernel(): Promise<void> {
  const a = ip;
  const b = nft;
  ip = undefined;
  nft = undefined;
  await Promise.all([a?.close(), b?.close()]);
}
