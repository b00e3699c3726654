export { ContainerManager, type ContainerManagerOptions, type ContainerRecord } from './manager.js';
