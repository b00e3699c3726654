import { pino, type Logger } from 'pino';

export type { Logger };

/** One structured logger for the daemon; modules take child loggers. */
export function createLogger(level = process.env.COVE_LOG_LEVEL ?? 'info', dest?: number | string): Logger {
  return pino({ level, base: { pid: process.pid } }, pino.destination(dest ?? 2));
}

/** A logger that drops everything: for unit tests and the CLI. */
export const silentLogger: Logger = pino({ level: 'silent' });
