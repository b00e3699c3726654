export {
  ImageStore,
  type ImageStoreOptions,
  type ImageConfig,
  type ImageRecord,
  type ContainerUsage,
} from './store.js';
export { parseRepoTag, formatRepoTag } from './reference.js';
