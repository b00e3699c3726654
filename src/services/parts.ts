/**
 * The services layer's working parts, imported only when a node is in a swarm (SwarmServices.attachCluster,
 * the /services and /tasks handlers): in the coved bundle (scripts/bundle-coved.mjs) they are a chunk that a
 * single-host daemon never loads.
 */
export { Agent, LABEL } from './agent.js';
export { LeaderElector } from './leader.js';
export { ServiceManager, publicService, publicTask } from './manager.js';
export { Orchestrator } from './orchestrator.js';
export { LogServer, serviceLogs, taskLogs } from './logs.js';
export { ServiceDiscovery } from './discovery.js';
export { IngressMesh, INGRESS_SBOX } from './ingress.js';
export { ReportRelay } from './reports.js';
