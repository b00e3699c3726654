/**
 * Run inside a container's network namespace (nsenter --net=SandboxKey node
 * dns-probe.js MODE ...): sends hostile DNS traffic to 127.0.0.11:53 and
 * prints one JSON line with what came back. Modes:
 *   hostile            every packet of hostilePackets(), one at a time: its reply rcode or "silence"
 *   burst N NAME       N queries for NAME as fast as UDP takes them; counts replies by rcode
 *   hold N MS          opens N TCP connections, holds them MS ms; counts those the server closed
 *   badtcp             TCP streams with broken length prefixes: closed by the server or not
 */
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { hostilePackets } from './hostile-dns.js';

const DNS = '127.0.0.11';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function query(name: string, id: number): Buffer {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(0x0100, 2);
  h.writeUInt16BE(1, 4);
  return Buffer.concat([h, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

async function hostile(): Promise<unknown> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const out: Record<string, string> = {};
  for (const p of hostilePackets()) {
    const reply = await new Promise<Buffer | undefined>((resolve) => {
      const t = setTimeout(() => {
        s.off('message', on);
        resolve(undefined);
      }, 500);
      const on = (m: Buffer) => {
        clearTimeout(t);
        s.off('message', on);
        resolve(m);
      };
      s.on('message', on);
      s.send(p.bytes, 53, DNS);
    });
    out[p.name] = reply
      ? (['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'][reply.readUInt16BE(2) & 0xf] ?? 'rcode?')
      : 'silence';
  }
  s.close();
  return out;
}

async function burst(n: number, name: string): Promise<unknown> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const byRcode: Record<number, number> = {};
  s.on('message', (m) => {
    const rc = m.readUInt16BE(2) & 0xf;
    byRcode[rc] = (byRcode[rc] ?? 0) + 1;
  });
  const t0 = Date.now();
  for (let i = 0; i < n; i++) {
    s.send(query(name.replace('#', String(i)), i & 0xffff), 53, DNS);
    if (i % 200 === 199) await sleep(1);
  }
  await sleep(3500);
  s.close();
  return { sent: n, ms: Date.now() - t0, byRcode };
}

async function hold(n: number, ms: number): Promise<unknown> {
  const conns: Socket[] = [];
  let closedByServer = 0;
  let failed = 0;
  let ending = false;
  for (let i = 0; i < n; i++) {
    const c = connect({ host: DNS, port: 53 });
    c.on('error', () => {
      failed++;
    });
    c.on('close', () => {
      if (!ending) closedByServer++;
    });
    conns.push(c);
    if (i % 50 === 49) await sleep(5);
  }
  await sleep(ms);
  const open = conns.filter((c) => !c.destroyed && c.readyState === 'open').length;
  ending = true;
  for (const c of conns) c.destroy();
  return { opened: n, openAfter: open, closedByServer, failed };
}

async function badTcp(): Promise<unknown> {
  const cases: Record<string, Buffer> = {
    'length 0': Buffer.from([0, 0]),
    'length 1': Buffer.from([0, 1, 0xaa]),
    'length 5 (no header)': Buffer.from([0, 5, 1, 2, 3, 4, 5]),
  };
  const out: Record<string, string> = {};
  for (const [name, bytes] of Object.entries(cases)) {
    out[name] = await new Promise<string>((resolve) => {
      const c = connect({ host: DNS, port: 53 }, () => c.write(bytes));
      c.on('error', () => undefined);
      c.on('close', () => resolve('closed by server'));
      setTimeout(() => {
        c.destroy();
        resolve('still open after 2 s');
      }, 2000);
    });
  }
  return out;
}

const [mode, a, b] = process.argv.slice(2);
const run =
  mode === 'hostile'
    ? hostile()
    : mode === 'burst'
      ? burst(Number(a), b ?? 'n#.example')
      : mode === 'hold'
        ? hold(Number(a), Number(b))
        : badTcp();
run.then(
  (r) => {
    process.stdout.write(JSON.stringify(r) + '\n');
    process.exit(0);
  },
  (e) => {
    process.stderr.write(String(e) + '\n');
    process.exit(1);
  },
);
