/**
 * A small UDP DNS client, run inside a container's netns (nsenter --net=...).
 * 1. COUNT sequential A queries for NAME to SERVER:53 (after 20 warm-up), one in
 *    flight: the latency of one lookup.
 * 2. INFLIGHT queries kept in flight for SECONDS: lookups per second.
 * Every answer must carry the query's ID, NOERROR and at least one answer record.
 * Prints one JSON line: { latenciesMs, qps, sent, answered, bad, timeouts }.
 *
 *   node dns-client.js SERVER NAME COUNT INFLIGHT SECONDS
 */
import { createSocket } from 'node:dgram';
import { aQuery } from './dns-wire.js';

const [server = '127.0.0.11', name = 'localhost', countS = '200', inflightS = '50', secondsS = '2'] =
  process.argv.slice(2);
const count = Number(countS);
const inflight = Number(inflightS);
const seconds = Number(secondsS);

const sock = createSocket('udp4');
const pending = new Map<number, (ok: boolean) => void>();
let bad = 0;
sock.on('message', (r) => {
  if (r.length < 12) return;
  const id = r.readUInt16BE(0);
  const done = pending.get(id);
  if (!done) return;
  pending.delete(id);
  const ok = (r[3]! & 0x0f) === 0 && r.readUInt16BE(6) >= 1;
  if (!ok) bad++;
  done(ok);
});

let nextId = 1;
function ask(timeoutMs: number): Promise<'ok' | 'bad' | 'timeout'> {
  return new Promise((resolve) => {
    let id = nextId;
    nextId = (nextId % 65535) + 1;
    while (pending.has(id)) {
      id = nextId;
      nextId = (nextId % 65535) + 1;
    }
    const timer = setTimeout(() => {
      pending.delete(id);
      resolve('timeout');
    }, timeoutMs);
    pending.set(id, (ok) => {
      clearTimeout(timer);
      resolve(ok ? 'ok' : 'bad');
    });
    sock.send(aQuery(name, id), 53, server);
  });
}

async function main(): Promise<void> {
  await new Promise<void>((r) => sock.connect(53, server, () => r()));
  let timeouts = 0;
  let sent = 0;
  let answered = 0;
  for (let i = 0; i < 20; i++) {
    const r = await ask(2000);
    if (r === 'timeout') timeouts++;
  }
  const latenciesMs: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    const r = await ask(2000);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    sent++;
    if (r === 'ok') {
      answered++;
      latenciesMs.push(ms);
    } else if (r === 'timeout') timeouts++;
  }
  // Throughput: keep INFLIGHT queries outstanding until the time is up.
  let done = 0;
  const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  const t0 = process.hrtime.bigint();
  async function worker(): Promise<void> {
    while (process.hrtime.bigint() < end) {
      const r = await ask(1000);
      sent++;
      if (r === 'ok') {
        answered++;
        done++;
      } else if (r === 'timeout') timeouts++;
    }
  }
  if (inflight > 0 && seconds > 0) await Promise.all(Array.from({ length: inflight }, worker));
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(
    JSON.stringify({
      latenciesMs,
      qps: inflight > 0 && seconds > 0 ? done / elapsed : 0,
      sent,
      answered,
      bad,
      timeouts,
    }) + '\n',
  );
  sock.close();
}

main().catch((e) => {
  process.stderr.write(`dns-client: ${(e as Error).message}\n`);
  process.exit(1);
});
