/** What every command gets: the API client and the output streams (kept apart from main.ts so commands need not import it). */
import type { Client } from './client.js';

export interface Cli {
  client: Client;
  out(text: string): void;
  err(text: string): void;
  exitCode: number;
  /** Prefix for daemon errors: "cove: " for run/create like docker's "docker: ". */
  errorPrefix: string;
}
