/**
 * Runs inside a container's netns (nsenter --net=...) and waits for a
 * container that does not exist yet: it asks the embedded DNS (SERVER:53)
 * for NAME every INTERVAL ms until an A record comes back, then opens TCP
 * connections to that address (port 9, where nothing listens: a reset from
 * the new container's kernel proves the packet got there and back as well
 * as an accept would) until one is answered. Used by the overlay benchmark
 * (bench/overlay.ts) to time when host B sees a container just run on host A.
 *
 * Prints `ready` once its socket is bound, then one JSON line:
 * { resolvedAt, reachedAt, ip, queries, connects } (epoch ms, sub-ms precision;
 * the same clock as the benchmark's), or { error } at DEADLINE ms.
 *
 *   node reach-probe.js SERVER NAME INTERVAL_MS DEADLINE_MS
 */
import { createSocket } from 'node:dgram';
import { aQuery } from './dns-wire.js';
import { connect } from 'node:net';

const [server = '127.0.0.11', name = 'x', intervalS = '2', deadlineS = '10000'] = process.argv.slice(2);
const interval = Number(intervalS);
const now = (): number => performance.timeOrigin + performance.now();
const start = now();

/** Skips a (possibly compressed) name at o; returns the offset after it. */
function skipName(r: Buffer, o: number): number {
  while (o < r.length) {
    const len = r[o]!;
    if (len === 0) return o + 1;
    if ((len & 0xc0) === 0xc0) return o + 2;
    o += len + 1;
  }
  return o;
}

/** The first A record of a NOERROR answer, if any. */
function firstA(r: Buffer): string | undefined {
  if (r.length < 12 || (r[3]! & 0x0f) !== 0) return undefined;
  const qd = r.readUInt16BE(4);
  const an = r.readUInt16BE(6);
  let o = 12;
  for (let i = 0; i < qd; i++) o = skipName(r, o) + 4;
  for (let i = 0; i < an && o + 10 <= r.length; i++) {
    o = skipName(r, o);
    const type = r.readUInt16BE(o);
    const rdlen = r.readUInt16BE(o + 8);
    o += 10;
    if (type === 1 && rdlen === 4) return `${r[o]}.${r[o + 1]}.${r[o + 2]}.${r[o + 3]}`;
    o += rdlen;
  }
  return undefined;
}

const sock = createSocket('udp4');
let queries = 0;
let connects = 0;
let resolvedAt = 0;
let ip = '';
let id = 1;
let timer: NodeJS.Timeout | undefined;

const finish = (out: Record<string, unknown>): void => {
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
};
setTimeout(
  () =>
    finish({
      error: `not ${resolvedAt ? 'reached' : 'resolved'} within ${deadlineS} ms`,
      resolvedAt,
      ip,
      queries,
      connects,
    }),
  Number(deadlineS) - (now() - start),
).unref();

function tryConnect(): void {
  connects++;
  const s = connect({ host: ip, port: 9 });
  const retry = setTimeout(() => {
    s.destroy();
    tryConnect();
  }, 1000);
  const reached = (): void => {
    clearTimeout(retry);
    s.destroy();
    finish({ resolvedAt, reachedAt: now(), ip, queries, connects });
  };
  s.once('connect', reached);
  s.once('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'ECONNREFUSED') return reached();
    clearTimeout(retry);
    setTimeout(tryConnect, 1); // unreachable for now (no neighbour yet): try again
  });
}

sock.on('message', (r) => {
  if (resolvedAt) return;
  const a = firstA(r);
  if (!a) return;
  resolvedAt = now();
  ip = a;
  if (timer) clearInterval(timer);
  sock.close();
  tryConnect();
});

sock.bind(0, () => {
  process.stdout.write('ready\n');
  const ask = (): void => {
    queries++;
    sock.send(aQuery(name, id), 53, server);
    id = (id % 65535) + 1;
  };
  ask();
  timer = setInterval(ask, interval);
});
