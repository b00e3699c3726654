import type { NetworkService } from '../network/types.js';
import type { ContainerService, ImageService } from '../runtime/types.js';
import type { DistributionService } from '../runtime/distribution/index.js';
import type { EventBus } from '../common/events.js';
import type { VolumeService } from '../runtime/volumes/store.js';
import type { DaemonConfig } from '../common/config.js';
import type { SwarmServices } from '../services/index.js';
import type { SwarmController } from '../swarm/controller.js';

/** Everything the API layer serves, wired together by the daemon. */
export interface Engine {
  config: DaemonConfig;
  networks: NetworkService;
  containers: ContainerService;
  images: ImageService;
  volumes: VolumeService;
  /** Registries: pull, push, login, search (absent in API tests without a daemon). */
  distribution?: DistributionService;
  events: EventBus;
  /** Swarm services and tasks (answers 503 outside a swarm); optional so API tests can leave it out. */
  services?: SwarmServices;
  /** Swarm mode (membership, nodes); absent in daemons built without it (tests with fakes). */
  swarm?: SwarmController;
  /** GET /info and GET /version payloads. */
  info(): Promise<Record<string, unknown>>;
  version(): Record<string, unknown>;
}
