/** Moved to src/common/config.ts (every layer reads the daemon's settings; src/daemon only wires them). */
export * from '../common/config.js';
