/**
 * The daemon's own netns, driven through one long-lived `ip -batch` shared by
 * every driver (no process per command on the hot paths) and, where
 * libnftables cannot be loaded in-process, one shared `nft -i` co-process, and `hostKernel()`, the KernelOps every built-in driver gets
 * when the daemon injects none (its `ip` ops of the daemon's netns go to the
 * same shared co-process). closeHostKernel() ends all of them (daemon
 * shutdown, tests); they start again on next use.
 */
import { IpBatch } from './ip.js';
import { NftSession } from './nft.js';
import { HostKernelOps } from './ops.js';

let ip: IpBatch | undefined;
let nft: NftSession | undefined;
let kernel: HostKernelOps | undefined;

export function hostIp(): IpBatch {
  ip ??= new IpBatch(null);
  return ip;
}

export function hostNft(): NftSession {
  nft ??= new NftSession(null);
  return nft;
}

/** The real kernel as drivers see it: the daemon's netns through the shared co-processes (lanes and other namespaces get their own). */
export function hostKernel(): HostKernelOps {
  kernel ??= new HostKernelOps(null, hostIp);
  return kernel;
}

export async function closeHostKernel(): Promise<void> {
  const a = ip;
  const b = nft;
  const k = kernel;
  ip = undefined;
  nft = undefined;
  kernel = undefined;
  await Promise.all([a?.close(), b?.close(), k?.close()]);
}
