/** docker's --health-* and --no-healthcheck flags (run, create, service create) to a HealthConfig. */
import { CliError } from './client.js';
import { parseDuration } from './duration.js';

export interface HealthFlags {
  healthCmd?: string;
  healthInterval?: string;
  healthTimeout?: string;
  healthRetries?: string;
  healthStartPeriod?: string;
  healthStartInterval?: string;
  noHealthcheck?: boolean;
}

/** The flags, with the help docker prints for them. */
export const HEALTH_FLAGS: Array<[string, string]> = [
  ['--health-cmd <string>', 'Command to run to check health'],
  ['--health-interval <duration>', 'Time between running the check (ms|s|m|h) (default 0s)'],
  ['--health-retries <int>', 'Consecutive failures needed to report unhealthy'],
  [
    '--health-start-period <duration>',
    'Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)',
  ],
  [
    '--health-start-interval <duration>',
    'Time between running the check during the start period (ms|s|m|h) (default 0s)',
  ],
  ['--health-timeout <duration>', 'Maximum time to allow one check to run (ms|s|m|h) (default 0s)'],
  ['--no-healthcheck', 'Disable any container-specified HEALTHCHECK'],
];

export function healthcheckFromFlags(o: HealthFlags): Record<string, unknown> | undefined {
  const durations = [
    ['healthInterval', '--health-interval', 'Interval'],
    ['healthTimeout', '--health-timeout', 'Timeout'],
    ['healthStartPeriod', '--health-start-period', 'StartPeriod'],
    ['healthStartInterval', '--health-start-interval', 'StartInterval'],
  ] as const;
  const any = o.healthCmd !== undefined || o.healthRetries !== undefined || durations.some(([k]) => o[k] !== undefined);
  if (o.noHealthcheck) {
    if (any) throw new CliError('--no-healthcheck conflicts with --health-* options');
    return { Test: ['NONE'] };
  }
  if (!any) return undefined;
  const h: Record<string, unknown> = {};
  if (o.healthCmd) h.Test = ['CMD-SHELL', o.healthCmd];
  for (const [k, flag, field] of durations) {
    const v = o[k];
    if (v === undefined) continue;
    const ns = parseDuration(v.trim().startsWith('-') ? v.trim().slice(1) : v, flag);
    if (v.trim().startsWith('-') && ns > 0) throw new CliError(`${flag} cannot be negative`);
    h[field] = ns;
  }
  if (o.healthRetries !== undefined) {
    if (!/^-?\d+$/.test(o.healthRetries))
      throw new CliError(
        `invalid argument "${o.healthRetries}" for "--health-retries" flag: strconv.ParseInt: parsing "${o.healthRetries}": invalid syntax`,
      );
    h.Retries = Number(o.healthRetries);
    if ((h.Retries as number) < 0) throw new CliError('--health-retries cannot be negative');
  }
  return h;
}
