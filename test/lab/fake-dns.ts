/**
 * The stand-in internet's resolver, run inside the lab's "internet" namespace:
 * google.com (and any *.example name) resolve to the stand-in internet host;
 * every other name is NXDOMAIN. Usage: node fake-dns.js LISTEN_IP ANSWER_IP
 */
import { createSocket } from 'node:dgram';
import dnsPacket from 'dns-packet';

const [listenIp = '127.0.0.1', answerIp = '198.51.100.1'] = process.argv.slice(2);
const KNOWN = (name: string): boolean =>
  name === 'google.com' || name === 'www.google.com' || name.endsWith('.example');

const sock = createSocket('udp4');
sock.on('message', (msg, rinfo) => {
  let q: dnsPacket.Packet;
  try {
    q = dnsPacket.decode(msg);
  } catch {
    return;
  }
  const question = q.questions?.[0];
  if (!question) return;
  const name = question.name.toLowerCase();
  const known = KNOWN(name);
  const answers: dnsPacket.Answer[] =
    known && question.type === 'A' ? [{ type: 'A', name: question.name, ttl: 60, data: answerIp }] : [];
  const reply = dnsPacket.encode({
    type: 'response',
    id: q.id ?? 0,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (known ? 0 : 3), // rcode 3 = NXDOMAIN
    questions: q.questions ?? [],
    answers,
  });
  sock.send(reply, rinfo.port, rinfo.address);
});
sock.bind(53, listenIp);
