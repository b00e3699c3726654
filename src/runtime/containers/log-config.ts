/**
 * Log drivers a container may ask for (`HostConfig.LogConfig`, `--log-driver`,
 * `--log-opt`), checked at create with Docker's words.
 *
 * What is stored: `json-file` (the default, as in Docker) writes Docker's
 * `<id>-json.log` lines through json-log-writer.ts; `local` keeps conmon's
 * k8s-file `ctr.log` (rotated by log-rotation.ts); both read back through
 * `logs` and rotate by `max-size`/`max-file`; `none` keeps nothing and
 * `logs` answers as Docker does for it.
 */
import { CoveError, InvalidParameter } from '../../common/errors.js';

export const DEFAULT_LOG_DRIVER = 'json-file';

const DRIVER_OPTS: Record<string, string[]> = {
  'json-file': ['max-size', 'max-file', 'compress', 'labels', 'labels-regex', 'env', 'env-regex', 'tag'],
  local: ['max-size', 'max-file', 'compress'],
  none: [],
};

/**
 * json-file keeps everything unless told otherwise in Docker; Cove caps a
 * container that sets no max-size at 5 files of 20 MiB (the `local`
 * driver's defaults), so a chatty container cannot fill the disk.
 */
export const DEFAULT_ROTATION = { maxSize: 20 * 1024 * 1024, maxFile: 5 };

export interface LogConfig {
  Type: string;
  Config: Record<string, string>;
}

export interface Rotation {
  maxSize: number;
  maxFile: number;
}

/** moby's ValidateLogOpts and the drivers' option checks; returns what inspect shows. */
export function normalizeLogConfig(
  lc: { Type?: string; Config?: Record<string, string> | null } | null | undefined,
): LogConfig {
  const type = lc?.Type || DEFAULT_LOG_DRIVER;
  const config = { ...(lc?.Config ?? {}) };
  const allowed = DRIVER_OPTS[type];
  if (!allowed) throw new InvalidParameter(`logger: no log driver named '${type}' is registered`);
  for (const [k, v] of Object.entries(config)) {
    if (typeof v !== 'string') throw new InvalidParameter(`invalid log opt '${k}': value must be a string`);
    if (type === 'none') throw new InvalidParameter(`unknown log opt '${k}' for none log driver`);
    if (!allowed.includes(k)) throw new InvalidParameter(`unknown log opt '${k}' for ${type} log driver`);
  }
  rotationOf({ Type: type, Config: config });
  return { Type: type, Config: config };
}

/** The rotation a config asks for (undefined for `none`). */
export function rotationOf(lc: LogConfig): Rotation | undefined {
  if (lc.Type === 'none') return undefined;
  const c = lc.Config;
  const maxSize = c['max-size'] !== undefined ? ramInBytes(c['max-size']) : undefined;
  let maxFile = DEFAULT_ROTATION.maxFile;
  if (c['max-file'] !== undefined) {
    if (!/^-?\d+$/.test(c['max-file']))
      throw new InvalidParameter(`strconv.Atoi: parsing "${c['max-file']}": invalid syntax`);
    maxFile = Number(c['max-file']);
    if (maxFile < 1) throw new InvalidParameter('max-file cannot be less than 1');
  }
  if (maxSize !== undefined && maxSize < 0) throw new InvalidParameter(`invalid size: '${c['max-size']}'`);
  if (c.compress !== undefined && !/^(1|0|t|f|true|false|TRUE|FALSE|True|False)$/.test(c.compress)) {
    throw new InvalidParameter(
      `error reading compress log option: strconv.ParseBool: parsing "${c.compress}": invalid syntax`,
    );
  }
  if (maxSize === undefined || maxSize === 0) return DEFAULT_ROTATION;
  return { maxSize, maxFile };
}

/** docker's units.RAMInBytes: 10m, 1g, 512k, 100 (binary multiples). */
export function ramInBytes(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?$/i.exec(v.trim());
  if (!m) throw new InvalidParameter(`invalid size: '${v}'`);
  const mult = ({ '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 } as Record<string, number>)[
    m[2]!.toLowerCase()
  ]!;
  return Math.floor(Number(m[1]) * mult);
}

/** `logs` of a container whose driver keeps nothing: Docker's 501. */
export function assertReadable(lc: LogConfig): void {
  if (lc.Type === 'none') throw new CoveError('configured logging driver does not support reading', 501);
}
