/**
 * The CLI's entry point: runs `main` with the process's arguments. Kept apart from main.ts so that the
 * bundle (scripts/bundle-cli.mjs) can be a plain script, which bin/cove compiles with V8's code cache;
 * an ES module has no code cache on Node 20.
 */
import { main } from './main.js';

main().catch((err: unknown) => {
  process.exitCode = 1;
  console.error(err);
});
