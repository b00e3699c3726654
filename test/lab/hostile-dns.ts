/**
 * Hostile DNS messages (issue 8 §1), shared by the unit test and the e2e test
 * that sends them from inside a container, with what Docker's embedded DNS
 * (miekg/dns's accept rules) gives back for each.
 */
export interface HostilePacket {
  name: string;
  bytes: Buffer;
  expect: 'silence' | 'FORMERR' | 'NOTIMP';
}

function header(id: number, flags: number, qd: number, an = 0, ns = 0, ar = 0): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(flags, 2);
  b.writeUInt16BE(qd, 4);
  b.writeUInt16BE(an, 6);
  b.writeUInt16BE(ns, 8);
  b.writeUInt16BE(ar, 10);
  return b;
}

const typeIn = Buffer.from([0, 1, 0, 1]);

export function hostilePackets(): HostilePacket[] {
  const longLabels = Buffer.concat([
    ...Array.from({ length: 5 }, () => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x61)])),
    Buffer.from([0]),
  ]);
  let seed = 7;
  const random = Buffer.alloc(64);
  for (let i = 0; i < random.length; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    random[i] = seed & 0xff;
  }
  random[2]! &= 0x07; // a query (QR=0), opcode 0: garbage that must be screened, not dropped as a response
  return [
    { name: 'empty datagram', bytes: Buffer.alloc(0), expect: 'silence' },
    { name: '1 byte', bytes: Buffer.from([0x41]), expect: 'silence' },
    { name: '11 bytes', bytes: Buffer.alloc(11, 0xff), expect: 'silence' },
    { name: 'bare header, no question', bytes: header(0x1001, 0x0100, 0), expect: 'FORMERR' },
    { name: 'header claiming a question it lacks', bytes: header(0x1002, 0x0100, 1), expect: 'FORMERR' },
    { name: '64 random bytes', bytes: random, expect: 'FORMERR' },
    {
      name: 'two questions',
      bytes: Buffer.concat([
        header(0x1003, 0x0100, 2),
        Buffer.from([1, 0x61, 0]),
        typeIn,
        Buffer.from([1, 0x62, 0]),
        typeIn,
      ]),
      expect: 'FORMERR',
    },
    {
      name: 'compression loop (pointer to itself)',
      bytes: Buffer.concat([header(0x1004, 0x0100, 1), Buffer.from([0xc0, 12]), typeIn]),
      expect: 'FORMERR',
    },
    {
      name: 'compression forward pointer',
      bytes: Buffer.concat([header(0x1005, 0x0100, 1), Buffer.from([0xc0, 20]), typeIn, Buffer.from([1, 0x61, 0])]),
      expect: 'FORMERR',
    },
    {
      name: 'name over 255 bytes',
      bytes: Buffer.concat([header(0x1006, 0x0100, 1), longLabels, typeIn]),
      expect: 'FORMERR',
    },
    {
      name: 'label type 0x40 (reserved)',
      bytes: Buffer.concat([header(0x1007, 0x0100, 1), Buffer.from([0x41, 0x61, 0]), typeIn]),
      expect: 'FORMERR',
    },
    {
      name: 'answer record cut short',
      bytes: Buffer.concat([
        header(0x1008, 0x0100, 1, 1),
        Buffer.from([1, 0x61, 0]),
        typeIn,
        Buffer.from([0xc0, 12, 0, 1]),
      ]),
      expect: 'FORMERR',
    },
    {
      name: 'a response (QR=1)',
      bytes: Buffer.concat([header(0x1009, 0x8180, 1), Buffer.from([1, 0x61, 0]), typeIn]),
      expect: 'silence',
    },
    {
      name: 'opcode UPDATE',
      bytes: Buffer.concat([header(0x100a, 5 << 11, 1), Buffer.from([1, 0x61, 0]), typeIn]),
      expect: 'NOTIMP',
    },
  ];
}
