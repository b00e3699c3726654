/**
 * A TCP proxy for registry tests, run in a lab namespace in front of the
 * lab registry (`node tcp-proxy.js '<json options>'`):
 * - `rateBytesPerSec`: answers trickle (a pull stays "preparing" long
 *   enough to be seen);
 * - `cutAfterBytes`: the first connection whose answers pass that many
 *   bytes is cut there, both ways (an interrupted download); with
 *   `refuseAfterCut` the proxy then stops listening and cuts every other
 *   connection too (the registry went away);
 * - every HTTP request head that passes is printed as one JSON line
 *   `{"method","path","range"}` on stdout, so a test sees what clients asked.
 * It prints `listening` once it accepts connections.
 */
import { createServer, connect, type Socket } from 'node:net';

interface ProxyOptions {
  listen: { host: string; port: number };
  target: { host: string; port: number };
  rateBytesPerSec?: number;
  cutAfterBytes?: number;
  /** After the cut, accept nothing more (the registry "went away"). */
  refuseAfterCut?: boolean;
}

const opts = JSON.parse(process.argv[2] ?? '{}') as ProxyOptions;
let cutDone = false;

/** Prints the request heads found in client→server bytes (heads may span chunks). */
function requestLogger(): (chunk: Buffer) => void {
  let buf = '';
  return (chunk) => {
    buf += chunk.toString('latin1');
    for (;;) {
      const m = /(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP\/1\.[01]\r\n([\s\S]*?)\r\n\r\n/.exec(buf);
      if (!m) break;
      const range = /^range:\s*(.*)$/im.exec(m[3]!)?.[1]?.trim() ?? null;
      process.stdout.write(JSON.stringify({ method: m[1], path: m[2], range }) + '\n');
      buf = buf.slice(m.index + m[0].length);
    }
    if (buf.length > 1 << 20) buf = buf.slice(-65536); // request bodies (push): keep only a tail
  };
}

function pipeThrottled(from: Socket, to: Socket, onBytes: (n: number) => boolean): void {
  const rate = opts.rateBytesPerSec;
  from.on('data', (chunk: Buffer) => {
    if (!onBytes(chunk.length)) return;
    if (!to.write(chunk)) from.pause();
    if (rate) {
      from.pause();
      setTimeout(
        () => {
          if (!to.writableNeedDrain) from.resume();
        },
        Math.ceil((chunk.length / rate) * 1000),
      );
    }
  });
  to.on('drain', () => from.resume());
  from.on('end', () => to.end());
}

const open = new Set<Socket>();
const server = createServer((client) => {
  const upstream = connect(opts.target.port, opts.target.host);
  open.add(client);
  client.on('close', () => open.delete(client));
  const log = requestLogger();
  let answered = 0;
  const close = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close);
  upstream.on('error', close);
  client.on('close', close);
  upstream.on('close', close);
  client.on('data', log);
  pipeThrottled(client, upstream, () => true);
  pipeThrottled(upstream, client, (n) => {
    answered += n;
    if (opts.cutAfterBytes && !cutDone && answered > opts.cutAfterBytes) {
      cutDone = true;
      process.stdout.write(JSON.stringify({ cut: answered }) + '\n');
      close();
      if (opts.refuseAfterCut) {
        server.close();
        for (const s of open) s.destroy();
      }
      return false;
    }
    return true;
  });
});
server.listen(opts.listen.port, opts.listen.host, () => process.stdout.write('listening\n'));
