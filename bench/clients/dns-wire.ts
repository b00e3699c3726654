/**
 * The DNS wire format the bench's clients need, by hand: they run thousands of
 * queries a second inside a container's netns and must cost less than the
 * server they measure.
 */

/** A recursive A query for `name` with the given ID. */
export function aQuery(name: string, id: number): Buffer {
  const parts = name.replace(/\.$/, '').split('.');
  const q = Buffer.alloc(12 + parts.reduce((s, p) => s + p.length + 1, 0) + 5);
  q.writeUInt16BE(id, 0);
  q.writeUInt16BE(0x0100, 2); // RD
  q.writeUInt16BE(1, 4);
  let o = 12;
  for (const p of parts) {
    q[o++] = p.length;
    o += q.write(p, o, 'ascii');
  }
  q[o++] = 0;
  q.writeUInt16BE(1, o); // A
  q.writeUInt16BE(1, o + 2); // IN
  return q;
}
