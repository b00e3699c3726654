/**
 * A small HTTP load client, run in a lab namespace (nsenter --net=...).
 *   rps URL CONNS SECONDS        : CONNS loops of GET without keep-alive (busybox httpd closes
 *                                   after each answer anyway) -> requests per second
 *   throughput URL SECONDS        : sequential GETs of a large file -> MB/s (10^6 bytes)
 * Every answer must be 200. Prints one JSON line: { mode, value, requests, bytes, errors, seconds, cpuMs } (cpuMs: this
 * process's CPU time while timing, kernel work done in its context included: the cost per request
 * that the machine's load does not change, unlike requests per second).
 */
import { get, Agent } from 'node:http';

const [mode = 'rps', url = 'http://127.0.0.1/', a = '10', b = '2'] = process.argv.slice(2);
const agent = new Agent({ keepAlive: false, maxSockets: Infinity });

function fetchOnce(): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent, timeout: 10_000 }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => (res.statusCode === 200 ? resolve(bytes) : reject(new Error(`HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function main(): Promise<void> {
  const conns = mode === 'rps' ? Number(a) : 1;
  const seconds = mode === 'rps' ? Number(b) : Number(a);
  await fetchOnce(); // must work once before timing
  let requests = 0;
  let bytes = 0;
  let errors = 0;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const end = t0 + BigInt(Math.round(seconds * 1e9));
  async function loop(): Promise<void> {
    while (process.hrtime.bigint() < end) {
      try {
        bytes += await fetchOnce();
        requests++;
      } catch {
        errors++;
        if (errors > 1000) return;
      }
    }
  }
  await Promise.all(Array.from({ length: conns }, loop));
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const value = mode === 'rps' ? requests / elapsed : bytes / 1e6 / elapsed;
  process.stdout.write(
    JSON.stringify({ mode, value, requests, bytes, errors, seconds: elapsed, cpuMs: (cpu.user + cpu.system) / 1000 }) +
      '\n',
  );
}

main().catch((e) => {
  process.stderr.write(`http-client: ${(e as Error).message}\n`);
  process.exit(1);
});
