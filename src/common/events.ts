import { EventEmitter } from 'node:events';

/** One event as GET /events streams it (newline-delimited JSON). */
export interface DockerEvent {
  Type: 'container' | 'network' | 'image' | 'volume' | 'daemon' | 'service' | 'node';
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  scope: 'local' | 'swarm';
  time: number;
  timeNano: number;
  // Legacy fields kept by docker for containers.
  status?: string;
  id?: string;
  from?: string;
}

/** The daemon's event bus: producers publish, /events subscribers read. Keeps a short history for `since`. */
export class EventBus {
  private readonly emitter = new EventEmitter();
  private readonly history: DockerEvent[] = [];

  constructor(private readonly keep = 1000) {
    this.emitter.setMaxListeners(0);
  }

  publish(
    type: DockerEvent['Type'],
    action: string,
    id: string,
    attributes: Record<string, string> = {},
    scope: 'local' | 'swarm' = 'local',
  ): void {
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    const ev: DockerEvent = {
      Type: type,
      Action: action,
      Actor: { ID: id, Attributes: attributes },
      scope,
      time: Number(nowNs / 1_000_000_000n),
      timeNano: Number(nowNs),
    };
    if (type === 'container') {
      ev.status = action;
      ev.id = id;
      if (attributes.image) ev.from = attributes.image;
    }
    this.history.push(ev);
    if (this.history.length > this.keep) this.history.shift();
    this.emitter.emit('event', ev);
  }

  since(timeSec: number): DockerEvent[] {
    return this.history.filter((e) => e.time >= timeSec);
  }

  subscribe(onEvent: (ev: DockerEvent) => void): () => void {
    this.emitter.on('event', onEvent);
    return () => this.emitter.off('event', onEvent);
  }
}
