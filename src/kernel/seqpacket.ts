/**
 * A SOCK_SEQPACKET unix-socket client (conmon's attach socket keeps message
 * boundaries: each output packet starts with a stream byte). Node's net module
 * only speaks stream sockets, so the socket lives in the native addon, read on
 * the event loop with a uv_poll; here it becomes a small event emitter.
 *
 * Events: 'data' (one Buffer per packet), 'end' (the peer closed), 'error'
 * (Error), then 'close' exactly once, after end, error or destroy().
 */
import { EventEmitter } from 'node:events';
import { addon, type SeqpacketHandle } from './native.js';

export class SeqpacketSocket extends EventEmitter {
  private handle: SeqpacketHandle | null = null;
  private closed = false;

  /** Connects; rejects with the errno code (ENOENT, ECONNREFUSED, ...) when it cannot. */
  static connect(path: string): Promise<SeqpacketSocket> {
    const sock = new SeqpacketSocket();
    try {
      sock.handle = addon().seqpacketConnect(path, (err, packet) => sock.onEvent(err, packet));
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
    return Promise.resolve(sock);
  }

  private onEvent(err: string | null, packet: Buffer | null): void {
    // Called from the addon's libuv callback: a throw here would be uncaught, so listeners' errors are contained.
    try {
      if (packet) this.emit('data', packet);
      else if (err !== null) this.finish(new Error(err));
      else this.finish();
    } catch (e) {
      this.finish(e instanceof Error ? e : new Error(String(e)));
    }
  }

  private finish(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.handle = null; // the addon closed the fd already
    if (err) {
      if (this.listenerCount('error')) this.emit('error', err);
    } else this.emit('end');
    this.emit('close');
  }

  /** Sends one packet; a no-op once closed. */
  write(data: Buffer): void {
    if (this.handle && data.length) addon().seqpacketWrite(this.handle, data);
  }

  /** Half-closes: the peer reads end of stream once every written packet arrived. */
  end(): void {
    if (this.handle) addon().seqpacketShutdown(this.handle);
  }

  /** Closes at once; 'close' follows (once). */
  destroy(): void {
    if (this.closed) return;
    const h = this.handle;
    this.handle = null;
    this.closed = true;
    if (h) addon().seqpacketClose(h);
    this.emit('close');
  }

  get destroyed(): boolean {
    return this.closed;
  }
}
