/**
 * Throughput across simulated hosts (issue #15): an encrypted overlay
 * (VXLAN through wireguard-go) between two containers, against raw
 * wireguard-go between the same host namespaces (the same Cove-made device,
 * its tunnel addresses, no VXLAN) and against a plain overlay and the bare
 * underlay. iperf3 (TCP, one stream) runs inside the namespaces.
 *
 *   npx tsc -p . && COVE_LAB_PREFIX=x npm run bench:encrypted [-- --seconds 5 --runs 3]
 *
 * Everything lives in lab namespaces (MultiHostLab) and is removed at the end.
 */
import { run } from '../test/lab/lab.js';
import { MultiHostLab } from '../test/lab/multihost.js';
import { summarize } from './stats.js';

const median = (xs: number[]): number => summarize(xs)?.median ?? 0;

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg('seconds', 5);
const RUNS = arg('runs', 3);

async function iperf(serverNs: string, clientNs: string, ip: string): Promise<number> {
  const srv = run('nsenter', [`--net=${serverNs}`, 'iperf3', '-s', '-1', '-B', ip], {
    timeoutMs: (SECONDS + 30) * 1000,
  });
  await new Promise((r) => setTimeout(r, 400));
  const c = await run('nsenter', [`--net=${clientNs}`, 'iperf3', '-c', ip, '-t', String(SECONDS), '-J'], {
    timeoutMs: (SECONDS + 30) * 1000,
  });
  await srv;
  if (c.code !== 0) throw new Error(`iperf3 to ${ip}: ${c.stdout}${c.stderr}`);
  return (
    (JSON.parse(c.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second /
    1e9
  );
}

async function main(): Promise<void> {
  const lab = await MultiHostLab.create('bwg', 2);
  const [h1, h2] = lab.hosts as [NonNullable<(typeof lab.hosts)[0]>, NonNullable<(typeof lab.hosts)[0]>];
  const stop = (): void => void lab.destroy().finally(() => process.exit(130));
  process.once('SIGINT', stop);
  try {
    await lab.startSwarm({ images: ['alpine'], role: 'worker' });
    const ok = async (h: typeof h1, args: string[]): Promise<string> => (await h.coveOk(args)).trim();
    await ok(h1, ['network', 'create', '--opt', 'encrypted', '-d', 'overlay', '--attachable', 'enc']);
    await ok(h1, ['network', 'create', '-d', 'overlay', '--attachable', 'plain']);
    const sandboxes: Record<string, { ns: string[]; ip: string[] }> = {};
    for (const net of ['enc', 'plain']) {
      sandboxes[net] = { ns: [], ip: [] };
      for (const [i, h] of [h1, h2].entries()) {
        const name = `${net}${i + 1}`;
        await ok(h, ['run', '-d', '--name', name, '--network', net, 'alpine', 'sleep', '1d']);
        sandboxes[net]!.ns.push(await ok(h, ['inspect', '-f', '{{.NetworkSettings.SandboxKey}}', name]));
        sandboxes[net]!.ip.push(
          await ok(h, ['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, name]),
        );
      }
    }
    // Let the overlay peers and the WireGuard handshake settle.
    for (const net of ['enc', 'plain']) {
      for (let t = 0; t < 40; t++) {
        if (
          (
            await run('nsenter', [
              `--net=${sandboxes[net]!.ns[0]}`,
              'ping',
              '-c',
              '1',
              '-W',
              '1',
              sandboxes[net]!.ip[1]!,
            ])
          ).code === 0
        )
          break;
      }
    }
    const tunnel2 = await ok(h2, [
      'network',
      'inspect',
      '-f',
      '{{index .Options "com.cove.network.encryption.tunnel"}}',
      'enc',
    ]);
    const cases: Array<{ name: string; f: () => Promise<number> }> = [
      {
        name: 'encrypted overlay (VXLAN over wireguard-go), container to container',
        f: () => iperf(sandboxes.enc!.ns[1]!, sandboxes.enc!.ns[0]!, sandboxes.enc!.ip[1]!),
      },
      {
        name: 'raw wireguard-go, host netns to host netns (same device)',
        f: () => iperf(h2.netnsPath, h1.netnsPath, tunnel2),
      },
      {
        name: 'plain overlay (VXLAN), container to container',
        f: () => iperf(sandboxes.plain!.ns[1]!, sandboxes.plain!.ns[0]!, sandboxes.plain!.ip[1]!),
      },
      { name: 'underlay, host netns to host netns', f: () => iperf(h2.netnsPath, h1.netnsPath, lab.addr(1)) },
    ];
    const results: Array<{ name: string; gbps: number[] }> = [];
    for (const c of cases) {
      const gbps: number[] = [];
      for (let r = 0; r < RUNS; r++) gbps.push(await c.f());
      results.push({ name: c.name, gbps });
      process.stdout.write(
        `${c.name}: median ${median(gbps).toFixed(3)} Gbit/s (${gbps.map((g) => g.toFixed(3)).join(', ')})\n`,
      );
    }
    const enc = median(results[0]!.gbps);
    const raw = median(results[1]!.gbps);
    process.stdout.write(`encrypted overlay / raw wireguard-go: ${((enc / raw) * 100).toFixed(0)} % (goal >= 90 %)\n`);
  } finally {
    process.removeListener('SIGINT', stop);
    await lab.destroy();
  }
}

main().catch((e: Error) => {
  process.stderr.write(`${e.stack ?? e.message}\n`);
  process.exit(1);
});
