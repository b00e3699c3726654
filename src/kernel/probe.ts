/**
 * Reachability probes for diagnostics: one ICMP echo from inside a netns
 * (`ping`, iputils-ping). Answers true/false; never throws for an
 * unreachable peer.
 */
import { inNetns, runTool } from './exec.js';
import { KernelError } from './errors.js';

export async function pingOnce(netnsPath: string | null, addr: string, timeoutS = 1): Promise<boolean> {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(addr)) throw new KernelError('ping', `invalid IPv4 address ${addr}`);
  const r = await runTool(inNetns(netnsPath, ['ping', '-n', '-q', '-c', '1', '-W', String(timeoutS), addr]));
  return r.code === 0;
}
