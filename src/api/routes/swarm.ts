/**
 * Swarm-mode endpoints. This node is never part of a swarm (yet), so they
 * answer exactly as a Docker engine outside a swarm does: 503.
 */
import type { Route, Method } from '../server.js';
import { Unavailable } from '../../common/errors.js';

export const NOT_A_MANAGER = 'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.';
export const NO_SWARM = 'This node is not part of a swarm';

const notManager = async (): Promise<void> => { throw new Unavailable(NOT_A_MANAGER); };
const noSwarm = async (): Promise<void> => { throw new Unavailable(NO_SWARM); };
const unsupported = async (): Promise<void> => { throw new Unavailable('swarm mode is not available in this Cove daemon'); };

const managerOnly: Array<[Method, string]> = [
  ['GET', '/swarm'], ['POST', '/swarm/update'], ['GET', '/swarm/unlockkey'], ['POST', '/swarm/unlock'],
  ['GET', '/nodes'], ['GET', '/nodes/:id'], ['DELETE', '/nodes/:id'], ['POST', '/nodes/:id/update'],
  ['GET', '/secrets'], ['POST', '/secrets/create'], ['GET', '/secrets/:id'], ['DELETE', '/secrets/:id'], ['POST', '/secrets/:id/update'],
  ['GET', '/configs'], ['POST', '/configs/create'], ['GET', '/configs/:id'], ['DELETE', '/configs/:id'], ['POST', '/configs/:id/update'],
];

export const swarmRoutes: Route[] = [
  ...managerOnly.map(([method, path]) => ({ method, path, handler: notManager })),
  { method: 'POST', path: '/swarm/leave', handler: noSwarm },
  { method: 'POST', path: '/swarm/init', handler: unsupported },
  { method: 'POST', path: '/swarm/join', handler: unsupported },
];
