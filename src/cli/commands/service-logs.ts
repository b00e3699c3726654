/** Reads a multiplexed log stream frame by frame, in order, awaiting the handler of each. */
import type { Readable } from 'node:stream';
import { Demuxer } from '../../api/stream.js';

export async function frameReader(
  res: Readable,
  onFrame: (stream: number, data: string) => Promise<void>,
): Promise<void> {
  const frames: Array<[number, string]> = [];
  const demux = new Demuxer((stream, data) => frames.push([stream, data.toString('utf8')]));
  for await (const chunk of res) {
    demux.push(chunk as Buffer);
    while (frames.length) {
      const [s, d] = frames.shift()!;
      await onFrame(s, d);
    }
  }
}
