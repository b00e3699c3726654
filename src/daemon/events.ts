/** Moved to src/common/events.ts (every layer publishes events; src/daemon only serves them). */
export * from '../common/events.js';
