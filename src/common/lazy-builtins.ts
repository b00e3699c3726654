/**
 * Node builtins that only some requests need, loaded the first time one is used instead of when the daemon
 * starts. A builtin that has been loaded keeps its compiled code for the rest of the process. On node 20,
 * next to the modules every daemon needs, https with tls adds 0.9 MB of RSS and zlib adds 0.75 MB. An idle
 * single-host daemon never pulls over https, never gunzips a layer and never joins a swarm.
 * (issue #10, engine RSS idle).
 */
import { createRequire } from 'node:module';

const load = createRequire(import.meta.url);

export const zlib = (): typeof import('node:zlib') => load('node:zlib') as typeof import('node:zlib');
export const https = (): typeof import('node:https') => load('node:https') as typeof import('node:https');
export const tls = (): typeof import('node:tls') => load('node:tls') as typeof import('node:tls');
