import type { NetworkService } from '../network/types.js';
import type { ContainerService, ImageService } from '../runtime/types.js';
import type { EventBus } from './events.js';
import type { DaemonConfig } from './config.js';

/** Everything the API layer serves, wired together by the daemon. */
export interface Engine {
  config: DaemonConfig;
  networks: NetworkService;
  containers: ContainerService;
  images: ImageService;
  events: EventBus;
  /** GET /info and GET /version payloads. */
  info(): Promise<Record<string, unknown>>;
  version(): Record<string, unknown>;
}
