/** One API route: what src/api/server.ts dispatches and each src/api/routes/* module exports (kept apart so routes need not import the server). */
import type { Ctx } from './request.js';

export type Handler = (ctx: Ctx) => Promise<void>;
export type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE';
export interface Route {
  method: Method;
  path: string;
  handler: Handler;
}
