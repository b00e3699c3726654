/**
 * The floor's DNS server: the least work that answers an A query. Binds
 * ADDR:53/udp in whatever netns it was started in (via nsenter), and answers
 * every query with one A record for ANSWER_IP, built by copying the question
 * (no parsing beyond finding the end of the name). It prints "ready" once bound.
 *
 *   node dns-floor-server.js ADDR ANSWER_IP
 */
import { createSocket } from 'node:dgram';

const [addr = '127.0.0.11', answerIp = '10.0.0.1'] = process.argv.slice(2);
const ip = Buffer.from(answerIp.split('.').map(Number));
const sock = createSocket('udp4');
sock.on('message', (q, rinfo) => {
  if (q.length < 17) return;
  let end = 12;
  while (end < q.length && q[end] !== 0) end += q[end]! + 1;
  end += 5; // zero byte + QTYPE + QCLASS
  if (end > q.length) return;
  const answer = Buffer.alloc(16);
  answer.writeUInt16BE(0xc00c, 0); // pointer to the question's name
  answer.writeUInt16BE(1, 2); // A
  answer.writeUInt16BE(1, 4); // IN
  answer.writeUInt32BE(600, 6);
  answer.writeUInt16BE(4, 10);
  ip.copy(answer, 12);
  const reply = Buffer.concat([q.subarray(0, end), answer]);
  reply[2] = 0x81; // QR, RD
  reply[3] = 0x80; // RA, NOERROR
  reply.writeUInt16BE(1, 6); // ANCOUNT
  reply.writeUInt16BE(0, 8);
  reply.writeUInt16BE(0, 10);
  sock.send(reply, rinfo.port, rinfo.address);
});
sock.bind(53, addr, () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => process.exit(0));
